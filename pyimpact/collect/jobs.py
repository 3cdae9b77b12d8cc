"""The machine scan behind `trace --kill-preview` without PIDs: every process's
counters from /proc, as typed records.

Why it exists: to find the heavy jobs on a shared machine the panel needs,
for every process, its parent, age, CPU time and memory (two tables a moment
apart give CPU rates), and the command line of the few that matter (to climb
from a worker to its job's root).  Reading argv takes each process's mmap
lock, so it is read only for the pids asked for, never for the whole table.

Collection only: reads /proc, never prints, never decides which processes
are jobs (pyimpact.analyse.impact.jobs does).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, List

from .procfs import boot_time
from .workfiles import stat_fields

_PF_KTHREAD = 0x00200000      # task flag of kernel threads (stat field 9)
CLIMB = 8                     # ancestors whose argv is read above each pid asked for


@dataclass
class ProcStat:
    """One process as /proc/PID/stat tells it (times in seconds, memory in bytes)."""
    pid: int
    ppid: int
    comm: str
    state: str
    start_ticks: int
    cpu_s: float
    rss_bytes: int
    kernel_thread: bool = False


@dataclass
class ProcTable:
    """Every process at one moment, and the clock facts that turn its start
    ticks into an age: ``boot_s + start_ticks / clk_tck`` is the start time
    in epoch seconds; ``taken_at_s`` is when the table was complete."""
    procs: Dict[int, ProcStat] = field(default_factory=dict)
    taken_at_s: float = 0.0
    boot_s: float = 0.0
    clk_tck: int = 100


def _kthread(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            flags = int(f.read().rsplit(b")", 1)[1].split()[6])
    except (OSError, IndexError, ValueError):
        flags = 0
    return bool(flags & _PF_KTHREAD)


def proc_table() -> ProcTable:
    """The stat of every process now (processes that vanish mid-scan are left out)."""
    procs: Dict[int, ProcStat] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = stat_fields(int(name))
            if st is not None:
                pid = int(name)
                procs[pid] = ProcStat(pid=pid, ppid=st["ppid"], comm=st["comm"], state=st["state"],
                                      start_ticks=st["start_ticks"], cpu_s=st["cpu_s"], rss_bytes=st["rss"],
                                      kernel_thread=_kthread(pid))
    return ProcTable(procs=procs, taken_at_s=time.time(), boot_s=boot_time(),
                     clk_tck=os.sysconf("SC_CLK_TCK"))


def read_cmdline(pid: int) -> List[str]:
    """argv of ``pid`` ([] for kernel threads, zombies, or a process gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode("utf-8", "backslashreplace") for a in raw.rstrip(b"\0").split(b"\0")] if raw else []


def read_cmdlines(pids: Iterable[int], parent_of: Dict[int, int], climb: int = CLIMB) -> Dict[int, List[str]]:
    """argv of each of ``pids`` and of up to ``climb`` of its ancestors
    (``parent_of``: pid -> ppid of the table), stopping below init, outside
    the table, or at an ancestor whose argv is already read."""
    got: Dict[int, List[str]] = {}
    for pid in pids:
        got[pid] = read_cmdline(pid)
        cur = parent_of.get(pid)
        for _ in range(climb):
            if cur is None or cur not in parent_of or cur <= 1 or got.get(cur):
                break
            got[cur] = read_cmdline(cur)
            cur = parent_of[cur]
    return got


def own_family() -> set:
    """Our process and its ancestors (the shell, sudo, a terminal)."""
    pid = os.getpid()
    own = {pid}
    for _ in range(64):
        st = stat_fields(pid)
        if st is None or st["ppid"] <= 0:
            break
        pid = st["ppid"]
        own.add(pid)
    return own
