"""The kernel probes: build from package resources, load, attach, read, detach.

Stages kept apart as cilium/ebpf does: `ProbeConfig` (validated settings) ->
`KernelProbes.open()` (compile, load, attach, fill the traced map) -> reads
(`poll`, `inflight`, `syscall_stats`, `block_inflight`, `lost`) -> `close()`
(detach). `KernelProbes` is a context manager, so every exit path detaches.

Events arrive through the BPF ring buffer and are kept as raw 88-byte records in
one bytearray; `pyimpact.timeline` turns them into the timeline DataFrame in one
vectorised pass. Python never decodes events one by one on the hot path.
"""
from __future__ import annotations

import ctypes
import os
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Iterable

from ..errors import BPFUnavailable, UsageError
from ..syscall_table import syscall_name
from .bpf_env import BPFEnvironment, check_bpf_environment

EVENT_SIZE = 88
EXEC_PATH_LEN = 128
PROBE_SOURCES = ("pyimpact.h", "futex.bpf.c", "syscalls.bpf.c", "lifecycle.bpf.c", "signals.bpf.c", "blockio.bpf.c")
LOST_REASONS = ("ringbuf_full", "map_full")


@dataclass(frozen=True)
class ProbeConfig:
    """Settings that reach the C as -D flags; validated here, never pasted as text."""

    pids: tuple = ()
    trace_all: bool = False
    slow_ns: int = 1_000_000
    ringbuf_pages: int = 1024
    max_threads: int = 16384

    def validate(self) -> None:
        if not self.trace_all and not self.pids:
            raise UsageError("nothing to trace", "give -p PID, or --all for the whole system")
        for pid in self.pids:
            if not isinstance(pid, int) or pid <= 0:
                raise UsageError(f"invalid PID {pid!r}")
        if not (0 <= int(self.slow_ns) <= 3600 * 10**9):
            raise UsageError(f"slow-syscall threshold out of range: {self.slow_ns} ns")
        pages = int(self.ringbuf_pages)
        if pages < 1 or pages > 65536 or pages & (pages - 1):
            raise UsageError(f"ring buffer pages must be a power of two between 1 and 65536, not {pages}")
        if not (256 <= int(self.max_threads) <= 1 << 20):
            raise UsageError(f"max threads out of range: {self.max_threads}")

    def cflags(self) -> list:
        self.validate()
        return [
            f"-DPYI_TRACE_ALL={1 if self.trace_all else 0}",
            f"-DPYI_SLOW_NS={int(self.slow_ns)}ULL",
            f"-DPYI_RINGBUF_PAGES={int(self.ringbuf_pages)}",
            f"-DPYI_MAX_THREADS={int(self.max_threads)}",
        ]


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
        self._bpf = None
        self._raw = bytearray()
        self._exec_paths = []       # (event index, path)
        self._count = 0
        self._callback = None

    # -- stages ---------------------------------------------------------
    def open(self) -> "KernelProbes":
        t0 = time.monotonic()
        self.env = check_bpf_environment()
        from bcc import BPF  # imported late: 50 ms, and absent without bcc

        self.timings["import_s"] = time.monotonic() - t0
        t1 = time.monotonic()
        try:
            self._bpf = BPF(text=probe_source(), cflags=self.config.cflags())
        except Exception as exc:
            raise BPFUnavailable(f"could not load the BPF probes: {str(exc).splitlines()[0]}",
                                 "is BPF permitted here (root, no lockdown, kernel >= 5.8)?") from None
        self.timings["compile_attach_s"] = time.monotonic() - t1
        self.clock_offset_ns = clock_offset_ns()
        for pid in self.config.pids:
            self.follow(pid)
        self._callback = self._on_event
        self._bpf["events"].open_ring_buffer(self._callback)
        self.timings["open_s"] = time.monotonic() - t0
        return self

    def follow(self, pid: int) -> None:
        """Add a process to the traced map (its future children follow by themselves)."""
        self._bpf["traced"][ctypes.c_uint32(pid)] = ctypes.c_uint8(1)

    def close(self) -> None:
        """Detach every probe. Safe to call twice."""
        if self._bpf is None:
            return
        t0 = time.monotonic()
        bpf, self._bpf = self._bpf, None
        bpf.cleanup()
        self.timings["detach_s"] = time.monotonic() - t0

    def __enter__(self) -> "KernelProbes":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- events ---------------------------------------------------------
    def _on_event(self, _ctx, data, size) -> None:
        record = ctypes.string_at(data, size)
        if size > EVENT_SIZE:
            path = record[EVENT_SIZE:].split(b"\0", 1)[0]
            self._exec_paths.append((self._count, path.decode("utf-8", "replace")))
            record = record[:EVENT_SIZE]
        self._raw += record
        self._count += 1

    def poll(self, timeout_ms: int = 100) -> None:
        """Wait up to timeout_ms for events and take what has arrived."""
        self._bpf.ring_buffer_poll(timeout_ms)

    def drain(self) -> None:
        """Take every event already in the ring buffer, without waiting."""
        self._bpf.ring_buffer_consume()

    @property
    def event_count(self) -> int:
        return self._count

    def raw_events(self) -> tuple:
        """(bytes of the 88-byte records, [(index, exec path)])."""
        return bytes(self._raw), list(self._exec_paths)

    # -- maps -----------------------------------------------------------
    def lost(self) -> dict:
        """Events and records lost in the kernel, by reason, summed over CPUs."""
        table = self._bpf["lost"]
        return {reason: int(sum(table[ctypes.c_int(i)])) for i, reason in enumerate(LOST_REASONS)}

    def _wall(self, mono_ns: int) -> int:
        return mono_ns + self.clock_offset_ns

    def _tgid_of(self, tid: int) -> int:
        try:
            with open(f"/proc/{tid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"Tgid:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return tid

    def inflight(self) -> list:
        """Per thread, the syscall it is in now (entries with ts 0 are idle)."""
        out = []
        for key, v in self._bpf["inflight"].items():
            if v.ts == 0:
                continue
            tid = key.value
            out.append(InflightSyscall(pid=self._tgid_of(tid), tid=tid, nr=v.nr, syscall=syscall_name(v.nr),
                                       since_ns=self._wall(v.ts), args=[int(a) for a in v.args]))
        return out

    def syscall_stats(self) -> list:
        out = []
        for key, v in self._bpf["syscall_stats"].items():
            out.append(SyscallStat(pid=v.tgid, tid=key.tid, nr=key.nr, syscall=syscall_name(key.nr),
                                   count=v.count, total_ns=v.total_ns, max_ns=v.max_ns,
                                   hist_log2=[int(h) for h in v.hist]))
        return out

    def block_inflight(self) -> list:
        out = []
        for key, v in self._bpf["block_inflight"].items():
            out.append(BlockRequest(
                pid=v.tgid, tid=v.tid, comm=bytes(v.comm).split(b"\0", 1)[0].decode("utf-8", "replace"),
                dev=dev_name(key.dev), sector=key.sector, bytes=v.bytes,
                rwbs=int(v.rwbs).to_bytes(8, "little").split(b"\0", 1)[0].decode("ascii", "replace"),
                queued_ns=self._wall(v.queued), issued_ns=self._wall(v.issued) if v.issued else 0))
        return out


def open_probes(pids: Iterable[int] = (), trace_all: bool = False, **options) -> KernelProbes:
    """Convenience: build a config and open the probes (caller closes)."""
    return KernelProbes(ProbeConfig(pids=tuple(pids), trace_all=trace_all, **options)).open()


def running_as_root() -> bool:
    return os.geteuid() == 0
