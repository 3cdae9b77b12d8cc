"""Process snapshot: read what /proc tells about processes, threads, file
descriptors, sockets and file locks, and return ``pyimpact.snapshot`` records.

This module touches the system and nothing else: it never prints and never
decides.  Two promises shape it:

* **One error boundary.**  Every system call on /proc goes through ``_sys``,
  which maps ENOENT/ESRCH to ``psutil.NoSuchProcess`` and EACCES/EPERM to
  ``psutil.AccessDenied`` (psutil's own classes, so callers handle one set of
  exceptions).  Whether a whole process has gone is decided in one place too:
  by re-reading its ``stat``; a missing sub-file (a closed fd, the ``exe`` of a
  kernel thread or a zombie) only leaves that field empty.

* **A stuck target must not stick the tool.**  Some /proc files take locks of
  the process they describe (``cmdline``, ``environ``, ``smaps_rollup`` and
  ``mem`` take its mmap lock; ``stack`` and ``syscall`` its exec lock), and a
  process stuck holding one is exactly what ``diagnose`` is asked about (``ps``
  hangs on such processes).  So processes are read by a few daemon worker
  threads under a deadline: what was read in time is kept, and a read that did
  not return is named in ``errors``.  Regular files on network and FUSE file
  systems are never stat()ed (their server may be the thing that hangs).

Timing: the files that say what each thread waits on (stat, syscall, wchan,
stack, sched) are read for all threads of all processes first, as close
together in time as possible; fds, memory, environment and the host-wide
tables come after.
"""
from __future__ import annotations

import errno
import os
import re
import socket
import stat as stat_mod
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import psutil

from ..snapshot import (
    FdInfo,
    LockInfo,
    ProcessSnapshot,
    SocketInfo,
    SystemSnapshot,
    ThreadSnapshot,
    env_key_allowed,
)
from ..syscall_table import syscall_name
from . import pidns

PROC = "/proc"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

#: File systems whose files are never stat()ed: a dead server or FUSE daemon
#: would block the stat (and the FUSE daemon may be the very process examined).
REMOTE_FS_TYPES = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "9p", "afs", "glusterfs",
    "lustre", "gpfs", "beegfs", "fuse", "fuseblk", "ncpfs", "coda", "orangefs",
})

_PF_KTHREAD = 0x00200000  # task flag of kernel threads (stat field 9)

_PYTHON_RE = re.compile(r"^(?:python|pypy)[0-9.]*[dmu]*(?:-dbg)?$")

#: path each thread is reading right now (thread ident -> path), so a read
#: that never returns can be named in ``errors``.
_WHERE: Dict[int, str] = {}


# --------------------------------------------------------------------------
# The error boundary
# --------------------------------------------------------------------------

def _map_oserror(err: OSError, pid: int) -> BaseException:
    """The psutil exception for an OSError met while reading /proc/``pid``.

    Other errnos (EIO, EINVAL, ...) stay OSError: they mean something other
    than "gone" or "not allowed", and the caller reports them as they are.
    """
    if err.errno in (errno.ENOENT, errno.ESRCH):
        return psutil.NoSuchProcess(pid)
    if err.errno in (errno.EACCES, errno.EPERM):
        return psutil.AccessDenied(pid)
    return err


def _sys(pid: int, fn: Callable[..., Any], path: str, *args: Any) -> Any:
    """Call ``fn(path, *args)`` for process ``pid``: THE error boundary of this module."""
    _WHERE[threading.get_ident()] = path
    try:
        return fn(path, *args)
    except OSError as err:
        raise _map_oserror(err, pid) from None


