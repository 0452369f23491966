//! OTLP JSON lines as the collector's file exporter spells them: hex ids, integer kinds and
//! status codes, 64-bit times as strings, scalar attribute values. Unknown fields are
//! skipped; a field of another type fails the line (serde's error says where).

use serde::de::{Deserializer, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

use crate::spans::{parse_chunks, Spans, Value};

/// A JSON string, borrowed from the input unless it had escapes.
/// (serde borrows `Cow` only as a bare field, not inside `Option`, hence the newtype.)
pub struct Str<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

#[derive(Deserialize)]
pub struct Line<'a> {
    #[serde(rename = "resourceSpans", borrow)]
    pub resource_spans: Option<Vec<ResourceSpans<'a>>>,
}

#[derive(Deserialize)]
pub struct ResourceSpans<'a> {
    #[serde(borrow)]
    pub resource: Option<Resource<'a>>,
    #[serde(rename = "scopeSpans", borrow)]
    pub scope_spans: Option<Vec<ScopeSpans<'a>>>,
}

#[derive(Deserialize)]
pub struct Resource<'a> {
    #[serde(borrow)]
    pub attributes: Option<Vec<KeyValue<'a>>>,
}

#[derive(Deserialize)]
pub struct ScopeSpans<'a> {
    #[serde(borrow)]
    pub spans: Option<Vec<Span<'a>>>,
}

#[derive(Deserialize)]
pub struct Span<'a> {
    #[serde(rename = "traceId", borrow)]
    pub trace_id: Option<Str<'a>>,
    #[serde(rename = "spanId", borrow)]
    pub span_id: Option<Str<'a>>,
    #[serde(rename = "parentSpanId", borrow)]
    pub parent_span_id: Option<Str<'a>>,
    #[serde(borrow)]
    pub name: Option<Str<'a>>,
    pub kind: Option<i64>,
    #[serde(rename = "startTimeUnixNano", borrow)]
    pub start: Option<Str<'a>>,
    #[serde(rename = "endTimeUnixNano", borrow)]
    pub end: Option<Str<'a>>,
    #[serde(borrow)]
    pub attributes: Option<Vec<KeyValue<'a>>>,
    #[serde(borrow)]
    pub links: Option<Vec<Link<'a>>>,
    pub status: Option<Status>,
}

#[derive(Deserialize)]
pub struct Link<'a> {
    #[serde(rename = "traceId", borrow)]
    pub trace_id: Option<Str<'a>>,
    #[serde(rename = "spanId", borrow)]
    pub span_id: Option<Str<'a>>,
}

#[derive(Deserialize)]
pub struct Status {
    pub code: Option<i64>,
}

#[derive(Deserialize)]
pub struct KeyValue<'a> {
    #[serde(borrow)]
    pub key: Option<Str<'a>>,
    #[serde(borrow)]
    pub value: Option<AnyValue<'a>>,
}

/// AnyValue's scalar kinds; arrays, kvlists and empty values are not read here.
#[derive(Deserialize)]
pub struct AnyValue<'a> {
    #[serde(rename = "stringValue", borrow)]
    pub string_value: Option<Str<'a>>,
    #[serde(rename = "intValue", borrow)]
    pub int_value: Option<Str<'a>>,
    /// kept as its JSON text: sonic-rs reads -0.0 as 0.0, Rust's own parse is exact and keeps the sign
    #[serde(rename = "doubleValue", borrow)]
    pub double_value: Option<sonic_rs::LazyValue<'a>>,
    #[serde(rename = "boolValue")]
    pub bool_value: Option<bool>,
    #[serde(rename = "bytesValue", borrow)]
    pub bytes_value: Option<Str<'a>>,
}

impl<'a> AnyValue<'a> {
    /// The first kind set, in the order the Arrow path coalesces them: string, int, double, bool, bytes.
    /// A double spelled as a string ("Infinity", "NaN": protojson) is refused.
    pub fn scalar(&self) -> Result<Option<Value<'_>>, String> {
        if let Some(s) = &self.string_value {
            return Ok(Some(Value::Text(Cow::Borrowed(&s.0))));
        }
        if let Some(s) = &self.int_value {
            return Ok(Some(Value::Text(Cow::Borrowed(&s.0))));
        }
        if let Some(raw) = &self.double_value {
            let text = raw.as_raw_str();
            return match text.parse::<f64>() {
                Ok(x) if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => {
                    Ok(Some(Value::Double(x)))
                }
                _ => Err(format!("doubleValue {text} is not a JSON number")),
            };
        }
        if let Some(b) = self.bool_value {
            return Ok(Some(Value::Text(Cow::Borrowed(if b { "true" } else { "false" }))));
        }
        Ok(self
            .bytes_value
            .as_ref()
            .map(|s| Value::Text(Cow::Borrowed(&s.0))))
    }
}

