// The Kafka stack's glue in Node.js, one OS process per role (pipelines/kafka_node/README.md):
//
//   HOPSCOPE_GLUE_CONFIG='<json>' node main.js notifier|router|ingest
//
// Prints `CONFIG <json>` (the consumer settings it built) and then `READY` once its consumer
// has joined, as the Python glue does; exits on SIGTERM after sending its spans, or by itself
// when the bench process that started it is gone.

import { createClient } from 'redis';
import { CONFIG, ConfigError, consumerSettings, READY, readConfig, reportedSettings } from './src/config.js';
import { Glue } from './src/glue.js';
import { LIBRARY, startConsumer } from './src/kafka.js';
import { HopTracer } from './src/tracer.js';

const role = process.argv[2];
let cfg;
try {
  cfg = readConfig(process.env, role);
} catch (exc) {
  if (!(exc instanceof ConfigError)) throw exc;
  console.error(`usage: HOPSCOPE_GLUE_CONFIG='{...}' node main.js {notifier,router,ingest}\n${exc.message}`);
  process.exit(2);
}

const tracer = new HopTracer({
  serviceName: `kafka.${role}`,
  stack: cfg.stack,
  runId: cfg.run_id,
  endpoint: cfg.otlp_traces_url,
  enabled: cfg.tracing,
});
// the role's own client: Redis for the notifier and the router, Postgres for the ingest consumer
const clients = {};
if (role === 'ingest') {
  const { default: pg } = await import('pg');
  clients.pg = new pg.Client({ connectionString: cfg.dsn, connectionTimeoutMillis: 5000 });
  clients.pg.on('error', (err) => console.error(`postgres: ${err.message}`));
} else {
  clients.redis = createClient({ url: cfg.redis_url, socket: { connectTimeout: 5000 } });
  clients.redis.on('error', (err) => console.error(`redis: ${err.message}`));
}
const glue = new Glue(cfg, tracer, clients);
let consumer = null;
let stopping = null;

async function stop(why, code = 0) {
  if (stopping) return stopping;
  stopping = (async () => {
    console.error(`stopping (${why})`);
    try {
      await consumer?.disconnect();
    } catch (exc) {
      console.error(`consumer disconnect: ${exc.message}`);
    }
    if (glue.foreignRows) console.error(`skipped ${glue.foreignRows} CDC row(s) of other runs`);
    const stats = await tracer.shutdown();
    console.error(`handled ${glue.handled} event(s), ${glue.errors} error(s); spans ${JSON.stringify(stats)}`);
    try {
      await clients.redis?.quit();
      await clients.pg?.end();
    } catch {
      // already closed
    }
    process.exit(code);
  })();
  return stopping;
}

process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));

try {
  await (clients.pg ?? clients.redis).connect();
  const settings = consumerSettings(cfg);
  consumer = await startConsumer(cfg, settings, glue.handler());
  // before READY: the driver has the line once it sees READY
  process.stdout.write(`${CONFIG} ${JSON.stringify(reportedSettings(settings, LIBRARY))}\n`);
  process.stdout.write(`${READY}\n`);
} catch (exc) {
  console.error(`not started: ${exc.stack ?? exc}`);
  await stop('start failed', 1);
}

// A bench process that dies without its teardown must not leave this consumer running.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) stop('parent process gone');
}, 500).unref();
