// hopscope's Harper component: traced resources for the four workloads.
//
// Every hop that happens inside Harper gets a span here: request handling
// (harper.put / harper.aggregate / harper.get), the local commit (harper.commit,
// ended when the LMDB transaction really committed) and the replica
// confirmation (harper.confirm, ended when Harper resolves the confirmed
// commit). The record carries the traceparent of harper.commit, because
// notifications on other nodes carry no headers: subscribers continue the trace
// from the record.
import { readFileSync } from 'node:fs';
import { HopTracer, SpanKind, TraceparentError, formatTraceparent, newSpanId, nowMs, parseTraceparent } from './lib/hoptrace.js';

// tables of database "hopscope" (schema.graphql) live under databases, not the default `tables`
const db = databases.hopscope;
const SETTINGS = loadSettings();
const NODE = String(server.hostname ?? 'unknown');
const tracer = new HopTracer({
  endpoint: SETTINGS.otlp_traces_url,
  serviceName: `harper.${NODE}`,
  stack: 'harper',
  resource: { 'harper.node': NODE },
});
const MAX_PAYLOAD = 65536;
// events an aggregate remembers, so a reader that sees only a later state still learns of them
const RECENT_EVENTS = 16;

function loadSettings() {
  // written by the deploy step (component_deploy.py); defaults match hopscope's collector.
  // `digest` names the deployed folder, so the deploy step can tell the new workers are serving.
  const defaults = { otlp_traces_url: 'http://127.0.0.1:24318/v1/traces', digest: null };
  try {
    return { ...defaults, ...JSON.parse(readFileSync(new URL('./settings.json', import.meta.url), 'utf8')) };
  } catch {
    return defaults;
  }
}

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.statusCode = status;
  }
}

function idOf(target, where) {
  let id = target?.id ?? target;
  if (Array.isArray(id) && id.length) id = id.join('/'); // a multi-level id (Fanout/<region>/<category>/<event>)
  if (id == null || id === '' || typeof id === 'object') throw new HttpError(400, `${where}: the path names no record id`);
  return String(id);
}

/** Validate a write body: fields with their types; anything else is refused, nothing written. */
function checkBody(data, where, fields) {
  if (data == null || typeof data !== 'object' || Array.isArray(data))
    throw new HttpError(400, `${where}: body must be a JSON object, got ${data === null ? 'null' : typeof data}`);
  for (const [name, type] of Object.entries(fields)) {
    const optional = type.endsWith('?');
    const want = optional ? type.slice(0, -1) : type;
    if (data[name] == null) {
      if (optional) continue;
      throw new HttpError(400, `${where}: field '${name}' is missing`);
    }
    if (typeof data[name] !== want) throw new HttpError(400, `${where}: field '${name}' must be a ${want}, got ${typeof data[name]}`);
  }
  const unknown = Object.keys(data).filter((k) => !(k in fields));
  if (unknown.length) throw new HttpError(400, `${where}: unknown field(s) ${unknown.join(', ')}`);
  if (typeof data.payload === 'string' && data.payload.length > MAX_PAYLOAD)
    throw new HttpError(413, `${where}: payload is ${data.payload.length} chars, limit ${MAX_PAYLOAD}`);
}

function parentFrom(value, where) {
  try {
    return parseTraceparent(value, where);
  } catch (e) {
    if (e instanceof TraceparentError) throw new HttpError(400, e.message);
    throw e;
  }
}

/** Response header of every REST write: the replicatedConfirmation the write's transaction had. */
const CONFIRMATION_HEADER = 'x-hopscope-replicated-confirmation';

function confirmationOf(ctx) {
  return ctx?.transaction?.replicatedConfirmation ?? ctx?.replicatedConfirmation ?? 0;
}

/**
 * Call `onLocal(ms)` when the request's transaction has committed locally (the LMDB write
 * promise) and `onDone(error, localMs)` when Harper's commit resolved (with replica
 * confirmation, if asked). Harper commits after the handler returned, so the transaction's
 * commit() is wrapped; several watchers may wrap the same transaction. Returns false when
 * there is no transaction to watch.
 */
