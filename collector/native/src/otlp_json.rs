//! OTLP JSON lines as the collector's file exporter spells them: hex ids, integer kinds and
//! status codes, 64-bit times as strings, scalar attribute values. Unknown fields are
//! skipped; a field of another type fails the line (serde's error says where).
//!
//! sonic-rs skips an unknown field by recursing once per nesting level, so a line nested
//! thousands deep would overflow the stack: every line's nesting is measured first, without
//! recursion (`nesting_within`), and a line deeper than the limit, or longer than
//! `max_record`, fails the buffer before the parser sees it.

use serde::de::{Deserializer, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

use crate::spans::{parse_chunks, Limits, Spans, Value};

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

/// A message field: a JSON object only. (serde's derived structs also take an array of the field
/// values in order, `"status": [1]`, which the Python reader rightly refuses.)
pub struct Obj<T>(pub T);

impl<T> std::ops::Deref for Obj<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Obj)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
pub struct Line<'a> {
    #[serde(rename = "resourceSpans", borrow)]
    pub resource_spans: Option<Vec<Obj<ResourceSpans<'a>>>>,
}

#[derive(Deserialize)]
pub struct ResourceSpans<'a> {
    #[serde(borrow)]
    pub resource: Option<Obj<Resource<'a>>>,
    #[serde(rename = "scopeSpans", borrow)]
    pub scope_spans: Option<Vec<Obj<ScopeSpans<'a>>>>,
}

#[derive(Deserialize)]
pub struct Resource<'a> {
    #[serde(borrow)]
    pub attributes: Option<Vec<Obj<KeyValue<'a>>>>,
}

#[derive(Deserialize)]
pub struct ScopeSpans<'a> {
    #[serde(borrow)]
    pub spans: Option<Vec<Obj<Span<'a>>>>,
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
    pub attributes: Option<Vec<Obj<KeyValue<'a>>>>,
    #[serde(borrow)]
    pub links: Option<Vec<Obj<Link<'a>>>>,
    pub status: Option<Obj<Status>>,
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
    pub value: Option<Obj<AnyValue<'a>>>,
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
            if !canonical_int64(&s.0) {
                return Err(format!(
                    "intValue {:?} is not a 64-bit integer as the Python reader spells it",
                    s.0
                ));
            }
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
    kvs: Option<&'b Vec<Obj<KeyValue<'_>>>>,
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

/// Whether `t` is an int64 written as the Python reader writes it back (`str(int(t))`): an
/// optional minus, no leading zeros, no "-0", within range. Anything else goes to that reader.
pub fn canonical_int64(t: &str) -> bool {
    let digits = t.strip_prefix('-').unwrap_or(t);
    let well_formed = match digits.as_bytes() {
        [] => false,
        [b'0'] => digits.len() == t.len(),
        [b'0', ..] => false,
        d => d.iter().all(u8::is_ascii_digit),
    };
    well_formed && t.parse::<i64>().is_ok()
}

fn parse_time(text: Option<&str>, what: &str) -> Result<i64, String> {
    match text {
        None => Ok(0),
        // ASCII digits with an optional minus, as the Python reader takes them (Rust also takes "+5")
        Some(t)
            if t.strip_prefix('-')
                .unwrap_or(t)
                .bytes()
                .all(|b| b.is_ascii_digit()) =>
        {
            t.parse::<i64>()
                .map_err(|_| format!("{what} {t:?} is not a 64-bit integer"))
        }
        Some(t) => Err(format!("{what} {t:?} is not a 64-bit integer")),
    }
}

const EVEN_BITS: u64 = 0x5555_5555_5555_5555;

/// The positions of escaped bytes in a 64-byte block, given its backslashes (simdjson's
/// branchless odd-backslash-run rule, as sonic-rs uses it); `prev` carries an escape across blocks.
#[inline(always)]
fn escaped(prev: &mut u64, backslash: u64) -> u64 {
    if backslash == 0 {
        return std::mem::take(prev);
    }
    let backslash = backslash & !*prev;
    let follows_escape = (backslash << 1) | *prev;
    let odd_sequence_starts = backslash & !EVEN_BITS & !follows_escape;
    let (sequences_starting_on_even_bits, overflow) = odd_sequence_starts.overflowing_add(backslash);
    *prev = overflow as u64;
    let invert_mask = sequences_starting_on_even_bits << 1;
    (EVEN_BITS ^ invert_mask) & follows_escape
}

