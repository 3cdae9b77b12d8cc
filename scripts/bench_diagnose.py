#!/usr/bin/env python3
"""Time to verdict of `pyimpact diagnose PID` (command start -> verdict printed).

Starts a target (a Python parent blocked reading a pipe from its child, so
the verdict is "blocked", root cause the child), runs `python -m pyimpact diagnose PID` N times with the default
window, and measures, from just before the command is spawned, when the line
"Verdict:" arrives on its stdout and when the command exits (probes
detached).  Writes the figures as JSON (default: bench_diagnose.json) and
prints a summary.  Needs root (the probes); run it on an otherwise idle
machine: figures include Python start-up, imports and probe compilation.

    sudo .venv/bin/python scripts/bench_diagnose.py -n 5 [--window 1.0] [--no-bpf]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time

# a parent blocked reading a pipe whose write end only its child (in pause()) holds
TARGET = ("import os, signal\n"
          "r, w = os.pipe()\n"
          "if os.fork() == 0:\n"
          "    os.close(r); signal.pause(); os._exit(0)\n"
          "os.close(w); os.write(1, b'ready\\n'); os.read(r, 1)\n")


def one(pid: int, window: float, no_bpf: bool) -> dict:
    argv = [sys.executable, "-m", "pyimpact", "diagnose", str(pid), "--window", str(window)]
    if no_bpf:
        argv.append("--no-bpf")
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    verdict_s = None
    verdict = ""
    for line in proc.stdout:
        if line.startswith(b"Verdict:") and verdict_s is None:
            verdict_s = time.monotonic() - t0
            verdict = line.decode().strip()
    proc.wait()
    exit_s = time.monotonic() - t0
    err = proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    return {"verdict_s": verdict_s, "exit_s": exit_s, "rc": proc.returncode, "verdict": verdict,
            "stderr": err.strip()[-300:]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5)
    ap.add_argument("--window", type=float, default=1.0)
    ap.add_argument("--no-bpf", action="store_true")
    ap.add_argument("-o", "--output", default="bench_diagnose.json")
    args = ap.parse_args()
    target = subprocess.Popen([sys.executable, "-c", TARGET], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert target.stdout.readline() == b"ready\n"
        runs = [one(target.pid, args.window, args.no_bpf) for _ in range(args.n)]
    finally:
        os.killpg(target.pid, signal.SIGKILL)   # the target and its child: our own process group
        target.wait()
        target.stdout.close()
    ok = [r["verdict_s"] for r in runs if r["verdict_s"] is not None]
    result = {
        "what": "pyimpact diagnose: command start -> verdict line printed",
        "window_s": args.window, "bpf": not args.no_bpf, "runs": runs,
        "verdict_s": {"min": min(ok), "median": statistics.median(ok), "max": max(ok)} if ok else None,
        "exit_s_median": statistics.median(r["exit_s"] for r in runs),
        "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
    }
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    if ok:
        print(f"time to verdict (window {args.window:g} s, {'BPF' if not args.no_bpf else 'no BPF'}): "
              f"median {statistics.median(ok):.2f} s, min {min(ok):.2f} s, max {max(ok):.2f} s; "
              f"exit (probes detached) median {result['exit_s_median']:.2f} s; n={len(ok)}")
    else:
        print("no verdict seen:", runs[-1])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
