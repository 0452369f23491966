"""The event ledger: one row per event — intended, sent, acked, every receipt — and its verdict.

After the run each event is classified from its receipts against the
subscribers its fields make it expected at:

- `misdelivered`: a subscriber that must not receive it did (checked first);
- `lost`: an expected subscriber never received it (or, with nothing
  expected, e.g. point reads, the ack was not ok);
- `duplicated`: an expected subscriber received it more than once;
- `delivered`: every expected subscriber exactly once.

Receipts for event ids this run never sent are counted (`unknown_receipts`),
not dropped silently. Warm-up events are flagged, not removed; histograms
leave them out.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from hdrh.histogram import HdrHistogram

from hopscope.core.rundir import LATENCY_HDR, LEDGER

OUTCOMES = ("delivered", "lost", "duplicated", "misdelivered")
ACK_STATUSES = ("pending", "ok", "error", "timeout")
_OK, _ERROR, _TIMEOUT = 1, 2, 3
_STATUS_CODE = {"ok": _OK, "error": _ERROR, "timeout": _TIMEOUT}

RECEIPT_TYPE = pa.struct([("subscriber", pa.string()), ("received_ns", pa.int64())])

#: HdrHistogram range in µs: 1 µs .. 1 h, 3 significant digits.
HDR_LOW_US, HDR_HIGH_US, HDR_DIGITS = 1, 3_600_000_000, 3


@dataclass
class LedgerResult:
    table: pa.Table
    counts: dict[str, int]
    unknown_receipts: int
    unknown_receipt_examples: list[str]
    histograms: dict[str, HdrHistogram] = field(default_factory=dict)
    #: The raw latencies (ns) behind each histogram: summaries are exact, not bucketed.
    samples: dict[str, np.ndarray] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "events": self.table.num_rows,
            "outcomes": self.counts,
            "unknown_receipts": self.unknown_receipts,
            "unknown_receipt_examples": self.unknown_receipt_examples,
            "latency_us": {name: latency_summary_us(v) for name, v in self.samples.items()},
        }


class Ledger:
    """Preallocated columns for a planned run; `record_*` are cheap and safe to call from any thread."""

    def __init__(
        self,
        *,
        stack: str,
        workloads: Sequence[str],
        event_ids: Sequence[str],
        intended_ns: np.ndarray,
        expected: np.ndarray,
        subscribers: Sequence[str],
        warmup: np.ndarray,
        target_rate: np.ndarray,
        keys: Sequence[str] | None = None,
    ) -> None:
        n = len(event_ids)
        if not (
            len(workloads) == n == intended_ns.size == expected.shape[0] == warmup.size == target_rate.size
        ):
            raise ValueError("ledger columns must all have one entry per event")
        if expected.shape[1] != len(subscribers):
            raise ValueError("expected mask must have one column per subscriber")
        self.stack = stack
        self.workloads = list(workloads)
        self.event_ids = list(event_ids)
        self.intended_ns = np.asarray(intended_ns, dtype=np.int64)
        self.expected = np.asarray(expected, dtype=bool)
        self.subscribers = list(subscribers)
        self.warmup = np.asarray(warmup, dtype=bool)
        self.target_rate = np.asarray(target_rate, dtype=np.float64)
        self.keys = list(keys) if keys is not None else None
        self.sent_ns = np.zeros(n, dtype=np.int64)
        self.acked_ns = np.zeros(n, dtype=np.int64)
        self.ack_status = np.zeros(n, dtype=np.int8)
        self.ack_message: dict[int, str] = {}
        self.trace_ids: list[str | None] = [None] * n
        self._index = {eid: i for i, eid in enumerate(self.event_ids)}
        if len(self._index) != n:
            raise ValueError("event ids must be unique")
        self._sub_index = {s: j for j, s in enumerate(self.subscribers)}
        self._sub_lock = threading.Lock()
        # Receipts: appended as tuples (list.append is atomic under the GIL).
        self._receipts: list[tuple[int, int, int]] = []
        self.unknown_receipts = 0
        self._unknown_examples: list[str] = []

    def __len__(self) -> int:
        return len(self.event_ids)

    # --- recording ------------------------------------------------------------------------

    def record_sent(self, i: int, sent_ns: int, trace_id: str | None) -> None:
        self.sent_ns[i] = sent_ns
        self.trace_ids[i] = trace_id

    def record_ack(self, i: int, status: str, acked_ns: int, message: str | None = None) -> None:
        if self.ack_status[i]:
            return  # first verdict wins (a late ack after a timeout does not overwrite it)
        self.ack_status[i] = _STATUS_CODE[status]
        self.acked_ns[i] = acked_ns
        if message:
            self.ack_message[i] = message

    def record_receipt(self, event_id: str, subscriber: str, received_ns: int) -> None:
        i = self._index.get(event_id)
        if i is None:
            self.unknown_receipts += 1
            if len(self._unknown_examples) < 20:
                self._unknown_examples.append(f"{subscriber}: {event_id!r}")
            return
        j = self._sub_index.get(subscriber)
        if j is None:
            with self._sub_lock:  # a subscriber the workload does not declare: every receipt is a misdelivery
                j = self._sub_index.setdefault(subscriber, len(self.subscribers))
                if j == len(self.subscribers):
                    self.subscribers.append(subscriber)
        self._receipts.append((i, j, received_ns))

    def pending(self) -> np.ndarray:
        """Indices of sent events still without an ack verdict."""
        return np.flatnonzero((self.sent_ns > 0) & (self.ack_status == 0))

    # --- verdict --------------------------------------------------------------------------

    def finalize(self) -> LedgerResult:
        n, n_subs = len(self), len(self.subscribers)
        expected = np.zeros((n, n_subs), dtype=bool)
        expected[:, : self.expected.shape[1]] = self.expected
        rec = np.asarray(self._receipts, dtype=np.int64).reshape(-1, 3)
        ev, sub, rns = rec[:, 0], rec[:, 1], rec[:, 2]
        counts = np.zeros((n, n_subs), dtype=np.int32)
        np.add.at(counts, (ev, sub), 1)
        missing = expected & (counts == 0)
        duplicate = expected & (counts > 1)
        unexpected = ~expected & (counts > 0)
        ack_ok = self.ack_status == _OK
        nothing_expected = ~expected.any(axis=1)
        outcome = np.full(n, "delivered", dtype=object)
        outcome[duplicate.any(axis=1)] = "duplicated"
        outcome[missing.any(axis=1) | (nothing_expected & ~ack_ok)] = "lost"
        outcome[unexpected.any(axis=1)] = "misdelivered"
        counts_by_outcome = {o: int((outcome == o).sum()) for o in OUTCOMES}

        names = np.asarray(self.subscribers, dtype=object)
        order = np.lexsort((rns, ev))
        receipts = pa.ListArray.from_arrays(
            _offsets(ev, n),
            pa.StructArray.from_arrays(
                [pa.array(names[sub[order]], pa.string()), pa.array(rns[order], pa.int64())],
                fields=list(RECEIPT_TYPE),
            ),
        )
        status_names = np.asarray(ACK_STATUSES, dtype=object)[self.ack_status]
        status_names[(self.ack_status == 0) & (self.sent_ns == 0)] = "error"
        table = pa.table(
            {
                "stack": pa.array([self.stack] * n, pa.string()),
                "workload": pa.array(self.workloads, pa.string()),
                "event_id": pa.array(self.event_ids, pa.string()),
                "trace_id": pa.array(self.trace_ids, pa.string()),
                "intended_ns": pa.array(self.intended_ns, pa.int64()),
                "sent_ns": pa.array(self.sent_ns, pa.int64(), mask=self.sent_ns == 0),
                "acked_ns": pa.array(self.acked_ns, pa.int64(), mask=self.acked_ns == 0),
                "ack_status": pa.array(status_names, pa.string()),
                "ack_message": pa.array([self.ack_message.get(i) for i in range(n)], pa.string()),
                "expected_subscribers": _mask_lists(expected, names),
                "receipts": receipts,
                "outcome": pa.array(outcome, pa.string()),
                "missing_subscribers": _mask_lists(missing, names),
                "duplicate_subscribers": _mask_lists(duplicate, names),
                "unexpected_subscribers": _mask_lists(unexpected, names),
                "warmup": pa.array(self.warmup, pa.bool_()),
                "target_rate": pa.array(self.target_rate, pa.float64()),
                "key": pa.array(self.keys, pa.string())
                if self.keys is not None
                else pa.nulls(n, pa.string()),
            }
        )
        samples = self._samples(ev, sub, rns, expected)
        return LedgerResult(
            table=table,
            counts=counts_by_outcome,
            unknown_receipts=self.unknown_receipts,
            unknown_receipt_examples=list(self._unknown_examples),
            histograms={name: _hist(values) for name, values in samples.items()},
            samples=samples,
        )

    def _samples(
        self, ev: np.ndarray, sub: np.ndarray, rns: np.ndarray, expected: np.ndarray
    ) -> dict[str, np.ndarray]:
        measured = ~self.warmup
        out: dict[str, np.ndarray] = {}
        sent = self.sent_ns > 0
        out["send_lag"] = (self.sent_ns - self.intended_ns)[measured & sent]
        acked = (self.ack_status == _OK) & measured
        workloads = np.asarray(self.workloads, dtype=object)
        for name in sorted(set(self.workloads)):
            out[f"ack/{name}"] = (self.acked_ns - self.intended_ns)[acked & (workloads == name)]
        # First receipt per (event, expected subscriber), measured from the intended time.
        never = np.iinfo(np.int64).max
        first = np.full(expected.shape, never, dtype=np.int64)
        np.minimum.at(first, (ev, sub), rns)
        got = expected & (first != never) & measured[:, None]
        latency = first - self.intended_ns[:, None]
        out["receipt/all"] = latency[got]
        for j, name in enumerate(self.subscribers):
            if expected[:, j].any():
                out[f"receipt/{name}"] = latency[got[:, j], j]
        return out


def _offsets(rows: np.ndarray, n: int) -> pa.Array:
    return pa.array(np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]).astype(np.int32))


def _mask_lists(mask: np.ndarray, names: np.ndarray) -> pa.Array:
    rows, cols = np.nonzero(mask)
    return pa.ListArray.from_arrays(_offsets(rows, mask.shape[0]), pa.array(names[cols], pa.string()))


def _hist(values_ns: np.ndarray) -> HdrHistogram:
    hist = HdrHistogram(HDR_LOW_US, HDR_HIGH_US, HDR_DIGITS)
    # Negative latencies can only come from clock disagreement; they are recorded as
    # the lowest bucket (and visible raw in the ledger) rather than dropped.
    values_us = np.clip(np.asarray(values_ns, dtype=np.int64) // 1000, HDR_LOW_US, HDR_HIGH_US)
    # Pre-bucket to the histogram's own resolution (11 significant bits for 3 digits) so
    # the pure-Python record_value runs once per bucket, not once per distinct value.
    shift = np.maximum(0, np.floor(np.log2(np.maximum(values_us, 1))).astype(np.int64) + 1 - 11)
    values_us = (values_us >> shift) << shift
    uniq, counts = np.unique(values_us, return_counts=True)
    for value, count in zip(uniq.tolist(), counts.tolist(), strict=True):
        hist.record_value(value, count)
    return hist


def latency_summary_us(values_ns: np.ndarray) -> dict[str, float | int]:
    """Exact statistics (µs) of raw latencies."""
    if values_ns.size == 0:
        return {"count": 0}
    us = values_ns / 1000.0
    p50, p90, p99, p999 = np.percentile(us, [50, 90, 99, 99.9]).tolist()
    return {
        "count": int(us.size),
        "min": round(float(us.min()), 1),
        "mean": round(float(us.mean()), 1),
        "p50": round(p50, 1),
        "p90": round(p90, 1),
        "p99": round(p99, 1),
        "p99.9": round(p999, 1),
        "max": round(float(us.max()), 1),
    }


def write_ledger(result: LedgerResult, run_dir: Path) -> dict[str, Path]:
    """`ledger.parquet` plus `latency-hdr.json` (encoded HdrHistograms, µs, warm-up excluded)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    ledger_path = run_dir / LEDGER
    pq.write_table(result.table, ledger_path, compression="zstd")
    hdr_path = run_dir / LATENCY_HDR
    doc = {
        "unit": "us",
        "note": "measured from each event's intended send time; warm-up events excluded",
        "histograms": {
            name: {"encoded": h.encode().decode("ascii"), **latency_summary_us(result.samples[name])}
            for name, h in result.histograms.items()
        },
        "outcomes": result.counts,
        "unknown_receipts": result.unknown_receipts,
    }
    hdr_path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    return {"ledger": ledger_path, "histograms": hdr_path}


def decode_histogram(encoded: str) -> HdrHistogram:
    return HdrHistogram.decode(encoded.encode("ascii"))
