//! The OTLP JSON shapes this reader accepts, as the collector's file exporter spells them:
//! hex ids, integer kinds and status codes, 64-bit times as strings, scalar attribute values.
//! Unknown fields are skipped; a field of another type fails the line (serde's error says where).

use serde::de::{Deserializer, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

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

pub enum Value<'b> {
    Text(&'b str),
    Double(f64),
}

impl<'a> AnyValue<'a> {
    /// The first kind set, in the order the Arrow path coalesces them: string, int, double, bool, bytes.
    /// A double spelled as a string ("Infinity", "NaN": protojson) is refused.
    pub fn scalar(&self) -> Result<Option<Value<'_>>, String> {
        if let Some(s) = &self.string_value {
            return Ok(Some(Value::Text(&s.0)));
        }
        if let Some(s) = &self.int_value {
            return Ok(Some(Value::Text(&s.0)));
        }
        if let Some(raw) = &self.double_value {
            let text = raw.as_raw_str();
            return match text.parse::<f64>() {
                Ok(x) if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => Ok(Some(Value::Double(x))),
                _ => Err(format!("doubleValue {text} is not a JSON number")),
            };
        }
        if let Some(b) = self.bool_value {
            return Ok(Some(Value::Text(if b { "true" } else { "false" })));
        }
        Ok(self.bytes_value.as_ref().map(|s| Value::Text(&s.0)))
    }
}
