"""The live "if killed now" panel session (`pyimpact trace [-p PID] --kill-preview`).

Called by the trace command as ``run_kill_preview_panel(pids, duration_s,
output, as_json) -> exit code``.  Read-only, like kill-preview: it never
sends a signal.

With PIDs it traces them (probes where available) and refreshes, about once a
second, the kill-preview figures of each: CPU/RAM/GPU, the last checkpoint and
its cadence, "If killed now: ...", the verdict and the recommendation.
Without PIDs it watches the machine: it finds the heavy jobs itself (GPU
holders; process trees older than 5 s using >= 0.5 cores or >= 1 GiB), and
shows one row per job with its if-killed-now figures, side by side; jobs
found at the start are traced with the probes, jobs that appear later are
followed through /proc.

Ctrl-C or SIGTERM (or the end of ``duration_s``) ends it; the recording is then written
to ``output`` if given.  With ``as_json`` each refresh is one JSON line
(``pyimpact.kill-preview-live/1``) and the last line holds the full
kill-preview document of every job.
"""
from __future__ import annotations

import sys
import time
from typing import Dict, List, Optional

from ..analyse.impact.report import GpuSummary, ImpactReport, analyse_impact
from ..analyse.impact.jobs import argv_wanted, pick_jobs, proc_rows
from ..collect.jobs import ProcTable, own_family, proc_table, read_cmdlines
from ..collect.workfiles import SAMPLE_INTERVAL_S, TreeObserver, seed_from_snapshot, stat_fields
from ..recording import Recording
from ..errors import NotInRecording, OutputError
from ..export.redact import redactor_for
from ..text import json_dumps
from .kill_preview import GPU_INTERVAL_S, attach_observations, save_output
from .trace import StopFlag

REFRESH_S = 1.0
SNAPSHOT_EVERY_S = 1.0        # per-PID mode: a light /proc snapshot per refresh
JOB_SNAPSHOT_EVERY_S = 3.0    # machine mode: per job, less often
REDISCOVER_S = 5.0
LIVE_SCHEMA = "pyimpact.kill-preview-live/1"


# --------------------------------------------------------------------------
# One watched job
# --------------------------------------------------------------------------

class JobWatch:
    """A job's observer plus its latest light snapshot; builds the report
    (with command lines and paths replaced by placeholders when ``redact``)."""

    def __init__(self, root: int, start_snapshot=None, redact: bool = False):
        self.redact = redact
        from ..collect import procfs

        self.root = root
        snap = start_snapshot
        if snap is None or root not in snap.processes:
            snap = procfs.take_snapshot([root], tree=True, threads=False, stacks=False, holders=False,
                                        timeout_s=0.5)
        self.start = snap
        self.latest = snap
        self.latest_mono = time.monotonic()
        self.observer = TreeObserver(root, snap.processes[root].start_ticks)
        seed_from_snapshot(self.observer, snap)
        self.report: Optional[ImpactReport] = None
        self.exited = False

    def refresh_snapshot(self) -> None:
        from ..collect import procfs

        try:
            self.latest = procfs.take_snapshot([self.root], tree=True, threads=False, stacks=False,
                                               holders=True, timeout_s=0.5)
            self.latest_mono = time.monotonic()
            self.observer.read_memory()
        except Exception:  # noqa: BLE001 - gone, or unreadable for a moment: keep the last one
            if self.observer.gone:
                self.exited = True

    def analyse(self, base: Recording, gpu_samples: List[dict], probes=None) -> Optional[ImpactReport]:
        """Build an interim Recording (start snapshot, latest snapshot, samples
        so far, probe aggregates read live) and analyse it."""
        from ..recording import INFLIGHT_COLUMNS, STAT_COLUMNS, frame

        if not self.observer.samples or self.root not in self.latest.processes:
            return self.report
        meta = base.metadata.copy()
        meta.unavailable = [dict(u) for u in (base.metadata.unavailable or [])]
        rec = Recording(snapshots={"start": self.start, "end": self.latest}, metadata=meta)
        rec.metadata.targets = [{"pid": self.root, "start_ticks": self.observer.start_ticks}]
        if probes is not None:
            try:
                rec.syscall_stats = frame(probes.syscall_stats(), STAT_COLUMNS)
                rec.inflight = frame(probes.inflight(), INFLIGHT_COLUMNS)
            except Exception:  # noqa: BLE001 - maps unreadable for a moment: figures without them
                pass
        attach_observations(rec, [self.observer], gpu_samples[-60:])
        try:
            report = analyse_impact(rec, self.root)
            red = redactor_for(rec, self.redact)
            self.report = red.value(report) if red is not None else report
        except NotInRecording:
            pass
        return self.report


# --------------------------------------------------------------------------
# Machine-wide discovery: read (collect.jobs), then decide (analyse.impact.jobs)
# --------------------------------------------------------------------------