function watchCommit(ctx, { onLocal, onDone }) {
  const txn = ctx?.transaction;
  if (!txn || typeof txn.commit !== 'function') return false;
  const original = txn.commit;
  let localCommitMs = null;
  let localCommit = null;
  let watching = false;
  // Stays installed: with before-hooks Harper's commit() re-enters itself asynchronously.
  txn.commit = function (options) {
    // The local commit is the LMDB write promise, created synchronously in commit() by
    // store.transaction() or, for conditional writes, store.ifVersion(); hook both briefly.
    const stores = [...new Set((txn.writes ?? []).filter(Boolean).map((w) => w.store).filter(Boolean))];
    const restore = [];
    for (const store of stores) {
      for (const method of ['transaction', 'ifVersion']) {
        const originalMethod = store[method];
        if (typeof originalMethod !== 'function') continue;
        const own = Object.prototype.hasOwnProperty.call(store, method);
        store[method] = function (...args) {
          const written = originalMethod.apply(this, args);
          if (!localCommit && typeof written?.then === 'function') {
            localCommit = written;
            written.then(
              () => {
                localCommitMs ??= nowMs();
                onLocal?.(localCommitMs);
              },
              () => {},
            );
          }
          return written;
        };
        restore.push(() => {
          if (own) store[method] = originalMethod;
          else delete store[method];
        });
      }
    }
    let result;
    try {
      result = original.call(txn, options);
    } finally {
      for (const undo of restore) undo();
    }
    if (watching) return result;
    watching = true;
    Promise.resolve(result).then(
      () => onDone?.(null, localCommitMs),
      (e) => onDone?.(e, localCommitMs),
    );
    return result;
  };
  return true;
}

/**
 * Spans for the commit and the replica confirmation, ended where they really end. The commit
 * span goes out as soon as the local commit is known, not with the confirmation: a confirmation
 * that never comes must not take the commit hop with it. Every watched commit is counted until
 * Harper resolved it (`commits_open` in the run's telemetry), so a lost one is visible.
 */
function traceCommit(ctx, ev, putSpan, commitSpanId, confirmSpanId, handlerEndMs) {
  const confirm = confirmationOf(ctx);
  const common = { eventId: ev.eventId, workload: ev.workload, parent: putSpan.spanContext() };
  let commit = null;
  const emitCommit = (committedMs, { hooked, error }) => {
    if (commit) return commit;
    commit = tracer.startHop(ev.runId, 'harper.commit', {
      ...common,
      spanId: commitSpanId,
      startMs: handlerEndMs,
      attributes: { 'harper.node': NODE, 'harper.commit.local_hook': hooked },
    });
    tracer.end(commit, committedMs, error);
    return commit;
  };
  const watched = watchCommit(ctx, {
    onLocal: (localMs) => emitCommit(localMs, { hooked: true }),
    onDone: (error, localCommitMs) => {
      tracer.count(ev.runId, 'commits_open', -1);
      const doneMs = nowMs();
      const committedMs = localCommitMs ?? doneMs;
      // without the local hook the commit ends when Harper resolved it (and fails with it)
      const span = emitCommit(committedMs, { hooked: localCommitMs != null, error: localCommitMs == null ? error : null });
      if (confirm > 0) {
        const conf = tracer.startHop(ev.runId, 'harper.confirm', {
          ...common,
          parent: span.spanContext(),
          spanId: confirmSpanId,
          startMs: committedMs,
          attributes: { 'harper.node': NODE, 'harper.replicated_confirmation': confirm },
        });
        tracer.end(conf, doneMs, error);
      }
    },
  });
  tracer.count(ev.runId, watched ? 'commits_open' : 'commits_unwatched', 1);
}

/**
 * Per-key lock held from before an aggregate's read-modify-write until it committed locally:
 * `recent` is not a CRDT, so two overlapping updates of a hot key would drop one event from it.
 */
const keyTails = new Map();
const KEY_LOCK_MAX_MS = 5000;
async function lockKeyUntilCommit(key, ctx) {
  const previous = keyTails.get(key) ?? Promise.resolve();
  let release;
  const released = new Promise((resolve) => {
    release = resolve;
  });
  const tail = previous.then(() => released);
  keyTails.set(key, tail);
  tail.then(() => {
    if (keyTails.get(key) === tail) keyTails.delete(key);
  });
  await previous;
  let done = false;
  const free = () => {
    if (!done) {
      done = true;
      clearTimeout(timer);
      release();
    }
  };
  // never hold a key forever if Harper does not commit this transaction after all
  const timer = setTimeout(free, KEY_LOCK_MAX_MS);
  if (!watchCommit(ctx, { onLocal: free, onDone: free })) free();
  return free;
}

