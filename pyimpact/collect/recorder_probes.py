"""The recorder's own BPF program (probes/recorder.bpf.c): build, load, read, detach.

Why a loader apart from KernelProbes: the trace probes follow a set of
processes and hook every syscall (a raw tracepoint) to aggregate latencies;
the recorder runs for days machine-wide and must not touch syscalls it does
not record, so it is a different, small program attached to rare
tracepoints only. Stages as in probes.py: `RecorderConfig` (validated) ->
`RecorderProbes.open()` (BTF offsets, compile, attach) -> `poll()` ->
`close()`; a context manager, so every exit path detaches.

Events are rare (tens a second on a busy machine), so each is decoded here
into a `RecEvent` through bcc's ring buffer callback; times are turned from
boot-time ns into wall-clock ns.
"""
from __future__ import annotations

import ctypes
import os
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Callable, Dict, List, Optional, Tuple

from ..errors import BPFUnavailable, UsageError
from .bpf_env import check_bpf_environment
from .btf import XFS_OFFSETS, load_btf, optional_offsets, recorder_offsets

KINDS = {1: "fork", 2: "exec", 3: "exit", 4: "signal", 5: "close", 6: "fsync", 7: "rename"}
COMM_LEN, PATH_LEN, DEPTH, NAME_LEN, ARGV_LEN = 16, 256, 8, 64, 512
CLOCK_BOOTTIME = 7


class _Event(ctypes.Structure):
    _fields_ = [("ts", ctypes.c_uint64), ("kind", ctypes.c_uint32), ("tgid", ctypes.c_uint32),
                ("tid", ctypes.c_uint32), ("other", ctypes.c_uint32), ("aux", ctypes.c_int32),
                ("ret", ctypes.c_int32), ("a", ctypes.c_uint64 * 3), ("comm", ctypes.c_char * COMM_LEN)]


EVENT_SIZE = ctypes.sizeof(_Event)
assert EVENT_SIZE == 72


@dataclass
class RecEvent:
    """One recorder event (see probes/recorder.bpf.c for the field meanings)."""

    t_ns: int                   # wall clock
    kind: str
    pid: int                    # the acting process (fork: the parent)
    tid: int
    comm: str
    other: int = 0              # fork: child pid; exec: old pid; signal: target pid
    aux: int = 0
    ret: int = 0
    a: tuple = (0, 0, 0)
    boot_ns: int = 0            # the raw boot-time stamp (matches /proc start times)
    filename: str = ""          # exec: program path
    argv: List[str] = field(default_factory=list)    # exec: arguments (cut at 512 bytes)
    pgid: int = 0               # exec: process group and session, read in the kernel at exec
    sid: int = 0
    uid: Optional[int] = None   # exec
    names: List[str] = field(default_factory=list)   # close/fsync: path components, innermost first
    truncated: bool = False     # close/fsync: deeper than the components kept
    oldname: str = ""           # rename
    newname: str = ""


TRACEFS_EVENTS = ("/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events")

#: The filesystems' own fsync tracepoints (category, name, -D flag): not
#: syscall tracepoints, so only an fsync on that filesystem runs them.
FSYNC_TRACEPOINTS = (("ext4", "ext4_sync_file_enter", "PYI_REC_FSYNC_EXT4"),
                     ("btrfs", "btrfs_sync_file", "PYI_REC_FSYNC_BTRFS"),
                     ("xfs", "xfs_file_fsync", "PYI_REC_FSYNC_XFS"))
#: The fallback's syscall tracepoints for renames: rename(2) is absent on arm64.
RENAME_SYSCALLS = (("rename", "PYI_REC_HAVE_RENAME"), ("renameat", "PYI_REC_HAVE_RENAMEAT"),
                   ("renameat2", "PYI_REC_HAVE_RENAMEAT2"))
FILE_SOURCES = ("fanotify", "syscalls")


def tracepoint_exists(category: str, name: str) -> bool:
    return any(os.path.isdir(os.path.join(root, category, name)) for root in TRACEFS_EVENTS)


