//! OTLP protobuf in the collector file exporter's `format: proto` framing:
//! [4-byte big-endian length][ExportTraceServiceRequest], repeated.
//!
//! Only the fields hopscope keeps are declared (prost skips the others); an array or
//! kvlist attribute value, an unset value, a truncated frame or a message that does not
//! decode fails the buffer, and the Python reader takes it.

use std::borrow::Cow;

use base64::Engine as _;
use prost::Message;

use crate::spans::{parse_chunks, Limits, Spans, Value};

#[derive(Clone, PartialEq, Message)]
pub struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ScopeSpans {
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Span {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    #[prost(string, tag = "5")]
    pub name: String,
    #[prost(int32, tag = "6")]
    pub kind: i32,
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    #[prost(message, repeated, tag = "13")]
    pub links: Vec<Link>,
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Link {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Status {
    #[prost(int32, tag = "3")]
    pub code: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AnyValue {
    #[prost(oneof = "Any", tags = "1, 2, 3, 4, 5, 6, 7")]
    pub value: Option<Any>,
}

/// ArrayValue / KeyValueList, not looked into: their presence sends the buffer to Python.
#[derive(Clone, PartialEq, Message)]
pub struct NotRead {}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Any {
    #[prost(string, tag = "1")]
    String(String),
    #[prost(bool, tag = "2")]
    Bool(bool),
    #[prost(int64, tag = "3")]
    Int(i64),
    #[prost(double, tag = "4")]
    Double(f64),
    #[prost(message, tag = "5")]
    Array(NotRead),
    #[prost(message, tag = "6")]
    Kvlist(NotRead),
    #[prost(bytes = "vec", tag = "7")]
    Bytes(Vec<u8>),
}

fn attrs(kvs: &[KeyValue]) -> impl Iterator<Item = Result<(&str, Value<'_>), String>> {
    kvs.iter().map(|kv| {
        let key = kv.key.as_str();
        let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Any::String(s)) => Value::Text(Cow::Borrowed(s)),
            Some(Any::Bool(b)) => Value::Text(Cow::Borrowed(if *b { "true" } else { "false" })),
            Some(Any::Int(i)) => Value::Text(Cow::Owned(i.to_string())),
            Some(Any::Double(x)) => Value::Double(*x),
            Some(Any::Bytes(b)) => {
                Value::Text(Cow::Owned(base64::engine::general_purpose::STANDARD.encode(b)))
            }
            _ => {
                return Err(format!(
                    "attribute {key:?}: a value of a kind this reader does not read"
                ))
            }
        };
        Ok((key, value))
    })
}

fn time(t: u64, what: &str) -> Result<i64, String> {
    i64::try_from(t).map_err(|_| format!("{what} {t} does not fit a signed 64-bit integer"))
}

fn add_request(spans: &mut Spans, msg: &[u8]) -> Result<(), String> {
    let req = ExportTraceServiceRequest::decode(msg)
        .map_err(|e| format!("not an ExportTraceServiceRequest: {e}"))?;
    for rs in &req.resource_spans {
        let res_row = spans.add_resource(attrs(rs.resource.as_ref().map_or(&[][..], |r| &r.attributes)))?;
        for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
            spans.push_raw_ids(&span.trace_id, &span.span_id, &span.parent_span_id)?;
            for link in &span.links {
                spans.push_raw_link(&link.trace_id, &link.span_id)?;
            }
            spans.finish_span(
                time(span.start_time_unix_nano, "start_time_unix_nano")?,
                time(span.end_time_unix_nano, "end_time_unix_nano")?,
                span.kind as i64,
                span.status.as_ref().map_or(0, |s| s.code) as i64,
                &span.name,
                attrs(&span.attributes),
                res_row,
            )?;
        }
    }
    Ok(())
}

/// (record number, message) of every frame; an error for a truncated one or one over `max_record`.
fn frames(data: &[u8], max_record: usize) -> Result<Vec<(usize, &[u8])>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let n = out.len() + 1;
        let head: [u8; 4] = data
            .get(pos..pos + 4)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| format!("record {n}: truncated length prefix"))?;
        let len = u32::from_be_bytes(head) as usize;
        if len > max_record {
            return Err(format!(
                "record {n}: frame of {len} bytes is over {max_record} (max_record_bytes)"
            ));
        }
        let body = data
            .get(pos + 4..pos + 4 + len)
            .ok_or_else(|| format!("record {n}: frame of {len} bytes runs past the end"))?;
        out.push((n, body));
        pos += 4 + len;
    }
    Ok(out)
}

