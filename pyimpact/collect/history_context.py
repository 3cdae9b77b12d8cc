"""What the recorder's history knows of one process, for diagnose, kill-preview and report.

Raw facts only (the summary, e.g. the checkpoint cadence, is computed in
pyimpact.analyse.history.context): the process's job, its ORIGINAL parent (and
whether and when that parent exited), the job's last file completions before
the window, and the signals sent to the job's processes before it. Without a
database the answer says so and what the history would have added, so the
commands can print one line and go on as before.
"""
from __future__ import annotations

from typing import Optional

from ..errors import PyimpactError
from .history_db import HistoryReader, find_default_db

WOULD_ADD = ("a running `sudo pyimpact record` would add: the checkpoint cadence and last completions of this "
             "job, which job started this process (and when it exited), signals sent before the window")
SIGNALS_SINCE_S = 24 * 3600


def _start_ticks(pid: int) -> Optional[int]:
    import psutil

    from . import procfs
    try:
        return procfs.process_identity(pid)[1]
    except (psutil.Error, OSError, IndexError, ValueError):
        return None


def history_context(pid: int, *, db: Optional[str] = None, start_ticks: Optional[int] = None,
                    before_ns: Optional[int] = None, completions: int = 50, signals: int = 10) -> dict:
    """A plain dict (it goes into JSON and into the Recording's metadata)."""
    import time

    path = find_default_db(db)
    if path is None:
        return {"available": False, "why": "no recorder database found", "would_add": WOULD_ADD}
    try:
        reader = HistoryReader(path)
    except PyimpactError as err:
        return {"available": False, "database": path, "why": err.one_line(), "would_add": WOULD_ADD}
    before_ns = before_ns or time.time_ns()
    ticks = start_ticks if start_ticks is not None else _start_ticks(pid)
    try:
        rec = reader.process(pid, ticks)
        if rec is None:
            return {"available": False, "database": path, "would_add": WOULD_ADD,
                    "why": f"the recorder has no record of process {pid} (it started before the recorder ran)"}
        job = reader.job(rec.job_id) or {}
        parent = reader.process_by_id(rec.parent_id)
        members = reader.job_members(rec.job_id) if rec.job_id is not None else [rec]
        done = [c for c in reader.completions(rec.job_id, limit=completions) if c["t_ns"] < before_ns] \
            if rec.job_id is not None else []
        sigs = reader.signals_to(sorted({m.pid for m in members}), before_ns=before_ns,
                                 since_ns=before_ns - SIGNALS_SINCE_S * 10**9, limit=signals)
        pjob = reader.job(parent.job_id) if parent else None
        return {
            "available": True, "database": path, "before_ns": before_ns,
            "process": {"pid": pid, "fork_ns": rec.fork_ns, "parent_known": rec.parent_known},
            "job": {k: job.get(k) for k in ("key", "kind", "root_pid", "command", "first_ns", "ended_ns", "sched_id")},
            "original_parent": None if parent is None else {
                "pid": parent.pid, "command": " ".join(parent.cmdline) or parent.comm, "exit_ns": parent.exit_ns,
                "job_command": (pjob or {}).get("command"), "job_root_pid": (pjob or {}).get("root_pid"),
                "same_job": parent.job_id == rec.job_id},
            "completions": done,
            "signals_before": sigs,
        }
    finally:
        reader.close()
