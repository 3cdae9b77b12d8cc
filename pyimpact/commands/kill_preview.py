"""`pyimpact kill-preview PID`: what a kill of PID now would lose, free and break.

Read-only: this command never sends a signal.  It observes the process tree
for a short window (kernel probes where available, /proc always), samples the
tree's CPU counters, its files open for writing and the checkpoint-like files
in the directories the job works in (pyimpact.collect.workfiles), reads NVML,
and prints the impact analysis (pyimpact.analyse.impact.report) as text or ``--json``.

The samples go into the Recording (``metadata["kill_preview"]``) and the
``--costly-after`` threshold into its options, so `pyimpact report` on a
saved recording gives the same answer.

Ctrl-C or SIGTERM during the window ends it early with the answer from what
was seen so far (a second Ctrl-C aborts).

Exit codes: 0 answer given; 3 the process does not exist or exited during
the window; 4 not permitted (run as root); 6 the -o file cannot be written.
"""
from __future__ import annotations

import sys
import time
from typing import List, Optional

import click

from ..collect.workfiles import SAMPLE_INTERVAL_S, TreeObserver, seed_from_snapshot
from . import history_opt
from ..errors import OutputError, ProcessGone, UsageError
from ..export import write_recording
from .job_options import job_from_options, job_options, wants_job
from .params import Number
from .redaction import redact_option, redactor_for, refuse_redact_with_job
from .target import process_target

GPU_INTERVAL_S = 1.0


# --------------------------------------------------------------------------
# Into the Recording (shared with `trace --kill-preview`)
# --------------------------------------------------------------------------

def attach_observations(rec, observers: List[TreeObserver], gpu_samples: List[dict]) -> None:
    """Put what the observers and NVML saw into the Recording."""
    rec.metadata["kill_preview"] = {"version": 1, "observations": [o.to_dict() for o in observers]}
    rec.gpu = list(gpu_samples)
    gpu_reason = next((g.get("reason") for g in gpu_samples if not g.get("available")), None)
    if gpu_reason and not any(g.get("available") for g in gpu_samples):
        rec.note_unavailable("GPU (NVML)", gpu_reason)


# --------------------------------------------------------------------------
# The one-shot command
# --------------------------------------------------------------------------

def observe(pid: int, duration_s: float, use_bpf: bool = True, on_tick=None,
            costly_after_s: Optional[float] = None, on_sample=None, threads: bool = False,
            history_db: Optional[str] = None):
    """Trace ``pid`` for ``duration_s`` and return (Recording, tracer) with
    the tracer still attached (the caller prints, then closes it).
    ``threads``: also sample every thread's schedstat (for ``--if``), into
    ``metadata["kill_preview"]["threads"]``.
    ``costly_after_s`` is only echoed into the recording's options, for
    `pyimpact report` to judge a saved recording by the same threshold."""
    from ..collect.gpu import GpuReader
    from ..collect.tracer import Tracer, TraceRequest

    options = {"command": "kill-preview", "duration_s": duration_s}
    if costly_after_s is not None:
        options["costly_after_s"] = costly_after_s
    tracer = Tracer(TraceRequest(pids=(pid,), duration_s=duration_s, use_bpf=use_bpf, degrade=True,
                                 options=options))
    tracer.__enter__()
    try:
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

            from .trace import StopFlag

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
        if final is None or pid in rec.metadata.get("exited_targets", []):
            raise ProcessGone(f"process {pid} exited during the observation: nothing is left to kill")
        attach_observations(rec, [obs], gpu_samples)
        if sampler is not None:
            rec.metadata["kill_preview"]["threads"] = sampler.to_dict()
        return rec, tracer
    except BaseException:
        tracer.close()
        raise


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
        for path, row in (s.get("logs") or {}).items():
            if len(row) >= 3 and row[2]:
                got = [r for r in readings(row[2], s["t_ns"], 0) if r.step is not None]
                if got:
                    self.step = got[-1].step
                    self.first_step = self.first_step if self.first_step is not None else self.step
        files = [(p, r) for p, r in (s.get("files") or {}).items()
                 if is_checkpoint_name(p.rsplit("/", 1)[-1]) and not is_log_name(p.rsplit("/", 1)[-1])]
        for path, row in files + list((s.get("dirs") or {}).items()):
            key = (row[1], row[3])
            if path in self._seen and self._seen[path] != key:
                self.saves += 1
            self._seen[path] = key
        now = time.monotonic()
        if now - self.last < (1.0 if self.tty else 10.0):
            return
        self.last = now
        line = f"watching {now - self.t0:.0f}/{self.total_s:.0f} s"
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


def _parse_changes(changes) -> list:
    from ..analyse.impact.what_if import parse_change
    from ..collect.threads import online_cpus

    out = []
    for text in changes:
        try:
            out.append(parse_change(text, online_cpus()))
        except ValueError as exc:
            raise UsageError(f"--if {text}: {exc}", "e.g. --if nice=10, --if cpus=0-3, --if cpu-quota=50%") from None
    return out


def _what_if(rec, report, parsed, pid: int) -> list:
    """The --if estimates (pyimpact.analyse.impact.what_if) from the thread samples."""
    if not parsed:
        return []
    from ..analyse.impact.what_if import estimate

    obs = rec.metadata.get("kill_preview", {}).get("threads") or {}
    workers = {r.pid for r in report.tree if "worker" in r.role}
    return [estimate(obs, c, rec.gpu, workers, pid) for c in parsed]


