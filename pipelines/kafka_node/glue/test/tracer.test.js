// The span shapes the analysis relies on (needs the npm packages: skipped without them).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const installed = existsSync(fileURLToPath(new URL('../node_modules/@opentelemetry/sdk-trace-base', import.meta.url)));
const skip = installed ? false : 'npm packages not installed (npm ci)';

const TP = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

/** Keeps what it was given (the SDK's InMemorySpanExporter forgets it at shutdown). */
function keeper() {
  const spans = [];
  return {
    export(batch, done) {
      spans.push(...batch);
      done({ code: 0 });
    },
    shutdown: () => Promise.resolve(),
    getFinishedSpans: () => spans,
  };
}

async function setup() {
  const { HopTracer, SpanKind } = await import('../src/tracer.js');
  const { decodeChange } = await import('../src/decode.js');
  const { parseTraceparent, formatTraceparent } = await import('../src/traceparent.js');
  const { FROM_KAFKA, PUBLISH_EDGE } = await import('../src/edges.js');
  const exporter = keeper();
  const tracer = new HopTracer({ serviceName: 'kafka.notifier', stack: 'kafka-node', runId: 'run-1', exporter });
  return { exporter, tracer, HopTracer, SpanKind, decodeChange, parseTraceparent, formatTraceparent, FROM_KAFKA, PUBLISH_EDGE };
}

