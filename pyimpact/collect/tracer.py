"""One observation run: snapshot, probes for a window, snapshot, Recording.

`Tracer` ties the collectors together for `trace`, `diagnose` and
`kill-preview`. It is a context manager: the probes are detached on every exit
path, and `recording()` can be called (and the answer printed) before the slow
part of detaching runs.

With `use_bpf=False` (or when the probes are unavailable and the caller allows
degrading) the same run happens on /proc alone: the Recording then has the two
snapshots, an empty timeline, and an `unavailable` entry saying why.

With a ``sink`` (`trace -o X.parquet`), the events are not kept: every
``sink.batch_events`` received (and the rest at the end) go to
``sink.add(raw, exec_paths, clock_offset_ns)`` while the trace runs, and the
Recording's timeline is ``Deferred`` to ``sink.load`` (read back only if
someone asks).  Memory then stays bounded however long the trace, and the
stop has one batch to decode, not the whole trace.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import psutil

from ..errors import NotPermitted, ProcessGone, PyimpactError
from ..recording import PROBES_WHAT, Deferred, Recording, base_metadata
from ..recording import BLOCK_COLUMNS, INFLIGHT_COLUMNS, STAT_COLUMNS, deferred_frame
from ..timeline import decode_events
from . import procfs
from .probes import DRAIN_DEADLINE_S, KernelProbes, ProbeConfig


@dataclass
class TraceRequest:
    pids: tuple = ()
    trace_all: bool = False
    duration_s: Optional[float] = None       # None: until stopped or targets exit
    slow_ns: int = 1_000_000
    ringbuf_pages: int = 1024
    use_bpf: bool = True
    degrade: bool = False                    # fall back to /proc when BPF is unavailable
    snapshot_tree: bool = True
    stop_when_targets_exit: bool = True
    options: dict = field(default_factory=dict)   # echoed into metadata


def _identity(pid: int):
    try:
        return procfs.process_identity(pid)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        raise ProcessGone(f"no such process: {pid}", "check the PID (ps -p PID, pgrep -a NAME)") from None
    except psutil.AccessDenied:
        raise NotPermitted(f"cannot read process {pid}", "run as root") from None


def _alive(identity) -> bool:
    """Still the same process (pid and start time) and not a zombie."""
    pid, start = identity
    try:
        if procfs.process_identity(pid) != identity:
            return False
        state = procfs.read_stat(pid)[1][0]
        return state not in (b"Z", b"X")
    except (psutil.Error, OSError, IndexError):
        return False


class Tracer:
    def __init__(self, request: TraceRequest, opener=None, sink=None):
        """``opener``: a ``probes.ProbeOpener`` already compiling the probes for
        this request (started before the slow imports), used instead of
        compiling them here.  ``sink``: where the events go in batches while
        the trace runs (see the module docstring), instead of being kept."""
        self.request = request
        self.sink = sink
        self.opener = opener
        self.attached_early_ns = None     # when an early opener attached the probes
        self.attached_early_mono = None
        self.identities = [_identity(pid) for pid in request.pids]
        self.probes: Optional[KernelProbes] = None
        self.rec = Recording(metadata=base_metadata())
        self.end_reason = ""
        self._t0 = 0.0

    # -- context --------------------------------------------------------
    def __enter__(self) -> "Tracer":
        self._t0 = time.monotonic()
        meta = self.rec.metadata
        meta.command_started_mono = self._t0
        meta.targets = [{"pid": p, "start_ticks": s} for p, s in self.identities]
        meta.mode = "system" if self.request.trace_all else "pids"
        meta.options = dict(self.request.options)
        meta.slow_ns = self.request.slow_ns
        try:
            early = self.opener
            if early is not None and getattr(early, "_snapshot_fn", None) is not None:
                early.join()   # the snapshot taken as soon as the early probes were attached
            got = early.snapshot if early is not None and getattr(early, "snapshot", None) is not None else None
            self.rec.snapshots["start"] = got if got is not None else self._snapshot()
            if self.request.use_bpf:
                self._open_probes()
            else:
                self.rec.note_unavailable(PROBES_WHAT, "disabled (--no-bpf)")
        except BaseException:
            self.close()   # every stage closed on every path: a probe compile started early, probes attached
            raise
        meta.started_at_ns = time.time_ns()
        if self.probes is not None and self.attached_early_ns:
            meta.started_at_ns = self.attached_early_ns
        meta.probes_attached_after_s = round(time.monotonic() - self._t0, 4)
        if self.probes is not None:
            from .memory import trim_heap

            trim_heap()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.opener is not None:  # compiled for a request that did not use them
            self.opener.discard()
            self.opener = None
        if self.probes is not None:
            self.probes.close()
            meta = self.rec.metadata
            if meta.probe_timings is None:
                meta.probe_timings = {}
            meta.probe_timings.update(self.probes.timings)
            self.probes = None

    def _open_probes(self) -> None:
        config = ProbeConfig(pids=tuple(p for p, _ in self.identities), trace_all=self.request.trace_all,
                             slow_ns=self.request.slow_ns, ringbuf_pages=self.request.ringbuf_pages)
        try:
            if self.opener is not None and self.opener.config == config:
                self.probes = self.opener.result()
                self.attached_early_ns = getattr(self.opener, "attached_ns", None)
                self.attached_early_mono = getattr(self.opener, "attached_mono", None)
                self.opener = None
            else:
                self.probes = KernelProbes(config).open()
        except PyimpactError as err:
            if not self.request.degrade:
                raise
            self.probes = None
            self.rec.note_unavailable(PROBES_WHAT, err.one_line())
            return
        # Children that exist already; later ones are added in the kernel at fork.
        for pid, _ in self.identities:
            try:
                children = procfs.descendants(pid)
            except psutil.NoSuchProcess:
                continue        # exited while the probes attached: the run loop sees it gone
            for child in children:
                self.probes.follow(child)
        env = self.probes.env
        meta = self.rec.metadata
        meta.bcc_version, meta.kernel_headers, meta.tracefs = env.bcc_version, env.headers, env.tracefs
        meta.clock_offset_ns = self.probes.clock_offset_ns
        meta.clock = "event time = CLOCK_MONOTONIC + clock_offset_ns (wall clock, UTC ns)"

    def _snapshot(self):
        pids = [p for p, _ in self.identities]
        if not pids:
            return None
        try:
            return procfs.take_snapshot(pids, tree=self.request.snapshot_tree)
        except psutil.NoSuchProcess as err:
            raise ProcessGone(f"process {err.pid} exited before it could be observed",
                              "check the PID (ps -p PID); trace a short-lived one from its start") from None
        except psutil.AccessDenied as err:
            raise NotPermitted(f"cannot read process {err.pid}", "run as root") from None

    # -- run ------------------------------------------------------------
    @property
    def bpf_active(self) -> bool:
        return self.probes is not None

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    def targets_alive(self) -> list:
        return [pid for pid, start in self.identities if _alive((pid, start))]

    def run(self, should_stop: Callable[[], str] = lambda: "",
            on_tick: Optional[Callable[["Tracer"], None]] = None, tick_s: float = 0.25) -> str:
        """Observe until the duration ends, every target exits, or should_stop()
        returns a reason. Returns the reason the run ended."""
        start = time.monotonic()
        duration = self.request.duration_s
        next_tick = start
        reason = ""
        while not reason:
            now = time.monotonic()
            if duration is not None and now - start >= duration:
                reason = "duration reached"
                break
            wait_ms = 100 if duration is None else max(0, min(100, int((start + duration - now) * 1000)))
            if self.probes is not None:
                self.probes.poll(wait_ms)
                if self.sink is not None and self.probes.held_events >= self.sink.batch_events:
                    self._hand_on()
            else:
                time.sleep(wait_ms / 1000)
            reason = should_stop()
            if not reason and self.identities and self.request.stop_when_targets_exit \
                    and not self.request.trace_all and not self.targets_alive():
                reason = "all targets exited"
            if on_tick is not None and time.monotonic() >= next_tick:
                on_tick(self)
                next_tick = time.monotonic() + tick_s
        self.end_reason = reason
        return reason

    def _hand_on(self) -> None:
        """Give the events held to the sink (one batch), keeping none."""
        raw, exec_paths = self.probes.take_events()
        if raw:
            self.sink.add(raw, exec_paths, self.probes.clock_offset_ns)

    @property
    def event_count(self) -> int:
        return self.probes.event_count if self.probes is not None else 0

    def lost(self) -> dict:
        return self.probes.lost() if self.probes is not None else \
            {"ringbuf_full": 0, "map_full": 0, "block_unseen": 0, "kernel_skipped": 0, "undrained": 0}

    # -- result ---------------------------------------------------------
    def recording(self) -> Recording:
        """End the observation and build the Recording.

        The order bounds the time from a stop to the answer, however large
        the trace: take what the ring buffer holds; read which syscall each
        thread is in (before the syscall probes go, or a thread that returns
        afterwards would look stuck); stop the probes (the hot ones at once,
        the slow classic detach in the background, joined by close()); drain
        what arrived meanwhile under a deadline, counting any rest as lost;
        then decode, with nothing left feeding the buffer."""
        rec = self.rec
        meta = rec.metadata
        meta.end_reason = self.end_reason or "stopped"
        if self.probes is not None:
            self.probes.drain()
            rec.inflight = deferred_frame(self.probes.inflight(), INFLIGHT_COLUMNS)
            self.probes.note_block_devices()    # while the completion probe still runs
            self.probes.stop()
            self.probes.drain(deadline_s=DRAIN_DEADLINE_S)
            rec.syscall_stats = deferred_frame(self.probes.syscall_stats(), STAT_COLUMNS)
            rec.block_inflight = deferred_frame(self.probes.block_inflight(), BLOCK_COLUMNS)
            meta.connect_failures = self.probes.connect_failures()
        # The end is when the in-kernel state was last read: a call still in
        # flight then began before it (taken earlier, before draining, a call
        # that began during the drain was "waiting" a negative time); taken
        # before decoding, which can take seconds on a large trace.
        meta.ended_at_ns = time.time_ns()
        meta.duration_s = round((meta.ended_at_ns - meta.started_at_ns) / 1e9, 6)
        if self.probes is not None:
            meta.events_received = self.probes.event_count
            if self.sink is not None:
                self._hand_on()
                rec.events = Deferred(load=self.sink.load, length=self.probes.event_count)
            else:
                raw, exec_paths = self.probes.raw_events()
                rec.events = decode_events(raw, exec_paths, self.probes.clock_offset_ns)
            meta.lost = self.probes.lost()
            meta.futex_wakes_woke_nobody = self.probes.futex_idle_wakes()
            meta.probe_timings = dict(self.probes.timings)
        alive = self.targets_alive()
        if alive:
            try:
                rec.snapshots["end"] = procfs.take_snapshot(alive, tree=self.request.snapshot_tree)
            except psutil.Error:
                rec.note_unavailable("end snapshot", "the targets exited while it was taken")
        meta.exited_targets = [pid for pid, _ in self.identities if pid not in alive]
        return rec
