// hopscope trace helper for JavaScript components (the Harper component imports it).
//
// One tracer provider per run id: the collector files spans by the resource
// attribute `hopscope.run_id`, and one component serves many runs. Span ids of
// hops that end later than the record carrying them is written (commit,
// confirmation) are drawn up front, so the record can name its real parent;
// the span is built with that id once its end is known.
//
// Nothing is lost silently: every run's spans are counted when they end, when
// the collector accepted them and when an export failed (with the last error),
// so the driver can read back what never reached the collector (`telemetry()`).
import { context, diag, DiagLogLevel, trace, SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { BasicTracerProvider, BatchSpanProcessor, RandomIdGenerator } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';

const TRACEPARENT_RE = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

export class TraceparentError extends Error {}

/** Strict W3C traceparent parse; `where` names the carrier in the error. */
export function parseTraceparent(value, where = 'traceparent') {
  if (typeof value !== 'string') throw new TraceparentError(`${where}: traceparent missing or not a string`);
  const m = TRACEPARENT_RE.exec(value.trim());
  if (!m) throw new TraceparentError(`${where}: malformed traceparent ${JSON.stringify(value)}`);
  const [, version, traceId, spanId, flags] = m;
  if (version === 'ff') throw new TraceparentError(`${where}: traceparent version ff is forbidden`);
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) throw new TraceparentError(`${where}: all-zero id in traceparent`);
  return { traceId, spanId, traceFlags: parseInt(flags, 16), isRemote: true };
}

export function formatTraceparent(spanContext) {
  return `00-${spanContext.traceId}-${spanContext.spanId}-${(spanContext.traceFlags | 1).toString(16).padStart(2, '0')}`;
}

/** Unix time in ms with sub-ms resolution (hrtime anchored once, like the Python clock). */
const ORIGIN_MS = Date.now() - performance.now();
export function nowMs() {
  return ORIGIN_MS + performance.now();
}

function hrTime(ms) {
  const sec = Math.floor(ms / 1000);
  return [sec, Math.round((ms - sec * 1000) * 1e6)];
}

class PresetIdGenerator {
  constructor() {
    this.random = new RandomIdGenerator();
    this.nextSpanId = null;
  }
  generateTraceId() {
    return this.random.generateTraceId();
  }
  generateSpanId() {
    const preset = this.nextSpanId;
    this.nextSpanId = null;
    return preset ?? this.random.generateSpanId();
  }
}

// the SDK reports export problems through diag; without a logger they vanish (Harper logs stderr)
diag.setLogger(
  { error: (...a) => console.error('[hoptrace]', ...a), warn: (...a) => console.error('[hoptrace]', ...a), info() {}, debug() {}, verbose() {} },
  DiagLogLevel.WARN,
);

/** When this worker (and so this tracer) started: a restart during a run loses its queued spans. */
export const WORKER_STARTED_MS = Date.now();

/** Counts spans of one run as they end, after a successful export and after a failed one. */
class SpanCounter {
  constructor(stats) {
    this.stats = stats;
  }
  onStart() {}
  onEnd() {
    this.stats.ended += 1;
  }
  forceFlush() {
    return Promise.resolve();
  }
  shutdown() {
    return Promise.resolve();
  }
}

class CountingExporter {
  constructor(inner, stats) {
    this.inner = inner;
    this.stats = stats;
  }
  export(spans, done) {
    this.inner.export(spans, (result) => {
      // ExportResultCode.SUCCESS is 0 (@opentelemetry/core, not a direct dependency here)
      if (result.code === 0) this.stats.exported += spans.length;
      else {
        this.stats.failed += spans.length;
        this.stats.last_error = String(result.error?.message ?? result.error ?? 'export failed');
        console.error(`[hoptrace] ${spans.length} spans not exported: ${this.stats.last_error}`);
      }
      done(result);
    });
  }
  forceFlush() {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
  shutdown() {
    return this.inner.shutdown();
  }
}

const ids = new RandomIdGenerator();
/** A fresh span id for a span that will be built later with `startHop({ spanId })`. */
export function newSpanId() {
  return ids.generateSpanId();
}

export class HopTracer {
  /**
   * @param {object} o
   * @param {string} o.endpoint OTLP/HTTP traces URL of the collector
   * @param {string} o.serviceName resource service.name (e.g. harper.node2)
   * @param {string} o.stack resource hopscope.stack
   * @param {object} [o.resource] more resource attributes
   * @param {number} [o.maxProviders] providers kept (one per run id)
   */
  constructor({ endpoint, serviceName, stack, resource = {}, maxProviders = 8 }) {
    this.endpoint = endpoint;
    this.serviceName = serviceName;
    this.stack = stack;
    this.resource = resource;
    this.maxProviders = maxProviders;
    this.providers = new Map(); // run id -> { provider, tracer, idGen, stats }
  }

