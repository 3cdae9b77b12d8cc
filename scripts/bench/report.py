"""Render BENCHMARKS.md from the results JSON written by scripts/bench.py.

Figures are medians with the min-max range over rounds; every ratio and every
added cost is taken against the untraced run of the same round. The analysis
(why a target is missed, what would close it) lives in scripts/bench/notes.md,
written for the recorded run, and is appended as it is.
"""
from __future__ import annotations

import os

HERE = os.path.dirname(os.path.abspath(__file__))

LABELS = {
    "untraced": "untraced",
    "pyimpact": "`pyimpact trace -p` (default probes)",
    "pyimpact-other": "`pyimpact trace -p OTHER` (this process not traced)",
    "syscount": "`syscount-bpfcc -L -p` (bcc, counts + latency)",
    "syscount-other": "`syscount-bpfcc -L -p OTHER` (this process not traced)",
    "strace-pinned": "`strace -f -c -p`, pinned to the target's CPU",
    "strace": "`strace -f -c -p`, unpinned",
    "floor": "floor: empty `sys_enter` + `sys_exit` programs, attached as pyimpact's (every process pays it)",
}

RATIO_LABELS = {
    "traced_vs_syscount": "traced process: pyimpact's added cost ≤ 0.80 × `syscount -L -p`'s",
    "traced_vs_floor": "traced process: pyimpact's added cost ≤ 2.5 × the floor's",
    "untraced_vs_syscount": "untraced process while another is traced: ≤ 0.80 × syscount's (`-p OTHER`)",
}


def _r(s, scale=1.0, digits=2, unit=""):
    """'median (min–max)' of a summary dict."""
    if not s:
        return "n/a"
    f = f"{{:.{digits}f}}"
    med, lo, hi = (f.format(s[k] * scale) for k in ("median", "min", "max"))
    if s.get("n", 1) <= 1 or lo == hi:
        return f"{med}{unit}"
    return f"{med}{unit} ({lo}–{hi})"