def discover_jobs(before: ProcTable, after: ProcTable, span_s: float, gpu_sample: Optional[dict]) -> list:
    """Heavy jobs from two /proc tables ``span_s`` apart and an NVML sample."""
    rows = proc_rows(before, after, span_s, gpu_sample)
    parent_of = {pid: r.ppid for pid, r in rows.items()}
    for pid, argv in read_cmdlines(argv_wanted(rows), parent_of).items():
        rows[pid].cmdline = argv
    # our process and its ancestors (the shell, sudo, a terminal): never a
    # 'job' to show, nor a parent to climb into
    return pick_jobs(rows, exclude=own_family())


# --------------------------------------------------------------------------
# The panel
# --------------------------------------------------------------------------

def run_kill_preview_panel(pids: List[int], duration_s: Optional[float], output: Optional[str],
                           as_json: bool, redact: bool = False) -> int:
    """Run the live panel; returns the exit code (0 also after Ctrl-C)."""
    from ..collect.gpu import GpuReader

    machine = not pids
    gpu = GpuReader().open()
    try:
        gpu_samples = [gpu.sample().to_dict()]
        if machine:
            before = proc_table()
            time.sleep(0.5)   # two /proc tables half a second apart give each process's CPU rate
            jobs = discover_jobs(before, proc_table(), 0.5, gpu_samples[-1])
            roots = [j.root for j in jobs]
        else:
            roots = list(dict.fromkeys(int(p) for p in pids))
        import contextlib

        from .panel_keys import KeyReader

        with StopFlag() as stop, _tracer(roots, duration_s, machine) as tracer, contextlib.ExitStack() as keys:
            reader = None
            if not as_json and not machine and len(roots) == 1 and KeyReader.usable():
                reader = keys.enter_context(KeyReader())
            panel = _Panel(tracer, roots, machine, gpu, gpu_samples, as_json, reader=reader, stop=stop,
                           redact=redact)
            status = ""
            try:
                tracer.run(should_stop=lambda: stop() or ("quit ([Q])" if panel.quit else ""), on_tick=panel.tick,
                           tick_s=SAMPLE_INTERVAL_S)
                status = tracer.end_reason
            except KeyboardInterrupt:
                status = "interrupted"
            save_error = None
            try:
                panel.last_samples()
                rec = tracer.recording()
                attach_observations(rec, [w.observer for w in panel.watches.values()], panel.gpu_samples)
                rec.metadata.end_reason = status or rec.metadata.end_reason
                if output:   # saved before the last render: a view can never lose the recording
                    try:
                        red = redactor_for(rec, redact)
                        save_output(red.recording(rec) if red is not None else rec, output)
                    except OutputError as exc:   # the last panel still comes, then the exit code
                        save_error = exc
            finally:
                panel.stop_display(status)
            panel.final_output(status)
            if save_error is not None:
                raise save_error
        return 0
    finally:
        gpu.close()


def _tracer(roots: List[int], duration_s: Optional[float], machine: bool):
    """The Tracer for the jobs.  Watching the machine, a job found a moment
    ago may have ended already: it is dropped rather than failing the panel."""
    from ..collect.tracer import Tracer, TraceRequest
    from ..errors import ProcessGone

    roots = list(roots)
    while True:
        request = TraceRequest(pids=tuple(roots), duration_s=duration_s, use_bpf=bool(roots), degrade=True,
                               stop_when_targets_exit=not machine,
                               options={"command": "trace --kill-preview", "machine": machine})
        try:
            return Tracer(request)
        except ProcessGone:
            if not machine:
                raise
            alive = [p for p in roots if stat_fields(p) is not None]
            if alive == roots:
                raise
            roots = alive


