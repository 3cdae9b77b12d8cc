#!/usr/bin/env python3
"""pyimpact benchmark suite (issue 4): overhead per syscall against strace and
bcc syscount, cost on untraced processes, a PyTorch training job, time to
verdict, event capacity, memory and export time.

    sudo .venv/bin/python scripts/bench.py            full run (about 20 min), writes
                                                       scripts/bench/results.json and BENCHMARKS.md
    sudo .venv/bin/python scripts/bench.py --quick    a few seconds per configuration (a smoke
                                                       test: figures are not meaningful)
    sudo .venv/bin/python scripts/bench.py --only overhead,capacity
                                                       run some benchmarks, merge into the JSON
    sudo .venv/bin/python scripts/bench.py --render   re-render BENCHMARKS.md from the JSON

Benchmarks: overhead (1 and 2), training (3; training_blocks: 3c, blocks in one job), verdict (4), capacity (5),
memory (6: peak RSS while tracing the training job), export (6: write a
large recording), nodes (16: `diagnose --job` over 2 and 4 simulated nodes),
recorder (7: `pyimpact record`'s cost). The machine should be otherwise idle: the script records
the load average and flags samples taken while someone else's tracer was
attached to the syscall tracepoints.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench import capacity, job_nodes, memory, overhead, recorder, report, stop, training, verdict  # noqa: E402
from bench.common import ROOT, AttachMonitor, Procs, loadavg, log, machine_info  # noqa: E402

NAMES = ("overhead", "training", "training_blocks", "verdict", "capacity", "memory", "memory_rate", "export", "nodes", "stop",
         "recorder")
EXTRA_NAMES = ("training_ab",)      # run only when named: training with a baseline checkout

FULL = {
    "overhead": {"rounds": 9, "seconds": 1.0},
    "training": {"rounds": 10, "warmup": 50, "steps": 2500},
    "training_blocks": {"pairs": 8, "block_s": 12.0, "settle_s": 4.0, "warmup_s": 20.0},
    "verdict": {"warm_runs": 5, "cold_runs": 3},
    "capacity": {"rates": [10_000, 50_000, 100_000, 200_000], "seconds": 30.0},
    "memory": {"seconds": 600.0},
    "memory_rate": {"rate": 10_000, "seconds": 120.0},
    "export": {"events": 1_000_000},
    "nodes": {"runs": 3, "nodes": [2, 4]},
    "stop": {"busy": [1, 2, 4, 8], "signals": ["SIGTERM", "SIGHUP"]},
    "training_ab": {"rounds": 4, "warmup": 30, "steps": 600},
    "recorder": {"rounds": 12, "seconds": 1.0, "idle_s": 90.0, "job_s": 90.0},
}
QUICK = {
    "overhead": {"rounds": 2, "seconds": 0.3},
    "training": {"rounds": 1, "warmup": 10, "steps": 60},
    "training_blocks": {"pairs": 1, "block_s": 2.0, "settle_s": 1.0, "warmup_s": 3.0},
    "verdict": {"warm_runs": 1, "cold_runs": 1},
    "capacity": {"rates": [10_000, 50_000, 100_000, 200_000], "seconds": 3.0},
    "memory": {"seconds": 20.0},
    "memory_rate": {"rate": 5_000, "seconds": 10.0},
    "export": {"events": 100_000},
    "nodes": {"runs": 1, "nodes": [2, 4]},
    "stop": {"busy": [0.5], "signals": ["SIGTERM"]},
    "training_ab": {"rounds": 1, "warmup": 10, "steps": 60},
    "recorder": {"rounds": 1, "seconds": 0.3, "idle_s": 10.0, "job_s": 10.0},
}


def preflight(names) -> list:
    problems = []
    if os.geteuid() != 0:
        problems.append("run as root (the probes, strace -p, drop_caches)")
    for tool in ("gcc", "taskset", "strace", "bpftool"):
        if shutil.which(tool) is None:
            problems.append(f"{tool} not found")
    if "overhead" in names and not os.path.exists("/usr/sbin/syscount-bpfcc"):
        problems.append("/usr/sbin/syscount-bpfcc not found (apt-get install bpfcc-tools)")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--quick", action="store_true", help="short configurations (smoke test)")
    ap.add_argument("--only", help="comma-separated subset of: " + ", ".join(NAMES))
    ap.add_argument("--out", help="results JSON (default scripts/bench/results[-quick].json)")
    ap.add_argument("--markdown", help="where to render (default BENCHMARKS.md; --quick: none)")
    ap.add_argument("--render", action="store_true", help="only re-render the markdown from the JSON")
    ap.add_argument("--memory-seconds", type=float, help="override the traced duration of the memory run "
                    "(default 600: the issue's 10 minutes; shorter for development runs)")
    ap.add_argument("--minutes", type=float, help="the same in minutes (the memory run)")
    ap.add_argument("--capacity-seconds", type=float, help="override the duration of each capacity rate")
    ap.add_argument("--rounds", type=int, help="override the rounds of overhead and training")
    ap.add_argument("--baseline-tree", help="training_ab: a directory holding another pyimpact package "
                    "(probes inside, e.g. from `git archive`), traced in the same rounds for a before/after")
    args = ap.parse_args()
    # Started in the background by a non-interactive shell (nohup ... &), we
    # inherit SIGINT ignored, and so would every tool we start: syscount would
    # then never stop on Ctrl-C. Handled here, children get the default again.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    params = json.loads(json.dumps(QUICK if args.quick else FULL))
    if args.memory_seconds or args.minutes:
        params["memory"]["seconds"] = args.memory_seconds or args.minutes * 60
    if args.capacity_seconds:
        params["capacity"]["seconds"] = args.capacity_seconds
    if args.rounds:
        params["overhead"]["rounds"] = params["training"]["rounds"] = params["training_ab"]["rounds"] = args.rounds
    here = os.path.dirname(os.path.abspath(__file__))
    out_path = args.out or os.path.join(here, "bench", "results-quick.json" if args.quick else "results.json")
    md_path = args.markdown or (None if args.quick else os.path.join(ROOT, "BENCHMARKS.md"))

    if args.render:
        with open(out_path) as f:
            results = json.load(f)
        text = report.render(results, os.path.relpath(out_path, ROOT))
        _write_markdown(md_path, text)
        return 0

    names = NAMES if not args.only else tuple(n.strip() for n in args.only.split(",") if n.strip())
    unknown = [n for n in names if n not in NAMES + EXTRA_NAMES]
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(NAMES + EXTRA_NAMES)}")
    if "training_ab" in names and not args.baseline_tree:
        ap.error("training_ab needs --baseline-tree DIR")
    problems = preflight(names)
    if problems:
        for p in problems:
            print(f"bench: {p}", file=sys.stderr)
        return 2

    results = {}
    if args.only and os.path.exists(out_path):
        with open(out_path) as f:
            results = json.load(f)
    results.setdefault("runs", {})
    cmd = "sudo .venv/bin/python scripts/bench.py" + (" " + " ".join(shlex.quote(a) for a in sys.argv[1:])
                                                     if sys.argv[1:] else "")
    results["machine"] = machine_info()
    results["quick"] = args.quick
    results["params"] = {**results.get("params", {}), **{n: params[n] for n in names}}
    started = time.time()
    log(f"load average before: {loadavg()}; benchmarks: {', '.join(names)}")

    procs = Procs()
    monitor = AttachMonitor(procs)
    monitor.start()
    tmp = tempfile.mkdtemp(prefix="pyimpact-bench-")
    bindir = os.path.join(tmp, "bin")
    os.makedirs(bindir)
    try:
        for name in names:
            t0 = time.monotonic()
            load0 = loadavg()
            p = params[name]
            log(f"== {name} {p}")
            if name == "overhead":
                res = overhead.run(procs, monitor, bindir, tmp, p["rounds"], p["seconds"])
            elif name == "training":
                res = training.run(procs, tmp, p["rounds"], p["warmup"], p["steps"])
            elif name == "training_blocks":
                res = training.run_blocks(procs, tmp, p["pairs"], p["block_s"], p["settle_s"], p["warmup_s"])
            elif name == "training_ab":
                res = training.run(procs, tmp, p["rounds"], p["warmup"], p["steps"],
                                   baseline_tree=os.path.abspath(args.baseline_tree))
            elif name == "verdict":
                res = verdict.run(procs, bindir, p["warm_runs"], p["cold_runs"])
            elif name == "capacity":
                res = capacity.run(procs, bindir, tmp, p["rates"], p["seconds"])
            elif name == "memory":
                res = memory.run(procs, tmp, p["seconds"], 0, do_rss=True, do_export=False)["rss"]
            elif name == "memory_rate":
                res = memory.rss_at_rate(procs, bindir, tmp, p["rate"], p["seconds"])
            elif name == "recorder":
                res = recorder.run(procs, bindir, tmp, p["rounds"], p["seconds"], p["idle_s"], p["job_s"], monitor)
            elif name == "export":
                res = memory.run(procs, tmp, 0, p["events"], do_rss=False, do_export=True)["export"]
            elif name == "stop":
                res = stop.run(procs, bindir, tmp, p["busy"], p["signals"])
            elif name == "nodes":
                res = job_nodes.run(p)
            res["elapsed_s"] = time.monotonic() - t0
            res["loadavg_before"] = load0
            res["loadavg_after"] = loadavg()
            res["foreign_tracers_seen"] = monitor.foreign_during(t0, time.monotonic())
            results[name] = res
            results["runs"][name] = {"command": cmd, "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                                     "quick": args.quick}
            _save(out_path, results)
    except KeyboardInterrupt:
        log("interrupted: stopping what was started")
        return 130
    finally:
        procs.cleanup()
        monitor.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    results["last_elapsed_s"] = time.time() - started
    _save(out_path, results)
    log(f"figures written to {out_path} ({time.time() - started:.0f} s)")
    text = report.render(results, os.path.relpath(out_path, ROOT))
    _write_markdown(md_path, text)
    return 0


def _save(path: str, results: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1, default=str)
    os.replace(tmp, path)


def _write_markdown(path, text: str) -> None:
    if path is None:
        print(text)
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    log(f"rendered {path}")


if __name__ == "__main__":
    sys.exit(main())