/** The shared path of a traced REST write: validate, span, record with the commit's traceparent. */
async function tracedWrite(resource, target, data, { where, hop, write, eventIdOf = (id) => id }) {
  const startMs = nowMs();
  const ctx = resource.getContext();
  const eventId = eventIdOf(idOf(target, where));
  checkBody(data, where, {
    key: 'string',
    runId: 'string',
    workload: 'string',
    payload: 'string?',
    value: 'number?',
  });
  // What Harper applied to this write (not what the client asked), traced or not: the driver
  // counts it into the fairness table, so a node that ignored the header shows there.
  ctx?.responseHeaders?.set?.(CONFIRMATION_HEADER, String(confirmationOf(ctx)));
  const header = ctx?.headers?.get?.('traceparent');
  // no traceparent at all = an untraced run (the tracing-overhead A/B): no spans; a malformed one is a 400
  if (header == null) return write({ eventId, data, ctx, traceparent: null, handledAt: startMs });
  const parent = parentFrom(header, `${where} ${eventId}: header`);
  const ev = { eventId, runId: data.runId, workload: data.workload };
  const span = tracer.startHop(ev.runId, hop, {
    eventId,
    workload: ev.workload,
    parent,
    kind: SpanKind.SERVER,
    startMs,
    attributes: {
      'harper.node': NODE,
      'harper.replicated_confirmation': confirmationOf(ctx),
      'http.request.method': ctx?.method ?? 'PUT',
      'db.collection.name': where,
    },
  });
  const commitSpanId = newSpanId();
  const confirmSpanId = newSpanId();
  const carried = formatTraceparent({ traceId: parent.traceId, spanId: commitSpanId, traceFlags: parent.traceFlags });
  // W3C traceresponse: the client's own "write confirmed" span continues from the last hop in Harper
  const last = confirmationOf(ctx) > 0 ? confirmSpanId : commitSpanId;
  ctx?.responseHeaders?.set?.('traceresponse', formatTraceparent({ traceId: parent.traceId, spanId: last, traceFlags: parent.traceFlags }));
  try {
    const result = await write({ eventId, data, ctx, traceparent: carried, handledAt: startMs });
    const endMs = nowMs();
    tracer.end(span, endMs);
    traceCommit(ctx, ev, span, commitSpanId, confirmSpanId, endMs);
    return result;
  } catch (e) {
    tracer.end(span, nowMs(), e);
    throw e;
  }
}

/** Harper parses the body lazily and turns a JSON error into a 500; make it a 400 naming the resource. */
async function parsedBody(data, where) {
  try {
    return await data;
  } catch (e) {
    throw new HttpError(400, `${where}: request body is not valid JSON (${e?.message ?? e})`);
  }
}

// --- write_notify: PUT /Notify/<event id> ------------------------------------------------
export class Notify extends db.NotifyEvent {
  static loadAsInstance = false;
  static async put(target, data, context) {
    return super.put(target, await parsedBody(data, 'Notify'), context);
  }
  async put(target, data) {
    return tracedWrite(this, target, data, {
      where: 'Notify',
      hop: 'harper.put',
      write: ({ eventId, data, traceparent, handledAt }) =>
        super.put(target, { id: eventId, key: data.key, runId: data.runId, workload: data.workload, payload: data.payload ?? '', traceparent, handledAt }),
    });
  }
  post() {
    throw new HttpError(405, 'Notify: use PUT /Notify/<event id>');
  }
  delete() {
    throw new HttpError(405, 'Notify: records are not deleted through this resource');
  }
}

// --- ingest: POST /Ingest/ with the event id in the body, or PUT /Ingest/<event id> ----------
export class Ingest extends db.IngestEvent {
  static loadAsInstance = false;
  static async put(target, data, context) {
    return super.put(target, await parsedBody(data, 'Ingest'), context);
  }
  static async post(target, data, context) {
    return super.post(target, await parsedBody(data, 'Ingest'), context);
  }
  async put(target, data) {
    return tracedWrite(this, target, data, {
      where: 'Ingest',
      hop: 'harper.put',
      write: ({ eventId, data, traceparent }) =>
        super.put(target, { id: eventId, key: data.key, runId: data.runId, payload: data.payload ?? '', traceparent }),
    });
  }
  async post(target, data) {
    const id = data?.id;
    if (typeof id !== 'string' || !id) throw new HttpError(400, "Ingest: POST body needs a string field 'id' (the event id)");
    const { id: _ignored, ...rest } = data;
    await tracedWrite(this, id, rest, {
      where: 'Ingest',
      hop: 'harper.put',
      write: ({ eventId, data, ctx, traceparent }) =>
        db.IngestEvent.put({ id: eventId, key: data.key, runId: data.runId, payload: data.payload ?? '', traceparent }, ctx),
    });
    return { id };
  }
  delete() {
    throw new HttpError(405, 'Ingest: records are not deleted through this resource');
  }
}

