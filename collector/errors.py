"""Errors of span ingestion, the limits the readers apply, and the ledger of what could not be used.

Every problem names the file (or URL), the record (line number, byte offset, or record
index for framed/binary input) and the field. By default a problem is counted and the
record skipped; in strict mode the first problem is raised.

The reader contract: a reader checks each record's types as it converts it. A record that
fails is skipped and counted (`Problems.skip`) and every other record is kept; only a
container that cannot be read at all (not JSON, not protobuf framing, unreadable) fails a
file (`Problems.fail_file`, one line naming it), and the rest of the run is still ingested.
"""

from __future__ import annotations

import reprlib
from collections import Counter
from dataclasses import asdict, dataclass, field

#: How many error messages the report keeps (the counts are always complete).
MAX_MESSAGES = 100
#: Longest message kept (a message quotes the bad value; a value may be megabytes).
MAX_MESSAGE_CHARS = 400


@dataclass(frozen=True)
class Limits:
    """Bounds on what one file may make the readers allocate or descend into.

    Exceeding one is a counted, named problem (see collector/README.md, Limits), never a
    crash: `max_depth` / `max_record_bytes` skip the record (`too_deep` / `too_large`),
    `max_attribute_bytes` / `max_name_bytes` keep the span with the value cut at a character
    boundary (`adjusted.attribute_truncated` / `name_truncated`, flagged on the span), and
    `max_decompressed_bytes` keeps what decompressed up to the bound (`too_large`).
    """

    #: nesting of JSON objects/arrays: attribute array/kvlist values deeper than this skip the
    #: span; the native reader declines a line nested deeper (the Python reader then reads it)
    max_depth: int = 64
    #: one JSON line or one protobuf frame (the collector writes requests of a few MB)
    max_record_bytes: int = 64 << 20
    #: one attribute key or value (UTF-8 bytes), span and resource attributes alike
    max_attribute_bytes: int = 64 << 10
    #: a span name (UTF-8 bytes)
    max_name_bytes: int = 4 << 10
    #: what one compressed file may expand to
    max_decompressed_bytes: int = 4 << 30

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def with_overrides(self, settings: list[str]) -> Limits:
        """These limits with `NAME=VALUE` settings applied (the CLI's `--limit`); a size takes a
        K/M/G suffix (powers of 1024). Raises ValueError naming the setting that cannot work."""
        values = self.as_dict()
        for setting in settings:
            name, sep, text = setting.partition("=")
            name = name.strip()
            if not sep or name not in values:
                raise ValueError(f"{setting!r}: use NAME=VALUE with NAME one of {', '.join(values)}")
            values[name] = _size(text.strip(), setting)
        return Limits(**values)


def _size(text: str, setting: str) -> int:
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(text[-1:].lower(), 1)
    digits = text[:-1] if scale > 1 else text
    if not digits.isascii() or not digits.isdigit() or int(digits) <= 0:
        raise ValueError(f"{setting!r}: the value must be a positive whole number, optionally K, M or G")
    return int(digits) * scale


DEFAULT_LIMITS = Limits()


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 2, 4, 4, 4
_REPR.maxstring, _REPR.maxlong, _REPR.maxother = 60, 40, 60


def short(value: object, n: int = 80) -> str:
    """A bounded repr() of a value for a message: bad values may be megabytes long or nested
    a thousand levels deep (plain repr would copy the one and recurse through the other)."""
    try:
        text = _REPR.repr(value)
    except Exception:  # a repr that fails must not turn a counted problem into a crash
        text = f"<{type(value).__name__}>"
    return text if len(text) <= n else text[: n - 1] + "…"