test('derived chain, consumer and publish spans: parents, links, attributes, edges, exact times', { skip }, async () => {
  const t = await setup();
  const producer = t.parseTraceparent(TP);
  const sent = 1765000000123456789n;
  const value = Buffer.from(
    `{"after":{"run_id":"run-1","event_id":"ev-1","traceparent":"${TP}","payload":${JSON.stringify(
      `{"event_id":"ev-1","key":"k","fields":{},"sent_ns":${sent},"value":1.0}`,
    )},"sent_ns":${sent}},"source":{"ts_us":1765000000123500},"op":"c","ts_us":1765000000125000}`,
  );
  const inc = t.decodeChange({ value, timestamp: '1765000000127', headers: {} }, 'run-1', 'w');
  const ids = { eventId: 'ev-1', workload: 'write_notify' };
  const parent = t.tracer.derivedChain(inc.hops, { ...ids, parent: producer });
  const consume = t.tracer.startHop('notifier.consume', {
    ...ids, kind: t.SpanKind.CONSUMER, parent, links: [producer], startNs: 1765000000128000001n, edge: t.FROM_KAFKA,
  });
  const pub = t.tracer.startHop('redis.publish', { ...ids, kind: t.SpanKind.PRODUCER, parent: consume.spanContext(), edge: t.PUBLISH_EDGE });
  assert.match(t.formatTraceparent(pub.spanContext()), /^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
  pub.end(1765000000129000000n);
  consume.end(1765000000129000001n);
  assert.equal(t.exporter.getFinishedSpans().length, 0, 'nothing is built before the flush');
  const stats = await t.tracer.shutdown();
  assert.equal(stats.exported, 5);
  const spans = Object.fromEntries(t.exporter.getFinishedSpans().map((s) => [s.name, s]));
  const [commit, capture, append, cons, publish] = ['pg.commit', 'debezium.capture', 'kafka.append', 'notifier.consume', 'redis.publish'].map((n) => spans[n]);
  const id = (s) => s.spanContext().spanId;
  const parentId = (s) => s.parentSpanContext?.spanId;
  // one tree: producer -> commit -> capture -> append -> consume -> publish
  assert.equal(parentId(commit), producer.spanId);
  assert.equal(parentId(capture), id(commit));
  assert.equal(parentId(append), id(capture));
  assert.equal(parentId(cons), id(append));
  assert.equal(parentId(publish), id(cons));
  assert.ok([commit, capture, append, cons, publish].every((s) => s.spanContext().traceId === producer.traceId));
  assert.equal(id(publish), pub.spanContext().spanId, 'the built span has the id the envelope carried');
  // links: the first derived span and the consumer link to the producer; the consumer also to its parent
  assert.deepEqual(commit.links.map((l) => l.context.spanId), [producer.spanId]);
  assert.deepEqual(capture.links, []);
  assert.deepEqual(cons.links.map((l) => l.context.spanId), [id(append), producer.spanId]);
  assert.deepEqual(publish.links, []);
  // exact ns times
  assert.deepEqual(commit.startTime, [1765000000, 123456789]);
  assert.deepEqual(commit.endTime, [1765000000, 123500000]);
  assert.deepEqual(cons.startTime, [1765000000, 128000001]);
  assert.equal(commit.attributes['hopscope.derived'], true);
  assert.equal(commit.attributes['hopscope.derived_from'], 'source.ts_us');
  assert.equal(commit.attributes['hopscope.derived_precision_ns'], 1000);
  assert.equal(append.attributes['hopscope.derived_precision_ns'], 1000000);
  assert.deepEqual(
    [capture, append, cons, publish].map((s) => [s.attributes['hopscope.edge.client'], s.attributes['hopscope.edge.server'], s.attributes['hopscope.edge.type']]),
    [
      ['postgresql', 'kafka.connect', undefined],
      ['kafka.connect', 'kafka', 'messaging_system'],
      ['kafka', 'kafka.notifier', 'messaging_system'],
      ['kafka.notifier', 'redis', 'messaging_system'],
    ],
  );
  assert.equal(cons.kind, t.SpanKind.CONSUMER);
  assert.equal(cons.attributes['hopscope.hop'], 'notifier.consume');
  assert.equal(cons.attributes['hopscope.event_id'], 'ev-1');
  assert.equal(cons.attributes['hopscope.workload'], 'write_notify');
  const resource = cons.resource.attributes;
  assert.deepEqual([resource['service.name'], resource['hopscope.stack'], resource['hopscope.run_id']], ['kafka.notifier', 'kafka-node', 'run-1']);
});

test('tracing off: no spans, the upstream context passes through', { skip }, async () => {
  const t = await setup();
  const off = new t.HopTracer({ serviceName: 'kafka.router', stack: 'kafka-node', runId: 'r', enabled: false });
  const producer = t.parseTraceparent(TP);
  const span = off.startHop('router.consume', { eventId: 'e', workload: 'fanout', kind: t.SpanKind.CONSUMER, parent: producer });
  span.end();
  assert.equal(t.formatTraceparent(span.spanContext()), TP);
  // the write_notify notifier's derived chain too (the untraced twin of every phase: it crashed
  // the consumer once, because a chain that passed its parent on looked empty)
  const hops = [{ hop: 'pg.commit', startNs: 1_000n, endNs: 2_000n, derivedFrom: 'source.ts_us', precisionNs: 1000 }];
  const last = off.derivedChain(hops, { eventId: 'e', workload: 'write_notify', parent: producer });
  assert.equal(t.formatTraceparent(last), TP);
  assert.throws(() => off.derivedChain([], { eventId: 'e', workload: 'write_notify', parent: producer }), /at least one hop/);
  assert.deepEqual(await off.shutdown(), { ended: 0, exported: 0, failed: 0, early_exports: 0, last_error: null });
});

test('past the hold limit a chunk is exported early and counted', { skip }, async () => {
  const { HopTracer } = await import('../src/tracer.js');
  const { parseTraceparent } = await import('../src/traceparent.js');
  const exporter = keeper();
  const tracer = new HopTracer({ serviceName: 's', stack: 'kafka-node', runId: 'r', exporter, maxHeld: 3 });
  for (let i = 0; i < 4; i += 1) tracer.startHop('h', { eventId: `e${i}`, workload: 'w', parent: parseTraceparent(TP) }).end();
  const stats = await tracer.shutdown();
  assert.equal(stats.early_exports, 1);
  assert.equal(stats.exported, 4);
});
