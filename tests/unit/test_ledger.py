"""Ledger classification, Parquet layout and histograms against hand-built ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hopscope.pipelines.ledger import RECEIPT_TYPE, Ledger, decode_histogram, write_ledger

SUBS = ["a", "b", "c"]


def _ledger(n: int = 6, warmup: list[bool] | None = None) -> Ledger:
    expected = np.array(
        [
            [1, 1, 0],  # 0 delivered
            [1, 1, 0],  # 1 lost (b missing)
            [1, 0, 0],  # 2 duplicated (a twice)
            [1, 0, 0],  # 3 misdelivered (c got it) and also duplicated -> misdelivered wins
            [0, 0, 0],  # 4 nothing expected, ack ok -> delivered
            [0, 0, 0],  # 5 nothing expected, ack error -> lost
        ],
        dtype=bool,
    )[:n]
    intended = np.arange(n, dtype=np.int64) * 1_000_000 + 10_000_000_000
    return Ledger(
        stack="loopback",
        workloads=["fanout"] * 4 + ["point_read"] * 2,
        event_ids=[f"e{i}" for i in range(n)],
        intended_ns=intended,
        expected=expected,
        subscribers=SUBS,
        warmup=np.array(warmup or [False] * n),
        target_rate=np.full(n, 1000.0),
        keys=[f"k{i}" for i in range(n)],
    )


def _fill(led: Ledger) -> None:
    base = led.intended_ns
    for i in range(len(led)):
        led.record_sent(i, int(base[i]) + 100_000, f"{i:032x}")
        led.record_ack(i, "error" if i == 5 else "ok", int(base[i]) + 2_000_000, "boom" if i == 5 else None)
    receipts = [
        ("e0", "a", 3), ("e0", "b", 4),
        ("e1", "a", 3),
        ("e2", "a", 5), ("e2", "a", 6),
        ("e3", "a", 3), ("e3", "a", 4), ("e3", "c", 7),
    ]  # fmt: skip
    for eid, sub, ms in receipts:
        i = int(eid[1:])
        led.record_receipt(eid, sub, int(base[i]) + ms * 1_000_000)


def test_classification_and_detail_columns() -> None:
    led = _ledger()
    _fill(led)
    result = led.finalize()
    t = result.table.to_pydict()
    assert t["outcome"] == ["delivered", "lost", "duplicated", "misdelivered", "delivered", "lost"]
    assert result.counts == {"delivered": 2, "lost": 2, "duplicated": 1, "misdelivered": 1}
    assert t["missing_subscribers"][1] == ["b"]
    assert t["duplicate_subscribers"][2] == ["a"] and t["duplicate_subscribers"][3] == ["a"]
    assert t["unexpected_subscribers"][3] == ["c"]
    assert t["expected_subscribers"][0] == ["a", "b"] and t["expected_subscribers"][4] == []
    assert [r["subscriber"] for r in t["receipts"][3]] == ["a", "a", "c"]
    assert t["ack_status"][5] == "error" and t["ack_message"][5] == "boom"
    assert t["trace_id"][2] == f"{2:032x}"


def test_first_verdict_wins_and_unsent_is_error() -> None:
    led = _ledger()
    led.record_sent(0, 1, None)
    led.record_ack(0, "timeout", 0, "late")
    led.record_ack(0, "ok", 99)
    t = led.finalize().table.to_pydict()
    assert t["ack_status"][0] == "timeout" and t["acked_ns"][0] is None
    assert t["ack_status"][1] == "error" and t["sent_ns"][1] is None  # never sent


def test_unknown_receipts_are_counted_and_unknown_subscribers_misdeliver() -> None:
    led = _ledger()
    _fill(led)
    led.record_receipt("not-ours", "a", 1)
    led.record_receipt("e0", "intruder", int(led.intended_ns[0]) + 1)
    result = led.finalize()
    assert result.unknown_receipts == 1 and result.unknown_receipt_examples == ["a: 'not-ours'"]
    t = result.table.to_pydict()
    assert t["outcome"][0] == "misdelivered" and t["unexpected_subscribers"][0] == ["intruder"]


def test_histograms_measure_from_intended_and_skip_warmup() -> None:
    led = _ledger(warmup=[True, False, False, False, False, False])
    _fill(led)
    result = led.finalize()
    # receipt/a: first receipt per event among non-warm-up events 1,2,3 -> 3, 5, 3 ms
    assert sorted(result.samples["receipt/a"].tolist()) == [3_000_000, 3_000_000, 5_000_000]
    assert result.samples["receipt/b"].size == 0  # e0 (warm-up) was b's only receipt
    assert result.samples["send_lag"].tolist() == [100_000] * 5
    assert result.samples["ack/point_read"].tolist() == [2_000_000]  # e5's error ack excluded
    h = result.histograms["receipt/a"]
    assert h.get_total_count() == 3 and h.get_max_value() == pytest.approx(5000, rel=1e-3)


def test_parquet_and_hdr_json(tmp_path: Path) -> None:
    led = _ledger()
    _fill(led)
    paths = write_ledger(led.finalize(), tmp_path)
    table = pq.read_table(paths["ledger"])
    for name, typ in [
        ("stack", pa.string()),
        ("workload", pa.string()),
        ("event_id", pa.string()),
        ("trace_id", pa.string()),
        ("intended_ns", pa.int64()),
        ("sent_ns", pa.int64()),
        ("acked_ns", pa.int64()),
        ("ack_status", pa.string()),
        ("expected_subscribers", pa.list_(pa.string())),
        ("receipts", pa.list_(RECEIPT_TYPE)),
        ("outcome", pa.string()),
        ("warmup", pa.bool_()),
    ]:
        assert table.schema.field(name).type == typ, name
    assert table.num_rows == 6
    doc = orjson.loads(paths["histograms"].read_bytes())
    entry = doc["histograms"]["receipt/all"]
    assert (
        decode_histogram(entry["encoded"]).get_total_count() == entry["count"] == 5
    )  # first receipts: e0 a,b; e1 a; e2 a; e3 a
    assert doc["outcomes"]["lost"] == 2


def test_mismatched_columns_are_rejected() -> None:
    with pytest.raises(ValueError, match="one entry per event"):
        Ledger(
            stack="s",
            workloads=["w"],
            event_ids=["a", "b"],
            intended_ns=np.zeros(2, dtype=np.int64),
            expected=np.zeros((2, 1), dtype=bool),
            subscribers=["x"],
            warmup=np.zeros(2, dtype=bool),
            target_rate=np.zeros(2),
        )
