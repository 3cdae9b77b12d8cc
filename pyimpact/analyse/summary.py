"""What a trace saw, summarised: pure function from a Recording to a JSON-able dict.

Used by `trace` (printed at the end, or as `--json`) and by `report`. Every
figure is counted from the timeline or the in-kernel aggregates; nothing is
estimated here.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..recording import Recording


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
    ev = rec.events
    meta = rec.metadata
    names = _names(rec)
    by_kind = {str(k): int(v) for k, v in ev["kind"].value_counts().items() if v}

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
