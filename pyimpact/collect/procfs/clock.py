"""Clocks: boot time, and the per-CPU offset between CLOCK_MONOTONIC and the
scheduler's task clock (so "how long ago did this thread run" is exact)."""
from __future__ import annotations

import os
import threading
import time
from typing import Dict, Iterable, Optional

import psutil

from ...snapshot import ThreadSnapshot
from .boundary import PROC, read
from .parse import parse_sched

def boot_time() -> float:
    """Boot time as epoch seconds (btime of /proc/stat, as psutil reports it)."""
    for line in read(f"{PROC}/stat", 0).split(b"\n"):
        if line.startswith(b"btime"):
            return float(line.split()[1])
    return 0.0


def own_exec_start_ns() -> Optional[int]:
    """se.exec_start of the calling thread: "now" in the scheduler's clock of
    the CPU we run on (as of when we were last scheduled in or ticked)."""
    try:
        return parse_sched(read(f"{PROC}/thread-self/sched", os.getpid()))[0]
    except (psutil.Error, OSError):
        return None


def calibrate_cpu_clocks(cpus: Iterable[int]) -> Dict[int, int]:
    """Per CPU, CLOCK_MONOTONIC minus the scheduler's task clock, in ns.

    se.exec_start is in the per-CPU task clock, which lags the monotonic clock
    by that CPU's stolen time (VMs) and drifts apart between CPUs (12 ms after
    half an hour on the 2-vCPU test VM; seconds after days).  So "how long ago
    did this thread run" is measured on the CPU it ran on: a helper thread
    moves itself to each CPU, sleeps briefly so it is scheduled in afresh
    (which sets its own exec_start to "now"), and compares.  CPUs it may not
    run on are left out.  The caller's own thread is never moved.
    """
    wanted = sorted(set(cpus))
    offsets: Dict[int, int] = {}

    def work() -> None:
        allowed = os.sched_getaffinity(0)
        for cpu in wanted:
            if cpu not in allowed:
                continue
            try:
                os.sched_setaffinity(0, {cpu})
            except OSError:
                continue
            time.sleep(0.0002)
            start = own_exec_start_ns()
            now = time.monotonic_ns()
            if start is not None:
                offsets[cpu] = now - start

    if wanted:
        t = threading.Thread(target=work, name="pyimpact-clock", daemon=True)
        t.start()
        t.join(1.0)
    return dict(offsets)


def apply_clock(t: ThreadSnapshot, offsets: Dict[int, int]) -> None:
    """Set last_ran_mono_ns / last_ran_ago_s from the CPU offset of ``t``."""
    if t.exec_start_ms is None or t.processor not in offsets:
        return
    start_ns = int(round(t.exec_start_ms * 1_000_000))
    t.last_ran_mono_ns = start_ns + offsets[t.processor]  # type: ignore[index]
    t.last_ran_ago_s = max(0.0, (t.read_mono_ns - t.last_ran_mono_ns) / 1e9)
