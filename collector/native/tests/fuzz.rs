//! Property tests of the native readers (issue #22): whatever the bytes, a reader returns Ok or
//! a named error (a panic inside a parse thread would otherwise only show as an Err, so that is
//! checked for too), never recurses with the input's nesting, never allocates from a length the
//! input claims, applies its limits, and reads back exactly what a valid export holds.
//!
//! The expected columns come from a model written here independently of the crate (its own JSON
//! writer and protobuf encoder), so a wrong field tag or a misread value shows as a difference.
//! `PROPTEST_CASES` overrides every property's case count (e.g. for a long run).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hopscope_otlp_native::columns::{KvCol, StrCol};
use hopscope_otlp_native::spans::{Limits, Spans, MAX_NATIVE_DEPTH};
use hopscope_otlp_native::{otlp_json, otlp_proto};
use proptest::prelude::*;
use proptest::sample::Index;

// ---------------------------------------------------------------------------------------------
// The largest single allocation of the whole test binary: a reader that sized a buffer from a
// length prefix would show here (thread stacks are mmap-ed, not counted).

struct Watch;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

/// Far above anything these small inputs need, far below what a forged length claims.
const ALLOC_BOUND: usize = 64 << 20;

/// Refused outright past this: a forged 2^60 claim must not take the machine's memory down
/// before the check below reports it (the refusal aborts the binary, a failure too).
const ALLOC_REFUSED: usize = 1 << 30;

// SAFETY: forwards to System unchanged apart from refusing (null) what is over ALLOC_REFUSED.
unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        if l.size() > ALLOC_REFUSED {
            return std::ptr::null_mut();
        }
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        if l.size() > ALLOC_REFUSED {
            return std::ptr::null_mut();
        }
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        if new_size > ALLOC_REFUSED {
            return std::ptr::null_mut();
        }
        System.realloc(p, l, new_size)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
}

#[global_allocator]
static ALLOCATOR: Watch = Watch;

fn assert_no_huge_allocation() {
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(largest < ALLOC_BOUND, "an allocation of {largest} bytes");
}

fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        // a failing case of nested spans shrinks slowly in a debug build; enough to read it
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The model: what an export holds, written as JSON lines or framed protobuf by this file.

#[derive(Clone, Debug)]
enum Val {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    Bytes(Vec<u8>),
    /// arrayValue / kvlistValue: valid OTLP the native reader declines
    Array,
    Kvlist,
}

#[derive(Clone, Debug)]
struct Attr {
    key: String,
    val: Val,
}

#[derive(Clone, Debug)]
enum Parent {
    Absent,
    Empty,
    Zeros,
    Id([u8; 8]),
}

#[derive(Clone, Debug)]
struct GenSpan {
    trace: [u8; 16],
    span: [u8; 8],
    parent: Parent,
    name: String,
    kind: i64,
    status: Option<i64>,
    start: i64,
    end: i64,
    attrs: Vec<Attr>,
    links: Vec<([u8; 16], [u8; 8])>,
    /// upper-case hex ids in JSON (the reader lower-cases them)
    upper: bool,
}

#[derive(Clone, Debug)]
struct GenResource {
    attrs: Vec<Attr>,
    scopes: Vec<Vec<GenSpan>>,
}

/// One JSON line, or one protobuf frame.
#[derive(Clone, Debug)]
struct Record {
    resources: Vec<GenResource>,
    /// which non-ASCII characters of the JSON strings are written as \u escapes
    escapes: u8,
}

const SPAN_LIFTED: [&str; 4] = [
    "hopscope.workload",
    "hopscope.event_id",
    "hopscope.hop",
    "hopscope.derived",
];
const RESOURCE_LIFTED: [&str; 3] = ["service.name", "hopscope.stack", "hopscope.workload"];

fn nonzero<const N: usize>() -> impl Strategy<Value = [u8; N]> {
    any::<[u8; N]>().prop_map(|mut id| {
        if id.iter().all(|&b| b == 0) {
            id[N - 1] = 1;
        }
        id
    })
}

fn text() -> impl Strategy<Value = String> {
    // mostly ASCII, with any non-control character (multi-byte UTF-8) and JSON's escapes
    prop_oneof![
        3 => "[a-z0-9 ._\"\\\\/-]{0,12}",
        2 => "\\PC{0,10}",
        1 => "[\\x00-\\x1f\u{7f}\u{2028}\u{e9}\u{d55c}\u{1f600}]{0,6}",
    ]
}

fn finite_double() -> impl Strategy<Value = f64> {
    use proptest::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO
}

fn val(unread: bool) -> BoxedStrategy<Val> {
    let scalars = prop_oneof![
        text().prop_map(Val::Str),
        any::<i64>().prop_map(Val::Int),
        finite_double().prop_map(Val::Double),
        any::<bool>().prop_map(Val::Bool),
        prop::collection::vec(any::<u8>(), 0..10).prop_map(Val::Bytes),
    ];
    if unread {
        prop_oneof![10 => scalars, 1 => Just(Val::Array), 1 => Just(Val::Kvlist)].boxed()
    } else {
        scalars.boxed()
    }
}

