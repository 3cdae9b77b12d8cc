"""Text rendering of an ImpactReport (kill-preview), within 80 columns.

Nothing here decides anything: every figure, verdict and sentence comes from
pyimpact.analyse.impact.report; this module lays them out and labels each figure
with how it was obtained ("measured" / "estimated" and the basis).  Strings
from other processes (argv, paths) go through ``clean`` and are printed as
rich ``Text`` (never parsed as markup).
"""
from __future__ import annotations

from typing import IO, List, Optional

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from ..analyse.impact.loss import Since
from ..analyse.impact.report import GpuSummary, ImpactReport
from ..formats import compact_age, compact_bytes, human_bytes, human_duration, seconds
from .text import clean, plain

VERDICT_STYLE = {"safe": "bold green", "costly": "bold yellow", "unsafe": "bold red"}
WIDTH = 80


def _t(text, style: str = "") -> Text:
    return plain(text, style)


def _kind(basis) -> Text:
    """A figure's kind (measured / estimated / unavailable) and basis: a Figure or a Basis."""
    kind = basis.kind
    t = _t(kind, style={"measured": "green", "estimated": "yellow"}.get(kind, "dim"))
    if basis.basis:
        t.append(": " + clean(basis.basis), style="dim")
    return t


def _grid() -> Table:
    """Label | value | how it was obtained (wrapped inside its own column)."""
    g = Table.grid(padding=(0, 1))
    g.add_column(width=11, no_wrap=True)
    g.add_column(width=12, justify="right", no_wrap=True)
    g.add_column(ratio=1, overflow="fold")
    return g


