"""Who used the GPUs, how much, and who wasted them: the analysis behind `gpu-report`.

From the recorder's periodic NVML samples (pyimpact.collect.gpu_history):

* per GPU and per process / job / user: **GPU-seconds** of utilisation
  (Σ utilisation × sample period: 1 GPU-second = one GPU fully busy for one
  second), **VRAM-hours** (Σ memory held × period, in GiB-hours), peak VRAM;
* **sustained hogs**: one holder at or above ``hog_pct`` (80 %) for longer
  than ``hog_s`` (10 min) without a break;
* **idle holders**: memory held (at least ``idle_min_bytes``) at or below
  ``idle_pct`` (≈0 %) for longer than ``idle_s`` (1 h): the zombie GPU jobs
  (a notebook kernel, a hung rank) that waste the most;
* **fair-share violations** against shares from a small config file
  ("user alice 30% of gpu 0"): the share of the GPU's time used vs allowed;
* CPU seconds and peak RSS per job, from the same history, GPU or not.

A sample stands for the time to the next sample of the same GPU, capped at
twice the recorder's period, so a gap (the recorder was stopped) counts for
nothing instead of everything. Pure: no I/O, no clock.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ...jsondoc import json_field, to_json

GiB = float(1 << 30)
BY = ("process", "job", "user")


@dataclass(frozen=True)
class Thresholds:
    hog_pct: float = 80.0
    hog_s: float = 600.0
    idle_pct: float = 2.0
    idle_s: float = 3600.0
    idle_min_bytes: int = 256 << 20


@dataclass(frozen=True)
class Share:
    kind: str           # user | job
    name: str           # a user name, or a substring of the job's command
    device: Optional[int]   # None: every GPU
    pct: float


_SHARE = re.compile(r"^(user|job)\s+(\S+)\s+(\d+(?:\.\d+)?)\s*%(?:\s+of\s+gpu\s*(\d+|all))?\s*$", re.IGNORECASE)


def parse_shares(text: str) -> List[Share]:
    """Lines like ``user alice 30% of gpu 0``, ``job train.py 50%`` (all GPUs);
    ``#`` starts a comment. Raises ValueError naming the bad line."""
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = _SHARE.match(line)
        if not m or not 0 <= float(m.group(3)) <= 100:
            raise ValueError(f"line {n}: {raw.strip()!r} (expected e.g. 'user alice 30% of gpu 0')")
        dev = m.group(4)
        out.append(Share(kind=m.group(1).lower(), name=m.group(2), pct=float(m.group(3)),
                         device=None if dev is None or dev.lower() == "all" else int(dev)))
    return out


@dataclass
class Usage:
    key: str
    device: int
    gpu_seconds: float = 0.0
    vram_gib_hours: float = 0.0
    peak_vram_bytes: int = 0
    mean_util_pct: float = 0.0
    seconds_seen: float = 0.0
    user: str = ""


@dataclass
class DeviceUsage:
    device: int
    name: str
    gpu_seconds: float = 0.0
    vram_gib_hours: float = 0.0
    peak_vram_bytes: int = 0
    mem_total_bytes: Optional[int] = None
    mean_util_pct: float = 0.0
    seconds_covered: float = 0.0


@dataclass
class Finding:
    kind: str               # hog | idle | fair-share
    device: int
    who: str
    start_ns: int
    end_ns: int
    detail: str
    recommendation: str
    figures: dict = field(default_factory=dict)


@dataclass
class JobCpu:
    job: str
    user: str
    cpu_seconds: float
    peak_rss_bytes: int
    max_procs: int


@dataclass
class UsageReport:
    start_ns: int
    end_ns: int
    by: str
    gpu_available: bool
    gpu_reason: str
    interval_s: Optional[float]
    devices: List[DeviceUsage]
    usage: List[Usage]
    findings: List[Finding]
    jobs_cpu: List[JobCpu]
    series: Dict[str, List[Tuple[int, int, float, int]]] = json_field(default_factory=dict, skip=True)  # key -> (t, dev, util, mem): the chart's
    schema: str = field(default="pyimpact.gpu-report/1", init=False)

    def to_dict(self) -> dict:
        return to_json(self)


def _key(row: dict, by: str) -> str:
    return row["process"] if by == "process" else row["job"] if by == "job" else row["user"]


