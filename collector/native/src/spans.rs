//! The span columns both readers fill (the layout of hopscope's SPAN_SCHEMA), and the
//! rules they share: ids lower-case hex and never all zeros, no span ending before it
//! starts, known kinds and status codes, the lifted `hopscope.*` / `service.name` keys
//! (the last value where a key repeats) and the other attributes as a map.
//!
//! Strict on purpose: anything the collector's file exporter would not write fails the
//! whole buffer with the line (record) and the reason, and the caller reads it again with
//! the tolerant Python reader, which names and counts every bad record. So does anything
//! over a `Limits` bound (the Python reader applies the same bounds and counts them).

use std::borrow::Cow;

use crate::columns::{KvCol, Offsets, StrCol};

pub const TRACE_HEX: usize = 32;
pub const SPAN_HEX: usize = 16;

// Lifted into their own columns (collector/readers/rows.py: SPAN_LIFTED, RESOURCE_LIFTED).
const WORKLOAD: &str = "hopscope.workload";
const EVENT_ID: &str = "hopscope.event_id";
const HOP: &str = "hopscope.hop";
const DERIVED: &str = "hopscope.derived";
const SERVICE: &str = "service.name";
const STACK: &str = "hopscope.stack";

const KINDS: i64 = 6; // UNSPECIFIED … CONSUMER
const STATUSES: i64 = 3; // UNSET, OK, ERROR

/// Bounds a buffer must keep to be read here (hopscope.collector.errors.Limits; the defaults are
/// the same). Past one the buffer is declined, never read in part: the Python reader counts it.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// nesting of objects and arrays in one JSON line, unknown fields included; capped at
    /// MAX_NATIVE_DEPTH (deeper lines go to the Python reader whatever the limit)
    pub max_depth: usize,
    /// one JSON line or one protobuf frame
    pub max_record: usize,
    /// one attribute key or value (UTF-8 bytes)
    pub max_value: usize,
    /// one span name (UTF-8 bytes)
    pub max_name: usize,
}

/// The deepest nesting the native reader ever descends into: the parser's skipping of unknown
/// fields recurses once per level, on parse threads with 2 MiB stacks.
pub const MAX_NATIVE_DEPTH: usize = 128;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 64,
            max_record: 64 << 20,
            max_value: 64 << 10,
            max_name: 4 << 10,
        }
    }
}

impl Limits {
    /// The nesting bound actually applied (never above MAX_NATIVE_DEPTH).
    pub fn depth(&self) -> usize {
        self.max_depth.min(MAX_NATIVE_DEPTH)
    }
}

/// An attribute value as the maps hold it: text, or a double whose text Arrow spells.
pub enum Value<'b> {
    Text(Cow<'b, str>),
    Double(f64),
}

/// Every span of one buffer, column by column; resource-level columns have one row per
/// ResourceSpans and `resource_of` maps a span to its row. Trace and span ids are fixed-width
/// (32 / 16 lower-case hex digits, never null), so they need no offsets.
#[derive(Default)]
pub struct Spans {
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub parent: StrCol,
    pub name: StrCol,
    pub kind: Vec<u8>,
    pub status: Vec<u8>,
    pub start: Vec<i64>,
    pub end: Vec<i64>,
    pub derived: Vec<u8>,
    pub workload: StrCol,
    pub event_id: StrCol,
    pub hop: StrCol,
    pub attrs: KvCol,
    pub link_offsets: Offsets,
    pub link_trace: Vec<u8>,
    pub link_span: Vec<u8>,
    pub resource_of: Vec<u32>,
    pub service: StrCol,
    pub stack: StrCol,
    pub res_workload: StrCol,
    pub res_attrs: KvCol,
    pub limits: Limits,
}

