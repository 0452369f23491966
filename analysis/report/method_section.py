"""The "Method and limits" section: how to reproduce the run, what it ran on, what each stack
keeps durable before a user hears of an event, what was left out and what the figures cannot say.

Everything comes from the run directory (the manifest, `experiment.json`): the durability each
stack declares per workload (its `stack.yaml`, stored in `stack_info`) and the host and versions
recorded when the run started. A workload whose stacks keep different numbers of durable copies
before the notification is "durability not matched": the headline says so, because its latency
verdict then compares unequal promises.
"""

from __future__ import annotations

import html
import shlex
from collections.abc import Iterable
from typing import Any

import pandas as pd

from .context import ReportContext
from .section import Section
from .tables import Column, Table, count, make_table, text

#: what one host cannot show, whatever the run (the measured host-bound phases are added)
KNOWN_LIMITS = (
    "One host: every service, the load generator and the telemetry share its cores, so a figure "
    "includes their competition (the resources section says which phases were host-bound).",
    "Replicas are processes on the same host: replication crosses loopback, not a network, so "
    "network latency and its variance are absent from both stacks alike.",
    "Open-loop load at the workload's rate: latency is measured from each event's intended send "
    "time, so a sender that falls behind is charged to the pipeline (coordinated omission avoided).",
)


def _manifest(ctx: ReportContext) -> dict[str, Any]:
    return getattr(ctx.run, "manifest", None) or {}


def durability_line(ctx: ReportContext) -> str | None:
    """The headline's warning: which workloads compare unequal durability, with the copies."""
    frame = durability_frame(ctx)
    if frame.empty or frame["matched"].all():
        return None
    parts = []
    for workload, g in frame[~frame["matched"]].groupby("workload", sort=False):
        copies = ", ".join(f"{r.stack} {r.copies_before_notify}" for r in g.itertuples())
        parts.append(f"{workload} ({copies})")
    return (
        "Durability not matched: " + "; ".join(parts) + " durable copies before the notification — "
        "these verdicts compare unequal promises (Method and limits, durability table)."
    )


def profile_line(ctx: ReportContext) -> str | None:
    """The headline's naming of the run's profile and of the stack settings it changed from the
    stacks' defaults (e.g. the Kafka tuning of `kafka-low-latency`); None outside `hopscope run`."""
    exp = ctx.experiment or {}
    name = exp.get("profile")
    if not name:
        return None
    description = str(exp.get("profile_description") or "").strip()
    text = f"Profile: {name}" + (f" — {description}" if description else "") + "."
    tuned = exp.get("stack_options_tuned")
    if isinstance(tuned, dict) and tuned:
        parts = [
            f"{stack}: " + ", ".join(f"{k}={_option_text(v)}" for k, v in settings.items())
            for stack, settings in tuned.items()
            if isinstance(settings, dict) and settings
        ]
        text += (
            " Settings the profile changes from the stacks' defaults: "
            + "; ".join(parts)
            + (" (each as read back in the fairness table).")
        )
    elif isinstance(tuned, dict):
        text += " Every stack runs with its default settings."
    return text


def _option_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "client default" if value is None else str(value)


def durability_frame(ctx: ReportContext) -> pd.DataFrame:
    """Per workload × stack, what is durable before the ack and before the notification, and
    whether the workload's stacks match (same copies before the notification)."""
    info = (ctx.experiment or {}).get("stack_info") or {}
    rows = []
    for workload in ctx.workloads:
        for stack in ctx.stacks:
            declared = ((info.get(stack) or {}).get("durability") or {}).get(workload)
            if isinstance(declared, dict):
                rows.append({"workload": workload, "stack": stack, **declared})
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    copies = frame.groupby("workload")["copies_before_notify"].transform("nunique")
    frame["matched"] = copies.eq(1)
    return frame


def unmatched_workloads(ctx: ReportContext) -> list[str]:
    """The workloads whose stacks keep different numbers of durable copies before notifying."""
    frame = durability_frame(ctx)
    if frame.empty:
        return []
    return list(dict.fromkeys(frame.loc[~frame["matched"], "workload"]))


def reproduce_command(manifest: dict[str, Any]) -> str | None:
    """The command that runs this experiment again (same profile, stacks, workloads, repeats)."""
    if manifest.get("command") != "run":
        return None
    profile = manifest.get("profile")
    name = profile.get("name") if isinstance(profile, dict) else profile
    parts = ["hopscope", "run", "--profile", str(name or "quick")]
    if manifest.get("stacks"):
        parts += ["--stacks", ",".join(map(str, manifest["stacks"]))]
    if manifest.get("workloads"):
        parts += ["--workloads", ",".join(map(str, manifest["workloads"]))]  # a list, or a dict by name
    if manifest.get("repeat"):
        parts += ["--repeat", str(manifest["repeat"])]
    return shlex.join(parts)


def _source_line(manifest: dict[str, Any]) -> str:
    git = manifest.get("git") or {}
    commit = git.get("commit")
    if not commit:
        return "Source: not a git checkout (no commit recorded)."
    dirty = (
        " with uncommitted changes (the figures may not reproduce from the commit)"
        if git.get("dirty")
        else ""
    )
    return f"Source: commit {commit}{dirty}."