// --- aggregate: PUT /Reading/<event id> updates Aggregate/<key> in the same transaction ---------
export class Reading extends db.Reading {
  static loadAsInstance = false;
  static async put(target, data, context) {
    return super.put(target, await parsedBody(data, 'Reading'), context);
  }
  async put(target, data) {
    return tracedWrite(this, target, data, {
      where: 'Reading',
      hop: 'harper.aggregate',
      write: async ({ eventId, data, ctx, traceparent }) => {
        const value = data.value ?? 1;
        const free = await lockKeyUntilCommit(data.key, ctx);
        try {
          await super.put(target, { id: eventId, key: data.key, runId: data.runId, value, traceparent });
          // pass the request context: without it Harper commits the update in a transaction of its own
          const agg = await db.KeyAggregate.update(data.key, ctx);
          agg.addTo('count', 1);
          agg.addTo('sum', value);
          agg.lastEventId = eventId;
          agg.traceparent = traceparent;
          agg.runId = data.runId;
          const recent = Array.isArray(agg.recent) ? agg.recent.slice(-(RECENT_EVENTS - 1)) : [];
          recent.push({ eventId, traceparent });
          agg.recent = recent;
        } catch (e) {
          free();
          throw e;
        }
      },
    });
  }
  delete() {
    throw new HttpError(405, 'Reading: records are not deleted through this resource');
  }
}

// --- aggregate: subscribe Aggregate/#, point read GET /Aggregate/<key> -----------------------
export class Aggregate extends db.KeyAggregate {
  static loadAsInstance = false;
  async get(target) {
    const ctx = this.getContext();
    const header = ctx?.headers?.get?.('traceparent');
    if (!header) return super.get(target); // untraced reads (e.g. tests) are served as usual
    const startMs = nowMs();
    const key = idOf(target, 'Aggregate');
    const parent = parentFrom(header, `Aggregate ${key}: header`);
    const runId = ctx.headers.get('x-hopscope-run') ?? 'unknown';
    const eventId = ctx.headers.get('x-hopscope-event') ?? key;
    const span = tracer.startHop(runId, 'harper.get', {
      eventId,
      workload: 'point_read',
      parent,
      kind: SpanKind.SERVER,
      startMs,
      attributes: { 'harper.node': NODE, 'db.collection.name': 'Aggregate', 'harper.key': key },
    });
    try {
      const record = await super.get(target);
      if (record == null) throw new HttpError(404, `Aggregate: no aggregate for key '${key}'`);
      tracer.end(span, nowMs());
      return record;
    } catch (e) {
      tracer.end(span, nowMs(), e);
      throw e;
    }
  }
  put() {
    throw new HttpError(405, 'Aggregate is maintained by PUT /Reading/<event id>; it is read-only');
  }
  delete() {
    throw new HttpError(405, 'Aggregate is read-only');
  }
}

// --- fanout: PUT /Fanout/<region>/<category>/<event id>, confirmed by a replica (the default,
// durability matched with Kafka's acks=all: subscribers on the replicas hear of it once a replica
// holds it; D21) --------------------------------------------------------------------------------
export class Fanout extends db.FanoutMessage {
  static loadAsInstance = false;
  static async put(target, data, context) {
    return super.put(target, await parsedBody(data, 'Fanout'), context);
  }
  async put(target, data) {
    return tracedWrite(this, target, data, {
      where: 'Fanout',
      hop: 'harper.put',
      // the record's id is the whole topic path; the event is its last level
      eventIdOf: (id) => id.slice(id.lastIndexOf('/') + 1),
      write: ({ eventId, data, traceparent, handledAt }) =>
        super.put(target, { eventId, key: data.key, runId: data.runId, workload: data.workload, payload: data.payload ?? '', traceparent, handledAt }),
    });
  }
  post() {
    throw new HttpError(405, 'Fanout: use PUT /Fanout/<region>/<category>/<event id>');
  }
  delete() {
    throw new HttpError(405, 'Fanout: records are not deleted through this resource');
  }
}

// --- telemetry: GET /HopscopeTelemetry/<run id>; POST exports the run's queued spans first ------
// The driver reads this from every node after a run: spans that ended but never reached the
// collector, commits Harper never resolved and a worker that restarted mid-run are reported,
// not silently missing from the traces.
export class HopscopeTelemetry extends Resource {
  static loadAsInstance = false;
  get(target) {
    return { ...tracer.telemetry(idOf(target, 'HopscopeTelemetry')), component_digest: SETTINGS.digest };
  }
  async post(target) {
    const runId = idOf(target, 'HopscopeTelemetry');
    await tracer.flush(runId);
    return { ...tracer.telemetry(runId), component_digest: SETTINGS.digest };
  }
  put() {
    throw new HttpError(405, 'HopscopeTelemetry is read-only (POST flushes)');
  }
  delete() {
    throw new HttpError(405, 'HopscopeTelemetry is read-only');
  }
}
