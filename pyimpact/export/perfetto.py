"""Chrome/Perfetto trace-event JSON (https://ui.perfetto.dev opens it).

Layout:
  - one track per thread (pid/tid are the real ones), named by process_name and
    thread_name metadata events;
  - syscalls, futex waits and wakes as complete slices ("ph": "X");
  - signals, forks, execs and exits as thread-scoped instants ("ph": "i") with
    their arguments;
  - block requests as slices on one track per device, under a synthetic
    "block I/O" process (pid BLOCK_PID), the submitter named in the args.
Timestamps are wall-clock microseconds; events are written in time order.
Every event's args hold its full timeline row, and the top-level "pyimpact"
key holds the rest of the recording, so `pyimpact report t.json` reads it back.
"""
from __future__ import annotations

import io
import json
from typing import BinaryIO

import pandas as pd

from ..recording import Recording, json_default
from ..text import json_dumps
from ..timeline import KIND_FIELDS, coerce_timeline

BLOCK_PID = 2**31 - 2          # above any real pid (pid_max <= 2^22)
COMMON = ["time_ns", "dur_ns", "kind", "pid", "tid", "comm"]


def _event_name(kind: str, row: dict) -> str:
    if kind in ("syscall",):
        return str(row.get("syscall"))
    if kind in ("futex_wait", "futex_wake"):
        return f"{row.get('futex_op')} {row.get('uaddr', 0):#x}"
    if kind == "fork":
        return "new thread" if row.get("is_thread") else ("vfork" if row.get("vfork") else "fork")
    if kind == "exec":
        return f"exec {row.get('filename')}"
    if kind == "exit":
        return "process exit" if row.get("group_dead") else "thread exit"
    if kind == "signal_generate":
        return f"send {row.get('signame')}"
    if kind == "signal_deliver":
        return f"deliver {row.get('signame')}"
    if kind == "block_io":
        return f"{row.get('rwbs')} {row.get('bytes')} B"
    return kind


def _rows(events: pd.DataFrame):
    """(kind, row dict without nulls) for every event, kind by kind."""
    for kind, fields in KIND_FIELDS.items():
        part = events[events["kind"] == kind]
        if part.empty:
            continue
        cols = COMMON + fields
        sub = part[cols].astype(object).where(part[cols].notna(), None)
        for values in sub.itertuples(index=False, name=None):
            yield kind, {c: v for c, v in zip(cols, values) if v is not None}


def trace_events(rec: Recording) -> list:
    events = rec.events
    out = []
    devices = {}
    for kind, row in _rows(events):
        ts = row["time_ns"] / 1000.0
        pid, tid = int(row["pid"]), int(row["tid"])
        if kind == "block_io":
            dev = row.get("dev", "?")
            track = devices.setdefault(dev, BLOCK_PID - len(devices))
            out.append({"ph": "X", "name": _event_name(kind, row), "cat": kind, "ts": ts,
                        "dur": row["dur_ns"] / 1000.0, "pid": BLOCK_PID, "tid": track, "args": row})
        elif row["dur_ns"] > 0 or kind in ("syscall", "futex_wait", "futex_wake"):
            out.append({"ph": "X", "name": _event_name(kind, row), "cat": kind, "ts": ts,
                        "dur": row["dur_ns"] / 1000.0, "pid": pid, "tid": tid, "args": row})
        else:
            out.append({"ph": "i", "s": "t", "name": _event_name(kind, row), "cat": kind, "ts": ts,
                        "pid": pid, "tid": tid, "args": row})
    out.sort(key=lambda e: e["ts"])
    meta = []
    names = events.groupby(["pid", "tid"], observed=True)["comm"].last() if len(events) else {}
    seen_pids = set()
    for (pid, tid), comm in (names.items() if len(events) else []):
        if pid not in seen_pids:
            seen_pids.add(pid)
            meta.append({"ph": "M", "name": "process_name", "pid": int(pid), "tid": int(pid),
                         "args": {"name": _process_name(rec, int(pid), str(comm))}})
        meta.append({"ph": "M", "name": "thread_name", "pid": int(pid), "tid": int(tid), "args": {"name": str(comm)}})
    if devices:
        meta.append({"ph": "M", "name": "process_name", "pid": BLOCK_PID, "tid": BLOCK_PID,
                     "args": {"name": "block I/O"}})
        for dev, track in devices.items():
            meta.append({"ph": "M", "name": "thread_name", "pid": BLOCK_PID, "tid": track,
                         "args": {"name": f"device {dev}"}})
    return meta + out


def _process_name(rec: Recording, pid: int, fallback: str) -> str:
    for snap in rec.snapshots.values():
        proc = snap.processes.get(pid) if snap is not None else None
        if proc is not None:
            return f"{proc.name} ({pid})"
    return f"{fallback} ({pid})"


def write(rec: Recording, out: BinaryIO) -> None:
    """Write to the binary file object `out` (the atomic writer's descriptor)."""
    doc = {"traceEvents": trace_events(rec), "displayTimeUnit": "ns", "pyimpact": rec.sidecar()}
    text = io.TextIOWrapper(out, encoding="utf-8", newline="")
    try:
        text.write(json_dumps(doc, default=json_default, separators=(",", ":")))
        text.flush()
    finally:
        text.detach()     # `out` stays open: its owner closes it


def read(path: str) -> Recording:
    with open(path) as f:
        doc = json.load(f)
    rows = [e["args"] for e in doc.get("traceEvents", []) if e.get("ph") in ("X", "i") and "kind" in e.get("args", {})]
    events = coerce_timeline(pd.DataFrame(rows)).sort_values("time_ns", kind="stable").reset_index(drop=True)
    side = doc.get("pyimpact")
    if side is None:
        rec = Recording(events=events)
        rec.note_unavailable("snapshots and metadata", "this JSON trace was not written by pyimpact")
        return rec
    return Recording.from_sidecar(events, side)
