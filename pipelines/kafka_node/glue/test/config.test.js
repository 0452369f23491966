import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chunks, consumerSettings, readConfig, reportedSettings } from '../src/config.js';

const BASE = {
  role: 'router',
  run_id: 'run-1',
  bootstrap: '127.0.0.1:9092',
  topic: 't',
  redis_url: 'redis://x',
  channel_prefix: 'p:',
  filters_key: 'p:filters',
  stack: 'kafka-node',
  otlp_traces_url: 'http://127.0.0.1:4318/v1/traces',
};
const env = (cfg) => ({ HOPSCOPE_GLUE_CONFIG: JSON.stringify(cfg) });

test('the consumer is tuned as the Python glue is, and reports it under librdkafka names', () => {
  const cfg = readConfig(env({ ...BASE, tuning: { consumer: { fetch_min_bytes: 1, fetch_wait_max_ms: 1, max_poll_records: 64 } } }), 'router');
  const settings = consumerSettings(cfg);
  assert.equal(settings.groupId, 'hopscope-router-run-1');
  assert.deepEqual(reportedSettings(settings, 'kafkajs 2.2.4'), {
    'fetch.min.bytes': 1,
    'fetch.wait.max.ms': 1,
    'enable.auto.commit': true,
    'auto.commit.interval.ms': 500,
    'auto.offset.reset': 'latest',
    max_poll_records: 64,
    library: 'kafkajs 2.2.4',
  });
  // no tuning: KafkaTuning's defaults
  const d = consumerSettings(readConfig(env(BASE), 'router'));
  assert.deepEqual([d.minBytes, d.maxWaitTimeInMs, d.maxPollRecords], [1, 5, 500]);
});

test('a config that cannot work is refused with the reason', () => {
  assert.throws(() => readConfig({}, 'router'), /HOPSCOPE_GLUE_CONFIG is not set/);
  assert.throws(() => readConfig(env(BASE), 'aggregate'), /not one of notifier, router, ingest/);
  assert.throws(() => readConfig(env(BASE), 'notifier'), /for role "router"/);
  assert.throws(() => readConfig(env({ ...BASE, filters_key: '' }), 'router'), /lacks filters_key/);
  assert.throws(() => readConfig(env({ ...BASE, tuning: { producer: { compression: 'zstd' } } }), 'router'), /zstd cannot be read/);
  // untraced: no collector needed
  assert.equal(readConfig(env({ ...BASE, tracing: false, otlp_traces_url: '' }), 'router').tracing, false);
});

test('a fetched batch is handled in pieces of max_poll_records', () => {
  assert.deepEqual(chunks([1, 2, 3, 4, 5], 2), [[1, 2], [3, 4], [5]]);
  assert.deepEqual(chunks([], 2), []);
});