fn attr(lifted: &'static [&'static str], unread: bool) -> BoxedStrategy<Attr> {
    let key = prop_oneof![4 => text(), 1 => prop::sample::select(lifted).prop_map(String::from)];
    let plain = (key, val(unread), any::<u8>()).prop_map(move |(key, val, dice)| {
        // a double under a lifted key declines the whole buffer: kept rare, or few buffers read
        let val = match val {
            Val::Double(_) if lifted.contains(&key.as_str()) && dice > 8 => Val::Str("x".into()),
            v => v,
        };
        Attr { key, val }
    });
    let derived = prop::sample::select(&["true", " YES ", "no", "1", "0", ""][..]).prop_map(|f| Attr {
        key: "hopscope.derived".into(),
        val: Val::Str(f.into()),
    });
    prop_oneof![8 => plain, 1 => derived].boxed()
}

fn parent() -> impl Strategy<Value = Parent> {
    prop_oneof![
        1 => Just(Parent::Absent),
        1 => Just(Parent::Empty),
        1 => Just(Parent::Zeros),
        3 => nonzero::<8>().prop_map(Parent::Id),
    ]
}

fn span(unread: bool) -> impl Strategy<Value = GenSpan> {
    (
        (nonzero::<16>(), nonzero::<8>(), parent(), text(), 0i64..6),
        (
            prop::option::of(0i64..3),
            0..=i64::MAX,
            any::<u64>(),
            any::<bool>(),
        ),
        prop::collection::vec(attr(&SPAN_LIFTED, unread), 0..6),
        prop::collection::vec((nonzero::<16>(), nonzero::<8>()), 0..3),
    )
        .prop_map(
            |((trace, span, parent, name, kind), (status, start, dur, upper), attrs, links)| {
                let end = start.saturating_add((dur % (1 << 40)) as i64);
                GenSpan {
                    trace,
                    span,
                    parent,
                    name,
                    kind,
                    status,
                    start,
                    end,
                    attrs,
                    links,
                    upper,
                }
            },
        )
}

fn record(unread: bool) -> impl Strategy<Value = Record> {
    let resource = (
        prop::collection::vec(attr(&RESOURCE_LIFTED, unread), 0..4),
        prop::collection::vec(prop::collection::vec(span(unread), 0..4), 0..3),
    )
        .prop_map(|(attrs, scopes)| GenResource { attrs, scopes });
    (prop::collection::vec(resource, 0..3), any::<u8>())
        .prop_map(|(resources, escapes)| Record { resources, escapes })
}

fn records(unread: bool) -> impl Strategy<Value = Vec<Record>> {
    prop::collection::vec(record(unread), 1..4)
}

// ---- JSON, written here

fn json_str(out: &mut String, s: &str, escapes: u8) {
    out.push('"');
    for (i, c) in s.chars().enumerate() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            // a BMP character as an escape, either case (never a surrogate pair: declined)
            c if !c.is_ascii() && (c as u32) < 0x1_0000 && (i as u32 + escapes as u32).is_multiple_of(3) => {
                if escapes & 1 == 0 {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\u{:04X}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn hex(id: &[u8], upper: bool) -> String {
    id.iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect()
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn json_attrs(out: &mut String, attrs: &[Attr], esc: u8) {
    out.push('[');
    for (i, a) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"key\":");
        json_str(out, &a.key, esc);
        out.push_str(",\"value\":{");
        match &a.val {
            Val::Str(s) => {
                out.push_str("\"stringValue\":");
                json_str(out, s, esc);
            }
            Val::Int(n) => out.push_str(&format!("\"intValue\":\"{n}\"")),
            // Debug is the shortest spelling that reads back to the same bits
            Val::Double(x) => out.push_str(&format!("\"doubleValue\":{x:?}")),
            Val::Bool(b) => out.push_str(&format!("\"boolValue\":{b}")),
            Val::Bytes(b) => out.push_str(&format!("\"bytesValue\":\"{}\"", b64(b))),
            Val::Array => out.push_str(r#""arrayValue":{"values":[{"stringValue":"a"}]}"#),
            Val::Kvlist => out.push_str(r#""kvlistValue":{"values":[{"key":"k","value":{"intValue":"1"}}]}"#),
        }
        out.push_str("}}");
    }
    out.push(']');
}

fn json_span(out: &mut String, s: &GenSpan, esc: u8) {
    out.push_str(&format!(
        "{{\"traceId\":\"{}\",\"spanId\":\"{}\",",
        hex(&s.trace, s.upper),
        hex(&s.span, s.upper)
    ));
    match &s.parent {
        Parent::Absent => {}
        Parent::Empty => out.push_str("\"parentSpanId\":\"\","),
        Parent::Zeros => out.push_str("\"parentSpanId\":\"0000000000000000\","),
        Parent::Id(p) => out.push_str(&format!("\"parentSpanId\":\"{}\",", hex(p, s.upper))),
    }
    out.push_str("\"traceState\":\"\",\"flags\":1,\"name\":");
    json_str(out, &s.name, esc);
    out.push_str(&format!(
        ",\"kind\":{},\"startTimeUnixNano\":\"{}\",\"endTimeUnixNano\":\"{}\",\"attributes\":",
        s.kind, s.start, s.end
    ));
    json_attrs(out, &s.attrs, esc);
    out.push_str(
        ",\"droppedAttributesCount\":0,\"events\":[{\"name\":\"e\",\"timeUnixNano\":\"5\"}],\"links\":[",
    );
    for (i, (t, sp)) in s.links.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"traceId\":\"{}\",\"spanId\":\"{}\"}}",
            hex(t, s.upper),
            hex(sp, !s.upper)
        ));
    }
    out.push(']');
    match s.status {
        None => {}
        Some(0) => out.push_str(",\"status\":{}"),
        Some(c) => out.push_str(&format!(",\"status\":{{\"message\":\"m\",\"code\":{c}}}")),
    }
    out.push('}');
}

fn json_line(r: &Record) -> String {
    let esc = r.escapes;
    let mut out = String::from("{\"resourceSpans\":[");
    for (i, res) in r.resources.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"resource\":{\"attributes\":");
        json_attrs(&mut out, &res.attrs, esc);
        out.push_str("},\"scopeSpans\":[");
        for (j, scope) in res.scopes.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str("{\"scope\":{\"name\":\"s\",\"version\":\"1\"},\"spans\":[");
            for (k, s) in scope.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                json_span(&mut out, s, esc);
            }
            out.push_str("]}");
        }
        out.push_str("],\"schemaUrl\":\"\"}");
    }
    out.push_str("]}");
    out
}

