//! The span index prepare() builds from the id columns (analysis/spans.py has the numpy
//! version): trace codes by first appearance, spans in (trace, span id) order with duplicate
//! ids dropped, and each span's parent and first same-trace linked span.
//!
//! Only what the readers write is accepted (lower-case hex ids of full width; parent ids
//! null, empty or hex); anything else returns None and the numpy path runs.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::ids::{hex128, hex64, StrChunk, TraceChunk};
/// The id columns: trace ids, span ids, parent span ids (one row per span), and the links
/// flattened (trace id, span id, file row of the span holding the link).
pub struct IdColumns<'a> {
    pub trace: Vec<TraceChunk<'a>>, // plain, or dictionary-encoded (as Parquet stores it)
    pub span: Vec<StrChunk<'a>>,
    pub parent: Vec<StrChunk<'a>>,
    pub link_trace: Vec<StrChunk<'a>>,
    pub link_span: Vec<StrChunk<'a>>,
    pub link_row: &'a [i64],
}

/// Per kept span in (trace, span id) order, and per trace code.
#[derive(Debug, Default, PartialEq)]
pub struct SpanIndex {
    pub keep: Vec<i64>,        // file row
    pub trace: Vec<i64>,       // trace code (first appearance in the file), ascending
    pub span_key: Vec<i64>,    // span id as a signed 64-bit key (ascending within a trace)
    pub parent: Vec<i64>,      // span index of the parent in the same trace, -1 if none found
    pub has_parent: Vec<bool>, // the span names a parent
    pub link_parent: Vec<i64>, // span index of the first same-trace linked span, -1 if none
    pub trace_lo: Vec<i64>,    // first span index of each trace
    pub trace_hi: Vec<i64>,
    pub duplicates: Vec<i64>, // dropped duplicate span ids per trace
    pub trace_hex: Vec<u8>,   // each trace's id, 32 lower-case hex digits (as it was read)
}

/// Trace ids are random, so their low bits hash well enough: no hashing work per lookup.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = ((v as u64) ^ (v >> 64) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type IdMap = HashMap<u128, u32, BuildHasherDefault<IdHasher>>;

fn rows<'a>(chunks: &'a [StrChunk<'a>]) -> impl Iterator<Item = Option<&'a [u8]>> + 'a {
    chunks.iter().flat_map(|c| (0..c.len()).map(move |i| c.get(i)))
}

fn total(chunks: &[StrChunk]) -> usize {
    chunks.iter().map(|c| c.len()).sum()
}

/// The span keys compare as the numpy path's do: the id's 64 bits read as a signed integer.
fn key(v: u64) -> i64 {
    v as i64
}

/// The whole index from one set of columns (link rows count from the first row).
pub fn index_spans(cols: &IdColumns) -> Result<Option<SpanIndex>, String> {
    let mut b = IndexBuilder::with_capacity(cols.trace.iter().map(|c| c.len()).sum());
    Ok(if b.add(cols)? { b.finish() } else { None })
}

/// The index built batch by batch (a Parquet row group at a time): each batch's ids are parsed
/// into integers as it arrives, so the id strings of the whole file never need to be held;
/// `finish` sorts and links once every row is in.
#[derive(Default)]
pub struct IndexBuilder {
    codes: IdMap,
    trace_id: Vec<u128>, // per trace code
    trace_of: Vec<u32>,  // per row: trace code
    span_key: Vec<i64>,
    parent_key: Vec<i64>,
    has_parent: Vec<bool>,
    // links to the same trace (the only ones the index uses): the row holding the link and the
    // linked span's key (None: not hex, which only matters if the linked span is looked for)
    link_row: Vec<u32>,
    link_span: Vec<Option<i64>>,
    declined: bool,
}

impl IndexBuilder {
    /// A builder with room for `rows` rows (the file's row count): growing the per-row vectors
    /// batch by batch would copy them each time they double.
    pub fn with_capacity(rows: usize) -> Self {
        IndexBuilder {
            // traces hold ~5-20 spans: a table sized for more would only be more memory to touch
            codes: HashMap::with_capacity_and_hasher(rows / 8 + 16, Default::default()),
            trace_of: Vec::with_capacity(rows),
            span_key: Vec::with_capacity(rows),
            parent_key: Vec::with_capacity(rows),
            has_parent: Vec::with_capacity(rows),
            ..Default::default()
        }
    }

    pub fn rows(&self) -> usize {
        self.trace_of.len()
    }

