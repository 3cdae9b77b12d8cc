"""The kill-preview sessions: sample a process tree (CPU counters, files open
for writing, checkpoint-like files, NVML) while the Tracer runs, and put the
samples into the Recording (``metadata.kill_preview``), so `pyimpact
report` on a saved recording gives the same answer as the live look.

``observe`` is the one-shot look of `pyimpact kill-preview` and `pyimpact
stop`; ``attach_observations`` is shared with the live panel
(pyimpact.sessions.panel); ``LiveLine`` is the progress line of a long look.
"""
from __future__ import annotations

import contextlib
import time
from typing import List, Optional

from ..collect.workfiles import SAMPLE_INTERVAL_S, TreeObserver, seed_from_snapshot
from ..errors import OutputError, ProcessGone, UsageError
from ..export import write_recording
from ..formats import seconds
from ..recording import KILL_PREVIEW_VERSION
from .trace import StopFlag

GPU_INTERVAL_S = 1.0


def attach_observations(rec, observers: List[TreeObserver], gpu_samples: List[dict]) -> None:
    """Put what the observers and NVML saw into the Recording."""
    rec.metadata.kill_preview = {"version": KILL_PREVIEW_VERSION, "observations": [o.to_dict() for o in observers]}
    rec.gpu = list(gpu_samples)
    gpu_reason = next((g.get("reason") for g in gpu_samples if not g.get("available")), None)
    if gpu_reason and not any(g.get("available") for g in gpu_samples):
        rec.note_unavailable("GPU (NVML)", gpu_reason)


def observe(pid: int, duration_s: float, use_bpf: bool = True, on_tick=None,
            costly_after_s: Optional[float] = None, on_sample=None, threads: bool = False,
            history_db: Optional[str] = None):
    """Trace ``pid`` for ``duration_s`` and return (Recording, tracer) with
    the tracer still attached (the caller prints, then closes it).
    ``threads``: also sample every thread's schedstat (for ``--if``), into
    ``metadata.kill_preview["threads"]``.
    ``costly_after_s`` is only echoed into the recording's options, for
    `pyimpact report` to judge a saved recording by the same threshold."""
    from ..collect.gpu import GpuReader
    from ..collect.tracer import Tracer, TraceRequest

    options = {"command": "kill-preview", "duration_s": duration_s}
    if costly_after_s is not None:
        options["costly_after_s"] = costly_after_s
    tracer = Tracer(TraceRequest(pids=(pid,), duration_s=duration_s, use_bpf=use_bpf, degrade=True,
                                 options=options))
    with contextlib.ExitStack() as stage:   # every path out before the hand-over closes the tracer
        stage.enter_context(tracer)
        start = tracer.rec.snapshots.get("start")
        ticks = start.processes[pid].start_ticks if start and pid in start.processes else None
        obs = TreeObserver(pid, ticks)
        seed_from_snapshot(obs, start)
        sampler = None
        if threads:
            from ..collect.threads import ThreadSampler

            sampler = ThreadSampler(pid)
            sampler.sample()
        with GpuReader() as gpu:
            gpu_samples = [gpu.sample().to_dict()]
            obs.sample()
            last_gpu = time.monotonic()

            def tick(_tr) -> None:
                nonlocal last_gpu
                obs.sample()
                if on_sample is not None:
                    on_sample(obs)
                if sampler is not None:
                    sampler.sample()
                if time.monotonic() - last_gpu >= GPU_INTERVAL_S:
                    gpu_samples.append(gpu.sample().to_dict())
                    last_gpu = time.monotonic()
                if on_tick is not None:
                    on_tick()

            with StopFlag() as stop:    # Ctrl-C/SIGTERM: answer from what was seen so far
                tracer.run(should_stop=stop, on_tick=tick, tick_s=SAMPLE_INTERVAL_S)
            gpu_samples.append(gpu.sample().to_dict())
        final = obs.sample()
        if sampler is not None:
            sampler.sample()
        obs.read_memory()
        from ..collect.ckpt_scan import recorder_history
        obs.recorded = recorder_history(pid, ticks, sorted(obs.watch), db=history_db)
        rec = tracer.recording()
        if final is None or pid in (rec.metadata.exited_targets or []):
            raise ProcessGone(f"process {pid} exited during the observation: nothing is left to kill",
                              "check the PID (pgrep -a NAME); a finished job has no kill to preview")
        attach_observations(rec, [obs], gpu_samples)
        if sampler is not None:
            rec.metadata.kill_preview["threads"] = sampler.to_dict()
        stage.pop_all()                     # the caller prints, then closes the tracer
        return rec, tracer


