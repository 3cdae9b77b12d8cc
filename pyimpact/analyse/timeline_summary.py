"""What happened during a recording, summarised from its timeline: one typed summary, two views.

``summarise_timeline(rec)`` -> ``TimelineSummary``: every figure once — the recording's facts (host, kernel,
targets, duration, end reason, losses, what was not seen), the events per kind, and the sections: the story's
(notable instants, who blocked on what and for how long, slow I/O, what was still pending at the end) and the
totals `trace` prints at the end (processes, forks, execs, exits, signals, futex addresses, slow syscalls,
block I/O latency percentiles, probe timings).  Its two views:

- ``story_dict()`` (``tell(rec)`` returns the summary itself, the ``Story``): in the order a person asks about
  it afterwards; used by `pyimpact report` beside the same diagnosis a live `diagnose` gives, and by the HTML
  report (schema: the "story" of pyimpact.report/1).
- ``trace_dict()`` (``summarise(rec)``): the end-of-trace summary of `trace` and `trace --json`.

The trace's totals are counted batch by batch (``TimelineTotals``, analyse.timeline_totals): `trace -o
t.parquet` counts them while it streams the timeline to disk, hands them over (``summarise(rec, counted)``)
and never builds the whole timeline, nor imports pandas, for its end summary.

Pure: a function of the Recording.  Every figure is counted from the timeline or the in-kernel aggregates;
nothing is estimated.
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from ..recording import Recording
from .timeline_totals import TimelineTotals, latency_ms, signal_key_order, stat_rows

if TYPE_CHECKING:   # annotations only: the trace's summary never imports pandas
    import pandas as pd

MAX_EVENTS = 40
MAX_WAITS = 15
SLOW_IO_NS = 10_000_000


@dataclass
class Happening:
    """One notable instant (fork, exec, exit, signal)."""

    t_s: float              # seconds since the recording started
    kind: str
    pid: int
    tid: int
    comm: str
    text: str


@dataclass
class WaitTotal:
    """All waits of one thread on one thing during the recording."""

    pid: int
    tid: int
    comm: str
    what: str               # "futex 0x7f..", "read", ...
    count: int
    total_s: float
    max_s: float
    timed_out: int = 0


@dataclass
class Pending:
    """Something still in progress when the recording ended."""

    pid: int
    tid: int
    what: str
    since_s: Optional[float]    # seconds since the recording started (negative: before)
    for_s: Optional[float]


@dataclass
class ProcessEvents:
    """One process's share of the timeline."""

    pid: int
    name: str
    events: int
    threads: int


@dataclass
class ForkCounts:
    processes: int
    threads: int


@dataclass
class ExecEvent:
    pid: int
    filename: Any           # as recorded (a path, or missing)


@dataclass
class ExitEvent:
    """A process (thread group) that ended during the recording."""

    pid: int
    name: str
    exit_code: Optional[int]
    signal: Optional[int]


@dataclass
class SignalCount:
    """Signals of one kind from one sender to one thread, with one result."""

    signal: str
    sender_pid: int
    sender: str
    target_tid: int
    result: str
    count: int


@dataclass
class FutexAddress:
    """The waits and wakes on one futex word of one process."""

    pid: int
    uaddr: int
    waits: int
    wait_ms: float
    max_wait_ms: float
    wakes: int
    woken: int


@dataclass
class FutexTotals:
    waits: int
    wakes: int
    wakes_woke_nobody: int      # counted in the kernel, not sent as events
    wait_ms: float
    addresses: List[FutexAddress] = field(default_factory=list)     # the ten most waited on


@dataclass
class SlowSyscalls:
    """The syscalls of one name that took longer than the trace's threshold."""

    syscall: str
    count: int
    total_ms: float
    max_ms: float


@dataclass
class SyscallCount:
    """All syscalls of one name (the in-kernel aggregate)."""

    syscall: str
    count: int
    total_ms: float


@dataclass
class Latency:
    count: int
    p50_ms: Optional[float]
    p95_ms: Optional[float]
    p99_ms: Optional[float]
    max_ms: Optional[float]