def _met(ok) -> str:
    if ok is None:
        return "not measured"
    return "**met**" if ok else "**not met**"


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def targets(res: dict) -> list:
    lines = ["| # | Target | Measured: median (min–max) | |", "|---|---|---|---|"]
    ov = _get(res, "overhead", "results") or {}
    c_tr = _get(ov, "c", "pyimpact", "added_ns")
    py_tr = _get(ov, "python", "pyimpact", "added_ns")
    c_un = _get(ov, "c", "pyimpact-other", "added_ns")
    sc = _get(ov, "c", "syscount", "added_ns")
    st = _get(ov, "c", "strace-pinned", "added_ns")
    lines.append(f"| 1 | traced process: pyimpact adds ≤ 0.30 µs per syscall | C loop "
                 f"{_r(c_tr, 1e-3, 3, ' µs')}; Python loop {_r(py_tr, 1e-3, 3, ' µs')} (syscount -L "
                 f"{_r(sc, 1e-3, 3, ' µs')}, strace pinned {_r(st, 1e-3, 1, ' µs')}) | "
                 f"{_met(None if c_tr is None else c_tr['median'] <= 300)} |")
    for i, name in enumerate(("traced_vs_syscount", "traced_vs_floor", "untraced_vs_syscount")):
        rc = _get(ov, "c", "ratios", name)
        rp = _get(ov, "python", "ratios", name)
        if rc is None and rp is None:
            continue
        lines.append(f"| 1{'abc'[i]} | {RATIO_LABELS[name]} (issue 14, same rounds) | C loop "
                     f"{_r(_get(rc, 'ratio'), 1, 2, '×')} (CPU time {_r(_get(rc, 'ratio_cpu'), 1, 2, '×')})"
                     + (f"; Python loop {_r(_get(rp, 'ratio'), 1, 2, '×')}" if rp else "")
                     + (" — judged on CPU time (fewer than 3 undisturbed rounds)" if _get(rc, "basis") == "cpu" else "")
                     + f" | {_met(None if rc is None else rc.get('met'))} |")
    lines.append(f"| 2 | untraced process while pyimpact traces another: ≤ 0.16 µs per syscall | C loop "
                 f"{_r(c_un, 1e-3, 3, ' µs')}; Python loop "
                 f"{_r(_get(ov, 'python', 'pyimpact-other', 'added_ns'), 1e-3, 3, ' µs')} | "
                 f"{_met(None if c_un is None else c_un['median'] <= 160)} |")
    tr = res.get("training") or {}
    pct = tr.get("overhead_pct_median_step")
    ab = res.get("training_ab") or {}
    ab_pct = ab.get("overhead_pct_median_step")
    blk = _get(res, "training_blocks", "overhead_pct_median_step")
    judged = blk if blk is not None else pct          # the in-job blocks are above the noise (3c)
    lines.append(f"| 3 | PyTorch training step time, traced vs untraced: ≤ 1 % | "
                 + (f"in one job, traced and untraced blocks (3c): median step {_r(blk, 1, 2, ' %')}; "
                    if blk is not None else "")
                 + f"separate runs: median step "
                 f"{_r(pct, 1, 1, ' %')}; mean step {_r(tr.get('overhead_pct_mean_step'), 1, 1, ' %')}"
                 + (f"; before/after run (3b): {_r(ab_pct, 1, 1, ' %')}, before this change "
                    f"{_r(_get(ab, 'baseline', 'overhead_pct_median_step'), 1, 1, ' %')}" if ab_pct else "")
                 + f" | {_met(None if judged is None else judged['median'] <= 1.0)} |")
    vd = _get(res, "verdict", "targets") or {}
    warm = [(k, _get(v, "warm", "verdict_s")) for k, v in vd.items()]
    cold = [(k, c) for k, v in vd.items() for c in [_get(v, "cold", "verdict_s")] if c is not None]
    unc = [(k, c) for k, v in vd.items() for c in [_get(v, "uncached", "verdict_s")] if c is not None]
    ok4 = None if not warm or any(w is None for _, w in warm) else all(w["median"] <= 2.0 for _, w in warm)
    ok4c = None if not cold else all(c["median"] <= 2.5 for _, c in cold)
    lines.append("| 4 | `diagnose` time to verdict, 1 s window, warm cache: ≤ 2.0 s | "
                 + "; ".join(f"{k} {_r(w, 1, 2, ' s')}" for k, w in warm)
                 + f" | {_met(ok4)} |")
    lines.append("| 4b | the same, cold page cache (issue 14): ≤ 2.5 s | "
                 + "; ".join(f"{k} {_r(c, 1, 2, ' s')}" for k, c in cold)
                 + (" — first start with an empty compiled-probe cache (probes compiled; no target): "
                    + "; ".join(f"{k} {_r(c, 1, 2, ' s')}" for k, c in unc) if unc else "")
                 + f" | {_met(ok4c)} |")
    cap = _get(res, "capacity", "rates") or []
    at50 = next((r for r in cap if r["rate_target"] == 50_000), None)
    bal = [r["balance"] for r in cap]
    skipped = sum(r.get("kernel_skipped_total", 0) for r in cap)
    def lost_split(r):
        lost = r.get("lost") or {}
        return (f"{r['lost_total']} ({lost.get('ringbuf_full', 0)} ring buffer full, "
                f"{lost.get('kernel_skipped', 0)} runs skipped by the kernel, {lost.get('map_full', 0)} map full, "
                f"{lost.get('block_unseen', 0)} block completions no probe saw)")
    def capacity_lost(r):
        # What the rate can cause: a full ring buffer or map, skipped runs, records left at the end.
        # block_unseen is not among them: those completions run no BPF program at any rate (notes).
        lost = r.get("lost") or {}
        return sum(int(lost.get(k, 0)) for k in ("ringbuf_full", "map_full", "kernel_skipped", "undrained"))
    lines.append(f"| 5a | 0 events lost at 50k events/s (to the rate: ring buffer, maps, skipped runs) | lost "
                 f"(pyimpact's count) {'n/a' if at50 is None else lost_split(at50)}; to the rate "
                 f"{'n/a' if at50 is None else capacity_lost(at50)} | "
                 f"{_met(None if at50 is None else capacity_lost(at50) == 0)} |")
    lines.append(f"| 5b | received + lost = generated at every rate | balance per rate "
                 f"{', '.join(f'{b:+d}' for b in bal) or 'n/a'} (kernel-skipped runs read back from bpftool: "
                 f"{skipped} in all) | "
                 f"{_met(None if not cap else all(b == 0 for b in bal))} |")
    mem = res.get("memory") or {}
    peak = mem.get("peak_rss_kb")
    before = (res.get("memory_before") or {}).get("peak_rss_kb")
    rate = res.get("memory_rate") or {}
    lines.append(f"| 6 | peak RSS tracing the training job with `-o t.parquet` for 10 min: ≤ 200 MB | "
                 + ("n/a" if peak is None else
                    f"{peak / 1024:.0f} MB over {mem.get('seconds', 0):g} s ({mem.get('events', 0):,} events); "
                    f"{(mem.get('hwm_kb_after_attach') or 0) / 1024:.0f} MB at its highest once the probes were attached"
                    + (f"; {peak / before:.2f}× the {before / 1024:.0f} MB before (300 s)" if before else "")
                    + (f"; event_gen at a set rate, {rate['events']:,} events: {rate['peak_rss_kb'] / 1024:.0f} MB "
                       "at the end (per-thread aggregates of its short-lived processes, see notes)"
                       if rate.get("peak_rss_kb") else ""))
                 + f" | {_met(None if peak is None else peak <= 200 * 1024)} |")
    ex = res.get("export") or {}
    if ex and "error" not in ex:
        lines.append(f"| 6b | write a {ex['events']:,}-event recording | Parquet {ex['parquet_write_s']:.1f} s "
                     f"({ex['parquet_mb']:.0f} MB), Perfetto JSON {ex['json_write_s']:.1f} s ({ex['json_mb']:.0f} MB); "
                     f"decode {ex['decode_s']:.1f} s | (no target) |")
    if ex and "pftrace_write_s" in ex:
        size_ratio = ex["pftrace_mb"] / ex["json_mb"]
        time_ratio = ex["pftrace_write_s"] / ex["json_write_s"]
        lines.append(f"| 6c | `.pftrace` of the same recording: ≤ 1/5 of the JSON's size and time (same run) | "
                     f"{ex['pftrace_mb']:.0f} MB ({size_ratio:.2f} of the JSON's), {ex['pftrace_write_s']:.1f} s "
                     f"({time_ratio:.2f} of the JSON's) | size {_met(size_ratio <= 0.2)}, time {_met(time_ratio <= 0.2)} |")
    nd = _get(res, "nodes", "sizes") or []
    if nd:
        by = {x["nodes"]: x for x in nd}
        two = by.get(2)
        lines.append("| 16 | `diagnose --job` whole answer for 2 nodes: ≤ 5 s; grows with the slowest node, not the count | "
                     + "; ".join(f"{n} nodes {x['median_wall_s']:.2f} s (slowest node {x['median_slowest_node_s']:.2f} s)"
                                 for n, x in sorted(by.items()))
                     + f" | {_met(None if two is None else two['median_wall_s'] <= 5.0)} |")
    rc = res.get("recorder") or {}
    if rc:
        vs = rc.get("vs_untraced") or {}
        r_files = _get(vs, "record", "ratio")
        r_sys = _get(vs, "record-syscalls", "ratio")
        r_none = _get(vs, "record-no-files", "ratio")
        r_noise = _get(vs, "untraced-again", "ratio")
        idle, job = rc.get("idle") or {}, rc.get("job") or {}
        within = None
        if r_files is not None and r_noise is not None:
            # "no difference beyond noise": the default's median ratio not above the range an
            # untraced run shows against another untraced run of the same round (a cost shows as
            # a higher ratio; a lower one is noise too)
            within = r_files["median"] <= max(r_noise["max"], 1.0)
        lines.append(f"| 7a | getppid loop with `pyimpact record` running vs not: no difference beyond noise | "
                     f"default (fanotify, no syscall tracepoint) {_r(r_files, 1, 3, '×')} against untraced-vs-"
                     f"untraced noise {_r(r_noise, 1, 3, '×')}; `--no-files` {_r(r_none, 1, 3, '×')}; fallback "
                     f"`--file-source syscalls` {_r(r_sys, 1, 3, '×')} | {_met(within)} |")
        cpu = [x.get("cpu_pct_of_core") for x in (idle, job) if x]
        lines.append(f"| 7b | recorder CPU, idle and during a training job: ≤ 0.5 % of a core | idle "
                     f"{idle.get('cpu_pct_of_core', float('nan')):.2f} %, training job "
                     f"{job.get('cpu_pct_of_core', float('nan')):.2f} % | "
                     f"{_met(None if not cpu else max(cpu) <= 0.5)} |")
        rss = [x.get("peak_rss_mb") for x in (idle, job) if x]
        steady = [x.get("rss_mb") for x in (idle, job) if x]
        lines.append(f"| 7c | recorder RSS: ≤ 100 MB | {max(steady) if steady else float('nan'):.0f} MB while "
                     f"recording; {max(rss) if rss else float('nan'):.0f} MB at its peak (VmHWM; the probes are "
                     f"compiled by a loader process that exits) | "
                     f"{_met(None if not steady else max(steady) <= 100)} |")
    return lines


