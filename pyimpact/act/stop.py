"""`pyimpact stop`'s act code: choose the graceful signal, wait for the safe moment, send, wait, escalate only when forced.

Why this shape:

* **the signal** is the one the process handles: SIGTERM when its SigCgt
  mask says it is caught (the job's handler can save and exit), or the
  user's ``--signal`` (jobs that checkpoint on SIGUSR1).  A SIGTERM that is
  not caught still ends the job, as abruptly as SIGKILL; then waiting for the
  safe point is what keeps its files whole.
* **the moment**: ``safe`` waits until no checkpoint or large file of the
  tree is being written or fsync'd; ``checkpoint`` waits for the next
  checkpoint to complete; the rules are in pyimpact.analyse.impact.stop_points.  The
  check runs again right before the signal, so the gap between "safe" and
  the signal is one /proc read.  Between checks it watches the directories'
  mtimes every 50 ms (a rename into place changes them), so a checkpoint
  completion is seen within ~50 ms.
* **the tree**: the signal goes to the root (its handler shuts its workers
  down; signalling DataLoader workers directly would make the main process
  fail before it saves).  Members whose parent has exited meanwhile (orphans
  nobody will shut down) get the same signal.  The whole tree has ``grace``
  seconds; SIGKILL follows only with ``force``.
* **the outcome** is measured after the exit, from the files left on disk.

Every signal goes through a pidfd and the signal log.  Ctrl-C while waiting
sends nothing.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from ..analyse.impact.stop_points import (PointStatus, checkpoint_point, findings, outcome, prediction, safe_point)
from ..collect.inflight import inflight_file_calls
from ..errors import Interrupted, NotDone, ProcessGone
from .pidfd import signal_label
from .signal_log import SignalLog
from .tree import ProcessTree

WHEN = ("now", "safe", "checkpoint")
POLL_S = 0.05          # directory-mtime check between full samples
FULL_EVERY_S = 0.25    # full sample (fds, files, in-flight calls) at least this often
KILL_WAIT_S = 5.0      # after SIGKILL, how long the tree may take to go
#: signals whose default action ends the process (signal(7): Term and Core)
_KILLING = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
            signal.SIGALRM, signal.SIGKILL, signal.SIGABRT, signal.SIGPIPE}


def _has(mask: int, sig: int) -> bool:
    return bool(mask >> (sig - 1) & 1)


def choose_signal(sig_caught: int, sig_ignored: int, user_sig: Optional[int] = None) -> Tuple[int, str]:
    """The graceful signal and why it was chosen."""
    if user_sig is not None:
        name = signal_label(user_sig)
        if _has(sig_ignored, user_sig):
            return user_sig, f"{name} (--signal); the process ignores it: only --force (SIGKILL) will stop it"
        if _has(sig_caught, user_sig):
            return user_sig, f"{name} (--signal); the process catches it (SigCgt): its handler runs"
        return user_sig, f"{name} (--signal); not caught: its default action applies"
    term = signal.SIGTERM
    if _has(sig_ignored, term):
        return term, "SIGTERM, but the process ignores it (SigIgn): only --force (SIGKILL) will stop it"
    if _has(sig_caught, term):
        return term, "SIGTERM is caught (SigCgt): the process runs its own handler (it can save and exit)"
    return term, ("SIGTERM is not caught: its default action ends the process at once, no cleanup (the "
                  "wait for a safe point is what keeps its files whole)")


@dataclass
class StopResult:
    when: str
    waited_s: float = 0.0
    waited_for: List[str] = field(default_factory=list)
    signal: str = ""
    signal_ns: int = 0
    exit_ns: Optional[int] = None
    escalated: bool = False
    survivors: List[int] = field(default_factory=list)
    predicted: dict = field(default_factory=dict)
    outcome: dict = field(default_factory=dict)
    signals: List[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Waiter:
    """Checks the safe point / checkpoint point of one tree, sampling as it goes."""

    def __init__(self, observer, tree: ProcessTree, root_start_ns: int, mode: str):
        self.observer = observer
        self.tree = tree
        self.root_start_ns = root_start_ns
        self.mode = mode
        self.since_ns = time.time_ns()
        self.last_ck = None
        self.last_inflight: List[dict] = []

    def status(self) -> PointStatus:
        s = self.observer.sample()
        if s is None or self.tree.root.exited():
            raise ProcessGone(f"process {self.tree.root.pid} exited on its own while waiting: nothing was sent",
                              "nothing is left to stop")
        self.tree.refresh()
        inflight = inflight_file_calls(self.tree.pids())
        ck = findings(self.observer.samples, self.root_start_ns, inflight)
        self.last_ck, self.last_inflight = ck, inflight
        if self.mode == "checkpoint":
            return checkpoint_point(ck, inflight, self.since_ns, s["t_ns"])
        return safe_point(ck, inflight)

    def dir_marks(self) -> Dict[str, int]:
        out = {}
        for d in list(self.observer.watch):
            try:
                out[d] = os.stat(self.observer._prefix + d).st_mtime_ns
            except OSError:
                out[d] = -1
        return out


def wait_for_point(waiter: Waiter, on_status: Callable[[PointStatus, float], None],
                   max_wait_s: Optional[float] = None,
                   cancelled: Optional[Callable[[], bool]] = None) -> Tuple[float, List[str]]:
    """Block until the waiter is ready; returns (seconds waited, what it waited for).
    Ctrl-C (or ``cancelled()`` turning true) raises Interrupted with nothing
    sent; ``max_wait_s`` raises NotDone."""
    t0 = time.monotonic()
    seen: List[str] = []
    try:
        while True:
            st = waiter.status()
            waited = time.monotonic() - t0
            if st.ready:
                on_status(st, waited)
                return waited, seen
            if st.waiting_for and st.waiting_for.split(" (")[0] not in [x.split(" (")[0] for x in seen]:
                seen.append(st.waiting_for)
            on_status(st, waited)
            if cancelled is not None and cancelled():
                raise KeyboardInterrupt
            if max_wait_s is not None and waited >= max_wait_s:
                raise NotDone(f"gave up after {waited:.0f} s waiting for {st.waiting_for}: nothing was sent",
                              "raise --max-wait, or use --when now")
            marks = waiter.dir_marks()
            next_full = time.monotonic() + FULL_EVERY_S
            while time.monotonic() < next_full:
                time.sleep(POLL_S)
                if waiter.tree.root.exited() or waiter.dir_marks() != marks \
                        or (cancelled is not None and cancelled()):
                    break
    except KeyboardInterrupt:
        raise Interrupted("cancelled while waiting: nothing was sent", "run the command again to stop it") from None


def deliver(tree: ProcessTree, log: SignalLog, sig: int, why: str, grace_s: float, force: bool,
            on_tick: Optional[Callable[[list, float], None]] = None) -> Tuple[int, bool, List[int]]:
    """Send ``sig`` to the root, wait ``grace_s`` for the whole tree, SIGKILL
    only with ``force``.  Returns (signal time ns, escalated, survivors)."""
    signal_ns = time.time_ns()
    log.send(tree.root, sig, f"pyimpact stop: {why}")
    sent = {id(tree.root)}
    end = time.monotonic() + grace_s
    alive = tree.live()
    try:
        while True:
            tree.refresh()
            alive = tree.live()
            if not alive:
                break
            by_pid = {h.pid: h for h in tree.members}
            for h in alive:
                parent = by_pid.get(tree.parent_of.get(id(h), -1))
                if id(h) not in sent and parent is not None and parent.exited():
                    log.send(h, sig, f"pyimpact stop: its parent {parent.pid} has exited; the leftover "
                             f"process gets the same {signal_label(sig)}")
                    sent.add(id(h))
            left = end - time.monotonic()
            if left <= 0:
                break
            if on_tick is not None:
                on_tick(alive, left)
            alive[0].wait(min(0.1, left))
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted during the grace period: {signal_label(sig)} was already sent to "
                          f"{tree.root.pid}; nothing else was sent",
                          "the tree may still be exiting: check with ps; run the command again to finish") from None
    escalated = False
    if alive and force:
        tree.kill(log, f"pyimpact stop --force: still alive {grace_s:.0f} s after {signal_label(sig)}")
        escalated = True
        alive = tree.wait_gone(KILL_WAIT_S)
    return signal_ns, escalated, [h.pid for h in alive]


def exit_time_ns(tree: ProcessTree) -> Optional[int]:
    """When the root exited (its workers may take longer to wind down: that is not work)."""
    t = tree.root.exited_at
    return int(t * 1e9) if t is not None else None


def run_stop(tree: ProcessTree, observer, root_start_ns: int, log: SignalLog, when: str, sig: int, why: str,
             grace_s: float, force: bool, max_wait_s: Optional[float] = None,
             on_status: Optional[Callable[[PointStatus, float], None]] = None,
             on_tick: Optional[Callable[[list, float], None]] = None,
             cancelled: Optional[Callable[[], bool]] = None, sig_caught: Optional[int] = None) -> StopResult:
    """The whole stop: wait (unless ``now``), deliver, measure the outcome."""
    res = StopResult(when=when, signal=signal_label(sig))
    waiter = Waiter(observer, tree, root_start_ns, when)
    if when != "now":
        res.waited_s, res.waited_for = wait_for_point(waiter, on_status or (lambda *_: None), max_wait_s,
                                                      cancelled)
    else:
        waiter.status()
    res.predicted = prediction(waiter.last_ck, time.time_ns(), root_start_ns)
    n0 = len(log.records)
    res.signal_ns, res.escalated, res.survivors = deliver(tree, log, sig, why, grace_s, force, on_tick)
    res.signals = log.records[n0:]
    if not res.survivors:
        res.exit_ns = exit_time_ns(tree) or time.time_ns()
        killed = sig_caught is not None and not _has(sig_caught, sig) and sig in _KILLING
        res.outcome = outcome(observer.samples, observer.scan_files(), root_start_ns, res.signal_ns, res.exit_ns,
                              killed_by_signal=killed)
    return res
