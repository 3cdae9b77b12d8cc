"""Human view of `pyimpact report`: the recording's story, then the same
diagnosis a live `diagnose` prints, for each target, then the same view a
live `kill-preview` prints, for each job the recording observed for one.

Formatters yield lines; strings that came from other processes go through
``clean``.  Nothing here computes anything.
"""
from __future__ import annotations

import textwrap
from typing import IO, Iterator, List, Sequence

from ..analyse.hang.diagnose import Diagnosis
from ..analyse.timeline_summary import Story
from . import diagnose_view
from .impact_view import render_impact
from ..formats import human_bytes, human_duration, seconds, utc_datetime
from .text import clean


def _when(ns: int) -> str:
    if not ns:
        return "?"
    t = utc_datetime(ns)
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


def _wrap(text: str) -> List[str]:
    return textwrap.wrap(text, 80, initial_indent="  ", subsequent_indent="      ",
                         break_long_words=False, break_on_hyphens=False)


def story_lines(st: Story) -> Iterator[str]:
    """The story's lines, each escaped once more on the way out (a saved
    recording is as hostile as the processes it describes)."""
    for line in _story_lines(st):
        yield clean(line)


def _story_lines(st: Story) -> Iterator[str]:
    targets = ", ".join(f"pid {t.get('pid')}" for t in st.targets) or st.mode
    dur = human_duration(st.duration_s) if st.duration_s is not None else "?"
    yield f"Recording: {clean(st.host)} (kernel {clean(st.kernel)}), {_when(st.started_ns)}, {dur}"
    yield f"  targets: {targets}" + (f"; ended: {clean(st.end_reason)}" if st.end_reason else "")
    counts = ", ".join(f"{n} {k}" for k, n in sorted(st.event_counts.items()))
    yield f"  events: {counts or 'none'}"
    lost = sum(st.lost.values())
    if st.lost_unknown:
        yield f"  losses: unknown ({clean(st.lost_unknown)})"
    else:
        yield ("  losses: none" if not lost else
               "  losses: " + ", ".join(f"{n} ({k})" for k, n in st.lost.items() if n)
               + ": the timeline is incomplete")
    for u in st.unavailable:
        yield f"  not seen: {clean(u)}"
    yield ""
    yield "Who blocked on what (completed waits):"
    if not st.waits:
        yield "  nothing blocked for long (no slow syscall or futex wait completed)"
    for w in st.waits:
        to = f", {w.timed_out} timed out" if w.timed_out else ""
        yield from _wrap(f"thread {w.tid} ({clean(w.comm)}) of pid {w.pid}: {w.count}× {clean(w.what)}, "
                         f"{human_duration(w.total_s)} in total, longest {human_duration(w.max_s)}{to}")
    if st.pending:
        yield "Still waiting when the recording ended:"
        for p in st.pending[:15]:
            since = f" since +{seconds(p.since_s, 3)}" if p.since_s is not None else ""
            dur = f" ({human_duration(p.for_s)})" if p.for_s is not None else ""
            yield f"  thread {p.tid} of pid {p.pid}: {clean(p.what)}{since}{dur}"
    yield "Signals, forks, execs and exits:"
    if not st.happenings:
        yield "  none"
    for h in st.happenings:
        yield f"  +{seconds(h.t_s, 3, 8)}  {clean(h.text)}"
    if st.more_happenings:
        yield f"  ... and {st.more_happenings} more"
    if st.io_total:
        io = st.io_total
        yield (f"Block I/O: {io['requests']} requests, {human_bytes(io['bytes'])}, "
               f"slowest {io['max_ms']} ms" + (f", {io['errors']} errors" if io["errors"] else ""))
        for s in st.slow_io:
            yield (f"  +{seconds(s['t_s'], 3, 8)}  pid {s['pid']} ({clean(s['comm'])}) {s['rwbs']} {s['dev']} "
                   f"sector {s['sector']}, {human_bytes(s['bytes'])}: {s['ms']} ms")


def write(st: Story, diagnoses: List[Diagnosis], stream: IO[str], impacts: Sequence = (),
          skipped: Sequence[dict] = ()) -> None:
    """``impacts``: ImpactReports (kill preview); ``skipped``: {pid, why} of
    jobs observed but not analysable."""
    for line in story_lines(st):
        stream.write(line + "\n")
    for d in diagnoses:
        stream.write("\n")
        for line in diagnose_view.render(d):
            stream.write(line + "\n")
    for r in impacts:
        stream.write("\n")
        stream.flush()
        render_impact(r, stream)
    for s in skipped:
        stream.write("\n" + clean(f"kill-preview of PID {s['pid']}: not analysed: {s['why']}") + "\n")
    stream.flush()
