"""A generated run as tables: the span table (SPAN_SCHEMA), the ledger, the manifest, the truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hopscope.core.attributes import ATTR_RUN_ID, ATTR_SUBSCRIBER
from hopscope.core.schema import LINK_TYPE, SPAN_SCHEMA

from .config import SynthConfig
from .layout import generate_pair
from .model import NS
from .shapes import default_pairs
from .truth import pair_truth

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def hex_ids(words: list[np.ndarray]) -> pa.Array:
    """Lower-case hex strings of 64-bit words, concatenated per row, built without a Python loop."""
    n = len(words[0])
    chars = np.empty((n, 16 * len(words)), dtype=np.uint8)
    for w, arr in enumerate(words):
        u = arr.astype(np.uint64)
        for i in range(16):
            chars[:, 16 * w + i] = _HEX[((u >> np.uint64(60 - 4 * i)) & np.uint64(15)).astype(np.intp)]
    width = 16 * len(words)
    offsets = pa.py_buffer((np.arange(n + 1, dtype=np.int32) * width).tobytes())
    return pa.StringArray.from_buffers(n, offsets, pa.py_buffer(chars.tobytes()))


@dataclass
class SynthRun:
    table: pa.Table  # SPAN_SCHEMA (broken spans included exactly as written to the OTLP files)
    ledger: pa.Table
    manifest: dict
    truth: dict


def _strmap(keys: list[str], cols: list[np.ndarray], n: int) -> pa.Array:
    """map<string,string> per row from parallel value columns (None values are left out)."""
    present = (
        np.column_stack([np.array([v is not None for v in c], dtype=bool) for c in cols])
        if cols
        else np.zeros((n, 0), bool)
    )
    counts = present.sum(1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    kk, vv = [], []
    for j, (k, c) in enumerate(zip(keys, cols, strict=True)):
        del j
        kk.append(np.full(len(c), k, dtype=object))
        vv.append(c)
    if not cols:
        return pa.MapArray.from_arrays(
            pa.array(offsets), pa.array([], pa.string()), pa.array([], pa.string())
        )
    karr = np.column_stack(kk)[present]
    varr = np.column_stack(vv)[present]
    return pa.MapArray.from_arrays(
        pa.array(offsets),
        pa.array(karr.tolist(), pa.string()),
        pa.array([str(v) for v in varr.tolist()], pa.string()),
    )


def generate(cfg: SynthConfig) -> SynthRun:
    rng = np.random.default_rng(cfg.seed)
    pairs = cfg.pairs or default_pairs()
    tables, ledgers = [], []
    truth: dict = {
        "pairs": {},
        "config_seed": cfg.seed,
        "events_per_pair": cfg.events,
        "warmup_events_per_pair": cfg.warmup_events,
    }
    expected: dict[str, dict[str, list[str]]] = {}
    for pi, pair in enumerate(pairs):
        res = generate_pair(pair, cfg, rng, cfg.start_ns + pi * 3_600 * 10**9)
        expected.setdefault(pair.stack, {})[pair.workload] = res.hops
        s = res.spans
        warm = np.arange(cfg.events) < cfg.warmup_events
        if cfg.warmup_events and cfg.warmup_extra_ms:
            # every span of a warm-up event but its root (index < events) comes that much later
            extra = np.int64(round(cfg.warmup_extra_ms * NS))
            late = warm[s["event"]] & (np.arange(len(s["id"])) >= cfg.events)
            s["start"] = np.where(late, s["start"] + extra, s["start"])
            s["end"] = np.where(late, s["end"] + extra, s["end"])
            res.leaf_end = np.where(warm[res.deliveries_event], res.leaf_end + extra, res.leaf_end)
        keep_rows = np.flatnonzero(~s["drop"])
        rows = np.concatenate([keep_rows, np.flatnonzero(s["dup"] & ~s["drop"])])
        m = len(rows)
        ev = s["event"][rows]
        tid_hi = rng.integers(0, 2**63, cfg.events, dtype=np.int64)
        tid_lo = rng.integers(0, 2**63, cfg.events, dtype=np.int64)
        sid = rng.integers(1, 2**63, len(s["id"]), dtype=np.int64)
        trace_ids = hex_ids([tid_hi[ev], tid_lo[ev]])
        span_ids = hex_ids([sid[rows]])
        par = s["parent"][rows]
        parent_ids = _null_where_false(par >= 0, hex_ids([sid[np.maximum(par, 0)]]))
        link = s["link"][rows].astype(np.int64)
        lt = trace_ids.to_numpy(zero_copy_only=False)
        ls = hex_ids([sid[np.maximum(link, 0)]]).to_numpy(zero_copy_only=False)
        links = pa.array(
            [
                [{"trace_id": t, "span_id": x}] if li >= 0 else []
                for t, x, li in zip(lt, ls, link.tolist(), strict=True)
            ],
            pa.list_(LINK_TYPE),
        )
        event_ids = np.char.add(f"{pair.stack}-{pair.workload}-", ev.astype(str)).astype(object)
        sub = s["subscriber"][rows]
        attrs = _strmap([ATTR_SUBSCRIBER], [sub], m)
        res_map = _strmap([ATTR_RUN_ID], [np.full(m, cfg.run_id, dtype=object)], m)
        tables.append(
            pa.table(
                {
                    "trace_id": trace_ids,
                    "span_id": span_ids,
                    "parent_span_id": parent_ids,
                    "links": links,
                    "name": pa.array(s["hop"][rows].tolist(), pa.string()),
                    "kind": pa.array(s["kind"][rows].tolist(), pa.string()),
                    "start_ns": pa.array(s["start"][rows].astype(np.int64)),
                    "end_ns": pa.array(s["end"][rows].astype(np.int64)),
                    "status": pa.array(["UNSET"] * m, pa.string()),
                    "service": pa.array(s["service"][rows].tolist(), pa.string()),
                    "stack": pa.array([pair.stack] * m, pa.string()),
                    "workload": pa.array([pair.workload] * m, pa.string()),
                    "event_id": pa.array(event_ids.tolist(), pa.string()),
                    "hop": pa.array(s["hop"][rows].tolist(), pa.string()),
                    "derived": pa.array(s["derived"][rows].astype(bool)),
                    "attributes": attrs,
                    "resource": res_map,
                    "source": pa.array(["synth"] * m, pa.string()),
                },
                schema=SPAN_SCHEMA,
            )
        )
        # ledger: one row per event; receipts = leaf end + a small known unattributed gap
        gap = np.rint(
            (cfg.unattributed_floor_ms + cfg.unattributed.sample(rng, len(res.deliveries_event))) * NS
        ).astype(np.int64)
        received = res.leaf_end + gap
        order = np.argsort(res.deliveries_event, kind="stable")
        de = res.deliveries_event[order]
        counts = np.bincount(de, minlength=cfg.events)
        offs = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        rec_struct = pa.StructArray.from_arrays(
            [pa.array(res.deliveries_sub[order].tolist(), pa.string()), pa.array(received[order])],
            names=["subscriber", "received_ns"],
        )
        receipts = pa.ListArray.from_arrays(pa.array(offs), rec_struct)
        if pair.fanout:
            exp_subs = [[f"sub-{j}" for j, mm in enumerate(res.matched) if mm[e]] for e in range(cfg.events)]
        else:
            exp_subs = [[] for _ in range(cfg.events)]
        ledgers.append(
            pa.table(
                {
                    "stack": [pair.stack] * cfg.events,
                    "workload": [pair.workload] * cfg.events,
                    "event_id": np.char.add(
                        f"{pair.stack}-{pair.workload}-", np.arange(cfg.events).astype(str)
                    ).tolist(),
                    "trace_id": hex_ids([tid_hi, tid_lo]),
                    "intended_ns": res.intended,
                    "sent_ns": res.sent,
                    "acked_ns": res.acked,
                    "ack_status": ["ok"] * cfg.events,
                    "expected_subscribers": pa.array(exp_subs, pa.list_(pa.string())),
                    "receipts": receipts,
                    "outcome": ["delivered"] * cfg.events,
                    "warmup": warm,
                    "repeat": np.clip(
                        (np.arange(cfg.events) - cfg.warmup_events)
                        * cfg.repeats
                        // max(cfg.events - cfg.warmup_events, 1),
                        0,
                        cfg.repeats - 1,
                    ),
                }
            )
        )
        truth["pairs"][f"{pair.stack}/{pair.workload}"] = pair_truth(
            pair, res, gap, measured=~warm[res.deliveries_event]
        )
    table = pa.concat_tables(tables)
    manifest = {
        "run_id": cfg.run_id,
        "synthetic": True,
        "seed": cfg.seed,
        "expected_hops": expected,
        "stacks": sorted({p.stack for p in pairs}),
        "workloads": sorted({p.workload for p in pairs}),
    }
    truth["malformed_lines"] = cfg.breakage.malformed_lines
    truth["spans_written"] = table.num_rows
    return SynthRun(table=table, ledger=pa.concat_tables(ledgers), manifest=manifest, truth=truth)


def _null_where_false(mask: np.ndarray, values: pa.Array) -> pa.Array:
    return pc.if_else(pa.array(mask), values, pa.scalar(None, pa.string()))
