//! Span forests as flat arrays: child lists and a parents-first order, and what one pass in
//! that order computes (the root above each span, clock-skew shifts, clipped times).
//!
//! Spans are indices `0..n`; `parent[i]` is a span index or -1. A span whose parent chain never
//! reaches a root (a cycle) is never reached, exactly as in `analysis/tree.py`.

/// `kind` codes (analysis/spans.py KIND_CODES)
pub const PRODUCER: i8 = 4;
pub const CONSUMER: i8 = 5;

/// Child lists (CSR): the children of span `i` are `order[lo[i]..lo[i + 1]]`, in index order.
pub struct Children {
    pub lo: Vec<u32>,
    pub order: Vec<u32>,
}

impl Children {
    /// Child lists of the spans for which `member` holds (and that have a parent).
    pub fn new(parent: &[i64], member: impl Fn(usize) -> bool) -> Self {
        let n = parent.len();
        let mut lo = vec![0u32; n + 1];
        for (i, &p) in parent.iter().enumerate() {
            if p >= 0 && member(i) {
                lo[p as usize + 1] += 1;
            }
        }
        for i in 0..n {
            lo[i + 1] += lo[i];
        }
        let mut fill = lo[..n].to_vec();
        let mut order = vec![0u32; lo[n] as usize];
        for (i, &p) in parent.iter().enumerate() {
            if p >= 0 && member(i) {
                let slot = &mut fill[p as usize];
                order[*slot as usize] = i as u32;
                *slot += 1;
            }
        }
        Children { lo, order }
    }

    pub fn of(&self, i: usize) -> &[u32] {
        &self.order[self.lo[i] as usize..self.lo[i + 1] as usize]
    }

    pub fn of_mut(&mut self, i: usize) -> &mut [u32] {
        let (a, b) = (self.lo[i] as usize, self.lo[i + 1] as usize);
        &mut self.order[a..b]
    }
}

/// Every parent index is -1 or a span, and the spans fit the u32 indices used here.
pub fn check_parents(parent: &[i64], what: &str) -> Result<(), String> {
    let n = parent.len();
    if n >= u32::MAX as usize {
        return Err(format!("{n} spans: more than this kernel indexes"));
    }
    match parent.iter().position(|&p| p < -1 || p >= n as i64) {
        Some(i) => Err(format!(
            "{what}[{i}] = {} is not -1 or a span index below {n}",
            parent[i]
        )),
        None => Ok(()),
    }
}

/// The spans reachable from a root (parent -1), breadth first: every parent before its children.
pub fn parents_first(parent: &[i64]) -> Vec<u32> {
    let kids = Children::new(parent, |_| true);
    let mut out: Vec<u32> = (0..parent.len() as u32)
        .filter(|&i| parent[i as usize] < 0)
        .collect();
    let mut k = 0;
    while k < out.len() {
        let i = out[k] as usize;
        out.extend_from_slice(kids.of(i));
        k += 1;
    }
    out
}

/// The root above each span (itself for a root), -1 for spans no root reaches.
pub fn roots(parent: &[i64], order: &[u32]) -> Vec<i64> {
    let mut top = vec![-1i64; parent.len()];
    for &c in order {
        let c = c as usize;
        top[c] = if parent[c] < 0 {
            c as i64
        } else {
            top[parent[c] as usize]
        };
    }
    top
}

/// The event tree's spans: its parents, the spans' own parent ids, times and kinds, hosts.
pub struct EventTree<'a> {
    pub parent: &'a [i64], // event parent: the parent span, else a same-trace linked span
    pub span_parent: &'a [i64], // the parent span only (-1 where the event parent is a link)
    pub start: &'a [i64],
    pub end: &'a [i64],
    pub kind: &'a [i8],
}

impl EventTree<'_> {
    pub fn check(&self) -> Result<(), String> {
        let n = self.parent.len();
        for (name, len) in [
            ("span_parent", self.span_parent.len()),
            ("start", self.start.len()),
            ("end", self.end.len()),
            ("kind", self.kind.len()),
        ] {
            if len != n {
                return Err(format!("{name} holds {len} values for {n} spans"));
            }
        }
        check_parents(self.parent, "event_parent")?;
        check_parents(self.span_parent, "parent")
    }

    /// The edge from the span's event parent `p` to `c` is asynchronous for waiting purposes:
    /// a PRODUCER's CONSUMER, or a span attached only through a link.
    pub fn linked_or_consumer(&self, p: usize, c: usize) -> bool {
        (self.kind[p] == PRODUCER && self.kind[c] == CONSUMER) || self.span_parent[c] != p as i64
    }
}

/// Jaeger's clock-skew adjuster on the event tree (analysis/clock_skew.py has the rules):
/// (shift per span, whether the span's own clock was corrected).
pub fn skew_deltas(t: &EventTree, host: &[i32], order: &[u32]) -> (Vec<i64>, Vec<bool>) {
    let n = t.parent.len();
    let mut delta = vec![0i64; n];
    let mut corrected = vec![false; n];
    for &c in order {
        let c = c as usize;
        let Ok(p) = usize::try_from(t.parent[c]) else {
            continue;
        };
        if host[c] == host[p] {
            delta[c] = delta[p];
            continue;
        }
        let (ps, pe) = (t.start[p] + delta[p], t.end[p] + delta[p]);
        let (s, e) = (t.start[c], t.end[c]);
        let to_start = if s < ps { ps - s } else { 0 };
        let own = if t.linked_or_consumer(p, c) || s >= pe {
            to_start
        } else if s >= ps && e <= pe {
            0
        } else if e - s > pe - ps {
            to_start
        } else {
            // centred in the parent; floor division, as numpy's // does
            ps + (pe - ps - (e - s)).div_euclid(2) - s
        };
        delta[c] = own;
        corrected[c] = own != 0;
    }
    (delta, corrected)
}

/// Starts clipped to the parent's (clipped) start, ends to the span's clipped start; and which
/// spans a root reaches. Unreached spans keep their times.
pub fn clip(t: &EventTree, order: &[u32]) -> (Vec<i64>, Vec<i64>, Vec<bool>) {
    let mut cs = t.start.to_vec();
    let mut ce = t.end.to_vec();
    let mut reach = vec![false; t.parent.len()];
    for &c in order {
        let c = c as usize;
        reach[c] = true;
        if let Ok(p) = usize::try_from(t.parent[c]) {
            cs[c] = cs[c].max(cs[p]);
            ce[c] = ce[c].max(cs[c]);
        }
    }
    (cs, ce, reach)
}
