"""File completions machine-wide from fanotify: close after writing, rename into place.

Why fanotify and not the syscall tracepoints of close and rename: enabling
any syscall tracepoint sends every syscall of every task on the machine
through the kernel's syscall-tracing slow path (DESIGN.md, "Costs
measured"), and a recorder that runs for days must cost nothing to the
syscalls it does not record. Kprobes are often absent (and here) and BPF
trampolines (fentry, LSM programs) may be refused (here: EPERM before the
verifier for every tracing program). fanotify is a kernel API of its own:
a filesystem-wide mark for FAN_CLOSE_WRITE | FAN_RENAME costs a write() one
mask test and a getppid() nothing; the kernel queues an event only when a
file opened for writing is released or a name is moved.

What an event carries (FAN_REPORT_DFID_NAME_TARGET): the pid of the
process, the directory's file handle and the entry's name (for a rename
the old and the new directory and name), and the object's own file handle.
Names are those at the time of the event (a file closed as ``x.tmp`` and
renamed to ``x`` right after is reported as ``x.tmp``); directories are
resolved to paths (open_by_handle_at, readlink) when the events are read,
in batches; sizes are read then too (fstat of the object). Events carry no
time: they are stamped when read (the recorder reads within a tenth of a
second of the first one).

Stages as everywhere else: ``FileWatch.open()`` (init, mark every data
filesystem) -> ``refresh()`` (mark filesystems mounted since) -> ``read()``
-> ``close()``; a context manager. A queue overflow (more than 16384 events
not yet read) is counted in ``lost``, never silent. Needs CAP_SYS_ADMIN
(filesystem marks) and CAP_DAC_READ_SEARCH (open_by_handle_at): root.
"""
from __future__ import annotations

import ctypes
import errno
import os
import select
import struct
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ..errors import BPFUnavailable

# <linux/fanotify.h>
FAN_CLOEXEC, FAN_NONBLOCK = 0x1, 0x2
FAN_REPORT_FID, FAN_REPORT_DIR_FID, FAN_REPORT_NAME, FAN_REPORT_TARGET_FID = 0x200, 0x400, 0x800, 0x1000
FAN_REPORT_DFID_NAME_TARGET = FAN_REPORT_FID | FAN_REPORT_DIR_FID | FAN_REPORT_NAME | FAN_REPORT_TARGET_FID
FAN_MARK_ADD, FAN_MARK_FILESYSTEM = 0x1, 0x100
FAN_CLOSE_WRITE, FAN_Q_OVERFLOW, FAN_RENAME, FAN_ONDIR = 0x8, 0x4000, 0x10000000, 0x40000000
INFO_FID, INFO_DFID_NAME, INFO_OLD_DFID_NAME, INFO_NEW_DFID_NAME = 1, 2, 10, 12
METADATA = struct.Struct("<IBBHQii")            # event_len, vers, reserved, metadata_len, mask, fd, pid
INFO_HEADER = struct.Struct("<BBH")
MASK = FAN_CLOSE_WRITE | FAN_RENAME | FAN_ONDIR
QUEUE_LIMIT = 16384                             # the kernel's default queue (max_queued_events)

#: Filesystems that hold no files anyone saves (kernel interfaces), or none fanotify can mark.
PSEUDO_FS = frozenset((
    "proc", "sysfs", "devpts", "cgroup", "cgroup2", "mqueue", "debugfs", "tracefs", "securityfs", "pstore",
    "bpf", "configfs", "fusectl", "binfmt_misc", "autofs", "nsfs", "efivarfs", "rpc_pipefs", "devtmpfs",
    "hugetlbfs", "selinuxfs", "ramfs", "squashfs", "iso9660", "nfsd", "fuse.gvfsd-fuse", "fuse.portal",
))


#: Mount points (and what is below them) left unmarked: POSIX shared memory and
#: runtime state, never where a checkpoint is saved, and busy: PyTorch's
#: DataLoader workers pass every batch through a file in /dev/shm (hundreds
#: of closes a second during training, each one an event to read).
SKIPPED_MOUNTS = ("/dev/shm", "/run")