def one_line(text: str, n: int = MAX_MESSAGE_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


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
        """One line: file, record, field, reason, [kind]."""
        where = str(self.source)
        if self.record is not None:
            where += f", {self.record}"
        if self.field:
            where += f", field {one_line(self.field, 120)!r}"
        return one_line(f"{where}: {self.message} [{self.kind}]")


class BadRecord(Exception):
    """Raised by a reader's conversion of one record (span, resource, line): the caller skips and counts it."""

    def __init__(self, field: str, message: str, kind: str = "bad_field"):
        super().__init__(message)
        self.field = field
        self.message = message
        self.kind = kind

    def under(self, prefix: str) -> BadRecord:
        """The same problem with its field named from an enclosing record."""
        return BadRecord(f"{prefix}.{self.field}" if self.field else prefix, self.message, self.kind)


class NoUsableSpans(IngestError):
    """The input held no file, or no span that could be used."""


class UnknownFormat(IngestError):
    """A file whose format could not be recognised (and no --format was given)."""


@dataclass
class Problems:
    """Counts what ingestion skipped (by kind) and what it repaired, keeping the first messages.

    It also carries the `Limits` the readers apply to the file it is the ledger of.
    """

    strict: bool = False
    limits: Limits = DEFAULT_LIMITS
    skipped: Counter[str] = field(default_factory=Counter)
    adjusted: Counter[str] = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)
    #: files (and HTTP bodies) by the reader that read them: native, pyarrow.json or python
    readers: Counter[str] = field(default_factory=Counter)
    #: why a fast reader gave a file to the tolerant one (first MAX_MESSAGES): not a loss, but slower
    declined: list[str] = field(default_factory=list)
    #: skipped records per file, by kind
    by_file: dict[str, Counter[str]] = field(default_factory=dict)
    #: files that could not be read at all, one line each (first MAX_MESSAGES)
    failed: list[str] = field(default_factory=list)

    def skip(self, source: str, record: str | None, field_name: str | None, message: str, kind: str) -> None:
        """Record one unusable item; raise it instead in strict mode."""
        err = MalformedInput(source, record, field_name, message, kind)
        if self.strict:
            raise err
        self.skipped[kind] += 1
        self.by_file.setdefault(str(source), Counter())[kind] += 1
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(err.describe())

    def fail_file(self, source: str, message: str, kind: str) -> None:
        """A whole file (or HTTP body) that could not be read: counted once, named in `failed`."""
        self.skip(source, None, None, message, kind)
        if len(self.failed) < MAX_MESSAGES:
            self.failed.append(MalformedInput(source, None, None, message, kind).describe())

    def unexpected(self, source: str, record: str | None, field_name: str | None, exc: BaseException) -> None:
        """A record a reader failed on in a way no check foresaw: counted (`unexpected_error`), never fatal.

        Every such case is a reader bug (the fuzz tests fail on any); the run goes on regardless.
        """
        self.skip(source, record, field_name, f"reader error {type(exc).__name__}: {exc}", "unexpected_error")

    def adjust(self, kind: str, count: int = 1) -> None:
        """Record a span that was kept but repaired (e.g. a Zipkin span without duration)."""
        if count:
            self.adjusted[kind] += count

    def read_by(self, reader: str) -> None:
        self.readers[reader] += 1

    def decline(self, source: str, reader: str, reason: str) -> None:
        """A fast reader refused a file as a whole (the tolerant reader then reads it)."""
        if len(self.declined) < MAX_MESSAGES:
            self.declined.append(one_line(f"{source}: {reader} declined: {reason}"))

    def child(self) -> Problems:
        """An empty ledger with the same mode and limits (a file read on its own, merged later)."""
        return Problems(strict=self.strict, limits=self.limits)

    def merge(self, other: Problems) -> None:
        self.skipped.update(other.skipped)
        self.adjusted.update(other.adjusted)
        self.readers.update(other.readers)
        room = MAX_MESSAGES - len(self.messages)
        self.messages.extend(other.messages[:room])
        self.declined.extend(other.declined[: MAX_MESSAGES - len(self.declined)])
        for src, counts in other.by_file.items():
            self.by_file.setdefault(src, Counter()).update(counts)
        self.failed.extend(other.failed[: MAX_MESSAGES - len(self.failed)])
