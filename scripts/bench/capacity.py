"""Benchmark 5: event capacity.

c/event_gen.c generates rare events (futex waits and wakes, signals, forks
and exits, O_DIRECT block writes) at a set rate and counts what it generated,
per pyimpact event kind, independently of the tracer. `pyimpact trace -p PID
--json` (default buffer) records it; its summary gives the events received per
kind and the events it lost (ring buffer full, map full, block completions no
probe saw, runs the kernel skipped, records left undrained). The check:
received + lost == generated, at every rate.

A classic-tracepoint BPF program is skipped when another one is running on
the same CPU (the block completion interrupt arriving during a signal or fork
probe); pyimpact counts those skips (kernel_skipped), and the harness reads
them again (recursion_misses, per program, from bpftool) while the tracer is
still attached, as a cross-check. Block completions no BPF program was run
for at all (block_unseen: on this VM, those landing while its agent's threads
are current; scripts/bench/unseen_completions.py shows them) are counted by
pyimpact from the entries they leave behind.

The trace runs with --slow-ms 60000 so that the generator's few blocking
calls (reading its start line, reaping its last children) are not reported as
slow syscalls, which would be events the generator did not count.
"""
from __future__ import annotations

import os
import subprocess
import time

from . import tracers
from .common import Procs, bpf_prog_stats, build_c, log

EXTRA = []
KINDS = ("futex_wait", "futex_wake", "signal_generate", "signal_deliver", "fork", "exit", "block_io")


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")


def one_rate(procs: Procs, bindir: str, workdir: str, rate: int, seconds: float) -> dict:
    exe = build_c("event_gen", bindir)
    data = os.path.join("/var/tmp", f"pyimpact-bench-{os.getpid()}.dat")   # O_DIRECT: a real disk, not tmpfs
    gen = procs.spawn([exe, str(rate), str(seconds), data], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pid = int(gen.stdout.readline().split()[1])
        tool = tracers.PyimpactTrace(procs, extra=["--slow-ms", "60000"] + EXTRA, workdir=workdir).start(pid)
        try:
            cpu0 = _cpu_s(tool.proc.pid)
            t0 = time.monotonic()
            gen.stdin.write("go\n")
            gen.stdin.flush()
            line = gen.stdout.readline().split()
            t1 = time.monotonic()
            time.sleep(0.3)     # the reader's next poll takes the last events
            cpu1 = _cpu_s(tool.proc.pid)
            progs = bpf_prog_stats(tool.proc.pid)
            gen.stdin.write("exit\n")
            gen.stdin.flush()
            gen.wait(timeout=60)
            # the tracer ends by itself once its target has exited
            deadline = time.monotonic() + 60
            while tool.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            info = tool.stop(timeout=120)
    finally:
        procs.finish(gen, sig=None, timeout=30)
        if os.path.exists(data):
            os.unlink(data)
    vals = dict(zip(line[1::2], (int(v) for v in line[2::2])))
    generated = {k: vals[k] for k in KINDS}
    generated["exit"] += 1          # the generator's own exit, after its count
    s = info.get("summary") or {}
    by_kind = (s.get("events") or {}).get("by_kind", {})
    received = {k: int(by_kind.get(k, 0)) for k in KINDS}
    # FUTEX_WAKE calls that woke nobody (the generator's wakes: nobody waits)
    # are counted in the kernel, not sent as events (probes/futex.bpf.c).
    idle_wakes = int((s.get("futex") or {}).get("wakes_woke_nobody", 0))
    received["futex_wake"] += idle_wakes
    other = {k: v for k, v in by_kind.items() if k not in KINDS}
    lost = s.get("lost") or {}
    lost_total = int(sum(lost.values()))
    gen_total = sum(generated.values())
    rec_total = sum(received.values())
    res = {
        "rate_target": rate, "seconds": seconds,
        "rate_achieved": gen_total / (vals["elapsed_ns"] / 1e9),
        "late_slots": vals["late_slots"], "skipped_slots": vals["skipped_slots"], "slots": vals["slots"],
        "generated": generated, "generated_total": gen_total,
        "received": received, "received_total": rec_total, "received_other_kinds": other,
        "futex_wakes_counted_in_kernel": idle_wakes,
        "lost": lost, "lost_total": lost_total,
        "balance": rec_total + lost_total - gen_total,          # 0 = every event accounted for
        "kernel_skipped": {tp: v["recursion_misses"] for tp, v in progs.items() if v["recursion_misses"]},
        "kernel_skipped_total": sum(v["recursion_misses"] for v in progs.values()),
        "signals_handled": vals["handler_ran"],
        "tracer_rc": info.get("rc"), "end_reason": s.get("end_reason"),
        "generator_wall_s": t1 - t0,
    }
    res["tracer_cpu_s"] = cpu1 - cpu0
    res["tracer_cpu_us_per_event"] = (cpu1 - cpu0) * 1e6 / max(1, rec_total)
    return res


def run(procs: Procs, bindir: str, workdir: str, rates, seconds: float) -> dict:
    out = []
    for rate in rates:
        r = one_rate(procs, bindir, workdir, rate, seconds)
        out.append(r)
        log(f"capacity {rate:>7d}/s for {seconds:g} s: generated {r['generated_total']}, received "
            f"{r['received_total']}, lost {r['lost_total']}, balance {r['balance']:+d}, skipped in the kernel "
            f"{r['kernel_skipped_total']}, tracer CPU {r['tracer_cpu_s']:.2f} s")
    return {"seconds": seconds, "rates": out}
