"""take_snapshot: processes (and their descendants) plus the host tables
needed to follow what they wait on.

Timing: the files that say what each thread waits on (stat, syscall, wchan,
stack, sched) are read for all threads of all processes first, as close
together in time as possible; fds, memory, environment and the host-wide
tables come after.  The whole snapshot is bounded by its ``timeout_s``.
"""
from __future__ import annotations

import os
import time
from typing import Dict, Iterable, List, Optional

import psutil

from ...snapshot import ProcessSnapshot, SystemSnapshot
from . import pidns, process
from .boundary import CLOCK_TICKS, PAGE_SIZE, ErrorNotes, Slot, reason_of, run_bounded, where_stuck
from .clock import apply_clock, boot_time, calibrate_cpu_clocks
from .tables import inode_holders, own_netns, read_locks, read_sockets
from .tree import process_identity, walk

def _salvage(slot: Slot, timeout_s: float, errs: ErrorNotes) -> Optional[ProcessSnapshot]:
    """Copy of what an unfinished worker had read, and a note of where it stuck."""
    pid = slot.item if isinstance(slot.item, int) else slot.item.pid
    if not slot.started:
        errs.add(f"pid {pid}", "not read", f"time budget of {timeout_s:g} s used up")
        return None
    where = where_stuck(slot.thread_ident)
    errs.add(f"pid {pid}", f"reading {where}",
             f"did not return within {timeout_s:g} s; the process may hold a kernel lock")
    errs.merge(slot.errs)
    p = slot.holder.get("proc")
    return ProcessSnapshot.from_dict(p.to_dict()) if p is not None else None


def take_snapshot(pids: Iterable[int], *, tree: bool = True, threads: bool = True,
                  stacks: bool = True, holders: bool = True,
                  timeout_s: float = 1.0) -> SystemSnapshot:
    """Snapshot ``pids`` (and all their descendants if ``tree``) plus the host
    tables needed to follow what they wait on.

    ``threads=False`` reads only each main thread; ``stacks=False`` skips
    kernel stacks; ``holders=False`` skips the host-wide scan of who holds
    each pipe and socket.  The wait state of all threads is read first, then
    the rest; the whole snapshot takes at most about ``timeout_s`` even when
    a read blocks (see the module docstring).

    Raises NoSuchProcess (or AccessDenied) when a requested pid cannot be
    read; descendants that exit meanwhile are skipped and noted in ``errors``.
    """
    t0 = time.monotonic_ns()
    deadline1 = t0 + int(timeout_s * 0.5e9)
    deadline2 = t0 + int(timeout_s * 1e9)
    errs = ErrorNotes()
    snap = SystemSnapshot(taken_at_ns=time.time_ns(), monotonic_ns=t0,
                          clock_ticks=CLOCK_TICKS, page_size=PAGE_SIZE)
    roots = list(dict.fromkeys(int(p) for p in pids))
    for pid in roots:
        process_identity(pid)  # a missing root raises NoSuchProcess here
    order, kids = walk(roots, deep=tree, errors=errs)

    def gone(pid: int, err: BaseException) -> None:
        if pid in roots:
            raise err
        errs.add(f"pid {pid}", "skipped", "exited during the snapshot"
                 if isinstance(err, psutil.NoSuchProcess) else reason_of(err))

    # Phase 1: what every thread waits on, all processes together.
    state_slots = run_bounded(
        lambda pid, e, h: process.read_process_state(pid, threads, stacks, e, h), order, deadline1)
    procs: List[ProcessSnapshot] = []
    for s in state_slots:
        if not s.done:
            p = _salvage(s, timeout_s, errs)
            if p is not None:
                snap.processes[p.pid] = p
            continue
        errs.merge(s.errs)
        if s.error is not None:
            gone(s.item, s.error)
            continue
        procs.append(s.result)

    offsets = calibrate_cpu_clocks({t.processor for p in procs for t in p.threads
                                    if t.processor is not None and t.exec_start_ms is not None})
    for p in procs:
        for t in p.threads:
            if t.processor in offsets:
                apply_clock(t, offsets)
            elif t.exec_start_ms is not None:
                errs.add(f"pid {p.pid}", "per-CPU clock offset",
                         f"cpu {t.processor} not calibrated; last_ran_ago_s uses our CPU's clock")

    # Phase 2: everything slower.
    detail_slots = run_bounded(lambda p, e, h: process.read_process_details(p, e, h), procs, deadline2)
    for s in detail_slots:
        p = s.item
        if not s.done:
            salvaged = _salvage(s, timeout_s, errs)
            snap.processes[p.pid] = salvaged or p
            continue
        errs.merge(s.errs)
        if s.error is not None:
            gone(p.pid, s.error)
            continue
        snap.processes[p.pid] = p
    for pid, p in snap.processes.items():
        p.children = list(kids.get(pid, []))

    # Host tables.
    snap.boot_time = boot_time()
    for p in snap.processes.values():
        p.create_time = snap.boot_time + p.start_ticks / CLOCK_TICKS
    try:
        snap.locks = read_locks()
    except (psutil.Error, OSError) as e:
        errs.add("host", "/proc/locks unreadable", e)
    all_fds = [(p, f) for p in snap.processes.values() for f in p.fds]
    if any(f.kind == "socket" for _, f in all_fds):
        namespaces: Dict[Optional[int], int] = {}
        for p, f in all_fds:
            if f.kind == "socket":
                namespaces.setdefault(p.netns, p.pid)
        own = own_netns()
        for ns, pid in namespaces.items():
            try:
                snap.sockets.update(read_sockets(None if ns == own else pid, errors=errs))
            except (psutil.Error, OSError) as e:
                errs.add(f"pid {pid}", "sockets unreadable", e)
    if holders:
        fifos = {f.target: f.inode for _, f in all_fds
                 if f.kind == "pipe" and f.target.startswith("/") and f.inode is not None}
        # A flock() or OFD lock belongs to the open file, not to the pid /proc/locks
        # prints (the process that took it, which may have exited after handing the
        # descriptor on: `exec 9>f; flock 9; exec long-job`): find who holds such
        # files open, so the lock's real holder can be named.
        gone = {lk.inode for lk in snap.locks if not lk.waiting and lk.inode is not None
                and lk.kind in ("FLOCK", "OFDLCK") and (lk.pid <= 0 or not os.path.exists(f"/proc/{lk.pid}"))}
        if gone:
            fifos.update({f.target: f.inode for _, f in all_fds
                          if f.kind == "file" and f.inode in gone and f.target.startswith("/")})
        snap.inode_holders = inode_holders(fifo_paths=fifos, errors=errs)
    pidns.annotate(snap, errs)     # pids named inside a PID namespace are not host pids
    snap.errors = errs.lines()
    snap.duration_ns = time.monotonic_ns() - t0
    return snap
