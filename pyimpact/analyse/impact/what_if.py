"""What a change of priority, CPUs or CPU quota would cost a job: `kill-preview PID --if ...`.

Measured, then modelled, basis shown.  The measurement (pyimpact.collect.threads)
gives, per thread of the tree, the CPU it got and the time it waited
runnable (schedstat), so ran + waited = what it wants; the machine's busy
CPUs and run-queue length give what everyone else wants.  The model is the
kernel's fair share: runnable threads on a set of CPUs share them in
proportion to their weight (CFS/EEVDF weights: nice 0 = 1024, x1.25 per
nice step), no thread gets more than one CPU or more than it wants, and a
cgroup quota caps the job's total.  Water-filling that model over the
current configuration and over the changed one gives the CPU the job would
get, and for a CPU-bound job the step rate follows its CPU (a job using 3.2
cores slows by at least 38 % on 2: 2/3.2).

The same model for both sides: the estimate is model(new) / model(now), so a
bias of the model cancels; model(now) is shown beside the measured CPU.

A job that waits on the GPU has slack on the host: if its host threads wait
on the GPU a fraction g of the time (ioctl on /dev/nvidia*, or the GPU's
utilisation), the host can lose up to g of its CPU before the step rate
moves (rate = min(1, cpu_factor / (1 - g))): a GPU-bound job barely notices
``nice``.  Data-loader workers that would get a smaller share than the main
loop starve it (it waits for batches): that is the starvation risk.

Pure: from the thread observation dict and GPU sample dicts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Set

from ...recording import ThreadSample
from ...units import parse_cpu_list

#: kernel/sched/core.c sched_prio_to_weight, nice -20..19
NICE_WEIGHT = [88761, 71755, 56483, 46273, 36291, 29154, 23254, 18705, 14949, 11916, 9548, 7620, 6100, 4904,
               3906, 3121, 2501, 1991, 1586, 1277, 1024, 820, 655, 526, 423, 335, 272, 215, 172, 137, 110, 87,
               70, 56, 45, 36, 29, 23, 18, 15]
IDLE_CORES = 0.02          # threads using less than this are idle: left out


def weight(nice: int) -> int:
    return NICE_WEIGHT[max(-20, min(19, int(nice))) + 20]


@dataclass
class Change:
    kind: str                      # nice | cpus | cpu-quota
    text: str
    nice: Optional[int] = None
    cpus: Optional[List[int]] = None
    quota_cores: Optional[float] = None
    note: str = ""


def parse_change(text: str, online: List[int]) -> Change:
    """'nice=10', 'cpus=0-3', 'cpu-quota=50%' (systemd's CPUQuota: 100% = one
    CPU) -> Change; ValueError with the reason otherwise."""
    key, sep, val = text.partition("=")
    key, val = key.strip().lower(), val.strip()
    if not sep or not val:
        raise ValueError(f"--if wants KEY=VALUE (nice=10, cpus=0-3, cpu-quota=50%), not {text!r}")
    if key == "nice":
        n = int(val)
        if not -20 <= n <= 19:
            raise ValueError("nice must be between -20 and 19")
        return Change("nice", f"nice={n}", nice=n)
    if key in ("cpus", "cpu", "affinity"):
        want = parse_cpu_list(val)
        cpus = [c for c in want if c in online]
        if not cpus:
            raise ValueError(f"none of the CPUs {val} is online (online: {fmt_cpus(online)})")
        note = f"CPUs {fmt_cpus(sorted(set(want) - set(cpus)))} are not online: left out" if len(cpus) < len(want) else ""
        return Change("cpus", f"cpus={fmt_cpus(cpus)}", cpus=cpus, note=note)
    if key in ("cpu-quota", "quota", "cpuquota"):
        pct = float(val.rstrip("%"))
        if not 0 < pct <= 100 * max(1, len(online)) * 4:
            raise ValueError("cpu-quota must be a positive percentage (100% = one CPU)")
        return Change("cpu-quota", f"cpu-quota={pct:g}%", quota_cores=pct / 100)
    raise ValueError(f"unknown --if key {key!r}: use nice=N, cpus=LIST or cpu-quota=P%")


def fmt_cpus(cpus: List[int]) -> str:
    out, run = [], []
    for c in sorted(cpus):
        if run and c == run[-1] + 1:
            run.append(c)
        else:
            if run:
                out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
            run = [c]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def waterfill(demand: List[float], weights: List[float], capacity: float) -> List[float]:
    """Weighted max-min fair shares of ``capacity`` (each capped at its demand)."""
    alloc = [0.0] * len(demand)
    active = [i for i, d in enumerate(demand) if d > 0]
    left = capacity
    while active and left > 1e-12:
        wsum = sum(weights[i] for i in active)
        level = left / wsum
        full = [i for i in active if demand[i] - alloc[i] <= level * weights[i] + 1e-12]
        if not full:
            for i in active:
                alloc[i] += level * weights[i]
            break
        for i in full:
            left -= demand[i] - alloc[i]
            alloc[i] = demand[i]
        active = [i for i in active if i not in full]
    return alloc


@dataclass
class _Thread:
    tid: str
    pid: int
    comm: str
    cpu: float          # cores it got
    wait: float         # cores' worth of time it waited runnable
    nice: int
    gpu_wait: float     # fraction of samples inside an ioctl on /dev/nvidia*
    runnable: float     # fraction of samples in state R

    @property
    def demand(self) -> float:
        return min(1.0, self.cpu + self.wait)


def _row(r) -> ThreadSample:
    """A thread sample's row, typed (a hand-built sample may hold plain lists)."""
    return r if isinstance(r, ThreadSample) else ThreadSample(*r)