@dataclass(frozen=True)
class RecorderConfig:
    ringbuf_pages: int = 1024           # 4 MiB: >10,000 exec events between two reads
    min_bytes: int = 1 << 20          # close/fsync of a written file this large is recorded
    files: bool = True                # False: no file probes at all (lifecycle and signals only)
    #: where closes and renames come from: "fanotify" (user space; the BPF side then
    #: adds the filesystems' fsync tracepoints) or "syscalls" (the syscall tracepoints
    #: of close, fsync, fdatasync and renames: every syscall on the machine pays for them)
    file_source: str = "fanotify"

    def validate(self) -> None:
        pages = int(self.ringbuf_pages)
        if pages < 1 or pages > 16384 or pages & (pages - 1):
            raise UsageError(f"ring buffer pages must be a power of two between 1 and 16384, not {pages}",
                             "use e.g. 1024 pages")
        if not (0 <= int(self.min_bytes) <= 1 << 50):
            raise UsageError(f"minimum file size out of range: {self.min_bytes}",
                             "use a size between 0 and the largest file to watch")
        if self.file_source not in FILE_SOURCES:
            raise UsageError(f"unknown file completion source {self.file_source!r}", "fanotify or syscalls")

    def file_probes(self, xfs_offsets: Optional[dict]) -> Tuple[Dict[str, int], List[str]]:
        """The -D switches of the file probes, and the tracepoints they attach."""
        flags = {flag: 0 for _c, _n, flag in FSYNC_TRACEPOINTS}
        flags.update({flag: 0 for _n, flag in RENAME_SYSCALLS})
        flags["PYI_REC_FILES_SYSCALLS"] = 0
        names: List[str] = []
        if not self.files:
            return flags, names
        if self.file_source == "syscalls":
            flags["PYI_REC_FILES_SYSCALLS"] = 1
            names += ["sys_enter_close", "sys_enter_fsync", "sys_enter_fdatasync"]
            for call, flag in RENAME_SYSCALLS:
                if tracepoint_exists("syscalls", f"sys_enter_{call}"):
                    flags[flag] = 1
                    names += [f"sys_enter_{call}", f"sys_exit_{call}"]
            return flags, names
        for category, name, flag in FSYNC_TRACEPOINTS:
            if flag == "PYI_REC_FSYNC_XFS" and xfs_offsets is None:
                continue
            if tracepoint_exists(category, name):
                flags[flag] = 1
                names.append(name)
        return flags, names

    def cflags(self, offsets: dict, switches: Optional[dict] = None) -> list:
        self.validate()
        flags = [f"-DPYI_RINGBUF_PAGES={int(self.ringbuf_pages)}", f"-DPYI_REC_MIN_BYTES={int(self.min_bytes)}LL"]
        flags += [f"-D{k}={int(v)}" for k, v in sorted(offsets.items())]
        flags += [f"-D{k}={int(v)}" for k, v in sorted((switches or {}).items())]
        return flags


def recorder_source() -> str:
    return (resources.files("pyimpact.probes") / "recorder.bpf.c").read_text()


