"""What each phase of a `hopscope run` cost the host, as a table: per phase × service, CPU
seconds, CPU ms per event, peak memory, and the phase's host load and host-bound verdict.

Read from the run's experiment file (`phases[].resources`, written by the experiment's
resource monitor); the services are whatever the record names (the stacks' own, the
telemetry's, the load generator, the processes a driver spawns), never a fixed list. A run without that
file, or made before resources were recorded, gives an empty frame with the same columns.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

COLUMNS = [
    "workload",
    "stack",
    "repeat",
    "tracing",
    "phase",
    "status",
    "service",
    "role",
    "state",
    "cpu_s",
    "cpu_ms_per_event",
    "peak_rss_mb",
    "processes",
    "events",
    "seconds",
    "host_cpu_mean",
    "host_cpu_share_above",
    "schedule_lag_p99_ms",
    "host_bound",
    "host_bound_reasons",
]

#: the rule a run made before it was stored in the record used
DEFAULT_RULE = {"cpu_percent": 85.0, "share": 0.10, "schedule_lag_p99_ms": 1.0}


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def resources_frame(experiment: dict[str, Any] | None) -> pd.DataFrame:
    """One row per phase × measured service (phases without a resource record are left out)."""
    rows = []
    for p in (experiment or {}).get("phases", []):
        res = p.get("resources") or {}
        if not res.get("services"):
            continue
        ph = p["phase"]
        host = res.get("host_cpu") or {}
        phase_cols = {
            "workload": ph.get("workload"),
            "stack": ph.get("stack"),
            "repeat": ph.get("repeat"),
            "tracing": bool(ph.get("tracing")),
            "phase": ph.get("label"),
            "status": p.get("status"),
        }
        for service, s in res["services"].items():
            rows.append(
                phase_cols
                | {
                    "service": service,
                    "role": s.get("role", ""),
                    "state": s.get("state", ""),
                    "cpu_s": _num(s.get("cpu_s")),
                    "cpu_ms_per_event": _num(s.get("cpu_ms_per_event")),
                    "peak_rss_mb": _num(s.get("peak_rss_mb")),
                    "processes": s.get("processes"),
                    "events": res.get("events"),
                    "seconds": res.get("seconds"),
                    "host_cpu_mean": _num(host.get("mean_percent")),
                    "host_cpu_share_above": _num(host.get("share_above")),
                    "schedule_lag_p99_ms": _num(res.get("schedule_lag_p99_ms")),
                    "host_bound": bool(res.get("host_bound")),
                    "host_bound_reasons": "; ".join(res.get("host_bound_reasons") or []),
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def host_bound_rule(experiment: dict[str, Any] | None) -> dict[str, float]:
    """The thresholds the run's records were judged by."""
    for p in (experiment or {}).get("phases", []):
        rule = (p.get("resources") or {}).get("host_bound_rule")
        if rule:
            return DEFAULT_RULE | rule
    return dict(DEFAULT_RULE)


def host_bound_phases(experiment: dict[str, Any] | None) -> dict[tuple[str, str], list[str]]:
    """(workload, stack) → labels of its host-bound phases (for verdicts that must say so)."""
    out: dict[tuple[str, str], list[str]] = {}
    for p in (experiment or {}).get("phases", []):
        if (p.get("resources") or {}).get("host_bound"):
            ph = p["phase"]
            out.setdefault((ph["workload"], ph["stack"]), []).append(ph.get("label", ""))
    return out


def host_cpu_samples(experiment: dict[str, Any] | None) -> pd.DataFrame:
    """One row per host CPU sample: phase, stack, workload, repeat, tracing, t_s, cpu_percent."""
    rows = []
    for p in (experiment or {}).get("phases", []):
        ph = p["phase"]
        for t, pct in ((p.get("resources") or {}).get("host_cpu") or {}).get("samples") or []:
            rows.append((ph.get("label"), ph.get("stack"), ph.get("workload"), ph.get("repeat"),
                         bool(ph.get("tracing")), float(t), float(pct)))  # fmt: skip
    return pd.DataFrame(
        rows, columns=["phase", "stack", "workload", "repeat", "tracing", "t_s", "cpu_percent"]
    )
