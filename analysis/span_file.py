"""spans.parquet read a column (or a row group) at a time, ahead of the caller on a reader
thread, with the columns the analysis needs and the order prepare() asks for them."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hopscope.core.rundir import RunDirError
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

#: columns every span must have a value in (a span without a trace id belongs to no trace, one
#: without its times has no place on any path)
REQUIRED_VALUES = ("trace_id", "start_ns", "end_ns")

#: the longest string value (span name, hop, stack, attribute value …) the analysis keeps, in
#: characters: a longer one is cut to this many + "…" and counted (`values_truncated` in
#: quality.json). Names become labels of numpy arrays and report tables, where one 20 MB name
#: cost gigabytes; ids are not cut (they are only hashed and compared, and cutting could merge two)
MAX_VALUE_BYTES = 64 << 10
#: the columns whose values are bounded so
BOUNDED_COLUMNS = (
    "name", "kind", "status", "service", "stack", "workload", "event_id", "hop", "source", "attributes",
    "resource",
)  # fmt: skip

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
        #: values cut to MAX_VALUE_BYTES, per (column, row group or None for the whole column)
        self._truncated: dict[tuple[str, int | None], int] = {}

    @property
    def truncated(self) -> dict[str, int]:
        """Values cut to MAX_VALUE_BYTES per column (a column read whole and by row group counts once)."""
        out: dict[str, int] = {}
        with self._lock:
            items = dict(self._truncated)
        for (name, group), n in items.items():
            if group is None or (name, None) not in items:
                out[name] = out.get(name, 0) + n
        return {k: v for k, v in out.items() if v}

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
            try:
                t = read(dictionary)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError):
                t = read([])
        except (OSError, pa.ArrowException) as exc:  # a corrupt page, a truncated file, …
            where = f"row group {group}, " if group is not None else ""
            raise RunDirError(
                f"{self.path}: {where}column(s) {', '.join(names)}: cannot be read ({exc})"
            ) from exc
        out = {}
        for name in names:
            col = t.column(name)
            if pa.types.is_null(col.type):  # a column with no value at all, written untyped
                col = col.cast(SPAN_SCHEMA.field(name).type)
            if name in REQUIRED_VALUES and col.null_count:
                where = f" (row group {group})" if group is not None else ""
                raise RunDirError(
                    f"{self.path}: column {name}: {col.null_count} span(s) without a value{where}"
                )
            if name in BOUNDED_COLUMNS:
                col, cut = bound_values(col)
                if cut:
                    with self._lock:
                        self._truncated[(name, group)] = cut
            out[name] = col
        return out


# --- what a span file must hold ---------------------------------------------------------------


def _dictionary_columns(names: Sequence[str]) -> list[str]:
    """The read_dictionary list ParquetColumns reads `names` with (map keys and values by leaf)."""
    out: list[str] = []
    for name in names:
        if name in ParquetColumns.DICTIONARY or name in ParquetColumns.DICTIONARY_IF_STORED:
            out.append(name)
        elif name in ParquetColumns.MAPS:
            out += [f"{name}.key_value.key", f"{name}.key_value.value"]
    return out


def damage(path: str, columns: Sequence[str] | None = NEEDED_COLUMNS) -> str | None:
    """What is wrong with a span file's data, or None: every column the analysis reads, read a
    row group at a time as it reads them and fully validated (UTF-8 strings, dictionary indices
    within their dictionary, offsets). Costly (a second read of the file), so only called after
    the analysis failed: a corrupt page that still decodes surfaces as an odd error deep inside
    it, and this says which column of which row group it is in. `columns`: those to check
    (None: every column; a ledger is read whole)."""
    try:
        meta = pq.ParquetFile(path)
        names = [n for n in (columns or meta.schema_arrow.names) if n in meta.schema_arrow.names]
        dictionary = _dictionary_columns(names)
        groups = meta.metadata.num_row_groups
    except (OSError, pa.ArrowException, UnicodeDecodeError) as exc:
        return f"{path}: cannot read as Parquet ({exc})"
    for read_dictionary in (dictionary, []):  # the analysis falls back to plain reads
        try:
            f = pq.ParquetFile(path, read_dictionary=read_dictionary)
        except (OSError, pa.ArrowException) as exc:
            return f"{path}: cannot read as Parquet ({exc})"
        for g in range(groups):
            for name in names:
                try:
                    f.read_row_group(g, [name]).column(name).validate(full=True)
                except (OSError, pa.ArrowException, UnicodeDecodeError) as exc:
                    return f"{path}: row group {g}, column {name}: damaged data ({exc})"
    return None


def _string_like(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _string_like(t.value_type)
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)


def _type_fits(name: str, t: pa.DataType) -> bool:
    """A column type the analysis reads correctly in place of SPAN_SCHEMA's (an all-null column
    written untyped is read as nulls)."""
    want = SPAN_SCHEMA.field(name).type
    if pa.types.is_null(t) or t == want:
        return True
    if pa.types.is_string(want):
        return _string_like(t)
    if pa.types.is_int64(want):
        return pa.types.is_integer(t)
    if pa.types.is_boolean(want):
        return False
    if pa.types.is_map(want):
        return pa.types.is_map(t) and _string_like(t.key_type) and _string_like(t.item_type)
    if pa.types.is_list(want):
        if not (pa.types.is_list(t) or pa.types.is_large_list(t)) or not pa.types.is_struct(t.value_type):
            return False
        fields = {f.name: f.type for f in t.value_type}
        return all(_string_like(fields.get(f.name, pa.null())) for f in want.value_type)
    return False


def check_span_schema(schema: pa.Schema, where: str) -> None:
    """RunDirError naming the first column of `schema` (one the analysis reads) whose type it
    cannot use."""
    for name in NEEDED_COLUMNS:
        if name in schema.names:
            t = schema.field(name).type
            if not _type_fits(name, t):
                raise RunDirError(
                    f"{where}: column {name}: type {t}, expected {SPAN_SCHEMA.field(name).type}"
                )


# --- bounded values ---------------------------------------------------------------------------


def _over(arr: pa.Array, limit: int) -> pa.Array | None:
    """bool per value: longer than `limit` characters; None when no value is (checked on byte
    lengths first: a character is at least one byte, so the common case costs one pass over the
    offsets)."""
    if len(arr) == 0:
        return None
    longest = pc.max(pc.binary_length(arr)).as_py()
    if longest is None or longest <= limit:
        return None
    over = pc.greater(pc.utf8_length(arr), limit).fill_null(False)
    return over if pc.any(over).as_py() else None


def _cut(arr: pa.Array, over: pa.Array, limit: int) -> pa.Array:
    cut = pc.binary_join_element_wise(pc.utf8_slice_codeunits(arr, 0, limit), "…", "")
    return pc.if_else(over, cut, arr)


def _bound_strings(arr: pa.Array, limit: int, seen: dict[tuple, pa.Array | None]) -> tuple[pa.Array, int]:
    """A string (or dictionary-of-string) array with values over `limit` cut, and how many were.
    `seen`: the dictionaries already checked (the chunks of a row group share one)."""
    if pa.types.is_dictionary(arr.type):
        d = arr.dictionary
        key = (tuple(b.address if b is not None else 0 for b in d.buffers()), d.offset, len(d))
        if key not in seen:
            seen[key] = _over(d, limit)
        over = seen[key]
        if over is None:
            return arr, 0
        cut = int(pc.sum(pc.is_in(arr.indices, pc.indices_nonzero(over))).as_py() or 0)
        values = _cut(arr.dictionary, over, limit)
        if pc.count_distinct(values).as_py() < len(values):  # two values alike once cut: one code
            return pc.dictionary_encode(pc.take(values, arr.indices)), cut
        return pa.DictionaryArray.from_arrays(arr.indices, values), cut
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return arr, 0
    over = _over(arr, limit)
    if over is None:
        return arr, 0
    return _cut(arr, over, limit), int(pc.sum(over).as_py())


def bound_values(col: pa.ChunkedArray, limit: int = MAX_VALUE_BYTES) -> tuple[pa.ChunkedArray, int]:
    """`col` with every string value (a map's keys and values too) over `limit` characters cut
    to it + "…", and how many were cut. Only a column holding such a value is copied."""
    chunks, cut = [], 0
    seen: dict[tuple, pa.Array | None] = {}
    for chunk in col.chunks:
        if pa.types.is_map(chunk.type):
            keys, k = _bound_strings(chunk.keys, limit, seen)
            items, v = _bound_strings(chunk.items, limit, seen)
            if k or v:
                t = chunk.type
                if keys.type != t.key_type or items.type != t.item_type:
                    t = pa.map_(keys.type, items.type)
                entries = pa.StructArray.from_arrays([keys, items], fields=[t.key_field, t.item_field])
                chunk = pa.Array.from_buffers(
                    t, len(chunk), chunk.buffers()[:2], chunk.null_count, chunk.offset, [entries]
                )
            n = k + v
        else:
            chunk, n = _bound_strings(chunk, limit, seen)
        chunks.append(chunk)
        cut += n
    if not cut:
        return col, 0
    types = {c.type for c in chunks}
    if len(types) > 1:  # a chunk re-encoded: the column keeps one type
        chunks = [c.cast(col.type) if c.type != col.type else c for c in chunks]
    return pa.chunked_array(chunks, col.type if len(types) > 1 else chunks[0].type), cut
