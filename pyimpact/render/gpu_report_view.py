"""Terminal form of `pyimpact gpu-report`: per GPU, per holder, findings, CPU/RAM per job.

Names of holders come from other processes' command lines: every cell is a
rich Text after control characters are escaped, never markup.
"""
from __future__ import annotations


from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..formats import hours_figure, human_bytes, utc_time
from .text import clean

TOP = 12


def _t(ns: int) -> str:
    return utc_time(ns, "%Y-%m-%d %H:%M")


def short(key: str, n: int = 60) -> str:
    """Shorten a holder's name, keeping a trailing "(pid N)"."""
    key = clean(key)
    if len(key) <= n:
        return key
    tail = key[key.rfind(" ("):] if key.endswith(")") and " (" in key else ""
    return key[:n - len(tail) - 1] + "…" + tail


def _table(*cols) -> Table:
    t = Table(box=None, pad_edge=False, header_style="bold")
    for c in cols:
        t.add_column(c, overflow="fold", justify="left" if c in ("WHO", "JOB", "USER", "PROCESS") else "right")
    return t


def write(report, stream) -> None:
    con = Console(file=stream, width=max(110, Console(file=stream).width), highlight=False, markup=False,
                  soft_wrap=True)
    hours = (report.end_ns - report.start_ns) / 3.6e12
    every = f", samples every {report.interval_s:.3g} s" if report.interval_s else ""
    con.print(Text(f"GPU report {_t(report.start_ns)} -> {_t(report.end_ns)} UTC ({hours:.1f} h), "
                   f"by {report.by}{every}"))
    if not report.gpu_available:
        con.print(Text(f"GPU: unavailable ({clean(report.gpu_reason)}); CPU and RAM per job below"))
    for d in report.devices:
        total = f" of {human_bytes(d.mem_total_bytes)}" if d.mem_total_bytes else ""
        con.print(Text(f"\nGPU {d.device}  {clean(d.name)}  mean util {d.mean_util_pct:.0f} %  "
                       f"GPU-hours {hours_figure(d.gpu_seconds)}  VRAM {d.vram_gib_hours:.1f} GiB-h  "
                       f"peak {human_bytes(d.peak_vram_bytes)}{total}"))
        t = _table(report.by.upper() if report.by != "process" else "PROCESS", "GPU-h", "VRAM GiB-h", "PEAK VRAM",
                   "MEAN UTIL")
        rows = [u for u in report.usage if u.device == d.device]
        for u in rows[:TOP]:
            t.add_row(Text(short(u.key)), Text(hours_figure(u.gpu_seconds, 2)), Text(f"{u.vram_gib_hours:.1f}"),
                      Text(human_bytes(u.peak_vram_bytes)), Text(f"{u.mean_util_pct:.0f} %"))
        if len(rows) > TOP:
            t.add_row(Text(f"... {len(rows) - TOP} more"), Text(""), Text(""), Text(""), Text(""))
        con.print(t)
    con.print(Text("\nFindings" if report.findings else "\nFindings: none (no sustained hog, idle holder or "
                                                          "fair-share violation)"))
    for f in report.findings:
        con.print(Text(f"  [{f.kind}] GPU {f.device} {short(f.who)}: {clean(f.detail)} "
                       f"({_t(f.start_ns)} -> {_t(f.end_ns)})"))
        con.print(Text(f"      -> {clean(f.recommendation)}"))
    if report.jobs_cpu:
        con.print(Text(f"\nCPU / RAM per {'user' if report.by == 'user' else 'job'}"))
        t = _table("USER" if report.by == "user" else "JOB", "CPU-h", "PEAK RSS", "PROCS")
        for j in report.jobs_cpu[:TOP]:
            t.add_row(Text(short(j.job)), Text(hours_figure(j.cpu_seconds, 2)), Text(human_bytes(j.peak_rss_bytes)),
                      Text(str(j.max_procs)))
        con.print(t)
    else:
        con.print(Text("\nCPU / RAM: no samples in this period"))