    /// Parse one batch; false (and every later call false) when an id is not spelled as the
    /// readers write it, so the caller takes the numpy path instead.
    pub fn add(&mut self, cols: &IdColumns) -> Result<bool, String> {
        if self.declined {
            return Ok(false);
        }
        let n: usize = cols.trace.iter().map(|c| c.len()).sum();
        for (name, len) in [
            ("span_id", total(&cols.span)),
            ("parent_span_id", total(&cols.parent)),
        ] {
            if len != n {
                return Err(format!("{name} holds {len} rows, trace_id {n}"));
            }
        }
        if total(&cols.link_trace) != cols.link_row.len() || total(&cols.link_span) != cols.link_row.len() {
            return Err("the link columns differ in length".into());
        }
        let base = self.rows();
        if base + n >= u32::MAX as usize {
            return Err(format!("{} spans: more than this kernel indexes", base + n));
        }
        // trace codes (one thread) while the span and parent ids are parsed (another)
        let (codes, keys) = (
            (&mut self.codes, &mut self.trace_id, &mut self.trace_of),
            (&mut self.span_key, &mut self.parent_key, &mut self.has_parent),
        );
        let ok = std::thread::scope(|s| {
            let keys = s.spawn(|| span_and_parent_keys(cols, keys));
            let traces = trace_codes(&cols.trace, codes);
            traces.is_some() & keys.join().expect("the id parse panicked").is_some()
        });
        if !ok || self.add_links(cols, base, n)?.is_none() {
            self.declined = true;
            return Ok(false);
        }
        Ok(true)
    }

    /// Keeps the links to the same trace; Ok(None) when a linked trace id is not hex.
    fn add_links(&mut self, cols: &IdColumns, base: usize, n: usize) -> Result<Option<()>, String> {
        let link_ids = rows(&cols.link_trace).zip(rows(&cols.link_span));
        for ((lt, ls), &row) in link_ids.zip(cols.link_row) {
            let Some(lt) = lt.and_then(hex128) else {
                return Ok(None);
            };
            let Some(row) = usize::try_from(row).ok().filter(|&r| r < n) else {
                return Err(format!("link row {row} is not below {n}"));
            };
            if lt == self.trace_id[self.trace_of[base + row] as usize] {
                self.link_row.push((base + row) as u32);
                self.link_span.push(ls.and_then(hex64).map(key));
            }
        }
        Ok(Some(()))
    }

    /// Spans in (trace, span id) order without duplicates, with their parents and links;
    /// None when a same-trace link names a span id that is not hex.
    pub fn finish(self) -> Option<SpanIndex> {
        let IndexBuilder {
            trace_id,
            trace_of,
            span_key,
            parent_key,
            has_parent: has_parent_row,
            link_row,
            link_span,
            ..
        } = self;
        let n = trace_of.len();
        let n_traces = trace_id.len();

        // spans grouped by trace (counting sort, file order kept), then by span key in each trace
        let mut bound = vec![0usize; n_traces + 1];
        for &t in &trace_of {
            bound[t as usize + 1] += 1;
        }
        for t in 0..n_traces {
            bound[t + 1] += bound[t];
        }
        let mut fill = bound[..n_traces].to_vec();
        let mut order = vec![0u32; n];
        for (row, &t) in trace_of.iter().enumerate() {
            order[fill[t as usize]] = row as u32;
            fill[t as usize] += 1;
        }
        drop(fill);
        drop(trace_of);
        // the traces in two halves of about n/2 spans, each sorted on its own thread
        let mid = bound.partition_point(|&b| b < n / 2).min(n_traces);
        let (left, right) = order.split_at_mut(bound[mid]);
        let mut out = std::thread::scope(|s| {
            let r = s.spawn(|| sort_traces(right, &bound[mid..], mid, &span_key, 0));
            // room for the right half too, so appending it moves no memory
            let mut out = sort_traces(left, &bound[..=mid], 0, &span_key, n);
            out.append(r.join().expect("the sort panicked"));
            out
        });
        drop(order);
        drop(span_key);
        let m = out.keep.len();
        let find = |t: usize, k: i64| -> i64 {
            let (lo, hi) = (out.trace_lo[t] as usize, out.trace_hi[t] as usize);
            match out.span_key[lo..hi].binary_search(&k) {
                Ok(p) => (lo + p) as i64,
                Err(_) => -1,
            }
        };
        let mut parent = Vec::with_capacity(m);
        let mut has_parent = Vec::with_capacity(m);
        for i in 0..m {
            let r = out.keep[i] as usize;
            let hp = has_parent_row[r];
            has_parent.push(hp);
            parent.push(if hp {
                find(out.trace[i] as usize, parent_key[r])
            } else {
                -1
            });
        }
        drop(parent_key);
        drop(has_parent_row);

        // links: the first one (in file order) to another span of the same trace
        let mut at = vec![u32::MAX; n]; // file row → span index (MAX: a dropped duplicate)
        for (i, &r) in out.keep.iter().enumerate() {
            at[r as usize] = i as u32;
        }
        let mut link_parent = vec![-1i64; m];
        for (&row, &ls) in link_row.iter().zip(&link_span) {
            let i = at[row as usize];
            if i == u32::MAX {
                continue;
            }
            let i = i as usize;
            let p = find(out.trace[i] as usize, ls?);
            if p >= 0 && p != i as i64 && link_parent[i] < 0 {
                link_parent[i] = p;
            }
        }
        out.parent = parent;
        out.has_parent = has_parent;
        out.link_parent = link_parent;
        out.trace_hex = trace_id.iter().flat_map(|&v| spell128(v)).collect();
        Some(out)
    }
}

