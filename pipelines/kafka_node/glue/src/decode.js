// Decoding what the glue consumes, and the derived hops it yields (no I/O, no SDK: unit-tested).
//
// Mirrors pipelines/kafka/glue.py: a Debezium change event gives pg.commit (source.ts_us),
// debezium.capture (ts_us) and kafka.append (LogAppendTime, ms); a produced event gives
// kafka.append. Times are BigInt nanoseconds: sent_ns is ~1.8e18, past what a double holds
// exactly, so it is read from the JSON text itself.

import { CAPTURE_EDGE, CDC_APPEND_EDGE } from './edges.js';
import { extractKafkaHeaders, parseTraceparent } from './traceparent.js';

export const NS_PER_US = 1_000n;
export const NS_PER_MS = 1_000_000n;

export class DecodeError extends Error {}

// A key is the only place a string is followed by ':' in JSON, so this never touches text
// inside a string value (where quotes are escaped).
const SENT_NS_RE = /("sent_ns"\s*:\s*)(-?\d+)/g;

/** JSON.parse, with every "sent_ns" number kept exact as a BigInt. */
export function parseJsonExact(text) {
  const doc = JSON.parse(text.replace(SENT_NS_RE, '$1"$2"'), (key, value) =>
    key === 'sent_ns' && typeof value === 'string' && /^-?\d+$/.test(value) ? BigInt(value) : value,
  );
  return doc;
}

function asText(raw) {
  if (typeof raw === 'string') return raw;
  if (raw instanceof Uint8Array) return Buffer.from(raw).toString('utf8');
  throw new DecodeError(`expected text or bytes, got ${raw === null ? 'null' : typeof raw}`);
}

/** The JSON body of a produced event (and of the row in write_notify): common.EventPayload. */
export function decodePayload(raw, where) {
  const text = asText(raw);
  let doc;
  try {
    doc = parseJsonExact(text);
  } catch (exc) {
    throw new DecodeError(`${where}: event payload is not JSON (${exc.message}): ${JSON.stringify(text.slice(0, 80))}`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new DecodeError(`${where}: event payload must be a JSON object`);
  const missing = ['event_id', 'key', 'fields', 'sent_ns', 'value'].filter((k) => !(k in doc));
  if (missing.length) throw new DecodeError(`${where}: event payload lacks field(s) ${JSON.stringify(missing)}`);
  if (typeof doc.sent_ns !== 'bigint') throw new DecodeError(`${where}: event payload's sent_ns is not an integer`);
  return doc;
}

/** Derived hops with monotone ends: a coarser clock (µs, ms) may put an end before the previous one. */
export function chain(startNs, steps) {
  const out = [];
  let previous = startNs;
  for (const step of steps) {
    const endNs = step.endNs > previous ? step.endNs : previous;
    out.push({ ...step, startNs: previous, endNs });
    previous = endNs;
  }
  return out;
}

/** LogAppendTime of a kafkajs message (its `timestamp`, ms as a string) in ns. */
export function appendNs(message, where) {
  const ts = message.timestamp;
  if (typeof ts !== 'string' || !/^\d+$/.test(ts)) throw new DecodeError(`${where}: record has no timestamp (${JSON.stringify(ts)})`);
  return BigInt(ts) * NS_PER_MS;
}

/**
 * A produced event: traceparent header, JSON payload with sent_ns; one derived hop (append).
 * Returns {eventId, workload, producer, startNs, hops, payload}.
 */
export function decodeEvent(message, workload, where) {
  const payload = decodePayload(message.value, where);
  const producer = extractKafkaHeaders(message.headers, `${where} headers`);
  const hops = chain(payload.sent_ns, [
    { hop: 'kafka.append', endNs: appendNs(message, where), derivedFrom: 'LogAppendTime (ms)', precisionNs: NS_PER_MS, edge: null },
  ]);
  return { eventId: payload.event_id, workload, producer, startNs: payload.sent_ns, hops, payload };
}

/**
 * A Debezium change event: the row's traceparent column, three derived hops.
 * Returns {skip: reason} for what is not an event of this run (tombstone, update/delete,
 * another run's row), else as decodeEvent.
 */
export function decodeChange(message, runId, where) {
  if (message.value == null) return { skip: 'tombstone' };
  let change;
  try {
    change = parseJsonExact(asText(message.value));
  } catch (exc) {
    throw new DecodeError(`${where}: change event is not JSON (${exc.message})`);
  }
  if (change === null || typeof change !== 'object') throw new DecodeError(`${where}: change event must be a JSON object`);
  // only inserts are events; updates and deletes are housekeeping
  if (change.op !== 'c') return { skip: 'not an insert' };
  const after = change.after ?? {};
  // a row an earlier run left in the shared slot is not this run's event
  if (after.run_id !== runId) return { skip: 'foreign' };
  const missing = ['event_id', 'traceparent', 'payload', 'sent_ns'].filter((k) => after[k] == null);
  if (missing.length) throw new DecodeError(`${where}: change event 'after' lacks column(s) ${JSON.stringify(missing)}`);
  const source = change.source ?? {};
  if (!Number.isInteger(source.ts_us) || !Number.isInteger(change.ts_us)) {
    throw new DecodeError(`${where}: change event lacks source.ts_us or ts_us`);
  }
  if (typeof after.sent_ns !== 'bigint') throw new DecodeError(`${where}: change event's after.sent_ns is not an integer`);
  const producer = parseTraceparent(after.traceparent, `${where}.after.traceparent`);
  const payload = decodePayload(after.payload, `${where}.after.payload`);
  const hops = chain(after.sent_ns, [
    { hop: 'pg.commit', endNs: BigInt(source.ts_us) * NS_PER_US, derivedFrom: 'source.ts_us', precisionNs: NS_PER_US, edge: null },
    { hop: 'debezium.capture', endNs: BigInt(change.ts_us) * NS_PER_US, derivedFrom: 'ts_us', precisionNs: NS_PER_US, edge: CAPTURE_EDGE },
    { hop: 'kafka.append', endNs: appendNs(message, where), derivedFrom: 'LogAppendTime (ms)', precisionNs: NS_PER_MS, edge: CDC_APPEND_EDGE },
  ]);
  return { eventId: after.event_id, workload: 'write_notify', producer, startNs: after.sent_ns, hops, payload };
}

/** Channels of the subscribers whose filter (a JSON {field: [accepted, ...]}) the event's fields match. */
export function matchingChannels(filters, fields, channelPrefix) {
  const out = [];
  for (const [name, raw] of Object.entries(filters)) {
    const spec = JSON.parse(raw);
    if (Object.entries(spec).every(([f, accepted]) => accepted.includes(fields[f]))) out.push(`${channelPrefix}sub:${name}`);
  }
  return out;
}
