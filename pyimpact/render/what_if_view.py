"""The `kill-preview --if` section: the estimate, its basis and the data-loader risk, as plain text.

Layout only; every figure comes from pyimpact.analyse.impact.what_if.estimate.
"""
from __future__ import annotations

from typing import List

from .text import clean


def what_if_lines(w: dict) -> List[str]:
    if w.get("kind") == "unavailable":
        return [f"If {w['change']}: no estimate ({w.get('reason', '')})"]
    now, after = w["now"], w["after"]
    lines = [f"If {w['change']} (applied to {w['applies_to']}):",
             f"  {w['summary']} (estimated)",
             f"  CPU: {now['cpu_cores']:.2f} cores now -> ~{after['cpu_cores']:.2f}; "
             f"run-queue wait now {now['runqueue_wait_cores']:.2f} cores; rest of the machine "
             f"{now['others_cores']:.2f} cores",
             f"  data loaders: {w['dataloader']['risk']} risk: {w['dataloader']['text']}",
             f"  GPU: {w['gpu']['text']}"]
    lines += [f"  note: {n}" for n in w.get("notes", [])]
    lines.append("  basis:")
    lines += [f"    - {b}" for b in w["basis"]]
    return [clean(x) for x in lines]


def render_what_if(items: List[dict], out) -> None:
    for w in items:
        out.write("\n")
        for line in what_if_lines(w):
            out.write(line + "\n")