def _read_all(path: str) -> bytes:
    """Whole content of a /proc file (seq files may need several reads)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                return b"".join(chunks)
            chunks.append(b)
    finally:
        os.close(fd)


def _read(path: str, pid: int) -> bytes:
    """Read a /proc file of ``pid`` through the boundary."""
    return _sys(pid, _read_all, path)


def _reason(err: BaseException) -> str:
    """Short reason for ``errors`` lines."""
    if isinstance(err, psutil.AccessDenied):
        return "permission denied"
    if isinstance(err, psutil.NoSuchProcess):
        return "gone"
    if isinstance(err, OSError) and err.errno:
        return os.strerror(err.errno)
    return f"{type(err).__name__}: {err}"


class _Errors:
    """Collects "what could not be read and why", merging repeats per process
    (20 threads with unreadable stacks make one line, not 20)."""

    def __init__(self) -> None:
        self.counts: Dict[Tuple[str, str, str], int] = {}

    def add(self, who: str, what: str, err: Any) -> None:
        """Note that ``what`` of ``who`` ("pid 12") could not be read because of ``err``."""
        reason = err if isinstance(err, str) else _reason(err)
        key = (who, what, reason)
        self.counts[key] = self.counts.get(key, 0) + 1

    def merge(self, other: "_Errors") -> None:
        """Add the notes of another collector."""
        for k, n in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + n

    def lines(self) -> List[str]:
        """One line per distinct (who, what, why)."""
        out = []
        for (who, what, reason), n in self.counts.items():
            times = f" ({n} times)" if n > 1 else ""
            out.append(f"{who}: {what} ({reason}){times}")
        return out


# --------------------------------------------------------------------------
# Small parsers
# --------------------------------------------------------------------------

def _parse_stat(data: bytes) -> Tuple[str, List[bytes]]:
    """(comm, fields) of a stat line; fields[0] is field 3 (state).

    comm may contain spaces and ')' so it is cut at the LAST ')'.
    """
    lp = data.index(b"(")
    rp = data.rindex(b")")
    return data[lp + 1:rp].decode("utf-8", "backslashreplace"), data[rp + 2:].split()


def _field(fields: List[bytes], n: int) -> int:
    """Field ``n`` (1-based, as in proc(5)) of a parsed stat line, as int."""
    return int(fields[n - 3])


def _parse_kv(data: bytes) -> Dict[bytes, bytes]:
    """"Key:<tab>value" lines (status, io, fdinfo) into a dict of bytes."""
    out = {}
    for line in data.split(b"\n"):
        k, sep, v = line.partition(b":")
        if sep:
            out[k] = v.strip()
    return out


def _kb(v: Optional[bytes]) -> Optional[int]:
    """"1792 kB" -> bytes."""
    return int(v.split()[0]) * 1024 if v else None


def _hex(v: Optional[bytes]) -> int:
    """Hex signal mask -> int (0 when absent)."""
    return int(v, 16) if v else 0


def _split_ns(text: bytes) -> int:
    """"1805805.846515" (ms.ns as /proc/.../sched prints it) -> exact int ns."""
    ms, _, frac = text.strip().partition(b".")
    return int(ms) * 1_000_000 + int(frac[:6].ljust(6, b"0") or b"0")


def _parse_sched(data: bytes) -> Tuple[Optional[int], Optional[int]]:
    """(se.exec_start, se.sum_exec_runtime) in ns from a sched file."""
    start = runtime = None
    for line in data.split(b"\n"):
        if line.startswith(b"se.exec_start"):
            start = _split_ns(line.partition(b":")[2])
        elif line.startswith(b"se.sum_exec_runtime"):
            runtime = _split_ns(line.partition(b":")[2])
    return start, runtime


def _parse_syscall(text: str) -> Tuple[Optional[int], List[int]]:
    """(nr, args) from /proc/.../syscall: "running" -> (None, []),
    "-1 sp pc" -> (-1, []), "nr a0..a5 sp pc" -> (nr, [a0..a5])."""
    parts = text.split()
    if not parts or parts[0] == "running":
        return None, []
    nr = int(parts[0])
    if nr < 0:
        return -1, []
    return nr, [int(x, 16) for x in parts[1:7]]


def _parse_stack(data: bytes) -> List[str]:
    """Kernel stack frames without the "[<0>] " address prefix."""
    out = []
    for line in data.decode("utf-8", "replace").splitlines():
        _, sep, sym = line.partition("] ")
        out.append(sym if sep else line)
    return out


def _mode_of_flags(flags: int) -> str:
    """'r', 'w' or 'rw' from the O_ACCMODE bits."""
    return {os.O_RDONLY: "r", os.O_WRONLY: "w"}.get(flags & 3, "rw")


def _ns_inode(link: str) -> Optional[int]:
    """"net:[4026531840]" -> 4026531840."""
    lb = link.find("[")
    return int(link[lb + 1:-1]) if lb >= 0 and link.endswith("]") else None


def looks_like_python(exe: Optional[str], cmdline: Sequence[str]) -> bool:
    """True when the executable or argv[0] is named like a Python interpreter."""
    for path in (exe or "", cmdline[0] if cmdline else ""):
        base = os.path.basename(path.replace(" (deleted)", ""))
        if base and _PYTHON_RE.match(base):
            return True
    return False


# --------------------------------------------------------------------------
# Clocks
# --------------------------------------------------------------------------

def boot_time() -> float:
    """Boot time as epoch seconds (btime of /proc/stat, as psutil reports it)."""
    for line in _read(f"{PROC}/stat", 0).split(b"\n"):
        if line.startswith(b"btime"):
            return float(line.split()[1])
    return 0.0


def _own_exec_start_ns() -> Optional[int]:
    """se.exec_start of the calling thread: "now" in the scheduler's clock of
    the CPU we run on (as of when we were last scheduled in or ticked)."""
    try:
        return _parse_sched(_read(f"{PROC}/thread-self/sched", os.getpid()))[0]
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
            start = _own_exec_start_ns()
            now = time.monotonic_ns()
            if start is not None:
                offsets[cpu] = now - start

    if wanted:
        t = threading.Thread(target=work, name="pyimpact-clock", daemon=True)
        t.start()
        t.join(1.0)
    return dict(offsets)


def _apply_clock(t: ThreadSnapshot, offsets: Dict[int, int]) -> None:
    """Set last_ran_mono_ns / last_ran_ago_s from the CPU offset of ``t``."""
    if t.exec_start_ms is None or t.processor not in offsets:
        return
    start_ns = int(round(t.exec_start_ms * 1_000_000))
    t.last_ran_mono_ns = start_ns + offsets[t.processor]  # type: ignore[index]
    t.last_ran_ago_s = max(0.0, (t.read_mono_ns - t.last_ran_mono_ns) / 1e9)


# --------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------

def read_thread(pid: int, tid: int, *, stack: bool = True,
                errors: Optional[_Errors] = None) -> ThreadSnapshot:
    """Snapshot one thread: state, wchan, syscall, kernel stack, scheduler times.

    The files that say what the thread waits on are read first and together;
    ``last_ran_ago_s`` here compares the thread's se.exec_start with our own
    read at the same moment (``take_snapshot`` refines it per CPU).  Raises
    NoSuchProcess(tid) if the thread is gone; other unreadable files leave
    their fields empty and are noted in ``errors``.
    """
    errs = errors if errors is not None else _Errors()
    who = f"pid {pid}"
    base = f"{PROC}/{pid}/task/{tid}"
    name, f = _parse_stat(_read(f"{base}/stat", tid))
    t = ThreadSnapshot(tid=tid, name=name, state=f[0].decode(),
                       utime_s=_field(f, 14) / CLOCK_TICKS,
                       stime_s=_field(f, 15) / CLOCK_TICKS,
                       processor=_field(f, 39) if len(f) >= 37 else None)
    try:
        t.syscall_nr, t.syscall_args = _parse_syscall(_read(f"{base}/syscall", tid).decode())
        if t.syscall_nr is not None and t.syscall_nr >= 0:
            t.syscall_name = syscall_name(t.syscall_nr)
    except psutil.NoSuchProcess:
        raise
    except (psutil.Error, OSError, ValueError) as e:
        errs.add(who, "syscall unreadable", e)
    try:
        w = _read(f"{base}/wchan", tid).decode("utf-8", "replace").strip()
        t.wchan = "" if w == "0" else w
    except psutil.NoSuchProcess:
        raise
    except (psutil.Error, OSError) as e:
        errs.add(who, "wchan unreadable", e)
    if stack:
        try:
            t.kernel_stack = _parse_stack(_read(f"{base}/stack", tid))
        except psutil.NoSuchProcess:
            raise
        except (psutil.Error, OSError) as e:
            errs.add(who, "kernel stack unreadable", e)
    try:
        start, runtime = _parse_sched(_read(f"{base}/sched", tid))
        own = _own_exec_start_ns()
        t.read_mono_ns = time.monotonic_ns()
        if start is not None:
            t.exec_start_ms = start / 1e6
            if own is not None:
                t.last_ran_ago_s = max(0.0, (own - start) / 1e9)
        if runtime is not None:
            t.sum_exec_runtime_ms = runtime / 1e6
    except psutil.NoSuchProcess:
        raise
    except (psutil.Error, OSError, ValueError) as e:
        t.read_mono_ns = time.monotonic_ns()
        errs.add(who, "sched unreadable", e)
    try:
        st = _parse_kv(_read(f"{base}/status", tid))
        t.voluntary_ctxt_switches = int(st[b"voluntary_ctxt_switches"])
        t.nonvoluntary_ctxt_switches = int(st[b"nonvoluntary_ctxt_switches"])
    except psutil.NoSuchProcess:
        raise
    except (psutil.Error, OSError, KeyError, ValueError) as e:
        errs.add(who, "thread status unreadable", e)
    return t


# --------------------------------------------------------------------------
# Processes: identity and tree
# --------------------------------------------------------------------------

def process_identity(pid: int) -> Tuple[int, int]:
    """(pid, start_ticks): what identifies a process across pid reuse."""
    _, f = _parse_stat(_read(f"{PROC}/{pid}/stat", pid))
    return pid, _field(f, 22)


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
    for tid in _sys(pid, os.listdir, f"{PROC}/{pid}/task"):
        try:
            out.extend(int(x) for x in _read(f"{PROC}/{pid}/task/{tid}/children", pid).split())
        except psutil.NoSuchProcess:
            continue  # that thread exited meanwhile
    return sorted(set(out))


def _children_by_scan(pid: int) -> List[int]:
    """Children of ``pid`` found by reading every process's ppid (slow path)."""
    out = []
    for name in os.listdir(PROC):
        if name.isdigit():
            try:
                _, f = _parse_stat(_read(f"{PROC}/{name}/stat", int(name)))
                if _field(f, 4) == pid:
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


