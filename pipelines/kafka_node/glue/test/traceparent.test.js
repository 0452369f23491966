import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  extractKafkaHeaders,
  formatTraceparent,
  makeEnvelope,
  parseEnvelope,
  parseTraceparent,
  TraceparentError,
} from '../src/traceparent.js';

const TP = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

test('a valid traceparent parses and formats back', () => {
  const ctx = parseTraceparent(TP);
  assert.deepEqual(ctx, { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1, isRemote: true });
  assert.equal(formatTraceparent(ctx), TP);
  assert.equal(formatTraceparent(parseTraceparent(Buffer.from(` ${TP}\t`))), TP);
});

test('malformed traceparents are errors naming the carrier', () => {
  const bad = [
    'nope',
    TP.toUpperCase(),
    `ff${TP.slice(2)}`,
    `${TP}-extra`,
    '00-00000000000000000000000000000000-b7ad6b7169203331-01',
    '00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01',
    `${TP}\n`,
    null,
  ];
  for (const value of bad) {
    assert.throws(() => parseTraceparent(value, 'my carrier'), (e) => e instanceof TraceparentError && e.message.startsWith('my carrier'));
  }
  // a later version may carry more fields
  assert.equal(parseTraceparent(`01${TP.slice(2)}-more`).spanId, 'b7ad6b7169203331');
});

test('Kafka headers: one traceparent, repeated only with the same value', () => {
  assert.equal(extractKafkaHeaders({ traceparent: Buffer.from(TP) }).spanId, 'b7ad6b7169203331');
  assert.equal(extractKafkaHeaders({ traceparent: [Buffer.from(TP), Buffer.from(TP)] }).spanId, 'b7ad6b7169203331');
  assert.throws(() => extractKafkaHeaders({}, 'rec'), /rec: no 'traceparent' header/);
  assert.throws(
    () => extractKafkaHeaders({ traceparent: [Buffer.from(TP), Buffer.from(TP.replace('b7', 'c7'))] }),
    /2 different 'traceparent' headers/,
  );
});

test('the envelope is the bytes carriers.make_envelope writes, and parses back', () => {
  const body = makeEnvelope('ev-1', { key: 'k', fields: { region: 'eu' } }, parseTraceparent(TP));
  // orjson's compact form, keys in this order
  assert.equal(body, `{"traceparent":"${TP}","event_id":"ev-1","payload":{"key":"k","fields":{"region":"eu"}}}`);
  const env = parseEnvelope(Buffer.from(body));
  assert.equal(env.eventId, 'ev-1');
  assert.deepEqual(env.payload, { key: 'k', fields: { region: 'eu' } });
  assert.equal(formatTraceparent(env.parent), TP);
  assert.throws(() => parseEnvelope('{"event_id": "x", "payload": 1}'), /missing field\(s\) \["traceparent"\]/);
  assert.throws(() => parseEnvelope(`{"traceparent": "${TP}", "event_id": "", "payload": 1}`), /non-empty string/);
  assert.throws(() => parseEnvelope('['), /not JSON/);
});
