"""Writes and fsyncs in progress right now in a process tree, from /proc alone.

Why: `stop --when safe` must not send a signal while a thread of the job is
inside fsync() on its checkpoint (or inside a long write() to it).  The
kernel says, for free, which syscall each thread is in and with which
arguments (/proc/PID/task/TID/syscall; needs ptrace access, i.e. root or the
job's user); the first argument of these calls is the fd, which
/proc/PID/fd and fdinfo turn into a path and open flags.  No probes needed,
so this works in the /proc-only mode too.

Collect only: rows shaped like the probes' in-flight rows that
pyimpact.analyse.impact.checkpoints.find_checkpoints takes (``inflight``).
"""
from __future__ import annotations

import os
import stat as stat_mod
from typing import Iterable, List

import psutil

from ..syscall_table import syscall_number
from . import procfs

FD_CALLS = ("fsync", "fdatasync", "sync_file_range", "write", "pwrite64", "writev", "pwritev", "pwritev2",
            "fallocate", "ftruncate", "copy_file_range")
_BY_NR = {n: name for name in FD_CALLS if (n := syscall_number(name)) is not None}
O_ACCMODE = 0o3
SYSCALL_TIMEOUT_S = 0.5     # a thread's syscall file takes its exec lock
_GONE = (psutil.Error, OSError)   # TimeoutError included: a stuck read is skipped


def inflight_file_calls(pids: Iterable[int]) -> List[dict]:
    """{pid, tid, fd, path, syscall, for_ns, flags, size} for every thread of
    ``pids`` now inside a write/fsync-type call on a regular file.  ``for_ns``
    is 0: /proc does not say since when (the probes do)."""
    out: List[dict] = []
    for pid in pids:
        try:
            tids = procfs.sys_call(pid, os.listdir, f"/proc/{pid}/task")
        except _GONE:
            continue
        for tid in tids:
            try:
                parts = procfs.read_bounded(f"/proc/{pid}/task/{tid}/syscall", int(tid),
                                            SYSCALL_TIMEOUT_S).decode("ascii", "replace").split()
            except _GONE:
                continue
            if not parts or parts[0] in ("running", "-1"):
                continue
            try:
                name = _BY_NR.get(int(parts[0]))
                fd = int(parts[1], 16) if name else -1
            except (ValueError, IndexError):
                continue
            if name is None or fd < 0:
                continue
            try:
                path = procfs.sys_call(pid, os.readlink, f"/proc/{pid}/fd/{fd}")
                st = procfs.sys_call(pid, os.stat, f"/proc/{pid}/fd/{fd}")
                flags = int(procfs.parse_kv(procfs.read(f"/proc/{pid}/fdinfo/{fd}", pid))[b"flags"], 8)
            except (psutil.Error, OSError, KeyError, ValueError):
                continue
            if not stat_mod.S_ISREG(st.st_mode) or not path.startswith("/"):
                continue
            if not name.startswith(("fsync", "fdatasync", "sync_file_range")) and (flags & O_ACCMODE) == 0:
                continue
            out.append({"pid": int(pid), "tid": int(tid), "fd": fd, "path": path, "syscall": name,
                        "for_ns": 0, "flags": flags, "size": st.st_size})
    return out
