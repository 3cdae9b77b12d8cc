"""Benchmark 7: what the always-on recorder (`pyimpact record`) costs.

(a) Per syscall it does not record: the getppid() loop of benchmark 1 (C,
    pinned), untraced (twice a round: the second run against the first is
    the noise) vs with the recorder running in its default mode (fanotify
    and the filesystems' fsync tracepoints: no syscall tracepoint) vs
    `--file-source syscalls` (the fallback: close/fsync/rename syscall
    tracepoints) vs `--no-files`, interleaved shuffled rounds, ratio against
    the first untraced run of the same round. Samples taken while someone
    else's tracer sat on the syscall tracepoints are flagged and left out.
(b) The recorder's own CPU (utime + stime from /proc, as % of one core) and
    RSS over a stretch with nothing started by us ("idle": other people's
    work on a shared machine still makes events), and over a stretch with the
    PyTorch training job of benchmark 3 (DataLoader workers) running beside a
    writer that saves a 4 MiB checkpoint (temporary file, fsync, rename)
    every 2 s.
"""
from __future__ import annotations

import os
import random
import subprocess
import tempfile
import time

from .common import LOOP_CPU, PY, PYIMPACT, Procs, build_c, log, summary

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = ("untraced", "untraced-again", "record", "record-syscalls", "record-no-files")
EXTRA = {"record": [], "record-syscalls": ["--file-source", "syscalls"], "record-no-files": ["--no-files"]}
CLK = os.sysconf("SC_CLK_TCK")

CKPT_WRITER = r"""
import os, sys, time
d = sys.argv[1]
while True:
    tmp = os.path.join(d, "ckpt.pt.tmp")
    with open(tmp, "wb") as f:
        f.write(os.urandom(4 << 20)); f.flush(); os.fsync(f.fileno())
    os.rename(tmp, os.path.join(d, "ckpt.pt"))
    time.sleep(2)
"""


def _start_recorder(procs: Procs, db: str, *extra: str, tries: int = 6):
    """Start `pyimpact record`; a start that fails (a shared machine: someone's test may
    have the kernel headers link away for a moment) is retried."""
    for attempt in range(tries):
        try:
            return _start_once(procs, db, *extra)
        except RuntimeError as err:
            log(f"recorder: start {attempt + 1}/{tries} failed: {err}")
            time.sleep(5)
    raise RuntimeError("the recorder did not start")


