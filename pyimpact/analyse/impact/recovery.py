"""What a restart costs: steps to redo, the warm-up to pay again, the total,
and the next checkpoint in time and in steps.

Why: "a kill loses 312 s" is half the answer; the restart also pays the job's
warm-up again (start-up, data loading, reading the checkpoint back: the time
from its start to its first step), and people count work in steps ("a kill
now redoes 627 steps", "epoch 18/40, 45 % complete").  These figures combine
the checkpoint series (pyimpact.analyse.impact.ckpt_history) with the job's progress
read from its output (pyimpact.analyse.impact.progress).  Where a figure cannot be
known yet, ``to_know`` says what would make it known.

Pure: dataclasses and numbers in, a dict for the ``loss`` section out.
"""
from __future__ import annotations

import os
import statistics
from typing import List, Optional

from .checkpoints import CheckpointFindings
from .ckpt_layouts import index_of
from .progress import Progress


def _fig(value, kind: str, basis: str) -> dict:
    return {"value": value, "kind": kind, "basis": basis}


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
    """The series' step numbers advance by the same amount every save (or HF
    save_steps says so): the job saves every N steps, not every T seconds."""
    fam, fig = ck.family, ck.figures
    if fig is None or not fig.cadence_steps:
        return False
    if "save_steps" in fig.cadence_steps_basis:
        return True
    nums = sorted({index_of(c.numbers)[0] for c in fam.completions if index_of(c.numbers)[0] is not None})
    diffs = [b - a for a, b in zip(nums, nums[1:])]
    return len(diffs) >= 1 and len(set(diffs)) == 1 and diffs[0] > 1


