"""`diagnose --timings`: where the time to verdict went, in one line.

The marks are seconds from the load of the diagnose session's module (taken
by the session and kept in the recording's ``metadata.diagnose_timings_s``;
``process`` is how long the interpreter ran before that: start-up, click).  Each step is shown
with the time it took since the previous mark, so the slow one stands out. The
probes are loaded in a thread while the imports run: when they were attached
before the imports ended, that step is shown as done during them.
"""
from __future__ import annotations

from typing import Dict, Optional

#: the marks in the order the session takes them, with what each one ends
STEPS = (("imported", "imports"), ("attached", "probes attached"), ("window_done", "window"),
         ("recording", "recording"), ("related", "related processes"), ("servers", "servers asked"),
         ("stacks", "Python stacks"), ("collected", "collected"), ("diagnosed", "diagnosed"),
         ("shown", "shown"))


def timings_line(marks: Dict[str, float], probes: Optional[Dict[str, float]] = None) -> str:
    """"timings: imports 0.39 s (+0.39), probes attached 0.60 s (+0.21), ...";
    per resolver too (``server:NAME``, the time it took). ``probes``: the
    probes' own timings (recording metadata ``probe_timings``): compiled now,
    or loaded from the compiled-probe cache."""
    parts = []
    prev = 0.0
    for key, words in STEPS:
        if key not in marks:
            continue
        at = float(marks[key])
        if at < prev:
            parts.append(f"{words} {at:.2f} s (during the previous step)")
            continue
        if key == "window_done" and "attached" in marks:   # the window starts when the probes attach
            prev = min(prev, float(marks["attached"]))
        parts.append(f"{words} {at:.2f} s (+{at - prev:.2f})")
        prev = at
    servers = [f"{k.split(':', 1)[1]} {float(v):.2f} s" for k, v in sorted(marks.items()) if k.startswith("server:")]
    line = "timings (from the diagnose module's load): " + ", ".join(parts)
    if "process" in marks:
        line += f"; interpreter start to module load {float(marks['process']):.2f} s"
    if servers:
        line += "; resolvers: " + ", ".join(servers)
    if probes and "compile_attach_s" in probes:
        how = ("from the compiled-probe cache" if probes.get("probe_cache_hit")
               else f"compiled in {float(probes.get('compile_s', 0)):.2f} s")
        line += f"; probes {how}, loaded and attached in {float(probes['compile_attach_s']):.2f} s"
    return line
