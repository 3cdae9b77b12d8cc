"""The kernel probes: build from package resources, load, attach, read, detach.

Stages kept apart as cilium/ebpf does: `ProbeConfig` (validated settings) ->
`KernelProbes.open()` (compile or take the compiled image from probe_cache.py,
load and attach it with bpf_loaded.py, fill the traced map) -> reads
(`poll`, `inflight`, `syscall_stats`, `block_inflight`, `lost`) -> `close()`
(detach). `KernelProbes` is a context manager, so every exit path detaches.

Events arrive through the BPF ring buffer and are kept as raw 88-byte records in
one bytearray; `pyimpact.timeline` turns them into the timeline DataFrame in one
vectorised pass. Python never decodes events one by one on the hot path: the
ring buffer is read through its own mmap (`RingReader`, what libbpf does in C),
runs of fixed-size records are copied in one numpy step, and the reader wakes
on a timer rather than once per event (frequent kinds are submitted with
BPF_RB_NO_WAKEUP, see probes/pyimpact.h).
"""
from __future__ import annotations

import ctypes
import dataclasses
import mmap
import os
import platform
import select
import struct
import threading
import time
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from ..errors import BPFUnavailable, UsageError
from ..syscall_table import bpf_defines, syscall_name
from ..event_layout import EVENT_DTYPE
from .bpf_env import BPFEnvironment, check_bpf_environment
from . import blockacct, bpf_sys, tp_btf
from .bpf_image import compile_image
from .bpf_loaded import LoadedProbes
from .probe_cache import ProbeCache, cache_key

#: the syscall programs loaded as tp_btf (syscalls.bpf.c), by function name
TP_BTF_FUNCS = {"pyi_tp_sys_enter": "sys_enter", "pyi_tp_sys_exit": "sys_exit"}

EVENT_SIZE = EVENT_DTYPE.itemsize      # struct pyi_event (probes/pyimpact.h)
PROBE_SOURCES = ("pyimpact.h", "futex.bpf.c", "syscalls.bpf.c", "lifecycle.bpf.c", "signals.bpf.c", "blockio.bpf.c")
#: the kernel's lost counters (probes/pyimpact.h PYI_LOST_*), by index
LOST_REASONS = ("ringbuf_full", "map_full", "block_unseen")
POLL_MAX_MS = 100           # the longest the reader sleeps between two reads of the ring buffer
POLL_BUSY_MS = 10           # ... once a read found the buffer more than 1/8 full
DRAIN_DEADLINE_S = 1.0      # the final drain stops here; what is left is counted as lost ("undrained")


_FENCE_LOCKS = (threading.Lock(), threading.Lock())


def _fence_weak() -> None:
    """A full memory barrier from Python, for weakly ordered CPUs (arm64).

    The ring buffer protocol needs the load of producer_pos ordered before the
    loads of the records, and those before the store of consumer_pos (libbpf
    uses smp_load_acquire / smp_store_release). Python has no fence, but a
    lock's acquire and release are atomic operations with acquire and release
    semantics (glibc: LDAXR/CASA and STLR on arm64): release, then acquire of
    a second lock, keeps every access before it ahead of every access after
    it. About 0.2 us; not needed on x86, whose loads and stores are not
    reordered this way (TSO). Not yet run on real arm64 hardware."""
    a, b = _FENCE_LOCKS
    a.acquire()
    a.release()
    b.acquire()
    b.release()


def _fence_none() -> None:
    """x86 (TSO): loads are not reordered with loads, nor stores with earlier loads."""


_fence = _fence_none if platform.machine() in ("x86_64", "amd64", "i686") else _fence_weak