def recovery(ck: CheckpointFindings, prog: Progress, root_start_ns: int, as_of_ns: int, anchor_ns: int,
             since: str, watched_s: float) -> dict:
    """The loss fields this module adds: progress, steps since the checkpoint,
    warm-up, total lost, step-based next checkpoint, and what is unknown."""
    out: dict = {"progress": prog.to_dict(), "basis": {}, "to_know": []}
    basis, to_know = out["basis"], out["to_know"]
    age_s = (as_of_ns - root_start_ns) / 1e9
    fam = ck.family
    newest = fam.newest if fam else None
    fig = ck.figures

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
    elif prog.step is not None and prog.step_rate:
        resumed = checkpoint_step(ck)[0] if since == "start" and newest is not None else 0
        if resumed is not None and prog.step >= resumed:
            est = age_s - (prog.step - resumed) / prog.step_rate
            if 0 <= est <= age_s:
                warm, warm_kind = est, "estimated"
                warm_basis = (f"age {age_s:.0f} s minus the {prog.step - resumed} steps this process did "
                              f"at {prog.step_rate:.3g} steps/s")
    if warm is None:
        warm_basis = "no first-step time: the job's log has no timestamped step lines or tqdm bar"
        to_know.append({"figure": "restart_warmup_s",
                        "how": "a log with timestamps or a tqdm bar, or `pyimpact record` running when the "
                               "job starts (it keeps process starts and checkpoint reads)"})
    out["restart_warmup_s"] = round(warm, 3) if warm is not None else None
    basis["restart_warmup_s"] = _fig(out["restart_warmup_s"], warm_kind, warm_basis)

    # -- work since the checkpoint, and the total a restart costs -------------
    start_work = root_start_ns + int((warm or 0.0) * 1e9)
    if since == "checkpoint":
        work = (as_of_ns - anchor_ns) / 1e9
        work_basis = "as-of time minus the checkpoint's completion"
    else:
        work = max(0.0, (as_of_ns - max(anchor_ns, start_work)) / 1e9)
        work_basis = ("since its first step" if warm is not None else "since the process started")
    out["work_since_checkpoint_s"] = round(work, 3)
    total = work + (warm or 0.0)
    out["total_lost_s"] = round(total, 3)
    basis["total_lost_s"] = _fig(out["total_lost_s"], "estimated" if warm_kind != "measured" else "measured",
                                 f"work to redo ({work:.1f} s, {work_basis}) + restart warm-up "
                                 + (f"({warm:.1f} s, {warm_kind})" if warm is not None
                                    else "(unknown, counted as 0)"))

    # -- steps since the checkpoint -------------------------------------------
    ck_step, ck_step_basis = checkpoint_step(ck)
    out["checkpoint_step"] = ck_step
    steps, s_kind, s_basis = None, "unavailable", ""
    if prog.step is not None and ck_step is not None and prog.step >= ck_step:
        steps, s_kind = prog.step - ck_step, "measured"
        s_basis = f"step {prog.step} in {prog.log} minus the checkpoint's step {ck_step} ({ck_step_basis})"
    elif prog.step_rate:
        steps = int(round(prog.step_rate * work))
        s_kind = "estimated"
        s_basis = f"{work:.1f} s of work at {prog.step_rate:.3g} steps/s ({prog.step_rate_kind})"
    else:
        s_basis = ("no step counter in the job's output" if prog.step is None
                   else "the checkpoint's step is unknown and no step rate was measured")
        to_know.append({"figure": "steps_since_checkpoint",
                        "how": "watch longer (--watch 30) so the step counter advances" if prog.step is not None
                        else "the job's log (redirect its stdout to a file, or log steps)"})
    out["steps_since_checkpoint"] = steps
    basis["steps_since_checkpoint"] = _fig(steps, s_kind, s_basis)
    out["step_rate"] = round(prog.step_rate, 4) if prog.step_rate else None
    basis["step_rate"] = _fig(out["step_rate"], prog.step_rate_kind, prog.step_rate_basis)

    # -- cadence in steps, and the next save by steps -------------------------
    out["checkpoint_cadence_steps"] = fig.cadence_steps if fig else None
    basis["checkpoint_cadence_steps"] = _fig(out["checkpoint_cadence_steps"],
                                             "measured" if fig and fig.cadence_steps else "unavailable",
                                             (fig.cadence_steps_basis if fig and fig.cadence_steps
                                              else "fewer than two numbered saves and no save_steps"))
    out["next_checkpoint_name"] = fig.next_name if fig else None
    basis["next_checkpoint_name"] = _fig(out["next_checkpoint_name"],
                                         "estimated" if fig and fig.next_name else "unavailable",
                                         fig.next_name_basis if fig and fig.next_name
                                         else "no step interval between saves known")
    out["saves_by_steps"] = saves_by_steps(ck)
    out["next_checkpoint_by_steps_s"] = None
    out["notes_steps"] = None
    if fig and fig.cadence_steps and prog.step is not None and prog.step_rate:
        base = ck_step if ck_step is not None else None
        due = base + fig.cadence_steps if base is not None else None
        if due is not None and prog.step > due:
            # the step a save was due at has passed with no newer checkpoint on disk
            out["notes_steps"] = (f"step {due} passed without a save: the job does not save every "
                                  f"{fig.cadence_steps} steps now (or saves elsewhere)")
            base = None
        if base is not None:
            nxt = due
            left = nxt - prog.step
            out["next_checkpoint_by_steps_s"] = round(left / prog.step_rate, 3)
            basis["next_checkpoint_by_steps_s"] = _fig(
                out["next_checkpoint_by_steps_s"], "estimated",
                f"{left} steps to step {nxt} (every {fig.cadence_steps} steps) at {prog.step_rate:.3g} steps/s")

    # -- cadence in time when the files give none: steps / rate ---------------
    out["cadence_estimate_s"] = None
    if ck.cadence_s is None and fig and fig.cadence_steps and prog.step_rate:
        out["cadence_estimate_s"] = round(fig.cadence_steps / prog.step_rate, 3)
        basis["cadence_estimate_s"] = _fig(out["cadence_estimate_s"], "estimated",
                                           f"{fig.cadence_steps} steps per save ({fig.cadence_steps_basis}) at "
                                           f"{prog.step_rate:.3g} steps/s ({prog.step_rate_kind})")
    saves = [x for x in prog.saves if x[2]]          # save lines with their own timestamps
    if ck.cadence_s is None and out["cadence_estimate_s"] is None and len(saves) >= 2:
        times = sorted({x[0] for x in saves})
        gaps = [(b - a) / 1e9 for a, b in zip(times, times[1:]) if b - a >= 1_000_000_000]
        if gaps:
            out["cadence_estimate_s"] = round(statistics.median(gaps[-10:]), 3)
            basis["cadence_estimate_s"] = _fig(out["cadence_estimate_s"], "measured",
                                               f"median of {len(gaps)} interval(s) between the save lines of "
                                               f"{prog.log} (their own timestamps)")
    if ck.cadence_s is None and out["cadence_estimate_s"] is None:
        if fam is None or not fam.completions:
            to_know.append({"figure": "checkpoint_cadence_s",
                            "how": "no checkpoint on disk where the job works: if it saves elsewhere, that "
                                   "directory is not on its command line; else watch until it saves "
                                   "(--watch 600) or run `pyimpact record`"})
        else:
            floor = fig.cadence_floor_s if fig else None
            more = max(30.0, (floor or 0.0))
            to_know.append({"figure": "checkpoint_cadence_s",
                            "how": f"one save on disk so far; the interval is at least {floor or 0:.0f} s: watch "
                                   f"for {more:.0f} s more (--watch {more:.0f}) to see the next save, or keep "
                                   "`pyimpact record` running (it keeps every checkpoint completion)"})
    out["cadence_floor_s"] = round(fig.cadence_floor_s, 3) if fig and fig.cadence_floor_s is not None else None
    if prog.step is None:
        to_know.append({"figure": "progress", "how": "the job writes no step counter to a file it appends to "
                        "(run it with stdout/stderr redirected to a file, or log steps)"})
    elif not prog.step_rate:
        to_know.append({"figure": "step_rate", "how": f"the step counter did not advance in {watched_s:.1f} s: "
                        "watch for 30 s more (--watch 30)"})
    out["history"] = history_dict(ck, root_start_ns)
    return out


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


def progress_sentence(loss: dict) -> Optional[str]:
    """'step 1234/5000 (24.7 %), epoch 3/40, 3.2 steps/s; a kill now redoes 627 steps'."""
    p = loss.get("progress") or {}
    parts: List[str] = []
    if p.get("step") is not None:
        parts.append(f"step {p['step']}" + (f"/{p['total_steps']}" if p.get("total_steps") else ""))
    if p.get("epoch") is not None:
        e = p["epoch"]
        parts.append(f"epoch {e:g}" + (f"/{p['epochs']}" if p.get("epochs") else ""))
    if p.get("pct_complete") is not None:
        parts.append(f"{p['pct_complete']:.0f} % complete")
    if p.get("step_rate"):
        parts.append(f"{p['step_rate']:.3g} steps/s")
    if p.get("eta_s") is not None:
        parts.append(f"ETA {p['eta_s']:.0f} s")
    if not parts:
        return None
    s = ", ".join(parts)
    if loss.get("steps_since_checkpoint") is not None:
        s += f"; a kill now redoes {loss['steps_since_checkpoint']} steps"
    return s
