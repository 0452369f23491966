"""Data-quality counts per stack × workload: what the analysis could not use, counted, never dropped silently."""

from __future__ import annotations

import json

import numpy as np

from hopscope.core.attributes import WAIT_PREFIX

from .span_arrays import SpanArrays


def missing_expected(
    sa: SpanArrays,
    pair_of_trace: np.ndarray,
    pairs: list[tuple[str, str]],
    expected: dict[tuple[str, str], list[str]],
) -> tuple[np.ndarray, dict[tuple[str, str], dict[str, int]]]:
    """Per trace: how many expected span hops (waits excluded) have no span; and per pair × hop."""
    hop_index = {str(h): i for i, h in enumerate(sa.hop_names)}
    n_h = len(sa.hop_names)
    exp_table = np.zeros((len(pairs), n_h), dtype=bool)
    n_expected = np.zeros(len(pairs), np.int64)
    for p, pair in enumerate(pairs):
        hops = [h for h in expected.get(pair, []) if not h.startswith(WAIT_PREFIX)]
        n_expected[p] = len(set(hops))
        for h in hops:
            if h in hop_index:
                exp_table[p, hop_index[h]] = True
    # Column of each span's hop among its pair's expected hops (-1: not expected), then a
    # traces × expected-hops presence table by bincount (no sort, no hashing).
    col_table = np.cumsum(exp_table, axis=1) - 1
    pair_span = pair_of_trace[sa.trace]
    col = np.where(exp_table[pair_span, sa.hop], col_table[pair_span, sa.hop], -1)
    width = max(int(n_expected.max(initial=0)), 1)
    sel = col >= 0
    present = (
        np.bincount(sa.trace[sel] * width + col[sel], minlength=sa.n_traces * width).reshape(
            sa.n_traces, width
        )
        > 0
    )
    have = present.sum(1)
    missing = n_expected[pair_of_trace] - have
    by_hop: dict[tuple[str, str], dict[str, int]] = {}
    traces_per_pair = np.bincount(pair_of_trace, minlength=len(pairs))
    for p, pair in enumerate(pairs):
        counts: dict[str, int] = {}
        seen = present[pair_of_trace == p].sum(0)
        for h in expected.get(pair, []):
            if h.startswith(WAIT_PREFIX):
                continue
            got = int(seen[col_table[p, hop_index[h]]]) if h in hop_index else 0
            if traces_per_pair[p] - got:
                counts[h] = int(traces_per_pair[p] - got)
        by_hop[pair] = counts
    return missing, by_hop


def summary_ms(values: np.ndarray) -> dict[str, float | int]:
    """n, mean, p50, p99, max of a series in ms (empty → n = 0)."""
    v = values[~np.isnan(values)]
    if len(v) == 0:
        return {"n": 0}
    return {
        "n": len(v),
        "mean_ms": float(v.mean()),
        "p50_ms": float(np.quantile(v, 0.5)),
        "p99_ms": float(np.quantile(v, 0.99)),
        "max_ms": float(v.max()),
        "min_ms": float(v.min()),
    }


#: where a span source's own account of its spans sits in a run's manifest
SOURCE_ACCOUNT_KEY = "component_telemetry"


def span_source_problems(manifest: dict) -> list[str]:
    """What span sources reported losing (spans never exported, commits never resolved, a
    restarted worker): the `problems` of every `component_telemetry` account in the manifest,
    prefixed with where it was found (a bench run's driver, an experiment's phase)."""
    out: list[str] = []
    seen: set[str] = set()  # an experiment's manifest repeats a phase's driver under `drivers`

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            account = node.get(SOURCE_ACCOUNT_KEY)
            ident = json.dumps(account, sort_keys=True, default=str) if isinstance(account, dict) else ""
            if ident and ident not in seen:
                seen.add(ident)
                problems = account.get("problems") or []
                if isinstance(problems, str):
                    problems = [problems]
                if isinstance(problems, list):
                    out.extend(f"{where or 'run'}: {line}" for line in problems)
            for key, value in node.items():
                if key != SOURCE_ACCOUNT_KEY:
                    walk(value, f"{where}.{key}" if where else str(key))

    walk(manifest, "")
    return out
