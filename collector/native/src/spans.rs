//! OTLP JSON lines → flat span columns (the layout of hopscope's SPAN_SCHEMA).
//!
//! Strict on purpose: anything the collector's file exporter would not write (a bad line,
//! a base64 id, an enum name, an array attribute, an end before its start) fails the
//! whole buffer with the line and the reason, and the caller reads it again with the
//! tolerant Python reader, which names and counts every bad record.

use crate::columns::{KvCol, StrCol};
use crate::otlp::{KeyValue, Line, Value};

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

/// Every span of one buffer, column by column; resource-level columns have one row per
/// ResourceSpans and `resource_of` maps a span to its row.
pub struct Spans {
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub parent: Vec<u8>,
    pub parent_valid: Vec<u8>,
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
    pub link_offsets: Vec<i32>,
    pub link_trace: Vec<u8>,
    pub link_span: Vec<u8>,
    pub resource_of: Vec<u32>,
    pub service: StrCol,
    pub stack: StrCol,
    pub res_workload: StrCol,
    pub res_attrs: KvCol,
}

impl Default for Spans {
    fn default() -> Self {
        Spans {
            trace_id: Vec::new(),
            span_id: Vec::new(),
            parent: Vec::new(),
            parent_valid: Vec::new(),
            name: StrCol::new(),
            kind: Vec::new(),
            status: Vec::new(),
            start: Vec::new(),
            end: Vec::new(),
            derived: Vec::new(),
            workload: StrCol::new(),
            event_id: StrCol::new(),
            hop: StrCol::new(),
            attrs: KvCol::new(),
            link_offsets: vec![0],
            link_trace: Vec::new(),
            link_span: Vec::new(),
            resource_of: Vec::new(),
            service: StrCol::new(),
            stack: StrCol::new(),
            res_workload: StrCol::new(),
            res_attrs: KvCol::new(),
        }
    }
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

fn parse_time(text: Option<&str>, what: &str) -> Result<i64, String> {
    match text {
        None => Ok(0),
        Some(t) => t.parse::<i64>().map_err(|_| format!("{what} {t:?} is not a 64-bit integer")),
    }
}

fn code(value: Option<i64>, limit: i64, what: &str) -> Result<u8, String> {
    let v = value.unwrap_or(0);
    if !(0..limit).contains(&v) {
        return Err(format!("unknown {what} {v}"));
    }
    Ok(v as u8)
}

/// Splits one attribute list: the lifted keys' values (the last one where a key repeats)
/// go to `lifted`, the rest into `rest` as one row.
fn split_attrs<'b, const N: usize>(
    kvs: Option<&'b Vec<KeyValue<'_>>>,
    lifted_keys: [&str; N],
    rest: &mut KvCol,
) -> Result<[Option<&'b str>; N], String> {
    let mut lifted: [Option<&'b str>; N] = [None; N];
    for kv in kvs.map(|v| v.as_slice()).unwrap_or(&[]) {
        let key: &str = &kv.key.as_ref().ok_or("an attribute without a key")?.0;
        let value = match &kv.value {
            Some(v) => v.scalar().map_err(|e| format!("attribute {key:?}: {e}"))?,
            None => None,
        }
        .ok_or_else(|| format!("attribute {key:?}: a value of a kind this reader does not read"))?;
        match lifted_keys.iter().position(|k| *k == key) {
            Some(i) => match value {
                Value::Text(t) => lifted[i] = Some(t),
                Value::Double(_) => return Err(format!("attribute {key:?} is a double")),
            },
            None => match value {
                Value::Text(t) => rest.push_text(key, t)?,
                Value::Double(x) => rest.push_double(key, x)?,
            },
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

    /// Adds every span of one line; `line_no` only names the line in an error.
    pub fn add_line(&mut self, line: &[u8], line_no: usize) -> Result<(), String> {
        self.add_line_inner(line).map_err(|e| format!("line {line_no}: {e}"))
    }

    fn add_line_inner(&mut self, line: &[u8]) -> Result<(), String> {
        let doc: Line = sonic_rs::from_slice(line).map_err(|e| e.to_string())?;
        let rss = doc.resource_spans.ok_or("no resourceSpans")?;
        for rs in &rss {
            let scopes = rs.scope_spans.as_ref().ok_or("a resourceSpans without scopeSpans")?;
            let res_row = u32::try_from(self.service.len()).map_err(|_| "over 4G resources")?;
            let [service, stack, workload] = split_attrs(
                rs.resource.as_ref().and_then(|r| r.attributes.as_ref()),
                [SERVICE, STACK, WORKLOAD],
                &mut self.res_attrs,
            )?;
            self.service.push(service)?;
            self.stack.push(stack)?;
            self.res_workload.push(workload)?;
            for span in scopes.iter().flat_map(|s| s.spans.iter().flatten()) {
                self.add_span(span, res_row)?;
            }
        }
        Ok(())
    }

    fn add_span(&mut self, span: &crate::otlp::Span, res_row: u32) -> Result<(), String> {
        push_id(&mut self.trace_id, span.trace_id.as_ref().map(|s| &*s.0), TRACE_HEX, "traceId")?;
        push_id(&mut self.span_id, span.span_id.as_ref().map(|s| &*s.0), SPAN_HEX, "spanId")?;
        // "" and all zeros both mean a root
        match span.parent_span_id.as_ref().map(|s| &*s.0) {
            Some(p) if p.bytes().any(|c| c != b'0') => {
                push_id(&mut self.parent, Some(p), SPAN_HEX, "parentSpanId")?;
                self.parent_valid.push(1);
            }
            _ => {
                self.parent.extend_from_slice(&[b'0'; SPAN_HEX]);
                self.parent_valid.push(0);
            }
        }
        let start = parse_time(span.start.as_ref().map(|s| &*s.0), "startTimeUnixNano")?;
        let end = parse_time(span.end.as_ref().map(|s| &*s.0), "endTimeUnixNano")?;
        if start < 0 || end < start {
            return Err(format!("span ends before it starts ({start} > {end})"));
        }
        self.start.push(start);
        self.end.push(end);
        self.kind.push(code(span.kind, KINDS, "kind")?);
        self.status.push(code(span.status.as_ref().and_then(|s| s.code), STATUSES, "status code")?);
        self.name.push(Some(span.name.as_ref().map(|s| &*s.0).unwrap_or("")))?;
        for link in span.links.iter().flatten() {
            push_id(&mut self.link_trace, link.trace_id.as_ref().map(|s| &*s.0), TRACE_HEX, "links.traceId")?;
            push_id(&mut self.link_span, link.span_id.as_ref().map(|s| &*s.0), SPAN_HEX, "links.spanId")?;
        }
        let links = i32::try_from(self.link_span.len() / SPAN_HEX).map_err(|_| "over 2G links")?;
        self.link_offsets.push(links);
        let [workload, event_id, hop, derived] =
            split_attrs(span.attributes.as_ref(), [WORKLOAD, EVENT_ID, HOP, DERIVED], &mut self.attrs)?;
        self.workload.push(workload)?;
        self.event_id.push(event_id)?;
        self.hop.push(hop)?;
        self.derived.push(is_true(derived) as u8);
        self.resource_of.push(res_row);
        Ok(())
    }

    /// Appends the spans of a later chunk of the same buffer.
    pub fn append(&mut self, o: &Spans) -> Result<(), String> {
        let res_base = self.service.len() as u32;
        let link_base = *self.link_offsets.last().unwrap();
        self.trace_id.extend_from_slice(&o.trace_id);
        self.span_id.extend_from_slice(&o.span_id);
        self.parent.extend_from_slice(&o.parent);
        self.parent_valid.extend_from_slice(&o.parent_valid);
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
        self.link_offsets.extend(o.link_offsets[1..].iter().map(|x| x + link_base));
        self.link_trace.extend_from_slice(&o.link_trace);
        self.link_span.extend_from_slice(&o.link_span);
        self.resource_of.extend(o.resource_of.iter().map(|r| r + res_base));
        self.service.append(&o.service)?;
        self.stack.append(&o.stack)?;
        self.res_workload.append(&o.res_workload)?;
        self.res_attrs.append(&o.res_attrs)
    }
}

/// Parses lines `first_line..` of `data` (a run of whole lines); blank lines are skipped.
fn parse_lines(data: &[u8], first_line: usize) -> Result<Spans, String> {
    let mut spans = Spans::default();
    let mut begin = 0;
    let ends = memchr::memchr_iter(b'\n', data).chain(std::iter::once(data.len()));
    for (i, end) in ends.enumerate() {
        let line = &data[begin..end];
        if !line.iter().all(u8::is_ascii_whitespace) {
            spans.add_line(line, first_line + i)?;
        }
        begin = end + 1;
        if begin > data.len() {
            break;
        }
    }
    Ok(spans)
}

/// Parses a whole buffer of JSON lines, split at line ends into `threads` chunks parsed at once.
pub fn parse(data: &[u8], threads: usize) -> Result<Spans, String> {
    let threads = threads.max(1);
    let mut cuts = vec![0usize];
    for i in 1..threads {
        let at = (data.len() * i / threads).max(*cuts.last().unwrap());
        match memchr::memchr(b'\n', &data[at..]) {
            Some(nl) => cuts.push(at + nl + 1),
            None => break,
        }
    }
    cuts.push(data.len());
    cuts.dedup();
    if cuts.len() <= 2 {
        return parse_lines(data, 1);
    }
    let mut first_lines = vec![1usize];
    for w in cuts.windows(2).take(cuts.len() - 2) {
        first_lines.push(first_lines.last().unwrap() + memchr::memchr_iter(b'\n', &data[w[0]..w[1]]).count());
    }
    let parts: Vec<Result<Spans, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = cuts
            .windows(2)
            .zip(&first_lines)
            .map(|(w, &first)| s.spawn(move || parse_lines(&data[w[0]..w[1]], first)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("parser thread panicked".into()))).collect()
    });
    let mut parts = parts.into_iter();
    let mut all = parts.next().unwrap()?;
    for p in parts {
        all.append(&p?)?;
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}},{"key":"host","value":{"stringValue":"h1"}}]},"scopeSpans":[{"scope":{"name":"x"},"spans":[{"traceId":"0AF7651916CD43DD8448EB211C80319C","spanId":"b7ad6b7169203331","parentSpanId":"","name":"a\"b","kind":2,"startTimeUnixNano":"10","endTimeUnixNano":"25","attributes":[{"key":"hopscope.hop","value":{"stringValue":"x"}},{"key":"hopscope.hop","value":{"stringValue":"y"}},{"key":"n","value":{"intValue":"7"}},{"key":"d","value":{"doubleValue":1.5}},{"key":"b","value":{"boolValue":true}},{"key":"hopscope.derived","value":{"stringValue":" Yes "}}],"links":[{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"00f067aa0ba902b7"}],"status":{}}]}]}]}"#;

    #[test]
    fn reads_a_canonical_line() {
        let text = format!("{LINE}\n\n{LINE}\n");
        let s = parse(text.as_bytes(), 2).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(&s.trace_id[..32], b"0af7651916cd43dd8448eb211c80319c");
        assert_eq!(s.parent_valid, vec![0, 0]);
        assert_eq!(&s.name.data[..3], b"a\"b");
        assert_eq!((s.start[0], s.end[0], s.kind[0], s.status[0]), (10, 25, 2, 0));
        assert_eq!(&s.hop.data[..1], b"y"); // the last of a repeated lifted key
        assert_eq!(s.derived, vec![1, 1]);
        assert_eq!(s.attrs.row_offsets, vec![0, 3, 6]);
        assert_eq!(s.attrs.double_pos, vec![1, 4]);
        let neg_zero = parse(LINE.replace("1.5", "-0.0").as_bytes(), 1).unwrap();
        assert_eq!(neg_zero.attrs.double_val[0].to_bits(), (-0.0f64).to_bits());
        assert_eq!(s.link_offsets, vec![0, 1, 2]);
        assert_eq!(s.resource_of, vec![0, 1]);
        assert_eq!(s.res_attrs.row_offsets, vec![0, 1, 2]);
    }

    #[test]
    fn names_the_line_that_is_not_canonical() {
        let bad = LINE.replace("\"kind\":2", "\"kind\":\"SPAN_KIND_SERVER\"");
        let text = format!("{LINE}\n{LINE}\n{bad}\n");
        let err = parse(text.as_bytes(), 2).err().unwrap();
        assert!(err.starts_with("line 3:"), "{err}");
        let zero = LINE.replace("b7ad6b7169203331", "0000000000000000");
        assert!(parse(zero.as_bytes(), 1).err().unwrap().contains("all zeros"));
        let infinite = LINE.replace("\"doubleValue\":1.5", "\"doubleValue\":\"Infinity\"");
        assert!(parse(infinite.as_bytes(), 1).err().unwrap().contains("not a JSON number"));
        let backwards = LINE.replace("\"25\"", "\"5\"");
        assert!(parse(backwards.as_bytes(), 1).err().unwrap().contains("ends before"));
    }
}