@dataclass
class BlockIo:
    requests: int
    bytes: int
    read_requests: int
    write_requests: int
    latency: Latency
    device_latency: Latency


@dataclass
class TimelineSummary:
    """Everything the timeline says, counted once; ``story_dict()`` and
    ``trace_dict()`` are its two JSON views (the report's story, the trace's
    end summary), and the terminal views read it or them."""

    started_ns: int                             # the recording's start (else its first event)
    duration_s: Optional[float]
    targets: List[Dict[str, Any]]               # as recorded: {"pid": ..., ...}
    host: str
    kernel: str
    mode: Optional[str]
    end_reason: Optional[str]
    events_total: int = 0
    events_by_kind: Dict[str, int] = field(default_factory=dict)    # kinds never seen left out
    lost: Dict[str, int] = field(default_factory=dict)
    #: why the loss counters are not known (a CSV recording), else ""
    lost_unknown: str = ""
    not_seen: List[Dict[str, str]] = field(default_factory=list)    # {"what", "why"}: could not be observed
    # the story
    happenings: List[Happening] = field(default_factory=list)
    more_happenings: int = 0
    threads_created: int = 0
    waits: List[WaitTotal] = field(default_factory=list)
    slow_io: List[Dict[str, Any]] = field(default_factory=list)
    io_total: Dict[str, Any] = field(default_factory=dict)
    pending: List[Pending] = field(default_factory=list)
    # the trace's totals
    processes: List[ProcessEvents] = field(default_factory=list)
    forks: ForkCounts = field(default_factory=lambda: ForkCounts(0, 0))
    execs: List[ExecEvent] = field(default_factory=list)
    exits: List[ExitEvent] = field(default_factory=list)
    signals: List[SignalCount] = field(default_factory=list)
    signal_deliveries: int = 0
    futex: FutexTotals = field(default_factory=lambda: FutexTotals(0, 0, 0, 0.0))
    slow_syscalls: List[SlowSyscalls] = field(default_factory=list)
    syscalls: List[SyscallCount] = field(default_factory=list)     # the ten most frequent
    block_io: Optional[BlockIo] = None
    timings: Dict[str, Any] = field(default_factory=dict)          # probes attached after, per-stage seconds
    #: which sections were counted (summarise_timeline's choice)
    has_story: bool = True
    has_totals: bool = True

    # -- the story's reading of the facts -------------------------------
    @property
    def event_counts(self) -> Dict[str, int]:
        """Events per kind, and the threads created (forks that made a thread)."""
        out = dict(self.events_by_kind)
        if self.threads_created:
            out["threads_created"] = self.threads_created
        return out

    @property
    def unavailable(self) -> List[str]:
        """What could not be observed, one "what: why" line each."""
        return [f"{u.get('what')}: {u.get('why')}" for u in self.not_seen]

    @property
    def lost_total(self) -> int:
        return int(sum(self.lost.values()))

    # -- the two views ----------------------------------------------------
    def _need(self, section: str) -> None:
        if not getattr(self, f"has_{section}"):
            raise ValueError(f"this summary was counted without its {section} (summarise_timeline({section}=True))")

    def story_dict(self) -> Dict[str, Any]:
        """The story (`report --json`'s "story", the HTML report)."""
        self._need("story")
        return {
            "started_ns": self.started_ns, "duration_s": self.duration_s, "targets": list(self.targets),
            "host": self.host, "kernel": self.kernel,
            "mode": "?" if self.mode is None else str(self.mode),
            "end_reason": "" if self.end_reason is None else str(self.end_reason),
            "event_counts": self.event_counts,
            "happenings": [asdict(h) for h in self.happenings], "more_happenings": self.more_happenings,
            "waits": [asdict(w) for w in self.waits], "slow_io": [dict(x) for x in self.slow_io],
            "io_total": dict(self.io_total), "pending": [asdict(p) for p in self.pending],
            "lost": dict(self.lost), "lost_unknown": self.lost_unknown, "unavailable": self.unavailable,
        }

    to_dict = story_dict

    def trace_dict(self) -> Dict[str, Any]:
        """The end-of-trace summary (`trace`, `trace --json`)."""
        self._need("totals")
        return {
            "duration_s": self.duration_s,
            "end_reason": self.end_reason,
            "targets": [t["pid"] for t in self.targets],
            "mode": self.mode,
            "events": {"total": self.events_total, "by_kind": dict(self.events_by_kind)},
            "lost": dict(self.lost),
            "lost_total": self.lost_total,
            "processes": [asdict(p) for p in self.processes],
            "forks": asdict(self.forks),
            "execs": [asdict(e) for e in self.execs],
            "exits": [asdict(e) for e in self.exits],
            "signals": [asdict(x) for x in self.signals],
            "signal_deliveries": self.signal_deliveries,
            "futex": asdict(self.futex),
            "slow_syscalls": [asdict(x) for x in self.slow_syscalls],
            "syscalls": [asdict(x) for x in self.syscalls],
            "block_io": asdict(self.block_io) if self.block_io is not None else None,
            "unavailable": [dict(u) for u in self.not_seen],
            "timings": dict(self.timings),
        }


