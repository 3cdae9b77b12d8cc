"""A Parquet recording written while the trace runs, one row group per batch.

Why: a trace held in memory until the end grows by about 270 bytes per event
as a DataFrame (700 at the peak, while it is built and written), so a long
trace of a busy job ran to a gigabyte, and the stop had to decode and write
everything at once.  Here `trace -o t.parquet` hands each batch of decoded
columns (pyimpact.timeline.decode_columns) to ``ParquetStream.write``, which
appends it to the file as a row group and lets it go; at the end ``finish``
adds the rest of the recording (snapshots, aggregates, metadata: the same
JSON sidecar `tables.write_parquet` stores) to the footer and publishes the
file.  pandas is never imported: batches go from numpy to Arrow directly.

The file is created as export.atomic creates every output: an anonymous
O_TMPFILE (0600) in the output directory, written only through its
descriptor, named only when complete (a trace killed mid-way leaves nothing).

What the file holds, and how it differs from a file written at once: the same
columns (and the pandas metadata that gives them back their dtypes), one row
group per batch; rows are in time order within a row group, and row groups
follow each other in the order the events arrived (an event that lasted long,
a futex wait of seconds, is in the row group of when it ended).
``tables.read_parquet`` puts the rows in time order again, so `report` and
conversions see the same timeline either way.
"""
from __future__ import annotations

import json
import os
from importlib import metadata as _metadata
from typing import Optional

import numpy as np

from ..recording import METADATA_KEY, sidecar_json
from ..text import json_text
from ..timeline import BOOL_COLUMNS, COLUMNS, INT_COLUMNS, PLAIN_INT_COLUMNS, Columns
from .atomic import atomic_file

#: rows in a batch when no one says otherwise (about 1.4 MB of raw records;
#: about 6 MB while it is decoded, converted and compressed)
DEFAULT_BATCH_EVENTS = 16384
#: tests set a small batch so that a short trace spans several row groups
BATCH_ENV = "PYIMPACT_STREAM_BATCH"


def batch_events() -> int:
    """Events per row group: DEFAULT_BATCH_EVENTS, or $PYIMPACT_STREAM_BATCH (1 or more)."""
    raw = os.environ.get(BATCH_ENV, "")
    try:
        n = int(raw)
    except ValueError:
        return DEFAULT_BATCH_EVENTS
    return n if n >= 1 else DEFAULT_BATCH_EVENTS


def _pandas_type(name: str):
    if name in PLAIN_INT_COLUMNS:
        return "int64", "int64", None
    if name in INT_COLUMNS:
        return "int64", "Int64", None
    if name in BOOL_COLUMNS:
        return "bool", "boolean", None
    if name == "filename":
        return "unicode", "object", None
    return "categorical", "int32", {"num_categories": 0, "ordered": False}


def pandas_metadata() -> bytes:
    """The b"pandas" schema metadata pyarrow's from_pandas writes for a
    timeline DataFrame (so that pandas reads the file back with the same
    dtypes: Int64, boolean, category), written without importing pandas."""
    try:
        pandas_version = _metadata.version("pandas")
    except _metadata.PackageNotFoundError:
        pandas_version = "unknown"
    import pyarrow as pa

    cols = []
    for name in COLUMNS:
        ptype, ntype, meta = _pandas_type(name)
        cols.append({"name": name, "field_name": name, "pandas_type": ptype, "numpy_type": ntype,
                     "metadata": meta})
    return json.dumps({"index_columns": [], "column_indexes": [], "columns": cols, "attributes": {},
                       "creator": {"library": "pyarrow", "version": pa.__version__},
                       "pandas_version": pandas_version}).encode()


def arrow_schema():
    """The timeline's Arrow schema: int64 (the common columns never null),
    nullable int64 and bool, dictionary-encoded text, the exec path as text."""
    import pyarrow as pa

    fields = []
    for name in COLUMNS:
        if name in PLAIN_INT_COLUMNS:
            fields.append(pa.field(name, pa.int64(), nullable=False))
        elif name in INT_COLUMNS:
            fields.append(pa.field(name, pa.int64()))
        elif name in BOOL_COLUMNS:
            fields.append(pa.field(name, pa.bool_()))
        elif name == "filename":
            fields.append(pa.field(name, pa.string()))
        else:
            fields.append(pa.field(name, pa.dictionary(pa.int32(), pa.string())))
    return pa.schema(fields, metadata={b"pandas": pandas_metadata()})


def _clean(label: str) -> str:
    """Text as Parquet takes it: a lone surrogate (never made by the decoder,
    which uses backslashreplace) would make Arrow refuse the whole batch."""
    try:
        label.encode("utf-8")
        return label
    except UnicodeEncodeError:
        return label.encode("utf-8", "backslashreplace").decode("utf-8")


# Arrays are built from their buffers: pa.array() asks whether its argument is
# a pandas object, and that imports pandas (75 MB here) on the first call.

def _bits(mask: np.ndarray):
    import pyarrow as pa

    return pa.py_buffer(np.packbits(np.asarray(mask, dtype=bool), bitorder="little"))