def nodes_section(res: dict) -> list:
    nd = _get(res, "nodes", "sizes") or []
    if not nd:
        return []
    out = ["## Across nodes (16): time of `diagnose PID --job`", "",
           "Simulated nodes (network namespaces with real sshd, `tests/cluster.py`), one rank each of a "
           "torch.distributed gloo job started by torchrun, the last rank stalled. The wall time is the "
           "whole command as the user runs it (ssh fan-out, each node's probes, window, snapshots and "
           "py-spy, the merge); the slowest node's own time is beside it. On this 2-vCPU machine the nodes "
           "share the same two cores (each starts its probes at the same time), so 4 nodes cost more "
           "than 2 here; on real nodes each has its own CPUs and the total follows the slowest node.", "",
           "| nodes | runs | wall: median (each run) | slowest node: median | root found |",
           "|---|---|---|---|---|"]
    for x in nd:
        out.append(f"| {x['nodes']} | {x['runs']} | {x['median_wall_s']:.2f} s ({', '.join(f'{w:.2f}' for w in x['wall_s'])}) "
                   f"| {x['median_slowest_node_s']:.2f} s | {', '.join(x['roots'])} |")
    return out + [""]


def recorder_section(res: dict) -> list:
    rc = res.get("recorder")
    if not rc:
        return []
    out = ["## 7. The always-on recorder (`pyimpact record`)", "",
           f"(a) The C getppid loop of benchmark 1 (pinned), {rc.get('rounds_label') or rc['rounds']} shuffled "
           f"rounds of {rc['seconds']:g} s, each round: untraced twice (the second run against "
           "the first is the noise), with the recorder in its default mode (file completions from fanotify and "
           "the filesystems' fsync tracepoints: no syscall tracepoint), with the fallback `--file-source "
           "syscalls` (close, fsync, fdatasync and rename syscall tracepoints) and with `--no-files`. Ratios are "
           "of the loop thread's CPU time per call against the first untraced run of the same round: median "
           "(min–max), then the quartiles. A pair counts when neither run had another tracer attached to the "
           "syscall tracepoints (*clean*); all pairs when fewer than 3 were clean.", "",
           "| configuration | pairs used | ns per syscall (wall) | ns per syscall (CPU) | × untraced (CPU) | "
           "quartiles of × | added (CPU) |", "|---|---|---|---|---|---|---|"]
    for cfg in ("untraced", "untraced-again", "record", "record-no-files", "record-syscalls"):
        vs = (rc.get("vs_untraced") or {}).get(cfg) or {}
        q = vs.get("ratio_quartiles")
        pu = (rc.get("pairs_used") or {}).get(cfg) or {}
        used = f"{pu.get('pairs', '?')} of {pu.get('of', '?')} ({'clean' if pu.get('clean') else 'all: too few clean'})"
        out.append(f"| {cfg} | {used} | {_r(rc['ns_per_call'].get(cfg), 1, 1)} | "
                   f"{_r(rc['cpu_ns_per_call'].get(cfg), 1, 1)} | "
                   f"{_r(vs.get('ratio'), 1, 3, '×') if vs else '1'} | "
                   f"{' / '.join(f'{v:.3f}' for v in q) if q else '–'} | "
                   f"{_r(vs.get('added_ns'), 1, 1, ' ns') if vs else '–'} |")
    if rc.get("file_sources"):
        out += ["", "Where the recorder said its file completions came from (its start line): "
                + "; ".join(f"`{x}`" for x in rc["file_sources"]) + "."]
    samples = rc.get("samples") or []
    disturbed = sum(1 for x in samples if x.get("foreign_tracers"))
    if samples:
        out += ["", f"Someone else's tracer was attached to the syscall tracepoints during {disturbed} of the "
                f"{len(samples)} samples (load average {rc.get('loadavg_before', ['?'])[0]} before, "
                f"{rc.get('loadavg_after', ['?'])[0]} after): such a tracer slows every syscall of every process "
                "and its pairs are left out when at least 3 clean ones remain. The fallback line shows what the "
                "syscall tracepoints cost every syscall on the machine (the kernel's tracing path, DESIGN.md); the "
                "default mode attaches none."]
    out += ["", "(b) The recorder's own cost (defaults: 10 s samples and commits, file completions on), from "
            "its /proc counters:", "",
            "| stretch | seconds | CPU, % of one core | RSS (most seen) | peak RSS (VmHWM) | the recorder's own count |", "|---|---|---|---|---|---|"]
    for key, label in (("idle", "nothing started by the benchmark (the shared machine's own activity)"),
                       ("job", "training job (2 DataLoader workers) + a 4 MiB checkpoint saved every 2 s")):
        x = rc.get(key) or {}
        if x:
            out.append(f"| {label} | {x['seconds']:.0f} | {x['cpu_pct_of_core']:.2f} % | {x['rss_mb']:.0f} MB | "
                       f"{x['peak_rss_mb']:.0f} MB | {x.get('recorder_said', '').replace('|', '/')} |")
    out += ["", "Signals: a stretch whose count of signals is in the tens of thousands ran beside someone else's "
            "signal storm (on this shared machine a test program sending about 5,000 SIGUSR1 a second, which "
            "cost the recorder up to 12 % of a core while it stored each one; since schema 2 the kernel side "
            "keeps the first 4 a second of each sender, target and signal and counts the rest). Without a storm, the CPU is mostly the handling of exec events "
            "(a profile with py-spy): each reads the new program's /proc/PID/environ for an allow-listed "
            "scheduler job id under a deadline, and that deadline costs a thread per read "
            "(procfs.read_bounded); the file source (fanotify) is a small part. The peak RSS is the recorder's "
            "own: bcc and LLVM are loaded only by the short-lived loader process that compiles and attaches the "
            "probes and hands their descriptors over (its peak, about 145 MB for a few seconds, is not the "
            "recorder's)."]
    out += ["", "Why the fallback is not free: enabling any syscall tracepoint sends every syscall of every task "
            "through the kernel's syscall-tracing path, whatever the tracepoint's program does (DESIGN.md, "
            "\"Costs measured\"). The default takes closes and renames from fanotify (a filesystem mark costs a "
            "write() one mask test) and fsyncs from the filesystems' own tracepoints, so only those operations "
            "pay anything.", ""]
    return out