  /** A run's counters (created on first use); `extra` counters are the caller's own. */
  stats(runId) {
    return this.forRun(runId).stats;
  }

  count(runId, name, n = 1) {
    const stats = this.stats(runId);
    stats.extra[name] = (stats.extra[name] ?? 0) + n;
  }

  /** What this worker knows of a run: spans ended / exported / failed and the caller's counters. */
  telemetry(runId) {
    const entry = this.providers.get(runId);
    const stats = entry?.stats ?? { ended: 0, exported: 0, failed: 0, last_error: null, extra: {} };
    return {
      run_id: runId,
      service: this.serviceName,
      worker_started_ms: WORKER_STARTED_MS,
      known: entry != null,
      spans_ended: stats.ended,
      spans_exported: stats.exported,
      spans_failed: stats.failed,
      spans_pending: stats.ended - stats.exported - stats.failed,
      last_error: stats.last_error,
      ...stats.extra,
    };
  }

  forRun(runId) {
    let entry = this.providers.get(runId);
    if (entry) return entry;
    const idGen = new PresetIdGenerator();
    const stats = { ended: 0, exported: 0, failed: 0, last_error: null, extra: {} };
    const provider = new BasicTracerProvider({
      resource: resourceFromAttributes({
        'service.name': this.serviceName,
        'hopscope.stack': this.stack,
        'hopscope.run_id': runId,
        ...this.resource,
      }),
      idGenerator: idGen,
      spanProcessors: [
        new SpanCounter(stats),
        // batched: one HTTP export per span would cost ~2 ms per request on this host
        new BatchSpanProcessor(new CountingExporter(new OTLPTraceExporter({ url: this.endpoint }), stats), {
          maxQueueSize: 65536,
          maxExportBatchSize: 2048,
          scheduledDelayMillis: 200,
        }),
      ],
    });
    entry = { provider, tracer: provider.getTracer('hopscope.harper.component', '1.0.0'), idGen, stats };
    this.providers.set(runId, entry);
    if (this.providers.size > this.maxProviders) {
      const [oldest, old] = this.providers.entries().next().value;
      this.providers.delete(oldest);
      old.provider.shutdown().catch(() => {});
    }
    return entry;
  }

  /**
   * Start a hop span (returns it; the caller ends it with `end(span, endMs)`).
   * The parent is a parsed traceparent; SERVER/CONSUMER spans also link to it.
   */
  startHop(runId, hop, { eventId, workload, parent, kind = SpanKind.INTERNAL, startMs, spanId, attributes = {} }) {
    const { tracer, idGen } = this.forRun(runId);
    const parentCtx = trace.setSpanContext(context.active(), parent);
    const links = kind === SpanKind.SERVER || kind === SpanKind.CONSUMER ? [{ context: parent }] : [];
    idGen.nextSpanId = spanId ?? null;
    const span = tracer.startSpan(
      hop,
      {
        kind,
        startTime: hrTime(startMs ?? nowMs()),
        links,
        attributes: {
          'hopscope.hop': hop,
          'hopscope.event_id': eventId,
          'hopscope.workload': workload,
          ...attributes,
        },
      },
      parentCtx,
    );
    idGen.nextSpanId = null;
    return span;
  }

  end(span, endMs, error) {
    if (error) {
      span.recordException(error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: String(error?.message ?? error) });
    }
    span.end(hrTime(endMs ?? nowMs()));
  }

  /** Export what is queued (one run's spans, or every run's). */
  async flush(runId) {
    const entries = runId == null ? [...this.providers.values()] : [this.providers.get(runId)].filter(Boolean);
    await Promise.all(entries.map((e) => e.provider.forceFlush()));
  }
}

export { SpanKind };