/// The bit masks of one 64-byte block, one bit per byte.
#[derive(Default)]
struct Masks {
    quote: u64,
    backslash: u64,
    /// `{` or `[` (they differ only in bit 0x20, so one compare finds both)
    open: u64,
    /// `}` or `]`
    close: u64,
    /// `e` or `E`
    exp: u64,
}

/// How one 64-byte block becomes bit masks, and the in-string mask from the unescaped quotes
/// (bit i set when the quotes at or below i are odd).
trait Blocks {
    fn masks(block: &[u8; 64]) -> Masks;
    fn prefix_xor(x: u64) -> u64;
}

/// Any target: SSE2 compares on x86_64 (part of its baseline), bytes one by one elsewhere.
struct Portable;

impl Blocks for Portable {
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn masks(block: &[u8; 64]) -> Masks {
        use std::arch::x86_64::*;
        let mut m = Masks::default();
        // SAFETY: SSE2 is part of x86_64; the loads read 4 x 16 bytes of a 64-byte array
        unsafe {
            let (quote, backslash) = (_mm_set1_epi8(b'"' as i8), _mm_set1_epi8(b'\\' as i8));
            let (open, close) = (_mm_set1_epi8(b'{' as i8), _mm_set1_epi8(b'}' as i8));
            let (exp, case) = (_mm_set1_epi8(b'e' as i8), _mm_set1_epi8(0x20));
            for i in 0..4 {
                let v = _mm_loadu_si128(block.as_ptr().add(16 * i) as *const __m128i);
                let folded = _mm_or_si128(v, case);
                let bits = |x: __m128i| (_mm_movemask_epi8(x) as u16 as u64) << (16 * i);
                m.quote |= bits(_mm_cmpeq_epi8(v, quote));
                m.backslash |= bits(_mm_cmpeq_epi8(v, backslash));
                m.open |= bits(_mm_cmpeq_epi8(folded, open));
                m.close |= bits(_mm_cmpeq_epi8(folded, close));
                m.exp |= bits(_mm_cmpeq_epi8(folded, exp));
            }
        }
        m
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    fn masks(block: &[u8; 64]) -> Masks {
        let mut m = Masks::default();
        for (i, &c) in block.iter().enumerate() {
            let bit = 1u64 << i;
            match c | 0x20 {
                b'{' => m.open |= bit,
                b'}' => m.close |= bit,
                b'e' => m.exp |= bit,
                _ => {}
            }
            match c {
                b'"' => m.quote |= bit,
                b'\\' => m.backslash |= bit,
                _ => {}
            }
        }
        m
    }

    #[inline(always)]
    fn prefix_xor(mut x: u64) -> u64 {
        x ^= x << 1;
        x ^= x << 2;
        x ^= x << 4;
        x ^= x << 8;
        x ^= x << 16;
        x ^= x << 32;
        x
    }
}

/// x86_64 with AVX2, POPCNT and PCLMULQDQ (checked at run time): two loads per block, the
/// in-string mask as one carry-less multiply.
#[cfg(target_arch = "x86_64")]
struct Avx2;

#[cfg(target_arch = "x86_64")]
impl Blocks for Avx2 {
    #[inline(always)]
    fn masks(block: &[u8; 64]) -> Masks {
        use std::arch::x86_64::*;
        let mut m = Masks::default();
        // SAFETY: only reached through scan_avx2, entered after the CPU features were detected
        unsafe {
            let (quote, backslash) = (_mm256_set1_epi8(b'"' as i8), _mm256_set1_epi8(b'\\' as i8));
            let (open, close) = (_mm256_set1_epi8(b'{' as i8), _mm256_set1_epi8(b'}' as i8));
            let (exp, case) = (_mm256_set1_epi8(b'e' as i8), _mm256_set1_epi8(0x20));
            for i in 0..2 {
                let v = _mm256_loadu_si256(block.as_ptr().add(32 * i) as *const __m256i);
                let folded = _mm256_or_si256(v, case);
                let bits = |x: __m256i| (_mm256_movemask_epi8(x) as u32 as u64) << (32 * i);
                m.quote |= bits(_mm256_cmpeq_epi8(v, quote));
                m.backslash |= bits(_mm256_cmpeq_epi8(v, backslash));
                m.open |= bits(_mm256_cmpeq_epi8(folded, open));
                m.close |= bits(_mm256_cmpeq_epi8(folded, close));
                m.exp |= bits(_mm256_cmpeq_epi8(folded, exp));
            }
        }
        m
    }

