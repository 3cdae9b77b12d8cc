"""What pyimpact's syscall programs cost a traced thread, one checkout
against another, on a machine too busy for bench 1 to tell them apart.

    sudo .venv/bin/python scripts/bench/body_ab.py TREE_A TREE_B [--rounds 60] [--calls 300000]

TREE_A and TREE_B are directories holding a pyimpact package (probes inside,
e.g. a `git worktree` with the pyimpact/probes link, or `git archive`).
Three getppid loops (scripts/bench/c/getppid_bursts.c) are pinned to the
same CPU: one traced by `pyimpact trace -p` from A, one from B, one traced by
neither, with both tracers attached the whole time. Every loop pays both
tracers' dispatch and their untraced path; the traced ones pay one traced
path on top. Round after round, in shuffled order, each loop makes one burst
and reports its thread CPU time per call: A's and B's figure minus the
untraced loop's of the same round is what each tree's programs add for a
traced thread beyond their untraced path (no floor: bench 1 measures that).
The three bursts of a round are a fraction of a second apart, so load on the
machine moves them together; bench 1's samples are seconds apart, with a
tracer start in between.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import LOOP_CPU, PY, Procs, build_c, loadavg, log  # noqa: E402


def quartiles(values):
    q = statistics.quantiles(values, n=4) if len(values) >= 2 else [values[0]] * 3
    return {"median": statistics.median(values), "q1": q[0], "q3": q[2], "n": len(values)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tree_a")
    ap.add_argument("tree_b")
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--calls", type=int, default=300000, help="getppid calls per burst")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    trees = [os.path.abspath(t) for t in (args.tree_a, args.tree_b)]
    for t in trees:
        if not os.path.isdir(os.path.join(t, "pyimpact", "probes")):
            ap.error(f"{t}: no pyimpact/probes inside")
    procs = Procs()
    tmp = tempfile.mkdtemp(prefix="pyimpact-body-ab-")
    tracers = []
    try:
        exe = build_c("getppid_bursts", tmp)
        loops = [procs.spawn(["taskset", "-c", str(LOOP_CPU), exe, str(args.calls)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                 for _ in range(3)]
        pids = [int(loop.stdout.readline().split()[1]) for loop in loops]
        for tree, pid in zip(trees, pids):
            err = open(os.path.join(tmp, f"trace-{pid}.err"), "w+")
            tracers.append((procs.spawn([PY, "-m", "pyimpact", "trace", "-p", str(pid), "--json"], cwd=tree,
                                        env=dict(os.environ, PYTHONPATH=tree), stdout=subprocess.DEVNULL, stderr=err), err))
        for proc, err in tracers:
            deadline = time.monotonic() + 60
            while True:
                err.seek(0)
                if "probes attached" in err.read():
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    err.seek(0)
                    raise SystemExit(f"body_ab: pyimpact trace never attached: {err.read()[-2000:]}")
                time.sleep(0.1)
        load0 = loadavg()
        cpu = {"a": [], "b": [], "untraced": []}
        names = list(cpu)
        for r in range(args.rounds):
            order = list(range(3))
            random.shuffle(order)
            for i in order:
                loops[i].stdin.write("go\n")
                loops[i].stdin.flush()
                cpu[names[i]].append(float(loops[i].stdout.readline().split()[0]))
        added = {k: [x - u for x, u in zip(cpu[k], cpu["untraced"])] for k in ("a", "b")}
        out = {"tree_a": trees[0], "tree_b": trees[1], "rounds": args.rounds, "calls": args.calls,
               "load_before": load0, "load_after": loadavg(),
               "untraced_cpu_ns": quartiles(cpu["untraced"]),
               "a_added_cpu_ns": quartiles(added["a"]), "b_added_cpu_ns": quartiles(added["b"]),
               "b_minus_a_cpu_ns": quartiles([b - a for a, b in zip(added["a"], added["b"])])}
        for k in ("a", "b"):
            f = out[f"{k}_added_cpu_ns"]
            log(f"{k.upper()} ({trees[ord(k) - 97]}): adds {f['median']:.1f} ns per traced getppid "
                f"(quartiles {f['q1']:.1f}-{f['q3']:.1f})")
        d = out["b_minus_a_cpu_ns"]
        log(f"B - A per round: {d['median']:+.1f} ns (quartiles {d['q1']:+.1f} to {d['q3']:+.1f}); untraced loop "
            f"{out['untraced_cpu_ns']['median']:.1f} ns per call; load {load0} -> {out['load_after']}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1)
        return 0
    finally:
        for proc, err in reversed(tracers):
            procs.finish(proc)
            err.close()
        procs.cleanup()


if __name__ == "__main__":
    sys.exit(main())
