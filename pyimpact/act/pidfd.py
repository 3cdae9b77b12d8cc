"""Process handles that survive pid reuse: a pidfd plus the (pid, start time) it was verified against.

Why a pidfd: a pid is only a number, and after the process exits the kernel
hands it to the next fork.  ``kill(pid)`` some seconds after looking at a
process may hit a stranger.  A pidfd (``pidfd_open(2)``) refers to the one
process it was opened for; ``pidfd_send_signal(2)`` through it fails with
ESRCH once that process has exited, even if the pid now names another.

Why the start time too: the pidfd is opened from a pid, so the moment of
opening is itself racy.  ``ProcessHandle.open`` opens the pidfd first, then
reads /proc/PID/stat, then checks through the pidfd that its process is still
alive: if it is, the pid cannot have been reused in between, so the stat just
read (start time, parent, name) belongs to the pidfd's process.  A caller
that identified the target earlier (a snapshot, a kill-preview) passes the
start time it saw, and a different one is refused.

This is the one place the act layer turns a pid into something it may signal.
"""
from __future__ import annotations

import os
import select
import signal as _signal
import time
from typing import Optional

import psutil

from ..collect import procfs
from ..errors import NotPermitted, ProcessGone


def _stat(pid: int) -> Optional[dict]:
    """comm, state, ppid, pgid, start_ticks from /proc/PID/stat (None: gone)."""
    try:
        comm, f = procfs.read_stat(pid)
    except (psutil.Error, OSError):
        return None
    field = procfs.stat_field
    return {"comm": comm, "state": f[0].decode(),
            "ppid": field(f, 4), "pgid": field(f, 5), "start_ticks": field(f, 22)}


class ProcessHandle:
    """One identified process: its pidfd, pid, start time, parent and name at identification."""

    def __init__(self, fd: int, pid: int, start_ticks: int, ppid: int, comm: str):
        self.fd = fd
        self.pid = pid
        self.start_ticks = start_ticks
        self.ppid = ppid
        self.comm = comm
        self.exited_at: Optional[float] = None      # time.time() when first seen exited

    @classmethod
    def open(cls, pid: int, start_ticks: Optional[int] = None, ppid: Optional[int] = None) -> "ProcessHandle":
        """Identify ``pid`` now.  ``start_ticks``: the start time the caller saw
        earlier (refused if it differs: the pid was reused).  ``ppid``: the parent
        the caller expects (a child found in its parent's children list).
        Raises ProcessGone when there is no such process (or it is another now)."""
        if pid <= 0:
            raise ProcessGone(f"no such process: {pid}", "check the PID (ps -p PID, pgrep -a NAME)")
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise ProcessGone(f"no such process: {pid}", "check the PID (ps -p PID, pgrep -a NAME)") from None
        except OSError as exc:
            raise NotPermitted(f"cannot open a pidfd for {pid}: {exc.strerror}", "needs Linux >= 5.3") from None
        st = _stat(pid)
        h = cls(fd, pid, st["start_ticks"] if st else -1, st["ppid"] if st else -1, st["comm"] if st else "")
        if st is None or h.exited():
            h.close()
            raise ProcessGone(f"process {pid} exited while it was being identified", "it is gone: nothing to act on")
        if st["state"] in ("Z", "X"):
            h.close()
            raise ProcessGone(f"process {pid} has already exited (zombie, waiting for its parent to reap it)",
                              "it is gone; its parent has not reaped it yet (nothing to act on)")
        if start_ticks is not None and st["start_ticks"] != start_ticks:
            h.close()
            raise ProcessGone(f"pid {pid} is now another process (start time {st['start_ticks']}, "
                              f"not {start_ticks}): the one identified earlier has exited",
                              "nothing was sent; look the process up again (pgrep -a NAME)")
        if ppid is not None and st["ppid"] != ppid:
            h.close()
            raise ProcessGone(f"pid {pid} is no longer a child of {ppid}",
                              "nothing was sent to it; run the command again to see the tree as it is now")
        return h

    # -- state -----------------------------------------------------------
    def exited(self) -> bool:
        """True once the process has exited (zombie included): the pidfd polls readable."""
        if self.fd < 0:
            return True
        if self.exited_at is not None:
            return True
        p = select.poll()
        p.register(self.fd, select.POLLIN)
        if p.poll(0):
            self.exited_at = time.time()
            return True
        return False

    def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the process to exit; True if it has."""
        if self.exited():
            return True
        p = select.poll()
        p.register(self.fd, select.POLLIN)
        if p.poll(max(0, int(timeout_s * 1000))):
            self.exited_at = time.time()
            return True
        return False

    def state(self) -> Optional[str]:
        """The /proc state letter of the process now (None once exited).
        Read through the pid, then confirmed through the pidfd."""
        if self.exited():
            return None
        st = _stat(self.pid)
        if st is None or self.exited() or st["start_ticks"] != self.start_ticks:
            return None
        return st["state"]

    def thread_states(self) -> dict:
        """tid -> state letter of every thread (empty once exited)."""
        out = {}
        try:
            tids = procfs.sys_call(self.pid, os.listdir, f"/proc/{self.pid}/task")
        except (psutil.Error, OSError):
            return out
        for tid in tids:
            try:
                out[int(tid)] = procfs.read_stat(self.pid, int(tid))[1][0].decode()
            except (psutil.Error, OSError, ValueError, IndexError):
                continue
        if self.exited():
            return {}
        return out

    # -- acting ----------------------------------------------------------
    def send(self, sig: int) -> bool:
        """Send ``sig`` through the pidfd.  False when the process has exited
        (ESRCH: the pidfd never reaches a process that reused the pid).
        Raises NotPermitted when the kernel refuses (EPERM)."""
        if self.fd < 0:
            return False
        try:
            _signal.pidfd_send_signal(self.fd, sig)
            return True
        except ProcessLookupError:
            self.exited_at = self.exited_at or time.time()
            return False
        except PermissionError:
            raise NotPermitted(f"not permitted to signal process {self.pid}",
                               "run as root or as the process's user") from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "ProcessHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ProcessHandle(pid={self.pid}, start_ticks={self.start_ticks}, comm={self.comm!r})"


def signal_number(name_or_number: str) -> int:
    """'TERM', 'SIGTERM', 'sigusr1', '15' -> the signal number (ValueError if unknown)."""
    text = str(name_or_number).strip()
    if text.isdigit():
        n = int(text)
        if 1 <= n < _signal.NSIG:
            return n
        raise ValueError(f"no signal number {n}")
    up = text.upper()
    if not up.startswith("SIG"):
        up = "SIG" + up
    try:
        return int(getattr(_signal.Signals, up))
    except AttributeError:
        raise ValueError(f"unknown signal {text!r}") from None


def signal_label(sig: int) -> str:
    try:
        return _signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"
