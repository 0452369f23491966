"""Errors of span ingestion, and the ledger of what could not be used.

Every problem names the file (or URL), the record (line number, or record index
for framed/binary input) and the field. By default a problem is counted and the
span/record skipped; in strict mode the first problem is raised.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

#: How many error messages the report keeps (the counts are always complete).
MAX_MESSAGES = 100


class IngestError(Exception):
    """Base class of everything `hopscope ingest` raises on purpose."""


class MalformedInput(IngestError):
    """A file, line, record or span that cannot be used."""

    def __init__(self, source: str, record: str | None, field: str | None, message: str, kind: str):
        self.source = source
        self.record = record
        self.field = field
        self.message = message
        self.kind = kind
        super().__init__(self.describe())

    def describe(self) -> str:
        where = str(self.source)
        if self.record is not None:
            where += f", {self.record}"
        if self.field:
            where += f", field {self.field!r}"
        return f"{where}: {self.message} [{self.kind}]"


class NoUsableSpans(IngestError):
    """The input held no file, or no span that could be used."""


class UnknownFormat(IngestError):
    """A file whose format could not be recognised (and no --format was given)."""


@dataclass
class Problems:
    """Counts what ingestion skipped (by kind) and what it repaired, keeping the first messages."""

    strict: bool = False
    skipped: Counter[str] = field(default_factory=Counter)
    adjusted: Counter[str] = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)
    #: files (and HTTP bodies) by the reader that read them: native, pyarrow.json or python
    readers: Counter[str] = field(default_factory=Counter)
    #: why a fast reader gave a file to the tolerant one (first MAX_MESSAGES): not a loss, but slower
    declined: list[str] = field(default_factory=list)

    def skip(self, source: str, record: str | None, field_name: str | None, message: str, kind: str) -> None:
        """Record one unusable item; raise it instead in strict mode."""
        err = MalformedInput(source, record, field_name, message, kind)
        if self.strict:
            raise err
        self.skipped[kind] += 1
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(err.describe())

    def adjust(self, kind: str, count: int = 1) -> None:
        """Record a span that was kept but repaired (e.g. a Zipkin span without duration)."""
        if count:
            self.adjusted[kind] += count

    def read_by(self, reader: str) -> None:
        self.readers[reader] += 1

    def decline(self, source: str, reader: str, reason: str) -> None:
        """A fast reader refused a file as a whole (the tolerant reader then reads it)."""
        if len(self.declined) < MAX_MESSAGES:
            self.declined.append(f"{source}: {reader} declined: {reason}")

    def merge(self, other: Problems) -> None:
        self.skipped.update(other.skipped)
        self.adjusted.update(other.adjusted)
        self.readers.update(other.readers)
        room = MAX_MESSAGES - len(self.messages)
        self.messages.extend(other.messages[:room])
        self.declined.extend(other.declined[: MAX_MESSAGES - len(self.declined)])
