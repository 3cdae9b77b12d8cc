"""Benchmark 3: a realistic job. train_job.py (PyTorch CPU, MLP, DataLoader
with 2 worker processes) untraced and under `pyimpact trace -p PID --json`
(its workers are forked after the probes attach, so they are followed),
interleaved over shuffled rounds. Per run: the median and the mean step time
of the measured steps (after warm-up). Per round: traced / untraced.
"""
from __future__ import annotations

import json
import os
import random
import subprocess

from . import tracers
from .common import PY, Procs, log, summary

HERE = os.path.dirname(os.path.abspath(__file__))


def _cpu_s(pid: int):
    try:
        with open(f"/proc/{pid}/stat") as f:
            v = f.read().rsplit(")", 1)[1].split()
        return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


def one_run(procs: Procs, config: str, warmup: int, steps: int, workdir: str, tree: str | None = None) -> dict:
    job = procs.spawn([PY, os.path.join(HERE, "train_job.py"), "--warmup", str(warmup), "--steps", str(steps)],
                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pid = int(job.stdout.readline().split()[1])
        tool = tracers.make(config, procs, workdir=workdir, tree=tree).start(pid)
        try:
            cpu0 = _cpu_s(tool.proc.pid) if tool.proc is not None else None
            job.stdin.write("go\n")
            job.stdin.flush()
            res = json.loads(job.stdout.readline())
            job.wait(timeout=600)
            cpu1 = _cpu_s(tool.proc.pid) if tool.proc is not None else None
        finally:
            info = tool.stop()
    finally:
        procs.finish(job, sig=None, timeout=30)
    steps_s = sorted(res["step_s"])
    out = {"config": config, "steps": res["steps"], "median_step_s": steps_s[len(steps_s) // 2],
           "mean_step_s": res["mean_step_s"], "torch_threads": res["torch_threads"], "workers": res["workers"]}
    if config != "untraced":
        s = info.get("summary") or {}
        out["events"] = (s.get("events") or {}).get("total")
        out["by_kind"] = (s.get("events") or {}).get("by_kind")
        out["lost"] = s.get("lost")
        out["followed_processes"] = len(s.get("processes", []))
        if cpu0 is not None and cpu1 is not None:
            out["tracer_cpu_s"] = cpu1 - cpu0
    return out


def run(procs: Procs, workdir: str, rounds: int, warmup: int, steps: int, baseline_tree: str | None = None) -> dict:
    """With baseline_tree, a third configuration runs pyimpact from that
    checkout (before/after comparison of a change) in the same rounds."""
    runs = []
    configs = ["untraced", "pyimpact"] + (["pyimpact-baseline"] if baseline_tree else [])
    for r in range(rounds):
        for config in random.sample(configs, len(configs)):
            x = one_run(procs, config, warmup, steps, workdir, tree=baseline_tree)
            x["round"] = r
            runs.append(x)
            log(f"training round {r + 1}/{rounds} {config:9s} median step {x['median_step_s'] * 1e3:.2f} ms, "
                f"mean {x['mean_step_s'] * 1e3:.2f} ms" + (f", {x.get('events')} events" if config != "untraced" else ""))
    base = {x["round"]: x for x in runs if x["config"] == "untraced"}
    traced = [x for x in runs if x["config"] == "pyimpact"]
    res = {
        "rounds": rounds, "warmup": warmup, "steps": steps, "runs": runs,
        "overhead_pct_median_step": summary((x["median_step_s"] / base[x["round"]]["median_step_s"] - 1) * 100
                                            for x in traced),
        "overhead_pct_mean_step": summary((x["mean_step_s"] / base[x["round"]]["mean_step_s"] - 1) * 100
                                          for x in traced),
        "untraced_median_step_ms": summary(x["median_step_s"] * 1e3 for x in base.values()),
        "traced_median_step_ms": summary(x["median_step_s"] * 1e3 for x in traced),
        "events_per_run": summary(x.get("events") for x in traced),
        "tracer_cpu_s_per_run": summary(x.get("tracer_cpu_s") for x in traced),
    }
    if baseline_tree:
        bl = [x for x in runs if x["config"] == "pyimpact-baseline"]
        res["baseline_tree"] = baseline_tree
        res["baseline"] = {
            "overhead_pct_median_step": summary((x["median_step_s"] / base[x["round"]]["median_step_s"] - 1) * 100
                                                for x in bl),
            "overhead_pct_mean_step": summary((x["mean_step_s"] / base[x["round"]]["mean_step_s"] - 1) * 100
                                              for x in bl),
            "traced_median_step_ms": summary(x["median_step_s"] * 1e3 for x in bl),
            "events_per_run": summary(x.get("events") for x in bl),
            "tracer_cpu_s_per_run": summary(x.get("tracer_cpu_s") for x in bl),
        }
    return res
