"""What the analysis relies on in a run directory's other files: the shapes of
ingest_report.json and experiment.json, the ledger's columns. A file that differs is a
RunDirError naming the file, the field (or column) and what was found, before any figure is
computed from it."""

from __future__ import annotations

import pyarrow as pa

from hopscope.core.rundir import STR_OR_NULL, Anything, Is, ListOf, MapOf, Obj, RunDirError

NUMBER_OR_NULL = Is(float, None)

#: ingest_report.json (collector.ingest writes it)
INGEST_REPORT_SHAPE = Obj(
    {
        "files": Is(int, None),
        "spans": Is(int, None),
        "skipped": MapOf(Is(float)),
        "adjusted": MapOf(Is(float)),
        "errors": ListOf(Anything()),
        "readers": MapOf(Is(float)),
        "fast_path_declined": ListOf(Anything()),
    }
)

NUMBER = Is(float)
#: one offered rate of a sweep phase (experiment.phase_stats writes them; the sweep section sums
#: and takes medians of every field)
_SWEEP_STEP = Obj(
    {
        "target_rate": NUMBER,
        "events": NUMBER,
        "delivered": NUMBER,
        "achieved_rate": NUMBER_OR_NULL,
        "p50_ms": NUMBER_OR_NULL,
        "p99_ms": NUMBER_OR_NULL,
        "p999_ms": NUMBER_OR_NULL,
    },
    required=("target_rate", "events", "delivered", "achieved_rate", "p50_ms", "p99_ms", "p999_ms"),
)
#: a phase's ledger figures (experiment.phase_stats)
_FIGURES = Obj(
    {
        "events": Is(float, None),
        "outcomes": MapOf(NUMBER),
        "e2e_ms": MapOf(NUMBER_OR_NULL),
        "sweep": ListOf(_SWEEP_STEP),
    },
    null=True,
)
#: a phase's resource record (experiment.resources)
_RESOURCES = Obj(
    {
        "events": Is(float, None),
        "seconds": Is(float, None),
        "schedule_lag_p99_ms": NUMBER_OR_NULL,
        "host_bound": Is(bool, None),
        "host_bound_reasons": ListOf(Is(str)),
        "host_bound_rule": MapOf(NUMBER),
        "host_cpu": Obj(
            {
                "mean_percent": NUMBER_OR_NULL,
                "share_above": NUMBER_OR_NULL,
                "samples": ListOf(ListOf(NUMBER, null=False, length=2)),
            },
            null=True,
        ),
        "services": MapOf(
            Obj(
                {
                    "role": Is(str),
                    "state": Is(str),
                    "cpu_s": NUMBER_OR_NULL,
                    "cpu_ms_per_event": NUMBER_OR_NULL,
                    "peak_rss_mb": NUMBER_OR_NULL,
                    "processes": Is(int, None),
                }
            )
        ),
    },
    null=True,
)

_PHASE = Obj(
    {
        "phase": Obj(
            {
                "stack": Is(str),
                "workload": Is(str),
                "repeat": Is(int),
                "tracing": Is(bool),
                "label": Is(str),
            },
            required=("stack", "workload", "repeat", "tracing", "label"),
        ),
        "phase_id": STR_OR_NULL,
        "status": Is(str),
        "seconds": Is(float),
        "error": STR_OR_NULL,
        "error_kind": STR_OR_NULL,
        "run_dir": STR_OR_NULL,
        "driver": Obj(null=True),
        "load": Obj(null=True),
        "figures": _FIGURES,
        "span_files": Is(int, None),
        "resources": _RESOURCES,
    },
    required=("phase", "status", "seconds"),
)

#: experiment.json (`hopscope run` writes it; the report's experiment sections read it; the lists
#: they read with `.get(key, [])` may be absent but not null)
EXPERIMENT_SHAPE = Obj(
    {
        "run_id": STR_OR_NULL,
        "stacks": ListOf(Is(str), null=False),
        "workloads": ListOf(Is(str), null=False),
        "repeat": Is(int, None),
        "up_error": STR_OR_NULL,
        "phases": ListOf(_PHASE, null=False),
        "crosschecks": Obj(null=True),
        "rate_warnings": ListOf(Anything()),
        "fairness_expected": ListOf(Obj({"control": Is(str)}, required=("control",)), null=False),
        "stack_info": MapOf(Obj(null=True)),
        "capacity_parts": MapOf(Obj(null=True)),
        "services_fairness": MapOf(Anything()),
    }
)


def _string_like(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _string_like(t.value_type)
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)


def _int_like(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_null(t)


def _list_of(t: pa.DataType, item: object) -> bool:
    if pa.types.is_null(t):
        return True
    return (pa.types.is_list(t) or pa.types.is_large_list(t)) and item(t.value_type)  # type: ignore[operator]


def _receipt(t: pa.DataType) -> bool:
    if not pa.types.is_struct(t):
        return False
    fields = {f.name: f.type for f in t}
    return (
        "subscriber" in fields
        and "received_ns" in fields
        and _string_like(fields["subscriber"])
        and _int_like(fields["received_ns"])
    )


#: ledger columns the analysis reads: (required, what the type must be, what to say it should be)
LEDGER_COLUMNS = {
    "stack": (True, _string_like, "string"),
    "workload": (True, _string_like, "string"),
    "event_id": (True, _string_like, "string"),
    "intended_ns": (True, _int_like, "int64"),
    "receipts": (
        True,
        lambda t: _list_of(t, _receipt),
        "list<struct<subscriber: string, received_ns: int64>>",
    ),
    "expected_subscribers": (False, lambda t: _list_of(t, _string_like), "list<string>"),
    "sent_ns": (False, _int_like, "int64"),
    "acked_ns": (False, _int_like, "int64"),
    "warmup": (False, lambda t: pa.types.is_boolean(t) or pa.types.is_null(t), "bool"),
    "repeat": (False, _int_like, "int64"),
    "target_rate": (False, lambda t: _int_like(t) or pa.types.is_floating(t), "double"),
    "outcome": (False, _string_like, "string"),
    "ack_status": (False, _string_like, "string"),
}


def check_ledger_schema(table: pa.Table, where: str) -> None:
    """RunDirError naming the first ledger column that is missing, of a type the analysis
    cannot use, or holding a receipt without its time."""
    schema = table.schema
    for name, (required, fits, want) in LEDGER_COLUMNS.items():
        if name not in schema.names:
            if required and table.num_rows:
                raise RunDirError(f"{where}: column {name}: missing")
            continue
        t = schema.field(name).type
        if not fits(t):
            raise RunDirError(f"{where}: column {name}: type {t}, expected {want}")
    if table.num_rows and not pa.types.is_null(schema.field("receipts").type):
        for chunk in table.column("receipts").chunks:
            flat = chunk.flatten()  # the receipts of every row, one struct each
            if flat.null_count or flat.field("received_ns").null_count:
                raise RunDirError(f"{where}: column receipts: a receipt without received_ns")
        if table.column("intended_ns").null_count:
            raise RunDirError(f"{where}: column intended_ns: a row without it")