def _short(text: str, n: int) -> str:
    text = clean(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def gpu_line(gpu: GpuSummary) -> Text:
    """One line per machine when there is no GPU, else one per device."""
    if not gpu.available:
        return _t(f"GPU: unavailable - {gpu.reason or 'NVML not readable'}", "dim")
    t = Text()
    for i, d in enumerate(gpu.devices):
        if i:
            t.append("\n")
        mem = (f"{compact_bytes(d.get('mem_used_bytes'))}/{compact_bytes(d.get('mem_total_bytes'))}"
               if d.get("mem_total_bytes") else "mem ?")
        util = f"{d['util_gpu_pct']:.0f}%" if d.get("util_gpu_pct") is not None else "?"
        temp = f"{d['temperature_c']:.0f}°C" if d.get("temperature_c") is not None else "?°C"
        power = f"{d['power_w']:.0f} W" if d.get("power_w") is not None else "? W"
        tree = gpu.tree_vram_bytes.get(str(d["index"]))
        t.append(clean(f"GPU {d['index']} {_short(d.get('name', ''), 22)}: {util} busy, {mem}, {temp}, {power}"))
        if tree is not None:
            t.append(clean(f"; job {compact_bytes(tree)}"), style="bold")
    return t


def header(r: ImpactReport) -> List[Text]:
    tg, ob = r.target, r.observation
    lines = [_t(f"kill-preview of PID {tg.pid}: {_short(tg.command, 52)}", "bold")]
    probes = "probes + /proc" if ob.kernel_probes else "/proc only"
    lost = f", {ob.lost_events} events lost" if ob.lost_events else ""
    lines.append(_t(f"age {human_duration(tg.age_s)}, watched {seconds(ob.window_s)} ({probes}{lost}, "
                    f"{ob.samples} samples), as of {r.as_of[11:23]} UTC", "dim"))
    if ob.ended and str(ob.ended).startswith("interrupted"):
        lines.append(_t(f"window cut short ({ob.ended}): figures from what was seen", "yellow"))
    for u in ob.unavailable:
        if u.get("what") not in ("GPU", "GPU (NVML)"):
            lines.append(_t(f"not seen: {u['what']}: {u['why']}", "yellow"))
    return lines


def verdict_block(r: ImpactReport) -> List:
    v = r.safe_to_kill
    rec = r.recommendation
    g = Table.grid(padding=(0, 1))
    g.add_column(width=9, no_wrap=True)
    g.add_column(ratio=1, overflow="fold")
    t = _t(v.verdict.value.upper(), style=VERDICT_STYLE.get(v.verdict.value, "bold"))
    t.append(" - " + clean(v.reason), style="")
    g.add_row(Text("VERDICT", style="bold"), t)
    t2 = _t(rec.action.value, style="bold")
    t2.append(" - " + clean(rec.text))
    g.add_row(Text("RECOMMEND", style="bold"), t2)
    return [g]


def loss_block(r: ImpactReport) -> List:
    loss = r.loss
    rec = loss.recovery
    b = loss.basis
    out: List = [_t("Work lost if killed now", "bold underline"), _t(loss.summary)]
    g = _grid()
    last = loss.last_checkpoint
    if last:
        g.add_row("checkpoint", Text(""), _t(last.path))
        can = "can resume" if last.resume_uncertain else "resumes"
        who = f"; written before this process started (a restart {can} from it)" if last.predates_process else ""
        layout = f"; {last.layout}" if last.layout not in (None, "file") else ""
        g.add_row("", Text(""), _t(f"completed {last.completed_at[11:23]} UTC; "
                                   f"{human_bytes(last.size_bytes)}{layout}{who}; "
                                   f"found by: {last.basis}", "dim"))
    else:
        g.add_row("checkpoint", Text("none"), _t("none found: a kill loses everything since the process started"))
    hist = rec.history
    if hist.get("count"):
        g.add_row("history", Text(f"{hist['count']} saves"), _t(f"series {hist['series']}", "dim"))
    cad = loss.checkpoint_cadence_s
    g.add_row("cadence", Text("-" if cad is None else f"every {seconds(cad)}"), _kind(b["checkpoint_cadence_s"]))
    if rec.checkpoint_cadence_steps:
        g.add_row("", Text(f"{rec.checkpoint_cadence_steps} steps"), _kind(b["checkpoint_cadence_steps"]))
    if rec.next_checkpoint_name:
        g.add_row("next name", Text(""), _t(rec.next_checkpoint_name))
    g.add_row("wall time", Text(human_duration(loss.since_checkpoint_s)), _kind(b["since_checkpoint_s"]))
    if rec.steps_since_checkpoint is not None:
        g.add_row("steps", Text(f"{rec.steps_since_checkpoint} redone"), _kind(b["steps_since_checkpoint"]))
    if rec.restart_warmup_s is not None:
        g.add_row("warm-up", Text(human_duration(rec.restart_warmup_s)), _kind(b["restart_warmup_s"]))
        g.add_row("total lost", Text(human_duration(rec.total_lost_s)), _kind(b["total_lost_s"]))
    cpu = loss.cpu_seconds
    g.add_row("CPU time", Text("-" if cpu is None else seconds(cpu)), _kind(b["cpu_seconds"]))
    gpu = loss.gpu_seconds
    if r.gpu.available or b["gpu_seconds"].kind != "unavailable":
        g.add_row("GPU time", Text("-" if gpu is None else seconds(gpu)), _kind(b["gpu_seconds"]))
    else:
        g.add_row("GPU time", Text("-"), Text("no GPU readings (see the GPU line)", style="dim"))
    if loss.next_checkpoint_in_s is not None:
        g.add_row("next ckpt", Text(f"in {seconds(loss.next_checkpoint_in_s)}"), _kind(b["next_checkpoint_in_s"]))
        unc = loss.next_checkpoint_uncertainty_s
        g.add_row("", Text("± ?" if unc is None else f"± {seconds(unc)}"), _kind(b["next_checkpoint_uncertainty_s"]))
    out.append(g)
    for p in loss.partial_files:
        exp = f" of ~{human_bytes(p.expected_size_bytes)}" if p.expected_size_bytes else ""
        rate = f" at {human_bytes(p.write_rate_bps)}/s" if p.write_rate_bps else ""
        text = _t(f"{p.path}: {human_bytes(p.bytes_written)}{exp}{rate} (pid {p.pid}, fd {p.fd})", "bold red")
        pattern = ("temp file + rename: the previous checkpoint survives" if p.temp_and_rename
                   else "written in place: a kill leaves it truncated")
        text.append("\n" + clean(f"{pattern} ({p.temp_basis})"), style="dim")
        if p.expected_basis:
            text.append("\n" + clean(f"expected size: {p.expected_basis}"), style="dim")
        if p.eta_s is not None:
            text.append("\n" + clean(f"done in ~{seconds(p.eta_s, 0)} at the measured rate"), style="dim")
        if p.final_name and p.final_name != p.path:
            text.append("\n" + clean(f"final name: {p.final_name} ({p.final_name_basis})"), style="dim")
        if p.complete_when:
            text.append("\n" + clean(f"complete when: {p.complete_when}"), style="dim")
        out.append(_pairs([("HALF-WRITTEN", text)], width=12))
    rows = []
    if loss.progress_summary:
        rows.append(("progress", _t(f"{loss.progress_summary} (from {rec.progress.log})")))
    rows += [("unknown", _t(f"{k.figure}: {k.how}", "yellow")) for k in rec.to_know]
    rows += [("not lost", _t(n, "green")) for n in loss.not_lost]
    rows += [("note", _t(n, "yellow")) for n in loss.notes]
    if rows:
        out.append(_pairs(rows, width=8))
    return out


def tree_table(r: ImpactReport) -> Table:
    t = Table(box=None, pad_edge=False, show_edge=False, expand=True, header_style="bold",
              padding=(0, 1))
    widths = {"PID": 7, "ROLE": 17, "AGE": 4, "CPU%": 4, "RSS": 5, "USS": 5, "THR": 3}
    for col, w in widths.items():
        t.add_column(col, justify="left" if col == "ROLE" else "right", no_wrap=True,
                     overflow="ellipsis", width=w)
    t.add_column("COMMAND", no_wrap=True, overflow="ellipsis", ratio=1)
    for p in r.tree:
        t.add_row(*(_t(c) for c in (
            p.pid, p.role, compact_age(p.age_s), "-" if p.cpu_pct is None else f"{p.cpu_pct:.0f}",
            compact_bytes(p.rss_bytes), compact_bytes(p.uss_bytes), p.threads, p.command)))
    return t


def files_lines(r: ImpactReport) -> List:
    out = []
    for p in r.tree:
        f = p.files
        parts = []
        for paths, label in ((f.checkpoints, "writes ckpt"), (f.temp, "temp"), (f.written, "writes"),
                             (f.logs, "logs"), (f.read, "reads")):
            if paths:
                more = f" +{len(paths) - 1}" if len(paths) > 1 else ""
                parts.append(f"{label} {_short(paths[0], 34)}{more}")
        s = p.sockets
        if s.listening:
            parts.append("listens " + ", ".join(s.listening[:3]))
        if s.peers:
            parts.append(f"{len(s.peers)} TCP peer(s)")
        if p.gpus:
            parts.append(", ".join(f"GPU {g.device} {human_bytes(g.used_memory_bytes)}" for g in p.gpus))
        if f.shm:
            parts.append(f"{len(f.shm)} shared-memory segment(s)")
        if parts:
            out.append((f"  {p.pid}", _t("; ".join(parts), "dim")))
    return [_pairs(out, width=7)] if out else []


def freed_lines(r: ImpactReport) -> List[Text]:
    f = r.freed
    vram = ", ".join(f"GPU {k} {human_bytes(v)}" for k, v in f.vram_bytes.items()) or "none"
    cores = "-" if f.cpu_cores is None else f"{f.cpu_cores:.2f}"
    disk = (f"disk read {human_bytes(f.disk_read_bps)}/s, write {human_bytes(f.disk_write_bps)}/s"
            if f.disk_read_bps is not None else "disk rates -")
    ram = human_bytes(f.ram_uss_bytes)
    if f.ram_pss_bytes:
        ram += f" .. {human_bytes(f.ram_pss_bytes)} (USS .. PSS sum"
    else:
        ram += " (USS sum"
    lines = [_t("Resources freed", "bold underline"),
             _t(f"  RAM   {ram}; RSS {human_bytes(f.ram_rss_bytes)})"),
             _t(f"  CPU   {cores} cores   VRAM {vram}"),
             _t(f"  {disk}; network: not measured per process")]
    if f.listening_ports:
        lines.append(_t("  ports released: " + ", ".join(f.listening_ports)))
    return lines


def _pairs(rows, width: int = 22) -> Table:
    """Two columns: a short label and text that wraps under itself."""
    g = Table.grid(padding=(0, 1))
    g.add_column(width=width, no_wrap=True, overflow="ellipsis")
    g.add_column(ratio=1, overflow="fold")
    for a, b in rows:
        g.add_row(_t(a), b if isinstance(b, Text) else _t(b))
    return g


def cascade_lines(r: ImpactReport) -> List:
    c = r.cascade
    rows = []
    for ch in c.children:
        rows.append((f"  {ch.pid} {ch.role}", ch.fate))
    if not c.children:
        rows.append(("  children", "none"))
    par = c.parent
    if par.pid:
        who = f"{_short(par.command, 40)}: " if par.command else ""
        rows.append((f"  parent {par.pid}", f"{who}{par.effect}"))
    for p in c.peers:
        rows.append((f"  {p.kind.value} {p.who}", p.effect))
    if not c.peers:
        rows.append(("  peers", "none (no rank/world-size environment, no TCP peers, no outside pipe ends)"))
    out: List = [_t("Cascade", "bold underline"), _pairs(rows, width=25)]
    if c.group_kill and c.children:
        out.append(_t(f"  ({c.group_kill})", "dim"))
    return out


def signal_lines(r: ImpactReport) -> List:
    s = r.signals
    rows = [(f"  {name}", s.detail[name].meaning) for name in ("SIGTERM", "SIGINT", "SIGUSR1")]
    if s.pending:
        rows.append(("  pending", ", ".join(s.pending)))
    return [_t("Signals", "bold underline"), _pairs(rows, width=10)]


def render_impact(r: ImpactReport, stream: IO[str], width: Optional[int] = None) -> None:
    """Print the whole report to ``stream``."""
    console = Console(file=stream, width=width or (None if stream.isatty() else WIDTH),
                      highlight=False, soft_wrap=False, markup=False, emoji=False)
    parts: List = header(r) + [Text("")] + verdict_block(r) + [Text("")] + loss_block(r)
    parts += [Text(""), _t("Process tree", "bold underline"), tree_table(r)] + files_lines(r)
    parts += [Text("")] + freed_lines(r) + [Text("")] + cascade_lines(r) + [Text("")] + signal_lines(r)
    parts += [Text(""), gpu_line(r.gpu)]
    if r.notes:
        parts.append(_pairs([("note", _t(n, "dim")) for n in r.notes], width=4))
    console.print(Group(*parts))


def one_line(r: ImpactReport) -> str:
    """'If killed now: ...' for the live panel and the job table."""
    loss, v, f = r.loss, r.safe_to_kill, r.freed
    lost = f"{human_duration(loss.since_checkpoint_s)}"
    if loss.since is Since.CHECKPOINT:
        lost += " since checkpoint"
    elif loss.last_checkpoint:
        name = loss.last_checkpoint.path.rstrip("/").rsplit("/", 1)[-1]
        lost += f" (all since start; resumed from {clean(name)})"
    else:
        lost += " (all: no checkpoint)"
    if loss.recovery.steps_since_checkpoint is not None:
        lost += f", {loss.recovery.steps_since_checkpoint} steps"
    if loss.cpu_seconds is not None:
        lost += f", {loss.cpu_seconds:.1f} CPU-s"
    if loss.gpu_seconds:
        lost += f", {loss.gpu_seconds:.1f} GPU-s"
    vram = sum(f.vram_bytes.values())
    ram = human_bytes(f.ram_uss_bytes) + (f"..{human_bytes(f.ram_pss_bytes)}" if f.ram_pss_bytes else "")
    freed = f"frees {ram} RAM" + (f", {human_bytes(vram)} VRAM" if vram else "")
    return f"If killed now: loses {lost}; {freed}; {v.verdict.value}"
