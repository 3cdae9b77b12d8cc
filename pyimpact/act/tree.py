"""A process tree held by pidfds: found top-down, stopped, suspended and resumed in a safe order.

Why handles for every member, taken when found: once the root exits its
children are re-parented (to init or a subreaper) and can no longer be found
from it; a handle taken while they were its children still reaches them, and
only them.  A child is identified from its parent's children list and
verified (``ProcessHandle.open(..., ppid=parent)``): a pid that was reused
between the read and the pidfd_open has another parent and is skipped.

Orders, and why:

* **suspend: parent first, then its children, level by level.**  A stopped
  process cannot fork, so once a parent is stopped its children list is final
  and the walk cannot miss a worker it spawns meanwhile.  And a parent stopped
  first never sees its workers stop: a supervisor (torch elastic agent, a
  DataLoader main loop with a timeout, a process pool) that reacts to
  unresponsive or stopped children (SIGCHLD with CLD_STOPPED, heartbeat
  timeouts) is frozen before it could restart or kill them.
* **resume: children first, the parent last.**  When the parent runs again
  its workers already run, so the first heartbeat or queue read it makes gets
  an answer instead of a timeout.
* **kill (SIGKILL): parent first, then the rest**, for the same no-respawn
  reason; every member is signalled through its own handle.

Everything is signalled through ``SignalLog.send`` (pidfd + log).
"""
from __future__ import annotations

import os
import signal
import time
from typing import Callable, Dict, List, Optional

import psutil

from ..collect import procfs
from ..errors import ProcessGone, UsageError
from .pidfd import ProcessHandle
from .signal_log import SignalLog

STOPPED_STATES = ("T", "t")
SETTLE_S = 2.0          # how long a SIGSTOP may take to land (a thread in D state stops on return)


def _children(pid: int) -> List[int]:
    """Direct children of ``pid`` now ([] when gone or unreadable): procfs's walk."""
    try:
        return procfs.children(pid)
    except (psutil.Error, OSError, ValueError):
        return []