/// A 128-bit id as 32 lower-case hex digits.
fn spell128(v: u128) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    std::array::from_fn(|i| DIGITS[((v >> (124 - 4 * i)) & 15) as usize])
}

/// Codes number trace ids by first appearance: the code of each row is appended to
/// `trace_of`, each new id to `trace_id`. None when an id is not lower-case hex.
fn trace_codes(chunks: &[TraceChunk], (codes, trace_id, trace_of): TraceState) -> Option<()> {
    trace_of.reserve(chunks.iter().map(|c| c.len()).sum());
    let mut code_of = |v: u128| -> u32 {
        let next = trace_id.len() as u32;
        let code = *codes.entry(v).or_insert(next);
        if code == next {
            trace_id.push(v);
        }
        code
    };
    for chunk in chunks {
        match &chunk.indices {
            None => {
                let mut prev: Option<(&[u8], u32)> = None;
                for row in 0..chunk.ids.len() {
                    let id = chunk.ids.get(row)?;
                    // a trace's spans mostly sit together: the same id as the row before needs no lookup
                    let code = match prev {
                        Some((p, code)) if p == id => code,
                        _ => code_of(hex128(id)?),
                    };
                    trace_of.push(code);
                    prev = Some((id, code));
                }
            }
            Some(ix) => {
                // each dictionary entry parsed and looked up once, when a row first uses it
                let mut local = vec![u32::MAX; chunk.ids.len()];
                for row in 0..ix.indices.len() {
                    let j = ix.get(row)?;
                    let slot = local.get_mut(j)?;
                    if *slot == u32::MAX {
                        *slot = code_of(hex128(chunk.ids.get(j)?)?);
                    }
                    trace_of.push(*slot);
                }
            }
        }
    }
    Some(())
}

type TraceState<'a> = (&'a mut IdMap, &'a mut Vec<u128>, &'a mut Vec<u32>);

type Keys<'a> = (&'a mut Vec<i64>, &'a mut Vec<i64>, &'a mut Vec<bool>);

/// Appends (span key, parent key, names a parent) per row; None when an id is not hex.
fn span_and_parent_keys(cols: &IdColumns, (span_key, parent_key, has_parent): Keys) -> Option<()> {
    let n = total(&cols.span);
    span_key.reserve(n);
    for id in rows(&cols.span) {
        span_key.push(key(hex64(id?)?));
    }
    parent_key.reserve(n);
    has_parent.reserve(n);
    for id in rows(&cols.parent) {
        match id {
            None | Some(b"") => {
                parent_key.push(0);
                has_parent.push(false);
            }
            Some(s) => {
                parent_key.push(key(hex64(s)?));
                has_parent.push(true);
            }
        }
    }
    Some(())
}

