"""The picture of `gpu-report -o report.html`: utilisation and memory per holder over time.

Drawn with matplotlib (Agg backend, no display needed) as SVG and embedded in
one self-contained HTML page with the report's tables; written through
export.atomic (0600, temporary file and rename). Holder names come from
other processes: they are HTML-escaped in the page, and matplotlib draws
them as plain text (its mathtext parser is turned off for labels).
"""
from __future__ import annotations

import datetime as _dt
import html
import io
from typing import List

from ..formats import hours_figure, human_bytes, utc_datetime, utc_time
from ..text import clean

MAX_SERIES = 8


def _figure_svg(report) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    devs = sorted({d for pts in report.series.values() for _, d, _, _ in pts}) or [0]
    fig, axes = plt.subplots(2, len(devs), figsize=(7 * len(devs), 6), squeeze=False, sharex=True)
    for col, dev in enumerate(devs):
        keys = sorted((k for k, pts in report.series.items() if any(d == dev for _, d, _, _ in pts)),
                      key=lambda k: -sum(u for _, d, u, _ in report.series[k] if d == dev))[:MAX_SERIES]
        ua, ma = axes[0][col], axes[1][col]
        for k in keys:
            pts = [(t, u, m) for t, d, u, m in report.series[k] if d == dev]
            xs = [utc_datetime(t) for t, _, _ in pts]
            label = clean(k)[:40].replace("$", r"\$")
            ua.plot(xs, [u for _, u, _ in pts], label=label, linewidth=1)
            ma.plot(xs, [m / (1 << 30) for _, _, m in pts], label=label, linewidth=1)
        ua.set_title(f"GPU {dev}: utilisation per {report.by}")
        ua.set_ylabel("SM utilisation %")
        ua.set_ylim(0, 105)
        ma.set_title(f"GPU {dev}: memory per {report.by}")
        ma.set_ylabel("VRAM GiB")
        ma.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=_dt.timezone.utc))
        if keys:
            ua.legend(fontsize=7, loc="upper right")
        for ax in (ua, ma):
            ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def _rows(cells: List[List[str]]) -> str:
    return "".join("<tr>" + "".join(f"<td>{html.escape(clean(c))}</td>" for c in row) + "</tr>" for row in cells)


def report_html(report) -> str:
    t = lambda ns: utc_time(ns, "%Y-%m-%d %H:%M UTC")  # noqa: E731
    parts = ["<!doctype html><meta charset=utf-8><title>pyimpact gpu-report</title>",
             "<style>body{font:14px sans-serif;margin:20px}td,th{padding:2px 10px;text-align:left}"
             "th{background:#eee}.f{margin:6px 0}.r{color:#555;margin-left:18px}</style>",
             f"<h1>GPU report</h1><p>{html.escape(t(report.start_ns))} &rarr; {html.escape(t(report.end_ns))}, "
             f"by {html.escape(report.by)}</p>"]
    if not report.gpu_available:
        parts.append(f"<p>GPU unavailable: {html.escape(clean(report.gpu_reason))}</p>")
    elif report.series:
        parts.append(_figure_svg(report))
    for d in report.devices:
        parts.append(f"<h2>GPU {d.device}: {html.escape(clean(d.name))}</h2><p>mean utilisation "
                     f"{d.mean_util_pct:.0f} %, {hours_figure(d.gpu_seconds)} GPU-hours, {d.vram_gib_hours:.1f} "
                     f"VRAM GiB-hours, peak {html.escape(human_bytes(d.peak_vram_bytes))}</p>")
        parts.append("<table><tr><th>who</th><th>GPU-seconds</th><th>VRAM GiB-h</th><th>peak VRAM</th>"
                     "<th>mean util</th></tr>" + _rows([[u.key, f"{u.gpu_seconds:.0f}", f"{u.vram_gib_hours:.1f}",
                                                         human_bytes(u.peak_vram_bytes), f"{u.mean_util_pct:.0f} %"]
                                                        for u in report.usage if u.device == d.device]) + "</table>")
    parts.append("<h2>Findings</h2>")
    for f in report.findings or []:
        parts.append(f"<div class=f><b>{html.escape(f.kind)}</b> GPU {f.device} {html.escape(clean(f.who))}: "
                     f"{html.escape(clean(f.detail))}<div class=r>&rarr; {html.escape(clean(f.recommendation))}"
                     "</div></div>")
    if not report.findings:
        parts.append("<p>none</p>")
    parts.append("<h2>CPU / RAM</h2><table><tr><th>job</th><th>CPU-hours</th><th>peak RSS</th></tr>" +
                 _rows([[j.job, hours_figure(j.cpu_seconds, 2), human_bytes(j.peak_rss_bytes)]
                        for j in report.jobs_cpu]) + "</table>")
    return "\n".join(parts)


def write_html(report, path: str) -> str:
    from .atomic import atomic_file

    text = report_html(report)
    with atomic_file(path) as f:
        f.write(text.encode())
    return path
