"""Span readers: collector files, Jaeger and Tempo API responses, Zipkin → SPAN_SCHEMA tables."""

from __future__ import annotations

from .formats import FORMATS, detect, read_bytes, read_file

__all__ = ["FORMATS", "detect", "read_bytes", "read_file"]
