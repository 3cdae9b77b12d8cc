"""What a restart costs: steps to redo, the warm-up to pay again, the total,
and the next checkpoint in time and in steps.

Why: "a kill loses 312 s" is half the answer; the restart also pays the job's
warm-up again (start-up, data loading, reading the checkpoint back: the time
from its start to its first step), and people count work in steps ("a kill
now redoes 627 steps", "epoch 18/40, 45 % complete").  These figures combine
the checkpoint series (pyimpact.analyse.impact.ckpt_history) with the job's progress
read from its output (pyimpact.analyse.impact.progress).  Where a figure cannot be
known yet, ``to_know`` says what would make it known.

Pure: dataclasses and numbers in, a ``Recovery`` (its fields are keys of the ``loss`` section) out.
"""
from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from typing import Dict, List, Optional

from ...jsondoc import json_field, to_json
from .checkpoints import CheckpointFindings
from .ckpt_layouts import index_of
from .progress import Progress
from .resources import Figure
from .schedule import save_schedule


def _fig(value, kind: str, basis: str) -> Figure:
    return Figure(value, kind, basis)


@dataclass(frozen=True)
class ToKnow:
    """A figure that cannot be known yet, and what would make it known (``loss.to_know[]``)."""

    figure: str
    how: str


@dataclass(frozen=True)
class Recovery:
    """What a restart costs, in time and in steps, with the job's progress:
    written inline into the ``loss`` section (its figures' bases go into the
    loss's ``basis``, so ``basis`` itself is not written here)."""

    progress: Progress
    basis: Dict[str, Figure] = json_field(skip=True)
    to_know: List[ToKnow] = json_field(default_factory=list)
    restart_warmup_s: Optional[float] = None        # process start to first step: paid again by a restart
    work_since_checkpoint_s: float = 0.0             # work to redo (warm-up excluded)
    total_lost_s: float = 0.0                        # work to redo + warm-up
    checkpoint_step: Optional[int] = None            # the step of the newest durable checkpoint
    steps_since_checkpoint: Optional[int] = None
    step_rate: Optional[float] = None                # steps/s
    checkpoint_cadence_steps: Optional[int] = None
    next_checkpoint_name: Optional[str] = None
    saves_by_steps: bool = False                     # the job saves every N steps, not every T seconds
    next_checkpoint_by_steps_s: Optional[float] = None
    notes_steps: Optional[str] = None                # a step a save was due at passed without one
    cadence_estimate_s: Optional[float] = None       # cadence in time when the files give none
    cadence_floor_s: Optional[float] = None          # one save so far: the interval is at least this
    history: dict = json_field(default_factory=dict)   # the series on disk (history_dict)


def checkpoint_step(ck: CheckpointFindings) -> tuple:
    """(step of the newest durable checkpoint, how it is known) or (None, why not)."""
    fam = ck.family
    newest = fam.newest if fam else None
    if newest is None:
        return None, "no checkpoint"
    n, kind = index_of(newest.numbers)
    fig = ck.figures
    if fig is not None and fig.run_info.get("global_step") is not None and newest.kind == "directory":
        return int(fig.run_info["global_step"]), f"global_step in {fig.run_info.get('source')}"
    if kind == "step":
        return n, f"the step in its name ({os.path.basename(newest.path.rstrip('/'))})"
    if kind == "number" and fig is not None and fig.cadence_steps and fig.cadence_steps > 1:
        return n, (f"the number in its name ({os.path.basename(newest.path.rstrip('/'))}); the numbers "
                   f"advance by {fig.cadence_steps} per save, so they count steps")
    return None, "its name carries no step number"


def saves_by_steps(ck: CheckpointFindings) -> bool:
    """The job saves every N steps, not every T seconds (pyimpact.analyse.impact.schedule decides)."""
    return save_schedule(ck).by == "steps"


def recovery(ck: CheckpointFindings, prog: Progress, root_start_ns: int, as_of_ns: int, anchor_ns: int,
             since: str, watched_s: float) -> dict:
    """``restart_cost`` as plain data, its figures' bases under ``basis`` (the
    keys it adds to the ``loss`` section, written by the one JSON writer)."""
    r = restart_cost(ck, prog, root_start_ns, as_of_ns, anchor_ns, since, watched_s)
    return dict(to_json(r), basis=to_json(r.basis))