# --------------------------------------------------------------------------
# Processes: the two reading phases
# --------------------------------------------------------------------------

def _read_process_state(pid: int, threads: bool, stacks: bool, errs: _Errors,
                        holder: Dict[str, Any]) -> ProcessSnapshot:
    """Phase 1: stat of the process and the wait state of each of its threads.

    The record is published in ``holder`` as soon as it exists, so threads read
    before a read that never returns are kept.
    """
    name, f = _parse_stat(_read(f"{PROC}/{pid}/stat", pid))
    p = ProcessSnapshot(
        pid=pid, name=name, state=f[0].decode(),
        ppid=_field(f, 4), pgid=_field(f, 5), sid=_field(f, 6),
        cpu_user_s=_field(f, 14) / CLOCK_TICKS, cpu_system_s=_field(f, 15) / CLOCK_TICKS,
        children_cpu_user_s=_field(f, 16) / CLOCK_TICKS,
        children_cpu_system_s=_field(f, 17) / CLOCK_TICKS,
        num_threads=_field(f, 20), start_ticks=_field(f, 22), vms_bytes=_field(f, 23),
        kernel_thread=bool(_field(f, 9) & _PF_KTHREAD),
    )
    holder["proc"] = p
    tids = [pid]
    if threads:
        try:
            tids = sorted(int(t) for t in _sys(pid, os.listdir, f"{PROC}/{pid}/task"))
        except psutil.AccessDenied as e:
            errs.add(f"pid {pid}", "thread list unreadable", e)
    for tid in tids:
        try:
            p.threads.append(read_thread(pid, tid, stack=stacks, errors=errs))
        except psutil.NoSuchProcess:
            continue  # the thread exited meanwhile; whether the process did is checked later
        except (psutil.Error, OSError, ValueError, IndexError) as e:
            errs.add(f"pid {pid}", f"thread {tid} unreadable", e)
    return p