def overhead_section(res: dict) -> list:
    ov = res.get("overhead")
    if not ov:
        return []
    out = ["## 1–2. Cost per syscall", "",
           f"A `getppid()` loop pinned to CPU {ov.get('loop_cpu')} times itself from inside "
           f"(CLOCK_MONOTONIC around the loop), {ov['seconds']:g} s per sample, {ov['rounds']} rounds; every "
           "round runs every configuration of both loops once, in a new shuffled order. *Added* and *×* are "
           "against the untraced run of the same loop in the same round. *CPU* is the same figure from the "
           "loop thread's CPU time (insensitive to the loop being preempted by other work on the machine; "
           "not meaningful for strace, whose cost is mostly the tracee waiting). *Count check*: the tool's own "
           "count of getppid calls over the loop's.", ""]
    for kind, title in (("c", "C loop (`scripts/bench/c/syscall_loop.c`)"), ("python", "Python loop (`os.getppid()`)")):
        r = (ov.get("results") or {}).get(kind)
        if not r:
            continue
        out += [f"### {title}", "",
                "| configuration | ns per syscall | added per syscall | × untraced | added, CPU time | count check | rounds used (disturbed) |",
                "|---|---|---|---|---|---|---|"]
        u = r["untraced"]
        out.append(f"| untraced | {_r(u['ns_per_call'], 1, 1)} | – | 1 | – | – | – |")
        for cfg, x in r.items():
            if cfg in ("untraced", "ratios"):
                continue
            cc = x.get("tool_count_over_loop_calls")
            out.append(f"| {LABELS.get(cfg, cfg)} | {_r(x['ns_per_call'], 1, 1)} | "
                       f"{_r(x['added_ns'], 1e-3, 3, ' µs')} | {_r(x['ratio'], 1, 2, '×')} | "
                       f"{_r(x['added_cpu_ns'], 1e-3, 3, ' µs')} | {_r(cc, 1, 3) if cc else '–'} | "
                       f"{x['rounds_used']} ({x['rounds_disturbed']}) |")
        out.append("")
        rt = r.get("ratios") or {}
        if rt:
            out += ["Ratios of added cost, each taken within one round (numerator and denominator against that "
                    "round's untraced run), median (min–max) over the rounds in which none of the three samples "
                    "was disturbed:", "",
                    "| ratio | target | from wall time | from CPU time | rounds used (disturbed) | judged on | |",
                    "|---|---|---|---|---|---|---|"]
            for name, x in rt.items():
                out.append(f"| {x['numerator']} / {x['denominator']} | ≤ {x['target']:g} | {_r(x['ratio'], 1, 2, '×')} | "
                           f"{_r(x['ratio_cpu'], 1, 2, '×')} | {x['rounds_used']} ({x['rounds_disturbed']}) | "
                           f"{'CPU time' if x.get('basis') == 'cpu' else 'wall time'} | {_met(x.get('met'))} |")
            kinds = {s.get("syscall_tp_btf") for s in ov.get("samples", []) if s.get("loop") == kind
                     and s.get("config") == "pyimpact"} - {None}
            floor_kinds = {s.get("floor_kind") for s in ov.get("samples", []) if s.get("loop") == kind
                           and s.get("config") == "floor"} - {None}
            if kinds or floor_kinds:
                out += ["", "pyimpact's syscall programs ran as "
                        + ", ".join("BTF-typed raw tracepoints (tp_btf)" if k else "plain raw tracepoints"
                                    for k in sorted(kinds))
                        + "; the floor's as " + ", ".join(sorted(floor_kinds)) + "."]
            out.append("")
    c = (ov.get("results") or {}).get("c", {}).get("pyimpact", {})
    if c:
        out += ["### Start and stop of `pyimpact trace` (issue 2)", "",
                "| | median (min–max) |", "|---|---|",
                f"| command start → probes attached, as the command reports it (`probes_attached_after_s`) | "
                f"{_r(c.get('attach_reported_s'), 1, 2, ' s')} |",
                f"| command spawned → its \"probes attached\" line seen, from outside (Python start-up included) | "
                f"{_r(c.get('ready_s'), 1, 2, ' s')} |",
                f"| detaching the probes (`probes detached in`) | {_r(c.get('detach_s'), 1, 2, ' s')} |",
                f"| Ctrl-C → process exited (summary printed, then detach) | {_r(c.get('stop_to_exit_s'), 1, 2, ' s')} |",
                ""]
    return out


