//! The event-mode critical-path walk (analysis/critical_path.py `walk` with gaps split), per
//! delivery, with the time of each (delivery, label) summed as the walk goes.

use std::cmp::Reverse;

use crate::forest::{clip, parents_first, Children, EventTree};
/// One row per (walker, label) on the walker's path, ordered by walker then label.
#[derive(Default, Debug, PartialEq)]
pub struct PathSums {
    pub walker: Vec<i64>,
    pub label: Vec<i32>,
    pub total: Vec<i64>, // ns on the path
    pub first: Vec<i64>, // start of the label's earliest section
    pub path: Vec<i64>,  // per walker: ns of its whole path (its rows' totals summed)
    pub rows: Vec<u32>,  // per walker: how many rows it has
}

impl PathSums {
    /// The parts one after another. The first part was made with room for all of them (see
    /// walk_all), so appending moves only the later parts' rows, into pages not touched yet.
    pub fn concat(parts: Vec<PathSums>) -> PathSums {
        let mut parts = parts.into_iter();
        let mut out = parts.next().unwrap_or_default();
        for mut p in parts {
            out.walker.append(&mut p.walker);
            out.label.append(&mut p.label);
            out.total.append(&mut p.total);
            out.first.append(&mut p.first);
            out.path.append(&mut p.path);
            out.rows.append(&mut p.rows);
        }
        out
    }
}

/// The tree the walk climbs: clipped times, and per span the children it can have waited on
/// (reached, started before it ended, not a PRODUCER's CONSUMER, not attached by a link), each
/// list ordered by (end, start descending, index) so the last child ending by `t` is found by
/// binary search.
struct SyncTree<'a> {
    parent: &'a [i64],
    cs: Vec<i64>,
    ce: Vec<i64>,
    kids: Children,
}

impl<'a> SyncTree<'a> {
    fn new(t: &EventTree<'a>) -> Self {
        let order = parents_first(t.parent);
        let (cs, ce, reach) = clip(t, &order);
        drop(order);
        let mut kids = Children::new(t.parent, |c| {
            let p = t.parent[c] as usize;
            reach[c] && cs[c] < ce[p] && !t.linked_or_consumer(p, c)
        });
        for i in 0..t.parent.len() {
            let list = kids.of_mut(i);
            if list.len() > 1 {
                list.sort_unstable_by_key(|&c| (ce[c as usize], Reverse(cs[c as usize]), c));
            }
        }
        SyncTree {
            parent: t.parent,
            cs,
            ce,
            kids,
        }
    }
}

/// Labels: `hop[span]` for a span's own time, `n_hops + hop` of the next section for a gap.
pub struct Labels<'a> {
    pub hop: &'a [i32],
    pub n_hops: i32,
    pub n_labels: usize,
}

/// Walk every target's path (one walker per target, in order) over `threads` threads; the rows
/// are in walker order.
pub fn event_path_sums(
    t: &EventTree,
    labels: &Labels,
    targets: &[i64],
    threads: usize,
) -> Result<PathSums, String> {
    t.check()?;
    let n = t.parent.len();
    if labels.hop.len() != n {
        return Err(format!("hop holds {} values for {n} spans", labels.hop.len()));
    }
    if let Some(w) = targets.iter().position(|&s| s < 0 || s >= n as i64) {
        return Err(format!(
            "targets[{w}] = {} is not a span index below {n}",
            targets[w]
        ));
    }
    if labels.n_hops < 1 || 2 * labels.n_hops as usize > labels.n_labels {
        return Err(format!(
            "{} hops need {} labels, not {}",
            labels.n_hops,
            2 * labels.n_hops,
            labels.n_labels
        ));
    }
    if let Some(&h) = labels.hop.iter().find(|&&h| h < 0 || h >= labels.n_hops) {
        return Err(format!("hop code {h} is not below the {} hops", labels.n_hops));
    }
    let tree = SyncTree::new(t);
    let threads = threads.clamp(1, 64).min(targets.len().max(1));
    let per = targets.len().div_ceil(threads).max(1);
    let tree = &tree;
    let parts: Vec<Result<PathSums, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = targets
            .chunks(per)
            .enumerate()
            .map(|(k, chunk)| {
                // the first part gets room for every walker's rows: the others are appended to it
                let room = if k == 0 { targets.len() } else { chunk.len() };
                s.spawn(move || walk_all(tree, labels, chunk, k * per, room))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a walk thread panicked"))
            .collect()
    });
    Ok(PathSums::concat(parts.into_iter().collect::<Result<_, _>>()?))
}

