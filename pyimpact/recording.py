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

The tables are pandas DataFrames, built when first asked for: a table can be
given as ``Deferred`` rows (the probes' aggregates) or a loader (a timeline
streamed to disk while tracing), so that `trace -o t.parquet` writes its file
and prints its summary without ever importing pandas (about 75 MB of RSS).
"""
from __future__ import annotations

import json
import platform
import socket
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, List, NamedTuple, Optional

from . import __version__
from .snapshot import SystemSnapshot
from .timeline import empty_timeline

SCHEMA_VERSION = 1
METADATA_KEY = b"pyimpact"

STAT_COLUMNS = ["pid", "tid", "nr", "syscall", "count", "total_ns", "max_ns", "hist_log2", "errors", "last_err",
                "last_err_arg0", "ret_sum"]
INFLIGHT_COLUMNS = ["pid", "tid", "nr", "syscall", "since_ns", "args"]
BLOCK_COLUMNS = ["pid", "tid", "comm", "dev", "sector", "bytes", "rwbs", "queued_ns", "issued_ns"]


#: the layout of ``metadata["kill_preview"]`` (observations of TreeObserver, thread samples)
KILL_PREVIEW_VERSION = 1


class WriteFd(NamedTuple):
    """One fd of a kill-preview tree open for writing, in a sample's ``wfds``
    (pyimpact.collect.workfiles writes them, pyimpact.analyse.impact reads
    them).  A NamedTuple: in a saved recording it is the list
    ``[pid, fd, path, pos, flags, size]`` it always was, so old files read the same."""

    pid: int
    fd: int
    path: str
    pos: Optional[int]          # the fd's offset (/proc/PID/fdinfo)
    flags: Optional[int]        # its open flags (O_WRONLY, O_APPEND, ...)
    size: Optional[int]         # the file's size; None where it is not a local regular file


class FileStat(NamedTuple):
    """A candidate file in a sample's ``files`` (path -> this): the list
    ``[size, mtime_ns, ctime_ns, ino, atime_ns]`` on disk."""

    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    atime_ns: Optional[int] = None


class ThreadSample(NamedTuple):
    """One thread in a ``--if`` thread sample (``metadata["kill_preview"]["threads"]``,
    samples[i]["threads"][tid] -> this; pyimpact.collect.threads writes them,
    pyimpact.analyse.impact.what_if reads them): the list
    ``[pid, run_ns, wait_ns, state, nice, gpu_wait, comm]`` on disk."""

    pid: int
    run_ns: int             # on a CPU so far (schedstat)
    wait_ns: int            # runnable, waiting for a CPU, so far (schedstat)
    state: str              # R, S, D, ...
    nice: int
    gpu_wait: bool          # inside an ioctl on /dev/nvidia* at the sample
    comm: str


def typed_samples(kill_preview: dict) -> dict:
    """``metadata["kill_preview"]`` read back from a file, its sample rows
    typed again (WriteFd, FileStat, ThreadSample): the lists of any version-1
    file become the records the live run held (in place; returned for convenience)."""
    for s in ((kill_preview or {}).get("threads") or {}).get("samples") or []:
        if s.get("threads"):
            s["threads"] = {tid: ThreadSample(*r) for tid, r in s["threads"].items()}
    for obs in (kill_preview or {}).get("observations") or []:
        for s in obs.get("samples") or []:
            if s.get("wfds"):
                s["wfds"] = [WriteFd(*w) for w in s["wfds"]]
            files = s.get("files")
            if files:
                s["files"] = {p: FileStat(*r) if isinstance(r, (list, tuple)) and len(r) == 5 else r
                              for p, r in files.items()}
    return kill_preview


def frame(rows, columns):
    """A DataFrame with exactly ``columns`` from dicts or dataclass-like rows
    (the probes' aggregates, a sidecar's records)."""
    import pandas as pd

    return pd.DataFrame([r if isinstance(r, dict) else r.__dict__ for r in rows], columns=columns)


class Deferred:
    """A table of a Recording that is not a DataFrame yet: ``rows`` with their
    ``columns`` (dicts or dataclass-like rows), or ``load()`` that builds the
    DataFrame (e.g. reads back a timeline streamed to disk).  The Recording
    builds it on first access; until then ``records()`` gives the rows
    without pandas, and ``length`` how many there are (None: unknown)."""

    def __init__(self, rows: Optional[list] = None, columns: Optional[List[str]] = None,
                 load: Optional[Callable[[], Any]] = None, length: Optional[int] = None) -> None:
        self.rows, self.columns, self.load = rows, columns, load
        self.length = len(rows) if rows is not None else length

    def build(self):
        if self.load is not None:
            return self.load()
        return frame(self.rows or [], self.columns)

    def records(self) -> Optional[list]:
        """The rows as dicts over ``columns`` (None when only a loader is known)."""
        if self.rows is None:
            return None
        out = []
        for r in self.rows:
            d = r if isinstance(r, dict) else r.__dict__
            out.append({c: d.get(c) for c in self.columns})
        return out


def deferred_frame(rows, columns) -> Deferred:
    """``frame(rows, columns)``, built only when the table is first read."""
    return Deferred(rows=list(rows), columns=columns)


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
    # DataFrames (None, or a Deferred, until first read: see _table below)
    events: Any = None
    snapshots: dict = field(default_factory=dict)
    syscall_stats: Any = None
    inflight: Any = None
    block_inflight: Any = None
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

    def deferred(self, name: str) -> Optional[Deferred]:
        """The table ``name`` while it is still Deferred (not read yet), else None."""
        got = self.__dict__.get("_" + name)
        return got if isinstance(got, Deferred) else None

    def event_count(self) -> int:
        """Rows of the timeline, without building it when it is Deferred with a known length."""
        d = self.deferred("events")
        if d is not None and d.length is not None:
            return d.length
        return len(self.events)

    def _records(self, name: str) -> list:
        if self.__dict__.get("_" + name) is None:    # never given: empty
            return []
        d = self.deferred(name)
        got = d.records() if d is not None else None
        return got if got is not None else getattr(self, name).to_dict(orient="records")

    # -- (de)serialisation ----------------------------------------------
    def sidecar(self) -> dict:
        """Everything but the timeline, as JSON-able data (tables still
        Deferred as rows are written from their rows, without pandas)."""
        return {
            "metadata": self.metadata,
            "snapshots": {k: v.to_dict() for k, v in self.snapshots.items() if v is not None},
            "syscall_stats": self._records("syscall_stats"),
            "inflight": self._records("inflight"),
            "block_inflight": self._records("block_inflight"),
            "gpu": self.gpu,
        }

    @classmethod
    def from_sidecar(cls, events, side: dict) -> "Recording":
        meta = side.get("metadata", base_metadata())
        if isinstance(meta.get("kill_preview"), dict):
            typed_samples(meta["kill_preview"])
        return cls(
            events=events,
            snapshots={k: SystemSnapshot.from_dict(v) for k, v in side.get("snapshots", {}).items()},
            syscall_stats=frame(side.get("syscall_stats", []), STAT_COLUMNS),
            inflight=frame(side.get("inflight", []), INFLIGHT_COLUMNS),
            block_inflight=frame(side.get("block_inflight", []), BLOCK_COLUMNS),
            gpu=side.get("gpu", []),
            metadata=meta,
        )


def _table(name: str, empty: Callable[[], Any]) -> property:
    """The table ``name`` of a Recording: a DataFrame, built on first read from
    what was given (None: an empty table with the documented columns; a
    Deferred: its rows or its loader)."""
    key = "_" + name

    def get(self):
        got = self.__dict__.get(key)
        if got is None or isinstance(got, Deferred):
            got = empty() if got is None else got.build()
            self.__dict__[key] = got
        return got

    def put(self, value) -> None:
        self.__dict__[key] = value

    return property(get, put, doc=f"the {name} table (a DataFrame)")


Recording.events = _table("events", empty_timeline)
Recording.syscall_stats = _table("syscall_stats", lambda: frame([], STAT_COLUMNS))
Recording.inflight = _table("inflight", lambda: frame([], INFLIGHT_COLUMNS))
Recording.block_inflight = _table("block_inflight", lambda: frame([], BLOCK_COLUMNS))


def sidecar_json(rec: Recording) -> str:
    return json.dumps(rec.sidecar(), default=json_default, separators=(",", ":"))


def json_default(obj):
    """numpy scalars and arrays that pandas hands back in records."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    pd = sys.modules.get("pandas")
    if pd is not None and obj is pd.NA:
        return None
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")

