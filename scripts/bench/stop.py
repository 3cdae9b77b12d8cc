"""Benchmark: how long `pyimpact trace` takes to stop after SIGTERM / SIGHUP
on a busy target (issue 8, item 4: the goal is 3 s however large the trace).

The target is the getppid() loop (c/syscall_loop.c) traced with --slow-ms 0,
so every syscall is an event: the ring buffer runs full and the trace grows
as fast as Python can take events. After BUSY seconds of that the trace gets
the signal; the figure is the time from the signal to the trace's exit (the
summary printed, the Parquet file written, the probes detached), against the
number of events the trace holds by then.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from .common import PYIMPACT, LineReader, Procs, build_c, log


def _one(procs: Procs, exe: str, tmp: str, busy_s: float, sig: signal.Signals) -> dict:
    target = procs.spawn([exe, "3600"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready = target.stdout.readline()
    if not ready.startswith("ready"):
        raise RuntimeError(f"syscall_loop did not start: {ready!r}")
    out = os.path.join(tmp, f"stop-{sig.name}-{busy_s:g}.parquet")
    trace = procs.spawn(PYIMPACT + ["trace", "-p", str(target.pid), "--slow-ms", "0", "--json", "-o", out],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err = LineReader(trace.stderr)
    if err.wait_for("probes attached", 60) is None:
        raise RuntimeError("trace did not start: " + err.text()[-500:])
    target.stdin.write("go\n")
    target.stdin.flush()
    time.sleep(busy_s)
    t0 = time.monotonic()
    trace.send_signal(sig)
    stdout = trace.stdout.read()
    rc = trace.wait(timeout=120)
    took = time.monotonic() - t0
    procs.kill(target)
    target.wait(timeout=10)
    try:
        summary = json.loads(stdout)
    except ValueError:
        summary = {}
    row = {"signal": sig.name, "busy_s": busy_s, "rc": rc, "signal_to_exit_s": round(took, 3),
           "events": (summary.get("events") or {}).get("total"), "lost": summary.get("lost"),
           "end_reason": summary.get("end_reason"), "output_written": os.path.exists(out),
           "output_mb": round(os.path.getsize(out) / 2**20, 1) if os.path.exists(out) else None}
    if os.path.exists(out):
        os.unlink(out)
    log(f"   {sig.name} after {busy_s:g} s busy: {row['events']} events, exit {took:.2f} s after the signal")
    return row


def run(procs: Procs, bindir: str, tmp: str, busy: list, signals: list) -> dict:
    exe = build_c("syscall_loop", bindir)
    rows = []
    for busy_s in busy:
        for name in signals:
            rows.append(_one(procs, exe, tmp, float(busy_s), signal.Signals[name]))
    return {"rows": rows, "goal_s": 3.0}