    #[inline(always)]
    fn prefix_xor(x: u64) -> u64 {
        use std::arch::x86_64::*;
        // SAFETY: as above (PCLMULQDQ detected)
        unsafe {
            let product = _mm_clmulepi64_si128(_mm_set_epi64x(0, x as i64), _mm_set1_epi8(-1), 0);
            _mm_cvtsi128_si64(product) as u64
        }
    }
}

/// What the pre-scan of a line found.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    Fine,
    /// objects and arrays nested deeper than the bound
    TooDeep,
    /// something the Python reader's JSON parser (orjson) refuses where the native parser does
    /// not look (in fields it skips): a number that overflows a double (1e400), a run of 64+
    /// digits, or a \uD800-\uDFFF escape (orjson refuses lone surrogates;
    /// the collector, Go, never writes such an escape at all)
    Refused,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt,pclmulqdq")]
unsafe fn scan_avx2(line: &[u8], max: usize) -> Scan {
    scan::<Avx2>(line, max)
}

/// The pre-scan of one line: how deep its objects and arrays nest (brackets inside strings do
/// not count; it stops at the first level past `max`), and whether it holds what the Python
/// reader's parser refuses. No recursion: 64 bytes at a time as bit masks; the depth moves by
/// the brackets' counts, and a block's brackets are walked one by one only when it could pass
/// `max`. Exact for every prefix that is valid JSON, which is all the parser descends into.
pub fn scan_line(line: &[u8], max: usize) -> Scan {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("popcnt")
        && std::is_x86_feature_detected!("pclmulqdq")
    {
        // SAFETY: the features scan_avx2 is compiled for are present
        return unsafe { scan_avx2(line, max) };
    }
    scan::<Portable>(line, max)
}

/// Whether `line`'s objects and arrays nest at most `max` deep (see scan_line).
pub fn nesting_within(line: &[u8], max: usize) -> bool {
    scan_line(line, max) != Scan::TooDeep
}

/// An `e`/`E` outside strings at `at` (in true, false, or a number's exponent): whether it ends
/// a number that overflows a double (orjson refuses it; one that underflows reads as 0 there).
/// The number is parsed as Rust reads it, correctly rounded as orjson does.
#[inline(never)]
fn long_exponent(line: &[u8], at: usize) -> bool {
    let is_mantissa = |c: &u8| c.is_ascii_digit() || matches!(c, b'.' | b'-');
    let start = at - line[..at].iter().rev().take_while(|c| is_mantissa(c)).count();
    let rest = &line[at + 1..];
    let sign = usize::from(matches!(rest.first(), Some(b'+' | b'-')));
    let end = at + 1 + sign + rest[sign..].iter().take_while(|c| c.is_ascii_digit()).count();
    if start == at {
        return false; // true, false: no mantissa
    }
    std::str::from_utf8(&line[start..end])
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
        .is_some_and(f64::is_infinite)
}

/// A backslash at `at` that starts a \uD800-\uDFFF escape (either case).
#[inline(never)]
fn surrogate_escape(line: &[u8], at: usize) -> bool {
    // \uD000-\uD7FF are characters (Hangul among them), not surrogates
    matches!(line.get(at + 1..at + 4), Some([b'u', d, e])
        if d | 0x20 == b'd' && matches!(e, b'8' | b'9' | b'a'..=b'f' | b'A'..=b'F'))
}

#[inline(always)]
fn scan<B: Blocks>(line: &[u8], max: usize) -> Scan {
    let (mut depth, mut in_string, mut escape) = (0usize, 0u64, 0u64);
    let mut refused = false;
    let mut tail = [b' '; 64];
    for (n, chunk) in line.chunks(64).enumerate() {
        let block: &[u8; 64] = match chunk.try_into() {
            Ok(full) => full,
            Err(_) => {
                tail[..chunk.len()].copy_from_slice(chunk);
                &tail
            }
        };
        let m = B::masks(block);
        let escapes = escaped(&mut escape, m.backslash);
        let quotes = m.quote & !escapes;
        let inside = B::prefix_xor(quotes) ^ in_string;
        in_string = ((inside as i64) >> 63) as u64;
        if !refused {
            // looked at byte by byte, being rare: e/E outside strings (true, false, exponents)
            // and the backslashes that start an escape (a surrogate escape?)
            let valid = if chunk.len() == 64 {
                u64::MAX
            } else {
                (1u64 << chunk.len()) - 1
            };
            let mut look = ((m.exp & !inside) | (m.backslash & !escapes)) & valid;
            while look != 0 && !refused {
                let at = 64 * n + look.trailing_zeros() as usize;
                refused = if line[at] == b'\\' {
                    surrogate_escape(line, at)
                } else {
                    long_exponent(line, at)
                };
                look &= look - 1;
            }
            // 64 bytes outside strings without a quote: a long number? (never so in OTLP lines)
            if m.quote == 0 && inside == 0 && chunk.len() == 64 {
                refused = chunk.iter().all(u8::is_ascii_digit);
            }
        }
        let opens = m.open & !inside;
        let closes = m.close & !inside;
        let n_open = opens.count_ones() as usize;
        if depth + n_open <= max {
            depth = (depth + n_open).saturating_sub(closes.count_ones() as usize);
            continue;
        }
        let mut bits = opens | closes;
        while bits != 0 {
            let bit = bits & bits.wrapping_neg();
            if opens & bit != 0 {
                depth += 1;
                if depth > max {
                    return Scan::TooDeep;
                }
            } else {
                depth = depth.saturating_sub(1);
            }
            bits &= bits - 1;
        }
    }
    if refused {
        Scan::Refused
    } else {
        Scan::Fine
    }
}

fn add_line(spans: &mut Spans, line: &[u8]) -> Result<(), String> {
    let limits = spans.limits;
    if line.len() > limits.max_record {
        return Err(format!(
            "line of {} bytes is over {} (max_record_bytes)",
            line.len(),
            limits.max_record
        ));
    }
    match scan_line(line, limits.depth()) {
        Scan::Fine => {}
        Scan::TooDeep => {
            return Err(format!(
                "nested deeper than {} levels (max_depth)",
                limits.depth()
            ))
        }
        Scan::Refused => {
            return Err("a number that may overflow a double, or a surrogate (D800-DFFF) escape".into())
        }
    }
    let doc: Obj<Line> = sonic_rs::from_slice(line).map_err(|e| e.to_string())?;
    let rss = doc.0.resource_spans.ok_or("no resourceSpans")?;
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

/// Parses a whole buffer of JSON lines (blank lines skipped) with the default limits.
pub fn parse(data: &[u8], threads: usize) -> Result<Spans, String> {
    parse_with(data, threads, Limits::default())
}

/// Parses a whole buffer of JSON lines (blank lines skipped), split at line ends into `threads`
/// chunks parsed at once; an error names the first bad line (or the first past a limit).
pub fn parse_with(data: &[u8], threads: usize, limits: Limits) -> Result<Spans, String> {
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
    parse_chunks(&chunks, limits, |spans, &(chunk, first_line)| {
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
pub(crate) mod tests {
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

    /// A small deterministic generator (no crates: proptest is not available offline).
    pub(crate) struct XorShift(pub u64);

    impl XorShift {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    fn deep_line(levels: usize) -> String {
        let nest = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        LINE.replace(
            "\"scope\":{\"name\":\"x\"}",
            &format!("\"scope\":{{\"x\":{nest}}}"),
        )
    }

    #[test]
    fn deep_nesting_in_an_unknown_field_errors_cleanly() {
        // 100,000 levels overflowed the stack in sonic-rs's recursive skip (a segfault)
        for levels in [65, 10_000, 100_000] {
            let line = deep_line(levels);
            for threads in [1, 2] {
                let text = format!("{LINE}\n{line}\n{LINE}\n");
                let err = parse(text.as_bytes(), threads).err().unwrap();
                assert!(err.starts_with("line 2:") && err.contains("max_depth"), "{err}");
            }
        }
        // within the bound it parses (the unknown field is skipped)
        assert_eq!(parse(deep_line(40).as_bytes(), 1).unwrap().len(), 1);
        // a limit above MAX_NATIVE_DEPTH is capped: the line is declined, never recursed into
        let lax = Limits {
            max_depth: 1_000_000,
            ..Limits::default()
        };
        assert!(parse_with(deep_line(50_000).as_bytes(), 1, lax).is_err());
        // objects count as well as arrays
        let objects = format!("{}1{}", "{\"a\":".repeat(5000), "}".repeat(5000));
        let line = LINE.replace("\"scope\":{\"name\":\"x\"}", &format!("\"scope\":{objects}"));
        assert!(parse(line.as_bytes(), 1).err().unwrap().contains("max_depth"));
    }

    #[test]
    fn nesting_ignores_brackets_in_strings_and_escapes() {
        assert!(nesting_within(br#"{"a":"[[[[[[[[[["}"#, 2));
        assert!(nesting_within(br#"{"a":"\"[[[[[[[[\\"}"#, 2));
        assert!(!nesting_within(br#"{"a":"\\",[[[]]]}"#, 3));
        assert!(nesting_within(br#"{"a":[[]]}"#, 3));
        assert!(!nesting_within(br#"{"a":[[[]]]}"#, 3));
        // unterminated strings and a trailing backslash end the scan without reading past the line
        assert!(nesting_within(br#"{"a":"abc\"#, 1));
        assert!(nesting_within(b"\"", 0));
        assert!(nesting_within(b"\"\\", 0));
    }

    /// The plain byte-by-byte reading of the same rule: the deepest level reached before the
    /// first byte where the JSON cannot go on (a close without an open, a backslash outside a
    /// string: the parser stops there), and whether the whole line was free of such bytes.
    fn max_depth_reference(line: &[u8]) -> (usize, bool) {
        let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
        for &c in line {
            if in_string {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                b'}' | b']' if depth == 0 => return (deepest, false),
                b'}' | b']' => depth -= 1,
                b'\\' => return (deepest, false),
                _ => {}
            }
        }
        (deepest, true)
    }

    #[test]
    fn the_block_scan_agrees_with_a_byte_by_byte_scan() {
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        let mut checked = 0;
        for _ in 0..20_000 {
            let mut line = Vec::new();
            let mut open = 0usize;
            for _ in 0..rng.below(120) {
                match rng.below(7) {
                    0 | 1 => {
                        line.push([b'[', b'{'][rng.below(2)]);
                        open += 1;
                    }
                    2 if open > 0 => {
                        line.push([b']', b'}'][rng.below(2)]);
                        open -= 1;
                    }
                    3 => {
                        // a string with brackets, quotes behind runs of backslashes, across blocks
                        line.push(b'"');
                        for _ in 0..rng.below(90) {
                            match rng.below(6) {
                                // an escape pair: runs of \\ and escaped quotes across blocks
                                0 | 1 => line.extend([b'\\', [b'"', b'\\', b'n', b'['][rng.below(4)]]),
                                // rarely a lone backslash: the string may end early (invalid after)
                                2 if rng.below(20) == 0 => line.push(b'\\'),
                                3 => line.push([b'[', b'{', b']', b'}'][rng.below(4)]),
                                _ => line.push(b'a'),
                            }
                        }
                        line.push(b'"');
                    }
                    _ => line.extend(std::iter::repeat_n(b' ', rng.below(70))),
                }
            }
            let (deepest, consistent) = max_depth_reference(&line);
            for max in [deepest.saturating_sub(1), deepest, deepest + 1, 3] {
                let within = nesting_within(&line, max);
                assert_eq!(
                    scan_line(&line, max),
                    scan::<Portable>(&line, max),
                    "the two block scans differ"
                );
                let text = String::from_utf8_lossy(&line);
                // the parser never descends past the first bad byte: what is before it is always caught
                assert!(
                    deepest <= max || !within,
                    "missed depth {deepest} > {max}: {text}"
                );
                if consistent {
                    assert_eq!(within, deepest <= max, "{text}");
                }
            }
            checked += consistent as usize;
        }
        assert!(checked > 10_000);
    }

    #[test]
    fn int_values_and_times_only_in_the_python_readers_spelling() {
        for ok in ["0", "7", "-7", "9223372036854775807", "-9223372036854775808"] {
            assert!(canonical_int64(ok), "{ok}");
        }
        for bad in [
            "",
            "-",
            "-0",
            "007",
            "+5",
            " 5",
            "5 ",
            "1e3",
            "9223372036854775808",
            "٣",
            "abc",
        ] {
            assert!(!canonical_int64(bad), "{bad}");
        }
        let huge = LINE.replace("{\"intValue\":\"7\"}", "{\"intValue\":\"18446744073709551616\"}");
        assert!(parse(huge.as_bytes(), 1).err().unwrap().contains("intValue"));
        let plus = LINE.replace("\"startTimeUnixNano\":\"10\"", "\"startTimeUnixNano\":\"+10\"");
        assert!(parse(plus.as_bytes(), 1)
            .err()
            .unwrap()
            .contains("startTimeUnixNano"));
        let zeros = LINE.replace("\"startTimeUnixNano\":\"10\"", "\"startTimeUnixNano\":\"010\"");
        assert_eq!(parse(zeros.as_bytes(), 1).unwrap().start[0], 10); // int("010") == 10 there too
    }

    #[test]
    fn what_the_python_parser_refuses_is_declined() {
        for refused in [
            r#"{"x":1e400}"#,
            r#"{"x":[1.8E+308]}"#,
            r#"{"x":"\ud800"}"#,
            r#"{"x":"a\uDFFFb"}"#,
            r#"{"x":"\ud83d\ude00"}"#, // a valid pair, declined all the same (the collector writes UTF-8)
        ] {
            assert_eq!(scan_line(refused.as_bytes(), 64), Scan::Refused, "{refused}");
        }
        let digits = format!(r#"{{"x":{}}}"#, "9".repeat(130));
        assert_eq!(scan_line(digits.as_bytes(), 64), Scan::Refused);
        for fine in [
            r#"{"x":1e30,"y":true,"z":false}"#,
            r#"{"x":1e+100,"y":-2.5E245,"z":1e-400,"w":1.7976931348623157e308}"#, // as orjson reads them
            r#"{"x":"1e400 in a string","y":"\\ud800 is text"}"#,
            r#"{"x":"\u00e9\n"}"#,
            r#"{"x":12345678901234567890123456789012345678901234567890}"#,
        ] {
            assert_eq!(scan_line(fine.as_bytes(), 64), Scan::Fine, "{fine}");
        }
        let line = LINE.replace("\"scope\":{\"name\":\"x\"}", "\"scope\":{\"x\":1e999}");
        assert!(parse(line.as_bytes(), 1).err().unwrap().contains("overflow"));
        let line = LINE.replace("\"status\":{}", "\"status\":[0]");
        assert!(
            parse(line.as_bytes(), 1).err().unwrap().contains("object"),
            "a struct as an array"
        );
    }

    #[test]
    fn limits_decline_the_buffer_with_the_reason() {
        let small = Limits {
            max_name: 2,
            ..Limits::default()
        };
        let err = parse_with(LINE.as_bytes(), 1, small).err().unwrap();
        assert!(err.contains("max_name_bytes"), "{err}");
        let small = Limits {
            max_value: 2,
            ..Limits::default()
        };
        let err = parse_with(LINE.as_bytes(), 1, small).err().unwrap();
        assert!(err.contains("max_attribute_bytes"), "{err}");
        let small = Limits {
            max_record: LINE.len() - 1,
            ..Limits::default()
        };
        let text = format!("{LINE}\n{LINE}\n");
        let err = parse_with(text.as_bytes(), 2, small).err().unwrap();
        assert!(
            err.starts_with("line 1:") && err.contains("max_record_bytes"),
            "{err}"
        );
        let fits = Limits {
            max_record: LINE.len(),
            ..Limits::default()
        };
        assert_eq!(parse_with(text.as_bytes(), 2, fits).unwrap().len(), 2);
    }

    #[test]
    fn every_truncation_is_an_error_or_a_result_never_a_panic() {
        let text = format!("{LINE}\n{LINE}\n");
        for cut in 0..text.len() {
            for threads in [1, 2] {
                match parse(&text.as_bytes()[..cut], threads) {
                    Ok(s) => assert!(s.len() <= 2),
                    Err(e) => assert!(e.starts_with("line "), "{e}"),
                }
            }
        }
    }

    #[test]
    fn generated_mutations_never_panic() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let base = format!("{LINE}\n{LINE}\n");
        let noise = b"{}[]\",:\\0123456789abcdefxyz \n\t\x00\xff\xc3";
        let mut errors = 0;
        for case in 0..20_000 {
            let mut b = base.clone().into_bytes();
            for _ in 0..=rng.below(4) {
                let at = rng.below(b.len());
                match rng.below(5) {
                    0 => b[at] ^= 1 << rng.below(8),
                    1 => b[at] = noise[rng.below(noise.len())],
                    2 => {
                        let end = (at + rng.below(40)).min(b.len());
                        b.drain(at..end);
                    }
                    3 => {
                        let what = [b'[', b'{'][rng.below(2)];
                        let n = rng.below(300);
                        b.splice(at..at, std::iter::repeat_n(what, n));
                    }
                    _ => b.truncate(at),
                }
                if b.is_empty() {
                    break;
                }
            }
            match parse(&b, 1 + case % 2) {
                Ok(s) => assert!(s.len() <= 2),
                Err(_) => errors += 1,
            }
        }
        assert!(
            errors > 1000,
            "the mutations should break most buffers ({errors})"
        );
    }
}
