"""Benchmark 6: pyimpact's memory, and the time to write a big recording.

rss: `pyimpact trace -p PID -o out.parquet --json` follows the training job
(train_job.py, 2 DataLoader workers) for S seconds (600 in the recorded run:
the issue's 10 minutes). The pyimpact process's VmRSS, RssAnon and RssFile
are sampled every second while the job runs and every 0.1 s once it has
ended, and its VmHWM (peak RSS, what the target is about) is read until it
exits, i.e. after the last row group, the summary and the footer were
written. os.wait4 gives ru_maxrss as a cross-check. The samples are drawn
(scripts/bench/memory-rss.svg, matplotlib) and kept in the JSON.

memory_rate: the same measurement on c/event_gen.c at a set rate (its mix of
futex waits and wakes, signals, forks and block writes), so that the event
volume of a 10-minute training job (about 0.8 M events at 1.3k/s on a quiet
machine) is traced whatever the machine's load does to the job's own pace.

export: scripts/bench/export_job.py, in its own process: N synthetic raw
records -> decode_events -> Recording -> Parquet and Perfetto JSON.
"""
from __future__ import annotations

import json
import os
import subprocess
import time

from . import tracers
from .common import PY, ROOT, LineReader, Procs, loadavg, log

HERE = os.path.dirname(os.path.abspath(__file__))


def _status(pid: int) -> dict:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                    out[key] = int(line.split()[1])
    except OSError:
        pass
    return out


