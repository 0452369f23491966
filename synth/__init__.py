"""hopscope.synth: synthetic runs with known ground truth, for tests and demos.

A producer of spans beside the pipelines: it writes a run directory (OTLP JSON span files as
the collector writes them, spans.parquet, the ledger, the manifest, truth.json) that the
analysis reads like any other run. See synth/README.md.
"""

from __future__ import annotations

from .config import SynthConfig, config_dict
from .model import Breakage, Dist, Fanout, PairSpec, Step
from .shapes import default_pairs
from .tables import SynthRun, generate, hex_ids
from .write import write_run

__all__ = [
    "Breakage",
    "Dist",
    "Fanout",
    "PairSpec",
    "Step",
    "SynthConfig",
    "SynthRun",
    "config_dict",
    "default_pairs",
    "generate",
    "hex_ids",
    "write_run",
]