def _threads(obs: dict) -> tuple:
    s = obs["samples"]
    first: Dict[str, tuple] = {}
    for sample in s:
        for tid, row in sample["threads"].items():
            first.setdefault(tid, (sample["t_ns"], _row(row)))
    last = s[-1]
    out: List[_Thread] = []
    for tid, raw in last["threads"].items():
        row = _row(raw)
        t0, r0 = first[tid]
        span = (last["t_ns"] - t0) / 1e9
        if span <= 0:
            continue
        seen = [_row(x["threads"][tid]) for x in s if tid in x["threads"]]
        out.append(_Thread(tid, int(row.pid), row.comm, max(0.0, (row.run_ns - r0.run_ns) / 1e9 / span),
                           max(0.0, (row.wait_ns - r0.wait_ns) / 1e9 / span), int(row.nice),
                           sum(1 for x in seen if x.gpu_wait) / len(seen),
                           sum(1 for x in seen if x.state == "R") / len(seen)))
    return out, (s[-1]["t_ns"] - s[0]["t_ns"]) / 1e9


def _others_busy(obs: dict, job: List[_Thread]) -> float:
    s = obs["samples"]
    a, b = s[0].get("cpu", {}), s[-1].get("cpu", {})
    busy = total = 0.0
    for cpu, (bb, bt) in b.items():
        if cpu in a:
            busy += bb - a[cpu][0]
            total += bt - a[cpu][1]
    return max(0.0, (busy / total * (len(b) or 1) if total > 0 else 0.0) - sum(t.cpu for t in job))


def _others(obs: dict, job: List[_Thread], window_s: float) -> tuple:
    """(cores the rest of the machine wants, how it was found)."""
    s = obs["samples"]
    a, b = s[0].get("cpu", {}), s[-1].get("cpu", {})
    busy = total = 0.0
    for cpu, (bb, bt) in b.items():
        if cpu in a:
            busy += bb - a[cpu][0]
            total += bt - a[cpu][1]
    ncpu = len(b) or 1
    busy_cores = busy / total * ncpu if total > 0 else 0.0
    job_cpu = sum(t.cpu for t in job)
    other_busy = max(0.0, busy_cores - job_cpu)
    rq = [x["procs_running"] for x in s if x.get("procs_running") is not None]
    job_r = [sum(1 for r in x["threads"].values() if r[3] == "R") for x in s]
    # procs_running counts the sampler itself, which reads it while running
    waiting = [max(0.0, n - 1 - j) for n, j in zip(rq, job_r)] if rq else []
    other_rq = sum(waiting) / len(waiting) if waiting else 0.0
    return max(other_busy, other_rq), (f"the rest of the machine used {other_busy:.2f} cores (/proc/stat busy "
                                       f"{busy_cores:.2f} minus the job's {job_cpu:.2f}) with {other_rq:.1f} "
                                       "other runnable threads on average (procs_running)")