#: the report's name for the summary (``tell`` returns it)
Story = TimelineSummary


def _na(v: Any) -> bool:
    pd = sys.modules.get("pandas")
    return v is None or (pd is not None and v is pd.NA) or (isinstance(v, float) and v != v)


def _int(v: Any, default: int = 0) -> int:
    return default if _na(v) else int(v)


def event_counts(ev: pd.DataFrame) -> Dict[str, int]:
    """Events per kind (kinds never seen left out): the totals both views report."""
    return {str(k): int(v) for k, v in ev["kind"].value_counts().items() if v}


def summarise_timeline(rec: Recording, story: bool = True, totals: bool = True,
                       counted: Optional[TimelineTotals] = None) -> TimelineSummary:
    """The one summary of a recording: its facts, and the story's sections
    and/or the trace's totals (the story walks every wait event: a trace's end
    summary, printed while the user waits, does not count what it does not show).
    ``counted``: the timeline's totals already counted (a streamed trace); the
    timeline itself is then read only for the story."""
    meta = rec.metadata
    start = int(meta.started_at_ns or 0)
    ev = rec.events if story or counted is None else None
    st = TimelineSummary(started_ns=start, duration_s=meta.duration_s, targets=list(meta.targets or []),
                         host="?" if meta.host is None else str(meta.host),
                         kernel="?" if meta.kernel is None else str(meta.kernel),
                         mode=meta.mode, end_reason=meta.end_reason)
    if totals and counted is None:
        counted = TimelineTotals.of_frame(rec.events)
    if start == 0:
        if counted is not None and counted.first_ns is not None:
            start = st.started_ns = counted.first_ns
        elif ev is not None and len(ev):
            start = st.started_ns = int(ev["time_ns"].min())
    st.lost = {k: int(v) for k, v in (meta.lost or {}).items()}
    st.lost_unknown = str(meta.lost_unknown or "")
    st.not_seen = [dict(u) for u in (meta.unavailable or [])]
    if counted is not None:
        st.events_by_kind = counted.counts()
    elif ev is not None and len(ev):
        st.events_by_kind = event_counts(ev)
    st.has_story, st.has_totals = story, totals
    if story:
        if ev is not None and len(ev):
            _happenings(st, ev, start)
            _waits(st, ev)
            _io(st, ev, start)
        _pending(st, rec, start)
    if totals:
        _totals(st, rec, counted)
    return st


def tell(rec: Recording) -> Story:
    """The story of a recording (the summary; its ``story_dict()`` is the JSON)."""
    return summarise_timeline(rec, totals=False)


def summarise(rec: Recording, counted: Optional[TimelineTotals] = None) -> dict:
    """The end-of-trace summary of `trace` (``trace_dict()``); ``counted``:
    the totals a streamed trace counted as it went."""
    return summarise_timeline(rec, story=False, counted=counted).trace_dict()


def _rel(t_ns: int, start: int) -> float:
    return round((t_ns - start) / 1e9, 6)


