"""Benchmark 4: time to verdict of `pyimpact diagnose PID`.

Targets, deadlocked before the command starts:
  c-deadlock    two pthreads in an AB-BA mutex deadlock (tests/targets/diag_mutex_deadlock.c)
  py-deadlock   two Python threads in an AB-BA threading.Lock deadlock (the
                command also reads Python stacks here)
Real third-party programs in real states (scripts/bench/real_targets.py, the
states of tests/test_diagnose_real.py): an idle nginx master, a redis-cli in
BLPOP, redis-server under redis-benchmark, a psql waiting on a row lock held
by an idle-in-transaction session, a psql in pg_sleep, tar in a tar | gzip
pipeline, a sqlite3 busy handler polling for a lock, rank 0 of a gloo job
whose rank 1 stopped calling collectives (warm runs only).
From just before the command is spawned: when the line "Verdict:" arrives
on its stdout, and when the command has exited (probes detached). Warm: page
cache warm (a discarded run first). Cold: `sync; echo 3 >
/proc/sys/vm/drop_caches` before each run, so Python, pandas and bcc are
read from disk again. Both load the probes from the compiled-probe cache
(collect/probe_cache.py) that the discarded run filled. Uncached: the page
cache warm but an empty compiled-probe cache ($PYIMPACT_CACHE_DIR set to a
new directory for each run), as on the first start after an install or a
kernel update: the probes are compiled.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

from .common import PY, PYIMPACT, ROOT, Procs, build_c, drop_caches, log, summary

DEADLOCK_C = str(ROOT / "tests" / "targets" / "diag_mutex_deadlock.c")   # the same target the diagnose tests use

PY_DEADLOCK = r"""
import threading
a, b = threading.Lock(), threading.Lock()
barrier = threading.Barrier(3)
def take(first, second):
    with first:
        barrier.wait()
        with second:
            pass
t1 = threading.Thread(target=take, args=(a, b), name="take-a-b")
t2 = threading.Thread(target=take, args=(b, a), name="take-b-a")
t1.start(); t2.start()
barrier.wait()
print("ready", flush=True)
t1.join()
"""


def _target(procs: Procs, kind: str, bindir: str) -> subprocess.Popen:
    argv = [build_c("deadlock", bindir, source=DEADLOCK_C)] if kind == "c-deadlock" else [PY, "-c", PY_DEADLOCK]
    proc = procs.spawn(argv, stdout=subprocess.PIPE, text=True)
    if not proc.stdout.readline().startswith("ready"):
        raise RuntimeError(f"{kind} target did not start")
    time.sleep(0.2)     # both threads are asleep on their second lock
    return proc


def one_run(procs: Procs, pid: int, window: float, cold: bool, save: str = "", uncached: bool = False) -> dict:
    if cold:
        drop_caches()
    argv = PYIMPACT + ["diagnose", str(pid), "--window", str(window)] + (["-o", save] if save else [])
    env, empty = None, None
    if uncached:
        empty = tempfile.mkdtemp(prefix="pyimpact-bench-nocache-")
        env = {**os.environ, "PYIMPACT_CACHE_DIR": empty}
    t0 = time.monotonic()
    proc = procs.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    verdict_s, verdict = None, ""
    for line in proc.stdout:
        if verdict_s is None and line.startswith("Verdict:"):
            verdict_s = time.monotonic() - t0
            verdict = line.strip()
    rc = proc.wait()
    exit_s = time.monotonic() - t0
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    if empty:
        shutil.rmtree(empty, ignore_errors=True)
    out = {"cold": cold, "uncached": uncached, "verdict_s": verdict_s, "exit_s": exit_s, "rc": rc, "verdict": verdict,
           "stderr_tail": err.strip()[-300:]}
    if save:
        out["phases"] = phases_of(save)
    return out


def phases_of(path: str) -> dict:
    """Where the time went, from the recording's own marks (seconds since the
    diagnose module was imported) and the probes' compile timings."""
    import json
    import os

    try:
        with open(path) as f:
            meta = json.load(f)["pyimpact"]["metadata"]
        os.unlink(path)
    except (OSError, ValueError, KeyError):
        return {}
    return {"marks": meta.get("diagnose_timings_s", {}), "probes": {k: round(v, 3) for k, v in
                                                                     (meta.get("probe_timings") or {}).items()}}


def run(procs: Procs, bindir: str, warm_runs: int, cold_runs: int, window: float = 1.0,
        targets=("c-deadlock", "py-deadlock"), real=True) -> dict:
    from . import real_targets

    out = {"window_s": window, "targets": {}}
    for kind in targets:
        target = _target(procs, kind, bindir)
        try:
            one_run(procs, target.pid, window, cold=False)          # warm the page cache
            runs = []
            plan = [("warm", False, False)] * warm_runs + [("cold", True, False)] * cold_runs \
                + [("uncached", False, True)] * cold_runs
            for temp, cold, uncached in plan:
                r = one_run(procs, target.pid, window, cold, uncached=uncached)
                r["temp"] = temp
                runs.append(r)
                log(f"verdict {kind:11s} {temp}: verdict "
                    f"{r['verdict_s'] if r['verdict_s'] is None else round(r['verdict_s'], 2)} s, exit "
                    f"{r['exit_s']:.2f} s, {r['verdict'] or r['stderr_tail']}")
        finally:
            procs.finish(target, sig=None, timeout=0.1)
            procs.kill(target)
            target.wait()
        res = {"runs": runs}
        for temp in ("warm", "cold", "uncached"):
            sel = [r for r in runs if r["temp"] == temp]
            res[temp] = {"verdict_s": summary(r["verdict_s"] for r in sel),
                         "exit_s": summary(r["exit_s"] for r in sel),
                         "verdicts": sorted({r["verdict"] for r in sel})}
        out["targets"][kind] = res
    if real:
        import os
        import tempfile

        tmp = tempfile.mkdtemp(prefix="pyimpact-bench-real-")
        for kind, start in real_targets.REAL.items():
            sub = Procs()
            try:
                pid = start(sub, tmp)
                one_run(sub, pid, window, cold=False)          # warm the page cache
                runs = []
                for _ in range(min(warm_runs, 3)):
                    r = one_run(sub, pid, window, False)
                    runs.append(r)
                    log(f"verdict {kind:15s} warm: verdict "
                        f"{r['verdict_s'] if r['verdict_s'] is None else round(r['verdict_s'], 2)} s, exit "
                        f"{r['exit_s']:.2f} s, {r['verdict'] or r['stderr_tail']}")
                ph = one_run(sub, pid, window, False, save=os.path.join(tmp, f"{kind}.json"))
                out["targets"][kind] = {"runs": runs, "real": True, "phases": ph.get("phases", {}),
                                        "warm": {"verdict_s": summary(r["verdict_s"] for r in runs),
                                                 "exit_s": summary(r["exit_s"] for r in runs),
                                                 "verdicts": sorted({r["verdict"] for r in runs})}}
            except Exception as err:   # one target that cannot start does not stop the others
                log(f"verdict {kind}: not measured ({err})")
                out["targets"][kind] = {"real": True, "error": str(err)}
            finally:
                sub.cleanup()
        real_targets.cleanup_pg_dirs()
    return out
