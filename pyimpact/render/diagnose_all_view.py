"""Human view of `diagnose --all`: one row per unhealthy process tree, then
the count of healthy ones.  Every string from a process is cleaned."""
from __future__ import annotations

import textwrap
from typing import IO, Iterator, List

from ..analyse.hang.machine import MachineReport
from ..analyse.hang.waitmodel import secs
from ..formats import seconds
from .text import clean


def render(r: MachineReport) -> Iterator[str]:
    how = "kernel probes + /proc" if r.bpf else "/proc only (no kernel probes)"
    lost = f", {r.lost_events} events LOST" if r.lost_events else ""
    window = seconds(r.window_s, 2) if r.window_s else "one snapshot"
    yield f"Observed {r.processes} processes in {r.trees} process trees for {window} with {how}{lost}"
    yield ""
    if r.rows:
        yield f"{len(r.rows)} tree(s) not healthy:"
        yield f"  {'PID':>7}  {'CLASS':<9} {'SINCE':>8}  {'ROOT':>7}  WHAT"
        for row in r.rows:
            rc = row.root_cause
            root = str(rc.get("pid")) if rc.get("pid") is not None else "remote"
            since = secs(row.since_s) if row.since_s is not None else "?"
            yield f"  {row.pid:>7}  {row.verdict:<9} {since:>8}  {root:>7}  {clean(row.name)}"
            text = f"{clean(rc.get('kind') or '')}: {clean(row.summary)}"
            for line in textwrap.wrap(text, 69, max_lines=3, placeholder=" …"):
                yield f"           {line}"
        yield ""
        yield "  Details: sudo pyimpact diagnose PID"
    else:
        yield "No process tree is hung."
    yield f"{r.healthy_trees} healthy tree(s) (idle, busy or progressing)."
    for line in r.unavailable[:6]:
        yield f"Not seen: {clean(line)}"


def write(r: MachineReport, stream: IO[str]) -> None:
    for line in render(r):
        stream.write(line + "\n")
    stream.flush()


def lines(r: MachineReport) -> List[str]:
    return list(render(r))