def _read_process_details(p: ProcessSnapshot, errs: _Errors, holder: Dict[str, Any]) -> ProcessSnapshot:
    """Phase 2: status, I/O, paths, namespaces, argv, environment, memory, fds.

    Each item that cannot be read is noted and left empty; a process that
    exited meanwhile is detected by re-reading its stat at the end (raising
    NoSuchProcess), which also catches a pid reused by another process.
    """
    pid, who = p.pid, f"pid {p.pid}"
    holder["proc"] = p
    # a leader that called pthread_exit() is Z while its threads still run
    zombie = p.state in ("Z", "X") and all(t.state in ("Z", "X") for t in p.threads)

    def attempt(what: str, fn: Callable[[], None], quiet_enoent: bool = False) -> None:
        try:
            fn()
        except psutil.NoSuchProcess as e:
            if not quiet_enoent:
                errs.add(who, f"{what} unreadable", e)
        except (psutil.Error, OSError, ValueError, KeyError, IndexError) as e:
            errs.add(who, f"{what} unreadable", e)

    def status() -> None:
        st = _parse_kv(_read(f"{PROC}/{pid}/status", pid))
        p.uid = int(st[b"Uid"].split()[0])
        p.tracer_pid = int(st.get(b"TracerPid", b"0"))
        p.sig_pending = _hex(st.get(b"SigPnd"))
        p.sig_shared_pending = _hex(st.get(b"ShdPnd"))
        p.sig_blocked = _hex(st.get(b"SigBlk"))
        p.sig_ignored = _hex(st.get(b"SigIgn"))
        p.sig_caught = _hex(st.get(b"SigCgt"))
        p.rss_bytes = _kb(st.get(b"VmRSS"))  # vms_bytes came exact from stat

    def io() -> None:
        kv = _parse_kv(_read(f"{PROC}/{pid}/io", pid))
        p.io_read_bytes, p.io_write_bytes = int(kv[b"read_bytes"]), int(kv[b"write_bytes"])
        p.io_read_chars, p.io_write_chars = int(kv[b"rchar"]), int(kv[b"wchar"])

    def paths() -> None:
        p.exe = _sys(pid, os.readlink, f"{PROC}/{pid}/exe")

    def cwd() -> None:
        p.cwd = _sys(pid, os.readlink, f"{PROC}/{pid}/cwd")

    def netns() -> None:
        p.netns = _ns_inode(_sys(pid, os.readlink, f"{PROC}/{pid}/ns/net"))

    def cmdline() -> None:
        raw = _read(f"{PROC}/{pid}/cmdline", pid)
        p.cmdline = [a.decode("utf-8", "backslashreplace") for a in raw.rstrip(b"\0").split(b"\0")] if raw else []

    def environ() -> None:
        env = {}
        for item in _read(f"{PROC}/{pid}/environ", pid).split(b"\0"):
            k, sep, v = item.partition(b"=")
            if sep:
                key = k.decode("utf-8", "backslashreplace")
                if env_key_allowed(key):
                    env[key] = v.decode("utf-8", "backslashreplace")
        p.env = env

    def uss() -> None:
        total = 0
        for line in _read(f"{PROC}/{pid}/smaps_rollup", pid).split(b"\n"):
            if line.startswith(b"Private_"):  # Private_Clean/Dirty/Hugetlb, as psutil
                total += int(line.split()[1]) * 1024
        p.uss_bytes = total

    attempt("status", status)
    attempt("io counters", io)
    attempt("netns", netns, quiet_enoent=True)
    if not zombie and not p.kernel_thread:
        attempt("exe", paths, quiet_enoent=True)
        attempt("cwd", cwd, quiet_enoent=True)
        attempt("cmdline", cmdline)           # these three take the target's mmap lock
        attempt("environ", environ)
        attempt("uss (smaps_rollup)", uss)
        attempt("fds", lambda: _read_fds(p, errs))
    p.python = looks_like_python(p.exe, p.cmdline)
    if process_identity(pid)[1] != p.start_ticks:
        raise psutil.NoSuchProcess(pid, msg="pid reused during the snapshot")
    return p


def _mount_types(pid: int) -> Dict[int, str]:
    """mnt_id -> file system type, from the process's own mount namespace."""
    out = {}
    for line in _read(f"{PROC}/{pid}/mountinfo", pid).split(b"\n"):
        left, sep, right = line.partition(b" - ")
        if sep:
            out[int(left.split(b" ", 1)[0])] = right.split(b" ", 1)[0].decode("utf-8", "replace")
    return out


def _classify(link: str) -> Tuple[str, Optional[int]]:
    """(kind, inode) from the text of an fd link, before any stat."""
    if link.startswith("pipe:["):
        return "pipe", int(link[6:-1])
    if link.startswith("socket:["):
        return "socket", int(link[8:-1])
    if link.startswith("anon_inode:"):
        return "anon", None
    if link.startswith("/dev/"):
        return "dev", None
    if link.startswith("/"):
        return "file", None
    return "other", None


