"""The timeline as a table: Parquet (with the rest of the recording in its
schema metadata) and CSV (the timeline's documented columns only)."""
from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..recording import METADATA_KEY, Recording, sidecar_json
from ..timeline import coerce_timeline


def write_parquet(rec: Recording, path: str) -> None:
    table = pa.Table.from_pandas(rec.events, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[METADATA_KEY] = sidecar_json(rec).encode()
    pq.write_table(table.replace_schema_metadata(meta), path, compression="zstd")


def read_parquet(path: str) -> Recording:
    table = pq.read_table(path)
    side = json.loads((table.schema.metadata or {}).get(METADATA_KEY, b"{}"))
    return Recording.from_sidecar(table.to_pandas(), side)


def write_csv(rec: Recording, path: str) -> None:
    rec.events.to_csv(path, index=False)


def read_csv(path: str) -> Recording:
    events = coerce_timeline(pd.read_csv(path, dtype=str, keep_default_na=True))
    rec = Recording(events=events)
    rec.note_unavailable("snapshots and metadata", "a CSV recording holds the timeline only")
    return rec
