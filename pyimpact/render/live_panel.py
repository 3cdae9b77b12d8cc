"""The live kill-preview panel (`trace --kill-preview`), as rich renderables.

Two layouts: one block per traced PID (the figures of kill-preview, one
line each, refreshed about once a second), and, when watching the whole
machine, one table row per heavy job so the cost of stopping each can be
compared side by side.  Layout only: every figure comes from ImpactReports
(pyimpact.analyse.impact.report) and GPU samples (pyimpact.collect.gpu).
"""
from __future__ import annotations

from typing import List, Optional

from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..analyse.impact.report import GpuSummary, ImpactReport
from ..formats import compact_bytes, human_bytes, human_duration, seconds
from .impact_view import VERDICT_STYLE, gpu_line, one_line
from .text import clean, plain


def _short(text: str, n: int) -> str:
    text = clean(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def target_block(r: ImpactReport) -> Group:
    """The figures for one traced job."""
    tg, f, loss = r.target, r.freed, r.loss
    workers = len(r.tree) - 1
    head = Text(f"PID {tg.pid} ", style="bold")
    head.append(_short(tg.command, 44))
    if workers:
        head.append(f" (+{workers} child{'ren' if workers != 1 else ''})", style="dim")
    cores = "-" if f.cpu_cores is None else f"{f.cpu_cores:.2f}"
    ram = human_bytes(f.ram_uss_bytes)
    if f.ram_pss_bytes:
        ram += f"..{human_bytes(f.ram_pss_bytes)}"
    res = Text(f"CPU {cores} cores  RAM {ram} (USS..PSS)")
    if f.disk_write_bps is not None:
        res.append(f"  disk r {human_bytes(f.disk_read_bps)}/s w {human_bytes(f.disk_write_bps)}/s")
    lines = [head, res, gpu_line(r.gpu)]
    last = loss.last_checkpoint
    if last:
        ck = Text(f"checkpoint {_short(last.path, 44)} {human_duration(loss.since_checkpoint_s)} ago")
        if loss.checkpoint_cadence_s:
            ck.append(f", every {seconds(loss.checkpoint_cadence_s)}")
        if loss.next_checkpoint_in_s is not None:
            ck.append(f", next in {seconds(loss.next_checkpoint_in_s)}")
    else:
        ck = Text("no checkpoint found: a kill loses everything since the start", style="yellow")
    lines.append(ck)
    for p in loss.partial_files:
        exp = f" of ~{human_bytes(p.expected_size_bytes)}" if p.expected_size_bytes else ""
        lines.append(plain(f"writing {p.path}: {human_bytes(p.bytes_written)}{exp}", "red"))
    verdict = r.safe_to_kill.verdict.value
    line = plain(one_line(r))
    line.stylize(VERDICT_STYLE.get(verdict, ""), len(line) - len(verdict), len(line))
    lines.append(line)
    lines.append(plain("-> " + r.recommendation.text, "bold"))
    return Group(*lines)


def pid_panel(reports: List[ImpactReport], elapsed_s: float, status: str = "", keys: Optional[str] = None) -> Group:
    """``keys``: the action-key line (the panel acts: not read-only then)."""
    mode = "live" if keys is not None else "live, read-only"
    title = Text(f"pyimpact kill-preview ({mode})  {seconds(elapsed_s, 1, 5)}", style="bold")
    if status and keys is None:
        title.append(f"  {clean(status)}", style="yellow")
    parts: List = [title]
    for r in reports:
        parts += [Text(""), target_block(r)]
    if not reports:
        parts.append(Text("waiting for the first figures...", style="dim"))
    if keys is not None:
        parts += [Text(""), Text(clean(keys), style="bold cyan")]
    return Group(*parts)


def job_row(r: ImpactReport) -> dict:
    """The compact per-job figures (also the NDJSON row)."""
    loss, f, v = r.loss, r.freed, r.safe_to_kill
    return {
        "pid": r.target.pid, "command": r.target.command, "processes": len(r.tree),
        "cpu_cores": f.cpu_cores, "ram_uss_bytes": f.ram_uss_bytes,
        "ram_pss_bytes": f.ram_pss_bytes,
        "vram_bytes": sum(f.vram_bytes.values()),
        "lost_s": loss.since_checkpoint_s, "since": loss.since.value,
        "cpu_seconds": loss.cpu_seconds, "gpu_seconds": loss.gpu_seconds,
        "verdict": v.verdict.value, "next_safe_in_s": v.next_safe_in_s,
        "recommendation": r.recommendation.action.value, "line": one_line(r),
    }


def jobs_table(rows: List[dict], elapsed_s: float, gpu: Optional[GpuSummary], status: str = "") -> Group:
    title = Text(f"pyimpact kill-preview: heavy jobs (live, read-only)  {seconds(elapsed_s, 1, 5)}", style="bold")
    if status:
        title.append(f"  {clean(status)}", style="yellow")
    t = Table(box=None, pad_edge=False, expand=True, header_style="bold", padding=(0, 1))
    for col, w in (("PID", 7), ("CPU", 4), ("RAM", 5), ("VRAM", 5), ("LOST", 9), ("VERDICT", 7),
                   ("NEXT", 5)):
        t.add_column(col, justify="right" if col != "VERDICT" else "left", width=w, no_wrap=True)
    t.add_column("COMMAND", ratio=1, no_wrap=True, overflow="ellipsis")
    for j in rows:
        lost = human_duration(j["lost_s"]) + ("" if j["since"] == "checkpoint" else "*")
        nxt = "-" if j.get("next_safe_in_s") is None else seconds(j['next_safe_in_s'], 0, sep="")
        t.add_row(plain(j["pid"]), plain("-" if j["cpu_cores"] is None else f"{j['cpu_cores']:.1f}"),
                  plain(compact_bytes(j["ram_uss_bytes"])),
                  plain(compact_bytes(j["vram_bytes"]) if j["vram_bytes"] else "-"),
                  plain(lost), plain(j["verdict"], VERDICT_STYLE.get(j["verdict"], "")), plain(nxt),
                  plain(j["command"]))
    parts: List = [title, t]
    if not rows:
        parts.append(Text("no heavy job found (GPU holders, or trees older than 5 s using >= 0.5 cores "
                          "or >= 1 GiB)", style="dim"))
    parts.append(Text("LOST: work since the last checkpoint (*: none found, since start); RAM: USS",
                      style="dim"))
    if gpu is not None:
        parts.append(gpu_line(gpu))
    return Group(*parts)
