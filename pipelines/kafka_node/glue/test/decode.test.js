import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chain, DecodeError, decodeChange, decodeEvent, decodePayload, matchingChannels, parseJsonExact } from '../src/decode.js';
import { TraceparentError } from '../src/traceparent.js';

const TP = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
// past 2**53: a double would round it by up to 128 ns
const SENT = 1765000000123456789n;

function payloadText(extra = {}) {
  return `{"event_id":"ev-1","key":"k-1","fields":{"region":"eu","category":"alerts"},"sent_ns":${SENT},"value":3.0,"pad":"xx"${
    Object.keys(extra).length ? `,${JSON.stringify(extra).slice(1, -1)}` : ''
  }}`;
}

function changeEvent({ op = 'c', runId = 'run-1', after = {}, sourceTsUs = 1765000000123500, tsUs = 1765000000125000 } = {}) {
  const row = {
    id: 7,
    run_id: runId,
    event_id: 'ev-1',
    key: 'k-1',
    traceparent: TP,
    payload: payloadText(),
    ...after,
  };
  // the row's sent_ns is a bigint column: a JSON number, as Debezium writes it
  const rowText = JSON.stringify(row).replace(/}$/, `,"sent_ns":${SENT}}`);
  return Buffer.from(
    `{"before":null,"after":${rowText},"source":{"connector":"postgresql","ts_us":${sourceTsUs}},"op":"${op}","ts_us":${tsUs},"ts_ms":1765000000125}`,
  );
}

test('sent_ns is read exactly, also inside the payload string', () => {
  assert.equal(parseJsonExact(`{"a":{"sent_ns":${SENT}},"b":1.5}`).a.sent_ns, SENT);
  // inside a string value the quotes are escaped: left alone
  const doc = parseJsonExact(JSON.stringify({ payload: payloadText() }));
  assert.equal(typeof doc.payload, 'string');
  assert.equal(decodePayload(doc.payload, 'p').sent_ns, SENT);
  assert.throws(() => decodePayload('{"event_id":"x"}', 'where'), /where: event payload lacks field\(s\) \["key","fields","sent_ns","value"\]/);
  assert.throws(() => decodePayload('nope', 'where'), DecodeError);
});

test('derived hops never end before the previous one (coarser clocks are clamped)', () => {
  const hops = chain(1_000_500n, [
    { hop: 'a', endNs: 1_000_000n },
    { hop: 'b', endNs: 3_000_000n },
    { hop: 'c', endNs: 2_000_000n },
  ]);
  assert.deepEqual(
    hops.map((h) => [h.hop, h.startNs, h.endNs]),
    [
      ['a', 1_000_500n, 1_000_500n],
      ['b', 1_000_500n, 3_000_000n],
      ['c', 3_000_000n, 3_000_000n],
    ],
  );
});

test('a change event gives pg.commit, debezium.capture and kafka.append', () => {
  const msg = { value: changeEvent(), timestamp: '1765000000127', headers: {} };
  const inc = decodeChange(msg, 'run-1', 'cdc[0]@5');
  assert.equal(inc.eventId, 'ev-1');
  assert.equal(inc.workload, 'write_notify');
  assert.equal(inc.producer.spanId, 'b7ad6b7169203331');
  assert.equal(inc.startNs, SENT);
  assert.deepEqual(
    inc.hops.map((h) => [h.hop, h.startNs, h.endNs, h.derivedFrom, h.precisionNs, h.edge && [h.edge.client, h.edge.server, h.edge.type]]),
    [
      ['pg.commit', SENT, 1765000000123500000n, 'source.ts_us', 1000n, null],
      ['debezium.capture', 1765000000123500000n, 1765000000125000000n, 'ts_us', 1000n, ['postgresql', 'kafka.connect', '']],
      ['kafka.append', 1765000000125000000n, 1765000000127000000n, 'LogAppendTime (ms)', 1000000n, ['kafka.connect', 'kafka', 'messaging_system']],
    ],
  );
  assert.deepEqual(inc.payload.fields, { region: 'eu', category: 'alerts' });
});

test('what is not this run\'s insert is skipped, a broken one is an error', () => {
  const at = { timestamp: '1765000000127', headers: {} };
  assert.deepEqual(decodeChange({ ...at, value: null }, 'run-1', 'w'), { skip: 'tombstone' });
  assert.deepEqual(decodeChange({ ...at, value: changeEvent({ op: 'u' }) }, 'run-1', 'w'), { skip: 'not an insert' });
  assert.deepEqual(decodeChange({ ...at, value: changeEvent({ runId: 'other' }) }, 'run-1', 'w'), { skip: 'foreign' });
  assert.throws(() => decodeChange({ ...at, value: changeEvent({ after: { traceparent: null } }) }, 'run-1', 'w'), /lacks column\(s\) \["traceparent"\]/);
  assert.throws(() => decodeChange({ ...at, value: changeEvent({ after: { traceparent: 'x' } }) }, 'run-1', 'w'), TraceparentError);
  assert.throws(() => decodeChange({ ...at, value: changeEvent({ tsUs: '"soon"' }) }, 'run-1', 'w'), /lacks source.ts_us or ts_us/);
  assert.throws(() => decodeChange({ value: changeEvent(), headers: {} }, 'run-1', 'w'), /no timestamp/);
});

test('a produced event: header context, one derived hop', () => {
  const msg = { value: Buffer.from(payloadText()), timestamp: '1765000000124', headers: { traceparent: Buffer.from(TP) } };
  const inc = decodeEvent(msg, 'fanout', 'events[1]@9');
  assert.equal(inc.workload, 'fanout');
  assert.deepEqual(inc.hops.map((h) => [h.hop, h.startNs, h.endNs, h.edge]), [['kafka.append', SENT, 1765000000124000000n, null]]);
  assert.throws(() => decodeEvent({ ...msg, headers: {} }, 'fanout', 'events[1]@9'), /events\[1\]@9 headers: no 'traceparent' header/);
});

test('filters select the subscriber channels (workload.Subscriber.matches)', () => {
  const filters = {
    all: '{}',
    eu: '{"region":["eu"]}',
    'ap-alerts': '{"region":["ap"],"category":["alerts"]}',
    'eu-us-metrics': '{"region":["eu","us"],"category":["metrics"]}',
  };
  assert.deepEqual(matchingChannels(filters, { region: 'eu', category: 'alerts' }, 'p:'), ['p:sub:all', 'p:sub:eu']);
  assert.deepEqual(matchingChannels(filters, { region: 'us', category: 'metrics' }, 'p:'), ['p:sub:all', 'p:sub:eu-us-metrics']);
});