def training_section(res: dict) -> list:
    tr = res.get("training")
    if not tr:
        return []
    runs = tr.get("runs", [])
    first = runs[0] if runs else {}
    out = ["## 3. A PyTorch training job", "",
           f"`scripts/bench/train_job.py`: an MLP on synthetic data, DataLoader with "
           f"{first.get('workers', 2)} worker processes, {first.get('torch_threads', '?')} intra-op threads, "
           f"{tr['warmup']} warm-up steps then {tr['steps']} measured; {tr['rounds']} rounds, untraced and "
           "traced in shuffled order. The DataLoader workers are forked after the probes attach, so "
           "pyimpact follows them.", "",
           "| | median (min–max) over rounds |", "|---|---|",
           f"| untraced, median step | {_r(tr.get('untraced_median_step_ms'), 1, 2, ' ms')} |",
           f"| traced, median step | {_r(tr.get('traced_median_step_ms'), 1, 2, ' ms')} |",
           f"| **traced vs untraced, median step** | **{_r(tr.get('overhead_pct_median_step'), 1, 2, ' %')}** |",
           f"| traced vs untraced, mean step (sensitive to stalls from other work on the machine) | "
           f"{_r(tr.get('overhead_pct_mean_step'), 1, 2, ' %')} |",
           f"| events recorded per run | {_r(tr.get('events_per_run'), 1, 0)} |",
           f"| pyimpact's own CPU time per run | {_r(tr.get('tracer_cpu_s_per_run'), 1, 2, ' s')} |", ""]
    return out


def training_blocks_section(res: dict) -> list:
    tb = res.get("training_blocks")
    if not tb:
        return []
    cmd = (res.get("runs", {}).get("training_blocks") or {}).get("command", "")
    def row(i, b):
        med = "–" if b.get("median_step_s") is None else f"{b['median_step_s'] * 1e3:.3f} ms"
        return f"| {i + 1} | {b['config']} | {b['steps']} | {med} | {b.get('events', '')} |"
    rows = [row(i, b) for i, b in enumerate(tb.get("blocks", []))]
    return ["### 3c. Traced and untraced blocks inside one job", "",
            f"One job ({tb.get('workers')} DataLoader workers, {tb.get('torch_threads')} intra-op threads) trains "
            f"throughout; `pyimpact trace -p PID --json` is attached for a block of {tb['block_s']:g} s, detached, "
            f"the job is left alone for {tb['block_s']:g} s, and so on: {tb['pairs']} pairs in ABBA order, steps "
            f"taken by their end times from {tb['settle_s']:g} s after the attach (or the tracer's exit). Separate "
            "runs (above) differ from each other by more than the tracer costs; blocks of one job do not. "
            "Target 3 is judged on this figure. "
            f"Command: `{cmd}`.", "",
            "| | median (min–max) over pairs |", "|---|---|",
            f"| untraced block, median step | {_r(tb.get('untraced_median_step_ms'), 1, 3, ' ms')} |",
            f"| traced block, median step | {_r(tb.get('traced_median_step_ms'), 1, 3, ' ms')} |",
            f"| **traced vs untraced, median step, per pair** | **{_r(tb.get('overhead_pct_median_step'), 1, 2, ' %')}** |",
            f"| steps per block | {_r(tb.get('steps_per_block'), 1, 0)} |", "",
            "| block | config | steps | median step | events |", "|---|---|---|---|---|"] + rows + [""]


def training_ab_section(res: dict) -> list:
    ab = res.get("training_ab")
    if not ab or "baseline" not in ab:
        return []
    b = ab["baseline"]
    cmd = (res.get("runs", {}).get("training_ab") or {}).get("command", "")
    return ["### 3b. Before and after this change, same rounds", "",
            f"The same job, {ab['rounds']} rounds, each with three runs in shuffled order: untraced, pyimpact "
            f"from this tree, and pyimpact from `{ab.get('baseline_tree')}` (the tree before the ring-buffer "
            f"reader changes, see notes; such a tree is made with `git archive REV pyimpact probes | tar -x -C DIR "
            f"&& mv DIR/probes DIR/pyimpact/`, here REV = 92c099e). Command: `{cmd}`.", "",
            "| | this tree | baseline tree |", "|---|---|---|",
            f"| traced vs untraced, median step | **{_r(ab.get('overhead_pct_median_step'), 1, 2, ' %')}** | "
            f"**{_r(b.get('overhead_pct_median_step'), 1, 2, ' %')}** |",
            f"| traced vs untraced, mean step | {_r(ab.get('overhead_pct_mean_step'), 1, 2, ' %')} | "
            f"{_r(b.get('overhead_pct_mean_step'), 1, 2, ' %')} |",
            f"| traced, median step (untraced: {_r(ab.get('untraced_median_step_ms'), 1, 2, ' ms')}) | "
            f"{_r(ab.get('traced_median_step_ms'), 1, 2, ' ms')} | {_r(b.get('traced_median_step_ms'), 1, 2, ' ms')} |",
            f"| events recorded per run | {_r(ab.get('events_per_run'), 1, 0)} | {_r(b.get('events_per_run'), 1, 0)} |",
            f"| pyimpact's own CPU time per run | {_r(ab.get('tracer_cpu_s_per_run'), 1, 2, ' s')} | "
            f"{_r(b.get('tracer_cpu_s_per_run'), 1, 2, ' s')} |", ""]