def restart_cost(ck: CheckpointFindings, prog: Progress, root_start_ns: int, as_of_ns: int, anchor_ns: int,
                 since: str, watched_s: float) -> Recovery:
    """The loss fields this module adds: progress, steps since the checkpoint,
    warm-up, total lost, step-based next checkpoint, and what is unknown."""
    basis: Dict[str, Figure] = {}
    to_know: List[ToKnow] = []
    age_s = (as_of_ns - root_start_ns) / 1e9
    fam = ck.family
    newest = fam.newest if fam else None
    fig = ck.figures
    # an earlier run's checkpoint this process was not seen reading: its step
    # counter may have started from 0, not from that checkpoint's step
    unsure = since == "start" and fam is not None and fam.weak_history and not fam.read_since_start

    # -- warm-up: process start to first step (or to the resume read) --------
    warm, warm_kind, warm_basis = None, "unavailable", ""
    if prog.first_step_ns is not None:
        warm = max(0.0, (prog.first_step_ns - root_start_ns) / 1e9)
        warm_kind = "measured"
        warm_basis = ("process start (/proc) to its first step: "
                      + prog.first_step_basis.replace("measured: ", "", 1))
    elif newest is not None and newest.read_ns and newest.read_ns >= root_start_ns and since == "start":
        warm = (newest.read_ns - root_start_ns) / 1e9
        warm_kind = "measured"
        warm_basis = (f"process start to its first checkpoint read: the atime of "
                      f"{os.path.basename(newest.path.rstrip('/'))} (a lower bound of the warm-up)")
    elif prog.step is not None and prog.step_rate and not prog.step_per_epoch:   # a per-epoch counter counts no run
        resumed = checkpoint_step(ck)[0] if since == "start" and newest is not None and not unsure else 0
        if resumed is not None and prog.step >= resumed:
            est = age_s - (prog.step - resumed) / prog.step_rate
            if 0 <= est <= age_s:
                warm, warm_kind = est, "estimated"
                warm_basis = (f"age {age_s:.0f} s minus the {prog.step - resumed} steps this process did "
                              f"at {prog.step_rate:.3g} steps/s")
    if warm is None:
        warm_basis = "no first-step time: the job's log has no timestamped step lines or tqdm bar"
        to_know.append(ToKnow("restart_warmup_s", "a log with timestamps or a tqdm bar, or `pyimpact record` running when the "
                               "job starts (it keeps process starts and checkpoint reads)"))
    restart_warmup_s = round(warm, 3) if warm is not None else None
    basis["restart_warmup_s"] = _fig(restart_warmup_s, warm_kind, warm_basis)

    # -- work since the checkpoint, and the total a restart costs -------------
    start_work = root_start_ns + int((warm or 0.0) * 1e9)
    if since == "checkpoint":
        work = (as_of_ns - anchor_ns) / 1e9
        work_basis = "as-of time minus the checkpoint's completion"
    else:
        work = max(0.0, (as_of_ns - max(anchor_ns, start_work)) / 1e9)
        work_basis = ("since its first step" if warm is not None else "since the process started")
    work_since_checkpoint_s = round(work, 3)
    total = work + (warm or 0.0)
    total_lost_s = round(total, 3)
    basis["total_lost_s"] = _fig(total_lost_s, "estimated" if warm_kind != "measured" else "measured",
                                 f"work to redo ({work:.1f} s, {work_basis}) + restart warm-up "
                                 + (f"({warm:.1f} s, {warm_kind})" if warm is not None
                                    else "(unknown, counted as 0)"))

    # -- steps since the checkpoint -------------------------------------------
    ck_step, ck_step_basis = checkpoint_step(ck)
    steps, s_kind, s_basis = None, "unavailable", ""
    if prog.step is not None and ck_step is not None and prog.step >= ck_step and not unsure \
            and not prog.step_per_epoch:
        steps, s_kind = prog.step - ck_step, "measured"
        s_basis = f"step {prog.step} in {prog.log} minus the checkpoint's step {ck_step} ({ck_step_basis})"
    elif prog.step_rate:
        steps = int(round(prog.step_rate * work))
        s_kind = "estimated"
        s_basis = f"{work:.1f} s of work at {prog.step_rate:.3g} steps/s ({prog.step_rate_kind})" + (
            " (not counted from the earlier run's checkpoint step: this process was not seen resuming from it)"
            if unsure and ck_step is not None else "")
    else:
        s_basis = ("no step counter in the job's output" if prog.step is None
                   else "the checkpoint's step is unknown and no step rate was measured")
        to_know.append(ToKnow("steps_since_checkpoint", "watch longer (--watch 30) so the step counter advances" if prog.step is not None
                        else "the job's log (redirect its stdout to a file, or log steps)"))
    steps_since_checkpoint = steps
    basis["steps_since_checkpoint"] = _fig(steps, s_kind, s_basis)
    step_rate = round(prog.step_rate, 4) if prog.step_rate else None
    basis["step_rate"] = _fig(step_rate, prog.step_rate_kind, prog.step_rate_basis)

    # -- cadence in steps, and the next save by steps -------------------------
    checkpoint_cadence_steps = fig.cadence_steps if fig else None
    basis["checkpoint_cadence_steps"] = _fig(checkpoint_cadence_steps,
                                             "measured" if fig and fig.cadence_steps else "unavailable",
                                             (fig.cadence_steps_basis if fig and fig.cadence_steps
                                              else "fewer than two numbered saves and no save_steps"))
    # the counter below the checkpoint's step by more than a log line's lag (half a save interval)
    recounted = (ck_step is not None and prog.step is not None and not prog.step_per_epoch
                 and prog.step < ck_step - 0.5 * ((fig.cadence_steps if fig else None) or 0))
    next_checkpoint_name = fig.next_name if fig and not recounted else None
    basis["next_checkpoint_name"] = _fig(next_checkpoint_name,
                                         "estimated" if next_checkpoint_name else "unavailable",
                                         fig.next_name_basis if next_checkpoint_name
                                         else (f"the job's step counter ({prog.step}) is below the checkpoint's "
                                               f"step ({ck_step}): its next name is not that series' next"
                                               if recounted else "no step interval between saves known"))
    by_steps = saves_by_steps(ck)
    next_checkpoint_by_steps_s = None
    notes_steps = None
    if fig and fig.cadence_steps and prog.step is not None and prog.step_rate and not prog.step_per_epoch:
        base = ck_step if ck_step is not None else None
        if base is not None and recounted:
            # the counter is below the checkpoint's step: this process started its
            # count again (a fresh run beside an earlier run's series), so the
            # series' step numbers say nothing of its next save
            notes_steps = (f"the job's step counter ({prog.step}) is below the checkpoint's step ({base}): "
                           "it did not resume from that series, its next save is not predicted by steps")
            base = None
        due = base + fig.cadence_steps if base is not None else None
        if due is not None and prog.step > due:
            # the step a save was due at has passed with no newer checkpoint on disk
            notes_steps = (f"step {due} passed without a save: the job does not save every "
                                  f"{fig.cadence_steps} steps now (or saves elsewhere)")
            base = None
        if base is not None:
            nxt = due
            left = nxt - prog.step
            next_checkpoint_by_steps_s = round(left / prog.step_rate, 3)
            basis["next_checkpoint_by_steps_s"] = _fig(
                next_checkpoint_by_steps_s, "estimated",
                f"{left} steps to step {nxt} (every {fig.cadence_steps} steps) at {prog.step_rate:.3g} steps/s")

    # -- cadence in time when the files give none: steps / rate ---------------
    cadence_estimate_s = None
    if ck.cadence_s is None and fig and fig.cadence_steps and prog.step_rate:
        cadence_estimate_s = round(fig.cadence_steps / prog.step_rate, 3)
        basis["cadence_estimate_s"] = _fig(cadence_estimate_s, "estimated",
                                           f"{fig.cadence_steps} steps per save ({fig.cadence_steps_basis}) at "
                                           f"{prog.step_rate:.3g} steps/s ({prog.step_rate_kind})")
    saves = [x for x in prog.saves if x[2]]          # save lines with their own timestamps
    if ck.cadence_s is None and cadence_estimate_s is None and len(saves) >= 2:
        times = sorted({x[0] for x in saves})
        gaps = [(b - a) / 1e9 for a, b in zip(times, times[1:]) if b - a >= 1_000_000_000]
        if gaps:
            cadence_estimate_s = round(statistics.median(gaps[-10:]), 3)
            basis["cadence_estimate_s"] = _fig(cadence_estimate_s, "measured",
                                               f"median of {len(gaps)} interval(s) between the save lines of "
                                               f"{prog.log} (their own timestamps)")
    if ck.cadence_s is None and cadence_estimate_s is None:
        if fam is None or not fam.completions:
            to_know.append(ToKnow("checkpoint_cadence_s", "no checkpoint on disk where the job works: if it saves elsewhere, that "
                                   "directory is not on its command line; else watch until it saves "
                                   "(--watch 600) or run `pyimpact record`"))
        else:
            floor = fig.cadence_floor_s if fig else None
            more = max(30.0, (floor or 0.0))
            to_know.append(ToKnow("checkpoint_cadence_s", f"one save on disk so far; the interval is at least {floor or 0:.0f} s: watch "
                                   f"for {more:.0f} s more (--watch {more:.0f}) to see the next save, or keep "
                                   "`pyimpact record` running (it keeps every checkpoint completion)"))
    cadence_floor_s = round(fig.cadence_floor_s, 3) if fig and fig.cadence_floor_s is not None else None
    if prog.step is None:
        to_know.append(ToKnow("progress", "the job writes no step counter to a file it appends to "
                        "(run it with stdout/stderr redirected to a file, or log steps)"))
    elif not prog.step_rate:
        to_know.append(ToKnow("step_rate", f"the step counter did not advance in {watched_s:.1f} s: "
                        "watch for 30 s more (--watch 30)"))
    history = history_dict(ck, root_start_ns)
    return Recovery(progress=prog, basis=basis, to_know=to_know, restart_warmup_s=restart_warmup_s,
                    work_since_checkpoint_s=work_since_checkpoint_s, total_lost_s=total_lost_s,
                    checkpoint_step=ck_step, steps_since_checkpoint=steps_since_checkpoint,
                    step_rate=step_rate, checkpoint_cadence_steps=checkpoint_cadence_steps,
                    next_checkpoint_name=next_checkpoint_name, saves_by_steps=by_steps,
                    next_checkpoint_by_steps_s=next_checkpoint_by_steps_s, notes_steps=notes_steps,
                    cadence_estimate_s=cadence_estimate_s, cadence_floor_s=cadence_floor_s, history=history)