class ProcessTree:
    """The root's handle and a handle for every descendant found so far."""

    def __init__(self, root: ProcessHandle):
        self.root = root
        self.members: List[ProcessHandle] = [root]
        self.parent_of: Dict[int, int] = {}     # id(handle) -> parent pid when found
        self.depth_of: Dict[int, int] = {id(root): 0}

    @classmethod
    def identify(cls, pid: int, start_ticks: Optional[int] = None) -> "ProcessTree":
        """Handles on ``pid`` and its descendants.  Refuses (UsageError) a tree
        that holds pyimpact itself: stopping the shell pyimpact runs in would
        stop pyimpact mid-way, with the tree half-signalled."""
        tree = cls(ProcessHandle.open(pid, start_ticks))
        tree.refresh()
        if os.getpid() in tree.pids():
            tree.close()
            raise UsageError(f"pid {pid} is pyimpact's own process or an ancestor of it (its shell?): "
                             "acting on that tree would stop pyimpact itself", "run pyimpact from another terminal")
        return tree

    # -- membership ------------------------------------------------------
    def live(self) -> List[ProcessHandle]:
        return [h for h in self.members if not h.exited()]

    def _live_by_pid(self) -> Dict[int, ProcessHandle]:
        return {h.pid: h for h in self.members if not h.exited()}

    def _children_of(self, parent: ProcessHandle) -> List[ProcessHandle]:
        """Handles for the children of ``parent`` not held yet."""
        held = self._live_by_pid()
        new = []
        for c in _children(parent.pid):
            if c in held:
                continue
            try:
                h = ProcessHandle.open(c, ppid=parent.pid)
            except ProcessGone:
                continue
            if parent.exited():       # its children list may have been someone else's
                h.close()
                continue
            self.members.append(h)
            self.parent_of[id(h)] = parent.pid
            self.depth_of[id(h)] = self.depth_of.get(id(parent), 0) + 1
            held[c] = h
            new.append(h)
        return new

    def refresh(self) -> List[ProcessHandle]:
        """Find descendants not held yet (breadth-first); returns the new handles."""
        new: List[ProcessHandle] = []
        queue = self.live()
        i = 0
        while i < len(queue):
            kids = self._children_of(queue[i])
            i += 1
            new.extend(kids)
            queue.extend(kids)
        return new

    def depth(self, h: ProcessHandle) -> int:
        return self.depth_of.get(id(h), 0)

    def pids(self) -> List[int]:
        return [h.pid for h in self.live()]

    def states(self) -> Dict[int, Dict[int, str]]:
        """pid -> {tid: state} of every live member."""
        return {h.pid: h.thread_states() for h in self.live()}

    def close(self) -> None:
        for h in self.members:
            h.close()

    def __enter__(self) -> "ProcessTree":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- acting ----------------------------------------------------------
    @staticmethod
    def _stopped(h: ProcessHandle) -> bool:
        st = h.thread_states()
        return not st or all(s in STOPPED_STATES for s in st.values())

    def suspend(self, log: SignalLog, reason: str, settle_s: float = SETTLE_S) -> List[ProcessHandle]:
        """SIGSTOP top-down (see the module docstring); returns members that did
        not reach the stopped state within ``settle_s`` each level."""
        slow: List[ProcessHandle] = []
        done: set = set()
        level = [self.root] if not self.root.exited() else []
        while level:
            for h in level:
                log.send(h, signal.SIGSTOP, reason)
                done.add(id(h))
            end = time.monotonic() + settle_s
            waiting = [h for h in level if not h.exited()]
            while waiting and time.monotonic() < end:
                waiting = [h for h in waiting if not h.exited() and not self._stopped(h)]
                if waiting:
                    time.sleep(0.01)
            slow.extend(waiting)
            nxt: List[ProcessHandle] = []
            held_by_parent: Dict[int, List[ProcessHandle]] = {}
            for m in self.members:
                if id(m) in self.parent_of:
                    held_by_parent.setdefault(self.parent_of[id(m)], []).append(m)
            for h in level:
                # children held from earlier, plus any not held yet
                nxt.extend(m for m in held_by_parent.get(h.pid, [])
                           if id(m) not in done and not m.exited())
                nxt.extend(self._children_of(h))
            level = list({id(m): m for m in nxt}.values())
        return slow

    def resume(self, log: SignalLog, reason: str) -> List[ProcessHandle]:
        """SIGCONT bottom-up: the deepest members first, the root last."""
        self.refresh()
        order = sorted(self.live(), key=self.depth, reverse=True)
        for h in order:
            log.send(h, signal.SIGCONT, reason)
        return order

    def kill(self, log: SignalLog, reason: str) -> None:
        """SIGKILL every live member, the root first, then level by level."""
        self.refresh()
        for h in sorted(self.live(), key=self.depth):
            log.send(h, signal.SIGKILL, reason)

    def wait_gone(self, timeout_s: float, on_tick: Optional[Callable[[List[ProcessHandle], float], None]] = None,
                  tick_s: float = 0.1) -> List[ProcessHandle]:
        """Wait until every member has exited (descendants found meanwhile
        included); returns those still alive at the deadline."""
        end = time.monotonic() + timeout_s
        while True:
            self.refresh()
            alive = self.live()
            left = end - time.monotonic()
            if not alive or left <= 0:
                return alive
            if on_tick is not None:
                on_tick(alive, left)
            alive[0].wait(min(tick_s, left))


def suspend_tree(tree, log, reason: str) -> dict:
    """Suspend ``tree`` and report {stopped: [pids], not_stopped: [pids]} (act code shared with the live panel)."""
    slow = tree.suspend(log, reason)
    time.sleep(0.05)
    states = tree.states()
    stopped = [pid for pid, st in states.items() if st and all(s in ("T", "t") for s in st.values())]
    return {"stopped": stopped, "not_stopped": sorted(set(states) - set(stopped)),
            "slow": [h.pid for h in slow]}


def resume_tree(tree, log, reason: str) -> dict:
    tree.resume(log, reason)
    end = time.monotonic() + 2.0
    while True:
        states = tree.states()
        still = [pid for pid, st in states.items() if st and any(s in ("T", "t") for s in st.values())]
        if not still or time.monotonic() > end:
            return {"resumed": sorted(set(states) - set(still)), "still_stopped": still}
        time.sleep(0.02)