/// Lines joined as the exporter writes them, with the blank lines and CRLFs a file may have.
fn json_buffer(recs: &[Record], blank: bool, crlf: bool) -> Vec<u8> {
    let mut out = String::new();
    for r in recs {
        out.push_str(&json_line(r));
        out.push_str(if crlf { "\r\n" } else { "\n" });
        if blank {
            out.push_str(" \n");
        }
    }
    out.into_bytes()
}

// ---- protobuf, encoded here (OTLP's trace.proto field numbers)

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_varint(out: &mut Vec<u8>, field: u64, v: u64) {
    varint(out, field << 3);
    varint(out, v);
}

fn field_fixed64(out: &mut Vec<u8>, field: u64, v: u64) {
    varint(out, (field << 3) | 1);
    out.extend_from_slice(&v.to_le_bytes());
}

fn field_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn proto_any(v: &Val) -> Vec<u8> {
    let mut out = Vec::new();
    match v {
        Val::Str(s) => field_bytes(&mut out, 1, s.as_bytes()),
        Val::Bool(b) => field_varint(&mut out, 2, *b as u64),
        Val::Int(n) => field_varint(&mut out, 3, *n as u64),
        Val::Double(x) => field_fixed64(&mut out, 4, x.to_bits()),
        Val::Array => {
            let mut inner = Vec::new();
            field_bytes(&mut inner, 1, &proto_any(&Val::Str("a".into())));
            field_bytes(&mut out, 5, &inner);
        }
        Val::Kvlist => {
            let mut kv = Vec::new();
            field_bytes(&mut kv, 1, b"k");
            field_bytes(&mut kv, 2, &proto_any(&Val::Int(1)));
            let mut inner = Vec::new();
            field_bytes(&mut inner, 1, &kv);
            field_bytes(&mut out, 6, &inner);
        }
        Val::Bytes(b) => field_bytes(&mut out, 7, b),
    }
    out
}

fn proto_attrs(out: &mut Vec<u8>, field: u64, attrs: &[Attr]) {
    for a in attrs {
        let mut kv = Vec::new();
        field_bytes(&mut kv, 1, a.key.as_bytes());
        field_bytes(&mut kv, 2, &proto_any(&a.val));
        field_bytes(out, field, &kv);
    }
}

fn proto_span(s: &GenSpan) -> Vec<u8> {
    let mut out = Vec::new();
    field_bytes(&mut out, 1, &s.trace);
    field_bytes(&mut out, 2, &s.span);
    field_bytes(&mut out, 3, b"k=v"); // trace_state, not read
    match &s.parent {
        Parent::Absent => {}
        Parent::Empty => field_bytes(&mut out, 4, b""),
        Parent::Zeros => field_bytes(&mut out, 4, &[0; 8]),
        Parent::Id(p) => field_bytes(&mut out, 4, p),
    }
    field_bytes(&mut out, 5, s.name.as_bytes());
    if s.kind != 0 {
        field_varint(&mut out, 6, s.kind as u64);
    }
    field_fixed64(&mut out, 7, s.start as u64);
    field_fixed64(&mut out, 8, s.end as u64);
    proto_attrs(&mut out, 9, &s.attrs);
    field_varint(&mut out, 10, 3); // dropped_attributes_count
    let mut event = Vec::new();
    field_fixed64(&mut event, 1, 5);
    field_bytes(&mut event, 2, b"e");
    field_bytes(&mut out, 11, &event);
    for (t, sp) in &s.links {
        let mut link = Vec::new();
        field_bytes(&mut link, 1, t);
        field_bytes(&mut link, 2, sp);
        field_bytes(&mut out, 13, &link);
    }
    if let Some(code) = s.status {
        let mut st = Vec::new();
        field_bytes(&mut st, 2, b"m");
        if code != 0 {
            field_varint(&mut st, 3, code as u64);
        }
        field_bytes(&mut out, 15, &st);
    }
    out
}

