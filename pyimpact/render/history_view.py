"""The few lines the recorder's history adds under diagnose, kill-preview and report.

Paths and command lines come from other processes: escaped, plain text.
"""
from __future__ import annotations

import textwrap

from ..formats import human_bytes, human_duration, utc_time
from .text import clean


def _t(ns) -> str:
    return utc_time(ns, "%H:%M:%S")


def lines(h: dict) -> list:
    if not h:
        return []
    if not h.get("available"):
        out = [f"history: none ({clean(h.get('why', ''))})"]
        if h.get("would_add"):
            out.append("  " + clean(h["would_add"]))
        return out
    out = [f"history (recorder database {clean(h['database'])}):"]
    job = h.get("job") or {}
    out.append(f"  job: {clean(job.get('command') or '?')[:100]} (pid {job.get('root_pid')})"
               + (f", ended {_t(job['ended_ns'])}" if job.get("ended_ns") else ""))
    if h.get("started_by"):
        out.append("  " + clean(h["started_by"]))
    if h.get("saves"):
        cad = f"every {human_duration(h['cadence_s'])}" if h.get("cadence_s") else "once"
        out.append(f"  checkpoints: {h['saves']} saves recorded, {cad}; last {human_duration(h['last_save_age_s'])} "
                   "before this look")
        for c in h.get("last_saves", []):
            out.append(f"    {_t(c['t_ns'])} {c['kind']:<6} {clean(c['path'])} ({human_bytes(c.get('size'))})")
    else:
        out.append("  checkpoints: none recorded for this job")
    for s in h.get("signals_before", []):
        out.append(f"  signal before the window: {_t(s['t_ns'])} signal {s['sig']} to pid {s['target_pid']} from pid "
                   f"{s['sender_pid']} ({clean(s.get('sender_comm') or '?')})")
    return out


def write(h: dict, stream, width: int = 80) -> None:
    """The lines, folded at ``width`` columns (long paths fold onto the next line, never cut)."""
    for line in lines(h):
        indent = " " * (len(line) - len(line.lstrip()) + 2)
        for part in textwrap.wrap(line, width=width, subsequent_indent=indent, break_on_hyphens=False) or [""]:
            stream.write(part + "\n")
    stream.flush()
