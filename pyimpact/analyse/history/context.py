"""What the recorder's history adds to a diagnosis or a kill preview (pure).

From the raw context (pyimpact.collect.history_context): the cadence of the
job's checkpoints (saves: completions of checkpoint-like files, those within
a second of each other counted as one save, the median gap between saves),
the last saves, and the sentence "this worker was started by job X (pid,
command), which exited at T" when its original parent is gone.
"""
from __future__ import annotations

import datetime as _dt
from typing import List

from ...names import is_checkpoint_name, is_temp_name
from ..impact.ckpt_history import SAVE_CLUSTER_NS

LAST_N = 5


def _saves(completions: List[dict]) -> List[dict]:
    """One entry per save: the newest completion of a checkpoint-like final name
    (temporary names are the writes before a rename, not saves)."""
    out: List[dict] = []
    for c in sorted(completions, key=lambda c: c["t_ns"]):
        name = (c.get("path") or "").rsplit("/", 1)[-1]
        if not is_checkpoint_name(name) or is_temp_name(name):
            continue
        if out and c["t_ns"] - out[-1]["t_ns"] <= SAVE_CLUSTER_NS:
            out[-1] = c
        else:
            out.append(c)
    return out


def summarise(ctx: dict) -> dict:
    """``ctx`` plus ``cadence_s``, ``last_saves`` and ``started_by`` (a sentence or None)."""
    if not ctx.get("available"):
        return dict(ctx)
    out = dict(ctx)
    saves = _saves(ctx.get("completions") or [])
    gaps = sorted((b["t_ns"] - a["t_ns"]) / 1e9 for a, b in zip(saves, saves[1:]))
    out["cadence_s"] = gaps[len(gaps) // 2] if gaps else None
    out["saves"] = len(saves)
    out["last_saves"] = saves[-LAST_N:]
    out["last_save_age_s"] = (ctx["before_ns"] - saves[-1]["t_ns"]) / 1e9 if saves else None
    p = ctx.get("original_parent")
    out["started_by"] = None
    if p and p.get("exit_ns"):
        who = p.get("job_command") or p.get("command") or "?"
        when = _dt.datetime.fromtimestamp(p["exit_ns"] / 1e9, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        out["started_by"] = (f"this process was started by pid {p['pid']} ({p.get('command') or '?'}) of job "
                             f"{who} (pid {p.get('job_root_pid')}), which exited at {when}")
    return out
