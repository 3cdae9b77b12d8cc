"""The safe-to-kill verdict and the recommendation, from the impact figures.

Why these rules: a kill while a checkpoint (or any large file of the job) is
being written can leave a truncated file, or no complete one at all for an
in-place writer, so that is "unsafe" whatever else holds; otherwise the cost
is the work since the last completed checkpoint, "costly" from a threshold
(60 s of wall, CPU or GPU time by default).  The recommendation prefers what
loses nothing: wait for the write or the next checkpoint when it is near, a
graceful SIGTERM when the process catches it, a suspend (SIGSTOP) when the
work is valuable and no checkpoint is in sight; kill when it is cheap.  Each
option comes with its figures, so the operator can choose otherwise.

Pure functions over the figures built in pyimpact.analyse.impact.report;
they return the typed ``SafeToKill`` and ``Recommendation`` of the report.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import List, Optional, Union

from ...formats import human_bytes as mib  # the one byte formatter ("1.5 GiB")
from .checkpoints import PartialFile
from .freed import Freed
from .loss import Loss, Since
from .signals import SignalReport
from .tree import Cascade, PeerKind


class Verdict(str, enum.Enum):
    """How a kill now would go: ``safe`` (cheap), ``costly`` (loses at least
    the threshold of work), ``unsafe`` (a checkpoint or large file is being
    written: a kill leaves it truncated)."""

    SAFE = "safe"
    COSTLY = "costly"
    UNSAFE = "unsafe"


class Action(str, enum.Enum):
    """A way to stop the job: each one the operator can take (pyimpact stop / suspend, or by hand)."""

    KILL = "kill"
    WAIT = "wait"
    SIGTERM = "sigterm"
    SUSPEND = "suspend"


@dataclass(frozen=True)
class SafeToKill:
    """The verdict (``safe_to_kill`` of the --json document), why, and when
    the next safe moment comes, so a caller can wait for it instead of killing now."""

    verdict: Verdict
    reason: str
    next_safe_in_s: Optional[float]      # None: no safe moment in sight (no cadence, no write rate)
    next_safe_basis: str


@dataclass(frozen=True)
class KillOption:
    """SIGKILL now, with what it loses in each unit."""

    action: Action = field(default=Action.KILL, init=False)
    text: str = ""
    loses_s: float = 0.0
    cpu_seconds: Optional[float] = None
    gpu_seconds: Optional[float] = None


@dataclass(frozen=True)
class WaitOption:
    """Wait ``wait_s`` for the next safe moment, then stop: loses ~nothing."""

    action: Action = field(default=Action.WAIT, init=False)
    wait_s: float = 0.0
    text: str = ""
    loses_s: float = 0.0


@dataclass(frozen=True)
class StopOption:
    """Another way to stop (SIGTERM, suspend); ``loses_s`` None: depends on
    what the job's own handler does, which is not visible from outside."""

    action: Action
    text: str
    loses_s: Optional[float]


Option = Union[KillOption, WaitOption, StopOption]


@dataclass(frozen=True)
class Recommendation:
    """The way to stop that costs least (``recommendation`` of the --json
    document), and every way with its figures, so the operator can choose otherwise."""

    action: Action
    text: str
    options: List[Option]



def verdict(loss: Loss, partial: List[PartialFile], costly_after_s: float) -> SafeToKill:
    """safe / costly / unsafe, the reason, and when the next safe moment comes."""
    next_ckpt = loss.next_checkpoint_in_s
    if partial:
        p = max(partial, key=lambda x: x.bytes_written)
        what = f"{p.path} is being written"
        if p.in_flight:
            what += f" ({p.in_flight})"
        if p.expected_size_bytes:
            what += (f": {mib(p.bytes_written)} of ~{mib(p.expected_size_bytes)} "
                     f"({p.progress_pct:.0f}%)")
        else:
            what += f": {mib(p.bytes_written)} so far"
        if p.eta_s is not None:
            what += f", ~{p.eta_s:.1f} s left"
        if p.temp_and_rename:
            what += "; a kill leaves the temporary behind" + (f", {p.survives} survives" if p.survives else "")
        elif p.overwrites_previous:
            what += "; it overwrites the previous checkpoint in place: a kill now leaves no complete copy here"
        else:
            what += "; a kill leaves it half-written" + (f" ({p.survives} survives)" if p.survives else "")
        etas = [x.eta_s for x in partial if x.eta_s is not None]
        return SafeToKill(Verdict.UNSAFE, what, round(max(etas), 2) if etas else None,
                          "the write's progress at its measured rate" if etas else "unknown")
    lost = loss.since_checkpoint_s
    cpu = loss.cpu_seconds or 0.0
    gpu = loss.gpu_seconds or 0.0
    costly = max(lost, cpu, gpu) >= costly_after_s
    what = f"{lost:.1f} s of work" + (f" ({cpu:.1f} CPU-s" + (f", {gpu:.1f} GPU-s" if gpu else "") + ")")
    if loss.since is Since.CHECKPOINT:
        what += " since the last completed checkpoint"
    elif loss.last_checkpoint:
        how = "can resume" if loss.last_checkpoint.resume_uncertain else "resumes"
        what += (f" since the process started (no checkpoint by this process; a restart {how} from "
                 f"{loss.last_checkpoint.path})")
    else:
        what += " since the process started (no checkpoint found)"
    if costly:
        reason = f"a kill now loses {what} (>= {costly_after_s:.0f} s is costly); nothing is being written"
    else:
        reason = f"nothing is being written; a kill now loses only {what}"
    return SafeToKill(Verdict.COSTLY if costly else Verdict.SAFE, reason, next_ckpt,
                      ("expected next checkpoint (" + loss.basis["next_checkpoint_in_s"].basis + ")")
                      if next_ckpt is not None else
                      ("no next checkpoint in sight: " + loss.basis["next_checkpoint_in_s"].basis
                       if loss.basis["next_checkpoint_in_s"].basis.startswith("unknown:")
                       else "no checkpoint cadence known"))