@dataclass
class _Machine:
    ncpu: int
    others_busy: float        # cores the rest of the machine used
    others_demand: float      # cores it wanted (runnable threads)
    grouped: bool             # the job is one scheduling group (its own autogroup)
    group_weight: float       # that group's weight (autogroup nice)
    others_weight: float = 0.0    # competing weight in nice-0 units, calibrated


def _job_weight(m: _Machine, job: List[_Thread], nices: List[int]) -> float:
    if m.grouped:
        return m.group_weight / 1024.0
    return sum(weight(n) / 1024.0 * min(1.0, t.demand) for t, n in zip(job, nices))


def _model(job: List[_Thread], m: _Machine, cpus: int, nices: List[int], quota: Optional[float]) -> List[float]:
    """CPU each job thread gets on ``cpus`` CPUs with the job's nices and quota.

    The load balancer evens out the weighted load per CPU: with the job held
    on k of n CPUs, the others move off those k until the per-CPU load is
    equal (``others_on``); on them the job and the others share by weight,
    and the others take no more than they want."""
    n = m.ncpu
    wj = _job_weight(m, job, nices)
    if cpus >= n:
        others_on = m.others_weight
    else:
        others_on = min(m.others_weight, max(0.0, m.others_weight * cpus / n - wj * (n - cpus) / n))
    frac_on = others_on / m.others_weight if m.others_weight > 0 else 0.0
    others_want = m.others_demand * frac_on
    share = cpus * wj / (wj + others_on) if wj + others_on > 0 else float(cpus)
    cap = max(share, cpus - min(others_want, cpus - share))
    demand = [t.demand for t in job]
    alloc = waterfill(demand, [float(weight(x)) for x in nices], min(float(cpus), cap))
    if quota is not None and sum(alloc) > quota:
        alloc = waterfill(demand, [float(weight(x)) for x in nices], quota)
    return alloc


def _calibrate(job: List[_Thread], m: _Machine, cpus: int, nices: List[int], quota: Optional[float],
               measured: float) -> str:
    """Set ``m.others_weight`` so the model gives the CPU the job got now."""
    m.others_weight = m.others_busy
    waited = sum(t.wait for t in job)
    if waited < 0.05 * max(measured, 1e-9) or m.others_busy < 0.02:
        return (f"the job hardly waits for a CPU now ({waited:.2f} cores' worth): competition taken as "
                f"the others' busy {m.others_busy:.2f} cores")
    lo, hi = 0.0, 1024.0
    for _ in range(60):
        mid = (lo + hi) / 2
        m.others_weight = mid
        if sum(_model(job, m, cpus, nices, quota)) > measured:
            lo = mid
        else:
            hi = mid
    m.others_weight = (lo + hi) / 2
    return (f"the job waits for a CPU now ({waited:.2f} cores' worth): the competing weight ({m.others_weight:.2f} "
            f"nice-0 threads' worth) is the one that gives the {measured:.2f} cores it got")