/// Parses a whole framed buffer with the default limits.
pub fn parse(data: &[u8], threads: usize) -> Result<Spans, String> {
    parse_with(data, threads, Limits::default())
}

/// Parses a whole framed buffer, its records split over `threads` by size.
pub fn parse_with(data: &[u8], threads: usize, limits: Limits) -> Result<Spans, String> {
    let all = frames(data, limits.max_record)?;
    let threads = threads.max(1);
    let mut chunks: Vec<&[(usize, &[u8])]> = Vec::new();
    let (mut begin, mut size) = (0, 0);
    for (i, (_, body)) in all.iter().enumerate() {
        size += body.len() + 4;
        if size * threads >= data.len() * (chunks.len() + 1) || i + 1 == all.len() {
            chunks.push(&all[begin..=i]);
            begin = i + 1;
        }
    }
    parse_chunks(&chunks, limits, |spans, records| {
        for (n, body) in records.iter() {
            add_request(spans, body).map_err(|e| format!("record {n}: {e}"))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ExportTraceServiceRequest {
        let kv = |k: &str, v: Any| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
        };
        let span = Span {
            trace_id: vec![0xAB; 16],
            span_id: vec![1, 2, 3, 4, 5, 6, 7, 8],
            parent_span_id: vec![0; 8],
            name: "op".into(),
            kind: 4,
            start_time_unix_nano: 10,
            end_time_unix_nano: 30,
            attributes: vec![
                kv("hopscope.hop", Any::String("h".into())),
                kv("n", Any::Int(-7)),
                kv("raw", Any::Bytes(vec![0, 1, 104, 105])),
                kv("d", Any::Double(-0.0)),
            ],
            links: vec![Link {
                trace_id: vec![0xAB; 16],
                span_id: vec![9; 8],
            }],
            status: Some(Status { code: 2 }),
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", Any::String("svc".into()))],
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span.clone(), span],
                }],
            }],
        }
    }

    fn framed(reqs: &[ExportTraceServiceRequest]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in reqs {
            let body = r.encode_to_vec();
            out.extend_from_slice(&(body.len() as u32).to_be_bytes());
            out.extend_from_slice(&body);
        }
        out
    }

    #[test]
    fn reads_framed_requests_on_two_threads() {
        let data = framed(&[request(), request(), request()]);
        let s = parse(&data, 2).unwrap();
        assert_eq!(s.len(), 6);
        assert_eq!(&s.trace_id[..32], "ab".repeat(16).as_bytes());
        assert_eq!(&s.span_id[..16], b"0102030405060708");
        assert_eq!(s.parent.valid, vec![0; 6]);
        assert_eq!((s.kind[0], s.status[0], s.start[0], s.end[0]), (4, 2, 10, 30));
        assert_eq!(&s.attrs.values.data[..9], b"-7AAFoaQ="); // int, then base64 bytes
        assert_eq!(s.attrs.double_val[0].to_bits(), (-0.0f64).to_bits());
        assert_eq!(s.resource_of, vec![0, 0, 1, 1, 2, 2]);
        assert_eq!(s.link_offsets.0, vec![0, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn names_the_record_that_is_not_read_here() {
        let mut bad = request();
        bad.resource_spans[0].scope_spans[0].spans[1].trace_id = vec![0; 16];
        let err = parse(&framed(&[request(), bad]), 1).err().unwrap();
        assert!(err.starts_with("record 2:") && err.contains("all zeros"), "{err}");
        let mut data = framed(&[request()]);
        data.truncate(data.len() - 1);
        assert!(parse(&data, 1).err().unwrap().contains("runs past the end"));
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        let data = framed(&[request(), request()]);
        for cut in 0..data.len() {
            for threads in [1, 2] {
                match parse(&data[..cut], threads) {
                    Ok(s) => assert!(cut == 0 || s.len() == 2, "cut {cut}"),
                    Err(e) => assert!(e.starts_with("record "), "{e}"),
                }
            }
        }
    }

    #[test]
    fn generated_mutations_never_panic() {
        let mut rng = crate::otlp_json::tests::XorShift(0xD1B5_4A32_D192_ED03);
        let base = framed(&[request(), request(), request()]);
        for case in 0..20_000 {
            let mut b = base.clone();
            for _ in 0..=rng.below(4) {
                let at = rng.below(b.len());
                match rng.below(4) {
                    0 => b[at] ^= 1 << rng.below(8),
                    1 => b[at] = rng.next() as u8,
                    2 => {
                        let end = (at + rng.below(16)).min(b.len());
                        b.drain(at..end);
                    }
                    _ => b.truncate(at),
                }
                if b.is_empty() {
                    break;
                }
            }
            if let Ok(s) = parse(&b, 1 + case % 2) {
                assert!(s.len() <= 6);
            }
        }
    }

    #[test]
    fn deeply_nested_groups_and_messages_error_cleanly() {
        fn wrap(tag: u8, body: Vec<u8>) -> Vec<u8> {
            let mut out = vec![tag];
            prost::encoding::encode_varint(body.len() as u64, &mut out);
            out.extend(body);
            out
        }
        fn framed_span(span: Vec<u8>) -> Vec<u8> {
            // Span in ScopeSpans.spans (2) in ResourceSpans.scope_spans (2) in the request (1)
            let req = wrap(0x0A, wrap(0x12, wrap(0x12, span)));
            let mut data = (req.len() as u32).to_be_bytes().to_vec();
            data.extend(req);
            data
        }
        let span = || request().resource_spans[0].scope_spans[0].spans[0].encode_to_vec();
        assert_eq!(parse(&framed_span(span()), 1).unwrap().len(), 1);
        // 100,000 nested start-group tags (field 20, wire type 3) in a span: prost bounds its recursion
        let mut groups = span();
        groups.extend(std::iter::repeat_n([0xA3u8, 0x01], 100_000).flatten());
        assert!(parse(&framed_span(groups), 1)
            .err()
            .unwrap()
            .starts_with("record 1:"));
        // a kvlist value nested 10,000 deep (KeyValueList.values (1) → KeyValue.value (2) → kvlist (6))
        let mut value = Vec::new();
        for _ in 0..10_000 {
            value = wrap(0x32, wrap(0x0A, wrap(0x12, value)));
        }
        let mut kv = KeyValue {
            key: "deep".into(),
            value: None,
        }
        .encode_to_vec();
        kv.extend(wrap(0x12, value));
        let mut deep = span();
        deep.extend(wrap(0x4A, kv)); // Span.attributes (9)
        for threads in [1, 2] {
            assert!(parse(&framed_span(deep.clone()), threads)
                .err()
                .unwrap()
                .starts_with("record 1:"));
        }
    }

    #[test]
    fn a_frame_over_max_record_declines() {
        let data = framed(&[request()]);
        let small = Limits {
            max_record: data.len() - 5,
            ..Limits::default()
        };
        let err = parse_with(&data, 1, small).err().unwrap();
        assert!(err.contains("max_record_bytes"), "{err}");
        let fits = Limits {
            max_record: data.len() - 4,
            ..Limits::default()
        };
        assert_eq!(parse_with(&data, 1, fits).unwrap().len(), 2);
    }
}