def history_dict(ck: CheckpointFindings, root_start_ns: int, limit: int = 12) -> dict:
    """The series on disk the figures came from: every complete checkpoint
    (path, completed_at_ns, size, step/epoch, layout, written before the
    process started?)."""
    fam = ck.family
    if fam is None:
        return {"series": None, "entries": [], "earlier_run": False}
    entries = sorted(fam.completions, key=lambda c: c.completed_ns)[-limit:]
    sizes = [c.size_bytes for c in fam.completions]
    return {
        "series": fam.key,
        "earlier_run": fam.earlier_run,
        "count": len(fam.completions),
        "median_size_bytes": int(statistics.median(sizes)) if sizes else None,
        "entries": [{"path": c.path, "completed_at_ns": c.completed_ns, "size_bytes": c.size_bytes,
                     "kind": c.kind, "layout": c.layout, "complete_basis": c.complete_basis,
                     "step": c.numbers.get("step"), "epoch": c.numbers.get("epoch"),
                     "number": c.numbers.get("number"),
                     "predates_process": c.completed_ns < root_start_ns,
                     "read_after_start": bool(c.read_ns and c.read_ns >= root_start_ns)} for c in entries],
        "figures": ck.figures.to_dict() if ck.figures else None,
    }


def progress_sentence(p: Progress, steps_since_checkpoint: Optional[int]) -> Optional[str]:
    """'step 1234/5000 (24.7 %), epoch 3/40, 3.2 steps/s; a kill now redoes 627 steps'."""
    parts: List[str] = []
    if p.step is not None and not p.step_per_epoch:
        parts.append(f"step {p.step}" + (f"/{p.total_steps}" if p.total_steps else ""))
    if p.epoch is not None:
        parts.append(f"epoch {p.epoch:g}" + (f"/{p.epochs}" if p.epochs else "")
                     + (f" (step {p.step}" + (f"/{p.total_steps}" if p.total_steps else "") + " of it)"
                        if p.step_per_epoch and p.step is not None else ""))
    if p.pct_complete is not None:
        parts.append(f"{p.pct_complete:.0f} % complete")
    if p.step_rate:
        parts.append(f"{p.step_rate:.3g} steps/s")
    if p.eta_s is not None:
        parts.append(f"ETA {p.eta_s:.0f} s")
    if not parts:
        return None
    s = ", ".join(parts)
    if steps_since_checkpoint is not None:
        s += f"; a kill now redoes {steps_since_checkpoint} steps"
    return s
