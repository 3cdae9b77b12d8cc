"""When the next checkpoint comes: does the job save by time or by steps, and how sure is that.

Why a module of its own: a job that saves every T seconds but names its
files by step (``checkpoint_0001183.pt``, ``checkpoint_0002533.pt``) shows a
step interval too, and extrapolating that one by the step rate seen during a
short look (which the look itself slows down) put such a job's next save up
to a second, or several, late.  Two schedules leave different marks:

- by steps (``if step % N == 0``, HF ``save_steps``): every save's step
  number is a multiple of N, or the saves are exactly N steps apart, while
  the time between them follows the step rate;
- by time (``if now - last_save >= T``): the time between saves is regular
  and the step numbers are whatever step the clock ran out at.

The schedule is decided from those marks (named in its basis), and the next
save is predicted from the one the job follows: last completion + the
median interval, or the steps left at the step rate.  The uncertainty is
what the evidence shows: the spread of the intervals (by time), or the
difference the step rate between earlier saves makes (by steps); from a
single interval the regularity is unknown, and the basis says so.

Pure: the checkpoint findings, the restart-cost figures and the progress in,
a ``Schedule`` / ``NextCheckpoint`` out.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import List, Optional

from .checkpoints import CheckpointFindings
from .ckpt_history import numbers_of_kind
from .progress import Progress

IRREGULAR = 0.10        # intervals spread by more than this fraction of the cadence: irregular
OVERDUE = 0.5           # a save later than this fraction of the cadence (+ its uncertainty) is not coming


@dataclass(frozen=True)
class Schedule:
    """What the job's saves follow (``steps`` | ``time`` | ``unknown``) and why."""

    by: str
    basis: str


def save_schedule(ck: CheckpointFindings) -> Schedule:
    """By steps or by time, from the series' step numbers and completion times."""
    fig = ck.figures
    timed = ck.cadence_s is not None
    if fig is None or not fig.cadence_steps:
        return Schedule("time", "no step numbers in the names: only the time between saves is known") if timed \
            else Schedule("unknown", "no interval between saves known")
    n = fig.cadence_steps
    if "save_steps" in fig.cadence_steps_basis:
        return Schedule("steps", f"every {n} steps ({fig.cadence_steps_basis})")
    nums = [p[1] for p in fig.save_points]
    diffs = [b - a for a, b in zip(nums, nums[1:]) if b > a]
    nums_of = numbers_of_kind(fig.cadence_steps_kind)
    unit = {"step": "steps", "epoch": "epochs"}.get(fig.cadence_steps_kind, "")
    if n <= 1 or not diffs:
        return Schedule("time" if timed else "unknown",
                        f"the {nums_of} advance by {n} per save: a save counter, not a schedule")
    shown = ", ".join(str(x) for x in nums[-4:])
    every = f"it saves every {n} {unit or '(steps, by the names)'}"
    if len(nums) >= 2 and all(x % n == 0 for x in nums):
        return Schedule("steps", f"the {nums_of} of the saves ({shown}) are all multiples of {n}: {every}")
    if len(diffs) >= 2 and len(set(diffs)) == 1:
        return Schedule("steps", f"the {nums_of} of the saves ({shown}) are exactly {n} apart: {every}")
    if timed:
        why = (f"the {nums_of} advance unevenly between saves (by {', '.join(str(d) for d in diffs[-4:])})"
               if len(set(diffs)) > 1 else f"the {nums_of} ({shown}) are not multiples of their interval {n}")
        return Schedule("time", why + f", while a save comes every ~{ck.cadence_s:.1f} s: it saves by time")
    return Schedule("steps", f"only an interval in the {nums_of} is known ({n} between saves)")


@dataclass
class NextCheckpoint:
    """The next save: in how many seconds, give or take how much, and how it was predicted."""

    in_s: Optional[float] = None
    uncertainty_s: Optional[float] = None
    basis: str = ""
    uncertainty_basis: str = ""
    notes: List[str] = field(default_factory=list)


def _by_time(ck: CheckpointFindings, anchor_ns: int, as_of_ns: int, nxt: NextCheckpoint) -> None:
    cad = ck.cadence_s
    gaps = list(ck.figures.cadence_gaps_s) if ck.figures else []
    nxt.in_s = (anchor_ns + cad * 1e9 - as_of_ns) / 1e9
    nxt.basis = f"last completion + cadence {cad:.1f} s"
    if len(gaps) >= 2:
        spread = (max(gaps) - min(gaps)) / 2
        nxt.uncertainty_s = round(spread, 3)
        nxt.uncertainty_basis = (f"half the spread of the last {len(gaps)} intervals "
                                 f"({min(gaps):.1f}-{max(gaps):.1f} s)")
        if spread > IRREGULAR * cad:
            nxt.notes.append(f"the checkpoint cadence is irregular: the last {len(gaps)} intervals range "
                             f"{min(gaps):.1f}-{max(gaps):.1f} s, so the next save may come "
                             f"{spread:.1f} s earlier or later than predicted")
    else:
        nxt.uncertainty_basis = "a single interval between saves so far: how regular the cadence is is unknown"