def _periods(times: List[int], interval_s: Optional[float]) -> Dict[int, float]:
    """t -> seconds that sample stands for."""
    cap = 2 * interval_s if interval_s else None
    out = {}
    for a, b in zip(times, times[1:] + [None]):
        dt = (b - a) / 1e9 if b is not None else (interval_s or 0.0)
        out[a] = min(dt, cap) if cap else dt
    return out


def _runs(points: List[Tuple[int, float, bool]], max_gap_ns: int) -> List[Tuple[int, int, List[float]]]:
    """Maximal runs of consecutive points where the flag holds (no gap above max_gap_ns)."""
    runs, cur, last_t = [], None, None
    for t, value, ok in points:
        if ok and cur is not None and t - last_t <= max_gap_ns:
            cur[1] = t
            cur[2].append(value)
        elif ok:
            if cur:
                runs.append(tuple(cur))
            cur = [t, t, [value]]
        else:
            if cur:
                runs.append(tuple(cur))
            cur = None
        last_t = t
    if cur:
        runs.append(tuple(cur))
    return runs


def _h(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def analyse_usage(data, by: str = "job", thresholds: Thresholds = Thresholds(),
                  shares: Optional[List[Share]] = None) -> UsageReport:
    if by not in BY:
        raise ValueError(f"by must be one of {BY}")
    th = thresholds
    interval = data.interval_s
    devices: Dict[int, DeviceUsage] = {}
    dev_times: Dict[int, List[int]] = {}
    for r in data.devices:
        dev_times.setdefault(r["device"], []).append(r["t_ns"])
    for r in data.procs:
        dev_times.setdefault(r["device"], []).append(r["t_ns"])
    periods = {d: _periods(sorted(set(ts)), interval) for d, ts in dev_times.items()}
    for r in data.devices:
        d = devices.setdefault(r["device"], DeviceUsage(device=r["device"], name=r["name"]))
        dt = periods[r["device"]].get(r["t_ns"], 0.0)
        util = r["util_pct"] or 0.0
        d.gpu_seconds += util / 100 * dt
        d.vram_gib_hours += (r["mem_used"] or 0) / GiB * dt / 3600
        d.peak_vram_bytes = max(d.peak_vram_bytes, r["mem_used"] or 0)
        d.mem_total_bytes = r["mem_total"] or d.mem_total_bytes
        d.seconds_covered += dt
    for d in devices.values():
        d.mean_util_pct = 100 * d.gpu_seconds / d.seconds_covered if d.seconds_covered else 0.0

    usage: Dict[Tuple[str, int], Usage] = {}
    series: Dict[str, List[Tuple[int, int, float, int]]] = {}
    # per key and device and time: several processes of one job/user add up
    acc: Dict[Tuple[str, int, int], List[float]] = {}
    users: Dict[str, str] = {}
    for r in data.procs:
        k = _key(r, by)
        users.setdefault(k, r["user"])
        a = acc.setdefault((k, r["device"], r["t_ns"]), [0.0, 0])
        a[0] += r["sm_util_pct"] or 0.0
        a[1] += r["mem_bytes"] or 0
    for (k, dev, t), (util, mem) in sorted(acc.items(), key=lambda x: x[0][2]):
        util = min(util, 100.0)
        dt = periods[dev].get(t, 0.0)
        u = usage.setdefault((k, dev), Usage(key=k, device=dev, user=users.get(k, "")))
        u.gpu_seconds += util / 100 * dt
        u.vram_gib_hours += mem / GiB * dt / 3600
        u.peak_vram_bytes = max(u.peak_vram_bytes, int(mem))
        u.seconds_seen += dt
        series.setdefault(k, []).append((t, dev, util, int(mem)))
    for u in usage.values():
        u.mean_util_pct = 100 * u.gpu_seconds / u.seconds_seen if u.seconds_seen else 0.0

    findings: List[Finding] = []
    max_gap = int(2 * (interval or 60) * 1e9)
    for k, pts in series.items():
        for dev in sorted({p[1] for p in pts}):
            mine = [(t, util, mem) for t, d, util, mem in pts if d == dev]
            # a run lasts until the next sample (which broke it): add one period
            hog = [(t, util, util >= th.hog_pct) for t, util, _ in mine]
            for start, end, vals in _runs(hog, max_gap):
                span = (end - start) / 1e9 + (interval or 0)
                if span > th.hog_s:
                    mean = sum(vals) / len(vals)
                    findings.append(Finding(
                        kind="hog", device=dev, who=k, start_ns=start, end_ns=end,
                        detail=f"kept GPU {dev} at {mean:.0f} % (>= {th.hog_pct:g} %) for {_h(span)}",
                        recommendation=(f"if others wait for GPU {dev}, queue this {by} (a scheduler, MIG or MPS) or "
                                        "ask its owner to share; if it should not be this busy, check it is not "
                                        "spinning (pyimpact diagnose PID)"),
                        figures={"mean_util_pct": round(mean, 1), "seconds": round(span, 1)}))
            idle = [(t, mem, mem >= th.idle_min_bytes and util <= th.idle_pct) for t, util, mem in mine]
            for start, end, vals in _runs(idle, max_gap):
                span = (end - start) / 1e9 + (interval or 0)
                if span > th.idle_s:
                    gib = max(vals) / GiB
                    wasted = sum(vals) / len(vals) / GiB * span / 3600
                    findings.append(Finding(
                        kind="idle", device=dev, who=k, start_ns=start, end_ns=end,
                        detail=(f"held {gib:.1f} GiB of GPU {dev} at <= {th.idle_pct:g} % utilisation for "
                                f"{_h(span)} ({wasted:.1f} GiB-hours idle)"),
                        recommendation=(f"free it: end this {by} if it is forgotten (an idle notebook kernel, a "
                                        "hung rank) or release its cache (torch.cuda.empty_cache()); "
                                        "`pyimpact kill-preview PID` shows what stopping it loses"),
                        figures={"peak_vram_bytes": int(max(vals)), "seconds": round(span, 1),
                                 "idle_gib_hours": round(wasted, 2)}))

    period_s = max(0.0, (data.end_ns - data.start_ns) / 1e9)
    for share in shares or []:
        for dev, d in sorted(devices.items()):
            if share.device is not None and share.device != dev:
                continue
            covered = d.seconds_covered or period_s
            used_s = 0.0
            acc2: Dict[int, float] = {}
            for r in data.procs:
                if r["device"] != dev:
                    continue
                match = r["user"] == share.name if share.kind == "user" else share.name in r["job"]
                if match:
                    acc2[r["t_ns"]] = min(100.0, acc2.get(r["t_ns"], 0.0) + (r["sm_util_pct"] or 0.0))
            for t, util in acc2.items():
                used_s += util / 100 * periods[dev].get(t, 0.0)
            used_pct = 100 * used_s / covered if covered else 0.0
            if used_pct > share.pct:
                label = f"{share.kind} {share.name}"
                findings.append(Finding(
                    kind="fair-share", device=dev, who=label, start_ns=data.start_ns, end_ns=data.end_ns,
                    detail=f"used {used_pct:.0f} % of GPU {dev}'s time, allowed {share.pct:g} %",
                    recommendation=(f"{label} is over its share of GPU {dev} by {used_pct - share.pct:.0f} points: "
                                    "lower its priority in the scheduler, cap it (MPS active-thread percentage, "
                                    "a MIG slice), or change the share if it is meant"),
                    figures={"used_pct": round(used_pct, 1), "allowed_pct": share.pct,
                             "gpu_seconds": round(used_s, 1)}))

    jobs: Dict[str, JobCpu] = {}
    for r in data.jobs:
        k = r["user"] if by == "user" else r["job"]
        j = jobs.setdefault(k, JobCpu(job=k, user=r["user"], cpu_seconds=0.0, peak_rss_bytes=0, max_procs=0))
        j.cpu_seconds += r["cpu_s"]
        j.max_procs = max(j.max_procs, r["nprocs"])
    # peak RSS: per key and time, summed over jobs of one key
    rss: Dict[Tuple[str, int], int] = {}
    for r in data.jobs:
        k = r["user"] if by == "user" else r["job"]
        rss[(k, r["t_ns"])] = rss.get((k, r["t_ns"]), 0) + r["rss_bytes"]
    for (k, _t), v in rss.items():
        jobs[k].peak_rss_bytes = max(jobs[k].peak_rss_bytes, v)

    findings.sort(key=lambda f: ({"idle": 0, "hog": 1, "fair-share": 2}[f.kind], f.device, f.start_ns))
    return UsageReport(start_ns=data.start_ns, end_ns=data.end_ns, by=by, gpu_available=data.gpu_available,
                       gpu_reason=data.gpu_reason, interval_s=interval,
                       devices=[devices[k] for k in sorted(devices)],
                       usage=sorted(usage.values(), key=lambda u: (u.device, -u.gpu_seconds, u.key)),
                       findings=findings,
                       jobs_cpu=sorted(jobs.values(), key=lambda j: -j.cpu_seconds),
                       series=series)