def _validity(valid: Optional[np.ndarray], n: int):
    """(validity bitmap or None, null count)."""
    if valid is None:
        return None, 0
    nulls = n - int(np.count_nonzero(valid))
    return (_bits(valid) if nulls else None), nulls


def _strings(values: list):
    """A string array from Python text (None = null)."""
    import pyarrow as pa

    n = len(values)
    if all(v is None for v in values):      # the exec path of a batch without exec: all null
        return pa.Array.from_buffers(pa.string(), n, [_bits(np.zeros(n, bool)), pa.py_buffer(np.zeros(n + 1, np.int32)),
                                                      pa.py_buffer(b"")], null_count=n)
    data = [b"" if v is None else _clean(str(v)).encode("utf-8") for v in values]
    offsets = np.zeros(n + 1, dtype=np.int32)
    if n:
        np.cumsum([len(d) for d in data], out=offsets[1:])
    valid = np.array([v is not None for v in values], dtype=bool)
    bitmap, nulls = _validity(valid, n)
    return pa.Array.from_buffers(pa.string(), n, [bitmap, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))],
                                 null_count=nulls)


def _array(c):
    import pyarrow as pa

    n = len(c.values)
    if c.kind in ("int", "mint"):
        bitmap, nulls = _validity(c.valid, n)
        values = np.ascontiguousarray(c.values, dtype=np.int64)
        return pa.Array.from_buffers(pa.int64(), n, [bitmap, pa.py_buffer(values)], null_count=nulls)
    if c.kind == "mbool":
        bitmap, nulls = _validity(c.valid, n)
        return pa.Array.from_buffers(pa.bool_(), n, [bitmap, _bits(c.values)], null_count=nulls)
    if c.kind == "cat":
        codes = np.ascontiguousarray(c.values, dtype=np.int32)
        valid = codes >= 0
        bitmap, nulls = _validity(valid, n)
        indices = pa.Array.from_buffers(pa.int32(), n, [bitmap, pa.py_buffer(np.where(valid, codes, 0).astype(np.int32))],
                                        null_count=nulls)
        return pa.DictionaryArray.from_arrays(indices, _strings(list(c.labels)))
    return _strings(list(c.values))


def to_arrow(cols: Columns, schema=None):
    """One batch of decoded columns as an Arrow table of the timeline schema."""
    import pyarrow as pa

    schema = schema if schema is not None else arrow_schema()
    return pa.Table.from_arrays([_array(cols[name]) for name in COLUMNS], schema=schema)


class ParquetStream:
    """The output file of `trace -o X.parquet`, filled batch by batch.

    ``write(cols)`` appends a row group; ``finish(rec)`` writes the footer
    (with the recording's sidecar JSON) and publishes the file atomically;
    ``abort()`` drops it (nothing is left on disk).  ``rows`` counts what
    was written, so the caller can check that every event it received is
    in the file."""

    def __init__(self, path: str) -> None:
        import pyarrow.parquet as pq

        self.path = path
        self.rows = 0
        self.row_groups = 0
        self._cm = atomic_file(path)
        self._file = self._cm.__enter__()
        self._done = False
        self._read_fd: Optional[int] = None
        self._writer = None
        self.schema = arrow_schema()
        try:
            # glibc's allocator, not the default mimalloc, which keeps about
            # 15 MB of freed pages cached across row groups
            import pyarrow as pa

            self._writer = pq.ParquetWriter(self._file, self.schema, compression="zstd",
                                            write_page_checksum=True, memory_pool=pa.system_memory_pool())
        except BaseException:
            self.abort()
            raise

    def write(self, cols: Columns) -> None:
        n = len(cols["time_ns"])
        if not n:
            return
        table = to_arrow(cols, self.schema)
        self._writer.write_table(table, row_group_size=n)
        self.rows += n
        self.row_groups += 1

    def finish(self, rec) -> str:
        """Add the rest of ``rec`` (everything but the timeline, already
        written) to the footer, publish the file; returns its absolute path.
        A descriptor of the finished file is kept for ``reader()``."""
        self._writer.add_key_value_metadata({METADATA_KEY: json_text(sidecar_json(rec)).encode()})
        self._writer.close()
        self._file.flush()
        self._read_fd = os.dup(self._file.fileno())
        self._done = True
        self._cm.__exit__(None, None, None)    # fchmod, fsync, link and rename: see export.atomic
        return os.path.abspath(self.path)

    def reader(self):
        """The finished file, read back through the descriptor kept by
        ``finish`` (never reopened by name): a binary file object."""
        if self._read_fd is None:
            raise ValueError("the stream is not finished")
        f = os.fdopen(os.dup(self._read_fd), "rb")
        f.seek(0)
        return f

    def abort(self) -> None:
        """Drop the file: its anonymous descriptor is closed and nothing is named."""
        if self._done:
            return
        self._done = True
        try:
            if self._writer is not None:
                self._writer.close()
        except Exception:   # a half-written file is dropped anyway
            pass
        err = RuntimeError("trace aborted")
        try:
            self._cm.__exit__(RuntimeError, err, None)
        except RuntimeError:
            pass

    def close(self) -> None:
        if not self._done:
            self.abort()
        if self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd = None
