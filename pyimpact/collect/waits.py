"""What a blocked thread's syscall arguments point to, read from its memory.

/proc/PID/task/TID/syscall gives the raw argument registers of the syscall a
thread sleeps in.  Some of what the wait-for graph needs lies behind those
pointers, in the target's memory:

* a futex word, and for a glibc pthread mutex the owner TID stored next to it
  (x86-64 glibc: ``__lock`` at offset 0, ``__count`` 4, ``__owner`` 8,
  ``__nusers`` 12, ``__kind`` 16) -- the only record of who holds the lock;
* the timeout of a sleep, poll or futex wait (a ``struct timespec``), so "sleeps
  for another 3 s" can be told from "sleeps forever";
* the descriptors a ``poll``/``select`` waits on, and the targets of an epoll
  instance (from /proc/PID/fdinfo/EPFD).

All reads are read-only (/proc/PID/mem with pread) and bounded in time: a
target that holds its mmap lock makes the read hang, so after one timeout the
rest of that process is skipped.  Collect only: the result is a JSON-able dict
stored in the Recording (``metadata.wait_details``) and interpreted by
``pyimpact.analyse.hang.waitgraph``; nothing here decides.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Dict, Iterable, List, Optional, Tuple

import psutil

from ..snapshot import SystemSnapshot, ThreadSnapshot
from . import jvm_monitors, procfs

#: futex commands that wait (op & ~(PRIVATE|CLOCK_REALTIME))
FUTEX_WAIT_CMDS = {0: "WAIT", 6: "LOCK_PI", 9: "WAIT_BITSET", 11: "WAIT_REQUEUE_PI", 13: "LOCK_PI2"}
FUTEX_PRIVATE = 128
FUTEX_CLOCK_REALTIME = 256
CLOCK_REALTIME, CLOCK_MONOTONIC = 0, 1
MUTEX_BYTES = 20          # __lock, __count, __owner, __nusers, __kind
MAX_POLL_FDS = 256
MAX_SELECT_NFDS = 1024


class _Reader:
    """Bounded memory reads of one process; gives up on it after one hang."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.hung = False

    def read(self, addr: int, size: int) -> bytes:
        if self.hung:
            raise TimeoutError("an earlier read of this process did not return")
        if not addr:
            raise ValueError("NULL pointer")
        try:
            value = procfs.read_memory_word(self.pid, addr, size, timeout_s=0.3)
        except TimeoutError:
            self.hung = True
            raise
        return value.to_bytes(size, "little")


def _maps(pid: int, timeout_s: float = 0.3) -> bytes:
    """/proc/PID/maps, bounded in time (reading it takes the target's mmap lock)."""
    return procfs.read_bounded(f"/proc/{pid}/maps", pid, timeout_s)


def _shared_mapping(maps: bytes, addr: int) -> Optional[Dict[str, Any]]:
    """The shared file or shared-memory mapping holding ``addr``: its device,
    inode, path and the address's offset in it; None for a private mapping."""
    for line in maps.split(b"\n"):
        parts = line.split(None, 5)
        if len(parts) < 5 or b"-" not in parts[0]:
            continue
        lo, hi = (int(x, 16) for x in parts[0].split(b"-", 1))
        if not lo <= addr < hi:
            continue
        inode = int(parts[4])
        if b"s" not in parts[1] or not inode:
            return None
        return {"dev": parts[3].decode(), "inode": inode, "offset": int(parts[2], 16) + addr - lo,
                "path": parts[5].strip().decode(errors="replace") if len(parts) > 5 else ""}
    return None


def _mapped_keys(maps: bytes) -> set:
    """"dev:inode" of every shared mapping with an inode."""
    out = set()
    for line in maps.split(b"\n"):
        parts = line.split(None, 5)
        if len(parts) >= 5 and b"s" in parts[1] and parts[4] != b"0":
            out.add(f"{parts[3].decode()}:{int(parts[4])}")
    return out


def _why(err: BaseException) -> str:
    if isinstance(err, psutil.AccessDenied):
        return "permission denied"
    if isinstance(err, psutil.NoSuchProcess):
        return "process gone"
    if isinstance(err, TimeoutError):
        return "read did not return in time"
    if isinstance(err, OSError) and err.errno:
        return err.strerror or str(err)
    return str(err) or type(err).__name__


def _timespec(rd: _Reader, addr: int, *, timeval: bool = False) -> Dict[str, Any]:
    """A struct timespec (or timeval) at ``addr`` as {"ns": total} (or error)."""
    try:
        raw = rd.read(addr, 16)
    except (psutil.Error, OSError, ValueError, TimeoutError) as err:
        return {"error": _why(err)}
    sec = int.from_bytes(raw[:8], "little", signed=True)
    frac = int.from_bytes(raw[8:], "little", signed=True)
    return {"ns": sec * 1_000_000_000 + frac * (1000 if timeval else 1)}


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


#: poll(2) event bits: ready to read (or urgent data), ready to write
POLLIN, POLLPRI, POLLOUT = 0x1, 0x2, 0x4