/// Appends `text` as lower-case hex; refuses a wrong length, a non-hex digit and all zeros.
fn push_id(out: &mut Vec<u8>, text: Option<&str>, hex_len: usize, what: &str) -> Result<(), String> {
    let text = text.ok_or_else(|| format!("missing {what}"))?;
    let b = text.as_bytes();
    if b.len() != hex_len {
        return Err(format!("{what} {text:?} is not {hex_len} hex digits"));
    }
    let mut nonzero = false;
    for &c in b {
        let lower = match c {
            b'0'..=b'9' | b'a'..=b'f' => c,
            b'A'..=b'F' => c + 32,
            _ => return Err(format!("{what} {text:?} is not hex")),
        };
        nonzero |= lower != b'0';
        out.push(lower);
    }
    if !nonzero {
        return Err(format!("{what} is all zeros"));
    }
    Ok(())
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends raw id bytes (protobuf) as lower-case hex; refuses a wrong length and all zeros.
fn push_raw_id(out: &mut Vec<u8>, raw: &[u8], hex_len: usize, what: &str) -> Result<(), String> {
    if raw.len() * 2 != hex_len {
        return Err(format!("{what} has {} bytes, not {}", raw.len(), hex_len / 2));
    }
    if raw.iter().all(|&b| b == 0) {
        return Err(format!("{what} is all zeros"));
    }
    for &b in raw {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
    Ok(())
}

fn code(v: i64, limit: i64, what: &str) -> Result<u8, String> {
    if !(0..limit).contains(&v) {
        return Err(format!("unknown {what} {v}"));
    }
    Ok(v as u8)
}

/// Splits one attribute list: the lifted keys' values (the last one where a key repeats)
/// are returned, the rest go into `rest` as one row.
fn split_attrs<'b, const N: usize>(
    kvs: impl Iterator<Item = Result<(&'b str, Value<'b>), String>>,
    lifted_keys: [&str; N],
    rest: &mut KvCol,
    max_value: usize,
) -> Result<[Option<Cow<'b, str>>; N], String> {
    let mut lifted: [Option<Cow<'b, str>>; N] = std::array::from_fn(|_| None);
    for kv in kvs {
        let (key, value) = kv?;
        let long = match &value {
            Value::Text(t) => t.len() > max_value,
            Value::Double(_) => false,
        };
        if long || key.len() > max_value {
            let shown: String = key.chars().take(40).collect();
            return Err(format!(
                "attribute {shown:?}: over {max_value} bytes (max_attribute_bytes)"
            ));
        }
        match (lifted_keys.iter().position(|k| *k == key), value) {
            (Some(i), Value::Text(t)) => lifted[i] = Some(t),
            (Some(_), Value::Double(_)) => return Err(format!("attribute {key:?} is a double")),
            (None, Value::Text(t)) => rest.push_text(key, &t)?,
            (None, Value::Double(x)) => rest.push_double(key, x)?,
        }
    }
    rest.close_row()?;
    Ok(lifted)
}

fn is_true(value: Option<&str>) -> bool {
    value.is_some_and(|v| matches!(v.trim().to_lowercase().as_str(), "true" | "1" | "yes"))
}

impl Spans {
    pub fn len(&self) -> usize {
        self.kind.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kind.is_empty()
    }

    /// Adds one ResourceSpans' resource row; returns its index for `finish_span`.
    pub fn add_resource<'b>(
        &mut self,
        attrs: impl Iterator<Item = Result<(&'b str, Value<'b>), String>>,
    ) -> Result<u32, String> {
        let row = u32::try_from(self.service.len()).map_err(|_| "over 4G resources")?;
        let max_value = self.limits.max_value;
        let [service, stack, workload] =
            split_attrs(attrs, [SERVICE, STACK, WORKLOAD], &mut self.res_attrs, max_value)?;
        self.service.push(service.as_deref())?;
        self.stack.push(stack.as_deref())?;
        self.res_workload.push(workload.as_deref())?;
        Ok(row)
    }

    /// A span's ids as hex text; "" and all zeros both mean a root.
    pub fn push_hex_ids(
        &mut self,
        trace: Option<&str>,
        span: Option<&str>,
        parent: Option<&str>,
    ) -> Result<(), String> {
        push_id(&mut self.trace_id, trace, TRACE_HEX, "traceId")?;
        push_id(&mut self.span_id, span, SPAN_HEX, "spanId")?;
        match parent {
            Some(p) if p.bytes().any(|c| c != b'0') => self
                .parent
                .push_with(|out| push_id(out, Some(p), SPAN_HEX, "parentSpanId")),
            _ => self.parent.push(None),
        }
    }

    /// A span's ids as raw bytes; an empty or all-zero parent means a root.
    pub fn push_raw_ids(&mut self, trace: &[u8], span: &[u8], parent: &[u8]) -> Result<(), String> {
        push_raw_id(&mut self.trace_id, trace, TRACE_HEX, "trace_id")?;
        push_raw_id(&mut self.span_id, span, SPAN_HEX, "span_id")?;
        if parent.iter().any(|&b| b != 0) {
            self.parent
                .push_with(|out| push_raw_id(out, parent, SPAN_HEX, "parent_span_id"))
        } else {
            self.parent.push(None)
        }
    }

    pub fn push_hex_link(&mut self, trace: Option<&str>, span: Option<&str>) -> Result<(), String> {
        push_id(&mut self.link_trace, trace, TRACE_HEX, "links.traceId")?;
        push_id(&mut self.link_span, span, SPAN_HEX, "links.spanId")
    }

    pub fn push_raw_link(&mut self, trace: &[u8], span: &[u8]) -> Result<(), String> {
        push_raw_id(&mut self.link_trace, trace, TRACE_HEX, "links.trace_id")?;
        push_raw_id(&mut self.link_span, span, SPAN_HEX, "links.span_id")
    }

    /// Completes the span whose ids (and links) were just pushed.
    #[allow(clippy::too_many_arguments)]
    pub fn finish_span<'b>(
        &mut self,
        start: i64,
        end: i64,
        kind: i64,
        status: i64,
        name: &str,
        attrs: impl Iterator<Item = Result<(&'b str, Value<'b>), String>>,
        res_row: u32,
    ) -> Result<(), String> {
        if start < 0 || end < start {
            return Err(format!("span ends before it starts ({start} > {end})"));
        }
        if name.len() > self.limits.max_name {
            return Err(format!(
                "span name over {} bytes (max_name_bytes)",
                self.limits.max_name
            ));
        }
        self.start.push(start);
        self.end.push(end);
        self.kind.push(code(kind, KINDS, "kind")?);
        self.status.push(code(status, STATUSES, "status code")?);
        self.name.push(Some(name))?;
        self.link_offsets
            .close_row(self.link_span.len() / SPAN_HEX, "links")?;
        let [workload, event_id, hop, derived] = split_attrs(
            attrs,
            [WORKLOAD, EVENT_ID, HOP, DERIVED],
            &mut self.attrs,
            self.limits.max_value,
        )?;
        self.workload.push(workload.as_deref())?;
        self.event_id.push(event_id.as_deref())?;
        self.hop.push(hop.as_deref())?;
        self.derived.push(is_true(derived.as_deref()) as u8);
        self.resource_of.push(res_row);
        Ok(())
    }

    /// Appends the spans of a later chunk of the same buffer.
    pub fn append(&mut self, o: &Spans) -> Result<(), String> {
        let res_base = self.service.len() as u32;
        self.trace_id.extend_from_slice(&o.trace_id);
        self.span_id.extend_from_slice(&o.span_id);
        self.parent.append(&o.parent)?;
        self.name.append(&o.name)?;
        self.kind.extend_from_slice(&o.kind);
        self.status.extend_from_slice(&o.status);
        self.start.extend_from_slice(&o.start);
        self.end.extend_from_slice(&o.end);
        self.derived.extend_from_slice(&o.derived);
        self.workload.append(&o.workload)?;
        self.event_id.append(&o.event_id)?;
        self.hop.append(&o.hop)?;
        self.attrs.append(&o.attrs)?;
        self.link_offsets.append(&o.link_offsets, "links")?;
        self.link_trace.extend_from_slice(&o.link_trace);
        self.link_span.extend_from_slice(&o.link_span);
        self.resource_of
            .extend(o.resource_of.iter().map(|r| r + res_base));
        self.service.append(&o.service)?;
        self.stack.append(&o.stack)?;
        self.res_workload.append(&o.res_workload)?;
        self.res_attrs.append(&o.res_attrs)
    }
}