class RingReader:
    """Reads a BPF ring buffer map through mmap, as libbpf does, but in bulk.

    Layout (kernel/bpf/ringbuf.c): page 0 holds consumer_pos (read-write for
    us), page 1 producer_pos (read-only), then the data area, mapped twice in a
    row so that a record wrapping at the end reads as one piece. Each record is
    an 8-byte header (u32 length with BUSY and DISCARD flags, u32 page offset)
    and its data, padded to 8 bytes. Runs of plain 88-byte events (the common
    case) are checked and copied with one numpy operation; anything else (an
    exec event with its path, a discarded or not yet committed record) goes
    through the per-record path."""

    BUSY = 1 << 31
    DISCARD = 1 << 30
    HDR = 8
    STRIDE = EVENT_SIZE + 8

    def __init__(self, map_fd: int, size: int):
        import numpy as np

        self._np = np
        page = mmap.PAGESIZE
        if size <= 0 or size & (size - 1) or size % page:
            raise ValueError(f"unexpected ring buffer size {size}")
        self.size = size
        self.mask = size - 1
        self.base = page        # the data area's offset inside self.data
        self.cons = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self.data = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        # The two positions are read and written as whole aligned 64-bit words
        # (numpy scalar access is one load or store). struct.pack_into("<Q")
        # would write byte by byte: the kernel could then see a torn, much
        # smaller consumer_pos and refuse reservations as if the buffer were full.
        self.cons_pos = np.frombuffer(self.cons, dtype=np.uint64, count=1, offset=0)
        self.prod_pos = np.frombuffer(self.data, dtype=np.uint64, count=1, offset=0)
        self.epoll = select.epoll()
        self.epoll.register(map_fd, select.EPOLLIN)
        self.rec_dtype = np.dtype([("len", "<u4"), ("pg_off", "<u4"), ("ev", f"V{EVENT_SIZE}")])
        self.lock = threading.Lock()

    def wait(self, timeout_ms: int) -> None:
        """Sleep until the kernel wakes us (a rare event) or timeout_ms pass."""
        self.epoll.poll(max(0, timeout_ms) / 1000.0)

    def consume(self, sink) -> int:
        """Take every committed record, in order: runs of 88-byte events go to
        sink.bulk(bytes, count), any other record to sink.one(record). Returns
        the number of records taken."""
        with self.lock:
            return self._consume(sink)

    def _consume(self, sink) -> int:
        np = self._np
        cons = int(self.cons_pos[0])
        prod = int(self.prod_pos[0])      # then the records: x86 keeps loads in order
        _fence()                          # ... arm64 does not: order them explicitly
        taken = 0
        while cons < prod:
            off = self.base + (cons & self.mask)
            k = (prod - cons) // self.STRIDE
            if k:
                recs = np.frombuffer(self.data, dtype=self.rec_dtype, count=k, offset=off)
                odd = np.flatnonzero(recs["len"] != EVENT_SIZE)
                m = int(odd[0]) if len(odd) else k
                if m:
                    sink.bulk(recs["ev"][:m].tobytes(), m)
                    cons += m * self.STRIDE
                    taken += m
                    if m == k and cons >= prod:
                        break
                    off = self.base + (cons & self.mask)
            # One record that is not a plain 88-byte event (or a short tail).
            length = struct.unpack_from("<I", self.data, off)[0]
            if length & self.BUSY:
                break       # not committed yet: everything after it waits too
            size = length & ~(self.BUSY | self.DISCARD)
            if not length & self.DISCARD:
                sink.one(self.data[off + self.HDR:off + self.HDR + size])
                taken += 1
            cons += (size + self.HDR + 7) & ~7
        _fence()                          # every read of the records before the store (arm64)
        self.cons_pos[0] = cons           # one 64-bit store, after every read of the records
        return taken

    def pending_bytes(self) -> int:
        """Bytes the kernel has reserved that we have not consumed yet."""
        with self.lock:
            return max(0, int(self.prod_pos[0]) - int(self.cons_pos[0]))

    def close(self) -> None:
        self.cons_pos = self.prod_pos = None     # views must go before their mmap closes
        for res in (self.epoll, self.cons, self.data):
            try:
                res.close()
            except (OSError, ValueError, BufferError):
                pass


@dataclass(frozen=True)
class ProbeConfig:
    """Settings that reach the C as -D flags; validated here, never pasted as text."""

    pids: tuple = ()
    trace_all: bool = False
    slow_ns: int = 1_000_000
    ringbuf_pages: int = 1024
    max_threads: int = 16384
    # The syscall programs as BTF-typed raw tracepoints (tp_btf.py): None =
    # where the kernel and libbpf allow it (KernelProbes decides), False = never.
    tp_btf: bool | None = None
    # Slots of the in-flight array (syscalls.bpf.c); None = flight_slots().
    # Smaller only to make threads share slots (the spill path's tests).
    flight_slots: int | None = None

    def validate(self) -> None:
        if not self.trace_all and not self.pids:
            raise UsageError("nothing to trace", "give -p PID, or --all for the whole system")
        for pid in self.pids:
            if not isinstance(pid, int) or pid <= 0:
                raise UsageError(f"invalid PID {pid!r}", "give the PID as a positive number")
        if not (0 <= int(self.slow_ns) <= 3600 * 10**9):
            raise UsageError(f"slow-syscall threshold out of range: {self.slow_ns} ns",
                             "use --slow-ms between 0 and 3600000")
        pages = int(self.ringbuf_pages)
        if pages < 1 or pages > 65536 or pages & (pages - 1):
            raise UsageError(f"ring buffer pages must be a power of two between 1 and 65536, not {pages}",
                             "use e.g. --buffer-pages 1024")
        if not (256 <= int(self.max_threads) <= 1 << 20):
            raise UsageError(f"max threads out of range: {self.max_threads}", "trace fewer processes at once")
        slots = self.flight_slots
        if slots is not None and (not 1 <= int(slots) <= FLIGHT_SLOTS_MAX or int(slots) & (int(slots) - 1)):
            raise UsageError(f"in-flight slots must be a power of two up to {FLIGHT_SLOTS_MAX}, not {slots}",
                             "leave flight_slots unset")

    def cflags(self) -> list:
        self.validate()
        return [
            f"-DPYI_TRACE_ALL={1 if self.trace_all else 0}",
            f"-DPYI_SLOW_NS={int(self.slow_ns)}ULL",
            f"-DPYI_RINGBUF_PAGES={int(self.ringbuf_pages)}",
            f"-DPYI_MAX_THREADS={int(self.max_threads)}",
            f"-DPYI_PID_WORDS={pid_words()}",
            f"-DPYI_FLIGHT_SLOTS={int(self.flight_slots or flight_slots())}",
            f"-DPYI_TP_BTF={1 if self.tp_btf else 0}",
        ] + bpf_defines()


