"""spans.parquet read a column (or a row group) at a time, ahead of the caller on a reader
thread, with the columns the analysis needs and the order prepare() asks for them."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

from hopscope.core.schema import SPAN_SCHEMA

#: Columns the analysis reads (the rest of SPAN_SCHEMA is left on disk).
NEEDED_COLUMNS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "links",
    "name",
    "kind",
    "start_ns",
    "end_ns",
    "service",
    "stack",
    "workload",
    "event_id",
    "hop",
    "derived",
    "attributes",
    "resource",
)

#: the columns the id index is built from
ID_COLUMNS = ("trace_id", "span_id", "parent_span_id", "links")

#: the order in which prepare() asks for columns (for ParquetColumns.prefetch)
PREPARE_COLUMNS: tuple[str | tuple[str, ...], ...] = (
    ID_COLUMNS,  # read together where the id index is not streamed: it needs all four at once
    # then the columns of _times_and_hops, _placements and _memberships interleaved: the three
    # run side by side
    "start_ns",
    "service",
    "stack",
    "end_ns",
    "resource",
    "workload",
    "kind",
    "derived",
    "event_id",
    "hop",
    "attributes",
    "name",
)


class ParquetColumns:
    """A span Parquet file read one column at a time, so only a column or two are alive at once.

    `prefetch(names)` reads the columns in that order on a background thread, one ahead of
    the caller: Parquet decoding releases the GIL, so it overlaps the numpy work on the
    column before. A tuple of names is read in one go with Arrow's threads (one column
    per core), for columns the caller needs all of before it can start.
    """

    #: strings read dictionary-encoded (their codes are what prepare() needs)
    DICTIONARY = ("name", "kind", "service", "stack", "workload", "hop", "event_id")
    #: read dictionary-encoded only where the file stores them so (SPAN_PARQUET_OPTIONS does;
    #: files written before it read faster plain than hashed into a dictionary on reading)
    DICTIONARY_IF_STORED = ("trace_id",)
    #: map columns whose keys and values are read dictionary-encoded
    MAPS = ("attributes", "resource")
    #: reads (a column or a tuple of them) started ahead of the one asked for. Two keep the
    #: reader ahead of prepare() (it never waited at 10 M spans); reading all of them ahead
    #: held all ~0.8 GB of those Arrow columns at once, and fresh memory is what the analysis
    #: spends most time on
    AHEAD = 2

    def __init__(self, path: str) -> None:
        self._file = pq.ParquetFile(path)
        self.column_names = self._file.schema_arrow.names
        self.num_rows = self._file.metadata.num_rows
        self.path = path
        self._stored_as_dictionary = {
            name for name in self.DICTIONARY_IF_STORED if self._dictionary_pages(name)
        }
        self._queue: list[tuple[str, ...]] = []
        self._ahead: dict[str, Future] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()  # prepare() asks for columns from three threads
        self._group_files: dict[tuple[str, ...], pq.ParquetFile] = {}  # row_groups' reads

    def prefetch(self, names: Sequence[str | tuple[str, ...]]) -> None:
        groups = ((n,) if isinstance(n, str) else tuple(n) for n in names)
        with self._lock:
            wanted = (tuple(n for n in g if n in self.column_names and n not in self._ahead) for g in groups)
            self._queue = [g for g in wanted if g]
            self._fill()

    def row_groups(
        self, names: tuple[str, ...], then: Sequence[str | tuple[str, ...]] = ()
    ) -> Iterator[dict[str, pa.ChunkedArray]]:
        """`names` a row group at a time, read on the reader thread up to two groups ahead of
        the one the caller works on; `then` is prefetched after the last group."""
        names = tuple(n for n in names if n in self.column_names)
        pending: deque[Future] = deque()
        for group in range(self._file.metadata.num_row_groups):
            pending.append(self._reader().submit(self._read, names, group))
            if len(pending) > 2:
                yield pending.popleft().result()
        self.prefetch(then)
        while pending:
            yield pending.popleft().result()

    def _reader(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parquet-columns")
        return self._pool

    def _fill(self) -> None:
        while self._queue and len({id(f) for f in self._ahead.values()}) < self.AHEAD:
            group = self._queue.pop(0)
            fut = self._reader().submit(self._read, group)
            for name in group:
                self._ahead[name] = fut
        if self._pool is not None and not self._queue and not self._ahead:
            self._pool.shutdown(wait=False)
            self._pool = None

    def column(self, name: str) -> pa.ChunkedArray:
        if name not in self.column_names:
            f = SPAN_SCHEMA.field(name)
            return pa.chunked_array([pa.nulls(self.num_rows, f.type)])
        with self._lock:
            fut = self._ahead.pop(name, None)
            if fut is None:
                self._queue = [g for g in (tuple(n for n in g if n != name) for g in self._queue) if g]
            self._fill()
        return (fut.result() if fut is not None else self._read((name,)))[name]

    def _dictionary_pages(self, name: str) -> bool:
        """Every row group stores the column with dictionary pages."""
        meta = self._file.metadata
        found = False
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            for c in range(rg.num_columns):
                col = rg.column(c)
                if col.path_in_schema == name:
                    if not {"RLE_DICTIONARY", "PLAIN_DICTIONARY"} & set(col.encodings):
                        return False
                    found = True
        return found

    def _read(self, names: tuple[str, ...], group: int | None = None) -> dict[str, pa.ChunkedArray]:
        """The columns of the whole file, or of one row group."""
        dictionary: list[str] = []
        for name in names:
            if name in self.DICTIONARY or name in self._stored_as_dictionary:
                dictionary.append(name)
            elif name in self.MAPS:
                dictionary += [f"{name}.key_value.key", f"{name}.key_value.value"]

        def read(dictionary: list[str]) -> pa.Table:
            if group is None:
                return pq.read_table(self.path, columns=list(names), read_dictionary=dictionary)
            # one open file (footer parsed once) for all the row groups the reader thread reads
            key = tuple(dictionary)
            if key not in self._group_files:
                self._group_files[key] = pq.ParquetFile(self.path, read_dictionary=dictionary)
            return self._group_files[key].read_row_group(group, list(names))

        try:
            t = read(dictionary)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError):
            t = read([])
        return {name: t.column(name) for name in names}