/// Stack of every parse thread: the parser recurses once per nesting level (at most
/// MAX_NATIVE_DEPTH, see `Limits`), and an unoptimised build's frames are tens of KB each.
/// Only the pages touched are ever committed.
pub const PARSE_STACK: usize = 64 << 20;

/// Parses `chunks` (whole lines or records) on one thread each, in order, and joins the
/// results; the first error in chunk order wins. Every chunk runs on a thread of its own with a
/// PARSE_STACK stack (whatever the caller's thread has), and a panic in one becomes an error.
pub fn parse_chunks<C: Sync>(
    chunks: &[C],
    limits: Limits,
    parse_one: impl Fn(&mut Spans, &C) -> Result<(), String> + Sync,
) -> Result<Spans, String> {
    let run = |c: &C| {
        let mut spans = Spans {
            limits,
            ..Spans::default()
        };
        parse_one(&mut spans, c).map(|_| spans)
    };
    if chunks.is_empty() {
        return Ok(Spans {
            limits,
            ..Spans::default()
        });
    }
    let parts: Vec<Result<Spans, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|c| {
                std::thread::Builder::new()
                    .name("hopscope-parse".into())
                    .stack_size(PARSE_STACK)
                    .spawn_scoped(s, || run(c))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h.join().unwrap_or_else(|_| Err("parser thread panicked".into())),
                Err(e) => Err(format!("cannot start a parser thread: {e}")),
            })
            .collect()
    });
    let mut parts = parts.into_iter();
    let mut all = parts.next().unwrap()?;
    for p in parts {
        all.append(&p?)?;
    }
    Ok(all)
}
