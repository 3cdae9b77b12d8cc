"""CPU, disk and GPU figures of a process tree, from samples over the window.

Why samples and not the two snapshots alone: "CPU seconds since the last
checkpoint" needs the tree's CPU counter *at the moment the checkpoint
completed*.  When that moment falls inside the window, interpolating the
~0.25 s samples measures it; when it lies before the window, the only honest
figure is an estimate from the rate seen in the window, and it is labelled so.

The tree's CPU counter is the sum over its live processes of user+system time
plus the time of children they have reaped (cutime+cstime), so a DataLoader
worker that exits and is reaped by the main process keeps counting.

Pure functions over plain dicts (the collector's samples, NVML samples).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple


@dataclass
class Figure:
    """A number and how it was obtained: measured (read from the kernel or
    the trace), estimated (extrapolated from a rate, basis given), or
    unavailable (why)."""

    value: Optional[float]
    kind: str            # measured | estimated | unavailable
    basis: str

    def to_dict(self) -> dict:
        return {"value": self.value, "kind": self.kind, "basis": self.basis}


def _procs(sample: dict) -> Dict[int, dict]:
    return {int(k): v for k, v in sample.get("procs", {}).items()}


def tree_cpu_total(sample: dict) -> float:
    return sum(p.get("cpu_s", 0.0) + p.get("reaped_cpu_s", 0.0) for p in _procs(sample).values())


def _series(samples: List[dict]) -> List[Tuple[int, float]]:
    return [(s["t_ns"], tree_cpu_total(s)) for s in samples if s.get("procs")]


def cpu_rate(samples: List[dict]) -> Optional[Tuple[float, float]]:
    """(cores, seconds observed) of the whole tree over the window."""
    pts = _series(samples)
    if len(pts) < 2 or pts[-1][0] <= pts[0][0]:
        return None
    span = (pts[-1][0] - pts[0][0]) / 1e9
    return max(0.0, (pts[-1][1] - pts[0][1]) / span), span


def per_process_rates(samples: List[dict]) -> Dict[int, Dict[str, float]]:
    """pid -> {cpu_cores, read_bps, write_bps} over the samples it was alive in
    (matched by pid and start time, so a reused pid is never mixed in)."""
    first: Dict[Tuple[int, int], Tuple[int, dict]] = {}
    last: Dict[Tuple[int, int], Tuple[int, dict]] = {}
    for s in samples:
        for pid, p in _procs(s).items():
            key = (pid, p.get("start_ticks", 0))
            first.setdefault(key, (s["t_ns"], p))
            last[key] = (s["t_ns"], p)
    out: Dict[int, Dict[str, float]] = {}
    for key, (t0, p0) in first.items():
        t1, p1 = last[key]
        span = (t1 - t0) / 1e9
        if span <= 0:
            continue
        out[key[0]] = {
            "cpu_cores": max(0.0, (p1.get("cpu_s", 0) - p0.get("cpu_s", 0)) / span),
            "read_bps": max(0.0, ((p1.get("rb") or 0) - (p0.get("rb") or 0)) / span),
            "write_bps": max(0.0, ((p1.get("wb") or 0) - (p0.get("wb") or 0)) / span),
        }
    return out


def wchar_growth(samples: List[dict]) -> Optional[int]:
    """Bytes the tree passed to write() over the window (None: not sampled).
    Any file the tree wrote meanwhile went through these bytes."""
    first: Dict[Tuple[int, int], int] = {}
    last: Dict[Tuple[int, int], int] = {}
    seen = False
    for s in samples:
        for pid, p in _procs(s).items():
            if p.get("wc") is None:
                continue
            seen = True
            key = (pid, p.get("start_ticks", 0))
            first.setdefault(key, p["wc"])
            last[key] = p["wc"]
    if not seen:
        return None
    return sum(max(0, last[k] - first[k]) for k in first)


def cpu_since(samples: List[dict], anchor_ns: int, since_start: bool) -> Figure:
    """CPU seconds of the tree from ``anchor_ns`` to the last sample."""
    pts = _series(samples)
    if not pts:
        return Figure(None, "unavailable", "no CPU samples of the tree")
    t_end, c_end = pts[-1]
    if since_start:
        return Figure(round(c_end, 3), "measured",
                      "CPU time of the whole tree since it started (/proc user+system, "
                      "including reaped children)")
    t_first, c_first = pts[0]
    if anchor_ns >= t_first:
        c_anchor = _interp(pts, anchor_ns)
        return Figure(round(max(0.0, c_end - c_anchor), 3), "measured",
                      f"tree CPU counter sampled every ~{_step(pts):.2f} s across the window, "
                      "interpolated at the checkpoint's completion")
    rate = cpu_rate(samples)
    if rate is None:
        return Figure(None, "unavailable", "the window was too short to measure a CPU rate")
    cores, span = rate
    before = (t_first - anchor_ns) / 1e9
    value = min(c_end, (c_end - c_first) + cores * before)
    return Figure(round(value, 3), "estimated",
                  f"the tree ran {cores:.2f} cores over the {span:.1f} s window (/proc); "
                  f"{before:.1f} s of the span since the checkpoint lies before the window "
                  "and is counted at that rate")


def _step(pts: List[Tuple[int, float]]) -> float:
    return (pts[-1][0] - pts[0][0]) / 1e9 / max(1, len(pts) - 1)


def _interp(pts: List[Tuple[int, float]], t: int) -> float:
    for (t0, c0), (t1, c1) in zip(pts, pts[1:]):
        if t0 <= t <= t1:
            return c0 if t1 == t0 else c0 + (c1 - c0) * (t - t0) / (t1 - t0)
    return pts[-1][1] if t >= pts[-1][0] else pts[0][1]


def io_rates(samples: List[dict]) -> Tuple[Optional[float], Optional[float]]:
    rates = per_process_rates(samples)
    if not rates:
        return None, None
    return (sum(r["read_bps"] for r in rates.values()), sum(r["write_bps"] for r in rates.values()))


# --------------------------------------------------------------------------
# GPU
# --------------------------------------------------------------------------

@dataclass
class GpuFigures:
    available: bool
    reason: str
    devices: List[dict] = field(default_factory=list)        # latest device readings
    vram_by_device: Dict[int, int] = field(default_factory=dict)    # tree's VRAM per device
    vram_by_pid: Dict[int, List[Tuple[int, Optional[int]]]] = field(default_factory=dict)
    util_by_device: Dict[int, Tuple[float, int]] = field(default_factory=dict)  # mean SM %, samples
    holders: List[int] = field(default_factory=list)         # tree pids with a GPU context
    window_s: float = 0.0


def gpu_figures(gpu_samples: List[dict], tree_pids: set) -> GpuFigures:
    if not gpu_samples:
        return GpuFigures(False, "no GPU reading was taken")
    last = gpu_samples[-1]
    if not last.get("available"):
        return GpuFigures(False, last.get("reason") or "NVML unavailable")
    g = GpuFigures(True, "", devices=[dict(d) for d in last.get("devices", [])])
    for p in last.get("processes", []):
        if p["pid"] in tree_pids:
            g.vram_by_pid.setdefault(p["pid"], []).append((p["device"], p.get("used_memory_bytes")))
            g.vram_by_device[p["device"]] = g.vram_by_device.get(p["device"], 0) + (p.get("used_memory_bytes") or 0)
            if p["pid"] not in g.holders:
                g.holders.append(p["pid"])
    sums: Dict[int, List[float]] = {}
    for s in gpu_samples:
        if not s.get("available"):
            continue
        by_dev: Dict[int, float] = {}
        n_dev: Dict[int, int] = {}
        for p in s.get("processes", []):
            if p["pid"] in tree_pids and p.get("sm_util_pct") is not None and p.get("util_samples", 0) > 0:
                by_dev[p["device"]] = by_dev.get(p["device"], 0.0) + float(p["sm_util_pct"])
                n_dev[p["device"]] = n_dev.get(p["device"], 0) + int(p["util_samples"])
        for d, v in by_dev.items():
            acc = sums.setdefault(d, [0.0, 0, 0])
            acc[0] += v
            acc[1] += 1
            acc[2] += n_dev[d]
    for d, (total, readings, n) in sums.items():
        g.util_by_device[d] = (total / readings, n)
    avail = [s for s in gpu_samples if s.get("available")]
    if len(avail) >= 2:
        g.window_s = (avail[-1]["t_ns"] - avail[0]["t_ns"]) / 1e9
    return g


def gpu_since(g: GpuFigures, since_s: float) -> Figure:
    """GPU seconds spent by the tree since the anchor (an estimate from NVML's
    utilisation samples: NVML keeps no per-process GPU-time counter)."""
    if not g.available:
        return Figure(None, "unavailable", g.reason)
    if not g.holders:
        return Figure(0.0, "measured", "NVML lists no GPU context of this process tree")
    if not g.util_by_device:
        # Device-wide utilisation is the tree's only if it is alone on the device.
        total, used = 0.0, []
        for d in g.devices:
            if d["index"] in g.vram_by_device and d.get("util_gpu_pct") is not None:
                total += d["util_gpu_pct"] / 100.0
                used.append(d["index"])
        if not used:
            return Figure(None, "unavailable", "NVML gave no utilisation for the tree's GPUs")
        return Figure(round(total * since_s, 2), "estimated",
                      f"device utilisation of GPU {', '.join(map(str, used))} (the driver gave no "
                      f"per-process samples; assumes the tree is its main user) x {since_s:.1f} s")
    busy = sum(pct for pct, _ in g.util_by_device.values()) / 100.0
    n = sum(k for _, k in g.util_by_device.values())
    devs = ", ".join(f"GPU {d} {pct:.0f}%" for d, (pct, _) in sorted(g.util_by_device.items()))
    return Figure(round(busy * since_s, 2), "estimated",
                  f"mean SM utilisation of the tree's processes ({devs}; {n} NVML samples over "
                  f"{g.window_s:.1f} s) x {since_s:.1f} s since the anchor")


def latest_pss(samples: List[dict]) -> Optional[Tuple[int, int, int]]:
    """(PSS sum, USS sum, processes) from the newest sample that has them."""
    for s in reversed(samples):
        procs = _procs(s)
        vals = [p for p in procs.values() if p.get("pss") is not None]
        if vals:
            return sum(p["pss"] for p in vals), sum(p.get("uss") or 0 for p in vals), len(vals)
    return None