/// The walks from `targets`, which are walkers `first_walker..`, with room reserved for the
/// rows of `room` walkers.
fn walk_all(
    tree: &SyncTree,
    labels: &Labels,
    targets: &[i64],
    first_walker: usize,
    room: usize,
) -> Result<PathSums, String> {
    let (cs, ce) = (&tree.cs, &tree.ce);
    let mut total = vec![0i64; labels.n_labels];
    let mut first = vec![i64::MAX; labels.n_labels];
    let mut touched: Vec<usize> = Vec::new();
    // about 16 labels per path: reserved, so 15 M rows are not copied by repeated growth
    let rows = 16 * room;
    let mut out = PathSums {
        walker: Vec::with_capacity(rows),
        label: Vec::with_capacity(rows),
        total: Vec::with_capacity(rows),
        first: Vec::with_capacity(rows),
        path: Vec::with_capacity(room),
        rows: Vec::with_capacity(room),
    };
    let max_steps = 2 * tree.parent.len() + 2;
    for (w, &target) in targets.iter().enumerate() {
        let mut add = |label: i32, a: i64, b: i64| {
            let l = label as usize;
            if first[l] == i64::MAX {
                touched.push(l);
            }
            total[l] += b - a;
            first[l] = first[l].min(a);
        };
        let mut cur = target as usize;
        let mut t = ce[cur];
        let mut inclusive = true;
        let mut prev: i32 = -1;
        let mut steps = 0usize;
        loop {
            let kids = tree.kids.of(cur);
            let pos = if inclusive {
                kids.partition_point(|&c| ce[c as usize] <= t)
            } else {
                kids.partition_point(|&c| ce[c as usize] < t)
            };
            let lfc = pos.checked_sub(1).map(|k| kids[k] as usize);
            let end_cur = ce[cur];
            let a = lfc.map_or(cs[cur], |c| ce[c]);
            let own_b = t.min(end_cur);
            let gap_a = a.max(end_cur);
            if t > gap_a {
                add(labels.n_hops + prev, gap_a, t);
            }
            if own_b > a {
                prev = labels.hop[cur];
                add(prev, a, own_b);
            }
            let next = lfc.map_or(tree.parent[cur], |c| c as i64);
            t = a;
            inclusive = lfc.is_some();
            if next < 0 {
                break;
            }
            cur = next as usize;
            steps += 1;
            if steps > max_steps {
                return Err(format!(
                    "the walk from span {target} did not end after {steps} steps"
                ));
            }
        }
        touched.sort_unstable();
        out.path.push(touched.iter().map(|&l| total[l]).sum());
        out.rows.push(touched.len() as u32);
        for &l in &touched {
            out.walker.push((first_walker + w) as i64);
            out.label.push(l as i32);
            out.total.push(total[l]);
            out.first.push(first[l]);
            total[l] = 0;
            first[l] = i64::MAX;
        }
        touched.clear();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// root 0 [0, 100] with a child 1 [10, 30]; span 2 [120, 140] attached to the root by a link
    /// only (so the root never waits on it), and 2's child 3 [130, 150], the delivery.
    #[test]
    fn path_through_a_link_splits_the_gap() {
        let parent = [-1, 0, 0, 2];
        let span_parent = [-1, 0, -1, 2];
        let start = [0, 10, 120, 130];
        let end = [100, 30, 140, 150];
        let kind = [1i8, 1, 1, 1];
        let tree = EventTree {
            parent: &parent,
            span_parent: &span_parent,
            start: &start,
            end: &end,
            kind: &kind,
        };
        let hop = [0, 1, 2, 3];
        let labels = Labels {
            hop: &hop,
            n_hops: 4,
            n_labels: 8,
        };
        let sums = event_path_sums(&tree, &labels, &[3], 1).unwrap();
        // 3 [130,150] ← 2 [120,130] ← wait:2 [100,120] ← root [30,100] ← a [10,30] ← root [0,10]
        assert_eq!(sums.label, vec![0, 1, 2, 3, 6]);
        assert_eq!(sums.total, vec![80, 20, 10, 20, 20]);
        assert_eq!(sums.first, vec![0, 10, 120, 130, 100]);
        assert_eq!(sums.total.iter().sum::<i64>(), 150);
    }

    #[test]
    fn threads_give_the_same_rows() {
        let parent = [-1, 0, 1, -1, 3, 3];
        let start = [0, 5, 6, 0, 1, 2];
        let end = [10, 9, 8, 10, 3, 9];
        let kind = [1i8; 6];
        let tree = EventTree {
            parent: &parent,
            span_parent: &parent,
            start: &start,
            end: &end,
            kind: &kind,
        };
        let hop = [0, 1, 2, 0, 1, 2];
        let labels = Labels {
            hop: &hop,
            n_hops: 3,
            n_labels: 6,
        };
        let one = event_path_sums(&tree, &labels, &[2, 5, 4, 0], 1).unwrap();
        let two = event_path_sums(&tree, &labels, &[2, 5, 4, 0], 2).unwrap();
        assert_eq!(one, two);
        assert_eq!(one.walker.iter().filter(|&&w| w == 3).count(), 3); // 0 ← 1 ← 2 as walked from 0
    }

    #[test]
    fn bad_parents_are_named() {
        let parent = [-1, 5];
        let times = [0, 1];
        let kind = [1i8, 1];
        let tree = EventTree {
            parent: &parent,
            span_parent: &parent,
            start: &times,
            end: &times,
            kind: &kind,
        };
        let labels = Labels {
            hop: &[0, 0],
            n_hops: 1,
            n_labels: 2,
        };
        let err = event_path_sums(&tree, &labels, &[1], 1).unwrap_err();
        assert!(err.contains("event_parent[1] = 5"), "{err}");
    }
}