def _read_fds(p: ProcessSnapshot, errs: _Errors) -> None:
    """Fill ``p.fds``: link text and fdinfo for every fd first (never blocks),
    then stat() regular files on local file systems for their type and size.

    An fd closed between the listing and its reading is skipped.
    """
    pid = p.pid
    names = sorted(_sys(pid, os.listdir, f"{PROC}/{pid}/fd"), key=int)
    fds: List[FdInfo] = []
    for name in names:
        try:
            link = _sys(pid, os.readlink, f"{PROC}/{pid}/fd/{name}")
        except psutil.NoSuchProcess:
            continue
        kind, inode = _classify(link)
        fi = FdInfo(fd=int(name), target=link, kind=kind, inode=inode)
        try:
            kv = _parse_kv(_read(f"{PROC}/{pid}/fdinfo/{name}", pid))
            fi.pos = int(kv[b"pos"])
            fi.flags = int(kv[b"flags"], 8)
            fi.mode = _mode_of_flags(fi.flags)
            if b"mnt_id" in kv:
                fi.mnt_id = int(kv[b"mnt_id"])
            if fi.inode is None and b"ino" in kv:
                fi.inode = int(kv[b"ino"])
        except psutil.NoSuchProcess:
            continue
        except (psutil.Error, OSError, KeyError, ValueError) as e:
            errs.add(f"pid {pid}", "fdinfo unreadable", e)
        fds.append(fi)
    p.fds = fds
    try:
        mounts = _mount_types(pid)
    except (psutil.Error, OSError, ValueError) as e:
        errs.add(f"pid {pid}", "mountinfo unreadable", e)
        mounts = {}
    for fi in fds:
        fi.fs_type = mounts.get(fi.mnt_id) if fi.mnt_id is not None else None
        if fi.kind not in ("file", "dev"):
            continue
        fs = fi.fs_type or ""
        if fs in REMOTE_FS_TYPES or fs.startswith("fuse.") or not mounts:
            continue
        try:
            st = _sys(pid, os.stat, f"{PROC}/{pid}/fd/{fi.fd}")
        except (psutil.Error, OSError):
            continue  # closed meanwhile or not stat-able: keep what the link said
        fi.inode = st.st_ino
        fi.dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
        if stat_mod.S_ISREG(st.st_mode):
            fi.kind, fi.size_bytes = "file", st.st_size
        elif stat_mod.S_ISFIFO(st.st_mode):
            fi.kind = "pipe"
        elif stat_mod.S_ISCHR(st.st_mode) or stat_mod.S_ISBLK(st.st_mode):
            fi.kind = "dev"
        elif stat_mod.S_ISSOCK(st.st_mode):
            fi.kind = "socket"
        else:
            fi.kind = "other"


# --------------------------------------------------------------------------
# Bounded workers
# --------------------------------------------------------------------------

class _Slot:
    """What one worker did for one item: its result or error, its error notes,
    and the partly filled record if it did not finish."""

    def __init__(self, item: Any) -> None:
        self.item = item
        self.done = False
        self.started = False
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.errs = _Errors()
        self.holder: Dict[str, Any] = {}
        self.thread_ident: Optional[int] = None


def _run_bounded(fn: Callable[[Any, _Errors, Dict[str, Any]], Any], items: Sequence[Any],
                 deadline_ns: int, workers: int = 4) -> List[_Slot]:
    """Run ``fn(item, errs, holder)`` for each item on up to ``workers`` daemon
    threads, waiting until ``deadline_ns`` (monotonic) at most.

    Daemon threads, because a read may never return (see the module
    docstring); such a thread is abandoned and ends with the interpreter.
    """
    slots = [_Slot(it) for it in items]
    lock = threading.Lock()
    pending = list(reversed(slots))

    def loop() -> None:
        while True:
            with lock:
                if not pending or time.monotonic_ns() > deadline_ns:
                    return
                s = pending.pop()
                s.started, s.thread_ident = True, threading.get_ident()
            try:
                s.result = fn(s.item, s.errs, s.holder)
            except BaseException as e:  # handed to the caller, which decides
                s.error = e
            s.done = True
        _WHERE.pop(threading.get_ident(), None)

    threads = [threading.Thread(target=loop, name="pyimpact-procfs", daemon=True)
               for _ in range(min(workers, len(slots)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, (deadline_ns - time.monotonic_ns()) / 1e9))
    with lock:
        pending.clear()  # nothing starts after the deadline
    return slots


def _salvage(slot: _Slot, timeout_s: float, errs: _Errors) -> Optional[ProcessSnapshot]:
    """Copy of what an unfinished worker had read, and a note of where it stuck."""
    pid = slot.item if isinstance(slot.item, int) else slot.item.pid
    if not slot.started:
        errs.add(f"pid {pid}", "not read", f"time budget of {timeout_s:g} s used up")
        return None
    where = _WHERE.get(slot.thread_ident or 0, "?")
    errs.add(f"pid {pid}", f"reading {where}",
             f"did not return within {timeout_s:g} s; the process may hold a kernel lock")
    errs.merge(slot.errs)
    p = slot.holder.get("proc")
    return ProcessSnapshot.from_dict(p.to_dict()) if p is not None else None


# --------------------------------------------------------------------------
# File locks
# --------------------------------------------------------------------------

def read_locks() -> List[LockInfo]:
    """Every file lock on the host and every request waiting on one (/proc/locks).

    Lines of one lock tree share an id; a waiter's line is "ID: -> ...", with
    one more leading space per level when it waits on another waiter, and
    comes after the line it waits on (pre-order), so the blocker of a line at
    depth d is the nearest line above it at depth d-1.
    """
    out: List[LockInfo] = []
    last_at_depth: Dict[int, int] = {}
    for line in _read(f"{PROC}/locks", 0).decode("utf-8", "replace").splitlines():
        head, sep, rest = line.partition(":")
        if not sep or not head.strip().isdigit():
            continue
        rest = rest[1:] if rest.startswith(" ") else rest
        depth = 0
        stripped = rest.lstrip(" ")
        if stripped.startswith("->"):
            depth = len(rest) - len(stripped) + 1
            stripped = stripped[2:]
        tok = stripped.split()
        if len(tok) < 7:
            continue
        lock_id = int(head)
        dev, inode = None, None
        devino = tok[4].split(":")
        if len(devino) == 3 and not tok[4].startswith("<none>"):
            dev, inode = f"{devino[0]}:{devino[1]}", int(devino[2])
        li = LockInfo(id=lock_id, kind=tok[0], mode=tok[1], access=tok[2], pid=int(tok[3]),
                      dev=dev, inode=inode, start=tok[5], end=tok[6],
                      waiting=depth > 0, blocked_by_id=lock_id if depth > 0 else None,
                      depth=depth)
        if depth > 0:
            li.blocker_index = last_at_depth.get(depth - 1)
        last_at_depth[depth] = len(out)
        out.append(li)
    return out


# --------------------------------------------------------------------------
# Sockets
# --------------------------------------------------------------------------

_TCP_STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
    6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
    11: "CLOSING", 12: "NEW_SYN_RECV",
}
_UNIX_STATES = {1: "UNCONNECTED", 2: "CONNECTING", 3: "CONNECTED", 4: "DISCONNECTING"}
_UNIX_TYPES = {1: "stream", 2: "dgram", 5: "seqpacket"}
_SO_ACCEPTCON = 0x10000