EXAMPLES = """
\b
Examples:
  sudo pyimpact kill-preview 1234            observe 2 s, then print the impact
  sudo pyimpact kill-preview train.py        the one process running train.py
  sudo pyimpact kill-preview 1234 -d 10      watch longer (more checkpoints seen)
  sudo pyimpact kill-preview 1234 --watch 60 look 60 s with a live progress line
  sudo pyimpact kill-preview 1234 --json     the stable JSON document
  sudo pyimpact kill-preview 1234 -o k.json  also save the recording
  sudo pyimpact kill-preview 1234 --if cpus=0-1 --if nice=10
                                             what pinning or renicing would cost
"""


@click.command("kill-preview", epilog=EXAMPLES)
@process_target
@click.option("-d", "--duration", "duration_s", type=Number(0.2, 3600), default=2.0,
              show_default=True, help="Seconds to observe before answering.")
@click.option("--watch", "watch_s", type=Number(0.2, 3600), default=None,
              help="Look this many seconds instead of -d, with a live progress line on stderr "
                   "(long enough to see a save or the step rate); Ctrl-C answers early.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document instead of text.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Also save the recording here (.parquet, .json, .html; - = JSON on stdout).")
@click.option("--no-bpf", is_flag=True, help="Use /proc only (no kernel probes).")
@redact_option
@click.option("--costly-after", type=Number(0, 10**9), default=60.0, show_default=True,
              help="Lost seconds (wall, CPU or GPU) from which a kill counts as costly.")
@click.option("--if", "changes", multiple=True, metavar="CHANGE",
              help="Also estimate what a change would cost: nice=N, cpus=LIST (e.g. 0-3), cpu-quota=P% "
                   "(100% = one CPU); measured from per-thread CPU and run-queue delay. Repeatable.")
@job_options
@history_opt.option
def command(pid: int, duration_s: float, watch_s: Optional[float], as_json: bool, output: Optional[str],
            no_bpf: bool, redact: bool, costly_after: float, job: bool, hosts_file, slurm_job, via, ssh_config,
            remote_cmd, changes=(), history_db: Optional[str] = None) -> None:
    """What a kill now would lose, free and break (read-only: sends no signal).

    The process is a PID or a name (comm, program, or script: train.py);
    a name must match one process.
    """
    from ..analyse.impact.report import analyse_impact
    from ..collect.special import special_process
    from ..render.impact_view import render_impact
    from ..render.text import json_dumps

    special = special_process(pid)
    if special is not None:
        raise UsageError(special.describe("kill-preview"))
    if wants_job(job, hosts_file, slurm_job):
        refuse_redact_with_job(redact)
        _job_cascade(pid, as_json, hosts_file, slurm_job, via, ssh_config, remote_cmd)
        return
    from .output import check_output

    to_stdout = check_output(output, as_json)
    parsed = _parse_changes(changes)
    hist = history_opt.lookup(pid, history_db)
    live = LiveLine(sys.stderr, watch_s) if watch_s else None
    try:
        rec, tracer = observe(pid, watch_s or duration_s, use_bpf=not no_bpf, costly_after_s=costly_after,
                              on_sample=live, threads=bool(parsed), history_db=history_db)
    finally:
        if live is not None:
            live.done()
    rec.metadata["history"] = hist
    try:
        save_error = None
        red = redactor_for(rec, redact)     # one redactor: the same placeholders in view and file
        if output:   # saved before anything is rendered: a view can never lose the recording
            try:
                save_output(red.recording(rec) if red is not None else rec, output)
            except OutputError as exc:   # the answer still comes, then the error's exit code
                save_error = exc
        report = analyse_impact(rec, pid, costly_after_s=costly_after)
        what_if = _what_if(rec, report, parsed, pid)
        if red is not None:
            report, what_if, hist = red.value(report), red.value(what_if), red.value(hist)
        if as_json:
            doc = report.to_dict()
            if what_if:
                doc["what_if"] = what_if
            click.echo(json_dumps(history_opt.add(doc, hist, history_db), indent=2))
        else:
            from ..render import history_view

            render_impact(report, sys.stderr if to_stdout else sys.stdout)
            if what_if:
                from ..render.what_if_view import render_what_if

                render_what_if(what_if, sys.stderr if to_stdout else sys.stdout)
            history_view.write(hist, sys.stderr if to_stdout else sys.stdout)
        sys.stdout.flush()
        if save_error is not None:
            raise save_error
    finally:
        tracer.close()


def _job_cascade(pid: int, as_json: bool, hosts_file, slurm_job, via, ssh_config, remote_cmd) -> None:
    """kill-preview --job: the cascade of a kill of this rank across the nodes.
    The rank is named by its RANK (a pid means nothing on another node)."""
    from ..analyse.job import kill_cascade
    from .diagnose_job import local_job_key

    env = local_job_key(pid)["env"]
    rank = env.get("RANK") or env.get("SLURM_PROCID")
    if rank is None or not rank.isdigit():
        raise UsageError(f"process {pid} has no RANK in its environment", "give the pid of one rank of the job")
    jd, elapsed = job_from_options(pid, 1.0, False, hosts_file, slurm_job, via, ssh_config, remote_cmd)
    cascade = kill_cascade(jd, int(rank))
    if as_json:
        from ..render.text import json_dumps

        click.echo(json_dumps({"schema": "pyimpact.kill-preview-job/1", "job": jd.job, "elapsed_s": elapsed,
                               "cascade": cascade, "diagnosis": jd.to_json()}, indent=2))
    else:
        from ..render.job_view import write_cascade

        write_cascade(jd, cascade, sys.stdout)