fn proto_request(r: &Record) -> Vec<u8> {
    let mut req = Vec::new();
    for res in &r.resources {
        let mut rs = Vec::new();
        let mut resource = Vec::new();
        proto_attrs(&mut resource, 1, &res.attrs);
        field_bytes(&mut rs, 1, &resource);
        for scope in &res.scopes {
            let mut ss = Vec::new();
            field_bytes(&mut ss, 1, b"\x0a\x01s"); // the scope, not read
            for s in scope {
                field_bytes(&mut ss, 2, &proto_span(s));
            }
            field_bytes(&mut rs, 2, &ss);
        }
        field_bytes(&mut rs, 3, b"https://schema"); // schema_url, not read
        field_bytes(&mut req, 1, &rs);
    }
    req
}

fn frame(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
}

fn proto_buffer(recs: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in recs {
        frame(&mut out, &proto_request(r));
    }
    out
}

// ---- the columns, as the model expects them and as the crate fills them

#[derive(Debug, PartialEq)]
enum Cell {
    Text(String),
    /// the bits: -0.0 and NaN compare as written
    Double(u64),
}

#[derive(Debug, PartialEq)]
struct Row {
    trace: String,
    span: String,
    parent: Option<String>,
    name: String,
    kind: u8,
    status: u8,
    start: i64,
    end: i64,
    derived: u8,
    lifted: [Option<String>; 3],
    attrs: Attrs,
    links: Vec<(String, String)>,
    resource: u32,
}

#[derive(Debug, PartialEq)]
struct ResRow {
    lifted: [Option<String>; 3],
    attrs: Attrs,
}

#[derive(Debug, PartialEq, Default)]
struct Table {
    spans: Vec<Row>,
    resources: Vec<ResRow>,
}

fn value_text(v: &Val) -> Option<String> {
    match v {
        Val::Str(s) => Some(s.clone()),
        Val::Int(n) => Some(n.to_string()),
        Val::Bool(b) => Some(b.to_string()),
        Val::Bytes(b) => Some(b64(b)),
        Val::Double(_) | Val::Array | Val::Kvlist => None,
    }
}

type Attrs = Vec<(String, Cell)>;

/// The lifted keys' last values and the other attributes, or the reason the buffer is declined.
fn split<const N: usize>(
    attrs: &[Attr],
    lifted_keys: [&str; N],
    limits: &Limits,
) -> Result<([Option<String>; N], Attrs), &'static str> {
    let mut lifted: [Option<String>; N] = std::array::from_fn(|_| None);
    let mut rest = Vec::new();
    for a in attrs {
        if matches!(a.val, Val::Array | Val::Kvlist) {
            return Err("a value of a kind this reader does not read");
        }
        let text = value_text(&a.val);
        if a.key.len() > limits.max_value || text.as_ref().is_some_and(|t| t.len() > limits.max_value) {
            return Err("(max_attribute_bytes)");
        }
        match (lifted_keys.iter().position(|k| *k == a.key), text, &a.val) {
            (Some(_), None, _) => return Err("is a double"),
            (Some(i), Some(t), _) => lifted[i] = Some(t),
            (None, Some(t), _) => rest.push((a.key.clone(), Cell::Text(t))),
            (None, None, v) => {
                let Val::Double(x) = v else { unreachable!() };
                rest.push((a.key.clone(), Cell::Double(x.to_bits())))
            }
        }
    }
    Ok((lifted, rest))
}

/// What the readers must produce from `recs`, in their order of checks.
fn expected(recs: &[Record], limits: &Limits) -> Result<Table, &'static str> {
    let mut t = Table::default();
    for r in recs {
        for res in &r.resources {
            let (lifted, attrs) = split(&res.attrs, RESOURCE_LIFTED, limits)?;
            t.resources.push(ResRow { lifted, attrs });
            let row = t.resources.len() as u32 - 1;
            for s in res.scopes.iter().flatten() {
                if s.name.len() > limits.max_name {
                    return Err("(max_name_bytes)");
                }
                let (lifted, attrs) = split(&s.attrs, SPAN_LIFTED, limits)?;
                let [workload, event_id, hop, derived] = lifted;
                let derived =
                    derived.is_some_and(|d| matches!(d.trim().to_lowercase().as_str(), "true" | "1" | "yes"));
                t.spans.push(Row {
                    trace: hex(&s.trace, false),
                    span: hex(&s.span, false),
                    parent: match s.parent {
                        Parent::Id(p) => Some(hex(&p, false)),
                        _ => None,
                    },
                    name: s.name.clone(),
                    kind: s.kind as u8,
                    status: s.status.unwrap_or(0) as u8,
                    start: s.start,
                    end: s.end,
                    derived: derived as u8,
                    lifted: [workload, event_id, hop],
                    attrs,
                    links: s
                        .links
                        .iter()
                        .map(|(t, sp)| (hex(t, false), hex(sp, false)))
                        .collect(),
                    resource: row,
                });
            }
        }
    }
    Ok(t)
}

fn str_row(c: &StrCol, i: usize) -> Option<String> {
    let o = &c.offsets.0;
    assert!(o[i] <= o[i + 1], "offsets go back");
    let bytes = &c.data[o[i] as usize..o[i + 1] as usize];
    match c.valid[i] {
        0 => {
            assert!(bytes.is_empty(), "a null row with bytes");
            None
        }
        1 => Some(String::from_utf8(bytes.to_vec()).expect("a row that is not UTF-8")),
        v => panic!("validity byte {v}"),
    }
}

