"""Human view of a JobDiagnosis: the job's verdict and root cause (node,
rank, pid, why), the wavefront, one line per rank and per node, the
cross-node connections, and the nodes that did not answer. Formatters yield
lines; every string that came from a node or a process goes through
``clean``. Nothing here computes a verdict."""
from __future__ import annotations

import textwrap
from typing import IO, Iterator

from ..analyse.job import JobDiagnosis, ranges
from ..formats import minutes, seconds
from .text import clean

WIDTH = 80
MAX_EDGES = 8


def _wrap(text: str, first: str, indent: str = "    ") -> list:
    return textwrap.wrap(clean(text), WIDTH, initial_indent=first, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False) or [first]


def lines(jd: JobDiagnosis, elapsed_s: float = None) -> Iterator[str]:
    nodes = len(jd.nodes) + len(jd.unreachable)
    head = f"pyimpact diagnose --job: {clean(jd.job)}, world size {jd.world_size or '?'}, {nodes} node(s)"
    if elapsed_s is not None:
        head += f", answered in {seconds(elapsed_s)}"
    yield head
    yield ""
    yield from _wrap(jd.summary, f"VERDICT  {jd.klass.upper()}: ")
    if jd.hung and jd.root:
        r = jd.root[0]
        yield from _wrap(f"node {r.node}, rank {r.rank}, pid {r.pid}: {r.summary}", "Root cause: ")
    elif jd.hung and jd.missing_ranks:
        yield from _wrap(f"rank(s) {ranges(jd.missing_ranks)}: not found on any reachable node", "Root cause: ")
    if jd.hung:
        ahead = [r.rank for r in jd.ranks if r.waiting and r.rank is not None]
        behind = [r.rank for r in jd.ranks if not r.waiting and r.rank is not None]
        yield (f"Wavefront: ahead (waiting in a collective): {ranges(ahead) or 'none'}; "
               f"behind: {ranges(behind + jd.missing_ranks) or 'none'}")
    yield ""
    yield "Ranks:"
    for r in jd.ranks:
        state = f"waits in {r.in_collective}" if r.waiting else f"{r.klass}: {r.summary}"
        yield from _wrap(state, f"  rank {r.rank if r.rank is not None else '?':>3}  {clean(r.node)} pid {r.pid}  ",
                         "      ")
    yield ""
    yield "Nodes:"
    for n in jd.nodes:
        took = seconds(n['elapsed_s']) if n.get("elapsed_s") is not None else "?"
        yield f"  {clean(n['host'])}: ranks {ranges([x for x in n['ranks'] if x is not None]) or 'none'} ({took})"
        for e in n.get("errors") or []:
            yield from _wrap(e, "    note: ", "      ")
    for u in jd.unreachable:
        yield from _wrap(u["reason"], f"  {clean(u['host'])}: NOT ANSWERED: ", "      ")
    cross = [e for e in jd.edges if e["cross_node"]]
    if cross:
        yield ""
        yield f"Cross-node connections ({len(cross)}, matched by address):"
        for e in cross[:MAX_EDGES]:
            a, b = e["a"], e["b"]
            yield clean(f"  rank {a['rank']} ({a['node']} {a['addr']}) <-> rank {b['rank']} ({b['node']} {b['addr']})")
        if len(cross) > MAX_EDGES:
            yield f"  ... and {len(cross) - MAX_EDGES} more (--json lists all)"


def write(jd: JobDiagnosis, stream: IO[str], elapsed_s: float = None) -> None:
    for line in lines(jd, elapsed_s):
        stream.write(clean(line) + "\n")   # fields are escaped; the whole line once more
    stream.flush()


def cascade_lines(jd: JobDiagnosis, cascade: dict) -> Iterator[str]:
    """kill-preview --job: what a kill of one rank does to the rest of the job."""
    t = cascade.get("target")
    if t is None:
        yield clean(cascade.get("reason", "not a rank of the job"))
        return
    yield (f"pyimpact kill-preview --job: rank {t['rank']} (node {clean(t['node'])}, pid {t['pid']}) of "
           f"{clean(jd.job)}, world size {jd.world_size or '?'}")
    yield ""
    yield from _wrap(cascade["effect"], "If killed now: ")
    if cascade.get("stall_s") is not None:
        yield from _wrap(f"{minutes(cascade['stall_s'])} ({cascade['stall_basis']})", "Stall: ")
    else:
        yield from _wrap(cascade["stall_basis"], "Stall: ")
    yield (f"GPU time wasted per minute of stall: {cascade['gpu_seconds_wasted_per_minute']:.0f} GPU-s "
           f"({cascade['gpus_stalled']} GPU(s) held by the other ranks"
           f"{'' if cascade['gpus_stalled'] else '; a CPU job'})")
    yield ""
    yield "Ranks that stall or stop with it:"
    for r in cascade["stall"]:
        gpus = f", GPU {','.join(map(str, r['gpus']))}" if r["gpus"] else ""
        yield f"  rank {r['rank']:>3}  node {clean(r['node'])} pid {r['pid']}{gpus}"
    for host in cascade.get("unreachable") or []:
        yield f"  node {clean(host)}: NOT ANSWERED (its ranks are not counted)"
    if cascade.get("missing_ranks"):
        yield f"  rank(s) {ranges(cascade['missing_ranks'])}: not found on any node that answered"


def write_cascade(jd: JobDiagnosis, cascade: dict, stream: IO[str]) -> None:
    for line in cascade_lines(jd, cascade):
        stream.write(clean(line) + "\n")   # fields are escaped; the whole line once more
    stream.flush()