def verdict_section(res: dict) -> list:
    vd = res.get("verdict")
    if not vd:
        return []
    out = ["## 4. Time to verdict", "",
           f"`pyimpact diagnose PID --window {vd['window_s']:g}` on a process deadlocked before the command "
           "starts, timed from just before the command is spawned (Python start-up and imports included): "
           "until the `Verdict:` line is on its stdout, and until it has exited (probes detached). Warm: a "
           "discarded run first. Cold: `sync; echo 3 > /proc/sys/vm/drop_caches` before each run. Both load "
           "the probes from the compiled-probe cache (`/var/cache/pyimpact/probes`, filled by the discarded "
           "run). Uncached: page cache warm, an empty compiled-probe cache (a new `PYIMPACT_CACHE_DIR` per run), "
           "as on the first start after an install or a kernel update: the probes are compiled (clang). "
           "The targets after the two deadlocks are real third-party programs in real states "
           "(scripts/bench/real_targets.py; warm runs only).", "",
           "| target | cache | to verdict | to exit | runs | verdict |", "|---|---|---|---|---|---|"]
    for kind, v in vd.get("targets", {}).items():
        for temp in ("warm", "cold", "uncached"):
            x = v.get(temp) or {}
            n = (x.get("verdict_s") or {}).get("n", 0)
            if not n:
                continue
            out.append(f"| {kind} | {temp} | {_r(x.get('verdict_s'), 1, 2, ' s')} | {_r(x.get('exit_s'), 1, 2, ' s')} "
                       f"| {n} | {'; '.join(x.get('verdicts', []))} |")
    ph = [(k, v["phases"]) for k, v in vd.get("targets", {}).items() if v.get("phases")]
    if ph:
        out += ["", "Where the time goes (one more run per real target, with `-o` to keep the recording's own "
                "marks; seconds from the import of the diagnose command; `probes` = load (or compile) and attach, "
                "done in a thread while pandas and the analysis import):", "",
                "| target | imports done | probes attached | window done | related, servers, stacks | diagnosed | probes | "
                "from |",
                "|---|---|---|---|---|---|---|---|"]
        for k, p in ph:
            m = p.get("marks", {})
            out.append(f"| {k} | {m.get('imported', 0):.2f} | {m.get('attached', 0):.2f} | "
                       f"{m.get('window_done', 0):.2f} | {m.get('collected', 0):.2f} | {m.get('diagnosed', 0):.2f} | "
                       f"{p.get('probes', {}).get('compile_attach_s', 0):.2f} | "
                       f"{'cache' if p.get('probes', {}).get('probe_cache_hit') else 'compiled'} |")
        before, after = vd.get("loadavg_before", ["?"])[0], vd.get("loadavg_after", ["?"])[0]
        out += ["", "Reading it: the window starts when the probes are attached, which now happens during the "
                "imports: loading the kept image takes a few bpf() calls (0.03-0.06 s), where compiling took "
                "0.55-0.7 s on an idle machine of this kind and was the longest step before the window. After the "
                "window, following the chains, asking the servers (psql for PostgreSQL, the mariadb client for "
                "MariaDB, one CLIENT LIST over a direct socket for Redis; `pyimpact diagnose PID --timings` prints "
                "these marks, each resolver's own time and where the probes came from) and judging take 0.1-0.5 s. "
                f"The load average of this run was {before} before and {after} after (other work on the same 2 "
                "vCPUs stretches the start-up: with scheduler autogroups each busy session gets an equal share); a "
                "target that loads the CPU itself (redis-benchmark and the server it drives take both vCPUs) "
                "slows the start-up the same way."]
    errs = [(k, v["error"]) for k, v in vd.get("targets", {}).items() if v.get("error")]
    for k, e in errs:
        out.append(f"- {k}: not measured ({e})")
    out.append("")
    return out


def capacity_section(res: dict) -> list:
    cap = res.get("capacity")
    if not cap:
        return []
    out = ["## 5. Event capacity", "",
           f"`scripts/bench/c/event_gen.c` generates rare events at a set rate for {cap['seconds']:g} s each "
           "(72 % futex waits/wakes, 20 % signals caught by a handler, 6 % fork + exit, 2 % O_DIRECT 4 KiB "
           "writes, in pyimpact events) and counts them itself, per kind. `pyimpact trace -p PID --json "
           "--slow-ms 60000` (default 4 MiB ring buffer; the large slow threshold keeps the generator's own "
           "blocking calls out of the count). *Skipped in the kernel*: runs of pyimpact's programs that the "
           "kernel refused (BPF recursion protection: the block-completion interrupt arriving while another "
           "classic-tracepoint BPF program runs on that CPU), read from bpftool while the tracer still runs "
           "as a cross-check (pyimpact counts the same skips in its lost figure, `kernel_skipped`). The lost figure also counts "
           "`block_unseen`: block requests whose completion no probe saw (on this VM, completions that land while its agent's "
           "threads are the current task, where no BPF program runs; see the notes), shown in brackets. "
           "*Balance* = received + lost − generated.", "",
           "| target rate | achieved | generated | received | lost (pyimpact) | skipped in the kernel | balance | pyimpact CPU |",
           "|---|---|---|---|---|---|---|---|"]
    for r in cap.get("rates", []):
        short = {k: r["generated"][k] - r["received"][k] for k in r["generated"] if r["generated"][k] != r["received"][k]}
        out.append(f"| {r['rate_target']:,}/s | {r['rate_achieved']:,.0f}/s | {r['generated_total']:,} | "
                   f"{r['received_total']:,} | {r['lost_total']}"
                   f"{' (block_unseen ' + str(r['lost']['block_unseen']) + ')' if (r.get('lost') or {}).get('block_unseen') else ''}"
                   f" | {r.get('kernel_skipped_total', 0)} | "
                   f"{r['balance']:+d}{_short_text(short)} | "
                   f"{r.get('tracer_cpu_s', 0):.2f} s ({r.get('tracer_cpu_us_per_event', 0):.2f} µs/event) |")
    out.append("")
    return out