fn str_col_ok(c: &StrCol, rows: usize) {
    assert_eq!(c.valid.len(), rows);
    assert_eq!(c.offsets.0.len(), rows + 1);
    assert_eq!(
        (c.offsets.0[0], *c.offsets.0.last().unwrap() as usize),
        (0, c.data.len())
    );
}

fn kv_row(c: &KvCol, r: usize) -> Attrs {
    let (from, to) = (c.row_offsets.0[r] as usize, c.row_offsets.0[r + 1] as usize);
    (from..to)
        .map(|e| {
            let key = str_row(&c.keys, e).expect("a null key");
            let value = str_row(&c.values, e).expect("a null value");
            match c.double_pos.iter().position(|&p| p as usize == e) {
                Some(d) => {
                    assert_eq!(value, "", "a double's text placeholder");
                    (key, Cell::Double(c.double_val[d].to_bits()))
                }
                None => (key, Cell::Text(value)),
            }
        })
        .collect()
}

fn kv_col_ok(c: &KvCol, rows: usize) {
    assert_eq!(c.row_offsets.0.len(), rows + 1);
    let entries = c.keys.len();
    str_col_ok(&c.keys, entries);
    str_col_ok(&c.values, entries);
    assert_eq!(*c.row_offsets.0.last().unwrap() as usize, entries);
    assert_eq!(c.double_pos.len(), c.double_val.len());
    assert!(c.double_pos.windows(2).all(|w| w[0] < w[1]));
    assert!(c.double_pos.iter().all(|&p| (p as usize) < entries));
}

fn is_hex(b: &[u8]) -> bool {
    b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// The columns read back, after checking that they hang together (what any Ok must satisfy).
fn table(s: &Spans) -> Table {
    let n = s.len();
    let r = s.service.len();
    assert_eq!(s.trace_id.len(), 32 * n);
    assert_eq!(s.span_id.len(), 16 * n);
    assert!(is_hex(&s.trace_id) && is_hex(&s.span_id));
    for c in [&s.parent, &s.name, &s.workload, &s.event_id, &s.hop] {
        str_col_ok(c, n);
    }
    for c in [&s.service, &s.stack, &s.res_workload] {
        str_col_ok(c, r);
    }
    for v in [&s.status, &s.derived] {
        assert_eq!(v.len(), n);
    }
    assert_eq!((s.start.len(), s.end.len(), s.resource_of.len()), (n, n, n));
    assert!(s.kind.iter().all(|&k| k < 6) && s.status.iter().all(|&c| c < 3));
    assert!(s.derived.iter().all(|&d| d < 2));
    assert!(s.start.iter().zip(&s.end).all(|(a, b)| 0 <= *a && a <= b));
    assert!(s.resource_of.iter().all(|&i| (i as usize) < r));
    assert!(s.resource_of.windows(2).all(|w| w[0] <= w[1]));
    kv_col_ok(&s.attrs, n);
    kv_col_ok(&s.res_attrs, r);
    let lo = &s.link_offsets.0;
    assert_eq!(lo.len(), n + 1);
    assert_eq!(*lo.last().unwrap() as usize * 16, s.link_span.len());
    assert_eq!(s.link_trace.len(), 2 * s.link_span.len());
    assert!(is_hex(&s.link_trace) && is_hex(&s.link_span));
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    Table {
        spans: (0..n)
            .map(|i| Row {
                trace: text(&s.trace_id[32 * i..32 * i + 32]),
                span: text(&s.span_id[16 * i..16 * i + 16]),
                parent: str_row(&s.parent, i),
                name: str_row(&s.name, i).expect("a null name"),
                kind: s.kind[i],
                status: s.status[i],
                start: s.start[i],
                end: s.end[i],
                derived: s.derived[i],
                lifted: [
                    str_row(&s.workload, i),
                    str_row(&s.event_id, i),
                    str_row(&s.hop, i),
                ],
                attrs: kv_row(&s.attrs, i),
                links: (lo[i] as usize..lo[i + 1] as usize)
                    .map(|l| {
                        (
                            text(&s.link_trace[32 * l..32 * l + 32]),
                            text(&s.link_span[16 * l..16 * l + 16]),
                        )
                    })
                    .collect(),
                resource: s.resource_of[i],
            })
            .collect(),
        resources: (0..r)
            .map(|i| ResRow {
                lifted: [
                    str_row(&s.service, i),
                    str_row(&s.stack, i),
                    str_row(&s.res_workload, i),
                ],
                attrs: kv_row(&s.res_attrs, i),
            })
            .collect(),
    }
}

/// An Err must name its line (record) within the buffer, and never be a caught panic.
fn check_error(e: &str, prefix: &str, most: usize) {
    assert!(!e.contains("panicked"), "{e}");
    let n: usize = e
        .strip_prefix(prefix)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("an error without its {prefix}number: {e}"));
    assert!((1..=most).contains(&n), "{e} (of {most})");
}

fn check_json(data: &[u8], threads: usize, limits: Limits) -> Result<Table, String> {
    let got = otlp_json::parse_with(data, threads, limits);
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    match got {
        Ok(s) => Ok(table(&s)),
        Err(e) => {
            check_error(&e, "line ", lines);
            Err(e)
        }
    }
}

