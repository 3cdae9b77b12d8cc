"""The recorder's own BPF program (probes/recorder.bpf.c): build, load, read, detach.

Why a loader apart from KernelProbes: the trace probes follow a set of
processes and hook every syscall (a raw tracepoint) to aggregate latencies;
the recorder runs for days machine-wide and must not touch syscalls it does
not record, so it is a different, small program attached to rare
tracepoints only. Stages as in probes.py: `RecorderConfig` (validated) ->
`RecorderProbes.open()` (BTF offsets; the compiled image from the
compiled-probe cache, or compiled by a short-lived child,
recorder_loader.py, so this process never maps LLVM; loaded and attached
here, bpf_loaded.py) -> `poll()` -> `close()`; a context manager, so every
exit path detaches.

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
from .bpf_image import ImageError, ProbeImage
from .bpf_loaded import LoadedProbes

KINDS = {1: "fork", 2: "exec", 3: "exit", 4: "signal", 5: "close", 6: "fsync", 7: "rename"}
COMM_LEN, PATH_LEN, DEPTH, NAME_LEN, ARGV_LEN = 16, 256, 8, 64, 512
CLOCK_BOOTTIME = 7
MAX_IMAGE_BYTES = 32 << 20      # the most the loader child may send (probe_cache.MAX_BYTES)


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

    Loaded from the compiled-probe cache (probe_cache.py) like the trace
    probes; on a miss, compiled by a short-lived child process
    (recorder_loader.py), which keeps the image for the next start and
    exits: this process never loads bcc or LLVM, so a recorder that runs
    for days stays small (the compile's peak is the child's, for a few
    seconds)."""

    def __init__(self, config: Optional[RecorderConfig] = None):
        self.config = config or RecorderConfig()
        self.config.validate()
        self._fds: Dict[str, int] = {}          # the maps read here, by name (owned by _loaded)
        self._loaded: Optional[LoadedProbes] = None
        self._ring: Optional[RecRing] = None
        self._sink: Optional[Callable[[RecEvent], None]] = None
        self.boot_offset_ns = 0
        self.timings = {}
        self.file_tracepoints: List[str] = []     # the file probes attached (tracepoint names)
        self.attached: List[str] = []              # every tracepoint attached
        self.probe_cache_note = ""                 # why the compiled-probe cache was not used, when it was not
        self._ncpus = bpf_sys.possible_cpus()

    @property
    def is_open(self) -> bool:
        return self._ring is not None

    def open(self) -> "RecorderProbes":
        """Load and attach the program: from the compiled-probe cache when it
        holds this kernel's and these settings' image (a few bpf(2) calls, no
        bcc in any process), else compiled by the loader child first. An
        image that fails to load is dropped and compiled again."""
        from .bpf_env import check_bpf_environment
        from .btf import XFS_OFFSETS, load_btf, optional_offsets, recorder_offsets
        from .probe_cache import ProbeCache, cache_key

        t0 = time.monotonic()
        env = check_bpf_environment()
        btf = load_btf()
        offsets = recorder_offsets(btf)
        xfs = optional_offsets(XFS_OFFSETS, btf)
        del btf
        switches, self.file_tracepoints = self.config.file_probes(xfs)
        offsets.update(xfs or {k: 0 for k in XFS_OFFSETS})
        cflags = self.config.cflags(offsets, switches)
        source = recorder_source().encode()
        key = cache_key(source, cflags, env.bcc_version, env.tracefs)
        cache = ProbeCache()
        try:
            image = cache.get(key)
            hit = image is not None
            if not hit:
                image = self._compile(cflags, key)
            while True:
                try:
                    loaded = LoadedProbes.load(image, None, env.tracefs)
                    break
                except (bpf_sys.BpfSysError, OSError) as err:
                    if not hit:
                        raise BPFUnavailable(f"could not load the recorder probes: {err}",
                                             "is BPF permitted here (root, no lockdown, kernel >= 5.8)?") from None
                    cache.drop(key)         # kept for this kernel and settings, yet refused: compile afresh
                    cache.note = f"a kept image failed to load ({err}); compiled again"
                    hit = False
                    image = self._compile(cflags, key)
        finally:
            cache.close()
        self.probe_cache_note = cache.note
        self._loaded = loaded
        self.attached = [target.partition(":")[2] or target for target, _ in loaded.links + loaded.perf_events]
        try:
            self._fds = {name: loaded.table(name).map_fd for name in ("rec_events", "rec_lost", "rec_sig_coalesced")}
            self._ring = RecRing(self._fds["rec_events"], int(self.config.ringbuf_pages) * _page_size())
        except (KeyError, ValueError, OSError) as err:
            self.close()
            raise BPFUnavailable(f"could not map the recorder's ring buffer ({err})", "") from None
        self.boot_offset_ns = _boot_offset_ns()
        self.timings["probe_cache_hit"] = 1.0 if hit else 0.0
        self.timings["open_s"] = time.monotonic() - t0
        return self

    def _compile(self, cflags: List[str], key: str) -> ProbeImage:
        """The image compiled by the loader child (recorder_loader.py), which
        also keeps it in the cache for the next start."""
        import json
        import socket
        import subprocess
        import sys

        t0 = time.monotonic()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        data, why = b"", "it exited without an answer"
        try:
            child = subprocess.Popen([sys.executable, "-m", "pyimpact.collect.recorder_loader", str(theirs.fileno())],
                                     pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
            theirs.close()
            try:
                mine.sendall(json.dumps({"cflags": cflags, "key": key}).encode())
                mine.shutdown(socket.SHUT_WR)
                mine.settimeout(300)
                while len(data) <= MAX_IMAGE_BYTES:
                    chunk = mine.recv(1 << 16)
                    if not chunk:
                        break
                    data += chunk
            except OSError as err:
                why = str(err)
            finally:
                child.wait(60)
        finally:
            mine.close()
            if not theirs._closed:
                theirs.close()
        head, _, body = data.partition(b"\n")
        try:
            reply = json.loads(head.decode()) if head else None
        except ValueError:
            reply = None
        if reply is None:
            reply = {"ok": False, "message": f"the probe loader failed ({why})",
                     "hint": "run `pyimpact record` again; see its stderr"}
        if not reply.get("ok"):
            cls = {2: UsageError, 4: NotPermitted}.get(reply.get("exit_code"), BPFUnavailable)
            raise cls(reply.get("message", "the recorder probes could not be compiled"), reply.get("hint", ""))
        try:
            image = ProbeImage.from_bytes(body, key)
        except ImageError as err:
            raise BPFUnavailable(f"the probe loader sent a bad image ({err})",
                                 "run `pyimpact record` again; see its stderr") from None
        self.timings["compile_s"] = time.monotonic() - t0
        self.timings["loader_peak_rss_kb"] = reply.get("peak_rss_kb", 0)
        return image

    def close(self) -> None:
        """Detach (raw tracepoints first, at once; classic ones wait for RCU
        grace periods, bpf_loaded.py), then free the programs and maps. Safe
        to call twice."""
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        self._fds = {}
        loaded, self._loaded = self._loaded, None
        if loaded is not None:
            loaded.close()

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
