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
import stat
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional

import psutil

from . import procfs
from .workfiles import stat_fields

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


def _proc_stat(pid: int) -> Optional[ProcStat]:
    """The stat line of ``pid`` as a ProcStat (None: gone or unreadable)."""
    try:
        comm, f = procfs.read_stat(pid)
        return ProcStat(pid=pid, ppid=procfs.stat_field(f, 4), comm=comm, state=f[0].decode(),
                        start_ticks=procfs.stat_field(f, 22),
                        cpu_s=(procfs.stat_field(f, 14) + procfs.stat_field(f, 15)) / procfs.CLOCK_TICKS,
                        rss_bytes=procfs.stat_field(f, 24) * procfs.PAGE_SIZE,
                        kernel_thread=bool(procfs.stat_field(f, 9) & procfs.PF_KTHREAD))
    except (psutil.Error, OSError, IndexError, ValueError):
        return None


def proc_table() -> ProcTable:
    """The stat of every process now (processes that vanish mid-scan are left out)."""
    procs: Dict[int, ProcStat] = {}
    for pid in procfs.all_pids():
        st = _proc_stat(pid)
        if st is not None:
            procs[pid] = st
    return ProcTable(procs=procs, taken_at_s=time.time(), boot_s=procfs.boot_time(),
                     clk_tck=procfs.CLOCK_TICKS)


def read_cmdline(pid: int) -> List[str]:
    """argv of ``pid`` ([] for kernel threads, zombies, a process gone, or one
    whose argv did not come within the deadline: the live panel calls this,
    and a target holding its mmap lock must not stick the panel)."""
    try:
        return procfs.read_cmdline(pid)
    except (psutil.Error, OSError, ValueError):
        return []


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


def _pipe_inodes(pid) -> set:
    """The pipes and FIFOs on fds 0-2 of ``pid`` ("self" or a pid), as (dev, inode)."""
    out = set()
    for fd in (0, 1, 2):
        try:
            st = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if stat.S_ISFIFO(st.st_mode):
            out.add((st.st_dev, st.st_ino))
    return out


def pipeline_neighbours(table: "ProcTable", family: set) -> set:
    """The other commands of the shell pipeline we run in (``sudo pyimpact
    diagnose --all | head``): children of our family (us and our ancestors:
    the shell, sudo) whose standard descriptors are one of our standard
    pipes.  They wait on us, the observer, so they are ours to leave out,
    like our shell."""
    mine = _pipe_inodes("self")
    if not mine:
        return set()
    return {pid for pid, st in table.procs.items()
            if st.ppid in family and pid not in family and _pipe_inodes(pid) & mine}