def _short_text(short: dict) -> str:
    """Per kind, received fewer (not received: in the lost figure when the
    balance is 0) or more than generated."""
    less = [f"{k} {v}" for k, v in short.items() if v > 0]
    more = [f"{k} {-v}" for k, v in short.items() if v < 0]
    parts = ([f"not received: {', '.join(less)}"] if less else []) + ([f"extra: {', '.join(more)}"] if more else [])
    return f" ({'; '.join(parts)})" if parts else ""


def memory_section(res: dict) -> list:
    mem, ex = res.get("memory"), res.get("export")
    if not mem and not ex:
        return []
    out = ["## 6. Memory and export time", ""]
    if mem:
        peak = (mem.get("peak_rss_kb") or 0) / 1024
        before = res.get("memory_before") or {}
        out += [f"`pyimpact trace -p PID -o out.parquet --json` on the training job for {mem['seconds']:g} s "
                f"({mem['seconds'] / 60:g} min). VmHWM of the pyimpact process, read until it exited (after the "
                "last row group, the summary and the footer were written). The timeline goes to the file while "
                "the trace runs, one row group per batch of events (README, Output files), and the trace never "
                "imports pandas. Target ≤ 200 MB: "
                f"**{'met' if peak and peak <= 200 else 'not met'}**.", "",
                "| | |", "|---|---|",
                f"| peak RSS (VmHWM) | **{peak:.0f} MB** "
                f"(ru_maxrss {(mem.get('ru_maxrss_kb') or 0) / 1024:.0f} MB) |",
                f"| RSS once the probes are attached, before any event | {(mem.get('rss_kb_after_attach') or 0) / 1024:.0f} MB "
                f"(peak so far {(mem.get('hwm_kb_after_attach') or 0) / 1024:.0f} MB; "
                + ("probes from the compiled-probe cache: bcc and LLVM never loaded" if mem.get("probe_cache_hit")
                   else "probes compiled: bcc and LLVM loaded" if mem.get("probe_cache_hit") == 0
                   else "probes' origin not recorded") + ") |",
                f"| largest private (anonymous) RSS seen | {(mem.get('peak_rss_anon_kb') or 0) / 1024:.0f} MB |",
                f"| events | {mem.get('events', 0):,} ({mem.get('events_per_s', 0):,.0f}/s; "
                f"{', '.join(f'{k} {v:,}' for k, v in (mem.get('by_kind') or {}).items())}) |",
                f"| RSS growth while tracing | {mem.get('rss_growth_kb_per_min', 0) / 1024:.2f} MB/min |",
                f"| lost | {mem.get('lost')} |",
                f"| Parquet written | {mem.get('output_mb') or 0:.1f} MB, {mem.get('output_row_groups', '?')} row groups, "
                f"{mem.get('output_rows', '?'):,} rows |" if isinstance(mem.get('output_rows'), int) else
                f"| Parquet written | {mem.get('output_mb') or 0:.1f} MB |",
                f"| exit after the job ended (last batch, summary, footer, detach) | "
                f"{mem.get('exit_after_job_s', 0):.2f} s |",
                f"| load average (1 min) before / at the job's end / after | "
                f"{(mem.get('loadavg_before') or ['?'])[0]} / {(mem.get('loadavg_at_job_end') or ['?'])[0]} / "
                f"{(mem.get('loadavg_after') or ['?'])[0]} |", ""]
        if mem.get("plot"):
            out += [f"![RSS of pyimpact trace over the run]({mem['plot']})", ""]
        rate = res.get("memory_rate") or {}
        if rate.get("peak_rss_kb"):
            steady = rate.get("steady_rss_kb") or {}
            out += [f"The same on `c/event_gen.c` at {rate['rate']:,} events/s for {rate['seconds']:g} s (its futex, "
                    "signal, fork and block-write mix), for the event volume of a 10-minute job on a quiet machine "
                    "whatever the load does to the job's pace:", "",
                    "| | |", "|---|---|",
                    f"| peak RSS (VmHWM) | **{rate['peak_rss_kb'] / 1024:.0f} MB** "
                    f"(once the probes were attached: {(rate.get('hwm_kb_after_attach') or 0) / 1024:.0f} MB) |",
                    f"| RSS while tracing (after the first 10 s) | {steady.get('min', 0) / 1024:.0f}–"
                    f"{steady.get('max', 0) / 1024:.0f} MB |",
                    f"| events | {rate.get('events', 0):,} ({rate.get('events_per_s', 0):,.0f}/s), "
                    f"{rate.get('output_row_groups', '?')} row groups, lost {rate.get('lost')} |",
                    f"| exit after the generator ended | {rate.get('exit_after_end_s', 0):.2f} s |",
                    f"| load average at the end | {(rate.get('loadavg_at_end') or ['?'])[0]} |", ""]
            if rate.get("plot"):
                out += [f"![RSS of pyimpact trace at a set event rate]({rate['plot']})", ""]
        if before.get("peak_rss_kb"):
            out += [f"Before (the whole timeline kept in memory, decoded to a DataFrame and written at the end; "
                    f"{before.get('recorded', 'recorded run')}): {before['peak_rss_kb'] / 1024:.0f} MB peak over "
                    f"{before.get('seconds', 0):g} s ({before.get('events', 0):,} events), "
                    f"{(before.get('hwm_kb_after_attach') or 0) / 1024:.0f} MB once attached.", ""]
    if ex and "error" not in ex:
        out += [f"A {ex['events']:,}-event recording (synthetic raw records, a futex-heavy mix like a training "
                "job's trace) decoded with `pyimpact.timeline.decode_events` and written with `Recording.save` "
                "(the writers `trace -o` uses), in a process of its own:", "",
                "| step | time | size | process peak RSS after it |", "|---|---|---|---|",
                f"| decode to the timeline DataFrame | {ex['decode_s']:.2f} s | {ex['timeline_mb']:.0f} MB in memory "
                f"(raw {ex['raw_mb']:.0f} MB) | {ex['hwm_mb_after_decode']:.0f} MB |",
                f"| write Parquet | {ex['parquet_write_s']:.2f} s | {ex['parquet_mb']:.1f} MB | {ex['hwm_mb_after_parquet']:.0f} MB |",
                f"| write Perfetto JSON | {ex['json_write_s']:.2f} s | {ex['json_mb']:.0f} MB | {ex['hwm_mb_after_json']:.0f} MB |"]
        if "pftrace_write_s" in ex:
            out += [f"| write Perfetto protobuf (`.pftrace`) | {ex['pftrace_write_s']:.2f} s | {ex['pftrace_mb']:.1f} MB | "
                    f"{ex['hwm_mb_after_pftrace']:.0f} MB |"]
        out += [""]
    elif ex:
        out += ["Export failed: " + ex["error"].splitlines()[-1], ""]
    return out


