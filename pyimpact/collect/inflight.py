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

from ..syscall_table import syscall_number

FD_CALLS = ("fsync", "fdatasync", "sync_file_range", "write", "pwrite64", "writev", "pwritev", "pwritev2",
            "fallocate", "ftruncate", "copy_file_range")
_BY_NR = {n: name for name in FD_CALLS if (n := syscall_number(name)) is not None}
O_ACCMODE = 0o3


def _read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read().decode("ascii", "replace")


def inflight_file_calls(pids: Iterable[int]) -> List[dict]:
    """{pid, tid, fd, path, syscall, for_ns, flags, size} for every thread of
    ``pids`` now inside a write/fsync-type call on a regular file.  ``for_ns``
    is 0: /proc does not say since when (the probes do)."""
    out: List[dict] = []
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                parts = _read(f"/proc/{pid}/task/{tid}/syscall").split()
            except OSError:
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
                path = os.readlink(f"/proc/{pid}/fd/{fd}")
                st = os.stat(f"/proc/{pid}/fd/{fd}")
                flags = int(next(line.split(":", 1)[1] for line in _read(f"/proc/{pid}/fdinfo/{fd}").splitlines()
                                 if line.startswith("flags:")).strip(), 8)
            except (OSError, StopIteration, ValueError):
                continue
            if not stat_mod.S_ISREG(st.st_mode) or not path.startswith("/"):
                continue
            if not name.startswith(("fsync", "fdatasync", "sync_file_range")) and (flags & O_ACCMODE) == 0:
                continue
            out.append({"pid": int(pid), "tid": int(tid), "fd": fd, "path": path, "syscall": name,
                        "for_ns": 0, "flags": flags, "size": st.st_size})
    return out