def save_output(rec, output: str) -> None:
    try:
        write_recording(rec, output)
    except (ImportError, AttributeError) as exc:
        raise OutputError(f"cannot write {output}: recording export is not available in this build ({exc})",
                          "run without -o") from None
    except OSError as exc:
        raise OutputError(f"cannot write {output}: {exc.strerror or exc}", "choose another path") from None


class LiveLine:
    """The one-line progress of a long look (``--watch``), on stderr: seconds
    watched, the job's step counter (from its log), the checkpoint saves seen
    completing.  Redrawn in place on a terminal; elsewhere one line every 10 s."""

    def __init__(self, stream, total_s: float) -> None:
        self.stream, self.total_s = stream, total_s
        self.tty = stream.isatty()
        self.t0: Optional[float] = None            # the first sample: the look starts there
        self.last = -1e9
        self.step: Optional[int] = None
        self.first_step: Optional[int] = None
        self.saves = 0
        self._seen: dict = {}

    def __call__(self, obs) -> None:
        from ..names import is_checkpoint_name, is_log_name
        from ..analyse.impact.progress import readings
        from ..render.text import clean

        s = obs.samples[-1] if obs.samples else None
        if s is None:
            return
        if self.t0 is None:
            self.t0 = time.monotonic()
        for path, tail in (s.get("logs") or {}).items():      # LogTail rows (collect.ckpt_scan)
            if tail.text:
                got = [r for r in readings(tail.text, s["t_ns"], 0) if r.step is not None]
                if got:
                    self.step = got[-1].step
                    self.first_step = self.first_step if self.first_step is not None else self.step
        files = [(p, r) for p, r in (s.get("files") or {}).items()
                 if is_checkpoint_name(p.rsplit("/", 1)[-1]) and not is_log_name(p.rsplit("/", 1)[-1])]
        for path, row in files + list((s.get("dirs") or {}).items()):   # FileStat and DirStat rows
            key = (row.mtime_ns, row.ino)
            if path in self._seen and self._seen[path] != key:
                self.saves += 1
            self._seen[path] = key
        now = time.monotonic()
        if now - self.last < (1.0 if self.tty else 10.0):
            return
        self.last = now
        line = f"watching {now - self.t0:.0f}/{seconds(self.total_s, 0)}"
        if self.step is not None:
            line += f"; step {self.step}" + (f" (+{self.step - self.first_step})" if self.first_step is not None
                                             else "")
        line += f"; {self.saves} checkpoint change(s) seen"
        line = clean(line)[:79]
        self.stream.write(("\r" + line.ljust(79)) if self.tty else line + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty and self.last > 0:
            self.stream.write("\r" + " " * 79 + "\r")
            self.stream.flush()


def parse_changes(changes) -> list:
    """The ``--if`` changes (nice=N, cpus=LIST, cpu-quota=P%) parsed against
    this machine's online CPUs; a bad one is a UsageError with an example."""
    from ..analyse.impact.what_if import parse_change
    from ..collect.threads import online_cpus

    out = []
    for text in changes:
        try:
            out.append(parse_change(text, online_cpus()))
        except ValueError as exc:
            raise UsageError(f"--if {text}: {exc}", "e.g. --if nice=10, --if cpus=0-3, --if cpu-quota=50%") from None
    return out


def what_if_estimates(rec, report, parsed, pid: int) -> list:
    """The --if estimates (pyimpact.analyse.impact.what_if) from the thread samples."""
    if not parsed:
        return []
    from ..analyse.impact.what_if import estimate

    obs = (rec.metadata.kill_preview or {}).get("threads") or {}
    workers = {r.pid for r in report.tree if "worker" in r.role}
    return [estimate(obs, c, rec.gpu, workers, pid) for c in parsed]