def _inet_addr(text: str, v6: bool) -> Tuple[str, str]:
    """("ip:port" for display, normalised key for peer matching) of a
    /proc/net/tcp address: the IP in host byte order words, the port in hex."""
    ip_hex, _, port_hex = text.partition(":")
    port = int(port_hex, 16)
    if v6:
        raw = struct.pack("<4I", *(int(ip_hex[i:i + 8], 16) for i in range(0, 32, 8)))
        ip = socket.inet_ntop(socket.AF_INET6, raw)
        key_ip = ip[7:] if ip.startswith("::ffff:") and "." in ip else ip
        return f"[{ip}]:{port}", f"{key_ip}:{port}"
    ip = socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(ip_hex, 16)))
    return f"{ip}:{port}", f"{ip}:{port}"


def _parse_inet(data: bytes, proto: str, netns: Optional[int],
                keys: Dict[int, Tuple[str, str]]) -> Dict[int, SocketInfo]:
    """Rows of /proc/net/{tcp,tcp6,udp,udp6} with an inode (TIME_WAIT rows have none)."""
    v6 = proto.endswith("6")
    out = {}
    for line in data.decode("ascii", "replace").splitlines()[1:]:
        tok = line.split()
        if len(tok) < 10 or tok[9] == "0":
            continue
        local, lkey = _inet_addr(tok[1], v6)
        remote, rkey = _inet_addr(tok[2], v6)
        unconnected = int(tok[2].partition(":")[2], 16) == 0  # remote port 0
        tx, _, rx = tok[4].partition(":")
        inode = int(tok[9])
        out[inode] = SocketInfo(
            inode=inode, proto=proto, local=local, remote="" if unconnected else remote,
            state=_TCP_STATES.get(int(tok[3], 16), tok[3]),
            tx_queue=int(tx, 16), rx_queue=int(rx, 16),
            sock_type="stream" if proto.startswith("tcp") else "dgram", netns=netns)
        if not unconnected:
            keys[inode] = (lkey, rkey)
    return out


def _parse_unix(data: bytes, netns: Optional[int]) -> Dict[int, SocketInfo]:
    """Rows of /proc/net/unix (the path may contain spaces, so split at most 7 times)."""
    out = {}
    for raw in data.split(b"\n")[1:]:   # bytes first: a path holding U+2028 is not a new row
        tok = raw.decode("utf-8", "backslashreplace").split(None, 7)
        if len(tok) < 7:
            continue
        flags, stype, st, inode = int(tok[3], 16), int(tok[4], 16), int(tok[5], 16), int(tok[6])
        state = "LISTEN" if flags & _SO_ACCEPTCON else _UNIX_STATES.get(st, str(st))
        out[inode] = SocketInfo(inode=inode, proto="unix", local=tok[7] if len(tok) > 7 else "",
                                state=state, sock_type=_UNIX_TYPES.get(stype, str(stype)),
                                netns=netns)
    return out


def _unix_diag() -> Dict[int, Tuple[Optional[int], int, int]]:
    """inode -> (peer inode, rx queue, tx queue) of every unix socket of our
    network namespace, from the sock_diag netlink interface (UNIX_DIAG_PEER,
    UNIX_DIAG_RQLEN): /proc/net/unix does not say who the peer is."""
    NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY = 4, 20
    NLM_F_REQUEST, NLM_F_DUMP, NLMSG_ERROR, NLMSG_DONE = 1, 0x300, 2, 3
    UDIAG_SHOW_PEER, UDIAG_SHOW_RQLEN = 0x4, 0x10
    UNIX_DIAG_PEER, UNIX_DIAG_RQLEN = 2, 4
    req = struct.pack("=BBHIII2I", socket.AF_UNIX, 0, 0, 0xFFFFFFFF, 0,
                      UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN, 0xFFFFFFFF, 0xFFFFFFFF)
    msg = struct.pack("=IHHII", 16 + len(req), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + req
    out: Dict[int, Tuple[Optional[int], int, int]] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG) as s:
        s.settimeout(1.0)
        s.sendto(msg, (0, 0))
        while True:
            data = s.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                length, mtype = struct.unpack_from("=IH", data, off)
                if length < 16:
                    return out
                if mtype == NLMSG_DONE:
                    return out
                if mtype == NLMSG_ERROR:
                    code = struct.unpack_from("=i", data, off + 16)[0]
                    raise OSError(-code, os.strerror(-code))
                ino = struct.unpack_from("=I", data, off + 20)[0]
                peer, rq, wq = None, 0, 0
                a = off + 32
                while a + 4 <= off + length:
                    alen, atype = struct.unpack_from("=HH", data, a)
                    if alen < 4:
                        break
                    if atype == UNIX_DIAG_PEER:
                        peer = struct.unpack_from("=I", data, a + 4)[0] or None
                    elif atype == UNIX_DIAG_RQLEN:
                        rq, wq = struct.unpack_from("=II", data, a + 4)
                    a += (alen + 3) & ~3
                out[ino] = (peer, rq, wq)
                off += (length + 3) & ~3


