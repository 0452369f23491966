// Hop spans held on the hot path, built and exported when the process ends (docs/decisions.md
// D15, as the Python glue does with instrumentation/deferred.py): the span ids are drawn at
// once so contexts propagate (envelope, parent of the next span), the SDK spans — same ids,
// times, attributes and links — are built at the flush and sent to the collector over
// OTLP/HTTP, in chunks, with what failed counted.

import { randomBytes } from 'node:crypto';
import { diag, DiagLogLevel, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, RandomIdGenerator } from '@opentelemetry/sdk-trace-base';
import { hrTime, nowNs } from './clock.js';
import { edgeAttributes } from './edges.js';

export { SpanKind };

/** Spans per OTLP request at the flush (as tracing.DEFERRED_CHUNK). */
export const CHUNK = 512;
/** Spans held before a chunk is exported early (as tracing.DEFERRED_MAX_HELD). */
export const MAX_HELD = 500_000;

diag.setLogger(
  { error: (...a) => console.error('[otel]', ...a), warn: (...a) => console.error('[otel]', ...a), info() {}, debug() {}, verbose() {} },
  DiagLogLevel.WARN,
);

function randomSpanId() {
  let id;
  do id = randomBytes(8).toString('hex');
  while (id === '0000000000000000');
  return id;
}

/** Hands the SDK the span id a held span already carries. */
class PresetIds {
  constructor() {
    this.random = new RandomIdGenerator();
    this.next = null;
  }
  generateTraceId() {
    return this.random.generateTraceId();
  }
  generateSpanId() {
    const id = this.next;
    this.next = null;
    return id ?? this.random.generateSpanId();
  }
}

/** Collects the spans the SDK ends during a build, for the chunked export. */
class Collect {
  constructor() {
    this.spans = [];
  }
  onStart() {}
  onEnd(span) {
    this.spans.push(span);
  }
  forceFlush() {
    return Promise.resolve();
  }
  shutdown() {
    return Promise.resolve();
  }
}

class HeldSpan {
  constructor(owner, name, kind, ctx, parent, links, attributes, startNs) {
    this.owner = owner;
    this.name = name;
    this.kind = kind;
    this.ctx = ctx;
    this.parent = parent;
    this.links = links;
    this.attributes = attributes;
    this.startNs = startNs;
    this.endNs = null;
    this.error = null;
  }
  spanContext() {
    return this.ctx;
  }
  setAttribute(key, value) {
    this.attributes[key] = value;
  }
  recordError(error) {
    this.error = { error, atNs: nowNs() };
  }
  end(endNs = nowNs()) {
    if (this.endNs !== null) return;
    this.endNs = endNs;
    this.owner.hold(this);
  }
}

/** What a span is when tracing is off: the parent's context passes through (as the API's no-op tracer). */
class NoSpan {
  constructor(ctx) {
    this.ctx = ctx;
  }
  spanContext() {
    return this.ctx;
  }
  setAttribute() {}
  recordError() {}
  end() {}
}

