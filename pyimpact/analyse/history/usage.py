"""Per-process resource use over time, from whatever a recording holds.

Why a module of its own: the HTML report draws CPU, RSS and GPU over time, and
recordings differ in what they sampled. The best source wins, per series:

- CPU and RSS: the kill-preview samples (about 4 a second, every process of
  the watched tree), else the /proc snapshots taken at the start and the end
  of the window (two points: the mean CPU between them, RSS at each);
- GPU memory and utilisation: the NVML samples (``rec.gpu``), per process.

Pure: a Recording in, plain data out (times in seconds since the recording
started; CPU as % of one core). Each series says where it came from, so the
page can say "measured from 2 /proc snapshots" rather than pretend to a curve.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

Point = Tuple[float, float]


@dataclass
class Series:
    """One quantity of one process over time."""

    pid: int
    label: str                   # "python train.py (1234)": untrusted text, escape when rendering
    points: List[Point] = field(default_factory=list)


@dataclass
class UsageChart:
    """A chart: one quantity, one series per process, and its basis."""

    title: str
    unit: str
    source: str                  # how the points were obtained, or why there are none
    series: List[Series] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(s.points for s in self.series)


def origin_ns(rec) -> int:
    """Time zero: the recording's start, or its first snapshot if that came first."""
    times = [int(s.taken_at_ns) for s in rec.snapshots.values() if s is not None and s.taken_at_ns]
    if rec.start_ns:
        times.append(rec.start_ns)
    return min(times) if times else 0


def short_command(argv: List[str], name: str) -> str:
    """``python train.py --lr 1`` from ``/venv/bin/python /srv/train.py --lr 1``: what fits a legend."""
    if not argv:
        return name
    words = [w.rsplit("/", 1)[-1] if w.startswith(("/", "./", "../")) and not w.endswith("/") else w
             for w in argv]
    return " ".join(words)[:48]


def _labels(rec) -> Dict[int, str]:
    names: Dict[int, str] = {}
    for snap in rec.snapshots.values():
        if snap is None:
            continue
        for pid, p in snap.processes.items():
            names.setdefault(int(pid), f"{short_command(p.cmdline, p.name)} ({pid})")
    return names


def _from_kill_preview(rec, t0: int, labels: Dict[int, str], limit: int):
    observations = (rec.metadata.kill_preview or {}).get("observations", [])
    cpu: Dict[int, List[Point]] = {}
    rss: Dict[int, List[Point]] = {}
    for obs in observations:
        last: Dict[int, Tuple[float, float]] = {}
        for sample in obs.get("samples", []):
            t = (int(sample.get("t_ns", 0)) - t0) / 1e9
            for pid_s, st in (sample.get("procs") or {}).items():
                pid = int(pid_s)
                labels.setdefault(pid, f"{st.get('comm', '?')} ({pid})")
                if st.get("rss") is not None:
                    rss.setdefault(pid, []).append((t, float(st["rss"])))
                if st.get("cpu_s") is not None:
                    cpu_s = float(st["cpu_s"])
                    if pid in last and t > last[pid][0]:
                        pct = max(0.0, (cpu_s - last[pid][1]) / (t - last[pid][0]) * 100.0)
                        cpu.setdefault(pid, []).append((t, pct))
                    last[pid] = (t, cpu_s)
    return cpu, rss


def _from_snapshots(rec, t0: int):
    start, end = rec.snapshots.get("start"), rec.snapshots.get("end")
    cpu: Dict[int, List[Point]] = {}
    rss: Dict[int, List[Point]] = {}
    for snap in (start, end):
        if snap is None:
            continue
        t = (int(snap.taken_at_ns) - t0) / 1e9
        for pid, p in snap.processes.items():
            if p.rss_bytes is not None:
                rss.setdefault(int(pid), []).append((t, float(p.rss_bytes)))
    if start is not None and end is not None and end.taken_at_ns > start.taken_at_ns:
        span = (end.taken_at_ns - start.taken_at_ns) / 1e9
        t_a, t_b = (start.taken_at_ns - t0) / 1e9, (end.taken_at_ns - t0) / 1e9
        for pid, p in end.processes.items():
            was = start.processes.get(pid)
            if was is None or was.start_ticks != p.start_ticks:
                continue
            used = (p.cpu_user_s + p.cpu_system_s) - (was.cpu_user_s + was.cpu_system_s)
            pct = max(0.0, used / span * 100.0)
            cpu[int(pid)] = [(t_a, pct), (t_b, pct)]     # the mean over the window, drawn as a level
    return cpu, rss


def _from_gpu(rec, t0: int, labels: Dict[int, str]):
    mem: Dict[int, List[Point]] = {}
    util: Dict[int, List[Point]] = {}
    reason = ""
    for sample in rec.gpu or []:
        if not sample.get("available"):
            reason = reason or str(sample.get("reason") or "NVML unavailable")
            continue
        t = (int(sample.get("t_ns", 0)) - t0) / 1e9
        per_pid_mem: Dict[int, float] = {}
        per_pid_util: Dict[int, float] = {}
        for p in sample.get("processes") or []:
            pid = int(p.get("pid", 0))
            if p.get("used_memory_bytes") is not None:
                per_pid_mem[pid] = per_pid_mem.get(pid, 0.0) + float(p["used_memory_bytes"])
            if p.get("sm_util_pct") is not None:
                per_pid_util[pid] = per_pid_util.get(pid, 0.0) + float(p["sm_util_pct"])
            labels.setdefault(pid, f"pid {pid}")
        for pid, v in per_pid_mem.items():
            mem.setdefault(pid, []).append((t, v))
        for pid, v in per_pid_util.items():
            util.setdefault(pid, []).append((t, v))
    return mem, util, reason


def _top(data: Dict[int, List[Point]], labels: Dict[int, str], limit: int) -> List[Series]:
    """The ``limit`` processes with the largest peak, biggest first."""
    ranked = sorted(data.items(), key=lambda kv: (-max((v for _, v in kv[1]), default=0.0), kv[0]))
    return [Series(pid=pid, label=labels.get(pid, f"pid {pid}"), points=sorted(pts))
            for pid, pts in ranked[:limit]]


def usage_charts(rec, limit: int = 8) -> List[UsageChart]:
    """CPU, RSS, GPU memory and GPU utilisation charts for ``rec``."""
    t0 = origin_ns(rec)
    labels = _labels(rec)
    cpu, rss = _from_kill_preview(rec, t0, labels, limit)
    basis = "kill-preview samples of the process tree (/proc, about 4 per second)"
    if not cpu and not rss:
        cpu, rss = _from_snapshots(rec, t0)
        basis = "the /proc snapshots at the start and the end (CPU: the mean between them)"
        if not cpu and not rss:
            basis = "no process samples in this recording"
    mem, util, gpu_reason = _from_gpu(rec, t0, labels)
    gpu_basis = "NVML samples" if (mem or util) else \
        f"no GPU samples: {gpu_reason}" if gpu_reason else "no GPU samples in this recording"
    return [
        UsageChart("CPU", "% of one core", basis, _top(cpu, labels, limit)),
        UsageChart("Resident memory (RSS)", "bytes", basis, _top(rss, labels, limit)),
        UsageChart("GPU memory", "bytes", gpu_basis, _top(mem, labels, limit)),
        UsageChart("GPU utilisation (SM)", "%", gpu_basis, _top(util, labels, limit)),
    ]


def duration_s(rec) -> Optional[float]:
    d = rec.metadata.duration_s
    return float(d) if d is not None else None