def _happenings(st: TimelineSummary, ev: pd.DataFrame, start: int) -> None:
    rows = ev[ev["kind"].isin(["fork", "exec", "exit", "signal_generate"])]
    threads_forked = 0
    out: List[Happening] = []
    for r in rows.itertuples(index=False):
        kind = str(r.kind)
        pid, tid, comm = int(r.pid), int(r.tid), str(r.comm)
        if kind == "fork":
            if bool(r.is_thread) if not _na(r.is_thread) else False:
                threads_forked += 1
                continue
            how = " (vfork)" if (not _na(r.vfork) and bool(r.vfork)) else ""
            text = f"pid {pid} ({comm}) forked pid {_int(r.child_pid)}{how}"
        elif kind == "exec":
            text = f"pid {pid} exec {r.filename if not _na(r.filename) else '?'}"
        elif kind == "exit":
            if _na(r.group_dead) or not bool(r.group_dead):
                continue
            if not _na(r.exit_signal):
                how = f"killed by signal {_int(r.exit_signal)}"
            elif not _na(r.exit_code):
                how = f"exit status {_int(r.exit_code)}"
            else:
                how = "exited"
            text = f"pid {pid} ({comm}) ended: {how}"
        else:
            result = "" if _na(r.sig_result) else f" ({r.sig_result})"
            text = f"{r.signame} from pid {pid} ({comm}) to thread {_int(r.target_tid)}{result}"
        out.append(Happening(_rel(int(r.time_ns), start), kind, pid, tid, comm, text))
    st.threads_created = threads_forked
    st.happenings = out[:MAX_EVENTS]
    st.more_happenings = max(0, len(out) - MAX_EVENTS)


def _waits(st: TimelineSummary, ev: pd.DataFrame) -> None:
    totals: Dict[tuple, WaitTotal] = {}
    fw = ev[ev["kind"] == "futex_wait"]
    for r in fw.itertuples(index=False):
        key = (int(r.pid), int(r.tid), f"futex {_int(r.uaddr):#x}")
        w = totals.setdefault(key, WaitTotal(key[0], key[1], str(r.comm), key[2], 0, 0.0, 0.0))
        w.count += 1
        w.total_s += int(r.dur_ns) / 1e9
        w.max_s = max(w.max_s, int(r.dur_ns) / 1e9)
        if _int(r.ret) == -110:
            w.timed_out += 1
    sc = ev[ev["kind"] == "syscall"]
    for r in sc.itertuples(index=False):
        key = (int(r.pid), int(r.tid), f"{r.syscall}()")
        w = totals.setdefault(key, WaitTotal(key[0], key[1], str(r.comm), key[2], 0, 0.0, 0.0))
        w.count += 1
        w.total_s += int(r.dur_ns) / 1e9
        w.max_s = max(w.max_s, int(r.dur_ns) / 1e9)
    ranked = sorted(totals.values(), key=lambda w: w.total_s, reverse=True)
    for w in ranked:
        w.total_s, w.max_s = round(w.total_s, 6), round(w.max_s, 6)
    st.waits = ranked[:MAX_WAITS]


def _io(st: TimelineSummary, ev: pd.DataFrame, start: int) -> None:
    bio = ev[ev["kind"] == "block_io"]
    if not len(bio):
        return
    st.io_total = {"requests": int(len(bio)), "bytes": int(bio["bytes"].fillna(0).sum()),
                   "errors": int((bio["io_error"].fillna(0) != 0).sum()),
                   "max_ms": round(float(bio["dur_ns"].max()) / 1e6, 3)}
    slow = bio[bio["dur_ns"] >= SLOW_IO_NS].sort_values("dur_ns", ascending=False).head(10)
    for r in slow.itertuples(index=False):
        st.slow_io.append({"t_s": _rel(int(r.time_ns), start), "pid": int(r.pid), "comm": str(r.comm),
                           "dev": str(r.dev), "rwbs": str(r.rwbs), "bytes": _int(r.bytes),
                           "sector": _int(r.sector), "ms": round(int(r.dur_ns) / 1e6, 3),
                           "error": _int(r.io_error)})