export class HopTracer {
  /**
   * @param {object} o
   * @param {string} o.serviceName resource service.name (kafka.notifier, kafka.router)
   * @param {string} o.stack resource hopscope.stack
   * @param {string} o.runId resource hopscope.run_id
   * @param {string} [o.endpoint] OTLP/HTTP traces URL
   * @param {boolean} [o.enabled]
   * @param {object} [o.exporter] replaces the OTLP exporter (tests)
   */
  constructor({ serviceName, stack, runId, endpoint, enabled = true, exporter, maxHeld = MAX_HELD }) {
    this.serviceName = serviceName;
    this.enabled = enabled;
    this.maxHeld = maxHeld;
    this.held = [];
    this.stats = { ended: 0, exported: 0, failed: 0, early_exports: 0, last_error: null };
    if (!enabled) return;
    this.ids = new PresetIds();
    this.collect = new Collect();
    this.exporter = exporter ?? new OTLPTraceExporter({ url: endpoint });
    this.provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ 'service.name': serviceName, 'hopscope.stack': stack, 'hopscope.run_id': runId }),
      idGenerator: this.ids,
      spanProcessors: [this.collect],
    });
    this.sdkTracer = this.provider.getTracer('hopscope.pipelines.kafka_node', '1.0.0');
    this.exporting = Promise.resolve();
  }

  /**
   * Start a hop span. `parent`: the upstream span context; CONSUMER and SERVER spans also
   * link to it (hops.start_hop_span's rule), `links` adds more (the producer). `edge`: the
   * service-map edge this span names.
   */
  startHop(hop, { eventId, workload, kind = SpanKind.INTERNAL, parent, links = [], attributes = {}, startNs, edge, name }) {
    if (!parent) throw new Error(`hop ${hop} of event ${eventId}: no parent context`);
    const linked = kind === SpanKind.CONSUMER || kind === SpanKind.SERVER ? [parent] : [];
    for (const l of links) if (l.spanId !== parent.spanId) linked.push(l);
    return this.start(hop, { eventId, workload, kind, parent, links: linked, attributes, startNs, edge, name });
  }

  /** A span with exactly these links (derived spans link to their own parent: derived.derived_span). */
  start(hop, { eventId, workload, kind = SpanKind.INTERNAL, parent, links, attributes = {}, startNs, edge, name }) {
    if (!this.enabled) return new NoSpan(parent);
    const attrs = { 'hopscope.hop': hop, 'hopscope.event_id': eventId, 'hopscope.workload': workload };
    if (edge) Object.assign(attrs, edgeAttributes(edge, this.serviceName));
    Object.assign(attrs, attributes);
    const sampled = (parent.traceFlags & 1) === 1;
    const ctx = { traceId: parent.traceId, spanId: randomSpanId(), traceFlags: sampled ? 1 : 0 };
    if (!sampled) return new NoSpan(ctx);
    return new HeldSpan(this, name ?? hop, kind, ctx, parent, links, attrs, startNs ?? nowNs());
  }

  /**
   * A span built from embedded timestamps, already ended (derived.derived_span): covers
   * [startNs, endNs] with hopscope.derived, the field it came from and its resolution.
   */
  derived(step, { eventId, workload, parent, links = [] }) {
    if (step.endNs < step.startNs) {
      throw new Error(`derived hop ${step.hop} of event ${eventId}: end ${step.endNs} is before start ${step.startNs} (from ${step.derivedFrom})`);
    }
    const span = this.start(step.hop, {
      eventId,
      workload,
      parent,
      links,
      edge: step.edge,
      startNs: step.startNs,
      attributes: {
        'hopscope.derived': true,
        'hopscope.derived_from': step.derivedFrom,
        'hopscope.derived_precision_ns': Number(step.precisionNs),
      },
    });
    span.end(step.endNs);
    return span;
  }

  /**
   * Consecutive derived hops, each a child of the previous one (the first of `parent`, which
   * it also links to); returns the last one's context: the consumer span's parent.
   */
  derivedChain(hops, { eventId, workload, parent }) {
    // checked on the list, not on the result: with tracing off every span passes its parent on
    if (!hops.length) throw new Error('derivedChain needs at least one hop');
    let current = parent;
    hops.forEach((step, i) => {
      current = this.derived(step, { eventId, workload, parent: current, links: i === 0 ? [parent] : [] }).spanContext();
    });
    return current;
  }

  hold(span) {
    this.held.push(span);
    this.stats.ended += 1;
    if (this.held.length >= this.maxHeld) {
      // memory stays bounded: a chunk leaves now, on this path, and is counted
      this.stats.early_exports += 1;
      const chunk = this.held.splice(0, CHUNK);
      this.exporting = this.exporting.then(() => this.exportHeld(chunk));
    }
  }

  build(held) {
    for (const h of held) {
      this.ids.next = h.ctx.spanId;
      const span = this.sdkTracer.startSpan(
        h.name,
        { kind: h.kind, startTime: hrTime(h.startNs), links: h.links.map((context) => ({ context })), attributes: h.attributes },
        trace.setSpanContext(ROOT_CONTEXT, h.parent),
      );
      if (h.error) {
        span.recordException(h.error.error, hrTime(h.error.atNs));
        span.setStatus({ code: SpanStatusCode.ERROR, message: String(h.error.error?.message ?? h.error.error) });
      }
      span.end(hrTime(h.endNs));
    }
    const built = this.collect.spans;
    this.collect.spans = [];
    return built;
  }

  async exportHeld(held) {
    for (let i = 0; i < held.length; i += CHUNK) {
      const spans = this.build(held.slice(i, i + CHUNK));
      const result = await new Promise((resolve) => this.exporter.export(spans, resolve));
      // ExportResultCode.SUCCESS is 0
      if (result.code === 0) this.stats.exported += spans.length;
      else {
        this.stats.failed += spans.length;
        this.stats.last_error = String(result.error?.message ?? result.error ?? 'export failed');
      }
    }
  }

  /** Build and export everything held; then stop the exporter. Returns the counters. */
  async shutdown() {
    if (!this.enabled) return this.stats;
    await this.exporting;
    const held = this.held;
    this.held = [];
    await this.exportHeld(held);
    await this.exporter.shutdown?.();
    return this.stats;
  }
}
