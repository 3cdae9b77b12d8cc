"""Process identity and THE process-tree walk of the tool.

Children come from /proc/PID/task/TID/children (one small read per thread);
kernels without that file fall back to one scan of every process's ppid.
Every walk of descendants in collect/ and act/ goes through ``walk``.
"""
from __future__ import annotations

import os
from typing import List, Set, Tuple

import psutil

from .boundary import PROC, read, sys_call
from .parse import parse_stat, stat_field

def process_identity(pid: int) -> Tuple[int, int]:
    """(pid, start_ticks): what identifies a process across pid reuse."""
    _, f = parse_stat(read(f"{PROC}/{pid}/stat", pid))
    return pid, stat_field(f, 22)


def all_pids() -> List[int]:
    """Every process id in /proc now (kernel threads included)."""
    return sorted(int(n) for n in os.listdir(PROC) if n.isdigit())


def _has_children_files() -> bool:
    """Whether the kernel has /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN)."""
    return os.path.exists(f"{PROC}/thread-self/children")


_HAS_CHILDREN_FILES = _has_children_files()


def children(pid: int) -> List[int]:
    """Direct children of ``pid`` (forked by any of its threads).

    Read from /proc/PID/task/TID/children, which costs one small read per
    thread; kernels without it fall back to reading every process's ppid.
    """
    if not _HAS_CHILDREN_FILES:
        process_identity(pid)
        return _children_by_scan(pid)
    out: List[int] = []
    for tid in sys_call(pid, os.listdir, f"{PROC}/{pid}/task"):
        try:
            out.extend(int(x) for x in read(f"{PROC}/{pid}/task/{tid}/children", pid).split())
        except psutil.NoSuchProcess:
            continue  # that thread exited meanwhile
    return sorted(set(out))


def _children_by_scan(pid: int) -> List[int]:
    """Children of ``pid`` found by reading every process's ppid (slow path)."""
    out = []
    for name in os.listdir(PROC):
        if name.isdigit():
            try:
                _, f = parse_stat(read(f"{PROC}/{name}/stat", int(name)))
                if stat_field(f, 4) == pid:
                    out.append(int(name))
            except (psutil.Error, OSError, ValueError):
                pass
    return sorted(out)


def descendants(pid: int) -> List[int]:
    """All descendants of ``pid`` (children first, breadth-first), without ``pid``.

    Raises NoSuchProcess if ``pid`` itself does not exist; children that exit
    while we walk are simply not listed.
    """
    process_identity(pid)
    seen: Set[int] = {pid}
    out: List[int] = []
    queue = [pid]
    while queue:
        cur = queue.pop(0)
        try:
            kids = children(cur)
        except psutil.NoSuchProcess:
            if cur == pid:
                raise
            continue
        for k in kids:
            if k not in seen:
                seen.add(k)
                out.append(k)
                queue.append(k)
    return out