fn check_proto(data: &[u8], threads: usize, limits: Limits) -> Result<Table, String> {
    let got = otlp_proto::parse_with(data, threads, limits);
    match got {
        Ok(s) => Ok(table(&s)),
        Err(e) => {
            check_error(&e, "record ", data.len() / 4 + 1);
            Err(e)
        }
    }
}

fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(Limits::default()),
        (0usize..200, 0usize..4096, 0usize..64, 0usize..64).prop_map(|(d, r, v, n)| Limits {
            max_depth: d,
            max_record: r,
            max_value: v,
            max_name: n,
        }),
    ]
}

// ---- mutations

#[derive(Clone, Debug)]
enum Mutation {
    Insert(Index, Vec<u8>),
    Overwrite(Index, Vec<u8>),
    Delete(Index, usize),
    Flip(Index, u8),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let noise = prop::collection::vec(
        prop_oneof![
            any::<u8>(),
            prop::sample::select(b"{}[]\":,\\ueE+-.0123456789tfn \n\x00\xff\xc3".to_vec()),
        ],
        1..24,
    );
    prop_oneof![
        (any::<Index>(), noise.clone()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), noise).prop_map(|(i, b)| Mutation::Overwrite(i, b)),
        (any::<Index>(), 1usize..40).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(data: &mut Vec<u8>, muts: &[Mutation]) {
    for m in muts {
        let len = data.len();
        match m {
            Mutation::Insert(i, b) => {
                let at = i.index(len + 1);
                data.splice(at..at, b.iter().copied());
            }
            Mutation::Overwrite(i, b) if len > 0 => {
                let at = i.index(len);
                let end = (at + b.len()).min(len);
                data.splice(at..end, b.iter().copied());
            }
            Mutation::Delete(i, n) if len > 0 => {
                let at = i.index(len);
                data.drain(at..(at + n).min(len));
            }
            Mutation::Flip(i, bit) if len > 0 => data[i.index(len)] ^= 1 << bit,
            Mutation::Truncate(i) => data.truncate(i.index(len + 1)),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The JSON reader on arbitrary bytes, and on valid lines with arbitrary bytes spliced in.

proptest! {
    #![proptest_config(config(4_000))]

    #[test]
    fn json_arbitrary_bytes_never_panic(
        data in prop::collection::vec(
            prop_oneof![
                any::<u8>(),
                prop::sample::select(b"{}[]\":,\\eE-+.0123456789 \n".to_vec()),
            ],
            0..400,
        ),
        threads in 1usize..4,
        limits in limits(),
    ) {
        let _ = check_json(&data, threads, limits);
        assert_no_huge_allocation();
    }
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn json_spliced_lines_never_panic(
        recs in records(true),
        muts in prop::collection::vec(mutation(), 1..5),
        threads in 1usize..4,
        limits in limits(),
    ) {
        let mut data = json_buffer(&recs, false, false);
        mutate(&mut data, &muts);
        let _ = check_json(&data, threads, limits);
        assert_no_huge_allocation();
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Nesting: declined with max_depth past the bound, read within it, at any depth. The pre-scan
// and the call run on a 256 KiB stack, which a recursion per level would overflow long before
// 20,000 levels; the parse threads (PARSE_STACK) recurse in sonic-rs only up to MAX_NATIVE_DEPTH,
// which the bounds MAX_NATIVE_DEPTH and usize::MAX drawn here reach.

const BASE: &str = r#"{@0"resourceSpans":[{"resource":{@4"attributes":[{"key":"service.name","value":{@3"stringValue":"svc"}}]},"scopeSpans":[{"scope":{@1"name":"x"},"spans":[{@2"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"o[p{","kind":2,"startTimeUnixNano":"10","endTimeUnixNano":"25"}]}]}]}"#;

/// BASE with no field added.
fn base() -> String {
    (0..5).fold(BASE.to_string(), |b, s| b.replace(&format!("@{s}"), ""))
}

/// `levels` objects and arrays, each kind by one bit of `pattern` (repeating every 64 levels).
fn nest(levels: usize, pattern: u64) -> String {
    let mut open = String::with_capacity(levels * 5);
    let mut close = String::with_capacity(levels);
    for level in 0..levels {
        if pattern.rotate_right(level as u32) & 1 == 0 {
            open.push('[');
            close.push(']');
        } else {
            open.push_str("{\"a\":");
            close.push('}');
        }
    }
    // an array level holding a string with brackets, an object level a number
    open.push_str(if pattern & 1 == 0 { "\"]]}\"" } else { "0" });
    open.extend(close.chars().rev());
    open
}

/// The deepest level of objects and arrays, brackets in strings not counted.
fn depth_of(line: &[u8]) -> usize {
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
            b'}' | b']' => depth -= 1,
            _ => {}
        }
    }
    deepest
}

const SMALL_STACK: usize = 256 << 10;

/// Found by json_lines_round_trip: \uD000-\uD7FF escapes (Hangul, …) were taken for surrogates
/// and the whole buffer declined.
#[test]
fn escapes_below_the_surrogates_are_read() {
    let line = |name: &str| base().replace("o[p{", name);
    let read = otlp_json::parse(line(r"\uD55C\ud7ff\uD000").as_bytes(), 1).unwrap();
    assert_eq!(read.name.data, "\u{d55c}\u{d7ff}\u{d000}".as_bytes());
    for surrogate in [r"\ud800", r"\uDBFF", r"\uDc00", r"\udfff"] {
        let err = otlp_json::parse(line(surrogate).as_bytes(), 1).err().unwrap();
        assert!(err.contains("surrogate"), "{surrogate}: {err}");
    }
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn nesting_past_max_depth_is_declined_without_recursion(
        levels in prop_oneof![2 => 0usize..140, 1 => 0usize..=20_000],
        pattern in prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()],
        site in 0usize..5,
        max_depth in prop_oneof![
            2 => 0usize..200,
            1 => Just(64),
            1 => Just(MAX_NATIVE_DEPTH),
            1 => Just(usize::MAX),
        ],
        around in any::<bool>(),
        threads in 1usize..4,
    ) {
        let mut line = BASE.to_string();
        for s in 0..5 {
            let with = if s == site { format!("\"x\":{},", nest(levels, pattern)) } else { String::new() };
            line = line.replace(&format!("@{s}"), &with);
        }
        let total = depth_of(line.as_bytes());
        let limits = Limits { max_depth, ..Limits::default() };
        let bound = max_depth.min(MAX_NATIVE_DEPTH);
        let base = base();
        let base_depth = depth_of(base.as_bytes());
        let data = if around { format!("{base}\n{line}\n{base}\n") } else { line.clone() };
        let worker = std::thread::Builder::new().stack_size(SMALL_STACK).spawn(move || {
            let scan = otlp_json::scan_line(line.as_bytes(), bound);
            (scan, otlp_json::parse_with(data.as_bytes(), threads, limits).map(|s| s.len()))
        }).unwrap();
        let (scan, parsed) = worker.join().expect("the small-stack thread died");
        if total > bound {
            prop_assert_eq!(scan, otlp_json::Scan::TooDeep);
            let e = parsed.unwrap_err();
            // with lines around it, the first is too deep already when the base line is
            let want = if around && base_depth <= bound { "line 2:" } else { "line 1:" };
            prop_assert!(e.starts_with(want) && e.contains("(max_depth)"), "{} ({} > {})", e, total, bound);
        } else {
            prop_assert_eq!(scan, otlp_json::Scan::Fine);
            prop_assert_eq!(parsed, Ok(if around { 3 } else { 1 }));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Valid exports read back exactly, from JSON lines and from protobuf frames.

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn json_lines_round_trip(
        recs in records(false),
        threads in 1usize..5,
        blank in any::<bool>(),
        crlf in any::<bool>(),
    ) {
        let want = expected(&recs, &Limits::default());
        let got = check_json(&json_buffer(&recs, blank, crlf), threads, Limits::default());
        match want {
            Ok(want) => prop_assert_eq!(got, Ok(want)),
            Err(why) => prop_assert!(got.as_ref().is_err_and(|e| e.contains(why)), "{:?}: {}", got, why),
        }
    }

    #[test]
    fn proto_frames_round_trip(recs in records(false), threads in 1usize..5) {
        let want = expected(&recs, &Limits::default());
        let got = check_proto(&proto_buffer(&recs), threads, Limits::default());
        match want {
            Ok(want) => prop_assert_eq!(got, Ok(want)),
            Err(why) => prop_assert!(got.as_ref().is_err_and(|e| e.contains(why)), "{:?}: {}", got, why),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Protobuf frames truncated, flipped or forged: Ok or Err, and nothing sized from a claim.

proptest! {
    #![proptest_config(config(3_000))]

    #[test]
    fn proto_mutated_frames_never_panic(
        recs in records(true),
        muts in prop::collection::vec(mutation(), 1..5),
        threads in 1usize..4,
        limits in limits(),
    ) {
        let mut data = proto_buffer(&recs);
        mutate(&mut data, &muts);
        let _ = check_proto(&data, threads, limits);
        assert_no_huge_allocation();
    }

    #[test]
    fn proto_arbitrary_bytes_never_panic(
        data in prop::collection::vec(any::<u8>(), 0..300),
        threads in 1usize..4,
    ) {
        let lax = Limits { max_record: usize::MAX, ..Limits::default() };
        let _ = check_proto(&data, threads, lax);
        assert_no_huge_allocation();
    }
}

proptest! {
    #![proptest_config(config(2_000))]

    /// A length-delimited field claiming up to 2^64 bytes, at every level of the message, and a
    /// frame prefix claiming up to 4 GiB with no record bound.
    #[test]
    fn proto_forged_lengths_fail_fast(
        rec in record(false),
        claim in prop_oneof![Just(1u64 << 60), Just(u64::MAX), (1u64 << 20)..=u64::MAX],
        level in 0usize..6, // 0: in the request … 5: in an AnyValue
        field in 1u64..16,
        tail in prop::collection::vec(any::<u8>(), 0..16),
        prefix in (1u32 << 16)..=u32::MAX,
    ) {
        let lax = Limits { max_record: usize::MAX, ..Limits::default() };
        let mut msg = Vec::new();
        varint(&mut msg, (field << 3) | 2);
        varint(&mut msg, claim);
        msg.extend_from_slice(&tail);
        let span = rec.resources.iter().flat_map(|r| r.scopes.iter().flatten()).next();
        // innermost first: (what the message holds before the forged field, its field in the
        // next one out): AnyValue, KeyValue, Span, ScopeSpans, ResourceSpans, the request
        let chain: [(Vec<u8>, u64); 6] = [
            (Vec::new(), 2),
            (b"\x0a\x01k".to_vec(), 9),
            (span.map(proto_span).unwrap_or_default(), 2),
            (b"\x0a\x03\x0a\x01s".to_vec(), 2),
            (Vec::new(), 1),
            (Vec::new(), 0),
        ];
        let mut inner_field = None;
        for (before, field) in &chain[5 - level..] {
            let mut body = before.clone();
            match inner_field {
                None => body.extend_from_slice(&msg),
                Some(f) => field_bytes(&mut body, f, &msg),
            }
            msg = body;
            inner_field = Some(*field);
        }
        let mut data = Vec::new();
        frame(&mut data, &msg);
        let t = Instant::now();
        let got = check_proto(&data, 1, lax);
        prop_assert!(
            got.as_ref().is_err_and(|e| e.contains("not an ExportTraceServiceRequest")),
            "a forged length read as {:?}",
            got
        );
        // and a frame whose prefix claims more than follows
        let mut short = prefix.to_be_bytes().to_vec();
        short.extend_from_slice(&msg);
        let got = check_proto(&short, 2, lax);
        prop_assert!(got.as_ref().is_err_and(|e| e.contains("runs past the end")), "{:?}", got);
        if prefix as usize > Limits::default().max_record {
            let got = check_proto(&short, 1, Limits::default());
            prop_assert!(got.as_ref().is_err_and(|e| e.contains("(max_record_bytes)")), "{:?}", got);
        }
        prop_assert!(t.elapsed() < Duration::from_secs(5), "slow: {:?}", t.elapsed());
        assert_no_huge_allocation();
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Names and attributes over max_name_bytes / max_attribute_bytes. The readers do not cut them:
// the buffer is declined with the limit named (the Python reader then counts the record), and
// what they keep is whole UTF-8 within the bounds.

/// Bounds at (or within two bytes of) the size of one generated name and one attribute key or
/// value, so that they fall inside multi-byte characters as often as between them.
fn limits_near(
    recs: &[Record],
    (name, name_delta): (Index, usize),
    (value, value_delta): (Index, usize),
) -> Limits {
    let spans = || {
        recs.iter()
            .flat_map(|r| &r.resources)
            .flat_map(|r| r.scopes.iter().flatten())
    };
    let names: Vec<usize> = spans().map(|s| s.name.len()).collect();
    let attrs = recs
        .iter()
        .flat_map(|r| &r.resources)
        .flat_map(|r| r.attrs.iter().chain(spans().flat_map(|s| &s.attrs)));
    let values: Vec<usize> = attrs
        .flat_map(|a| [Some(a.key.len()), value_text(&a.val).map(|t| t.len())])
        .flatten()
        .collect();
    let near = |sizes: &[usize], i: &Index, delta: usize| {
        let size = if sizes.is_empty() {
            0
        } else {
            sizes[i.index(sizes.len())]
        };
        (size + delta).saturating_sub(2)
    };
    Limits {
        max_name: near(&names, &name, name_delta),
        max_value: near(&values, &value, value_delta),
        ..Limits::default()
    }
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn json_names_and_values_past_their_limits_are_declined(
        recs in records(false),
        name in (any::<Index>(), 0usize..5),
        value in (any::<Index>(), 0usize..5),
        threads in 1usize..3,
    ) {
        let limits = limits_near(&recs, name, value);
        let want = expected(&recs, &limits);
        let got = check_json(&json_buffer(&recs, false, false), threads, limits);
        check_limits(got, want, &limits)?;
    }

    #[test]
    fn proto_names_and_values_past_their_limits_are_declined(
        recs in records(false),
        name in (any::<Index>(), 0usize..5),
        value in (any::<Index>(), 0usize..5),
        threads in 1usize..3,
    ) {
        let limits = limits_near(&recs, name, value);
        let want = expected(&recs, &limits);
        let got = check_proto(&proto_buffer(&recs), threads, limits);
        check_limits(got, want, &limits)?;
    }
}

fn check_limits(
    got: Result<Table, String>,
    want: Result<Table, &'static str>,
    limits: &Limits,
) -> Result<(), TestCaseError> {
    match (got, want) {
        (Ok(got), Ok(want)) => {
            for row in &got.spans {
                prop_assert!(row.name.len() <= limits.max_name);
                for (k, v) in &row.attrs {
                    prop_assert!(k.len() <= limits.max_value);
                    if let Cell::Text(t) = v {
                        prop_assert!(t.len() <= limits.max_value);
                    }
                }
                for t in row.lifted.iter().flatten() {
                    prop_assert!(t.len() <= limits.max_value);
                }
            }
            prop_assert_eq!(got, want);
        }
        (Err(e), Err(why)) => prop_assert!(e.contains(why), "{} (expected {})", e, why),
        (got, want) => prop_assert!(false, "got {:?}, expected {:?}", got, want),
    }
    Ok(())
}
