"""The Recording: the one in-memory and on-disk form of everything observed.

A Recording holds
  events          the timeline DataFrame (schema in pyimpact.timeline)
  snapshots       {"start": SystemSnapshot, "end": SystemSnapshot} from /proc
  syscall_stats   DataFrame: per thread and syscall, count and latency (in-kernel aggregate)
  inflight        DataFrame: the syscall each followed thread was in when the trace ended
  block_inflight  DataFrame: block requests queued and not completed at the end
  gpu             list of GPU samples (pyimpact.collect.gpu), possibly empty
  metadata        dict: host, kernel, tool version, clock base, start/end, duration,
                  targets, mode, lost counts, unavailable (what could not be seen, why),
                  end reason, probe timings, options

Analysis takes a Recording and nothing else, so `pyimpact report FILE` runs
the same code on a saved one as `diagnose` runs live. Parquet stores the
timeline as its table and everything else as JSON under the schema metadata
key b"pyimpact".  The Recording does not know its files: pyimpact.export owns
reading and writing them (`write_recording(rec, path)`, `read_recording(path)`
gives back an equal Recording), so the model imports nothing above it.
"""
from __future__ import annotations

import json
import platform
import socket
from dataclasses import dataclass, field

import pandas as pd

from . import __version__
from .snapshot import SystemSnapshot
from .timeline import empty_timeline

SCHEMA_VERSION = 1
METADATA_KEY = b"pyimpact"

STAT_COLUMNS = ["pid", "tid", "nr", "syscall", "count", "total_ns", "max_ns", "hist_log2", "errors", "last_err",
                "last_err_arg0", "ret_sum"]
INFLIGHT_COLUMNS = ["pid", "tid", "nr", "syscall", "since_ns", "args"]
BLOCK_COLUMNS = ["pid", "tid", "comm", "dev", "sector", "bytes", "rwbs", "queued_ns", "issued_ns"]


def frame(rows, columns) -> pd.DataFrame:
    """A DataFrame with exactly ``columns`` from dicts or dataclass-like rows
    (the probes' aggregates, a sidecar's records)."""
    return pd.DataFrame([r if isinstance(r, dict) else r.__dict__ for r in rows], columns=columns)


def base_metadata() -> dict:
    """Facts about the machine and tool, true for any recording made here."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "pyimpact",
        "tool_version": __version__,
        "host": socket.gethostname(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "lost": {"ringbuf_full": 0, "map_full": 0, "kernel_skipped": 0, "undrained": 0},
        "unavailable": [],
    }


@dataclass
class Recording:
    events: pd.DataFrame = field(default_factory=empty_timeline)
    snapshots: dict = field(default_factory=dict)
    syscall_stats: pd.DataFrame = field(default_factory=lambda: frame([], STAT_COLUMNS))
    inflight: pd.DataFrame = field(default_factory=lambda: frame([], INFLIGHT_COLUMNS))
    block_inflight: pd.DataFrame = field(default_factory=lambda: frame([], BLOCK_COLUMNS))
    gpu: list = field(default_factory=list)
    metadata: dict = field(default_factory=base_metadata)

    # -- convenience ----------------------------------------------------
    @property
    def lost_total(self) -> int:
        return int(sum(self.metadata.get("lost", {}).values()))

    @property
    def start_ns(self) -> int:
        return int(self.metadata.get("started_at_ns", 0))

    @property
    def end_ns(self) -> int:
        return int(self.metadata.get("ended_at_ns", 0))

    def snapshot(self, which: str = "end") -> SystemSnapshot | None:
        return self.snapshots.get(which) or self.snapshots.get("start")

    def note_unavailable(self, what: str, why: str) -> None:
        """Record something that could not be observed; output shows these."""
        entry = {"what": what, "why": why}
        if entry not in self.metadata.setdefault("unavailable", []):
            self.metadata["unavailable"].append(entry)

    # -- (de)serialisation ----------------------------------------------
    def sidecar(self) -> dict:
        """Everything but the timeline, as JSON-able data."""
        return {
            "metadata": self.metadata,
            "snapshots": {k: v.to_dict() for k, v in self.snapshots.items() if v is not None},
            "syscall_stats": self.syscall_stats.to_dict(orient="records"),
            "inflight": self.inflight.to_dict(orient="records"),
            "block_inflight": self.block_inflight.to_dict(orient="records"),
            "gpu": self.gpu,
        }

    @classmethod
    def from_sidecar(cls, events: pd.DataFrame, side: dict) -> "Recording":
        return cls(
            events=events,
            snapshots={k: SystemSnapshot.from_dict(v) for k, v in side.get("snapshots", {}).items()},
            syscall_stats=frame(side.get("syscall_stats", []), STAT_COLUMNS),
            inflight=frame(side.get("inflight", []), INFLIGHT_COLUMNS),
            block_inflight=frame(side.get("block_inflight", []), BLOCK_COLUMNS),
            gpu=side.get("gpu", []),
            metadata=side.get("metadata", base_metadata()),
        )


def sidecar_json(rec: Recording) -> str:
    return json.dumps(rec.sidecar(), default=json_default, separators=(",", ":"))


def json_default(obj):
    """numpy scalars and arrays that pandas hands back in records."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if obj is pd.NA:
        return None
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")

