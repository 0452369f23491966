"""Foreign traces — spans without any `hopscope.*` attribute — given hops, workloads, a stack
and deliveries, so the rest of the analysis runs on them unchanged.

The one place this happens is `attribute_foreign(table, label, mapping)`, called by `Run`
before `prepare()`. It only fills the span table's own columns (`trace_id`, `hop`, `stack`,
`workload` and the `hopscope.subscriber` attribute); hopscope's own traces pass through as they
were. A trace is foreign when none of its spans carries a hop or a stack.

Defaults (a mapping rule overrides each, `mapping.py`):

- **hop** = `service.name` + operation. The operation follows the OTel semantic conventions
  where the span has them: messaging (`messaging.destination.name`): "<operation type>
  <destination>" (type from `messaging.operation.type` / `messaging.operation`, else
  publish / process by kind); HTTP (`http.route`): "<method> <route>"; databases
  (`db.system.name` / `db.system`): "<system> <db.operation.name> [<db.collection.name>]", or
  "<system> <span name>". Otherwise the span name. Every name part is normalised (`normalise`).
- **workload** = the entry operation: the root span's hop, or — for a trace started by a
  message (root of kind CONSUMER) — the first CONSUMER's destination.
- **stack** = the label (`--label`, default the run directory's name).

**Messaging links across traces.** The OTel messaging conventions put a consumer in a trace
of its own, linked to the producer span. A trace whose root links to a span of another trace
is joined to that trace (it takes its trace id), so the root's link becomes its event-tree
parent (`SpanArrays.event_parent`) and one delivery's critical path crosses the broker. Only a
root's link joins: a consumer span under another span of its trace (a poll loop) keeps its
trace's root. A batch consumer linking to several producers joins them all into one event.

**Deliveries.** Each joined trace that no other trace joined under (a leaf: a consumer at the
end of the chain, or a trace that links nowhere) delivers once, at its last-ending span, named
by its root's hop (`hopscope.subscriber`): fan-out to N consumers is N deliveries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from hopscope.core.attributes import ATTR_SUBSCRIBER

from .columns import lookup_codes
from .mapping import Mapping

#: the OTel semantic-convention attributes the defaults read (current name first)
DESTINATION_KEYS = ("messaging.destination.name", "messaging.destination")
OPERATION_KEYS = ("messaging.operation.type", "messaging.operation")
ROUTE_KEYS = ("http.route",)
METHOD_KEYS = ("http.request.method", "http.method")
DB_SYSTEM_KEYS = ("db.system.name", "db.system")
DB_OPERATION_KEYS = ("db.operation.name", "db.operation")
DB_COLLECTION_KEYS = ("db.collection.name", "db.sql.table")
CONVENTION_KEYS = (
    *DESTINATION_KEYS, *OPERATION_KEYS, *ROUTE_KEYS, *METHOD_KEYS, *DB_SYSTEM_KEYS,
    *DB_OPERATION_KEYS, *DB_COLLECTION_KEYS,
)  # fmt: skip

#: a name for a span whose every name part is empty (no table or file gets an empty name)
UNNAMED = "(unnamed)"

#: the normalisation rule, in the order applied; the report's method section prints it
NORMALISATION = (
    (
        "uuid",
        re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
        "{uuid}",
    ),
    # ids and hashes: 12+ hex digits holding a digit (so a plain word like "deadbeefcafe" stays)
    ("hex", re.compile(r"(?<![0-9A-Za-z])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{12,}(?![0-9A-Za-z])"), "{hex}"),
    ("quoted", re.compile(r"'(?:[^']|'')*'"), "?"),  # SQL literals in a query used as a name
    # a number standing alone between non-alphanumerics: "/users/123" but not "v2" or "ipv4"
    ("number", re.compile(r"(?<![0-9A-Za-z])\d+(?:\.\d+)*(?![0-9A-Za-z])"), "{n}"),
)
NORMALISATION_TEXT = (
    "UUIDs → {uuid}; runs of 12 or more hex digits holding a digit → {hex}; quoted '…' literals → ?; "
    "numbers standing alone (not part of a word such as v2) → {n}; whitespace collapsed"
)


def normalise(text: str | None) -> str:
    """A span name (or destination, route) with its high-cardinality parts replaced (NORMALISATION)."""
    if not text:
        return ""
    for _, pattern, token in NORMALISATION:
        text = pattern.sub(token, text)
    return " ".join(text.split())


def _first(attrs: dict[str, str], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = attrs.get(key)
        if value:
            return value
    return None


def operation(name: str | None, kind: str | None, attrs: dict[str, str]) -> str:
    """The operation part of a default hop name (module docstring)."""
    destination = _first(attrs, DESTINATION_KEYS)
    if destination and kind in ("PRODUCER", "CONSUMER"):
        verb = _first(attrs, OPERATION_KEYS) or ("publish" if kind == "PRODUCER" else "process")
        return f"{normalise(verb)} {normalise(destination)}"
    route = _first(attrs, ROUTE_KEYS)
    if route:
        return f"{_first(attrs, METHOD_KEYS) or ''} {normalise(route)}".strip()
    system = _first(attrs, DB_SYSTEM_KEYS)
    if system:
        op = _first(attrs, DB_OPERATION_KEYS)
        if op:
            rest = " ".join(x for x in (op, _first(attrs, DB_COLLECTION_KEYS)) if x)
            return f"{system} {normalise(rest)}"
        own = normalise(name)
        return own if own.lower().startswith(system.lower()) else f"{system} {own}".strip()
    return normalise(name)


def default_hop(service: str | None, name: str | None, kind: str | None, attrs: dict[str, str]) -> str:
    return " ".join(x for x in (service or "", operation(name, kind, attrs)) if x) or UNNAMED


@dataclass
class ForeignInfo:
    """What `attribute_foreign` did, for the report's method section and the command's output."""

    label: str
    mapping: Mapping | None
    traces: int  # foreign traces as read
    joined: int  # of them, joined to another trace through a root's link
    rule_spans: list[int] = field(default_factory=list)  # per mapping rule: spans it matched
    entry_operations: list[str] = field(default_factory=list)  # the workloads, sorted
    stacks: list[str] = field(default_factory=list)  # the label, or what mapping rules named, sorted

    @property
    def unmatched_rules(self) -> list[str]:
        """One line per mapping rule that matched no span."""
        if self.mapping is None:
            return []
        return [
            f"mapping rule {i + 1} ({rule.describe()}) matched no span"
            for i, (rule, n) in enumerate(zip(self.mapping.rules, self.rule_spans, strict=True))
            if n == 0
        ]


def _strings(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)


def _lookup(col: pa.ChunkedArray, key: str, n: int) -> np.ndarray:
    codes, names = lookup_codes(col, key, n)
    return np.append(np.asarray(names, dtype=object), None)[np.where(codes >= 0, codes, len(names))]


def foreign_trace_mask(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(trace code per span, per trace code: foreign) — no span of the trace has a hop or a stack."""
    trace_code, _ = pd.factorize(_strings(table.column("trace_id")))
    own = (pc.is_valid(table.column("hop")).to_numpy(zero_copy_only=False)) | (
        pc.is_valid(table.column("stack")).to_numpy(zero_copy_only=False)
    )
    n_traces = int(trace_code.max()) + 1 if len(trace_code) else 0
    return trace_code, np.bincount(trace_code[own], minlength=n_traces) == 0