def recommend(loss: Loss, verdict: SafeToKill, signals: SignalReport, freed: Freed, cascade: Cascade,
              wait_limit_s: float) -> Recommendation:
    """The way to stop it that costs least, and the figures for every way."""
    lost = loss.since_checkpoint_s
    cpu = loss.cpu_seconds
    ram = mib(freed.ram_uss_bytes) + (f"..{mib(freed.ram_pss_bytes)}" if freed.ram_pss_bytes else "")
    frees = (f"frees {ram} RAM"
             + (f", {freed.cpu_cores:.1f} cores" if freed.cpu_cores is not None else "")
             + "".join(f", {mib(v)} VRAM on GPU {k}" for k, v in freed.vram_bytes.items()))
    options: List[Option] = []
    options.append(KillOption(text=f"kill now (SIGKILL): loses {lost:.1f} s"
                              + (f" / {cpu:.1f} CPU-s" if cpu is not None else "") + f"; {frees}",
                              loses_s=lost, cpu_seconds=cpu, gpu_seconds=loss.gpu_seconds))
    nxt = verdict.next_safe_in_s
    if nxt is not None:
        options.append(WaitOption(wait_s=nxt, text=f"wait {nxt:.1f} s ({verdict.next_safe_basis}), then kill: "
                                  "loses ~0 s", loses_s=0.0))
    if signals.handles_sigterm:
        options.append(StopOption(Action.SIGTERM, "send SIGTERM: the process catches it and can save and exit "
                                  "(what its handler does is not visible from outside; give it a grace period)",
                                  None))
    else:
        options.append(StopOption(Action.SIGTERM, "SIGTERM is not caught: it ends the process like SIGKILL, "
                                  "with the same loss", lost))
    stall = any(p.kind is PeerKind.DISTRIBUTED for p in cascade.peers)
    options.append(StopOption(Action.SUSPEND, "suspend (kill -STOP, later -CONT): loses nothing, frees "
                              + (f"{freed.cpu_cores:.1f} cores" if freed.cpu_cores is not None else "the CPU")
                              + " now but keeps its RAM/VRAM"
                              + ("; its distributed peers stall meanwhile" if stall else ""), 0.0))
    v = verdict.verdict
    if v is Verdict.UNSAFE:
        action = Action.WAIT
        text = (f"wait {nxt:.1f} s for the write to finish" if nxt is not None
                else "wait until the write finishes") + " before stopping it"
        if signals.handles_sigterm:
            text += ", then send SIGTERM (it is caught: a graceful stop)"
    elif signals.handles_sigterm:
        action = Action.SIGTERM
        text = "graceful stop: send SIGTERM (the process catches it)"
    elif v is Verdict.COSTLY and nxt is not None and nxt <= wait_limit_s:
        action = Action.WAIT
        text = f"wait {nxt:.1f} s for the next checkpoint, then kill: saves {lost + nxt:.0f} s of work"
    elif v is Verdict.COSTLY:
        action = Action.SUSPEND
        text = (f"a kill loses {lost:.0f} s of work with no checkpoint in sight: suspend it (SIGSTOP) "
                "if you need the CPU now, kill only if the work is not needed")
    else:
        action = Action.KILL
        text = f"kill is cheap: loses {lost:.1f} s"
        if nxt is not None and nxt < lost:
            text += f" (or wait {nxt:.1f} s for the next checkpoint and lose ~0 s)"
    return Recommendation(action, text, options)
