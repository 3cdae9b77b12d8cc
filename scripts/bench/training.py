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
import signal
import subprocess
import time

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


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else None


def run_blocks(procs: Procs, workdir: str, pairs: int, block_s: float, settle_s: float = 1.0,
               warmup_s: float = 20.0) -> dict:
    """Benchmark 3c: traced and untraced blocks inside ONE training job.

    Separate runs differ from each other by more than the tracer costs (where
    the workers land, memory layout, the machine's other load: ±20 % between
    rounds above). Here one job trains throughout; the harness attaches
    `pyimpact trace -p PID` (the DataLoader workers already exist and are
    followed as the target's children) for a block, detaches it, leaves the job
    alone for a block, and so on, in ABBA order so a slow drift cancels. Each
    block's steps are taken by their end times, ``settle_s`` after the attach
    (or the tracer's exit) and up to the block's end; per pair the figure is
    median traced step / median untraced step - 1."""
    job = procs.spawn([PY, os.path.join(HERE, "train_job.py"), "--until-signal"],
                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    blocks = []                                     # (config, start, end)
    try:
        pid = int(job.stdout.readline().split()[1])
        job.stdin.write("go\n")
        job.stdin.flush()
        time.sleep(warmup_s)                        # workers forked; the first ~20 s run faster
        order = []
        for i in range(pairs):
            order += ["untraced", "pyimpact"] if i % 2 == 0 else ["pyimpact", "untraced"]
        for config in order:
            if config == "untraced":
                t0 = time.monotonic() + settle_s
                time.sleep(settle_s + block_s)
                blocks.append({"config": config, "start": t0, "end": time.monotonic()})
                continue
            tool = tracers.make(config, procs, workdir=workdir).start(pid)
            t0 = time.monotonic() + settle_s
            time.sleep(settle_s + block_s)
            t1 = time.monotonic()
            info = tool.stop()
            s = info.get("summary") or {}
            blocks.append({"config": config, "start": t0, "end": t1,
                           "events": (s.get("events") or {}).get("total"), "lost": s.get("lost"),
                           "detach_s": info.get("stop_to_exit_s")})
        job.send_signal(signal.SIGUSR1)
        res = json.loads(job.stdout.readline())
        job.wait(timeout=60)
    finally:
        procs.finish(job, sig=None, timeout=30)
    steps = list(zip(res["end_s"], res["step_s"]))
    for b in blocks:
        xs = [dt for end, dt in steps if b["start"] <= end - dt and end <= b["end"]]
        b["steps"] = len(xs)
        b["median_step_s"] = _median(xs)
        log(f"training blocks {b['config']:9s} {len(xs)} steps, median {b['median_step_s'] * 1e3:.3f} ms"
            + (f", {b.get('events')} events" if b["config"] != "untraced" else ""))
    pct = []
    for i in range(0, len(blocks) - 1, 2):
        a, b = blocks[i], blocks[i + 1]
        tr, un = (a, b) if a["config"] == "pyimpact" else (b, a)
        if tr["median_step_s"] and un["median_step_s"]:
            pct.append((tr["median_step_s"] / un["median_step_s"] - 1) * 100)
    return {"pairs": pairs, "block_s": block_s, "settle_s": settle_s, "warmup_s": warmup_s, "blocks": blocks,
            "overhead_pct_median_step": summary(pct),
            "untraced_median_step_ms": summary(b["median_step_s"] * 1e3 for b in blocks
                                               if b["config"] == "untraced" and b["median_step_s"]),
            "traced_median_step_ms": summary(b["median_step_s"] * 1e3 for b in blocks
                                             if b["config"] == "pyimpact" and b["median_step_s"]),
            "steps_per_block": summary(b["steps"] for b in blocks),
            "torch_threads": res["torch_threads"], "workers": res["workers"]}
