"""Cleaning orphaned workers: SIGTERM, a grace period, then SIGKILL, through pidfds.

Why pidfds taken at discovery: between the scan that found an orphan and the
signal (a prompt may sit unanswered for minutes) the orphan may exit and its
pid go to a new process. The handle opened when it was found
(``ProcessHandle.open(pid, start_ticks)``) reaches only that process; a
signal through it to an exited process fails with ESRCH and is logged as not
sent.

Groups: every member of a process group is signalled through its own handle
(a pidfd names one process, not a group). The analysis marks a whole group
unsafe when any live member is not orphaned, so a group is cleaned whole or
not at all; the plan here also drops any row whose group has an unsafe
member. Just before signalling, the state is read again: a process that
entered D state meanwhile is skipped, with the reason.

Every signal goes through SignalLog.send (logged, with the reason).
"""
from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from .pidfd import ProcessHandle
from .signal_log import SignalLog


@dataclass
class CleanupPlan:
    steps: List[Tuple[object, ProcessHandle]] = field(default_factory=list)    # (Orphan, handle)
    skipped: List[Tuple[object, str]] = field(default_factory=list)            # (Orphan, why)

    def lines(self, grace_s: float) -> List[str]:
        out = []
        for o, _h in self.steps:
            out.append(f"SIGTERM pid {o.pid} ({o.command[:60]}); SIGKILL after {grace_s:g} s if still running")
        for o, why in self.skipped:
            out.append(f"leave pid {o.pid}: {why}")
        return out


def plan_cleanup(orphans: List[object], handles: Dict[int, ProcessHandle]) -> CleanupPlan:
    """Which orphans will be signalled: the safe ones whose whole group is
    safe and for which a handle was taken at discovery."""
    plan = CleanupPlan()
    unsafe_groups = {o.pgid for o in orphans if not o.safe_to_clean}
    for o in orphans:
        if not o.safe_to_clean:
            plan.skipped.append((o, o.reason))
        elif o.pgid in unsafe_groups:
            plan.skipped.append((o, f"another member of its process group {o.pgid} may not be cleaned"))
        elif o.pid not in handles:
            plan.skipped.append((o, "it exited (or could not be opened) since it was found"))
        else:
            plan.steps.append((o, handles[o.pid]))
    return plan


@dataclass
class CleanupResult:
    pid: int
    outcome: str        # exited after SIGTERM | killed | already gone | skipped: ... | still running
    signals: List[str] = field(default_factory=list)


def execute(plan: CleanupPlan, log: SignalLog, grace_s: float = 5.0,
            echo: Callable[[str], None] = lambda s: None) -> List[CleanupResult]:
    results: Dict[int, CleanupResult] = {}
    sent: List[Tuple[object, ProcessHandle]] = []
    for o, h in plan.steps:
        r = results[o.pid] = CleanupResult(o.pid, "")
        state = h.state()
        if state is None:
            r.outcome = "already gone"
            continue
        if state == "D":
            r.outcome = "skipped: entered D state (uninterruptible sleep) since it was found"
            continue
        if log.send(h, signal.SIGTERM, f"orphans --cleanup: {o.reason}"):
            r.signals.append("SIGTERM")
            sent.append((o, h))
        else:
            r.outcome = "already gone"
    deadline = time.monotonic() + grace_s
    for o, h in sent:
        if h.wait(max(0.0, deadline - time.monotonic())):
            results[o.pid].outcome = "exited after SIGTERM"
    for o, h in sent:
        r = results[o.pid]
        if r.outcome:
            continue
        if log.send(h, signal.SIGKILL, f"orphans --cleanup: still running {grace_s:g} s after SIGTERM"):
            r.signals.append("SIGKILL")
            r.outcome = "killed" if h.wait(5.0) else "still running after SIGKILL (D state?)"
        else:
            r.outcome = "exited after SIGTERM"
    for o, h in plan.steps:
        echo(f"pid {o.pid}: {results[o.pid].outcome}")
    return [results[o.pid] for o, _ in plan.steps]


def open_handles(pids_ticks: List[Tuple[int, int]]) -> Dict[int, ProcessHandle]:
    """pidfds for the processes found (those gone already are left out)."""
    out: Dict[int, ProcessHandle] = {}
    for pid, ticks in pids_ticks:
        try:
            out[pid] = ProcessHandle.open(pid, start_ticks=ticks)
        except Exception:  # noqa: BLE001 - gone, zombie, reused or not permitted: not a step
            continue
    return out


def close_handles(handles: Dict[int, ProcessHandle], keep: Optional[set] = None) -> None:
    for pid, h in handles.items():
        if keep is None or pid not in keep:
            h.close()