def _union_find_roots(n: int, edges: list[tuple[int, int]]) -> np.ndarray:
    """Per trace: the trace its event is joined under (child → parent edges; a chain follows through)."""
    up = list(range(n))

    def find(x: int) -> int:
        while up[x] != x:
            up[x] = up[up[x]]
            x = up[x]
        return x

    for child, parent in edges:
        a, b = find(child), find(parent)
        if a != b:
            up[a] = b
    return np.array([find(i) for i in range(n)], dtype=np.int64)


def _cross_trace_edges(
    table: pa.Table, rows: np.ndarray, trace_code: np.ndarray, is_root: np.ndarray, foreign: np.ndarray
) -> list[tuple[int, int]]:
    """(linking trace, linked trace) for each foreign root span whose link names a foreign span
    of another trace present in the table."""
    links = table.column("links").combine_chunks()
    if len(links) == 0 or links.null_count == len(links) or len(pc.list_flatten(links)) == 0:
        return []
    flat = pc.list_flatten(links)
    owner = np.asarray(pc.list_parent_indices(links).to_numpy(zero_copy_only=False), dtype=np.int64)
    linked = pd.DataFrame(
        {
            "trace_id": _strings(flat.field("trace_id")),
            "span_id": _strings(flat.field("span_id")),
            "owner": owner,
        }
    )
    linked = linked[is_root[linked["owner"].to_numpy()] & foreign[trace_code[linked["owner"].to_numpy()]]]
    if linked.empty:
        return []
    spans = pd.DataFrame(
        {
            "trace_id": _strings(table.column("trace_id")),
            "span_id": _strings(table.column("span_id")),
            "row": rows,
        }
    )
    hit = linked.merge(spans, on=["trace_id", "span_id"], how="inner")
    child, parent = trace_code[hit["owner"].to_numpy()], trace_code[hit["row"].to_numpy()]
    keep = (child != parent) & foreign[parent]
    return sorted(set(zip(child[keep].tolist(), parent[keep].tolist(), strict=True)))