fn text<'b>(s: &'b Option<Str<'_>>) -> Option<&'b str> {
    s.as_ref().map(|s| &*s.0)
}

fn attrs<'b>(
    kvs: Option<&'b Vec<KeyValue<'_>>>,
) -> impl Iterator<Item = Result<(&'b str, Value<'b>), String>> {
    kvs.into_iter().flatten().map(|kv| {
        let key: &str = &kv.key.as_ref().ok_or("an attribute without a key")?.0;
        let value = match &kv.value {
            Some(v) => v.scalar().map_err(|e| format!("attribute {key:?}: {e}"))?,
            None => None,
        }
        .ok_or_else(|| format!("attribute {key:?}: a value of a kind this reader does not read"))?;
        Ok((key, value))
    })
}

fn parse_time(text: Option<&str>, what: &str) -> Result<i64, String> {
    match text {
        None => Ok(0),
        Some(t) => t
            .parse::<i64>()
            .map_err(|_| format!("{what} {t:?} is not a 64-bit integer")),
    }
}

fn add_line(spans: &mut Spans, line: &[u8]) -> Result<(), String> {
    let doc: Line = sonic_rs::from_slice(line).map_err(|e| e.to_string())?;
    let rss = doc.resource_spans.ok_or("no resourceSpans")?;
    for rs in &rss {
        let scopes = rs
            .scope_spans
            .as_ref()
            .ok_or("a resourceSpans without scopeSpans")?;
        let res_row = spans.add_resource(attrs(rs.resource.as_ref().and_then(|r| r.attributes.as_ref())))?;
        for span in scopes.iter().flat_map(|s| s.spans.iter().flatten()) {
            spans.push_hex_ids(
                text(&span.trace_id),
                text(&span.span_id),
                text(&span.parent_span_id),
            )?;
            for link in span.links.iter().flatten() {
                spans.push_hex_link(text(&link.trace_id), text(&link.span_id))?;
            }
            spans.finish_span(
                parse_time(text(&span.start), "startTimeUnixNano")?,
                parse_time(text(&span.end), "endTimeUnixNano")?,
                span.kind.unwrap_or(0),
                span.status.as_ref().and_then(|s| s.code).unwrap_or(0),
                text(&span.name).unwrap_or(""),
                attrs(span.attributes.as_ref()),
                res_row,
            )?;
        }
    }
    Ok(())
}

/// Parses a whole buffer of JSON lines (blank lines skipped), split at line ends into `threads`
/// chunks parsed at once; an error names the first bad line.
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
    let mut first_lines = vec![1usize];
    for w in cuts.windows(2).take(cuts.len().saturating_sub(2)) {
        first_lines.push(first_lines.last().unwrap() + memchr::memchr_iter(b'\n', &data[w[0]..w[1]]).count());
    }
    let chunks: Vec<(&[u8], usize)> = cuts
        .windows(2)
        .zip(first_lines)
        .map(|(w, first)| (&data[w[0]..w[1]], first))
        .collect();
    parse_chunks(&chunks, |spans, &(chunk, first_line)| {
        let mut begin = 0;
        let ends = memchr::memchr_iter(b'\n', chunk).chain(std::iter::once(chunk.len()));
        for (i, end) in ends.enumerate() {
            let line = &chunk[begin..end];
            if !line.iter().all(u8::is_ascii_whitespace) {
                add_line(spans, line).map_err(|e| format!("line {}: {e}", first_line + i))?;
            }
            begin = end + 1;
            if begin > chunk.len() {
                break;
            }
        }
        Ok(())
    })
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
        assert_eq!(s.parent.valid, vec![0, 0]);
        assert_eq!(&s.name.data[..3], b"a\"b");
        assert_eq!((s.start[0], s.end[0], s.kind[0], s.status[0]), (10, 25, 2, 0));
        assert_eq!(&s.hop.data[..1], b"y"); // the last of a repeated lifted key
        assert_eq!(s.derived, vec![1, 1]);
        assert_eq!(s.attrs.row_offsets.0, vec![0, 3, 6]);
        assert_eq!(s.attrs.double_pos, vec![1, 4]);
        let neg_zero = parse(LINE.replace("1.5", "-0.0").as_bytes(), 1).unwrap();
        assert_eq!(neg_zero.attrs.double_val[0].to_bits(), (-0.0f64).to_bits());
        assert_eq!(s.link_offsets.0, vec![0, 1, 2]);
        assert_eq!(s.resource_of, vec![0, 1]);
        assert_eq!(s.res_attrs.row_offsets.0, vec![0, 1, 2]);
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
        assert!(parse(infinite.as_bytes(), 1)
            .err()
            .unwrap()
            .contains("not a JSON number"));
        let backwards = LINE.replace("\"25\"", "\"5\"");
        assert!(parse(backwards.as_bytes(), 1)
            .err()
            .unwrap()
            .contains("ends before"));
    }
}