def _pending(st: TimelineSummary, rec: Recording, start: int) -> None:
    end = int(rec.metadata.ended_at_ns or 0)
    df = rec.inflight
    if df is not None and len(df):
        for r in df.itertuples(index=False):
            since = int(r.since_ns)
            st.pending.append(Pending(int(r.pid), int(r.tid), f"{r.syscall}()",
                                      _rel(since, start) if start else None,
                                      round((end - since) / 1e9, 6) if end else None))
    bdf = rec.block_inflight
    if bdf is not None and len(bdf):
        for r in bdf.itertuples(index=False):
            q = int(r.queued_ns)
            st.pending.append(Pending(int(r.pid), int(r.tid),
                                      f"block {r.rwbs} {r.dev} sector {int(r.sector)} ({int(r.bytes)} B)",
                                      _rel(q, start) if start else None,
                                      round((end - q) / 1e9, 6) if end else None))
    st.pending.sort(key=lambda p: -(p.for_s or 0))


# --------------------------------------------------------------------------
# The end-of-trace summary
# --------------------------------------------------------------------------

def _totals(st: TimelineSummary, rec: Recording, t: TimelineTotals) -> None:
    """The trace's totals: processes, forks, execs, exits, signals, futexes, syscalls, block I/O, timings."""
    meta = rec.metadata
    names = {p: str(c) for p, (_, c) in t.first_comm.items() if c is not None}   # first seen in the timeline
    for snap in rec.snapshots.values():                                         # ... the snapshots first
        if snap is not None:
            for pid, proc in snap.processes.items():
                names[int(pid)] = proc.name
    st.processes = [ProcessEvents(int(p), names.get(int(p), "?"), int(c), len(t.pid_tids.get(p, ())))
                    for p, c in sorted(t.pid_events.items())]
    st.processes.sort(key=lambda p: -p.events)
    st.signals = [SignalCount(k[0], k[1], k[2], k[3], k[4], int(c)) for k, c in sorted(t.signals.items(), key=lambda kc: signal_key_order(kc[0]))]
    st.signals.sort(key=lambda x: -x.count)
    addrs = [FutexAddress(int(pid), int(uaddr), int(w), float(wns) / 1e6, float(mns) / 1e6, int(k), int(woken))
             for (pid, uaddr), (w, wns, mns, k, woken) in
             sorted(t.futex.items(), key=lambda kv: (-kv[1][1], kv[0]))[:10]]
    st.slow_syscalls = [SlowSyscalls(name, int(c), float(total) / 1e6, float(mx) / 1e6)
                        for name, (c, total, mx) in sorted(t.slow.items(), key=lambda kv: (-kv[1][1], kv[0]))]
    st.block_io = BlockIo(requests=t.block["requests"], bytes=t.block["bytes"],
                          read_requests=t.block["read_requests"], write_requests=t.block["write_requests"],
                          latency=Latency(**latency_ms(t.block_durations())),
                          device_latency=Latency(**latency_ms(t.block_device_latencies())))
    agg: Dict[str, List[int]] = {}
    for r in stat_rows(rec):
        name = r.get("syscall")
        if _na(name):
            continue
        e = agg.setdefault(str(name), [0, 0])
        e[0] += int(r.get("count") or 0)
        e[1] += int(r.get("total_ns") or 0)
    st.syscalls = [SyscallCount(name, c, total / 1e6)
                   for name, (c, total) in sorted(agg.items(), key=lambda kv: (-kv[1][0], kv[0]))[:10]]
    st.events_total = int(t.total)
    st.forks = ForkCounts(t.forks["processes"], t.forks["threads"])
    st.execs = [ExecEvent(pid, name) for _, pid, name in sorted(t.execs, key=lambda e: e[0])]
    st.exits = [ExitEvent(pid, comm, None if code is None else int(code), None if sig is None else int(sig))
                for _, pid, comm, code, sig in sorted(t.exits, key=lambda e: e[0])]
    st.signal_deliveries = int(t.signal_deliveries)
    st.futex = FutexTotals(int(t.futex_waits), int(t.futex_wakes), int(meta.futex_wakes_woke_nobody or 0),
                           float(t.futex_wait_ns) / 1e6, addrs)
    st.timings = {"probes_attached_after_s": meta.probes_attached_after_s,
                  **{k: round(v, 4) for k, v in (meta.probe_timings or {}).items()}}
