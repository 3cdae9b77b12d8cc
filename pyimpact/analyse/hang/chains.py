"""Walking the wait-for graph: deadlocked sets, chains to a root cause.

Pure functions over a ``WaitGraph`` (``pyimpact.analyse.hang.waitgraph``):

* ``deadlocked``: the nodes that can never be released, a greatest fixed
  point (every edge is an "any of these could release me", so a node is stuck
  only when all its successors are);
* ``exact_cycles``: cycles through exact thread-to-thread edges (mutex
  owners, joins), which name who holds what;
* ``best_path``: from a waiting thread to the end that best explains it;
* ``chain_links``: that path as the steps a person reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set, Tuple

from ...jsondoc import json_field, to_json
from .waitmodel import (RUNNING, STOPPED, TIMED, UNKNOWN, WAITING, WAKING, ZOMBIE, Edge, WaitGraph,
                        python_location, secs)


@dataclass
class ChainLink:
    """One step from the diagnosed thread towards the root cause."""

    pid: Optional[int]
    tid: Optional[int]
    name: str
    state: str
    activity: str
    waits_on: Optional[Dict[str, str]] = None   # {"kind", "resource"}: the edge to the next link
    note: str = json_field(default="", key="end", omit_empty=True)          # last link: why the chain ends here
    location: str = json_field(default="", key="python", omit_empty=True)   # Python location, when known

    def to_dict(self) -> Dict[str, Any]:
        return to_json(self)



def deadlocked(g: WaitGraph) -> Set[str]:
    """Nodes that can never be released: every node left waits only on nodes left.

    Start from every waiting node and remove, until nothing changes, each one
    with no successor or with a successor outside the set (that successor
    could act and release it).  What remains is stuck for good.
    """
    nodes = {t.node for t in g.threads.values() if t.activity == WAITING}
    nodes |= {p.node for p in g.processes.values() if not g.process_end_reason(p.pid)}
    succ = {n: g.successors(n) for n in nodes}
    alive = set(nodes)
    changed = True
    while changed:
        changed = False
        for n in list(alive):
            edges = succ[n]
            if not edges or any(e.target not in alive for e in edges):
                alive.discard(n)
                changed = True
    return alive


def stuck_cores(g: WaitGraph, dead: Set[str]) -> Set[str]:
    """The nodes of ``dead`` that wait only within their own strongly
    connected part of it: the deadlocks themselves.  A node of ``dead`` outside
    them is stuck only because what it waits on is (a reader of a pipe whose
    writer deadlocked, a shell waiting for that reader): it is blocked on that
    deadlock, not part of one."""
    adj = {n: sorted({e.target for e in g.successors(n) if e.target in dead}) for n in dead}
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    comp: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    counter = 0
    ncomp = 0
    for root in sorted(dead):
        if root in index:
            continue
        work = [(root, 0)]
        while work:     # Tarjan's algorithm, iteratively (chains can be long)
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on.add(node)
            nxt = adj[node]
            if i < len(nxt):
                work.append((node, i + 1))
                w = nxt[i]
                if w not in index:
                    work.append((w, 0))
                elif w in on:
                    low[node] = min(low[node], index[w])
                continue
            if low[node] == index[node]:
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp[w] = ncomp
                    if w == node:
                        break
                ncomp += 1
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    leaves = {comp[n] for n in dead} - {comp[n] for n in dead if any(comp[w] != comp[n] for w in adj[n])}
    return {n for n in dead if comp[n] in leaves}


def exact_cycles(g: WaitGraph, within: Set[str]) -> List[List[str]]:
    """Cycles through exact thread-to-thread edges (mutex owners, joins) inside ``within``."""
    adj = {n: [e.target for e in g.successors(n) if e.exact and e.target in within and e.target.startswith("t:")]
           for n in within if n.startswith("t:")}
    cycles: List[List[str]] = []
    done: Set[str] = set()
    for start in sorted(adj, key=lambda n: int(n[2:])):
        if start in done:
            continue
        path, seen = [start], {start: 0}
        node = start
        while True:
            nxt = adj.get(node) or []
            if not nxt:
                break
            node = nxt[0]
            if node in seen:
                cyc = path[seen[node]:]
                if not any(set(cyc) == set(c) for c in cycles):
                    cycles.append(cyc)
                break
            if node in done:
                break
            seen[node] = len(path)
            path.append(node)
        done.update(path)
    return cycles


_END_SEVERITY = {STOPPED: 6, ZOMBIE: 5, WAITING: 4, RUNNING: 3, TIMED: 2, WAKING: 2, UNKNOWN: 1}


def _end_score(g: WaitGraph, node: str) -> int:
    kind, _, ident = node.partition(":")
    if kind == "t":
        t = g.threads.get(int(ident))
        if t is None:
            return 1
        if t.input_wait:
            return 2
        return _END_SEVERITY.get(t.activity, 1)
    if kind == "p":
        reason = g.process_end_reason(int(ident))
        for word, score in (("stopped", 6), ("zombie", 5), ("running", 3), ("alive", 2)):
            if word in reason:
                return score
        return 1
    if kind == "x":
        return 5
    return 4  # remote peer


def best_path(g: WaitGraph, start: str, limit: int = 16) -> List[Tuple[str, Optional[Edge]]]:
    """The chain from ``start`` to the end that best explains it: prefer ends
    that are stuck by themselves (stopped, zombie, waiting forever) and, among
    equals, the longer chain.  Returns [(node, edge to the next node)]."""
    memo: Dict[str, List[Tuple[str, Optional[Edge]]]] = {}

    def score(path: List[Tuple[str, Optional[Edge]]]) -> Tuple[int, int]:
        return _end_score(g, path[-1][0]), len(path)

    def walk(node: str, visiting: frozenset, depth: int) -> List[Tuple[str, Optional[Edge]]]:
        if node in memo:
            return memo[node]
        edges = g.successors(node) if depth < limit else []
        best: Optional[List[Tuple[str, Optional[Edge]]]] = None
        for e in edges:
            if e.target in visiting:
                continue
            cand = [(node, e)] + walk(e.target, visiting | {node}, depth + 1)
            if best is None or score(cand) > score(best):
                best = cand
        result = best if best is not None else [(node, None)]
        memo[node] = result
        return result

    return walk(start, frozenset(), 0)


def _link(g: WaitGraph, node: str, edge: Optional[Edge]) -> ChainLink:
    kind, _, ident = node.partition(":")
    waits = {"kind": edge.kind, "resource": edge.resource} if edge is not None else None
    if kind == "t":
        t = g.threads.get(int(ident))
        if t is None:
            return ChainLink(None, int(ident), "?", "?", UNKNOWN, waits)
        return ChainLink(t.pid, t.tid, t.label, t.state, t.activity, waits, location=python_location(t))
    if kind == "p":
        p = g.processes.get(int(ident))
        if p is None:
            return ChainLink(int(ident), None, "?", "?", UNKNOWN, waits)
        return ChainLink(p.pid, None, p.name, p.state, "process", waits)
    return ChainLink(None, None, ident, "", "outside", waits)


def chain_links(g: WaitGraph, path: List[Tuple[str, Optional[Edge]]]) -> List[ChainLink]:
    """Path to links: a process node followed by one of its threads becomes
    that thread (the edge into the process names the resource)."""
    links: List[ChainLink] = []
    for i, (node, edge) in enumerate(path):
        if node.startswith("p:") and edge is not None and edge.kind == "" and i + 1 < len(path):
            continue  # the thread that follows stands for the process
        links.append(_link(g, node, edge))
    if links:
        last_node = path[-1][0]
        links[-1].note = end_note(g, last_node)
    return links


def end_note(g: WaitGraph, node: str) -> str:
    kind, _, ident = node.partition(":")
    if kind == "t":
        t = g.threads.get(int(ident))
        if t is None:
            return "not observed"
        if t.activity == RUNNING:
            return f"on CPU ({pct(t.cpu_s, t.window_s)} of the window)"
        if t.activity == STOPPED:
            return "stopped (state T)" if t.state == "T" else "stopped by a tracer (state t)"
        if t.activity == ZOMBIE:
            return "zombie"
        if t.activity == WAKING:
            return f"alive: woke up {t.wakeups or 0} times in the window, now in {t.syscall or '?'}"
        if t.activity == TIMED:
            left = f", about {secs(t.timeout_s)} left" if t.timeout_s is not None else ""
            return f"sleeps with a timeout in {t.syscall or '?'}{left}"
        return t.end_reason or f"sleeps in {t.syscall or '?'}"
    if kind == "p":
        return g.process_end_reason(int(ident)) or "all its threads wait"
    return g.ends.get(node, "outside the machine")


def pct(cpu: Optional[float], window: Optional[float]) -> str:
    if cpu is None or not window:
        return "?"
    return f"{100 * cpu / window:.0f}%"
