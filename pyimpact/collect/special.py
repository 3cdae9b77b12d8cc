"""Processes the per-process commands do not apply to: kernel threads and init.

Why: a kernel thread has no user-space memory, files, or syscalls of its own
(/proc shows it "in read(fd 0)" from leftover registers), so a diagnosis of
it is nonsense; and pid 1 is the machine's init (or the init of the PID
namespace we run in), whose death ends every process on the machine (the
kernel panics) or in the namespace, so a kill preview that proposes SIGSTOP
or SIGTERM for it is dangerous. `diagnose` and `kill-preview` ask here first
and answer with one plain line instead (exit code 2, see pyimpact.errors).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import psutil

from . import procfs

_PF_KTHREAD = 0x00200000  # task flag of kernel threads (/proc/PID/stat field 9)
KTHREADD_PID = 2


@dataclass(frozen=True)
class SpecialProcess:
    pid: int
    kind: str        # "kernel-thread" | "init"
    name: str

    def describe(self, command: str) -> str:
        """One line saying what the process is and why ``command`` does not apply."""
        if self.kind == "kernel-thread":
            return (f"pid {self.pid} ({self.name}) is a kernel thread: it runs inside the kernel, with no "
                    f"user-space program, files or syscalls of its own, so {command} does not apply to it")
        return (f"pid {self.pid} ({self.name}) is init, the ancestor of every process here: if it dies, the "
                f"kernel panics (or, in a container, every process of its PID namespace is killed), so "
                f"{command} does not apply to it")


def _stat(pid: int) -> Optional[tuple]:
    """(comm, ppid, flags) from /proc/PID/stat, None if unreadable."""
    try:
        comm, fields = procfs.read_stat(pid)
        return comm, procfs.stat_field(fields, 4), procfs.stat_field(fields, 9)
    except (psutil.Error, OSError, ValueError, IndexError):
        return None


def _cmdline_empty(pid: int) -> bool:
    try:   # argv takes the target's mmap lock: under a deadline
        return not procfs.read_bounded(f"/proc/{pid}/cmdline", pid, procfs.CMDLINE_TIMEOUT_S)
    except (psutil.Error, OSError):
        return False


def special_process(pid: int) -> Optional[SpecialProcess]:
    """A SpecialProcess if ``pid`` is a kernel thread or pid 1; None otherwise
    (also when it cannot be read: the command's own checks say why)."""
    st = _stat(pid)
    if st is None:
        return None
    name, ppid, flags = st
    if flags & _PF_KTHREAD or pid == KTHREADD_PID or (ppid == KTHREADD_PID and _cmdline_empty(pid)):
        return SpecialProcess(pid, "kernel-thread", name)
    if pid == 1:
        return SpecialProcess(pid, "init", name)
    return None