def skipped_mount(point: str) -> bool:
    return any(point == m or point.startswith(m + "/") for m in SKIPPED_MOUNTS)


@dataclass
class FileEvent:
    """One completion: a written file released, or a name moved."""

    kind: str                   # "close" | "rename"
    pid: int
    t_ns: int                   # wall clock when read
    path: str
    old_path: Optional[str] = None
    size: Optional[int] = None
    is_dir: bool = False


@dataclass
class Mount:
    dev: int                    # st_dev of the mount point
    point: str
    fstype: str


@dataclass
class _Fid:
    fsid: bytes
    handle: bytes               # struct file_handle as the kernel sent it
    name: Optional[str] = None


@dataclass
class _Raw:
    mask: int
    pid: int
    fids: Dict[int, _Fid] = field(default_factory=dict)


_libc = None


def _lib():
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
        lib.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
        lib.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.fstatfs.argtypes = [ctypes.c_int, ctypes.c_char_p]
        _libc = lib
    return _libc


def _unescape(field_text: str) -> str:
    """mountinfo's octal escapes (\\040 space, \\011 tab, \\012 newline, \\134 backslash)."""
    if "\\" not in field_text:
        return field_text
    out, i = [], 0
    while i < len(field_text):
        if field_text[i] == "\\" and field_text[i + 1:i + 4].isdigit():
            out.append(chr(int(field_text[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field_text[i])
            i += 1
    return "".join(out)


def data_mounts(mountinfo: str) -> List[Mount]:
    """One mount per filesystem that can hold saved files: the first seen
    whose root is the filesystem's own root (so paths come out as users see
    them), pseudo filesystems and SKIPPED_MOUNTS left out."""
    seen: Dict[str, Mount] = {}
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        f, r = left.split(), right.split()
        if not sep or len(f) < 5 or not r:
            continue
        fstype = r[0]
        point = _unescape(f[4])
        if fstype in PSEUDO_FS or f[3] != "/" or f[2] in seen or skipped_mount(point):
            continue
        seen[f[2]] = Mount(dev=0, point=point, fstype=fstype)
    return list(seen.values())


def _fsid_of(fd: int) -> bytes:
    """statfs(2)'s f_fsid, as fanotify reports it (the generic 64-bit struct
    statfs: seven longs, then the fsid)."""
    buf = ctypes.create_string_buffer(128)
    if _lib().fstatfs(fd, buf) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return buf.raw[56:64]


class FileWatch:
    """A fanotify group marking every data filesystem. Use as a context manager."""

    def __init__(self, min_bytes: int = 1 << 20, ignore_pids=(), wanted=None):
        self.min_bytes = int(min_bytes)
        self.ignore_pids = set(ignore_pids)
        self.wanted = wanted          # callable(name, size, is_dir) -> keep?  (the recorder's filter)
        self.fd = -1
        self.marked: Dict[bytes, Mount] = {}      # fsid -> the mount used to resolve its handles
        self.refused: Dict[str, str] = {}         # mount point -> why it could not be marked
        self.lost = 0                             # queue overflows (each: an unknown number of events)
        self.unresolved = 0                       # events whose directory was gone when read
        self._last_wake = 0.0

    # -- stages ------------------------------------------------------------------
    def open(self) -> "FileWatch":
        fd = _lib().fanotify_init(FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME_TARGET,
                                  os.O_RDONLY | os.O_LARGEFILE | os.O_CLOEXEC)
        if fd < 0:
            e = ctypes.get_errno()
            raise BPFUnavailable(f"fanotify is not available ({os.strerror(e)})",
                                 "needs root and Linux >= 5.17; file completions fall back to syscall tracepoints")
        self.fd = fd
        self.refresh()
        if not self.marked:
            why = "; ".join(f"{p}: {w}" for p, w in list(self.refused.items())[:3])
            self.close()
            raise BPFUnavailable(f"fanotify could mark no filesystem ({why or 'none found'})",
                                 "file completions fall back to syscall tracepoints")
        return self

    def refresh(self) -> List[Mount]:
        """Mark the data filesystems not marked yet (new mounts); forget the
        ones gone. Returns those marked now."""
        try:
            with open("/proc/self/mountinfo") as f:
                mounts = data_mounts(f.read())
        except OSError:
            return []
        new, present = [], set()
        for m in mounts:
            try:
                pfd = os.open(m.point, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError as err:
                self.refused[m.point] = err.strerror or str(err)
                continue
            try:
                fsid = _fsid_of(pfd)
                m.dev = os.fstat(pfd).st_dev
                present.add(fsid)
                if fsid in self.marked or m.point in self.refused:
                    continue
                if fsid == bytes(8):
                    self.refused[m.point] = "no filesystem id"
                    continue
                if _lib().fanotify_mark(self.fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, MASK, pfd, None) != 0:
                    self.refused[m.point] = os.strerror(ctypes.get_errno())
                    continue
                self.marked[fsid] = m
                new.append(m)
            except OSError as err:
                self.refused[m.point] = err.strerror or str(err)
            finally:
                os.close(pfd)
        for fsid in [k for k in self.marked if k not in present]:
            del self.marked[fsid]     # unmounted: the kernel dropped its mark with the superblock
        return new

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "FileWatch":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def fileno(self) -> int:
        return self.fd

    def describe(self) -> str:
        kinds = sorted({m.fstype for m in self.marked.values()})
        return f"fanotify on {len(self.marked)} filesystem{'s' if len(self.marked) != 1 else ''} ({', '.join(kinds)})"

    # -- reading -----------------------------------------------------------------
    def wait(self, timeout_s: float, min_gap_s: float = 0.1) -> None:
        """Return when an event is queued or after ``timeout_s``, but never
        sooner than ``min_gap_s`` after the previous return: a busy machine
        closes written files all the time, and a wake-up per event would
        cost the recorder more than the events are worth."""
        now = time.monotonic()
        gap = self._last_wake + min_gap_s - now
        if gap > 0:
            time.sleep(min(gap, timeout_s))
            timeout_s -= gap
        if timeout_s > 0:
            try:
                select.select([self.fd], [], [], timeout_s)
            except InterruptedError:
                pass
        self._last_wake = time.monotonic()

    def read(self, limit: int = 100000) -> List[FileEvent]:
        """Every queued event (up to ``limit``), decoded, filtered, resolved to paths."""
        raws: List[_Raw] = []
        while len(raws) < limit:
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                break
            except OSError as err:
                if err.errno == errno.EINTR:
                    continue
                raise
            if not buf:
                break
            raws.extend(self._parse(buf))
        if not raws:
            return []
        t_ns = time.time_ns()
        return self._resolve(raws, t_ns)

    def _parse(self, buf: bytes) -> List[_Raw]:
        out = []
        pos = 0
        while pos + METADATA.size <= len(buf):
            event_len, _vers, _res, meta_len, mask, fd, pid = METADATA.unpack_from(buf, pos)
            if event_len < METADATA.size:
                break
            end = pos + event_len
            if fd >= 0:
                os.close(fd)          # not asked for (FID mode reports no descriptors), but never leaked
            if mask & FAN_Q_OVERFLOW:
                self.lost += 1
            elif pid not in self.ignore_pids:
                raw = _Raw(mask=mask, pid=pid)
                ipos = pos + meta_len
                while ipos + INFO_HEADER.size <= end:
                    itype, _pad, ilen = INFO_HEADER.unpack_from(buf, ipos)
                    if ilen < INFO_HEADER.size:
                        break
                    if itype in (INFO_FID, INFO_DFID_NAME, INFO_OLD_DFID_NAME, INFO_NEW_DFID_NAME):
                        body = buf[ipos + INFO_HEADER.size:ipos + ilen]
                        fsid = body[:8]
                        hbytes = struct.unpack_from("<I", body, 8)[0]
                        handle = body[8:16 + hbytes]
                        name = None
                        if itype != INFO_FID:
                            name = body[16 + hbytes:].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                        raw.fids[itype] = _Fid(fsid=fsid, handle=handle, name=name)
                    ipos += ilen
                out.append(raw)
            pos = end
        return out

    def _resolve(self, raws: List[_Raw], t_ns: int) -> List[FileEvent]:
        mount_fds: Dict[bytes, int] = {}
        dirs: Dict[Tuple[bytes, bytes], Optional[str]] = {}
        out: List[FileEvent] = []
        try:
            for raw in raws:
                ev = self._one(raw, t_ns, mount_fds, dirs)
                if ev is not None:
                    out.append(ev)
        finally:
            for fd in mount_fds.values():     # never held between batches: an open mount point blocks umount
                os.close(fd)
        return out

    def _mount_fd(self, fsid: bytes, mount_fds: Dict[bytes, int]) -> Optional[int]:
        if fsid in mount_fds:
            return mount_fds[fsid]
        m = self.marked.get(fsid)
        if m is None:
            return None
        try:
            fd = os.open(m.point, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return None
        mount_fds[fsid] = fd
        return fd

    def _open_handle(self, fid: _Fid, mount_fds) -> Optional[int]:
        mfd = self._mount_fd(fid.fsid, mount_fds)
        if mfd is None:
            return None
        fd = _lib().open_by_handle_at(mfd, fid.handle, os.O_PATH | os.O_CLOEXEC)
        return fd if fd >= 0 else None

    def _dir_path(self, fid: _Fid, mount_fds, dirs) -> Optional[str]:
        key = (fid.fsid, fid.handle)
        if key not in dirs:
            fd = self._open_handle(fid, mount_fds)
            path = None
            if fd is not None:
                try:
                    path = os.readlink(f"/proc/self/fd/{fd}")
                except OSError:
                    pass
                finally:
                    os.close(fd)
            dirs[key] = path
        return dirs[key]

    def _stat_object(self, fid: Optional[_Fid], mount_fds) -> Optional[os.stat_result]:
        if fid is None:
            return None
        fd = self._open_handle(fid, mount_fds)
        if fd is None:
            return None
        try:
            return os.fstat(fd)
        except OSError:
            return None
        finally:
            os.close(fd)

    def _one(self, raw: _Raw, t_ns: int, mount_fds, dirs) -> Optional[FileEvent]:
        import stat as st_mod

        if raw.mask & FAN_CLOSE_WRITE:
            where = raw.fids.get(INFO_DFID_NAME)
            kind = "close"
        elif raw.mask & FAN_RENAME:
            where = raw.fids.get(INFO_NEW_DFID_NAME)
            kind = "rename"
        else:
            return None
        if where is None or where.name is None:
            return None
        st = self._stat_object(raw.fids.get(INFO_FID), mount_fds)
        is_dir = bool(raw.mask & FAN_ONDIR) or (st is not None and st_mod.S_ISDIR(st.st_mode))
        size = st.st_size if st is not None and st_mod.S_ISREG(st.st_mode) else None
        if kind == "close" and (st is None or not st_mod.S_ISREG(st.st_mode) or not st.st_size):
            return None           # not a regular file, nothing written, or gone already
        if self.wanted is not None and not self.wanted(kind, where.name, size, is_dir):
            return None
        base = self._dir_path(where, mount_fds, dirs)
        if base is None:
            self.unresolved += 1
            m = self.marked.get(where.fsid)
            base = f"[{m.point if m else '?'}: a directory gone]"
        old = None
        if kind == "rename":
            src = raw.fids.get(INFO_OLD_DFID_NAME)
            if src is not None and src.name is not None:
                old_dir = self._dir_path(src, mount_fds, dirs) or "[a directory gone]"
                old = os.path.join(old_dir, src.name)
        return FileEvent(kind=kind, pid=raw.pid, t_ns=t_ns, path=os.path.join(base, where.name), old_path=old,
                         size=None if is_dir else size, is_dir=is_dir)