/// Traces `first_trace..` (their rows in `order`, `bound` their segment ends relative to
/// `bound[0]`): each segment sorted by span key, duplicates dropped; the output vectors are
/// made with room for `capacity` spans.
fn sort_traces(
    order: &mut [u32],
    bound: &[usize],
    first_trace: usize,
    span_key: &[i64],
    capacity: usize,
) -> SpanIndex {
    let base = bound[0];
    let n_traces = bound.len() - 1;
    let mut out = SpanIndex {
        duplicates: vec![0; n_traces],
        ..Default::default()
    };
    let capacity = capacity.max(order.len());
    out.keep = Vec::with_capacity(capacity);
    out.trace = Vec::with_capacity(capacity);
    out.span_key = Vec::with_capacity(capacity);
    for t in 0..n_traces {
        let seg = &mut order[bound[t] - base..bound[t + 1] - base];
        seg.sort_unstable_by_key(|&r| (span_key[r as usize], r));
        out.trace_lo.push(out.keep.len() as i64);
        let mut last: Option<i64> = None;
        for &r in seg.iter() {
            let k = span_key[r as usize];
            if last == Some(k) {
                out.duplicates[t] += 1;
                continue;
            }
            last = Some(k);
            out.keep.push(r as i64);
            out.trace.push((first_trace + t) as i64);
            out.span_key.push(k);
        }
        out.trace_hi.push(out.keep.len() as i64);
    }
    out
}