def plot(samples: list, path: str, title: str) -> bool:
    """RSS over time as a small SVG (False when matplotlib is missing)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    t = [x["t"] for x in samples if "VmRSS" in x]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for key, label in (("VmHWM", "peak so far (VmHWM)"), ("VmRSS", "RSS"), ("RssAnon", "anonymous"),
                       ("RssFile", "file-backed (libbcc/LLVM, pyarrow, Python)")):
        ax.plot(t, [x[key] / 1024 for x in samples if "VmRSS" in x], label=label, linewidth=1.2)
    ax.axhline(200, color="red", linestyle="--", linewidth=0.8, label="target 200 MB")
    ax.set_xlabel("seconds since the job started")
    ax.set_ylabel("MB")
    ax.set_ylim(0, max(220, max((x.get("VmHWM", 0) for x in samples), default=0) / 1024 * 1.1))
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return True


def rss_while_tracing(procs: Procs, workdir: str, seconds: float) -> dict:
    out_file = os.path.join(workdir, "memory-trace.parquet")
    job = procs.spawn([PY, os.path.join(HERE, "train_job.py"), "--seconds", str(seconds)],
                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pid = int(job.stdout.readline().split()[1])
        # The job prints its step times (one long line) at the end: read them
        # as they come, or the job blocks on a full pipe and never exits.
        job_out = LineReader(job.stdout)
        tool = tracers.PyimpactTrace(procs, extra=["-o", out_file], workdir=workdir).start(pid)
        tpid = tool.proc.pid
        attached = _status(tpid)
        t0 = time.monotonic()
        job.stdin.write("go\n")
        job.stdin.flush()
        samples = []
        next_sample = t0
        while job.poll() is None:
            now = time.monotonic()
            if now >= next_sample:
                st = _status(tpid)
                samples.append({"t": round(now - t0, 2), **st})
                next_sample = now + 1.0
            time.sleep(0.05)
        job_end = time.monotonic() - t0
        job_out.join(10)
        load_at_end = loadavg()
        result = json.loads(job_out.text() or "{}")
        # pyimpact stops by itself once its target exited: decode, summary, write, detach.
        anon_before = max((s.get("RssAnon", 0) for s in samples), default=0)
        hwm, anon_max, maxrss, status = _sample_until_exit(tpid, t0, samples)
        anon_max = max(anon_max, anon_before)
        if status is not None:
            tool.proc.returncode = os.waitstatus_to_exitcode(status)
        exit_s = time.monotonic() - t0
        info = tool.stop(timeout=600)
    finally:
        procs.finish(job, sig=None, timeout=30)
    s = info.get("summary") or {}
    events = (s.get("events") or {}).get("total", 0)
    rec = {
        "seconds": seconds, "job_end_s": job_end, "tracer_exit_s": exit_s,
        "steps": result.get("steps"), "mean_step_s": result.get("mean_step_s"),
        "events": events, "events_per_s": events / max(job_end, 1e-9), "lost": s.get("lost"),
        "train_s": sum(result.get("step_s", [])) or None,
        "by_kind": (s.get("events") or {}).get("by_kind"),
        "rss_kb_after_attach": attached.get("VmRSS"), "hwm_kb_after_attach": attached.get("VmHWM"),
        "probe_cache_hit": (s.get("timings") or {}).get("probe_cache_hit"),
        "peak_rss_kb": hwm or None, "ru_maxrss_kb": maxrss,
        "peak_rss_anon_kb": anon_max,
        "samples": samples,
        "output_mb": os.path.getsize(out_file) / 2**20 if os.path.exists(out_file) else None,
        "tracer_rc": info.get("rc"),
        "exit_after_job_s": exit_s - job_end,
        "loadavg_at_job_end": load_at_end,
    }
    if os.path.exists(out_file):
        try:
            import pyarrow.parquet as pq

            md = pq.ParquetFile(out_file).metadata
            rec["output_rows"], rec["output_row_groups"] = md.num_rows, md.num_row_groups
        except Exception as err:  # the figure is only context
            rec["output_rows"] = f"unreadable: {err}"
    svg = os.path.join(HERE, "memory-rss.svg")
    if plot(samples, svg, f"pyimpact trace -o t.parquet on the training job, {seconds:g} s "
                          f"({events:,} events)"):
        rec["plot"] = os.path.relpath(svg, ROOT)
    # RSS growth while tracing (before the end-of-run decode and write).
    during = [x for x in samples if x["t"] > 5 and x.get("VmRSS")]
    if len(during) >= 2 and events:
        kb = during[-1]["VmRSS"] - during[0]["VmRSS"]
        dt = during[-1]["t"] - during[0]["t"]
        rec["rss_growth_kb_per_min"] = kb / dt * 60
        rec["rss_growth_bytes_per_event"] = kb * 1024 / max(1.0, rec["events_per_s"] * dt)
    if os.path.exists(out_file):
        os.unlink(out_file)
    return rec


def _sample_until_exit(tpid: int, t0: float, samples: list, timeout: float = 600.0):
    """Sample every 0.1 s until the tracer exits; (VmHWM, max RssAnon, ru_maxrss, wait status or None)."""
    hwm, anon, maxrss, exited = 0, 0, None, None
    deadline = time.monotonic() + timeout
    next_sample = 0.0
    while time.monotonic() < deadline:
        st = _status(tpid)
        now = time.monotonic()
        if st and now >= next_sample:
            samples.append({"t": round(now - t0, 2), **st})
            next_sample = now + 0.1
        hwm = max(hwm, st.get("VmHWM", 0))
        anon = max(anon, st.get("RssAnon", 0))
        try:
            done, status, ru = os.wait4(tpid, os.WNOHANG)
        except ChildProcessError:
            break
        if done:
            maxrss, exited = ru.ru_maxrss, status
            break
        time.sleep(0.02)
    return hwm, anon, maxrss, exited


def rss_at_rate(procs: Procs, bindir: str, workdir: str, rate: int, seconds: float) -> dict:
    from .common import build_c

    exe = build_c("event_gen", bindir)
    data = os.path.join("/var/tmp", f"pyimpact-bench-mem-{os.getpid()}.dat")   # O_DIRECT: a real disk
    out_file = os.path.join(workdir, "memory-rate.parquet")
    gen = procs.spawn([exe, str(rate), str(seconds), data], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                      text=True)
    try:
        pid = int(gen.stdout.readline().split()[1])
        tool = tracers.PyimpactTrace(procs, extra=["--slow-ms", "60000", "-o", out_file], workdir=workdir).start(pid)
        tpid = tool.proc.pid
        attached = _status(tpid)
        t0 = time.monotonic()
        gen.stdin.write("go\n")
        gen.stdin.flush()
        samples = []
        reader = LineReader(gen.stdout)
        while reader.wait_for("done", 1.0) is None and not reader.closed:
            samples.append({"t": round(time.monotonic() - t0, 2), **_status(tpid)})
        gen_end = time.monotonic() - t0
        load_at_end = loadavg()
        time.sleep(0.3)
        gen.stdin.write("exit\n")
        gen.stdin.flush()
        gen.wait(timeout=60)
        hwm, anon, maxrss, status = _sample_until_exit(tpid, t0, samples)
        if status is not None:
            tool.proc.returncode = os.waitstatus_to_exitcode(status)
        exit_s = time.monotonic() - t0
        info = tool.stop(timeout=600)
    finally:
        procs.finish(gen, sig=None, timeout=30)
        if os.path.exists(data):
            os.unlink(data)
    s = info.get("summary") or {}
    events = (s.get("events") or {}).get("total", 0)
    rec = {"rate": rate, "seconds": seconds, "gen_end_s": gen_end, "events": events,
           "events_per_s": events / max(gen_end, 1e-9), "lost": s.get("lost"),
           "by_kind": (s.get("events") or {}).get("by_kind"),
           "generated": reader.text().strip().splitlines()[-1] if reader.text().strip() else None,
           "rss_kb_after_attach": attached.get("VmRSS"), "hwm_kb_after_attach": attached.get("VmHWM"),
           "peak_rss_kb": hwm or None, "ru_maxrss_kb": maxrss, "peak_rss_anon_kb": anon,
           "exit_after_end_s": exit_s - gen_end, "loadavg_at_end": load_at_end, "tracer_rc": info.get("rc"),
           "samples": samples,
           "output_mb": os.path.getsize(out_file) / 2**20 if os.path.exists(out_file) else None}
    if os.path.exists(out_file):
        import pyarrow.parquet as pq

        md = pq.ParquetFile(out_file).metadata
        rec["output_rows"], rec["output_row_groups"] = md.num_rows, md.num_row_groups
        os.unlink(out_file)
    steady = [x["VmRSS"] for x in samples if "VmRSS" in x and 10 < x["t"] < gen_end]
    if steady:
        rec["steady_rss_kb"] = {"min": min(steady), "max": max(steady)}
    svg = os.path.join(HERE, "memory-rate-rss.svg")
    if plot(samples, svg, f"pyimpact trace -o t.parquet on event_gen at {rate:,}/s for {seconds:g} s "
                          f"({events:,} events)"):
        rec["plot"] = os.path.relpath(svg, ROOT)
    log(f"memory_rate: {rate}/s for {seconds:g} s: {events} events, peak RSS {hwm / 1024:.0f} MB")
    return rec


def export_times(procs: Procs, workdir: str, n: int) -> dict:
    proc = procs.spawn([PY, os.path.join(HERE, "export_job.py"), str(n), workdir],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=1800)
    if proc.returncode != 0:
        return {"events": n, "error": err.strip()[-1500:]}
    return json.loads(out.strip().splitlines()[-1])


def run(procs: Procs, workdir: str, seconds: float, export_events: int, do_rss: bool = True,
        do_export: bool = True) -> dict:
    res = {}
    if do_rss:
        r = rss_while_tracing(procs, workdir, seconds)
        res["rss"] = r
        log(f"memory: traced the training job {seconds:g} s: {r['events']} events, peak RSS "
            f"{(r['peak_rss_kb'] or 0) / 1024:.0f} MB (after attach {(r['hwm_kb_after_attach'] or 0) / 1024:.0f} MB)")
    if do_export:
        e = export_times(procs, workdir, export_events)
        res["export"] = e
        log(f"export {export_events} events: " + ", ".join(f"{k} {v:.2f}" for k, v in e.items()
                                                           if isinstance(v, float)))
    return res