class _Panel:
    """The refresh loop's state: one JobWatch per job, GPU samples, output."""

    def __init__(self, tracer, roots: List[int], machine: bool, gpu, gpu_samples: List[dict], as_json: bool,
                 reader=None, stop=None, redact: bool = False):
        self.tracer = tracer
        self.redact = redact
        self.reader = reader
        self.keys = None
        self.quit = False
        self.machine = machine
        self.gpu = gpu
        self.gpu_samples = gpu_samples
        self.as_json = as_json
        self.t0 = time.monotonic()
        self.last_refresh = 0.0
        self.last_gpu = time.monotonic()
        self.last_discover = time.monotonic()
        self.prev_table = proc_table() if machine else ProcTable()
        self.prev_table_t = time.monotonic()
        start = tracer.rec.snapshots.get("start")
        self.watches: Dict[int, JobWatch] = {}
        for root in roots:
            try:
                self.watches[root] = JobWatch(root, start, self.redact)
            except Exception:  # noqa: BLE001 - it exited between discovery and now
                continue
        for w in self.watches.values():
            w.observer.sample()
        if reader is not None and len(self.watches) == 1:
            from .panel_keys import PanelKeys

            self.keys = PanelKeys(next(iter(self.watches.values())), refresh=self._redraw,
                                  key_waiting=reader.waiting, interrupted=lambda: bool(stop and stop.reason))
        self.live = None
        if not as_json:
            from rich.console import Console
            from rich.live import Live

            self.console = Console(file=sys.stdout, highlight=False, markup=False, emoji=False)
            self.live = Live(self._renderable(""), console=self.console, refresh_per_second=4,
                             transient=False, auto_refresh=False)
            self.live.start()

    # -- loop ------------------------------------------------------------
    def _redraw(self, status: str) -> None:
        if self.live is not None:
            self.live.update(self._renderable(status), refresh=True)

    def _poll_keys(self) -> None:
        key = self.reader.read() if self.reader is not None else None
        if key is None or self.keys is None:
            return
        self.keys.press(key)
        if self.reader is not None:
            self.reader.drain()       # keys typed while an action ran are not taken as answers
        self.quit = self.keys.quit
        self._redraw("")

    def tick(self, _tracer) -> None:
        self._poll_keys()
        now = time.monotonic()
        for w in self.watches.values():
            w.observer.sample()
        if now - self.last_gpu >= GPU_INTERVAL_S:
            self.gpu_samples.append(self.gpu.sample().to_dict())
            self.gpu_samples[:] = self.gpu_samples[-300:]
            self.last_gpu = now
        if self.machine and now - self.last_discover >= REDISCOVER_S:
            self._rediscover()
        if now - self.last_refresh >= REFRESH_S:
            self.last_refresh = now
            self._refresh()

    def _rediscover(self) -> None:
        now = time.monotonic()
        table = proc_table()
        jobs = discover_jobs(self.prev_table, table, now - self.prev_table_t, self.gpu_samples[-1])
        self.prev_table, self.prev_table_t, self.last_discover = table, now, now
        for j in jobs:
            if j.root not in self.watches:
                try:
                    self.watches[j.root] = JobWatch(j.root, redact=self.redact)
                    self.watches[j.root].observer.sample()
                except Exception:  # noqa: BLE001 - already gone
                    continue

    def _refresh(self) -> None:
        every = JOB_SNAPSHOT_EVERY_S if self.machine else SNAPSHOT_EVERY_S
        probes = self.tracer.probes
        for w in self.watches.values():
            if w.observer.gone:
                w.exited = True
                continue
            if time.monotonic() - w.latest_mono >= every:
                w.refresh_snapshot()
            w.analyse(self.tracer.rec, self.gpu_samples, probes)
        if self.as_json:
            print(json_dumps(self._live_doc("")), flush=True)
        elif self.live is not None:
            self.live.update(self._renderable(""), refresh=True)

    # -- output ----------------------------------------------------------
    def _reports(self) -> List[ImpactReport]:
        return [w.report for w in self.watches.values() if w.report is not None and not w.exited]

    def _live_doc(self, status: str) -> dict:
        from ..analyse.impact.report import iso

        return {"schema": LIVE_SCHEMA, "as_of": iso(time.time_ns()),
                "elapsed_s": round(time.monotonic() - self.t0, 2), "mode": "machine" if self.machine else "pids",
                "status": status, "jobs": [_row(r) for r in self._reports()],
                "exited": [w.root for w in self.watches.values() if w.exited]}

    def _renderable(self, status: str):
        from ..render.live_panel import jobs_table, pid_panel

        elapsed = time.monotonic() - self.t0
        if self.machine:
            rows = sorted((_row(r) for r in self._reports()),
                          key=lambda j: (j["vram_bytes"], j["cpu_cores"] or 0), reverse=True)
            gpu = self.gpu_samples[-1] if self.gpu_samples else None
            return jobs_table(rows, elapsed, _gpu_summary(gpu), status)
        exited = [w.root for w in self.watches.values() if w.exited]
        if exited:
            status = (status + "; " if status else "") + "exited: " + ", ".join(map(str, exited))
        if self.keys is not None:
            return pid_panel(self._reports(), elapsed, status, keys=status or self.keys.status)
        return pid_panel(self._reports(), elapsed, status)

    def last_samples(self) -> None:
        """One last sample and analysis of every job, with everything seen."""
        for w in self.watches.values():
            if not w.observer.gone:
                w.observer.sample()
            if not w.observer.gone:
                w.refresh_snapshot()
                w.analyse(self.tracer.rec, self.gpu_samples, self.tracer.probes)
            else:
                w.exited = True

    def stop_display(self, status: str) -> None:
        """The last refresh of the live display, then stop it."""
        if self.live is not None:
            try:
                self.live.update(self._renderable(status or "ended"), refresh=True)
            finally:
                self.live.stop()
            if not self.console.is_terminal:
                self.console.line()

    def final_output(self, status: str) -> None:
        if self.as_json:
            doc = self._live_doc(status or "ended")
            doc["final"] = True
            doc["reports"] = [r.to_dict() for r in self._reports()]
            print(json_dumps(doc), flush=True)


def _row(r: ImpactReport) -> dict:
    from ..render.live_panel import job_row

    return job_row(r)


def _gpu_summary(sample: Optional[dict]) -> Optional[GpuSummary]:
    """The machine's GPU line of the jobs table: the sample, no job's share."""
    if sample is None:
        return None
    return GpuSummary(available=bool(sample.get("available")), reason=sample.get("reason") or "",
                      devices=sample.get("devices", []), tree_vram_bytes={}, tree_sm_util_pct={})
