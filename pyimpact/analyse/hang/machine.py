"""`diagnose --all`: every process tree of the machine, one verdict each.

Pure.  The processes of one recording (a machine-wide window) are grouped
into trees: a tree starts at a process whose parent is init (pid 1), is not
observed, or belongs to another session (a shell, a service, a job started
with its own session).  A tree is unhealthy when one of its processes is
hung (deadlock, blocked, stopped, zombie); its row names the topmost hung
process, the verdict, the root cause and for how long.  A supervisor that
is called hung only for a hung child in another tree (it waits for nothing
itself) does not make its own tree unhealthy: the child's tree has the row.
Healthy trees are only counted: nothing healthy is ever listed as hung.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ...jsondoc import json_field, to_json
from .verdict import HUNG
from .waitmodel import WaitGraph, process_words

SCHEMA = "pyimpact.diagnose-all/1"


@dataclass
class TreeRow:
    """One process tree with a hung process in it (``unhealthy[]`` of diagnose --all --json)."""

    root_pid: int = json_field(key="tree")     # the tree's top process
    pid: int                                   # the topmost hung process in it
    name: str
    verdict: str = json_field(key="class")
    summary: str
    root_cause: Dict[str, Any]
    since_s: Optional[float]                   # the longest wait of its threads
    hung_pids: List[int] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return to_json(self)


@dataclass
class MachineReport:
    """Every process tree of the machine diagnosed at once (diagnose --all --json)."""

    schema: str = field(default=SCHEMA, init=False)
    rows: List[TreeRow] = json_field(key="unhealthy")
    healthy_trees: int
    trees: int
    processes: int
    window_s: Optional[float]
    bpf: bool
    unavailable: List[str] = field(default_factory=list)
    lost_events: int = 0

    def to_json(self) -> Dict[str, Any]:
        return to_json(self)


def trees(g: WaitGraph, pids: Optional[List[int]] = None) -> Dict[int, List[int]]:
    """tree root -> its processes (parents before children)."""
    procs = g.processes
    chosen = set(pids) if pids is not None else set(procs)

    def top(pid: int) -> int:
        cur = procs[pid]
        for _ in range(256):
            parent = procs.get(cur.ppid)
            if cur.ppid <= 1 or parent is None or parent.pid not in chosen or parent.sid != cur.sid:
                return cur.pid
            cur = parent
        return cur.pid

    out: Dict[int, List[int]] = {}
    for pid in sorted(chosen, key=lambda p: (procs[p].create_time, p)):
        out.setdefault(top(pid), []).append(pid)
    return out


def _just_exited(g: WaitGraph, d: Any) -> bool:
    """A zombie that was still running when the window began: its parent may
    simply not have reaped it yet (it exited a moment ago)."""
    p = g.processes.get(d.pid)
    return d.verdict == "zombie" and p is not None and p.was_state not in ("Z", "X")


def _mirrors_elsewhere(d: Any, members: List[int]) -> bool:
    """A process called hung only as a supervisor whose child elsewhere is (it
    waits for nothing itself: signals, work, timers): that child's own tree
    has the row, and this tree is as healthy as its own processes."""
    return d.rule == "rule_supervisor" and d.root_cause.pid is not None and d.root_cause.pid not in members


def report(g: WaitGraph, diagnoses: Dict[int, Any], *, unavailable: Optional[List[str]] = None,
           lost: int = 0) -> MachineReport:
    """One row per tree with a hung process; the rest counted as healthy."""
    groups = trees(g, list(diagnoses))
    rows: List[TreeRow] = []
    for root, members in groups.items():
        hung = [pid for pid in members if diagnoses[pid].verdict in HUNG and not _just_exited(g, diagnoses[pid])
                and not _mirrors_elsewhere(diagnoses[pid], members)]
        if not hung:
            continue
        # the topmost hung process: the first in tree order (parents come first)
        d = diagnoses[hung[0]]
        since = None
        for t in d.threads:
            if t.blocked_for_s is not None:
                since = max(since or 0.0, t.blocked_for_s)
        p = g.processes[d.pid]
        rows.append(TreeRow(root_pid=root, pid=d.pid, verdict=d.verdict, summary=d.summary,
                            root_cause=d.root_cause.to_dict(), since_s=since, name=process_words(p, 36),
                            hung_pids=hung))
    rows.sort(key=lambda r: -(r.since_s or 0))
    return MachineReport(rows=rows, healthy_trees=len(groups) - len(rows), trees=len(groups),
                         processes=len(diagnoses), window_s=g.window_s, bpf=g.bpf,
                         unavailable=list(unavailable or []), lost_events=lost)
