"""The Recording: the one in-memory and on-disk form of everything observed.

A Recording holds
  events          the timeline DataFrame (schema in pyimpact.timeline)
  snapshots       {"start": SystemSnapshot, "end": SystemSnapshot} from /proc
  syscall_stats   DataFrame: per thread and syscall, count and latency (in-kernel aggregate)
  inflight        DataFrame: the syscall each followed thread was in when the trace ended
  block_inflight  DataFrame: block requests queued and not completed at the end
  gpu             list of GPU samples (pyimpact.collect.gpu), possibly empty
  metadata        Metadata: host, kernel, tool version, clock base, start/end, duration,
                  targets, mode, lost counts, unavailable (what could not be seen, why),
                  end reason, probe timings, options, and what each session added

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

import enum
import json
import platform
import socket
import sys
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Dict, List, NamedTuple, Optional

from . import __version__
from .snapshot import SystemSnapshot
from .timeline import empty_timeline

SCHEMA_VERSION = 1
METADATA_KEY = b"pyimpact"

STAT_COLUMNS = ["pid", "tid", "nr", "syscall", "count", "total_ns", "max_ns", "hist_log2", "errors", "last_err",
                "last_err_arg0", "ret_sum"]
INFLIGHT_COLUMNS = ["pid", "tid", "nr", "syscall", "since_ns", "args"]
BLOCK_COLUMNS = ["pid", "tid", "comm", "dev", "sector", "bytes", "rwbs", "queued_ns", "issued_ns"]


#: the layout of ``metadata.kill_preview`` (observations of TreeObserver, thread samples)
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


class DirStat(NamedTuple):
    """A directory checkpoint in a sample's ``dirs`` (path -> this; collect.ckpt_scan
    lists it): the list ``[size, mtime_ns, ctime_ns, ino, files, names]`` on disk."""

    size: int               # its files' bytes, a few levels down
    mtime_ns: int           # the newest of the directory's and its files'
    ctime_ns: int
    ino: int                # the directory's
    files: int              # how many regular files
    names: List[str]        # their relative names, framework markers first (bounded)


class LogTail(NamedTuple):
    """A log of the tree in a sample's ``logs`` (path -> this; collect.ckpt_scan.LogTails
    reads it): the list ``[size, mtime_ns, text]`` on disk."""

    size: int
    mtime_ns: int           # its last append, as of the read
    text: str               # what was appended since the previous sample (its newest part)


class ThreadSample(NamedTuple):
    """One thread in a ``--if`` thread sample (``metadata.kill_preview["threads"]``,
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
    """``metadata.kill_preview`` read back from a file, its sample rows
    typed again (WriteFd, FileStat, DirStat, LogTail, ThreadSample): the lists of any version-1
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
            if s.get("dirs"):
                s["dirs"] = {p: DirStat(*r) if isinstance(r, (list, tuple)) and len(r) == 6 else r
                             for p, r in s["dirs"].items()}
            if s.get("logs"):
                s["logs"] = {p: LogTail(*r) if isinstance(r, (list, tuple)) and len(r) == 3 else r
                             for p, r in s["logs"].items()}
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


@dataclass
class Metadata:
    """What a recording says about itself: the machine and tool, the request,
    the clock, the window, what was lost or unavailable, and what each session
    added (wait details, server answers, Python stacks, kill-preview samples,
    history).

    On disk it is the JSON object it always was (``to_dict``/``from_dict``,
    the one mapping): a field left at None is a key not written (and absent
    in the ``meta["key"]`` view), a key this version does not know is kept in
    ``extra`` and written back, so files from before and after a field was
    added read the same.  Every recording made here starts from
    ``base_metadata()`` (the machine and tool fields set).  Code reads
    attributes; the mapping view is kept for scripts and fixtures.
    """

    # -- the machine and tool (base_metadata) ------------------------------
    schema_version: Optional[int] = None
    tool: Optional[str] = None                      # "pyimpact"
    tool_version: Optional[str] = None
    host: Optional[str] = None
    kernel: Optional[str] = None                    # uname -r
    machine: Optional[str] = None                   # uname -m
    #: events lost, by where: ringbuf_full, map_full, block_unseen, kernel_skipped, undrained
    lost: Optional[Dict[str, int]] = None
    #: what could not be observed: [{"what", "why"}]; every view shows these
    unavailable: Optional[List[Dict[str, str]]] = None
    # -- the request (collect.tracer) --------------------------------------
    command_started_mono: Optional[float] = None    # CLOCK_MONOTONIC when the trace began (time-to-verdict marks)
    targets: Optional[List[Dict[str, Any]]] = None  # [{"pid", "start_ticks"}]
    mode: Optional[str] = None                      # "pids" or "system"
    options: Optional[Dict[str, Any]] = None        # the command's options (costly_after_s, slow_ms, ...)
    slow_ns: Optional[int] = None                   # syscalls and waits longer than this are events
    # -- the probes and the clock ------------------------------------------
    bcc_version: Optional[str] = None
    kernel_headers: Optional[str] = None
    tracefs: Optional[str] = None
    clock_offset_ns: Optional[int] = None           # event time = CLOCK_MONOTONIC + this (UTC ns)
    clock: Optional[str] = None                     # that rule, in words
    # -- the window --------------------------------------------------------
    started_at_ns: Optional[int] = None             # wall clock (UTC ns)
    probes_attached_after_s: Optional[float] = None
    end_reason: Optional[str] = None                # "duration", "interrupted by SIGINT", ...
    ended_at_ns: Optional[int] = None
    duration_s: Optional[float] = None
    futex_wakes_woke_nobody: Optional[int] = None   # counted in the kernel, not sent as events
    events_received: Optional[int] = None           # events the probes delivered (streamed or kept)
    #: refused connects the probes counted, with their address: [{"pid", "addr", "count", ...}]
    connect_failures: Optional[List[Dict[str, Any]]] = None
    probe_timings: Optional[Dict[str, float]] = None  # seconds per probe stage (compile, attach, detach)
    exited_targets: Optional[List[int]] = None      # targets gone by the end
    # -- what sessions added -----------------------------------------------
    followed_pids: Optional[List[int]] = None       # the processes a diagnosis followed (waits pointed to them)
    wait_details: Optional[Dict[str, Any]] = None   # collect.waits: what each waiting thread's fds are
    server_waits: Optional[Dict[str, Any]] = None   # the servers' own answers (collect.servers)
    python_stacks: Optional[Dict[str, Any]] = None  # py-spy dumps, by pid
    diagnose_timings_s: Optional[Dict[str, float]] = None  # time-to-verdict marks
    #: kill-preview samples: {"version", "observations": [TreeObserver.to_dict()], "threads": ...}
    kill_preview: Optional[Dict[str, Any]] = None
    history: Optional[Dict[str, Any]] = None        # the recorder history the live run was given
    lost_unknown: Optional[str] = None              # why the loss counters are not known (a CSV recording)
    redacted: Optional[bool] = None                 # written through --redact
    #: keys this version does not know (a newer writer's, a fixture's): kept and written back
    extra: Dict[str, Any] = field(default_factory=dict)

    # -- the on-disk mapping -------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """The JSON object of the files: every field that is set, in order,
        then the unknown keys."""
        out: Dict[str, Any] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            if v is not None:
                out[f.name] = v
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, d: Optional[Dict[str, Any]]) -> "Metadata":
        """The metadata of a file, of any version: known keys to fields, the
        rest to ``extra``; the kill-preview sample rows typed again."""
        meta = cls()
        names = _FIELD_NAMES
        for k, v in (d or {}).items():
            if k in names:
                setattr(meta, k, v)
            else:
                meta.extra[k] = v
        if isinstance(meta.kill_preview, dict):
            typed_samples(meta.kill_preview)
        return meta

    def copy(self) -> "Metadata":
        """A copy whose containers at the top (extra) are its own."""
        return replace(self, extra=dict(self.extra))

    # -- the mapping view (scripts, fixtures: meta["key"]) --------------------
    def __getitem__(self, key: str) -> Any:
        if key in _FIELD_NAMES:
            v = getattr(self, key)
            if v is None:
                raise KeyError(key)
            return v
        return self.extra[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key in _FIELD_NAMES:
            setattr(self, key, value)
        else:
            self.extra[key] = value

    def __contains__(self, key: object) -> bool:
        try:
            self[key]           # type: ignore[index]
            return True
        except (KeyError, TypeError):
            return False

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, other: Dict[str, Any]) -> None:
        for k, v in other.items():
            self[k] = v

    def keys(self):
        return self.to_dict().keys()

    def items(self):
        return self.to_dict().items()


_FIELD_NAMES = frozenset(f.name for f in fields(Metadata)) - {"extra"}


#: the ``what`` of the ``unavailable`` entry the tracer notes when the kernel probes did not run
PROBES_WHAT = "kernel probes"


class ProbeStatus(str, enum.Enum):
    """Whether the kernel probes ran over the recording's window, so an
    analysis knows if the absence of an event means "did not happen" or "not seen"."""

    ATTACHED = "attached"            # the probes ran (the recording carries their clock offset)
    UNAVAILABLE = "unavailable"      # asked for and not attached, or --no-bpf: ``unavailable`` says why
    NOT_RECORDED = "not recorded"    # neither is recorded (a recording without a tracer run)


def base_metadata() -> Metadata:
    """Facts about the machine and tool, true for any recording made here."""
    return Metadata(schema_version=SCHEMA_VERSION, tool="pyimpact", tool_version=__version__,
                    host=socket.gethostname(), kernel=platform.release(), machine=platform.machine(),
                    lost={"ringbuf_full": 0, "map_full": 0, "block_unseen": 0, "kernel_skipped": 0, "undrained": 0}, unavailable=[])


@dataclass
class Recording:
    # DataFrames (None, or a Deferred, until first read: see _table below)
    events: Any = None
    snapshots: dict = field(default_factory=dict)
    syscall_stats: Any = None
    inflight: Any = None
    block_inflight: Any = None
    gpu: list = field(default_factory=list)
    metadata: Metadata = field(default_factory=base_metadata)

    # -- convenience ----------------------------------------------------
    @property
    def lost_total(self) -> int:
        return int(sum((self.metadata.lost or {}).values()))

    @property
    def start_ns(self) -> int:
        return int(self.metadata.started_at_ns or 0)

    @property
    def end_ns(self) -> int:
        return int(self.metadata.ended_at_ns or 0)

    @property
    def probe_status(self) -> ProbeStatus:
        """Did the kernel probes run: decided here, once, from what the tracer
        recorded (its note when they did not, their clock offset when they did)."""
        if any(u.get("what") == PROBES_WHAT for u in (self.metadata.unavailable or [])):
            return ProbeStatus.UNAVAILABLE
        if self.metadata.clock_offset_ns is not None:
            return ProbeStatus.ATTACHED
        return ProbeStatus.NOT_RECORDED

    def snapshot(self, which: str = "end") -> SystemSnapshot | None:
        return self.snapshots.get(which) or self.snapshots.get("start")

    def note_unavailable(self, what: str, why: str) -> None:
        """Record something that could not be observed; output shows these."""
        entry = {"what": what, "why": why}
        if self.metadata.unavailable is None:
            self.metadata.unavailable = []
        if entry not in self.metadata.unavailable:
            self.metadata.unavailable.append(entry)

    def deferred(self, name: str) -> Optional[Deferred]:
        """The table ``name`` while it is still Deferred (not read yet), else None."""
        got = self.__dict__.get("_" + name)
        return got if isinstance(got, Deferred) else None

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
            "metadata": self.metadata.to_dict(),
            "snapshots": {k: v.to_dict() for k, v in self.snapshots.items() if v is not None},
            "syscall_stats": self._records("syscall_stats"),
            "inflight": self._records("inflight"),
            "block_inflight": self._records("block_inflight"),
            "gpu": self.gpu,
        }

    @classmethod
    def from_sidecar(cls, events, side: dict) -> "Recording":
        meta = Metadata.from_dict(side["metadata"]) if "metadata" in side else base_metadata()
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