def _boot_offset_ns() -> int:
    """Wall clock minus CLOCK_BOOTTIME."""
    best = None
    for _ in range(5):
        b0 = time.clock_gettime_ns(CLOCK_BOOTTIME)
        w = time.time_ns()
        b1 = time.clock_gettime_ns(CLOCK_BOOTTIME)
        if best is None or b1 - b0 < best[0]:
            best = (b1 - b0, w - (b0 + b1) // 2)
    return best[1]


_COMPILER_LIBS = ("libLLVM", "libclang", "libbcc")


def release_compiler_memory() -> None:
    """Give back what compiling the program took, once it is loaded.

    The recorder runs for days; compiling pulls about 75 MB of LLVM's code
    into RSS and leaves about 25 MB of freed heap. malloc_trim returns the
    heap; madvise(MADV_DONTNEED) on the compiler libraries' *executable,
    private, file-backed* mappings (r-xp only: code is never written, so
    dropping those pages loses nothing; a later call into the library
    faults them back in from the page cache) returns the code pages. Never
    applied to writable or relocated (r--p, rw-p) mappings, whose private
    copies would be lost. Best effort: any failure leaves memory as it was."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.malloc_trim(0)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        with open("/proc/self/maps") as f:
            maps = f.read().splitlines()
        for line in maps:
            parts = line.split()
            if len(parts) >= 6 and parts[1] == "r-xp" and any(x in parts[5] for x in _COMPILER_LIBS):
                start, end = (int(x, 16) for x in parts[0].split("-"))
                libc.madvise(start, end - start, 4)      # MADV_DONTNEED
    except (OSError, AttributeError, ValueError):
        pass


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


class RecorderProbes:
    """The loaded recorder program. Use as a context manager."""

    def __init__(self, config: Optional[RecorderConfig] = None):
        self.config = config or RecorderConfig()
        self.config.validate()
        self._bpf = None
        self._sink: Optional[Callable[[RecEvent], None]] = None
        self.boot_offset_ns = 0
        self.timings = {}
        self.file_tracepoints: List[str] = []     # the file probes attached (tracepoint names)

    def open(self) -> "RecorderProbes":
        t0 = time.monotonic()
        check_bpf_environment()
        btf = load_btf()
        offsets = recorder_offsets(btf)
        xfs = optional_offsets(XFS_OFFSETS, btf)
        switches, self.file_tracepoints = self.config.file_probes(xfs)
        offsets.update(xfs or {k: 0 for k in XFS_OFFSETS})
        del btf
        from bcc import BPF

        try:
            self._bpf = BPF(text=recorder_source().encode(), cflags=self.config.cflags(offsets, switches))
        except Exception as exc:
            raise BPFUnavailable(f"could not load the recorder probes: {str(exc).splitlines()[0]}",
                                 "is BPF permitted here (root, no lockdown, kernel >= 5.8)?") from None
        self.boot_offset_ns = _boot_offset_ns()
        self._bpf[b"rec_events"].open_ring_buffer(self._on_event)
        self.timings["open_s"] = time.monotonic() - t0
        release_compiler_memory()
        return self

    def close(self) -> None:
        if self._bpf is None:
            return
        from .probes import _detach_fast

        bpf, self._bpf = self._bpf, None
        _detach_fast(bpf)
        bpf.cleanup()

    def __enter__(self) -> "RecorderProbes":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def poll(self, sink: Callable[[RecEvent], None], timeout_ms: int = 1000) -> None:
        """Sleep ``timeout_ms``, then hand every event that arrived to ``sink``.

        A timer, not a wake-up per event: events are rare but come in bursts
        (a shell script forks hundreds of processes), and being woken for each
        costs the recorder a context switch per event; nothing here needs an
        event sooner than the next commit (every interval) anyway. The ring
        buffer holds several seconds of a fork storm (RecorderConfig.ringbuf_pages)."""
        self._sink = sink
        time.sleep(max(0, int(timeout_ms)) / 1000)
        self._bpf.ring_buffer_consume()

    def drain(self, sink: Callable[[RecEvent], None]) -> None:
        self._sink = sink
        self._bpf.ring_buffer_consume()

    def lost(self) -> int:
        return int(sum(self._bpf[b"rec_lost"][ctypes.c_int(0)]))

    def _on_event(self, _ctx, data, size) -> None:
        if size < EVENT_SIZE or self._sink is None:
            return
        raw = ctypes.string_at(data, size)
        e = _Event.from_buffer_copy(raw[:EVENT_SIZE])
        ev = RecEvent(t_ns=int(e.ts) + self.boot_offset_ns, boot_ns=int(e.ts), kind=KINDS.get(e.kind, str(e.kind)),
                      pid=e.tgid, tid=e.tid, comm=_text(e.comm), other=e.other, aux=e.aux, ret=e.ret,
                      a=tuple(int(x) for x in e.a))
        rest = raw[EVENT_SIZE:]
        if ev.kind == "exec":
            ev.filename = _text(rest[:PATH_LEN])
            raw_argv = rest[PATH_LEN:PATH_LEN + min(int(ev.a[1]), ARGV_LEN)]
            ev.argv = [a.decode("utf-8", "replace") for a in raw_argv.rstrip(b"\0").split(b"\0")] if raw_argv else []
            ev.pgid, ev.sid, ev.uid = ev.aux, ev.ret, int(ev.a[0])
        elif ev.kind in ("close", "fsync") and len(rest) >= 8:
            depth = int.from_bytes(rest[:4], "little")
            ev.truncated = depth > DEPTH
            names = rest[8:8 + DEPTH * NAME_LEN]
            ev.names = [_text(names[i * NAME_LEN:(i + 1) * NAME_LEN]) for i in range(min(depth, DEPTH))]
        elif ev.kind == "rename":
            ev.oldname = _text(rest[:PATH_LEN])
            ev.newname = _text(rest[PATH_LEN:2 * PATH_LEN])
        self._sink(ev)
