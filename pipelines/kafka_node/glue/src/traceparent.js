// W3C traceparent and the Redis envelope, as instrumentation/carriers.py reads and writes them.
//
// Strict like the Python parser (and unlike the OTel propagator, which would silently start
// a new trace): a bad context is an error naming the carrier, never a fresh trace.

export const TRACEPARENT = 'traceparent';
const TRACEPARENT_RE = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

export class TraceparentError extends Error {}

/** Parse strictly; returns an OTel SpanContext-shaped object (remote). */
export function parseTraceparent(value, where = TRACEPARENT) {
  if (value instanceof Uint8Array) {
    const bytes = Buffer.from(value);
    if (bytes.some((b) => b > 0x7f)) {
      throw new TraceparentError(`${where}: traceparent is not ASCII: ${JSON.stringify(bytes.toString('latin1'))}`);
    }
    value = bytes.toString('ascii');
  }
  if (typeof value !== 'string') {
    throw new TraceparentError(`${where}: traceparent must be a string, got ${value === null ? 'null' : typeof value}`);
  }
  const text = value.replace(/^[ \t]+|[ \t]+$/g, '');
  const m = TRACEPARENT_RE.exec(text);
  if (!m) {
    throw new TraceparentError(
      `${where}: malformed traceparent ${JSON.stringify(value)}: expected ` +
        "'vv-<32 lower-case hex trace id>-<16 lower-case hex span id>-ff'",
    );
  }
  const [, versionHex, traceId, spanId, flagsHex, rest] = m;
  if (versionHex === 'ff') throw new TraceparentError(`${where}: traceparent version 'ff' is forbidden by W3C: ${JSON.stringify(value)}`);
  if (versionHex === '00' && rest) throw new TraceparentError(`${where}: version 00 traceparent has extra fields: ${JSON.stringify(value)}`);
  if (/^0+$/.test(traceId)) throw new TraceparentError(`${where}: traceparent trace id is all zeros: ${JSON.stringify(value)}`);
  if (/^0+$/.test(spanId)) throw new TraceparentError(`${where}: traceparent span (parent) id is all zeros: ${JSON.stringify(value)}`);
  return { traceId, spanId, traceFlags: parseInt(flagsHex, 16), isRemote: true };
}

export function isValidContext(ctx) {
  return ctx != null && /^[0-9a-f]{32}$/.test(ctx.traceId) && !/^0+$/.test(ctx.traceId)
    && /^[0-9a-f]{16}$/.test(ctx.spanId) && !/^0+$/.test(ctx.spanId);
}

/** The header value for a span context, flags as the context holds them. */
export function formatTraceparent(ctx) {
  if (!isValidContext(ctx)) throw new TraceparentError('cannot format a traceparent from an invalid span context');
  return `00-${ctx.traceId}-${ctx.spanId}-${(ctx.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/** The single traceparent of a kafkajs header object ({key: Buffer | Buffer[]}). */
export function extractKafkaHeaders(headers, where = 'Kafka headers') {
  const raw = headers?.[TRACEPARENT];
  const values = raw === undefined ? [] : Array.isArray(raw) ? raw : [raw];
  if (values.length === 0) throw new TraceparentError(`${where}: no '${TRACEPARENT}' header`);
  const distinct = new Set(values.map((v) => (v == null ? null : Buffer.from(v).toString('latin1'))));
  if (distinct.size > 1) {
    throw new TraceparentError(`${where}: ${values.length} different '${TRACEPARENT}' headers: ${JSON.stringify([...distinct].sort())}`);
  }
  if (values[0] == null) throw new TraceparentError(`${where}: '${TRACEPARENT}' header has no value`);
  return parseTraceparent(values[0], `${where}[${TRACEPARENT}]`);
}

/** The Redis pub/sub message: {"traceparent", "event_id", "payload"} as compact JSON (carriers.make_envelope). */
export function makeEnvelope(eventId, payload, ctx) {
  return JSON.stringify({ [TRACEPARENT]: formatTraceparent(ctx), event_id: eventId, payload });
}

export function parseEnvelope(message, where = 'Redis envelope') {
  const text = typeof message === 'string' ? message : Buffer.from(message).toString('utf8');
  let doc;
  try {
    doc = JSON.parse(text);
  } catch (exc) {
    throw new TraceparentError(`${where}: not JSON (${exc.message}): ${JSON.stringify(text.slice(0, 80))}`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new TraceparentError(`${where}: expected a JSON object, got ${Array.isArray(doc) ? 'array' : typeof doc}`);
  }
  const missing = [TRACEPARENT, 'event_id', 'payload'].filter((k) => !(k in doc));
  if (missing.length) throw new TraceparentError(`${where}: missing field(s) ${JSON.stringify(missing)}`);
  if (typeof doc.event_id !== 'string' || !doc.event_id) {
    throw new TraceparentError(`${where}: field 'event_id' must be a non-empty string, got ${JSON.stringify(doc.event_id)}`);
  }
  const parent = parseTraceparent(doc[TRACEPARENT], `${where} (event ${doc.event_id}).${TRACEPARENT}`);
  return { eventId: doc.event_id, payload: doc.payload, parent };
}
