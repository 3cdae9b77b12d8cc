"""Process identity and THE process-tree walk of the tool.

Children come from /proc/PID/task/TID/children (one small read per thread);
kernels without that file fall back to one scan of every process's ppid.
Every walk of descendants in collect/ and act/ goes through ``walk``.
"""
from __future__ import annotations

import os
from typing import Dict, Iterable, List, Optional, Tuple

import psutil

from .boundary import PROC, ErrorNotes, read, sys_call
from .parse import parse_stat, stat_field

def read_stat(pid: int, tid: Optional[int] = None) -> Tuple[str, List[bytes]]:
    """(comm, fields) of /proc/PID/stat, or of /proc/PID/task/TID/stat
    (``stat_field(fields, n)`` reads field n of proc(5))."""
    path = f"{PROC}/{pid}/stat" if tid is None else f"{PROC}/{pid}/task/{tid}/stat"
    return parse_stat(read(path, pid if tid is None else tid))


def process_identity(pid: int) -> Tuple[int, int]:
    """(pid, start_ticks): what identifies a process across pid reuse."""
    _, f = read_stat(pid)
    return pid, stat_field(f, 22)


def exists(pid: int) -> bool:
    """Whether /proc has an entry for ``pid`` now (zombies included)."""
    return os.path.exists(f"{PROC}/{int(pid)}")


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
        return _children_by_scan().get(pid, [])
    out: List[int] = []
    for tid in sys_call(pid, os.listdir, f"{PROC}/{pid}/task"):
        try:
            out.extend(int(x) for x in read(f"{PROC}/{pid}/task/{tid}/children", pid).split())
        except psutil.NoSuchProcess:
            continue  # that thread exited meanwhile
    return sorted(set(out))


def _children_by_scan() -> Dict[int, List[int]]:
    """ppid -> children of every process, from ONE pass over every stat (the
    slow path for kernels without children files)."""
    out: Dict[int, List[int]] = {}
    for pid in all_pids():
        try:
            _, f = read_stat(pid)
            out.setdefault(stat_field(f, 4), []).append(pid)
        except (psutil.Error, OSError, ValueError, IndexError):
            pass
    return out


def walk(roots: Iterable[int], *, deep: bool = True, errors: Optional[ErrorNotes] = None,
         strict: bool = False) -> Tuple[List[int], Dict[int, List[int]]]:
    """THE process-tree walk: (order, kids) for ``roots`` and, if ``deep``,
    all their descendants, breadth-first (roots first, each pid once).

    ``kids`` maps every pid in ``order`` to its direct children.  A pid that
    exits meanwhile has no children; other unreadable children lists are
    noted in ``errors``.  ``strict``: a root that is gone raises NoSuchProcess,
    and any other unreadable children list raises.
    Each pid costs one read per thread (or, on kernels without children
    files, the whole walk costs one scan of every process).
    """
    order = list(dict.fromkeys(int(p) for p in roots))
    root_set = set(order)
    by_scan = None if _HAS_CHILDREN_FILES else _children_by_scan()
    kids: Dict[int, List[int]] = {}
    seen = set(order)
    i = 0
    while i < len(order):
        pid = order[i]
        i += 1
        try:
            if by_scan is None:
                kids[pid] = children(pid)
            else:
                process_identity(pid)
                kids[pid] = sorted(by_scan.get(pid, []))
        except psutil.NoSuchProcess:
            if strict and pid in root_set:
                raise
            kids[pid] = []
            continue
        except (psutil.Error, OSError) as e:
            if strict:
                raise
            if errors is not None:
                errors.add(f"pid {pid}", "children unreadable", e)
            kids[pid] = []
        if deep:
            for k in kids[pid]:
                if k not in seen:
                    seen.add(k)
                    order.append(k)
    return order, kids


def descendants(pid: int) -> List[int]:
    """All descendants of ``pid`` (children first, breadth-first), without ``pid``.

    Raises NoSuchProcess if ``pid`` itself does not exist; children that exit
    while we walk are simply not listed.
    """
    process_identity(pid)
    return walk([pid], strict=True)[0][1:]


def tree_of(root: int) -> List[int]:
    """``root`` and its descendants now (root first; just [root] when it is gone
    or its children cannot be read)."""
    try:
        return walk([root])[0]
    except (psutil.Error, OSError):
        return [root]
