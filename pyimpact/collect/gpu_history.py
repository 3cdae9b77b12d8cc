"""The samples `pyimpact gpu-report` analyses, read from the recorder's history.

Why a record apart from the database: the analysis (pyimpact.analyse.history.gpu_usage)
is pure and is tested on these records; reading them is the only place that
knows SQL, user names (pwd) and the database's layout.
"""
from __future__ import annotations

import json
import os
import pwd
from dataclasses import dataclass, field
from typing import Dict, List, Optional


@dataclass
class UsageData:
    start_ns: int
    end_ns: int
    gpu_available: bool = False
    gpu_reason: str = ""                    # why not, when never available in the period
    devices: List[dict] = field(default_factory=list)   # t_ns, device, name, util_pct, mem_used, mem_total
    procs: List[dict] = field(default_factory=list)     # t_ns, device, pid, proc_id, mem_bytes, sm_util_pct,
    #                                                     process, job_id, job, user
    jobs: List[dict] = field(default_factory=list)      # t_ns, job_id, job, user, nprocs, cpu_s, rss_bytes
    interval_s: Optional[float] = None      # the recorder's sampling period (median spacing)


def _user(uid: Optional[int], cache: Dict[int, str]) -> str:
    if uid is None:
        return "?"
    if uid not in cache:
        try:
            cache[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            cache[uid] = str(uid)
    return cache[uid]


def short_command(command: Optional[str], limit: int = 100) -> str:
    """'/usr/bin/python3 train.py --x' -> 'python3 train.py --x' (at most ``limit`` characters)."""
    if not command:
        return "?"
    head, _, rest = command.partition(" ")
    text = os.path.basename(head) + (" " + rest if rest else "")
    return text[:limit]


def _label(cmdline: Optional[str], comm: Optional[str]) -> str:
    try:
        argv = json.loads(cmdline) if cmdline else []
    except ValueError:
        argv = []
    return short_command(" ".join(argv)) if argv else (comm or "?")


def read_usage(reader, start_ns: int, end_ns: int) -> UsageData:
    """Everything the report needs between ``start_ns`` and ``end_ns``."""
    q = reader.query
    data = UsageData(start_ns=start_ns, end_ns=end_ns)
    users: Dict[int, str] = {}
    jobs: Dict[int, tuple] = {}
    for jid, command, uid, root in q("SELECT id, command, uid, root_pid FROM jobs"):
        jobs[jid] = (f"{short_command(command)} (pid {root})", _user(uid, users))
    for t, dev, name, util, mem, total in q(
            "SELECT t_ns, device, name, util_pct, mem_used, mem_total FROM gpu_devices "
            "WHERE t_ns BETWEEN ? AND ? ORDER BY t_ns", (start_ns, end_ns)):
        data.devices.append({"t_ns": t, "device": dev, "name": name or f"GPU {dev}", "util_pct": util,
                             "mem_used": mem, "mem_total": total})
    for t, dev, pid, proc_id, job_id, mem, sm, cmd, comm, uid in q(
            "SELECT g.t_ns, g.device, g.pid, g.proc_id, g.job_id, g.mem_bytes, g.sm_util_pct, p.cmdline, p.comm, "
            "p.uid FROM gpu_procs g LEFT JOIN processes p ON p.id = g.proc_id WHERE g.t_ns BETWEEN ? AND ? "
            "ORDER BY g.t_ns", (start_ns, end_ns)):
        job, juser = jobs.get(job_id, (f"pid {pid}", None))
        data.procs.append({"t_ns": t, "device": dev, "pid": pid, "proc_id": proc_id, "mem_bytes": mem or 0,
                           "sm_util_pct": sm or 0.0, "process": f"{pid} {_label(cmd, comm)}", "job_id": job_id,
                           "job": job, "user": _user(uid, users) if uid is not None else (juser or "?")})
    for t, jid, n, cpu, rss in q("SELECT t_ns, job_id, nprocs, cpu_s, rss_bytes FROM job_samples "
                                 "WHERE t_ns BETWEEN ? AND ? ORDER BY t_ns", (start_ns, end_ns)):
        job, juser = jobs.get(jid, (f"job {jid}", "?"))
        data.jobs.append({"t_ns": t, "job_id": jid, "job": job, "user": juser, "nprocs": n, "cpu_s": cpu or 0.0,
                          "rss_bytes": rss or 0})
    status = q("SELECT available, reason FROM gpu_status WHERE t_ns <= ? ORDER BY t_ns", (end_ns,))
    data.gpu_available = bool(data.devices) or any(a for a, _ in status)
    if not data.gpu_available:
        data.gpu_reason = next((r for a, r in reversed(status) if not a and r), "") or \
            "the recorder saw no GPU in this period"
    times = sorted({r["t_ns"] for r in data.jobs} | {r["t_ns"] for r in data.devices})
    gaps = sorted(b - a for a, b in zip(times, times[1:]) if b > a)
    data.interval_s = gaps[len(gaps) // 2] / 1e9 if gaps else None
    return data
