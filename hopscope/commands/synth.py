"""`hopscope synth`: write a synthetic run directory with known ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from hopscope.commands.errors import writable_dir
from hopscope.core.rundir import SPANS_DIR, SPANS_PARQUET


def register(app: typer.Typer) -> None:
    """Add `hopscope synth` to the main app."""

    @app.command("synth")
    def synth(
        out: Annotated[Path, typer.Option("--out", help="run directory to write")],
        config: Annotated[
            Path | None,
            typer.Option("--config", help="synth.yaml (default: built-in 4 workloads × 2 stacks)"),
        ] = None,
        events: Annotated[
            int | None, typer.Option("--events", min=1, help="events per stack × workload (at least 1)")
        ] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="random seed")] = None,
        parquet: Annotated[
            bool,
            typer.Option(
                "--parquet/--no-parquet",
                help=f"also write {SPANS_PARQUET} (else `hopscope analyze` ingests {SPANS_DIR}/ first)",
            ),
        ] = True,
        foreign: Annotated[
            bool,
            typer.Option(
                "--foreign",
                help=f"instead: {SPANS_PARQUET} of a shop traced with OpenTelemetry (no hopscope.* attribute; "
                "a producer, two linked consumer traces) to try `analyze --label` on",
            ),
        ] = False,
    ) -> None:
        """Synthetic traces (OTLP JSON lines), ledger, manifest and truth.json for tests and demos."""
        from hopscope.synth import SynthConfig, generate, write_run

        console = Console(stderr=True)
        writable_dir(out)
        if foreign:
            from hopscope.synth.foreign import write_foreign_run

            shop = write_foreign_run(out, events or 2000, 7 if seed is None else seed)
            console.print(f"wrote {shop.table.num_rows} spans ({len(shop.truth)} deliveries) to {out}")
            return
        cfg = SynthConfig.load(config)  # SynthConfigError: exit 2 (hopscope.commands.errors)
        if events is not None:
            cfg.events = events
        if seed is not None:
            cfg.seed = seed
        cfg.validate()
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console
        ) as prog:
            task = prog.add_task("generating", total=None)
            run = generate(cfg)
            prog.update(task, description="writing spans/", total=1, completed=0)
            write_run(
                run,
                out,
                cfg,
                parquet=parquet,
                progress=lambda done, total: prog.update(task, completed=done, total=total),
            )
        console.print(
            f"wrote {run.table.num_rows} spans, {run.ledger.num_rows} ledger rows for "
            f"{len(cfg.pairs)} stack × workload pairs to {out}"
        )
