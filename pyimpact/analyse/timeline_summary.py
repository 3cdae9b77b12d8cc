"""What happened during a recording, summarised from its timeline: one module, two views of the same counts.

- ``tell(rec)`` -> ``Story``: in the order a person asks about it afterwards (who blocked on what and for how
  long, signals, forks and exits, slow I/O, what was still pending at the end, what was lost); used by
  `pyimpact report` beside the same diagnosis a live `diagnose` gives, and by the HTML report.
- ``summarise(rec)`` -> dict: the per-kind totals, processes, signals, futex addresses, slow syscalls, block I/O
  latency percentiles and probe timings that `trace` prints at the end (and as `--json`).

Both count events by kind the same way (``event_counts``).  Pure: a function of the Recording.  Every figure
is counted from the timeline or the in-kernel aggregates; nothing is estimated.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
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


def event_counts(ev: pd.DataFrame) -> Dict[str, int]:
    """Events per kind (kinds never seen left out): the totals both views report."""
    return {str(k): int(v) for k, v in ev["kind"].value_counts().items() if v}


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
        st.event_counts = event_counts(ev)
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


# --------------------------------------------------------------------------
# The end-of-trace summary
# --------------------------------------------------------------------------

def _pct(values: np.ndarray, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def _latency(ns: pd.Series) -> dict:
    v = ns.dropna().to_numpy(dtype=np.float64) / 1e6
    return {"count": int(len(v)), "p50_ms": _pct(v, 50), "p95_ms": _pct(v, 95), "p99_ms": _pct(v, 99),
            "max_ms": float(v.max()) if len(v) else None}


def _names(rec: Recording) -> dict:
    """pid -> process name, from snapshots first, then the timeline."""
    names = {}
    ev = rec.events
    if len(ev):
        for pid, comm in ev.groupby("pid", observed=True)["comm"].first().items():
            names[int(pid)] = str(comm)
    for snap in rec.snapshots.values():
        if snap is not None:
            for pid, proc in snap.processes.items():
                names[int(pid)] = proc.name
    return names


def summarise(rec: Recording) -> dict:
    """The end-of-trace summary (`trace`, `trace --json`): a JSON-able dict."""
    ev = rec.events
    meta = rec.metadata
    names = _names(rec)
    by_kind = event_counts(ev)

    forks = ev[ev["kind"] == "fork"]
    exits = ev[(ev["kind"] == "exit") & (ev["group_dead"] == True)]  # noqa: E712
    sig_gen = ev[ev["kind"] == "signal_generate"]
    sig_dlv = ev[ev["kind"] == "signal_deliver"]
    fw = ev[ev["kind"] == "futex_wait"]
    fk = ev[ev["kind"] == "futex_wake"]
    slow = ev[ev["kind"] == "syscall"]
    blk = ev[ev["kind"] == "block_io"]

    processes = []
    for pid, part in ev.groupby("pid", observed=True):
        processes.append({"pid": int(pid), "name": names.get(int(pid), "?"), "events": int(len(part)),
                          "threads": int(part["tid"].nunique())})
    processes.sort(key=lambda p: -p["events"])

    signals = []
    if len(sig_gen):
        grouped = sig_gen.groupby(["signame", "pid", "comm", "target_tid", "sig_result"], observed=True).size()
        for (signame, pid, comm, target, result), count in grouped.items():
            signals.append({"signal": str(signame), "sender_pid": int(pid), "sender": str(comm),
                            "target_tid": int(target), "result": str(result), "count": int(count)})
        signals.sort(key=lambda s: -s["count"])

    futex_addrs = []
    if len(fw) or len(fk):
        waits = fw.groupby(["pid", "uaddr"], observed=True).agg(waits=("dur_ns", "size"), wait_ns=("dur_ns", "sum"),
                                                                max_ns=("dur_ns", "max"))
        wakes = fk.groupby(["pid", "uaddr"], observed=True).agg(wakes=("dur_ns", "size"), woken=("woken", "sum"))
        joined = waits.join(wakes, how="outer").fillna(0)
        for (pid, uaddr), row in joined.sort_values("wait_ns", ascending=False).head(10).iterrows():
            futex_addrs.append({"pid": int(pid), "uaddr": int(uaddr), "waits": int(row["waits"]),
                                "wait_ms": float(row["wait_ns"]) / 1e6, "max_wait_ms": float(row["max_ns"]) / 1e6,
                                "wakes": int(row["wakes"]), "woken": int(row["woken"])})

    slow_by_name = []
    if len(slow):
        agg = slow.groupby("syscall", observed=True)["dur_ns"].agg(["size", "sum", "max"])
        for name, row in agg.sort_values("sum", ascending=False).iterrows():
            slow_by_name.append({"syscall": str(name), "count": int(row["size"]),
                                 "total_ms": float(row["sum"]) / 1e6, "max_ms": float(row["max"]) / 1e6})

    block = {"requests": int(len(blk)), "bytes": int(blk["bytes"].sum()) if len(blk) else 0,
             "read_requests": int(blk["rwbs"].astype(str).str.contains("R").sum()) if len(blk) else 0,
             "write_requests": int(blk["rwbs"].astype(str).str.contains("W").sum()) if len(blk) else 0,
             "latency": _latency(blk["dur_ns"]), "device_latency": _latency(blk["device_latency_ns"].astype("Float64"))}

    stats = rec.syscall_stats
    top_syscalls = []
    if len(stats):
        agg = stats.groupby("syscall")[["count", "total_ns"]].sum().sort_values("count", ascending=False).head(10)
        for name, row in agg.iterrows():
            top_syscalls.append({"syscall": str(name), "count": int(row["count"]),
                                 "total_ms": float(row["total_ns"]) / 1e6})

    return {
        "duration_s": meta.get("duration_s"),
        "end_reason": meta.get("end_reason"),
        "targets": [t["pid"] for t in meta.get("targets", [])],
        "mode": meta.get("mode"),
        "events": {"total": int(len(ev)), "by_kind": by_kind},
        "lost": dict(meta.get("lost", {})),
        "lost_total": rec.lost_total,
        "processes": processes,
        "forks": {"processes": int((forks["is_thread"] == False).sum()),  # noqa: E712
                  "threads": int((forks["is_thread"] == True).sum())},  # noqa: E712
        "execs": [{"pid": int(r.pid), "filename": r.filename} for r in ev[ev["kind"] == "exec"].itertuples()],
        "exits": [{"pid": int(r.pid), "name": str(r.comm),
                   "exit_code": None if pd.isna(r.exit_code) else int(r.exit_code),
                   "signal": None if pd.isna(r.exit_signal) else int(r.exit_signal)} for r in exits.itertuples()],
        "signals": signals,
        "signal_deliveries": int(len(sig_dlv)),
        "futex": {"waits": int(len(fw)), "wakes": int(len(fk)),
                  "wakes_woke_nobody": int(meta.get("futex_wakes_woke_nobody", 0)),
                  "wait_ms": float(fw["dur_ns"].sum()) / 1e6 if len(fw) else 0.0, "addresses": futex_addrs},
        "slow_syscalls": slow_by_name,
        "syscalls": top_syscalls,
        "block_io": block,
        "unavailable": list(meta.get("unavailable", [])),
        "timings": {"probes_attached_after_s": meta.get("probes_attached_after_s"),
                    **{k: round(v, 4) for k, v in meta.get("probe_timings", {}).items()}},
    }
