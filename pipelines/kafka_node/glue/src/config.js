// The glue process's configuration, as the driver writes it into HOPSCOPE_GLUE_CONFIG (JSON,
// in the environment because the Redis URL holds a password): glue.GlueConfig's fields, the
// run's KafkaTuning as JSON, the stack label and the collector's OTLP/HTTP traces URL.

export const CONFIG_ENV = 'HOPSCOPE_GLUE_CONFIG';
/** What the driver reads on stdout (pipelines/kafka/common.py READY, CONFIG). */
export const READY = 'READY';
export const CONFIG = 'CONFIG';
export const ROLES = ['notifier', 'router', 'ingest'];
/** Record codecs this consumer can read: kafkajs has gzip, lz4 comes from lz4-napi. */
export const READABLE_COMPRESSION = ['none', 'gzip', 'lz4'];
/** Rows one ingest INSERT may carry (5 parameters each, Postgres allows 65,535). */
export const MAX_INSERT_ROWS = 13_000;
/** KafkaTuning.consumer's defaults (tuning.py), for a config whose tuning is {}. */
const CONSUMER_DEFAULTS = { fetch_min_bytes: 1, fetch_wait_max_ms: 5, max_poll_records: 500 };
/** glue.py's CONSUMER_FIXED: background commits every 500 ms, start at the end. */
const FIXED = { 'enable.auto.commit': true, 'auto.commit.interval.ms': 500, 'auto.offset.reset': 'latest' };

export class ConfigError extends Error {}

export function readConfig(env, role) {
  const raw = env[CONFIG_ENV];
  if (!raw) throw new ConfigError(`${CONFIG_ENV} is not set`);
  let cfg;
  try {
    cfg = JSON.parse(raw);
  } catch (exc) {
    throw new ConfigError(`${CONFIG_ENV} is not JSON: ${exc.message}`);
  }
  if (!ROLES.includes(role)) throw new ConfigError(`role ${JSON.stringify(role)} is not one of ${ROLES.join(', ')}`);
  if (cfg.role !== role) throw new ConfigError(`${CONFIG_ENV} is for role ${JSON.stringify(cfg.role)}, not ${role}`);
  const required = ['run_id', 'bootstrap', 'topic', 'stack'];
  required.push(...(role === 'ingest' ? ['dsn', 'table'] : ['redis_url', 'channel_prefix']));
  if (role === 'router') required.push('filters_key');
  if (cfg.tracing !== false) required.push('otlp_traces_url');
  const missing = required.filter((k) => !cfg[k]);
  if (missing.length) throw new ConfigError(`${CONFIG_ENV} lacks ${missing.join(', ')}`);
  // the ingest batch is one INSERT: Postgres takes at most 65,535 parameters, 5 a row
  if (role === 'ingest' && (cfg.tuning?.consumer?.max_poll_records ?? 0) > MAX_INSERT_ROWS) {
    throw new ConfigError(`max_poll_records above ${MAX_INSERT_ROWS} is not supported by the ingest consumer`);
  }
  const compression = cfg.tuning?.producer?.compression ?? 'lz4';
  if (!READABLE_COMPRESSION.includes(compression)) {
    throw new ConfigError(`records compressed with ${compression} cannot be read here (only ${READABLE_COMPRESSION.join(', ')})`);
  }
  return { tracing: true, tuning: {}, ...cfg };
}

/** The consumer's settings from the run's KafkaTuning (tuning.ConsumerTuning), kafkajs names. */
export function consumerSettings(cfg) {
  const c = { ...CONSUMER_DEFAULTS, ...(cfg.tuning?.consumer ?? {}) };
  return {
    groupId: `hopscope-${cfg.role}-${cfg.run_id}`,
    minBytes: c.fetch_min_bytes,
    maxWaitTimeInMs: c.fetch_wait_max_ms,
    autoCommit: FIXED['enable.auto.commit'],
    autoCommitInterval: FIXED['auto.commit.interval.ms'],
    maxPollRecords: c.max_poll_records,
  };
}

/**
 * What the process reports of the consumer it built (the manifest's `consumers[]`), under the
 * names the Python glue reports (librdkafka's), so the fairness rows read both stacks alike.
 */
export function reportedSettings(settings, library) {
  return {
    'fetch.min.bytes': settings.minBytes,
    'fetch.wait.max.ms': settings.maxWaitTimeInMs,
    'enable.auto.commit': settings.autoCommit,
    'auto.commit.interval.ms': settings.autoCommitInterval,
    'auto.offset.reset': FIXED['auto.offset.reset'],
    max_poll_records: settings.maxPollRecords,
    library,
  };
}

/** Split a fetched batch into what one call handles (the Python glue's records per poll). */
export function chunks(items, size) {
  const out = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
