"""Pure parts of the act layer: the --if model's rules and its input checks.

The end-to-end checks run on real processes in tests/test_act.py; here the
model's stated rules are pinned with observations built by hand, because
two of them need what this machine cannot have (a GPU-bound job) or a
specific core count (3.2 cores on 2).
"""
from __future__ import annotations

import subprocess
import sys
import os

import pytest

from pyimpact.analyse.impact.what_if import estimate, parse_change, waterfill

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _obs(threads, ncpu=4, others_busy=0.0, window_s=2.0, running=None, gpu_wait=()):
    """Two samples ``window_s`` apart: threads = {tid: (cpu_cores, wait_cores)}."""
    t0, t1 = 1_000_000_000_000, 1_000_000_000_000 + int(window_s * 1e9)
    job = sum(c for c, _ in threads.values())
    ticks = 100 * window_s
    busy = (job + others_busy) / ncpu * ticks

    def rows(end: bool):
        out = {}
        for tid, (cpu, wait) in threads.items():
            out[str(tid)] = [1000, int(cpu * window_s * 1e9) if end else 0, int(wait * window_s * 1e9) if end else 0,
                             "S" if tid in gpu_wait else "R", 0, tid in gpu_wait, "python"]
        return out

    cpu0 = {str(i): [0, 0] for i in range(ncpu)}
    cpu1 = {str(i): [int(busy), int(ticks)] for i in range(ncpu)}
    rq = running if running is not None else 1 + sum(1 for c, _ in threads.values() if c > 0.5)
    return {"online": list(range(ncpu)), "affinity": {}, "quota": None, "autogroup": None,
            "samples": [{"t_ns": t0, "threads": rows(False), "cpu": cpu0, "procs_running": rq},
                        {"t_ns": t1, "threads": rows(True), "cpu": cpu1, "procs_running": rq}]}


def test_waterfill_is_weighted_and_capped():
    assert waterfill([1, 1], [1, 1], 1.0) == pytest.approx([0.5, 0.5])
    assert waterfill([0.2, 1, 1], [1, 1, 1], 1.0) == pytest.approx([0.2, 0.4, 0.4])
    assert waterfill([1, 1], [3, 1], 1.0) == pytest.approx([0.75, 0.25])


def test_a_job_using_3_2_cores_slows_by_at_least_38_percent_on_2():
    obs = _obs({1: (0.8, 0.0), 2: (0.8, 0.0), 3: (0.8, 0.0), 4: (0.8, 0.0)}, ncpu=4)
    w = estimate(obs, parse_change("cpus=0-1", list(range(4))))
    assert w["now"]["cpu_cores"] == pytest.approx(3.2)
    assert w["slowdown_pct"] >= 37.5 and w["rate_factor"] == pytest.approx(2 / 3.2, rel=0.02)
    assert any("schedstat" in b for b in w["basis"])


def test_a_gpu_bound_job_barely_notices_nice():
    # the main thread waits on the GPU driver most of the time; the GPU is busy
    obs = _obs({1: (0.25, 0.05)}, ncpu=2, others_busy=1.9, running=4, gpu_wait=(1,))
    for s in obs["samples"]:
        s["threads"]["1"][5] = True
    gpu = [{"available": True, "processes": [{"pid": 1000, "device": 0, "sm_util_pct": 92.0, "util_samples": 5}]}]
    w = estimate(obs, parse_change("nice=10", [0, 1]), gpu)
    assert w["gpu"]["wait_fraction"] >= 0.9
    assert w["slowdown_pct"] < 5, w
    # the same CPU-bound job without the GPU does slow down under contention
    cpu_only = estimate(_obs({1: (0.6, 0.3)}, ncpu=2, others_busy=1.4, running=4), parse_change("nice=10", [0, 1]))
    assert cpu_only["slowdown_pct"] > 20, cpu_only


def test_bad_if_values_are_refused():
    with pytest.raises(ValueError):
        parse_change("cpus=7-9", [0, 1])
    with pytest.raises(ValueError):
        parse_change("nice=40", [0, 1])
    with pytest.raises(ValueError):
        parse_change("turbo=1", [0, 1])
    assert parse_change("cpu-quota=50%", [0, 1]).quota_cores == 0.5
    p = subprocess.run([sys.executable, "-m", "pyimpact", "kill-preview", str(os.getpid()), "--if", "cpus=abc"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "--if cpus=abc" in p.stderr
