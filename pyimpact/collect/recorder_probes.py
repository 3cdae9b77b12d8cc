"""The recorder's own BPF program (probes/recorder.bpf.c): build, load, read, detach.

Why a loader apart from KernelProbes: the trace probes follow a set of
processes and hook every syscall (a raw tracepoint) to aggregate latencies;
the recorder runs for days machine-wide and must not touch syscalls it does
not record, so it is a different, small program attached to rare
tracepoints only. Stages as in probes.py: `RecorderConfig` (validated) ->
`RecorderProbes.open()` (BTF offsets, compile, attach: in a short-lived
child, recorder_loader.py, which hands the descriptors over, so this
process never maps LLVM) -> `poll()` -> `close()`; a context manager, so
every exit path detaches.

Events are rare (tens a second on a busy machine), so each is decoded here
into a `RecEvent`, read from the ring buffer through our own mmap
(`RecRing`); times are turned from boot-time ns into wall-clock ns.
"""
from __future__ import annotations

import ctypes
import os
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Callable, Dict, List, Optional, Tuple

from ..errors import BPFUnavailable, NotPermitted, UsageError
from . import bpf_sys

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


def _page_size() -> int:
    import mmap

    return mmap.PAGESIZE


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


def _map_lookup(map_fd: int, key: bytes, value_size: int) -> Optional[bytes]:
    """One value of a map we hold (no bcc here)."""
    kbuf = ctypes.create_string_buffer(key, len(key))
    vbuf = ctypes.create_string_buffer(value_size)
    return vbuf.raw if bpf_sys.map_lookup(map_fd, kbuf, vbuf) else None


class RecRing:
    """The recorder's ring buffer read through its own mmap (the layout of
    kernel/bpf/ringbuf.c: a consumer page we write, a producer page, then
    the data area mapped twice in a row so a record that wraps reads as one
    piece; each record an 8-byte header, u32 length with BUSY and DISCARD
    flags, then its data padded to 8 bytes). The positions are read and
    written through memoryviews of native words: one load or store each,
    never a torn value."""

    BUSY, DISCARD, HDR = 1 << 31, 1 << 30, 8

    def __init__(self, map_fd: int, size: int):
        import mmap

        page = mmap.PAGESIZE
        if size <= 0 or size & (size - 1) or size % page:
            raise ValueError(f"unexpected ring buffer size {size}")
        self.size, self.mask, self.page = size, size - 1, page
        self._cons_map = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._data_map = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._cons = memoryview(self._cons_map).cast("Q")
        self._words = memoryview(self._data_map).cast("I")
        self._prod = memoryview(self._data_map).cast("Q")

    def consume(self, handle: Callable[[bytes], None]) -> int:
        n = 0
        cons = self._cons[0]
        while cons < self._prod[0]:
            off = self.page + (cons & self.mask)
            length = self._words[off // 4]
            if length & self.BUSY:
                break                     # reserved, not yet committed
            size = length & ~(self.BUSY | self.DISCARD)
            if not length & self.DISCARD:
                handle(self._data_map[off + self.HDR:off + self.HDR + size])
                n += 1
            cons += (size + self.HDR + 7) & ~7
            self._cons[0] = cons
        return n

    def close(self) -> None:
        for view in (self._cons, self._words, self._prod):
            view.release()
        self._cons_map.close()
        self._data_map.close()


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


class RecorderProbes:
    """The loaded recorder program. Use as a context manager.

    Compiled, loaded and attached by a short-lived child process
    (recorder_loader.py), which hands over the descriptors and exits: this
    process never loads bcc or LLVM, so a recorder that runs for days stays
    small (the compile's peak is the child's, for a few seconds)."""

    def __init__(self, config: Optional[RecorderConfig] = None):
        self.config = config or RecorderConfig()
        self.config.validate()
        self._fds: Dict[str, int] = {}
        self._ring: Optional[RecRing] = None
        self._sink: Optional[Callable[[RecEvent], None]] = None
        self.boot_offset_ns = 0
        self.timings = {}
        self.file_tracepoints: List[str] = []     # the file probes attached (tracepoint names)
        self.attached: List[str] = []              # every tracepoint attached
        self._ncpus = bpf_sys.possible_cpus()

    @property
    def is_open(self) -> bool:
        return self._ring is not None

    def open(self) -> "RecorderProbes":
        import json
        import socket
        import subprocess
        import sys
        from dataclasses import asdict

        t0 = time.monotonic()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            child = subprocess.Popen([sys.executable, "-m", "pyimpact.collect.recorder_loader", str(theirs.fileno())],
                                     pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
            theirs.close()
            mine.sendall(json.dumps({"config": asdict(self.config)}).encode())
            mine.settimeout(300)
            try:
                msg, fds, _flags, _addr = socket.recv_fds(mine, 1 << 16, 64)
            except OSError as err:
                msg, fds = b"", []
                why = str(err)
            else:
                why = "it exited without an answer"
            child.wait(60)
        finally:
            mine.close()
            if not theirs._closed:
                theirs.close()
        reply = json.loads(msg.decode()) if msg else {"ok": False, "message": f"the probe loader failed ({why})",
                                                      "hint": "run `pyimpact record` again; see its stderr"}
        if not reply.get("ok"):
            for fd in fds:
                os.close(fd)
            cls = {2: UsageError, 4: NotPermitted}.get(reply.get("exit_code"), BPFUnavailable)
            raise cls(reply.get("message", "the recorder probes could not be loaded"), reply.get("hint", ""))
        self._fds = dict(zip(reply["fds"], fds))
        self.file_tracepoints = reply.get("file_tracepoints", [])
        self.attached = [n[3:] for n in reply["fds"] if n.startswith("tp:")]
        try:
            self._ring = RecRing(self._fds["rec_events"], int(self.config.ringbuf_pages) * _page_size())
        except (KeyError, ValueError, OSError) as err:
            self.close()
            raise BPFUnavailable(f"could not map the recorder's ring buffer ({err})", "") from None
        self.boot_offset_ns = _boot_offset_ns()
        self.timings["open_s"] = time.monotonic() - t0
        self.timings["loader_peak_rss_kb"] = reply.get("peak_rss_kb", 0)
        return self

    def close(self) -> None:
        """Detach: closing an attachment's descriptor (the last one: the
        loader is gone) detaches its program; raw tracepoints first, they
        detach at once, classic ones wait for an RCU grace period."""
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        fds, self._fds = self._fds, {}
        for name in sorted(fds, key=lambda n: (not n.startswith("tp:sched_process_fork"), n)):
            try:
                os.close(fds[name])
            except OSError:
                pass

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
        time.sleep(max(0, int(timeout_ms)) / 1000)
        self.drain(sink)

    def drain(self, sink: Callable[[RecEvent], None]) -> None:
        self._sink = sink
        if self._ring is not None:
            self._ring.consume(self._on_record)

    def _percpu_total(self, name: str) -> int:
        fd = self._fds.get(name)
        raw = _map_lookup(fd, (0).to_bytes(4, "little"), 8 * self._ncpus) if fd is not None else None
        return sum(int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)) if raw else 0

    def lost(self) -> int:
        """Records the ring buffer had no room for."""
        return self._percpu_total("rec_lost")

    def signals_coalesced(self) -> int:
        """Signals not sent one by one (beyond the first few a second of one
        sender, target and signal): counted here, and carried as ``repeats``
        by the next one of the same kind that is sent."""
        return self._percpu_total("rec_sig_coalesced")

    def _on_record(self, raw: bytes) -> None:
        size = len(raw)
        if size < EVENT_SIZE or self._sink is None:
            return
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
