"""One process: the slower details (status, io, paths, argv, environment,
memory, file descriptors) and reads of its memory.

``read_process_state`` (phase 1: stat and the wait state of every thread) and
``read_process_details`` (phase 2) are what ``take_snapshot`` runs on the
bounded workers.  Regular files on network and FUSE file systems are never
stat()ed (their server may be the thing that hangs).
"""
from __future__ import annotations

import errno
import os
import stat as stat_mod
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

import psutil

from ...snapshot import FdInfo, ProcessSnapshot
from .boundary import CLOCK_TICKS, PROC, ErrorNotes, read, read_bounded, sys_call
from .parse import (PF_KTHREAD, hex_mask, parse_argv, kb, looks_like_python, mode_of_flags, ns_inode,
                    parse_kv, parse_stat, stat_field)
from .environ import allowed_environ
from .threads import read_thread
from .tree import process_identity

#: File systems whose files are never stat()ed: a dead server or FUSE daemon
#: would block the stat (and the FUSE daemon may be the very process examined).
REMOTE_FS_TYPES = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "9p", "afs", "glusterfs",
    "lustre", "gpfs", "beegfs", "fuse", "fuseblk", "ncpfs", "coda", "orangefs",
})


def read_process_state(pid: int, threads: bool, stacks: bool, errs: ErrorNotes,
                        holder: Dict[str, Any]) -> ProcessSnapshot:
    """Phase 1: stat of the process and the wait state of each of its threads.

    The record is published in ``holder`` as soon as it exists, so threads read
    before a read that never returns are kept.
    """
    name, f = parse_stat(read(f"{PROC}/{pid}/stat", pid))
    p = ProcessSnapshot(
        pid=pid, name=name, state=f[0].decode(),
        ppid=stat_field(f, 4), pgid=stat_field(f, 5), sid=stat_field(f, 6),
        cpu_user_s=stat_field(f, 14) / CLOCK_TICKS, cpu_system_s=stat_field(f, 15) / CLOCK_TICKS,
        children_cpu_user_s=stat_field(f, 16) / CLOCK_TICKS,
        children_cpu_system_s=stat_field(f, 17) / CLOCK_TICKS,
        num_threads=stat_field(f, 20), start_ticks=stat_field(f, 22), vms_bytes=stat_field(f, 23),
        kernel_thread=bool(stat_field(f, 9) & PF_KTHREAD),
    )
    holder["proc"] = p
    tids = [pid]
    if threads:
        try:
            tids = sorted(int(t) for t in sys_call(pid, os.listdir, f"{PROC}/{pid}/task"))
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


def read_process_details(p: ProcessSnapshot, errs: ErrorNotes, holder: Dict[str, Any]) -> ProcessSnapshot:
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
        st = parse_kv(read(f"{PROC}/{pid}/status", pid))
        p.uid = int(st[b"Uid"].split()[0])
        p.tracer_pid = int(st.get(b"TracerPid", b"0"))
        p.sig_pending = hex_mask(st.get(b"SigPnd"))
        p.sig_shared_pending = hex_mask(st.get(b"ShdPnd"))
        p.sig_blocked = hex_mask(st.get(b"SigBlk"))
        p.sig_ignored = hex_mask(st.get(b"SigIgn"))
        p.sig_caught = hex_mask(st.get(b"SigCgt"))
        p.rss_bytes = kb(st.get(b"VmRSS"))  # vms_bytes came exact from stat

    def io() -> None:
        kv = parse_kv(read(f"{PROC}/{pid}/io", pid))
        p.io_read_bytes, p.io_write_bytes = int(kv[b"read_bytes"]), int(kv[b"write_bytes"])
        p.io_read_chars, p.io_write_chars = int(kv[b"rchar"]), int(kv[b"wchar"])

    def paths() -> None:
        p.exe = sys_call(pid, os.readlink, f"{PROC}/{pid}/exe")

    def cwd() -> None:
        p.cwd = sys_call(pid, os.readlink, f"{PROC}/{pid}/cwd")

    def netns() -> None:
        p.netns = ns_inode(sys_call(pid, os.readlink, f"{PROC}/{pid}/ns/net"))

    def cmdline() -> None:
        p.cmdline = parse_argv(read(f"{PROC}/{pid}/cmdline", pid))

    def environ() -> None:
        p.env = allowed_environ(read(f"{PROC}/{pid}/environ", pid))

    def uss() -> None:
        total = 0
        for line in read(f"{PROC}/{pid}/smaps_rollup", pid).split(b"\n"):
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
        attempt("fds", lambda: read_fds(p, errs))
    p.python = looks_like_python(p.exe, p.cmdline)
    if process_identity(pid)[1] != p.start_ticks:
        raise psutil.NoSuchProcess(pid, msg="pid reused during the snapshot")
    return p


def mount_types(pid: int) -> Dict[int, str]:
    """mnt_id -> file system type, from the process's own mount namespace."""
    out = {}
    for line in read(f"{PROC}/{pid}/mountinfo", pid).split(b"\n"):
        left, sep, right = line.partition(b" - ")
        if sep:
            out[int(left.split(b" ", 1)[0])] = right.split(b" ", 1)[0].decode("utf-8", "replace")
    return out


def classify_link(link: str) -> Tuple[str, Optional[int]]:
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


def read_fds(p: ProcessSnapshot, errs: ErrorNotes) -> None:
    """Fill ``p.fds``: link text and fdinfo for every fd first (never blocks),
    then stat() regular files on local file systems for their type and size.

    An fd closed between the listing and its reading is skipped.
    """
    pid = p.pid
    names = sorted(sys_call(pid, os.listdir, f"{PROC}/{pid}/fd"), key=int)
    fds: List[FdInfo] = []
    for name in names:
        try:
            link = sys_call(pid, os.readlink, f"{PROC}/{pid}/fd/{name}")
        except psutil.NoSuchProcess:
            continue
        kind, inode = classify_link(link)
        fi = FdInfo(fd=int(name), target=link, kind=kind, inode=inode)
        try:
            kv = parse_kv(read(f"{PROC}/{pid}/fdinfo/{name}", pid))
            fi.pos = int(kv[b"pos"])
            fi.flags = int(kv[b"flags"], 8)
            fi.mode = mode_of_flags(fi.flags)
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
        mounts = mount_types(pid)
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
            st = sys_call(pid, os.stat, f"{PROC}/{pid}/fd/{fi.fd}")
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
            result["data"] = sys_call(pid, pread, f"{PROC}/{pid}/mem")
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


#: How long one argv read may take: it takes the target's mmap lock, which a
#: stuck target may hold forever.
CMDLINE_TIMEOUT_S = 0.5


def read_cmdline(pid: int, *, timeout_s: float = CMDLINE_TIMEOUT_S) -> List[str]:
    """argv of ``pid`` ([] for kernel threads and zombies), read under a deadline.

    Raises NoSuchProcess / AccessDenied, or TimeoutError when the read did not
    return in ``timeout_s`` (the target holds its mmap lock).
    """
    return parse_argv(read_bounded(f"{PROC}/{pid}/cmdline", pid, timeout_s))


def tgid_of(tid: int) -> int:
    """The process (thread group) task ``tid`` belongs to, from its status.

    Raises NoSuchProcess / AccessDenied, or KeyError/ValueError on a status
    without a Tgid line.
    """
    return int(parse_kv(read(f"{PROC}/{tid}/status", tid))[b"Tgid"])
