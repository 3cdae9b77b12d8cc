"""One thread's wait state: stat, syscall, wchan, kernel stack, sched, status.

These are the files that say what a thread waits on; they are read together,
as close in time as possible.
"""
from __future__ import annotations

import time
from typing import Optional

import psutil

from ...snapshot import ThreadSnapshot
from ...syscall_table import syscall_name
from .boundary import CLOCK_TICKS, PROC, ErrorNotes, read
from .clock import own_exec_start_ns
from .parse import parse_kv, parse_sched, parse_stack, parse_stat, parse_syscall, stat_field

def read_thread(pid: int, tid: int, *, stack: bool = True,
                errors: Optional[ErrorNotes] = None) -> ThreadSnapshot:
    """Snapshot one thread: state, wchan, syscall, kernel stack, scheduler times.

    The files that say what the thread waits on are read first and together;
    ``last_ran_ago_s`` here compares the thread's se.exec_start with our own
    read at the same moment (``take_snapshot`` refines it per CPU).  Raises
    NoSuchProcess(tid) if the thread is gone; other unreadable files leave
    their fields empty and are noted in ``errors``.
    """
    errs = errors if errors is not None else ErrorNotes()
    who = f"pid {pid}"
    base = f"{PROC}/{pid}/task/{tid}"
    name, f = parse_stat(read(f"{base}/stat", tid))
    t = ThreadSnapshot(tid=tid, name=name, state=f[0].decode(),
                       utime_s=stat_field(f, 14) / CLOCK_TICKS,
                       stime_s=stat_field(f, 15) / CLOCK_TICKS,
                       processor=stat_field(f, 39) if len(f) >= 37 else None)
    try:
        t.syscall_nr, t.syscall_args = parse_syscall(read(f"{base}/syscall", tid).decode())
        if t.syscall_nr is not None and t.syscall_nr >= 0:
            t.syscall_name = syscall_name(t.syscall_nr)
    except psutil.NoSuchProcess:
        raise
    except (psutil.Error, OSError, ValueError) as e:
        errs.add(who, "syscall unreadable", e)
    try:
        w = read(f"{base}/wchan", tid).decode("utf-8", "replace").strip()
        t.wchan = "" if w == "0" else w
    except psutil.NoSuchProcess:
        raise
    except (psutil.Error, OSError) as e:
        errs.add(who, "wchan unreadable", e)
    if stack:
        try:
            t.kernel_stack = parse_stack(read(f"{base}/stack", tid))
        except psutil.NoSuchProcess:
            raise
        except (psutil.Error, OSError) as e:
            errs.add(who, "kernel stack unreadable", e)
    try:
        start, runtime = parse_sched(read(f"{base}/sched", tid))
        own = own_exec_start_ns()
        t.read_mono_ns = time.monotonic_ns()
        if start is not None:
            t.exec_start_ms = start / 1e6
            if own is not None:
                t.last_ran_ago_s = max(0.0, (own - start) / 1e9)
        if runtime is not None:
            t.sum_exec_runtime_ms = runtime / 1e6
    except psutil.NoSuchProcess:
        raise
    except (psutil.Error, OSError, ValueError) as e:
        t.read_mono_ns = time.monotonic_ns()
        errs.add(who, "sched unreadable", e)
    try:
        st = parse_kv(read(f"{base}/status", tid))
        t.voluntary_ctxt_switches = int(st[b"voluntary_ctxt_switches"])
        t.nonvoluntary_ctxt_switches = int(st[b"nonvoluntary_ctxt_switches"])
    except psutil.NoSuchProcess:
        raise
    except (psutil.Error, OSError, KeyError, ValueError) as e:
        errs.add(who, "thread status unreadable", e)
    return t