def estimate(obs: dict, change: Change, gpu_samples: Optional[List[dict]] = None,
             worker_pids: Optional[Set[int]] = None, root: Optional[int] = None) -> dict:
    """The estimate document (``what_if`` in kill-preview's JSON)."""
    samples = obs.get("samples", [])
    if len(samples) < 2:
        return {"change": change.text, "kind": "unavailable", "reason": "fewer than two thread samples"}
    allthreads, window_s = _threads(obs)
    job = [t for t in allthreads if t.demand >= IDLE_CORES]
    online = obs.get("online") or []
    ncpu = len(online) or 1
    aff = obs.get("affinity", {})
    now_cpus = sorted({c for t in job for c in aff.get(t.tid, online)} & set(online)) or list(online)
    quota_now = (obs.get("quota") or {}).get("cores")
    others, others_basis = _others(obs, job, window_s)
    ag = obs.get("autogroup")
    measured = sum(t.cpu for t in job)
    mach = _Machine(ncpu=ncpu, others_busy=_others_busy(obs, job), others_demand=others, grouped=ag is not None,
                    group_weight=float(weight(ag["nice"])) if ag else 1024.0)
    nices_now = [t.nice for t in job]
    calib = _calibrate(job, mach, len(now_cpus), nices_now, quota_now, measured)
    now = _model(job, mach, len(now_cpus), nices_now, quota_now)
    k_new, nices_new, quota_new = len(now_cpus), nices_now, quota_now
    if change.kind == "nice":
        nices_new = [change.nice] * len(job)
    elif change.kind == "cpus":
        k_new = len(change.cpus)
    elif change.kind == "cpu-quota":
        quota_new = change.quota_cores
    new = _model(job, mach, k_new, nices_new, quota_new)
    cpu_factor = sum(new) / sum(now) if sum(now) > 0 else 1.0

    # the GPU: slack the host has while it waits on the device
    util = _gpu_util(gpu_samples or [], {t.pid for t in allthreads})
    g_ioctl = max((t.gpu_wait for t in allthreads), default=0.0)
    g = max(g_ioctl, (util or 0.0) / 100.0)
    g = min(g, 0.95)
    rate = min(1.0, cpu_factor / (1 - g)) if cpu_factor <= 1 and g > 0 else cpu_factor
    gpu_text = ("no GPU use seen (no /dev/nvidia* waits; NVML "
                + ("shows none for the tree)" if util is None and gpu_samples else "unavailable)"))
    if g > 0:
        gpu_text = (f"the host waits on the GPU {100 * g:.0f}% of the time ("
                    + (f"ioctl on /dev/nvidia* in {100 * g_ioctl:.0f}% of samples" if g_ioctl else "")
                    + ("; " if g_ioctl and util else "") + (f"SM utilisation {util:.0f}%" if util else "")
                    + f"): the host can lose up to {100 * g:.0f}% of its CPU before the step rate moves")

    # data-loader workers vs the main loop
    workers = worker_pids or set()
    idx_w = [i for i, t in enumerate(job) if t.pid in workers]
    idx_m = [i for i, t in enumerate(job) if t.pid not in workers]

    def factor(idx):
        a, b = sum(now[i] for i in idx), sum(new[i] for i in idx)
        return b / a if a > 0 else None

    fw, fm = factor(idx_w), factor(idx_m)
    if not idx_w:
        loader = {"risk": "none", "text": "no busy data-loader/worker processes in the tree"}
    else:
        wcores = sum(job[i].cpu for i in idx_w)
        risk = "low"
        if fw is not None and fm is not None and fw < 0.6 * min(1.0, fm / max(1e-9, 1 - g)):
            risk = "high"
        elif fw is not None and (fw < 0.9 * min(1.0, fm or 1.0) or fw < 0.6):
            risk = "medium"
        loader = {"risk": risk, "workers_cpu_cores": round(wcores, 2),
                  "workers_cpu_factor": round(fw, 3) if fw is not None else None,
                  "main_cpu_factor": round(fm, 3) if fm is not None else None,
                  "text": f"{len({job[i].pid for i in idx_w})} worker process(es) use {wcores:.2f} cores and would "
                          f"get {100 * (fw or 0):.0f}% of that (the main loop {100 * (fm or 0):.0f}%): "
                          + ({"low": "they keep up as well as the loop does",
                              "medium": "batches may arrive late: the loop waits for data part of the time",
                              "high": "the workers fall behind: the main loop waits for batches (starved)"}[risk])}
    busy_threads = sum(1 for t in job if t.demand >= 0.5)
    notes = [change.note] if change.note else []
    risks: List[str] = []
    if change.kind == "cpus" and busy_threads > k_new:
        notes.append(f"{busy_threads} busy threads on {k_new} CPU(s): they time-share")
    if sum(new) < sum(now) - 0.05:
        notes.append("assumes each CPU does as much work per second as now: where CPUs share a physical core "
                     "(SMT siblings; a VM's vCPUs may, unseen from inside) or clock up when fewer are busy, "
                     "a job on fewer cores can run faster than this")
    omp = obs.get("openmp") or {}
    for pid_s, lib in sorted(omp.items()):
        n = sum(1 for t in job if str(t.pid) == pid_s and t.demand >= 0.3)
        if n > 1 and n > k_new:
            risks.append("openmp-oversubscribed")
            notes.append(f"pid {pid_s} runs an OpenMP pool ({lib}) with {n} busy threads on {k_new} CPU(s): its "
                         "threads spin-wait at every barrier, so it can run far slower than this fair-share "
                         f"estimate (several times); set OMP_NUM_THREADS / torch.set_num_threads({k_new}) with it")
    if change.kind == "nice" and ag is not None:
        notes.append(f"autogroup scheduling is on and the job runs in {ag['name']}: nice only shifts CPU among "
                     "the job's own threads; its share against other sessions follows the autogroup's nice "
                     f"(now {ag['nice']}; set it with: echo N > /proc/PID/autogroup)")
    if change.kind == "nice" and others < 0.05 * ncpu:
        notes.append("the machine is otherwise idle: nice only changes the share under contention")
    if change.kind == "cpu-quota":
        notes.append("quota is enforced per 100 ms period: bursty threads are throttled in bursts "
                     "(latency spikes beyond the average shown)")
    slowdown = round(100 * (1 - rate), 1)
    return {
        "change": change.text,
        "applies_to": f"every thread of the tree ({len(allthreads)} threads, {len(job)} busy, "
                      f"{len({t.pid for t in allthreads})} processes)",
        "kind": "estimated",
        "window_s": round(window_s, 2),
        "now": {"cpu_cores": round(measured, 3), "model_cpu_cores": round(sum(now), 3),
                "runqueue_wait_cores": round(sum(t.wait for t in job), 3), "cpus": fmt_cpus(now_cpus),
                "quota_cores": quota_now, "nice": sorted(set(nices_now)),
                "others_cores": round(others, 2)},
        "after": {"cpu_cores": round(measured * cpu_factor, 3), "model_cpu_cores": round(sum(new), 3)},
        "cpu_factor": round(cpu_factor, 3),
        "rate_factor": round(rate, 3),
        "slowdown_pct": slowdown,
        "summary": (f"{change.text}: the job would run at ~{100 * rate:.0f}% of its current rate"
                    + (f" ({slowdown:.0f}% slower)" if slowdown > 0.5 else " (no measurable change)"
                       if abs(slowdown) <= 0.5 else f" ({-slowdown:.0f}% faster)")),
        "gpu": {"wait_fraction": round(g, 3), "text": gpu_text},
        "dataloader": loader,
        "threads": [{"tid": int(t.tid), "pid": t.pid, "comm": t.comm, "cpu_cores": round(t.cpu, 3),
                     "wait_cores": round(t.wait, 3), "nice": t.nice,
                     "cpu_after": round(new[i], 3)} for i, t in enumerate(job)][:32],
        "notes": notes,
        "risks": risks,
        "basis": [
            f"measured over {window_s:.1f} s: each thread's run and run-queue wait time (/proc/PID/task/TID/"
            f"schedstat); the job used {measured:.2f} cores and waited {sum(t.wait for t in job):.2f} cores' worth",
            others_basis,
            calib,
            f"model: weighted fair share of {len(now_cpus)} -> {k_new} CPU(s) between the job ("
            + (f"one group: {ag['name']}" if ag else f"{len(job)} busy threads") + ") and the rest of the "
            "machine, which the load balancer moves off the job's CPUs (nice weights, one CPU per thread at "
            "most, quota caps the job); "
            f"the job's CPU goes x{cpu_factor:.2f} (model {sum(now):.2f} -> {sum(new):.2f} cores)",
            "a CPU-bound job's step rate follows its CPU; " + gpu_text,
        ],
    }


def _gpu_util(gpu_samples: List[dict], pids: set) -> Optional[float]:
    vals = []
    for s in gpu_samples:
        if not s.get("available"):
            continue
        for p in s.get("processes", []):
            if p.get("pid") in pids and p.get("sm_util_pct") is not None:
                vals.append(float(p["sm_util_pct"]))
    return sum(vals) / len(vals) if vals else None
