"""The timeline as a table: Parquet (with the rest of the recording in its
schema metadata) and CSV (the timeline's documented columns only)."""
from __future__ import annotations

import io
import json
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError
from ..recording import METADATA_KEY, Recording, sidecar_json
from ..text import json_text, no_surrogates_frame
from ..timeline import coerce_timeline


def write_parquet(rec: Recording, out: BinaryIO) -> None:
    """Write to the binary file object `out`, with a CRC32 on every data page
    so that a damaged file is refused on read instead of analysed."""
    table = pa.Table.from_pandas(no_surrogates_frame(rec.events), preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[METADATA_KEY] = json_text(sidecar_json(rec)).encode()
    pq.write_table(table.replace_schema_metadata(meta), out, compression="zstd",
                   write_page_checksum=True)


def read_parquet(path, name: str = "") -> Recording:
    """``path``: a file name or a binary file object (``name`` for messages).

    A file written at once holds the sidecar in its Arrow schema metadata; one
    streamed while tracing (export.parquet_stream) in the file's footer
    metadata, and its row groups in arrival order: rows are put back in time
    order (a stable sort, as the decoder sorts), so both read back alike."""
    name = name or str(path)
    # a page whose CRC does not match raises (OSError), and the caller turns it
    # into one InputError line: a damaged recording is never analysed as fine
    try:
        pf = pq.ParquetFile(path, page_checksum_verification=True)
        table = pf.read()
    except OSError as err:
        if "CRC" in str(err) or "checksum" in str(err):
            raise InputError(f"cannot read {name}: the file is damaged (a data page fails its CRC checksum)",
                             "use an undamaged copy of the recording") from None
        raise
    raw_side = (table.schema.metadata or {}).get(METADATA_KEY) or (pf.metadata.metadata or {}).get(METADATA_KEY)
    side = json.loads(raw_side or b"{}")
    events = table.to_pandas()
    if len(events) > 1 and "time_ns" in events.columns:
        t = events["time_ns"].to_numpy()
        if bool((t[1:] < t[:-1]).any()):
            events = events.iloc[np.argsort(t, kind="stable")].reset_index(drop=True)
    return Recording.from_sidecar(events, side)


def write_csv(rec: Recording, out: BinaryIO) -> None:
    """Write the timeline to the binary file object `out`."""
    text = io.TextIOWrapper(out, encoding="utf-8", newline="")
    try:
        no_surrogates_frame(rec.events).to_csv(text, index=False)
        text.flush()
    finally:
        text.detach()


def read_csv(path: str) -> Recording:
    events = coerce_timeline(pd.read_csv(path, dtype=str, keep_default_na=True))
    rec = Recording(events=events)
    rec.note_unavailable("snapshots and metadata", "a CSV recording holds the timeline only")
    # no loss counters travel in a CSV: zeros here would claim "nothing lost"
    rec.metadata.lost = {}
    rec.metadata.lost_unknown = "CSV holds the timeline only"
    return rec