PID_MAX_LIMIT = 1 << 22     # the kernel's ceiling for pid_max on 64-bit


def pid_words() -> int:
    """8-byte words of the traced-process byte array (probes/pyimpact.h): one
    byte per possible tgid, pid_max as it is now (4 MiB at the 64-bit
    ceiling); tgids above it, if pid_max is raised later, are looked up in
    the traced hash instead."""
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            pid_max = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pid_max = PID_MAX_LIMIT
    return (max(4096, min(PID_MAX_LIMIT, pid_max)) + 7) // 8


#: struct pyi_flight (probes/pyimpact.h), one in-flight slot.
FLIGHT_DTYPE = np.dtype([("id", "=u8"), ("nr", "=u4"), ("_pad", "=u4"), ("ts", "=u8"), ("args", "=u8", (6,)),
                         ("stat", "=u4", (64,))])
FLIGHT_SLOTS_MAX = 1 << 16  # 20.5 MiB of in-flight slots at most


def flight_slots() -> int:
    """Slots of the per-thread in-flight array (probes/syscalls.bpf.c): a
    power of two covering pid_max when it is at most 65536 (every thread has
    a slot of its own), else 65536 (two threads whose tids are equal modulo
    that share one: the second keeps its call in a hash instead, slower,
    never lost). 328 bytes a slot."""
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            pid_max = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pid_max = PID_MAX_LIMIT
    n = 4096
    while n < min(pid_max, FLIGHT_SLOTS_MAX):
        n *= 2
    return n


def probe_source() -> str:
    """The BPF C program: the shared header, then one file per event family,
    read from the installed package (never from the current directory)."""
    base = resources.files("pyimpact.probes")
    return "\n".join((base / name).read_text() for name in PROBE_SOURCES)