def _with_attribute(col: pa.ChunkedArray, rows: np.ndarray, key: str, values: list[str]) -> pa.Array:
    """The map column with `key: value` added to each of `rows` (sorted, unique)."""
    arr = col.combine_chunks()
    n = len(arr)
    offsets = np.asarray(arr.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    counts = np.diff(offsets) * arr.is_valid().to_numpy(zero_copy_only=False)
    start = offsets[:-1]
    # entries of the kept maps, in row order, then the new entries; a stable sort by row
    # puts each new entry after its row's own
    cum = np.concatenate([[0], np.cumsum(counts)])
    old_idx = np.arange(cum[-1], dtype=np.int64) + np.repeat(start - cum[:-1], counts)
    old_rows = np.repeat(np.arange(n), counts)
    keys = pa.concat_arrays(
        [
            arr.keys.take(pa.array(old_idx, pa.int64())).cast(pa.string()),
            pa.array([key] * len(rows), pa.string()),
        ]
    )
    items = pa.concat_arrays(
        [arr.items.take(pa.array(old_idx, pa.int64())).cast(pa.string()), pa.array(values, pa.string())]
    )
    all_rows = np.concatenate([old_rows, rows])
    order = np.argsort(all_rows, kind="stable")
    new_counts = np.bincount(all_rows, minlength=n)
    new_offsets = np.concatenate([[0], np.cumsum(new_counts)]).astype(np.int32)
    take = pa.array(order, pa.int64())
    return pa.MapArray.from_arrays(pa.array(new_offsets), keys.take(take), items.take(take))


def attribute_foreign(
    table: pa.Table, label: str, mapping: Mapping | None = None
) -> tuple[pa.Table, ForeignInfo | None]:
    """The table with its foreign traces given hops, workloads, a stack, joined traces and
    deliveries (module docstring); None as info when it holds no foreign trace."""
    n = table.num_rows
    if n == 0:
        return table, None
    trace_code, foreign_trace = foreign_trace_mask(table)
    if not foreign_trace.any():
        return table, None
    foreign = foreign_trace[trace_code]
    rows = np.arange(n, dtype=np.int64)
    service = _strings(table.column("service"))
    name = _strings(table.column("name"))
    kind = np.array(
        [str(k).upper() if k is not None else None for k in _strings(table.column("kind"))], object
    )
    parent_col = table.column("parent_span_id")
    is_root = ~(pc.is_valid(parent_col).to_numpy(zero_copy_only=False)) | (
        pc.equal(parent_col.fill_null(""), "").to_numpy(zero_copy_only=False)
    )
    attr_keys = sorted(set(CONVENTION_KEYS) | (mapping.attribute_keys() if mapping else set()))
    res_keys = sorted(mapping.resource_keys()) if mapping else []
    attrs = {k: _lookup(table.column("attributes"), k, n) for k in attr_keys}
    res = {k: _lookup(table.column("resource"), k, n) for k in res_keys}

    # hops: computed once per distinct (service, name, kind, the attributes read)
    profile = pd.DataFrame(
        {"service": service, "name": name, "kind": kind, **{f"a:{k}": v for k, v in attrs.items()},
         **{f"r:{k}": v for k, v in res.items()}}
    )[foreign]  # fmt: skip
    combo = profile.groupby(list(profile.columns), dropna=False, sort=False).ngroup().to_numpy()
    _, first = np.unique(combo, return_index=True)
    rules = mapping.rules if mapping else []
    n_combos = len(first)
    combo_hop = np.empty(n_combos, dtype=object)
    combo_rules = np.zeros((n_combos, len(rules)), dtype=bool)
    # plain object arrays: a pandas row lookup per combination cost ~0.7 ms (names with a user id
    # in them make a combination per user)
    fcols = {c: profile[c].to_numpy(dtype=object) for c in profile.columns}
    for c, i in enumerate(first):
        span_attrs = {k: v for k in attr_keys if isinstance(v := fcols[f"a:{k}"][i], str)}
        svc, nm, kd = fcols["service"][i], fcols["name"][i], fcols["kind"][i]
        span = {
            "service": svc, "name": nm, "kind": kd, "attributes": span_attrs,
            "resource": {k: v for k in res_keys if isinstance(v := fcols[f"r:{k}"][i], str)},
        }  # fmt: skip
        for j, rule in enumerate(rules):
            combo_rules[c, j] = rule.matches(span)
        by_rule = next((rules[j].hop for j in range(len(rules)) if combo_rules[c, j] and rules[j].hop), None)
        combo_hop[c] = by_rule or default_hop(svc, nm, kd, span_attrs)
    frows = rows[foreign]
    hop = np.full(n, None, dtype=object)
    hop[frows] = combo_hop[combo]
    matched = np.zeros((n, len(rules)), dtype=bool)
    matched[frows] = combo_rules[combo]

    # traces joined through a root's link to another trace
    n_traces = len(foreign_trace)
    edges = _cross_trace_edges(table, rows, trace_code, is_root, foreign_trace)
    group = _union_find_roots(n_traces, edges)
    linked_into = np.zeros(n_traces, dtype=bool)
    linked_into[[p for _, p in edges]] = True

    start = table.column("start_ns").to_numpy()
    end = table.column("end_ns").to_numpy()
    spans = pd.DataFrame({"trace": trace_code, "row": rows, "start": start, "end": end, "root": is_root})
    spans = spans[foreign]
    # each original trace's root (the earliest-starting span without a parent) and last-ending span
    roots = (
        spans[spans["root"]].sort_values(["start", "row"]).drop_duplicates("trace").set_index("trace")["row"]
    )
    last = spans.sort_values(["end", "row"], ascending=[False, True]).drop_duplicates("trace")
    last = last[~linked_into[last["trace"].to_numpy()]]
    root_of = np.full(n_traces, -1, dtype=np.int64)
    root_of[roots.index.to_numpy()] = roots.to_numpy()
    leaf_traces = last["trace"].to_numpy()
    leaf_root = root_of[leaf_traces]
    delivery_rows = last["row"].to_numpy()
    delivery_names = [
        str(hop[r]) if r >= 0 else str(hop[d]) for r, d in zip(leaf_root, delivery_rows, strict=True)
    ]

    # per joined event: workload and stack
    workload_of = np.full(n_traces, None, dtype=object)
    stack_of = np.full(n_traces, label, dtype=object)
    for field_name, out in (("workload", workload_of), ("stack", stack_of)):
        setting = [j for j, rule in enumerate(rules) if getattr(rule, field_name)]
        if not setting:
            continue
        # rule order decides: the first setting rule that matches any span of the event
        best = np.full(n_traces, len(rules), dtype=np.int64)
        for j in reversed(setting):
            hit_traces = np.unique(group[trace_code[frows[matched[frows, j]]]])
            best[hit_traces] = j
        chosen = best < len(rules)
        out[chosen] = [getattr(rules[j], field_name) for j in best[chosen]]
    destination = next((attrs[k] for k in DESTINATION_KEYS if k in attrs), np.full(n, None, dtype=object))
    # each event's entry: its first trace's root, else (no span without a parent) its earliest span
    by_start = spans.sort_values(["start", "row"])
    earliest = by_start.drop_duplicates("trace")
    entry_of = root_of.copy()
    no_root = entry_of[earliest["trace"].to_numpy()] < 0
    entry_of[earliest["trace"].to_numpy()[no_root]] = earliest["row"].to_numpy()[no_root]
    events = np.flatnonzero(foreign_trace & (group == np.arange(n_traces)) & pd.isna(workload_of))
    entry = entry_of[events]
    workload_of[events] = hop[entry]
    # a trace started by a message is named by the first CONSUMER's destination
    rows_by_start = by_start["row"].to_numpy()
    consumer_rows = rows_by_start[(kind[rows_by_start] == "CONSUMER") & pd.notna(destination[rows_by_start])]
    first_consumer = np.full(n_traces, -1, dtype=np.int64)
    first_consumer[group[trace_code[consumer_rows]][::-1]] = consumer_rows[::-1]
    by_message = (kind[entry] == "CONSUMER") & (first_consumer[events] >= 0)
    names = {d: normalise(d) for d in set(destination[first_consumer[events[by_message]]])}
    for t in events[by_message]:
        workload_of[t] = names[destination[first_consumer[t]]] or workload_of[t]
    event_of_row = group[trace_code]
    # a rule's workload/stack found on any trace of a joined event names the whole event
    for out in (workload_of, stack_of):
        out[:] = out[group]

    trace_ids = _strings(table.column("trace_id"))
    first_row = np.full(n_traces, -1, dtype=np.int64)
    first_row[trace_code[::-1]] = rows[::-1]
    new_trace = np.where(foreign, trace_ids[first_row[event_of_row]], trace_ids)
    keep_hop = _strings(table.column("hop"))
    keep_stack = _strings(table.column("stack"))
    keep_work = _strings(table.column("workload"))
    out_table = table
    for col, values in (
        ("trace_id", new_trace),
        ("hop", np.where(foreign, hop, keep_hop)),
        ("stack", np.where(foreign, stack_of[event_of_row], keep_stack)),
        ("workload", np.where(foreign, workload_of[event_of_row], keep_work)),
    ):
        out_table = out_table.set_column(
            out_table.column_names.index(col), col, pa.array(list(values), pa.string())
        )
    order = np.argsort(delivery_rows, kind="stable")
    attrs_col = _with_attribute(
        table.column("attributes"), delivery_rows[order], ATTR_SUBSCRIBER, [delivery_names[i] for i in order]
    )
    out_table = out_table.set_column(out_table.column_names.index("attributes"), "attributes", attrs_col)
    info = ForeignInfo(
        label=label,
        mapping=mapping,
        traces=int(foreign_trace.sum()),
        joined=len({c for c, _ in edges}),
        rule_spans=[int(matched[:, j].sum()) for j in range(len(rules))],
        entry_operations=sorted({str(w) for w in workload_of[foreign_trace]}),
        stacks=sorted({str(x) for x in stack_of[foreign_trace]}),
    )
    return out_table, info