def read_sockets(pid: Optional[int] = None, *, errors: Optional[_Errors] = None) -> Dict[int, SocketInfo]:
    """Every TCP, UDP and unix socket of a network namespace, by inode.

    The namespace is ours, or that of ``pid`` (its /proc/PID/net).  Peers on
    this host are filled in: for TCP/UDP the socket whose local and remote
    addresses are ours swapped (loopback and any other local connection), for
    unix sockets from sock_diag (only for our own namespace).
    """
    errs = errors if errors is not None else _Errors()
    who = "self" if pid is None else str(pid)
    owner = os.getpid() if pid is None else pid
    try:
        netns = _ns_inode(_sys(owner, os.readlink, f"{PROC}/{who}/ns/net"))
    except (psutil.Error, OSError):
        netns = None
    keys: Dict[int, Tuple[str, str]] = {}
    out: Dict[int, SocketInfo] = {}
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            out.update(_parse_inet(_read(f"{PROC}/{who}/net/{proto}", owner), proto, netns, keys))
        except psutil.NoSuchProcess:
            raise
        except (psutil.Error, OSError) as e:
            errs.add(f"netns {netns}", f"/proc/net/{proto}", e)
    try:
        out.update(_parse_unix(_read(f"{PROC}/{who}/net/unix", owner), netns))
    except psutil.NoSuchProcess:
        raise
    except (psutil.Error, OSError) as e:
        errs.add(f"netns {netns}", "/proc/net/unix", e)
    _match_inet_peers(out, keys)
    if pid is None or netns == _own_netns():
        try:
            for ino, (peer, rq, wq) in _unix_diag().items():
                si = out.get(ino)
                if si is not None and si.proto == "unix":
                    si.peer_inode, si.rx_queue, si.tx_queue = peer, rq, wq
        except OSError as e:
            errs.add(f"netns {netns}", "unix socket peers (sock_diag)", e)
    return out


def _own_netns() -> Optional[int]:
    """Inode of our own network namespace."""
    try:
        return _ns_inode(os.readlink(f"{PROC}/self/ns/net"))
    except OSError:
        return None


def _match_inet_peers(socks: Dict[int, SocketInfo], keys: Dict[int, Tuple[str, str]]) -> None:
    """Set peer_inode of connected TCP/UDP sockets whose other end is on this
    host: the unique socket whose (local, remote) is our (remote, local)."""
    by_pair: Dict[Tuple[str, str, str], List[int]] = {}
    for ino, (lkey, rkey) in keys.items():
        base = socks[ino].proto.rstrip("6")
        by_pair.setdefault((base, lkey, rkey), []).append(ino)
    for ino, (lkey, rkey) in keys.items():
        base = socks[ino].proto.rstrip("6")
        cands = [c for c in by_pair.get((base, rkey, lkey), []) if c != ino]
        if len(cands) == 1:
            socks[ino].peer_inode = cands[0]


# --------------------------------------------------------------------------
# Who holds which pipe / socket
# --------------------------------------------------------------------------

def inode_holders(kinds: Sequence[str] = ("pipe", "socket"), *,
                  fifo_paths: Optional[Dict[str, int]] = None,
                  errors: Optional[_Errors] = None) -> Dict[int, List[List[Any]]]:
    """inode -> [[pid, fd, mode], ...] for every pipe/socket fd of every process.

    This is how the other end of a pipe (who holds the write end?) or the
    process behind a local socket peer is found.  Only link texts are read,
    plus the fdinfo of pipes (the access mode tells the read end from the
    write end; sockets are always 'rw').  Named FIFOs are matched by path
    (``fifo_paths``: path -> inode).  Processes whose fds we may not read are
    counted in ``errors``.
    """
    errs = errors if errors is not None else _Errors()
    want_pipe, want_sock = "pipe" in kinds, "socket" in kinds
    out: Dict[int, List[List[Any]]] = {}
    denied: List[int] = []
    for name in os.listdir(PROC):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            fds = _sys(pid, os.listdir, f"{PROC}/{pid}/fd")
        except psutil.AccessDenied:
            denied.append(pid)
            continue
        except (psutil.Error, OSError):
            continue
        for fd in fds:
            try:
                link = _sys(pid, os.readlink, f"{PROC}/{pid}/fd/{fd}")
            except (psutil.Error, OSError):
                continue
            if want_sock and link.startswith("socket:["):
                out.setdefault(int(link[8:-1]), []).append([pid, int(fd), "rw"])
                continue
            if want_pipe and link.startswith("pipe:["):
                inode = int(link[6:-1])
            elif fifo_paths and link in fifo_paths:
                inode = fifo_paths[link]
            else:
                continue
            try:
                kv = _parse_kv(_read(f"{PROC}/{pid}/fdinfo/{fd}", pid))
                mode = _mode_of_flags(int(kv[b"flags"], 8))
            except (psutil.Error, OSError, KeyError, ValueError):
                mode = "?"
            out.setdefault(inode, []).append([pid, int(fd), mode])
    if denied:
        shown = ", ".join(str(p) for p in denied[:10]) + (" ..." if len(denied) > 10 else "")
        errs.add("inode holders", f"fds of {len(denied)} process(es) ({shown})", "permission denied")
    return out


# --------------------------------------------------------------------------
# Target memory
# --------------------------------------------------------------------------