impl SpanIndex {
    /// Join the spans of the traces after this one's (span indices shift by this one's count).
    fn append(&mut self, mut other: SpanIndex) {
        let shift = self.keep.len() as i64;
        self.keep.append(&mut other.keep);
        self.trace.append(&mut other.trace);
        self.span_key.append(&mut other.span_key);
        self.trace_lo.extend(other.trace_lo.iter().map(|x| x + shift));
        self.trace_hi.extend(other.trace_hi.iter().map(|x| x + shift));
        self.duplicates.append(&mut other.duplicates);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(ids: &[Option<&str>]) -> Col {
        let mut data = Vec::new();
        let mut offsets = vec![0i32];
        let mut valid = vec![0u8; ids.len().div_ceil(8)];
        for (i, id) in ids.iter().enumerate() {
            if let Some(s) = id {
                data.extend_from_slice(s.as_bytes());
                valid[i / 8] |= 1 << (i % 8);
            }
            offsets.push(data.len() as i32);
        }
        (data, offsets, valid)
    }

    fn chunk<'a>(c: &'a Col) -> Vec<StrChunk<'a>> {
        vec![StrChunk {
            valid: Some(&c.2),
            bit_offset: 0,
            offsets: &c.1,
            data: &c.0,
        }]
    }

    fn plain<'a>(c: &'a Col) -> Vec<TraceChunk<'a>> {
        chunk(c)
            .into_iter()
            .map(|ids| TraceChunk { ids, indices: None })
            .collect()
    }

    type Col = (Vec<u8>, Vec<i32>, Vec<u8>);

    /// Plain trace ids, span and parent ids, and links as (trace ids, span ids, rows).
    fn id_columns<'a>(
        trace: &'a Col,
        span: &'a Col,
        parent: &'a Col,
        (lt, ls, link_row): (&'a Col, &'a Col, &'a [i64]),
    ) -> IdColumns<'a> {
        IdColumns {
            trace: plain(trace),
            span: chunk(span),
            parent: chunk(parent),
            link_trace: chunk(lt),
            link_span: chunk(ls),
            link_row,
        }
    }

    const T1: &str = "0000000000000000000000000000000b";
    const T2: &str = "0000000000000000000000000000000a";

    #[test]
    fn sorts_dedups_and_finds_parents_and_links() {
        // rows: T1 span 3 (parent 1), T2 span 9, T1 span 1 (root), T1 span 3 again, T1 span 2 (link → 1)
        let trace = col(&[Some(T1), Some(T2), Some(T1), Some(T1), Some(T1)]);
        let span = col(&[
            Some("0000000000000003"),
            Some("0000000000000009"),
            Some("0000000000000001"),
            Some("0000000000000003"),
            Some("0000000000000002"),
        ]);
        let parent = col(&[
            Some("0000000000000001"),
            None,
            Some(""),
            Some("0000000000000001"),
            Some("00000000000000ff"),
        ]);
        let lt = col(&[Some(T1), Some(T2)]);
        let ls = col(&[Some("0000000000000001"), Some("0000000000000009")]);
        let cols = id_columns(&trace, &span, &parent, (&lt, &ls, &[4, 4]));
        let ix = index_spans(&cols).unwrap().unwrap();
        assert_eq!(ix.keep, vec![2, 4, 0, 1]);
        assert_eq!(ix.trace, vec![0, 0, 0, 1]);
        assert_eq!(ix.trace_hex, [T1, T2].concat().into_bytes());
        assert_eq!(ix.duplicates, vec![1, 0]);
        assert_eq!(ix.parent, vec![-1, -1, 0, -1]); // span 2 names a missing parent: an orphan
        assert_eq!(ix.has_parent, vec![false, true, true, false]);
        assert_eq!(ix.link_parent, vec![-1, 0, -1, -1]); // the T2 link is to another trace
        assert_eq!((ix.trace_lo, ix.trace_hi), (vec![0, 3], vec![3, 4]));
    }

    #[test]
    fn batches_give_the_one_shot_index() {
        // the rows of the test above in two batches: a trace and a duplicate span across them,
        // the links in the second batch with rows counted from its start
        let rows = [
            (T1, "0000000000000003", Some("0000000000000001")),
            (T2, "0000000000000009", None),
            (T1, "0000000000000001", Some("")),
            (T1, "0000000000000003", Some("0000000000000001")),
            (T1, "0000000000000002", Some("00000000000000ff")),
        ];
        let cols_of = |r: &[(&'static str, &'static str, Option<&'static str>)]| {
            (
                col(&r.iter().map(|x| Some(x.0)).collect::<Vec<_>>()),
                col(&r.iter().map(|x| Some(x.1)).collect::<Vec<_>>()),
                col(&r.iter().map(|x| x.2).collect::<Vec<_>>()),
            )
        };
        let lt = col(&[Some(T1), Some(T2)]);
        let ls = col(&[Some("0000000000000001"), Some("0000000000000009")]);
        let none = col(&[]);
        let all = cols_of(&rows);
        let (a, b) = (cols_of(&rows[..2]), cols_of(&rows[2..]));
        let whole = index_spans(&id_columns(&all.0, &all.1, &all.2, (&lt, &ls, &[4, 4])))
            .unwrap()
            .unwrap();
        let mut builder = IndexBuilder::default();
        let first = id_columns(&a.0, &a.1, &a.2, (&none, &none, &[]));
        assert!(builder.add(&first).unwrap());
        let second = id_columns(&b.0, &b.1, &b.2, (&lt, &ls, &[2, 2]));
        assert!(builder.add(&second).unwrap());
        assert_eq!(builder.rows(), 5);
        assert_eq!(builder.finish().unwrap(), whole);
        assert_eq!(whole.link_parent, vec![-1, 0, -1, -1]);
    }

    #[test]
    fn a_link_row_beyond_its_batch_is_an_error() {
        let trace = col(&[Some(T1)]);
        let span = col(&[Some("0000000000000001")]);
        let parent = col(&[None]);
        let lt = col(&[Some(T1)]);
        let ls = col(&[Some("0000000000000001")]);
        let mut builder = IndexBuilder::default();
        let cols = id_columns(&trace, &span, &parent, (&lt, &ls, &[1]));
        assert_eq!(builder.add(&cols).unwrap_err(), "link row 1 is not below 1");
    }

    #[test]
    fn other_spellings_are_left_to_numpy() {
        let trace = col(&[Some("0000000000000000000000000000000B")]);
        let span = col(&[Some("0000000000000001")]);
        let parent = col(&[None]);
        let none = col(&[]);
        let cols = id_columns(&trace, &span, &parent, (&none, &none, &[]));
        assert_eq!(index_spans(&cols).unwrap(), None);
    }

    #[test]
    fn dictionary_trace_ids_give_the_plain_result() {
        let rows = [Some(T1), Some(T2), Some(T1)];
        let trace = col(&rows);
        let dict = col(&[Some(T2), Some(T1)]);
        let indices = [1, 0, 1];
        let span = col(&[
            Some("0000000000000001"),
            Some("0000000000000002"),
            Some("0000000000000003"),
        ]);
        let parent = col(&[None, None, Some("0000000000000001")]);
        let none = col(&[]);
        let index = |trace: Vec<TraceChunk>| {
            let cols = IdColumns {
                trace,
                span: chunk(&span),
                parent: chunk(&parent),
                link_trace: chunk(&none),
                link_span: chunk(&none),
                link_row: &[],
            };
            index_spans(&cols).unwrap().unwrap()
        };
        let ids = chunk(&dict).pop().unwrap();
        let encoded = vec![TraceChunk {
            ids,
            indices: Some(crate::ids::IndexChunk {
                valid: None,
                bit_offset: 0,
                indices: &indices,
            }),
        }];
        let want = index(plain(&trace));
        assert_eq!(want.parent, vec![-1, 0, -1]);
        assert_eq!(index(encoded), want);
    }
}
