"""The per-thread in-flight slots (probes/syscalls.bpf.c) with real threads
and the real probes (root, BPF).

A thread's call in flight lives in the slot tid % slots; where two traced
threads' tids share a slot (on machines whose pid_max is above the slot
count) the second keeps its call in a hash instead. This machine's pid_max
gives every thread its own slot, so the test shrinks the array to one or two
slots: then most threads go through the spill hash, and every call must still
be counted exactly and every blocked call seen in flight, with its arguments.
"""
from __future__ import annotations

import sys
import time

import pytest

from conftest import wait_for_line
from pyimpact.collect.probes import KernelProbes, ProbeConfig

NCALLS, NTHREADS = 1009, 3

TARGET = r"""
import os, sys, threading, time
n, k = int(sys.argv[1]), int(sys.argv[2])
go = threading.Event()
ready = []
def worker(i):
    go.wait()
    for _ in range(n):
        os.getppid()
    ready.append(threading.get_native_id())
    time.sleep(600 + i)          # clock_nanosleep, in flight at the end
threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(k)]
for t in threads:
    t.start()
print("ready", flush=True)
sys.stdin.readline()
go.set()
for _ in range(n):
    os.getppid()
while len(ready) < k:
    time.sleep(0.01)
print("done", threading.get_native_id(), *ready, flush=True)
sys.stdin.readline()             # read(0, ...), in flight at the end
"""


@pytest.mark.parametrize("slots", [1, 2, None])
def test_counts_and_inflight_whatever_the_slots(spawn, slots):
    import subprocess

    target = spawn([sys.executable, "-c", TARGET, str(NCALLS), str(NTHREADS)], stdin=subprocess.PIPE,
                   stdout=subprocess.PIPE)
    wait_for_line(target.stdout, "ready")
    probes = KernelProbes(ProbeConfig(pids=(target.pid,), flight_slots=slots)).open()
    try:
        target.stdin.write(b"go\n")
        target.stdin.flush()
        tids = [int(x) for x in wait_for_line(target.stdout, "done").split()[1:]]
        assert len(tids) == NTHREADS + 1
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            inflight = {c.tid: c for c in probes.inflight()}
            if all(t in inflight for t in tids):
                break
            time.sleep(0.05)
        stats = probes.syscall_stats()
        lost = probes.lost()
    finally:
        probes.close()
    counts = {s.tid: s.count for s in stats if s.syscall == "getppid"}
    assert counts == {t: NCALLS for t in tids}, counts
    assert lost["map_full"] == 0
    main, workers = tids[0], tids[1:]
    assert inflight[main].syscall == "read" and inflight[main].args[0] == 0, inflight[main]
    assert inflight[main].pid == target.pid
    for t in workers:
        assert inflight[t].syscall == "clock_nanosleep" and inflight[t].pid == target.pid, inflight[t]
    now_wall = time.time_ns()
    assert all(0 < now_wall - c.since_ns < 60e9 for c in inflight.values())


MIX = r"""
import ctypes, os, sys
n, nrs = int(sys.argv[1]), [int(x) for x in sys.argv[2].split(",")]
libc = ctypes.CDLL(None, use_errno=True)
print("ready", flush=True)
sys.stdin.readline()
for _ in range(n):
    for nr in nrs:
        libc.syscall(nr)          # no such syscall: -ENOSYS, traced like any other
    os.getppid()
print("done", flush=True)
sys.stdin.readline()
"""
#: Beyond every architecture's table (the kernel answers ENOSYS, both
#: tracepoints fire) and equal modulo 32: all in one set of the cache.
UNKNOWN_NRS = (1000, 1032, 1064, 1096)


def test_counts_exact_when_syscalls_share_a_cache_set(spawn):
    """A thread's slot caches where its stats records are in two ways of
    nr % 32. Four numbers of one set, called in turn, miss every time (the
    stat_index path); every call still lands in its own record, exactly once,
    and getppid beside them hits its own set."""
    import subprocess

    target = spawn([sys.executable, "-c", MIX, str(NCALLS), ",".join(map(str, UNKNOWN_NRS))],
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    wait_for_line(target.stdout, "ready")
    probes = KernelProbes(ProbeConfig(pids=(target.pid,))).open()
    try:
        target.stdin.write(b"go\n")
        target.stdin.flush()
        wait_for_line(target.stdout, "done")
        stats = probes.syscall_stats()
        lost = probes.lost()
    finally:
        probes.close()
    mine = [s for s in stats if s.tid == target.pid]
    counts = {s.nr: s.count for s in mine if s.nr in UNKNOWN_NRS}
    assert counts == {nr: NCALLS for nr in UNKNOWN_NRS}, counts
    assert all(s.errors == NCALLS and s.last_err == -38 for s in mine if s.nr in UNKNOWN_NRS)   # ENOSYS
    assert [s.count for s in mine if s.syscall == "getppid"] == [NCALLS]
    assert len({(s.tid, s.nr) for s in stats}) == len(stats)
    assert lost["map_full"] == 0


EXEC_FROM_THREAD = r"""
import os, sys, threading
print("ready", threading.get_native_id(), flush=True)
sys.stdin.readline()
def run():
    print("exec", threading.get_native_id(), flush=True)
    os.execv("/bin/sleep", ["sleep", "600"])
threading.Thread(target=run).start()
threading.Event().wait()
"""


def test_exec_from_a_thread_leaves_no_call_in_flight_behind(spawn):
    """A thread other than the leader calls execve: the kernel gives it the
    leader's tid, and its old tid is gone. In flight afterwards: the new
    program's one thread, in its own sleep; nothing under the old tid (whose
    slot held the execve that never returned under it)."""
    import subprocess

    target = spawn([sys.executable, "-c", EXEC_FROM_THREAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    wait_for_line(target.stdout, "ready")
    probes = KernelProbes(ProbeConfig(pids=(target.pid,))).open()
    try:
        target.stdin.write(b"go\n")
        target.stdin.flush()
        old_tid = int(wait_for_line(target.stdout, "exec").split()[1])
        assert old_tid != target.pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            inflight = probes.inflight()
            if any(c.tid == target.pid and c.syscall == "clock_nanosleep" for c in inflight):
                break
            time.sleep(0.05)
        with open(f"/proc/{target.pid}/comm") as f:
            assert f.read().strip() == "sleep"
    finally:
        probes.close()
    assert [(c.tid, c.syscall) for c in inflight] == [(target.pid, "clock_nanosleep")], inflight


def test_slot_count_is_checked():
    from pyimpact.errors import UsageError

    with pytest.raises(UsageError):
        ProbeConfig(pids=(1,), flight_slots=3).validate()