def read_memory_word(pid: int, addr: int, size: int = 4, *, timeout_s: float = 0.5) -> int:
    """Read a little-endian unsigned int of ``size`` bytes at ``addr`` in the
    memory of ``pid`` (read-only, via /proc/PID/mem; e.g. the owner TID field
    of a glibc pthread mutex).

    Raises NoSuchProcess / AccessDenied; OSError(EIO) for an unmapped address;
    TimeoutError when the read does not return in ``timeout_s`` (the target
    holds its mmap lock: the reading thread is then abandoned).
    """
    result: Dict[str, Any] = {}

    def work() -> None:
        def pread(path: str) -> bytes:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                return os.pread(fd, size, addr)
            finally:
                os.close(fd)
        try:
            result["data"] = _sys(pid, pread, f"{PROC}/{pid}/mem")
        except BaseException as e:  # handed to the caller
            result["error"] = e

    t = threading.Thread(target=work, name="pyimpact-mem", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise TimeoutError(f"reading memory of pid {pid} did not return within {timeout_s:g} s")
    if "error" in result:
        raise result["error"]
    data = result["data"]
    if len(data) != size:
        raise OSError(errno.EIO, f"short read at {addr:#x} in pid {pid}")
    return int.from_bytes(data, "little")


# --------------------------------------------------------------------------
# The snapshot
# --------------------------------------------------------------------------

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
    errs = _Errors()
    snap = SystemSnapshot(taken_at_ns=time.time_ns(), monotonic_ns=t0,
                          clock_ticks=CLOCK_TICKS, page_size=PAGE_SIZE)
    roots = list(dict.fromkeys(int(p) for p in pids))
    for pid in roots:
        process_identity(pid)  # a missing root raises NoSuchProcess here
    order = list(roots)
    kids: Dict[int, List[int]] = {}
    seen = set(order)
    i = 0
    while i < len(order):
        pid = order[i]
        i += 1
        try:
            kids[pid] = children(pid)
        except psutil.NoSuchProcess:
            kids[pid] = []
            continue
        except (psutil.Error, OSError) as e:
            errs.add(f"pid {pid}", "children unreadable", e)
            kids[pid] = []
        if tree:
            for k in kids[pid]:
                if k not in seen:
                    seen.add(k)
                    order.append(k)

    def gone(pid: int, err: BaseException) -> None:
        if pid in roots:
            raise err
        errs.add(f"pid {pid}", "skipped", "exited during the snapshot"
                 if isinstance(err, psutil.NoSuchProcess) else _reason(err))

    # Phase 1: what every thread waits on, all processes together.
    state_slots = _run_bounded(
        lambda pid, e, h: _read_process_state(pid, threads, stacks, e, h), order, deadline1)
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
                _apply_clock(t, offsets)
            elif t.exec_start_ms is not None:
                errs.add(f"pid {p.pid}", "per-CPU clock offset",
                         f"cpu {t.processor} not calibrated; last_ran_ago_s uses our CPU's clock")

    # Phase 2: everything slower.
    detail_slots = _run_bounded(lambda p, e, h: _read_process_details(p, e, h), procs, deadline2)
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
        own = _own_netns()
        for ns, pid in namespaces.items():
            try:
                snap.sockets.update(read_sockets(None if ns == own else pid, errors=errs))
            except (psutil.Error, OSError) as e:
                errs.add(f"pid {pid}", "sockets unreadable", e)
    if holders:
        fifos = {f.target: f.inode for _, f in all_fds
                 if f.kind == "pipe" and f.target.startswith("/") and f.inode is not None}
        snap.inode_holders = inode_holders(fifo_paths=fifos, errors=errs)
    pidns.annotate(snap, errs)     # pids named inside a PID namespace are not host pids
    snap.errors = errs.lines()
    snap.duration_ns = time.monotonic_ns() - t0
    return snap


# --------------------------------------------------------------------------
# Machine-wide scan of the allow-listed environment (finding a job's ranks)
# --------------------------------------------------------------------------

@dataclass
class EnvironEntry:
    """A process's allow-listed environment, parent and network namespace."""

    pid: int
    ppid: int
    netns: Optional[int]
    env: Dict[str, str]


def all_pids() -> List[int]:
    """Every process id in /proc now (kernel threads included)."""
    return sorted(int(n) for n in os.listdir(PROC) if n.isdigit())


def scan_environ(pids: Optional[Iterable[int]] = None, *, timeout_s: float = 1.0) -> List[EnvironEntry]:
    """The allow-listed environment (``env_key_allowed``) of many processes,
    for finding the ranks of a job by its rendezvous keys.

    Reading ``environ`` takes the process's mmap lock, so the reads run on the
    bounded workers: a stuck process costs at most ``timeout_s`` and is left out.
    Processes that vanish, deny or have no allow-listed key are left out.
    """
    items = list(pids) if pids is not None else all_pids()

    def one(pid: int, errs: _Errors, holder: Dict[str, Any]) -> Optional[EnvironEntry]:
        env = {}
        for item in _read(f"{PROC}/{pid}/environ", pid).split(b"\0"):
            k, sep, v = item.partition(b"=")
            if sep:
                key = k.decode("utf-8", "replace")
                if env_key_allowed(key):
                    env[key] = v.decode("utf-8", "replace")
        if not env:
            return None
        _, fields = _parse_stat(_read(f"{PROC}/{pid}/stat", pid))
        try:
            netns = _ns_inode(_sys(pid, os.readlink, f"{PROC}/{pid}/ns/net"))
        except (psutil.Error, OSError):
            netns = None
        return EnvironEntry(pid=pid, ppid=_field(fields, 4), netns=netns, env=env)

    slots = _run_bounded(one, items, time.monotonic_ns() + int(timeout_s * 1e9), workers=4)
    return [s.result for s in slots if s.done and s.error is None and s.result is not None]


def own_netns() -> Optional[int]:
    """Inode of the network namespace this tool runs in."""
    return _own_netns()
