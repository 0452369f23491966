import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readConfig } from '../src/config.js';
import { insertStatement, receiptLine } from '../src/sink.js';

test('the batch is one INSERT of glue.py\'s columns, sent_ns exact', () => {
  const row = (id, sent) => ({ inc: { eventId: id, payload: { key: `k-${id}`, sent_ns: sent } }, raw: `{"event_id":"${id}"}` });
  const { text, values } = insertStatement('hopscope_ingest_events', 'run-1', [row('a', 1765000000123456789n), row('b', 2n)]);
  assert.equal(text, 'INSERT INTO hopscope_ingest_events (run_id, event_id, key, payload, sent_ns) VALUES ($1, $2, $3, $4, $5), ($6, $7, $8, $9, $10)');
  assert.deepEqual(values, ['run-1', 'a', 'k-a', '{"event_id":"a"}', '1765000000123456789', 'run-1', 'b', 'k-b', '{"event_id":"b"}', '2']);
  assert.throws(() => insertStatement('x; DROP TABLE y', 'r', []), /not an identifier/);
});

test('a receipt line is common.receipt_line\'s', () => {
  assert.equal(receiptLine('ev-1', 'sink', 1765000000123456789n), 'R ev-1 sink 1765000000123456789\n');
});

test('the ingest role needs its DSN and table, and a batch that fits one INSERT', () => {
  const base = { role: 'ingest', run_id: 'r', bootstrap: 'b', topic: 't', stack: 'kafka-node', dsn: 'postgresql://x', table: 'tbl', tracing: false };
  const env = (cfg) => ({ HOPSCOPE_GLUE_CONFIG: JSON.stringify(cfg) });
  assert.equal(readConfig(env(base), 'ingest').table, 'tbl');
  assert.throws(() => readConfig(env({ ...base, dsn: '' }), 'ingest'), /lacks dsn/);
  assert.throws(
    () => readConfig(env({ ...base, tuning: { consumer: { max_poll_records: 20000 } } }), 'ingest'),
    /max_poll_records above 13000/,
  );
});