def clock_offset_ns() -> int:
    """Wall clock minus CLOCK_MONOTONIC (bpf_ktime_get_ns), from the tightest of
    a few paired reads."""
    best = None
    for _ in range(5):
        m0 = time.monotonic_ns()
        w = time.time_ns()
        m1 = time.monotonic_ns()
        gap = m1 - m0
        if best is None or gap < best[0]:
            best = (gap, w - (m0 + m1) // 2)
    return best[1]


@dataclass
class InflightSyscall:
    """The syscall a thread is in at the moment the map was read."""

    pid: int
    tid: int
    nr: int
    syscall: str
    since_ns: int          # wall clock
    args: list = field(default_factory=list)


@dataclass
class SyscallStat:
    pid: int
    tid: int
    nr: int
    syscall: str
    count: int
    total_ns: int
    max_ns: int
    hist_log2: list       # hist_log2[i]: calls with latency in [2^i, 2^(i+1)) ns
    errors: int = 0       # calls that returned an error
    last_err: int = 0     # the last error (-errno), 0 none
    last_err_arg0: int = 0  # the first argument of that failed call
    ret_sum: int = 0      # sum of positive returns (bytes, for the read/write family)


@dataclass
class BlockRequest:
    """A block request queued by a followed process and not yet completed."""

    pid: int
    tid: int
    comm: str
    dev: str
    sector: int
    bytes: int
    rwbs: str
    queued_ns: int         # wall clock
    issued_ns: int         # wall clock, 0 if not yet issued to the driver


def dev_name(dev: int) -> str:
    """Kernel-internal dev_t (major << 20 | minor) as 'major:minor'."""
    return f"{dev >> 20}:{dev & 0xFFFFF}"


class KernelProbes:
    """Loaded and attached probes for one trace. Use as a context manager."""

    def __init__(self, config: ProbeConfig):
        config.validate()
        self.config = config
        self.env: BPFEnvironment | None = None
        self.clock_offset_ns = 0
        self.timings = {}
        self._probes = None         # LoadedProbes, once open
        self._image = None          # the ProbeImage they were loaded from
        self.probe_cache_note = ""  # why the compiled-probe cache was not used, when it was not
        # Raw records as a list of chunks (one per read of the ring buffer),
        # joined once by raw_events(): a growing bytearray would be moved by
        # realloc again and again, leaving the heap fragmented (RSS grew about
        # twice as fast as the data on a training job's trace).
        self._chunks = []
        self._tail = bytearray()    # records taken one at a time (fallback path, exec events)
        self._exec_paths = []       # (event index, path)
        self._count = 0
        self._taken = 0             # events handed on by take_events() (a streamed trace)
        self._reader = None
        self._busy = False
        self._undrained = 0         # records left in the ring buffer when the final drain gave up
        self._block_read = None     # (monotonic ns, {dev: requests in the driver}) from note_block_devices()
        self._block_unseen_end = 0  # requests left in block_inflight that completed unseen (blockacct)
        self._closing = None        # the thread closing the classic tracepoints after stop()
        self._traced_bytes = None   # mmap of the traced_bytes map
        self._traced_limit = 0
        self.syscall_probe_kind = None  # "tp_btf" or "raw_tracepoint", once open
        self.syscall_probe_note = None  # why tp_btf was not used, when it was tried and refused

    # -- stages ---------------------------------------------------------
    def open(self) -> "KernelProbes":
        t0 = time.monotonic()
        self.env = check_bpf_environment()
        self.timings["import_s"] = time.monotonic() - t0
        t1 = time.monotonic()
        config = self.config
        # tp_btf where the kernel has BTF at all (the verifier may still refuse: then raw tracepoints).
        want_btf = config.tp_btf is not False and os.path.exists(tp_btf.VMLINUX_BTF)
        if config.tp_btf is not False and not want_btf:
            self.syscall_probe_note = f"{tp_btf.VMLINUX_BTF} is missing (kernel built without BTF)"
        cache = ProbeCache()
        try:
            try:
                self._probes = self._load(cache, dataclasses.replace(config, tp_btf=want_btf))
            except tp_btf.TpBtfUnavailable as why:
                # tp_btf refused here (no BTF, an older verifier): the syscall programs as raw tracepoints.
                self.syscall_probe_note = str(why)
                self._probes = self._load(cache, dataclasses.replace(config, tp_btf=False))
        except BPFUnavailable:
            raise
        except Exception as exc:
            raise BPFUnavailable(f"could not load the BPF probes: {str(exc).splitlines()[0]}",
                                 "is BPF permitted here (root, no lockdown, kernel >= 5.8)?") from None
        finally:
            cache.close()
        self.probe_cache_note = cache.note
        self.syscall_probe_kind = "tp_btf" if any(p.kind == "tp_btf" for p in self._image.progs) else "raw_tracepoint"
        self.timings["syscall_tp_btf"] = 1.0 if self.syscall_probe_kind == "tp_btf" else 0.0   # 1: tp_btf, 0: raw
        self.timings["compile_attach_s"] = time.monotonic() - t1
        try:
            # From here on the probes are attached: any later failure detaches them.
            self.clock_offset_ns = clock_offset_ns()
            self._open_traced_bytes()
            for pid in self.config.pids:
                self.follow(pid)
            self._open_reader()
        except BaseException:
            self.close()
            raise
        self.timings["open_s"] = time.monotonic() - t0
        return self

    def _load(self, cache: ProbeCache, config: ProbeConfig) -> LoadedProbes:
        """The probes for ``config``, loaded from the cache's image or
        compiled (and kept for the next start). For tp_btf, the kernel's BTF
        facts come with a kept image, or are looked up (libbpf parses the
        kernel's BTF) in a thread while bcc compiles. The block structures'
        offsets go into pyi_offsets before any pid is followed: no request
        can match before they are in."""
        source = probe_source().encode()
        cflags = config.cflags()
        key = cache_key(source, cflags, self.env.bcc_version, self.env.tracefs)
        image = cache.get(key)
        hit = image is not None
        facts = image.kernel_facts if hit and config.tp_btf else None
        ids = _BtfIds(TP_BTF_FUNCS.values()) if config.tp_btf and facts is None else None

        def compiled():
            t = time.monotonic()
            fresh = compile_image(source, cflags, TP_BTF_FUNCS)
            self.timings["compile_s"] = time.monotonic() - t
            return fresh

        if not hit:
            image = compiled()
        if ids is not None:
            facts = ids.result()      # raises TpBtfUnavailable: the caller falls back to raw tracepoints
        image = dataclasses.replace(image, kernel_facts=facts)
        btf_ids = facts["ids"] if facts else None
        try:
            probes = LoadedProbes.load(image, btf_ids, self.env.tracefs)
        except (bpf_sys.BpfSysError, OSError) as err:
            if not hit:
                raise
            # Kept for this kernel and source, yet refused: compile afresh.
            cache.drop(key)
            cache.note = f"a kept image failed to load ({err}); compiled again"
            hit = False
            image = dataclasses.replace(compiled(), kernel_facts=facts)
            probes = LoadedProbes.load(image, btf_ids, self.env.tracefs)
        if not hit or ids is not None:     # new, or kept without the BTF facts it now has
            cache.put(key, image)
        self.timings["probe_cache_hit"] = 1.0 if hit else 0.0
        self._image = image
        if facts:
            try:
                table = probes.table("pyi_offsets")
                for i, off in enumerate(facts["offsets"]):
                    table[ctypes.c_int(i)] = ctypes.c_uint32(off)
            except BaseException:
                probes.close()
                raise
        return probes

    def _open_traced_bytes(self) -> None:
        """Map the traced-process byte array (probes/pyimpact.h) writable, so
        that follow() stores one byte, never the 8-byte word around it (the
        kernel may be storing a neighbour's byte at that moment)."""
        if self.config.trace_all:
            return
        table = self._probes.table("traced_bytes")
        size = -(-int(table.max_entries) * 8 // mmap.PAGESIZE) * mmap.PAGESIZE
        self._traced_bytes = mmap.mmap(table.get_fd(), size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._traced_limit = int(table.max_entries) * 8

    def follow(self, pid: int) -> None:
        """Add a process to the traced map and byte array (its future children
        follow by themselves)."""
        self._probes.table("traced")[ctypes.c_uint32(pid)] = ctypes.c_uint8(1)
        if self._traced_bytes is not None and 0 <= pid < self._traced_limit:
            self._traced_bytes[pid] = 1

    def close(self) -> None:
        """Detach every probe. Safe to call twice."""
        if self._probes is None:
            return
        t0 = time.monotonic()
        probes, self._probes = self._probes, None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._closing is not None:
            self._closing.join()
            self._closing = None
        if self._traced_bytes is not None:
            self._traced_bytes.close()
            self._traced_bytes = None
        probes.close()      # the raw links first (every syscall pays for them), then the perf events at once
        self.timings["detach_s"] = time.monotonic() - t0

    def stop(self) -> None:
        """Stop watching now, without waiting: the raw syscall tracepoints go
        at once (well under a millisecond; until then every syscall on the
        machine pays for them, and a busy target keeps filling the ring
        buffer). With the kernel's BTF every probe is such a link; without
        it the rare ones are classic tracepoints, closed by a background
        thread (their RCU grace periods overlap with decoding and saving).
        Maps stay readable until close(), which joins that thread. Safe to
        call twice."""
        if self._probes is None or self._closing is not None:
            return
        t0 = time.monotonic()
        self._probes.detach_links()
        self.timings["stop_raw_s"] = time.monotonic() - t0
        self._closing = threading.Thread(target=self._probes.close_perf_events, name="pyimpact-detach",
                                         daemon=True)
        self._closing.start()

    def __enter__(self) -> "KernelProbes":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- events ---------------------------------------------------------
    def _open_reader(self) -> None:
        """Read the ring buffer through its own mmap (what libbpf does in C)."""
        table = self._probes.table("events")
        try:
            self._reader = RingReader(table.get_fd(), int(table.max_entries))
        except (OSError, ValueError) as err:
            raise BPFUnavailable(f"could not map the BPF ring buffer: {err}",
                                 "kernel >= 5.8 is needed for BPF ring buffers") from None

    # sink for RingReader
    def bulk(self, data: bytes, count: int) -> None:
        if self._tail:
            self._flush_tail()
        self._chunks.append(data)
        self._count += count

    def _flush_tail(self) -> None:
        self._chunks.append(bytes(self._tail))
        self._tail = bytearray()

    def one(self, record) -> None:
        record = bytes(record)
        self._on_record(record, len(record))

    def _on_record(self, record: bytes, size: int) -> None:
        if size > EVENT_SIZE:
            path = record[EVENT_SIZE:].split(b"\0", 1)[0]
            self._exec_paths.append((self._count, path.decode("utf-8", "backslashreplace")))
            record = record[:EVENT_SIZE]
        self._tail += record
        self._count += 1
        if len(self._tail) >= 1 << 20:
            self._flush_tail()

    def poll(self, timeout_ms: int = 100) -> None:
        """Wait up to timeout_ms (at most POLL_MAX_MS) for events and take what
        has arrived. Frequent kinds do not wake the reader, so this may return
        only when the time is up, with everything since the last call."""
        timeout_ms = min(int(timeout_ms), POLL_MAX_MS)
        if self._reader is None:
            return
        if self._busy:
            # The last read found the buffer filling up: come back sooner.
            timeout_ms = min(timeout_ms, POLL_BUSY_MS)
        self._reader.wait(timeout_ms)
        taken = self._reader.consume(self)
        self._busy = taken * RingReader.STRIDE >= self._reader.size // 8

    def drain(self, deadline_s: float | None = None) -> int:
        """Take every event already in the ring buffer, without waiting.

        With ``deadline_s``: keep taking until the buffer is empty or the
        deadline passes (records keep coming while probes are attached);
        what is still there then is counted in lost()["undrained"], never
        dropped silently. Returns that count."""
        if self._reader is None:
            return 0
        self._reader.consume(self)
        if deadline_s is None:
            return 0
        end = time.monotonic() + deadline_s
        while self._reader.pending_bytes() and time.monotonic() < end:
            if not self._reader.consume(self):
                time.sleep(0.001)     # a record reserved but not committed yet
        left = self._reader.pending_bytes()
        # Records are at least STRIDE bytes (exec events are longer): an upper bound.
        self._undrained = -(-left // RingReader.STRIDE)
        return self._undrained

    @property
    def event_count(self) -> int:
        return self._count

    def raw_events(self) -> tuple:
        """(bytes of the 88-byte records, [(index, exec path)]) held now: all
        received, less what take_events() handed on (indices count from there)."""
        if self._tail:
            self._flush_tail()
        raw = b"".join(self._chunks)
        self._chunks = [raw] if raw else []
        return raw, [(i - self._taken, path) for i, path in self._exec_paths]

    @property
    def held_events(self) -> int:
        """Events received and not yet handed on by take_events()."""
        return self._count - self._taken

    def take_events(self) -> tuple:
        """What raw_events() gives, and forget it: a trace streamed to disk
        hands the events on in batches and keeps none (event_count still
        counts every event received)."""
        raw, paths = self.raw_events()
        self._chunks = []
        self._exec_paths = []
        self._taken = self._count
        return raw, paths

    # -- maps -----------------------------------------------------------
    def lost(self) -> dict:
        """Events and records lost in the kernel, by reason, summed over CPUs.

        kernel_skipped: runs of our programs the kernel skipped because another
        tracing program was already running on that CPU (an interrupt, e.g. a
        block completion, arriving inside a probe). Each skip may have been an
        event; the kernel counts them per program (recursion_misses).
        block_unseen: block requests whose completion no probe saw (counted
        in the kernel when the next bio at that sector finds the entry, and
        by block_inflight() for what is left at the end)."""
        table = self._probes.table("lost")
        counts = {reason: int(sum(table[ctypes.c_int(i)])) for i, reason in enumerate(LOST_REASONS)}
        counts["block_unseen"] += self._block_unseen_end
        counts["kernel_skipped"] = self._recursion_misses()
        counts["undrained"] = self._undrained
        return counts

    def futex_idle_wakes(self) -> int:
        """FUTEX_WAKE calls that woke nobody: counted in the kernel, not sent as events."""
        return int(sum(self._probes.table("futex_idle_wakes")[ctypes.c_int(0)]))

    def _recursion_misses(self) -> int:
        import os

        import psutil

        from . import procfs
        total = 0
        for fd in list(self._probes.prog_fds if self._probes is not None else []):
            try:
                info = procfs.read(f"/proc/self/fdinfo/{fd}", os.getpid())
                for line in info.split(b"\n"):
                    if line.startswith(b"recursion_misses:"):
                        total += int(line.split()[1])
            except (psutil.Error, OSError, ValueError):
                continue
        return total

    def _wall(self, mono_ns: int) -> int:
        return mono_ns + self.clock_offset_ns

    def inflight(self) -> list:
        """Per thread, the syscall it is in now: its slot of the in-flight
        array (read through the map's mmap, one copy) or its spill entry
        (syscalls.bpf.c). A slot with ts 0 holds no call."""
        latest = {}
        for tid, tgid, nr, ts, args in self._flight_slots():
            if ts and tid and (tid not in latest or ts > latest[tid][0]):
                latest[tid] = (ts, nr, tgid, args)
        for key, v in self._probes.table("inflight_spill").items():
            ts, tid = int(v.ts), int(key.value)
            if ts and (tid not in latest or ts > latest[tid][0]):
                latest[tid] = (ts, int(v.nr), int(v.id) >> 32, [int(a) for a in v.args])
        return [InflightSyscall(pid=tgid, tid=tid, nr=nr, syscall=syscall_name(nr), since_ns=self._wall(ts), args=args)
                for tid, (ts, nr, tgid, args) in sorted(latest.items())]

    def _flight_slots(self) -> list:
        """(tid, tgid, nr, ts, args) of the in-flight slots holding a call
        (the slot's id is its owner's tgid << 32 | tid)."""
        table = self._probes.table("inflight")
        n = int(table.max_entries)
        size = -(-n * FLIGHT_DTYPE.itemsize // mmap.PAGESIZE) * mmap.PAGESIZE
        try:
            m = mmap.mmap(table.get_fd(), size, mmap.MAP_SHARED, mmap.PROT_READ)
        except OSError:
            # Not mappable here: one lookup per slot (slow, same answer).
            return [(int(v.id) & 0xFFFFFFFF, int(v.id) >> 32, int(v.nr), int(v.ts), [int(a) for a in v.args])
                    for _, v in table.items() if v.ts and v.id]
        try:
            view = np.frombuffer(m, dtype=FLIGHT_DTYPE, count=n)
            a = view[(view["ts"] != 0) & (view["id"] != 0)].copy()     # the calls only
            del view
        finally:
            m.close()
        return [(int(r["id"]) & 0xFFFFFFFF, int(r["id"]) >> 32, int(r["nr"]), int(r["ts"]), [int(x) for x in r["args"]])
                for r in a]

    def syscall_stats(self) -> list:
        """Per (thread, syscall): the records of the syscall_stats array in use
        (syscalls.bpf.c), read through the map's mmap in one copy. A key is
        in one record; were it in two (stat_index full), they are summed."""
        out = {}
        for v in self._stat_records():
            if not v.count:
                continue
            key = (int(v.tid), int(v.nr))
            row = SyscallStat(pid=int(v.tgid), tid=key[0], nr=key[1], syscall=syscall_name(key[1]),
                              count=int(v.count), total_ns=int(v.total_ns), max_ns=int(v.max_ns),
                              hist_log2=[int(h) for h in v.hist], errors=int(v.errors),
                              last_err=int(v.last_err), last_err_arg0=int(v.last_err_arg0),
                              ret_sum=int(v.ret_sum))
            seen = out.get(key)
            if seen is None:
                out[key] = row
                continue
            seen.count += row.count
            seen.total_ns += row.total_ns
            seen.max_ns = max(seen.max_ns, row.max_ns)
            seen.hist_log2 = [a + b for a, b in zip(seen.hist_log2, row.hist_log2)]
            seen.errors += row.errors
            seen.ret_sum += row.ret_sum
            if row.last_err:
                seen.last_err, seen.last_err_arg0 = row.last_err, row.last_err_arg0
        return list(out.values())

    def _stat_records(self) -> list:
        """The syscall_stats records taken so far (stat_next of them), as
        ctypes structs of the map's value type."""
        table = self._probes.table("syscall_stats")
        taken = self._probes.table("stat_next")[ctypes.c_int(0)]
        n = min(int(getattr(taken, "value", taken)), int(table.max_entries))
        if n <= 0:
            return []
        leaf = table.leaf_type()
        size = -(-n * ctypes.sizeof(leaf) // mmap.PAGESIZE) * mmap.PAGESIZE
        try:
            m = mmap.mmap(table.get_fd(), size, mmap.MAP_SHARED, mmap.PROT_READ)
        except OSError:
            # Not mappable here: one lookup per record (slower, same answer).
            return [table[ctypes.c_uint32(i)] for i in range(n)]
        try:
            return list((leaf * n).from_buffer_copy(m, 0))
        finally:
            m.close()

    def connect_failures(self) -> list:
        """Per thread: connects that failed in the window (refused, timed out,
        unreachable; a non-blocking one's error read back by getsockopt), with
        the address of the last one ("ip:port", "[ip6]:port", "" unknown)."""
        out = []
        try:
            table = self._probes.table("connect_fail")
        except KeyError:
            return out
        for key, v in table.items():
            if not v.count:
                continue
            out.append({"pid": int(v.tgid), "tid": int(key.value), "count": int(v.count),
                        "last_err": int(v.last_err), "addr": sockaddr_words(bytes(v.addr))})
        return out

    def note_block_devices(self) -> None:
        """Read, while the probes still run, how many requests each device
        holding one of our entries has in its driver; block_inflight() then
        tells the entries that may still be in flight from those that
        completed unseen (blockacct)."""
        t = time.monotonic_ns()
        devs = [int(key.dev) for key, _ in self._probes.table("block_inflight").items()]
        self._block_read = (t, blockacct.device_inflight(devs))

    def block_inflight(self) -> list:
        """Block requests queued by a followed process and not completed: the
        ones that may still be in flight. After note_block_devices(), the
        ones that cannot be are counted in lost()["block_unseen"] instead
        (once)."""
        entries = []
        for key, v in self._probes.table("block_inflight").items():
            entries.append(blockacct.Entry(int(key.dev), int(v.queued), int(v.issued), BlockRequest(
                pid=v.tgid, tid=v.tid, comm=bytes(v.comm).split(b"\0", 1)[0].decode("utf-8", "backslashreplace"),
                dev=dev_name(key.dev), sector=key.sector, bytes=v.bytes,
                rwbs=int(v.rwbs).to_bytes(8, "little").split(b"\0", 1)[0].decode("ascii", "replace"),
                queued_ns=self._wall(v.queued), issued_ns=self._wall(v.issued) if v.issued else 0)))
        if self._block_read is not None:
            read_at, counts = self._block_read
            self._block_read = None
            entries, self._block_unseen_end = blockacct.settle(entries, counts, read_at)
        entries.sort(key=lambda e: e.queued_ns)
        return [e.item for e in entries]


class _BtfIds:
    """What the BTF-based programs need (tp_btf.kernel_facts: the syscall
    tracepoints' BTF ids, the block structures' offsets; one parse of the
    kernel's BTF by libbpf, 50-400 ms), looked up in a thread while bcc
    compiles."""

    def __init__(self, tracepoints) -> None:
        self._tps = list(tracepoints)
        self._ids = None
        self._error = None
        self._thread = threading.Thread(target=self._run, name="pyimpact-btf-ids", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._ids = tp_btf.kernel_facts(self._tps)
        except tp_btf.TpBtfUnavailable as err:
            self._error = err
        except Exception as err:  # anything else from ctypes: fall back, and say why
            self._error = tp_btf.TpBtfUnavailable(f"BTF lookup failed: {err}")

    def result(self) -> dict:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._ids


class ProbeOpener:
    """Compile, load and attach the probes in a background thread.

    The compile is one ctypes call into LLVM that releases the GIL, so the
    rest of a command's start-up (importing pandas, the first snapshot) runs
    meanwhile: time to verdict pays for the longer of the two, not the sum.
    ``result()`` returns the open ``KernelProbes`` or raises what opening
    raised; ``discard()`` detaches them when they are not wanted after all."""

    def __init__(self, config: ProbeConfig, snapshot=None) -> None:
        """``snapshot``: a function taking the first snapshot, called as soon
        as the probes are attached (the observation window starts there, while
        the caller may still be importing)."""
        self.config = config
        self._probes = None
        self._error = None
        self._snapshot_fn = snapshot
        self.snapshot = None
        self.snapshot_error = None
        self.attached_mono = None
        self.attached_ns = None
        self._thread = threading.Thread(target=self._run, name="pyimpact-probe-compile", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._probes = KernelProbes(self.config).open()
            self.attached_mono, self.attached_ns = time.monotonic(), time.time_ns()
        except BaseException as err:  # handed to result()
            self._error = err
        if self._snapshot_fn is not None:
            try:
                self.snapshot = self._snapshot_fn()
            except BaseException as err:  # the caller takes it again and reports
                self.snapshot_error = err

    def join(self) -> None:
        self._thread.join()

    def result(self) -> "KernelProbes":
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._probes

    def discard(self) -> None:
        self._thread.join()
        if self._probes is not None:
            self._probes.close()
            self._probes = None


def sockaddr_words(raw: bytes) -> str:
    """A struct sockaddr_in / sockaddr_in6 as "ip:port" / "[ip6]:port" ("" otherwise)."""
    import ipaddress
    import socket as _socket

    if len(raw) < 16:
        return ""
    fam = int.from_bytes(raw[:2], "little")
    port = int.from_bytes(raw[2:4], "big")
    if fam == _socket.AF_INET:
        return f"{ipaddress.IPv4Address(raw[4:8])}:{port}"
    if fam == _socket.AF_INET6 and len(raw) >= 24:
        return f"[{ipaddress.IPv6Address(raw[8:24])}]:{port}"
    return ""