def _epoll_targets(pid: int, epfd: int) -> Tuple[List[int], List[int]]:
    """fds registered in epoll instance ``epfd`` (the "tfd:" lines of its
    fdinfo), and those among them registered for writing only."""
    out, write_only = [], []
    for line in procfs.read(f"/proc/{pid}/fdinfo/{epfd}", pid).split(b"\n"):
        if line.startswith(b"tfd:"):
            words = line.split()
            fd = int(words[1])
            out.append(fd)
            if b"events:" in words:
                try:
                    ev = int(words[words.index(b"events:") + 1], 16)
                except (IndexError, ValueError):
                    continue
                if ev & POLLOUT and not ev & (POLLIN | POLLPRI):
                    write_only.append(fd)
    return out, write_only


def _fd_set(rd: _Reader, addr: int, nfds: int) -> List[int]:
    raw = rd.read(addr, (nfds + 7) // 8)
    return [i for i in range(nfds) if raw[i // 8] >> (i % 8) & 1]


def thread_details(pid: int, t: ThreadSnapshot, rd: _Reader, retries: int = 3) -> Optional[Dict[str, Any]]:
    """What the syscall ``t`` sleeps in points to; None when nothing to read."""
    name, a = t.syscall_name, list(t.syscall_args)
    if not name or len(a) < 6 or t.state not in ("S", "D"):
        return None
    out: Dict[str, Any] = {"nr": t.syscall_nr, "args": [int(x) for x in a]}
    try:
        if name == "futex":
            cmd = a[1] & ~(FUTEX_PRIVATE | FUTEX_CLOCK_REALTIME)
            if cmd not in FUTEX_WAIT_CMDS:
                return None
            out["futex"] = _futex(rd, a[0])
            if not a[1] & FUTEX_PRIVATE and "error" not in out["futex"]:
                # a futex in shared memory: which file (or shared-memory object) it lies
                # in, so that the processes mapping the same one can be found
                try:
                    m = _shared_mapping(_maps(pid), a[0])
                except (psutil.Error, OSError, ValueError, TimeoutError) as err:
                    out["futex"]["map_error"] = _why(err)
                else:
                    if m is not None:
                        out["futex"]["map"] = m
            if a[3]:
                ts = _timespec(rd, a[3])
                ts["absolute"] = cmd != 0
                ts["clock"] = CLOCK_REALTIME if a[1] & FUTEX_CLOCK_REALTIME else CLOCK_MONOTONIC
                out["timeout"] = ts
        elif name == "futex_wait":
            out["futex"] = _futex(rd, a[0])
            if a[4]:
                out["timeout"] = dict(_timespec(rd, a[4]), absolute=True, clock=int(a[5]))
        elif name == "futex_waitv":
            if a[3]:
                out["timeout"] = dict(_timespec(rd, a[3]), absolute=True, clock=int(a[4]))
        elif name == "clock_nanosleep":
            out["timeout"] = dict(_timespec(rd, a[2]), absolute=bool(a[1] & 1), clock=int(a[0]))
        elif name == "nanosleep":
            out["timeout"] = dict(_timespec(rd, a[0]), absolute=False, clock=CLOCK_MONOTONIC)
        elif name in ("poll", "ppoll"):
            n = min(int(a[1]), MAX_POLL_FDS)
            if n:
                raw = rd.read(a[0], 8 * n)
                pairs = [(_s32(int.from_bytes(raw[i * 8:i * 8 + 4], "little")),
                          int.from_bytes(raw[i * 8 + 4:i * 8 + 6], "little")) for i in range(n)]
                out["fds"] = [fd for fd, _ in pairs if fd >= 0]
                # which way each descriptor is waited on: a wait to write (POLLOUT
                # alone) is released by whoever drains the other end, not by a writer
                out["out_fds"] = [fd for fd, ev in pairs
                                  if fd >= 0 and ev & POLLOUT and not ev & (POLLIN | POLLPRI)]
            if name == "ppoll" and a[2]:
                out["timeout"] = dict(_timespec(rd, a[2]), absolute=False, clock=CLOCK_MONOTONIC)
        elif name in ("select", "pselect6"):
            n = min(int(a[0]), MAX_SELECT_NFDS)
            reads = _fd_set(rd, a[1], n) if a[1] and n else []
            writes = _fd_set(rd, a[2], n) if a[2] and n else []
            out["fds"] = sorted(set(reads) | set(writes))
            out["out_fds"] = sorted(set(writes) - set(reads))
            if a[4]:
                out["timeout"] = dict(_timespec(rd, a[4], timeval=name == "select"),
                                      absolute=False, clock=CLOCK_MONOTONIC)
        elif name in ("epoll_wait", "epoll_pwait", "epoll_pwait2"):
            try:
                out["fds"], out["out_fds"] = _epoll_targets(pid, int(a[0]))
            except (psutil.Error, OSError) as err:
                out["fds_error"] = _why(err)
            if name == "epoll_pwait2" and a[3]:
                out["timeout"] = dict(_timespec(rd, a[3]), absolute=False, clock=CLOCK_MONOTONIC)
        elif name in ("rt_sigtimedwait", "semtimedop"):
            ptr = a[2] if name == "rt_sigtimedwait" else a[3]
            if ptr:
                out["timeout"] = dict(_timespec(rd, ptr), absolute=False, clock=CLOCK_MONOTONIC)
        else:
            return None
    except (psutil.Error, OSError, ValueError, TimeoutError) as err:
        out["error"] = _why(err)
    if "fds" in out and name in ("poll", "ppoll", "select", "pselect6"):
        # A thread polling with a short timeout leaves and re-enters the call all
        # the time, and its array may be freed memory between two calls: keep the
        # descriptors only when the thread is in the same call before and after
        # the read; else read again in the call it is in now (a few times).
        for _ in range(4):
            now = _current_call(pid, t.tid)
            if now is None:
                break
            if now == (t.syscall_nr, [int(x) for x in t.syscall_args[:6]]):
                return out
            if now[0] == t.syscall_nr and retries:     # back in the call, another array
                return thread_details(pid, dataclasses.replace(t, syscall_args=list(now[1])), rd, retries - 1)
            time.sleep(0.002)                          # between two calls: look again
        del out["fds"]
        out.pop("out_fds", None)
        out["error"] = "the thread left the call while its descriptors were read"
    return out


def _current_call(pid: int, tid: int) -> Optional[Tuple[Optional[int], List[int]]]:
    """(syscall number, first six arguments) the thread is in now; None: unreadable."""
    try:
        with open(f"/proc/{pid}/task/{tid}/syscall") as f:
            nr, args = procfs.parse_syscall(f.read())
    except (OSError, ValueError):
        return None
    return nr, [int(x) for x in args[:6]]


def _futex(rd: _Reader, uaddr: int) -> Dict[str, Any]:
    """The futex word and, in case it is a glibc mutex, the fields after it."""
    try:
        raw = rd.read(uaddr, MUTEX_BYTES)
    except (psutil.Error, OSError, ValueError, TimeoutError) as err:
        try:  # the word alone may be readable where 20 bytes are not (end of a mapping)
            raw = rd.read(uaddr, 4)
        except (psutil.Error, OSError, ValueError, TimeoutError):
            return {"uaddr": uaddr, "error": _why(err)}
        return {"uaddr": uaddr, "word": int.from_bytes(raw, "little")}
    f = [int.from_bytes(raw[i:i + 4], "little") for i in range(0, MUTEX_BYTES, 4)]
    return {"uaddr": uaddr, "word": f[0], "count": f[1], "owner": f[2], "nusers": f[3], "kind": f[4]}


def collect(snap: Optional[SystemSnapshot], pids: Optional[Iterable[int]] = None) -> Dict[str, Any]:
    """Details of every sleeping thread of ``pids`` (default: all in ``snap``).

    Returns {"read_at": {clock id: ns}, "threads": {tid: {...}}} where each
    thread entry holds the syscall number and arguments it was read for (the
    analysis uses it only while the thread is still in that call).
    """
    out: Dict[str, Any] = {
        "read_at": {str(CLOCK_REALTIME): time.clock_gettime_ns(time.CLOCK_REALTIME),
                    str(CLOCK_MONOTONIC): time.clock_gettime_ns(time.CLOCK_MONOTONIC)},
        "threads": {},
    }
    if snap is None:
        return out
    wanted = set(snap.processes) if pids is None else set(pids)
    for pid in sorted(wanted):
        p = snap.processes.get(pid)
        if p is None or p.state in ("Z", "X"):
            continue
        rd = _Reader(pid)
        for t in p.threads:
            d = thread_details(pid, t, rd)
            if d is not None:
                d["pid"] = pid
                out["threads"][str(t.tid)] = d
        if sum(1 for t in p.threads if t.syscall_name in ("futex", "futex_wait")) >= 2:
            # a JVM's threads blocked in `synchronized` wait on futexes of their own:
            # the monitor's owner is recorded by the JVM, not in the futex
            mon = jvm_monitors.monitor_waits(pid)
            if mon is not None:
                out.setdefault("monitors", {})[str(pid)] = mon
    _sharers(snap, out["threads"])
    return out


def _sharers(snap: SystemSnapshot, threads: Dict[str, Dict[str, Any]]) -> None:
    """For each shared futex a thread waits on, the processes of the snapshot
    that map the same file or shared-memory object (``futex.sharers``): the
    candidates for whoever holds a lock that records no owner."""
    waits = [d["futex"] for d in threads.values() if isinstance(d.get("futex"), dict) and d["futex"].get("map")]
    if not waits:
        return
    keys = {f"{f['map']['dev']}:{f['map']['inode']}" for f in waits}
    found: Dict[str, List[int]] = {k: [] for k in keys}
    for pid in sorted(snap.processes):
        p = snap.processes[pid]
        if p.state in ("Z", "X") or getattr(p, "kernel_thread", False):
            continue
        try:
            mine = _mapped_keys(_maps(pid)) & keys
        except (psutil.Error, OSError, ValueError, TimeoutError):
            continue
        for k in mine:
            found[k].append(pid)
    for f in waits:
        f["sharers"] = found[f"{f['map']['dev']}:{f['map']['inode']}"]