def stop_section(res: dict) -> list:
    st = res.get("stop")
    if not st:
        return []
    out = ["## 7. Stopping a busy trace (SIGTERM, SIGHUP)", "",
           "`pyimpact trace -p PID --slow-ms 0 --json -o out.parquet` on the getppid() loop (every syscall an "
           "event: the ring buffer runs full and the trace grows as fast as it can take events); after the busy "
           "time the trace gets the signal. *Stop* is the time from the signal to the trace's exit: summary "
           f"printed, Parquet written, probes detached. Goal: ≤ {st.get('goal_s', 3):g} s.", "",
           "| signal | busy | events held | lost | stop | rc | file |", "|---|---|---|---|---|---|---|"]
    for r in st.get("rows", []):
        lost = sum((r.get("lost") or {}).values()) if r.get("lost") else None
        out.append(f"| {r['signal']} | {r['busy_s']:g} s | {r['events'] or 0:,} | "
                   f"{'' if lost is None else f'{lost:,}'} | **{r['signal_to_exit_s']:.2f} s** | {r['rc']} | "
                   f"{'%s MB' % r['output_mb'] if r.get('output_written') else 'missing'} |")
    load = st.get("loadavg_before", ["?"])[0]
    out += ["", "What is bounded: the signal is noticed within one poll (≤ 0.1 s); the syscall probes detach at "
            "once (under a millisecond) and the classic tracepoints in the background; the final drain of the "
            "ring buffer has a 1 s deadline, and anything it leaves is counted as lost (`undrained`). With "
            "`-o .parquet` the timeline is written while the trace runs, one row group per batch (section 6), so "
            "the stop decodes and writes only what arrived since the last batch and in the final drain, plus "
            "the footer: it no longer grows with the trace (before, decoding and writing everything held took "
            "about 1.6 s per million events at the stop, and 4 s of busy SIGHUP with 3.3 M events took 8.5 s). "
            f"Load average {load} during the run."]
    return out + [""]


def render(res: dict, json_path: str = "scripts/bench/results.json") -> str:
    m = res.get("machine", {})
    runs = res.get("runs", {})
    when = sorted({v.get("finished", "") for v in runs.values()})
    cmds = sorted({v.get("command", "") for v in runs.values()})
    out = ["# pyimpact benchmarks", "",
           f"Generated by `scripts/bench.py` from `{json_path}`"
           + (" (**--quick run: smoke-test figures, not meaningful**)" if res.get("quick") else "") + ".", "",
           f"- Machine: {m.get('cpus')} vCPU {m.get('cpu')}, {m.get('memory_gib')} GiB, "
           f"{m.get('os')}; kernel {m.get('kernel')}; clocksource {m.get('clocksource')}",
           f"- bcc {m.get('bcc')} (bpfcc-tools {m.get('bpfcc_tools')}), {m.get('strace')}, Python {m.get('python')}, "
           f"torch {m.get('torch')}; pyimpact {m.get('pyimpact_commit')}"
           + (" with uncommitted changes" if m.get("pyimpact_dirty") else ""),
           f"- Run: finished {when[0] if when else '?'}" + (f" to {when[-1]}" if len(when) > 1 else "")
           + f"; {', '.join(f'`{c}`' for c in cmds if c)}",
           "- Repeat: `sudo .venv/bin/python scripts/bench.py` (or `sudo make bench`; about 20 minutes; "
           "`--quick` for a smoke test, `--only NAME` for one benchmark)",
           f"- Load average before/after each benchmark: "
           + ", ".join(f"{n} {res[n].get('loadavg_before', ['?'])[0]}/{res[n].get('loadavg_after', ['?'])[0]}"
                       for n in ("overhead", "training", "training_blocks", "verdict", "capacity", "memory", "export",
                                 "recorder") if n in res)
           + " (the machine was shared with other people's test runs; see Method)", "",
           "## Targets", ""]
    out += targets(res) + [""]
    out += overhead_section(res) + training_section(res) + training_blocks_section(res) + training_ab_section(res)
    out += verdict_section(res)
    out += capacity_section(res) + memory_section(res) + nodes_section(res) + stop_section(res) + recorder_section(res)
    out += ["## Method and noise", "",
            "- Interleaved, shuffled rounds; each figure is the median over rounds with the min–max range, "
            "and every ratio is taken against the untraced run of the same round.",
            "- The machine is shared. Other people's tracers attached to the syscall tracepoints slow every "
            "process on the machine (their untraced-process cost): a monitor lists BPF attachments (bpftool "
            "perf) every 0.25 s. The syscall loop also reports its thread CPU time, so preemption by other "
            "work can be told from tracing cost. A sample is *disturbed* when a foreign tracer was attached "
            "during it, or (except under strace, where the tracee waits by design) when its wall time exceeds "
            "its CPU time by more than 5 %; a round whose sample or untraced baseline is disturbed is left out "
            "when at least 3 clean rounds remain (the *disturbed* column counts them).",
            "- Per benchmark, the load average before and after is in the header and in the JSON.", ""]
    notes = os.path.join(HERE, "notes.md")
    if os.path.exists(notes):
        with open(notes) as f:
            out += [f.read().rstrip(), ""]
    return "\n".join(out)