def _by_steps(rec, prog: Progress, ck: CheckpointFindings, nxt: NextCheckpoint) -> None:
    nxt.in_s = rec.next_checkpoint_by_steps_s
    left = (rec.next_checkpoint_by_steps_s or 0.0) * (prog.step_rate or 0.0)
    pts = ck.figures.save_points if ck.figures else []
    rates = [(b[1] - a[1]) / ((b[0] - a[0]) / 1e9) for a, b in zip(pts, pts[1:]) if b[0] > a[0] and b[1] > a[1]]
    if rates and left > 0:
        r = statistics.median(rates[-10:])
        other = left / r
        nxt.uncertainty_s = round(abs(other - nxt.in_s), 3)
        nxt.uncertainty_basis = (f"at the step rate between the last saves ({r:.3g} steps/s, against "
                                 f"{prog.step_rate:.3g} steps/s now) it would be in {other:.1f} s")
    else:
        nxt.uncertainty_basis = "no step rate between earlier saves to compare the current one with"


def next_checkpoint(ck: CheckpointFindings, rec, prog: Progress, since: str, anchor_ns: int,
                    root_start_ns: int, as_of_ns: int) -> NextCheckpoint:
    """The next save, by the schedule the job follows (``rec``: the Recovery of
    pyimpact.analyse.impact.recovery, with the step-based figures)."""
    sched = save_schedule(ck)
    nxt = NextCheckpoint()
    steps_known = rec.next_checkpoint_by_steps_s is not None
    steps_basis = rec.basis["next_checkpoint_by_steps_s"].basis if steps_known else ""
    if sched.by == "steps" and steps_known:
        _by_steps(rec, prog, ck, nxt)
        nxt.basis = f"the job saves by steps ({sched.basis}): {steps_basis}"
    elif ck.cadence_s and since == "checkpoint":
        _by_time(ck, anchor_ns, as_of_ns, nxt)
        if sched.by == "time" and ck.figures and ck.figures.cadence_steps:
            nxt.basis += f" (the job saves by time: {sched.basis})"
        if nxt.in_s < 0:
            late = -nxt.in_s
            if steps_known:
                nxt.in_s = None
                _by_steps(rec, prog, ck, nxt)
                nxt.basis = "by time it is overdue; by steps: " + steps_basis
            elif late > OVERDUE * ck.cadence_s + (nxt.uncertainty_s or 0.0):
                # far past its time: the cadence no longer holds (the job stopped saving,
                # saves per epoch, or elsewhere); "the next save comes at once" would be a guess
                nxt.notes.append(f"the next checkpoint is overdue by {late:.1f} s (cadence {ck.cadence_s:.1f} s): "
                                 "the job no longer saves at that cadence (it may save by steps or epochs, "
                                 "elsewhere, or not again); when it saves next is unknown")
                nxt.in_s = None
                nxt.uncertainty_s = None
                nxt.basis = (f"unknown: overdue by {late:.1f} s, more than half the cadence "
                             f"({ck.cadence_s:.1f} s) after the expected save")
                nxt.uncertainty_basis = "no next checkpoint predicted"
            else:
                nxt.notes.append(f"the next checkpoint is overdue by {late:.1f} s (cadence {ck.cadence_s:.1f} s):"
                                 " the job may checkpoint by steps, not by time, or be slowed down")
                nxt.in_s = 0.0
    elif steps_known:
        _by_steps(rec, prog, ck, nxt)
        nxt.basis = steps_basis
    elif ck.cadence_s and since == "start" and ck.family is not None and ck.family.newest is not None:
        first = root_start_ns + int((rec.restart_warmup_s or 0) * 1e9)
        due = first + int(ck.cadence_s * 1e9)
        if due >= as_of_ns:
            nxt.in_s = (due - as_of_ns) / 1e9
            nxt.basis = (f"this run's first step + the earlier run's cadence {ck.cadence_s:.1f} s "
                         "(no save by this process yet)")
            nxt.uncertainty_basis = "the earlier run's cadence; this run's is not known yet"
        else:
            nxt.notes.append(f"no save by this process in {(as_of_ns - first) / 1e9:.0f} s although the earlier "
                             f"run saved every {ck.cadence_s:.1f} s: it saves at another cadence now, or elsewhere")
    if nxt.in_s is not None:
        nxt.in_s = round(nxt.in_s, 3)
    return nxt