def _host_line(manifest: dict[str, Any]) -> str:
    host = manifest.get("host") or {}
    if not host:
        return "Host: not recorded."
    memory = host.get("memory_bytes")
    parts = [
        host.get("cpu_model") or "CPU model not recorded",
        f"{host['cpu_count']} cores" if host.get("cpu_count") else None,
        f"{memory / 2**30:.1f} GiB memory" if isinstance(memory, int | float) else None,
        host.get("platform"),
        "load average at start " + ", ".join(f"{x:.2f}" for x in host["load_average"])
        if isinstance(host.get("load_average"), list)
        else None,
    ]
    return "Host: " + "; ".join(p for p in parts if p) + "."


def versions_frame(ctx: ReportContext) -> pd.DataFrame:
    """Library versions from the manifest; service versions as the stacks' read-back records them
    (the versions deploy installs, not asked of the running nodes)."""
    versions = _manifest(ctx).get("versions")
    rows = [
        {"component": str(name), "version": str(version or "not installed"), "kind": "library"}
        for name, version in sorted(versions.items() if isinstance(versions, dict) else [])
    ]
    for stack, readback in ((ctx.experiment or {}).get("services_fairness") or {}).items():
        for key, value in (readback or {}).items() if isinstance(readback, dict) else ():
            if key.endswith("version") and isinstance(value, str | int | float):
                rows.append({"component": f"{stack}: {key.removesuffix('_version') or key}", "version": str(value), "kind": "service"})  # fmt: skip
    return pd.DataFrame(rows)


def workloads_frame(ctx: ReportContext) -> pd.DataFrame:
    """The workloads' parameters as run (rate or sweep, duration, warm-up, schedule, payload)."""
    rows = []
    workloads = _manifest(ctx).get("workloads")
    if not isinstance(workloads, dict):  # a synthetic or ingested run names them only
        return pd.DataFrame()
    for name, wl in sorted(workloads.items()):
        if not isinstance(wl, dict):
            continue
        sweep = wl.get("rate_sweep")
        rows.append(
            {
                "workload": name,
                "rate": " → ".join(f"{r:g}" for r in sweep) if sweep else f"{wl.get('rate', '–')}",
                "duration_s": wl.get("duration_s"),
                "warmup_s": wl.get("warmup_s"),
                "schedule": wl.get("schedule", ""),
                "payload_bytes": wl.get("payload_bytes"),
                "subscribers": len(wl.get("subscribers") or []),
            }
        )
    return pd.DataFrame(rows)


def _host_bound_phases(ctx: ReportContext) -> tuple[int, int]:
    """(host-bound phases, phases with a resource record)."""
    phases = [p for p in (ctx.experiment or {}).get("phases", []) if isinstance(p.get("resources"), dict)]
    return sum(1 for p in phases if p["resources"].get("host_bound")), len(phases)


def method_section(ctx: ReportContext) -> Iterable[Section]:
    manifest = _manifest(ctx)
    if ctx.foreign is not None or (not manifest and not ctx.experiment):
        return  # a foreign run's method is how its hops were derived (foreign_method.py)
    paras = []
    command = reproduce_command(manifest)
    paras.append(
        f"Reproduce: `{command}` (it starts the services it needs; on a fresh machine `bin/hopscope` "
        "creates the environment first)."
        if command
        else f"This run was made by `hopscope {manifest.get('command', '?')}`; its manifest holds the settings."
    )
    paras += [_source_line(manifest), _host_line(manifest)]
    bound, phases = _host_bound_phases(ctx)
    limits = [*KNOWN_LIMITS]
    if phases:
        limits.append(f"In this run {bound} of {phases} phase(s) were host-bound.")
    body_h = "".join(f"<p>{html.escape(p)}</p>" for p in paras)
    body_m = "\n\n".join(paras)

    tables: list[Table] = []
    durability = durability_frame(ctx)
    if not durability.empty:
        durability = durability.assign(matched=durability["matched"].map({True: "yes", False: "NOT MATCHED"}))
        table = make_table(
            durability,
            [
                text("workload"),
                text("stack"),
                text("stored", "what is written"),
                count("copies_before_ack", "durable copies before the ack"),
                count("copies_before_notify", "before the notification"),
                text("by", "by"),
                text("matched"),
            ],
            caption="Durability per workload, as each stack declares it (stack.yaml; the settings are "
            "read back in the fairness table). Matched = the same copies before the notification.",
            flag=lambda rec, f: f == "matched" and rec["matched"] != "yes",
        )
        tables.append(table)
    workloads = workloads_frame(ctx)
    if not workloads.empty:
        table = make_table(
            workloads,
            [
                text("workload"),
                text("rate", "rate (ev/s)"),
                Column("duration_s", "measured (s)", lambda v: "–" if v is None else f"{v:g}", True),
                Column("warmup_s", "warm-up (s), excluded", lambda v: "–" if v is None else f"{v:g}", True),
                text("schedule"),
                count("payload_bytes", "payload (B)"),
                count("subscribers"),
            ],
            caption="The workloads as run (per phase; warm-up events are left out of every figure)",
        )
        tables.append(table)
    versions = versions_frame(ctx)
    if not versions.empty:
        table = make_table(
            versions,
            [text("component"), text("version"), text("kind")],
            caption="Versions (libraries as installed for the run, from the manifest; services as "
            "deploy installs them, recorded by each stack's read-back)",
        )
        tables.append(table)
    body_h += "".join(t.to_html() for t in tables)
    body_m += "".join("\n\n" + t.to_markdown() for t in tables)
    body_h += "<p>Known limits:</p><ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in limits) + "</ul>"
    body_m += "\n\nKnown limits:\n\n" + "\n".join(f"- {x}" for x in limits)
    yield Section("method", "Method and limits", body_h, body_m)