def _start_once(procs: Procs, db: str, *extra: str):
    p = procs.spawn(PYIMPACT + ["record", "--db", db, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                    text=True)
    deadline = time.monotonic() + 60
    seen = []
    while time.monotonic() < deadline:
        line = p.stderr.readline()
        if "recorder running" in line:
            p.start_line = line.strip()
            return p
        seen.append(line)
        if not line and p.poll() is not None:
            raise RuntimeError(f"exited {p.returncode}: {''.join(seen)[-500:].strip()}")
    raise RuntimeError("no 'recorder running' within 60 s")


def _stop(procs: Procs, p) -> str:
    procs.finish(p, sig=15, timeout=30)
    return p.stderr.read() if p.stderr else ""


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def loop_sample(procs: Procs, bindir: str, tmp: str, config: str, seconds: float, monitor=None) -> dict:
    rec = None
    if config in EXTRA:
        rec = _start_recorder(procs, os.path.join(tmp, f"loop-{config}.db"), "--no-gpu", *EXTRA[config])
    try:
        loop = procs.spawn(["taskset", "-c", str(LOOP_CPU), build_c("syscall_loop", bindir), str(seconds)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        loop.stdout.readline()
        t0 = time.monotonic()
        loop.stdin.write("go\n")
        loop.stdin.flush()
        line = loop.stdout.readline().split()
        t1 = time.monotonic()
        procs.finish(loop, sig=None, timeout=30)
    finally:
        if rec is not None:
            _stop(procs, rec)
    vals = dict(zip(line[0::2], (int(v) for v in line[1::2])))
    foreign = monitor.foreign_during(t0, t1) if monitor is not None else []
    return {"config": config, "start_line": getattr(rec, "start_line", ""), "ns_per_call": vals["wall_ns"] / vals["calls"],
            "cpu_ns_per_call": vals["cpu_ns"] / vals["calls"], "nivcsw": vals["nivcsw"], "foreign_tracers": foreign,
            "preempted": vals["wall_ns"] > 1.05 * vals["cpu_ns"]}


def quartiles(values) -> list | None:
    """[q1, median, q3] of the values (the spread without its outliers), None if fewer than 2."""
    import statistics

    vals = sorted(float(v) for v in values if v is not None)
    if len(vals) < 2:
        return None
    q = statistics.quantiles(vals, n=4, method="inclusive")
    return [q[0], q[1], q[2]]


def own_cost(procs: Procs, tmp: str, seconds: float, with_job: bool) -> dict:
    """The recorder's CPU and memory over ``seconds`` (default settings: 10 s interval, files on)."""
    rec = _start_recorder(procs, os.path.join(tmp, f"cost-{int(with_job)}.db"))
    job = writer = None
    try:
        if with_job:
            job = procs.spawn([PY, os.path.join(HERE, "train_job.py"), "--seconds", str(seconds + 30)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            job.stdout.readline()
            job.stdin.write("go\n")
            job.stdin.flush()
            ck = tempfile.mkdtemp(dir=tmp)
            writer = procs.spawn([PY, "-c", CKPT_WRITER, ck])
            time.sleep(5)       # the loader's workers started
        c0, t0 = _cpu_ticks(rec.pid), time.monotonic()
        rss_kb = hwm_kb = 0
        end = t0 + seconds
        while time.monotonic() < end and rec.poll() is None:
            time.sleep(min(5.0, max(0.0, end - time.monotonic())))
            rss_kb, hwm_kb = max(rss_kb, _status_kb(rec.pid, "VmRSS")), _status_kb(rec.pid, "VmHWM")
        if rec.poll() is not None:
            raise RuntimeError(f"the recorder exited ({rec.returncode}): {rec.stderr.read()[-2000:]}")
        c1, t1 = _cpu_ticks(rec.pid), time.monotonic()
    finally:
        for p in (writer, job):
            if p is not None:
                procs.kill(p)
                p.wait(10)
        stop_line = _stop(procs, rec)
    return {"seconds": t1 - t0, "cpu_pct_of_core": 100.0 * (c1 - c0) / CLK / (t1 - t0),
            "rss_mb": rss_kb / 1024, "peak_rss_mb": hwm_kb / 1024, "with_job": with_job,
            "recorder_said": stop_line.strip().splitlines()[-1] if stop_line.strip() else ""}


def run(procs: Procs, bindir: str, tmp: str, rounds: int, seconds: float, idle_s: float, job_s: float,
        monitor=None) -> dict:
    samples = []
    for r in range(rounds):
        plan = list(CONFIGS)
        random.shuffle(plan)
        for cfg in plan:
            s = loop_sample(procs, bindir, tmp, cfg, seconds, monitor)
            s["round"] = r
            samples.append(s)
            log(f"recorder round {r + 1}/{rounds} {cfg:16s} {s['ns_per_call']:8.1f} ns/call "
                f"(CPU {s['cpu_ns_per_call']:.1f}){'  foreign tracer' if s['foreign_tracers'] else ''}")
    loop = analyse_loop(samples)
    log(f"recorder: own cost idle for {idle_s:g} s")
    idle = own_cost(procs, tmp, idle_s, with_job=False)
    log(f"recorder: own cost with a training job for {job_s:g} s")
    busy = own_cost(procs, tmp, job_s, with_job=True)
    sources = sorted({s["start_line"].split("file completions: ", 1)[-1].removesuffix(")")
                      for s in samples if s.get("start_line")})
    return {"samples": samples, "rounds": rounds, "seconds": seconds, **loop, "file_sources": sources,
            "idle": idle, "job": busy}


def analyse_loop(samples: list) -> dict:
    """Ratios per configuration against the untraced run of the same round.

    A pair (a configuration's sample, its round's untraced sample) counts when
    neither ran while someone else's tracer sat on the syscall tracepoints (it
    slows every process on the machine); all pairs when fewer than 3 are clean.
    Samples from several runs may be given together (rounds keyed by run)."""
    def key(s):
        return (s.get("run", 0), s["round"])

    base = {key(s): s for s in samples if s["config"] == "untraced"}
    ratios, used, ns, cpu_ns = {}, {}, {}, {}
    for cfg in CONFIGS:
        pairs = [(s, base[key(s)]) for s in samples if s["config"] == cfg and key(s) in base]
        clean = [(m, b) for m, b in pairs if not m["foreign_tracers"] and not b["foreign_tracers"]]
        take = clean if len(clean) >= 3 else pairs
        used[cfg] = {"pairs": len(take), "clean": len(clean) >= 3, "of": len(pairs)}
        ns[cfg] = summary([m["ns_per_call"] for m, _ in take])
        cpu_ns[cfg] = summary([m["cpu_ns_per_call"] for m, _ in take])
        if cfg == "untraced":
            continue
        r = [m["cpu_ns_per_call"] / b["cpu_ns_per_call"] for m, b in take]
        d = [m["cpu_ns_per_call"] - b["cpu_ns_per_call"] for m, b in take]
        ratios[cfg] = {"ratio": summary(r), "added_ns": summary(d), "ratio_quartiles": quartiles(r),
                       "added_quartiles": quartiles(d)}
    return {"pairs_used": used, "ns_per_call": ns, "cpu_ns_per_call": cpu_ns, "vs_untraced": ratios}
