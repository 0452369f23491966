"""The native parts of the package's own build (pyproject.toml holds everything else).

`pip install .` and the wheel build the two PyO3 crates (collector/native: the span readers,
analysis/native: the analysis kernels) as top-level extension modules with setuptools-rust, so
an installed hopscope has the fast paths. Both are optional: without cargo, or when a crate
fails to build, the install still succeeds and hopscope runs the Python fallbacks, saying so
once (core/native.py). docs/decisions.md D16.

HOPSCOPE_BUILD_NATIVE=0 leaves them out: bin/bootstrap's editable install sets it, because it
builds the crates as their own distributions (maturin, rebuilt only when their sources change)
and an editable build would compile them a second time.
"""

from __future__ import annotations

import os

from setuptools import setup
from setuptools_rust import Binding, RustExtension

CRATES = {
    "hopscope_otlp_native": "collector/native/Cargo.toml",
    "hopscope_analysis_native": "analysis/native/Cargo.toml",
}

rust_extensions = (
    []
    if os.environ.get("HOPSCOPE_BUILD_NATIVE", "1") == "0"
    else [
        RustExtension(
            module,
            path=cargo_toml,
            binding=Binding.PyO3,
            features=["python"],
            # a failed or impossible build (no cargo) must not fail the install: the Python paths remain
            optional=True,
            # the crates build against abi3 (pyo3 abi3-py311): one wheel for every CPython >= 3.11
            py_limited_api="cp311",
            args=["--locked"],
        )
        for module, cargo_toml in CRATES.items()
    ]
)

# the wheel's tag says abi3 too, so one wheel installs on every CPython >= 3.11
setup(
    rust_extensions=rust_extensions,
    options={"bdist_wheel": {"py_limited_api": "cp311"}} if rust_extensions else {},
)
