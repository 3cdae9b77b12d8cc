"""The timeline's story: what happened during a recording, in the order a
person asks about it afterwards (who blocked on what and for how long, signals,
forks and exits, slow I/O, what was still pending at the end, what was lost).

Pure: a function of the Recording (``tell(rec)``), used by `pyimpact report`
beside the same diagnosis a live `diagnose` gives.  Every figure is counted
from the timeline or the in-kernel aggregates; nothing is estimated.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

import pandas as pd

from ..recording import Recording

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
class Story:
    started_ns: int
    duration_s: Optional[float]
    targets: List[Dict[str, Any]]
    host: str
    kernel: str
    mode: str
    end_reason: str
    event_counts: Dict[str, int] = field(default_factory=dict)
    happenings: List[Happening] = field(default_factory=list)
    more_happenings: int = 0
    waits: List[WaitTotal] = field(default_factory=list)
    slow_io: List[Dict[str, Any]] = field(default_factory=list)
    io_total: Dict[str, Any] = field(default_factory=dict)
    pending: List[Pending] = field(default_factory=list)
    lost: Dict[str, int] = field(default_factory=dict)
    #: why the loss counters are not known (a CSV recording), else ""
    lost_unknown: str = ""
    unavailable: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _na(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and v != v)


def _int(v: Any, default: int = 0) -> int:
    return default if _na(v) else int(v)


def tell(rec: Recording) -> Story:
    """The story of a recording."""
    meta = rec.metadata
    start = int(meta.get("started_at_ns") or 0)
    ev = rec.events
    st = Story(started_ns=start, duration_s=meta.get("duration_s"), targets=list(meta.get("targets", [])),
               host=str(meta.get("host", "?")), kernel=str(meta.get("kernel", "?")),
               mode=str(meta.get("mode", "?")), end_reason=str(meta.get("end_reason", "")))
    if start == 0 and ev is not None and len(ev):
        start = st.started_ns = int(ev["time_ns"].min())
    st.lost = {k: int(v) for k, v in (meta.get("lost") or {}).items()}
    st.lost_unknown = str(meta.get("lost_unknown") or "")
    st.unavailable = [f"{u.get('what')}: {u.get('why')}" for u in meta.get("unavailable", [])]
    if ev is not None and len(ev):
        st.event_counts = {str(k): int(v) for k, v in ev["kind"].value_counts().items() if v}
        _happenings(st, ev, start)
        _waits(st, ev)
        _io(st, ev, start)
    _pending(st, rec, start)
    return st


def _rel(t_ns: int, start: int) -> float:
    return round((t_ns - start) / 1e9, 6)


def _happenings(st: Story, ev: pd.DataFrame, start: int) -> None:
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
    if threads_forked:
        st.event_counts["threads_created"] = threads_forked
    st.happenings = out[:MAX_EVENTS]
    st.more_happenings = max(0, len(out) - MAX_EVENTS)


def _waits(st: Story, ev: pd.DataFrame) -> None:
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


def _io(st: Story, ev: pd.DataFrame, start: int) -> None:
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


def _pending(st: Story, rec: Recording, start: int) -> None:
    end = int(rec.metadata.get("ended_at_ns") or 0)
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
