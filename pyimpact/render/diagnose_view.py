"""Human view of a Diagnosis, in the spirit of ``py-spy dump``.

A header with the process and the verdict, one block per thread (state, what
it waits on, since when, the Python stack beside the kernel object, the
evidence), the chain from the diagnosed process to the root cause, and what
to do next.  Formatters yield lines (testable, no terminal needed); strings
that came from other processes go through ``clean``.  Nothing here computes a
verdict.
"""
from __future__ import annotations

import textwrap
from typing import IO, Iterable, Iterator, List, Optional

from ..analyse.hang.diagnose import ChainLink, Diagnosis
from ..analyse.hang.waitmodel import RUNNING, STOPPED, TIMED, WAITING, WAKING, ZOMBIE, ThreadWait
from ..formats import human_duration, seconds
from .text import clean

WIDTH = 80
MAX_PY_FRAMES = 6
MAX_EVIDENCE = 6


def _wrap(text: str, indent: str, first: Optional[str] = None) -> List[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=first if first is not None else indent,
                         subsequent_indent=indent + "  ", break_long_words=False,
                         break_on_hyphens=False) or [first or indent]


def _since(t: ThreadWait) -> str:
    if t.blocked_for_s is None:
        return ""
    if t.blocked_exact:
        return f"waiting {human_duration(t.blocked_for_s)} (since the call began)"
    return f"waiting ≥ {human_duration(t.blocked_for_s)}"


def _status(t: ThreadWait) -> str:
    if t.activity == RUNNING:
        share = f"{100 * (t.cpu_s or 0) / t.window_s:.0f}% CPU" if t.window_s else "on CPU"
        return f"running ({share})"
    if t.activity == WAKING:
        return f"active, {t.wakeups or 0} wake-ups"
    if t.activity == TIMED:
        left = f", {human_duration(t.timeout_s)} left" if t.timeout_s is not None else ""
        return f"timed wait{left}"
    if t.activity == WAITING:
        return _since(t) or "waiting"
    if t.activity == STOPPED:
        return "stopped" + (f" ≥ {human_duration(t.blocked_for_s)}" if t.blocked_for_s else "")
    if t.activity == ZOMBIE:
        return "zombie"
    return "state unknown"


def thread_block(t: ThreadWait, verbose: bool = True) -> Iterator[str]:
    """Lines for one thread."""
    name = clean(t.label)
    sysc = f" in {t.syscall}" if t.syscall and t.activity != RUNNING else ""
    yield f'Thread {t.tid} "{name}" ({t.state}{sysc}): {_status(t)}'
    if t.activity in (WAITING, TIMED, STOPPED) and t.resource:
        yield from _wrap(f"waits on: {clean(t.resource)}", "    ")
        if t.call:
            yield from _wrap(f"call: {clean(t.call)}", "    ")
    if t.activity == WAITING and not t.edges and t.end_reason:
        yield from _wrap(f"note: {clean(t.end_reason)}", "    ")
    if t.state == "D" and t.kernel_stack:
        yield from _wrap("kernel stack: " + " <- ".join(clean(f.split("+")[0]) for f in t.kernel_stack[:6]),
                         "    ")
    elif t.wchan and t.activity in (WAITING, STOPPED):
        yield f"    wchan: {clean(t.wchan)}"
    if t.python_stack:
        for i, fr in enumerate(t.python_stack[:MAX_PY_FRAMES]):
            lead = "    Python: " if i == 0 else "            "
            yield f"{lead}{clean(fr.get('function'))} ({clean(fr.get('file'))}:{fr.get('line')})"
        if len(t.python_stack) > MAX_PY_FRAMES:
            yield f"            ... {len(t.python_stack) - MAX_PY_FRAMES} more frames"
    if verbose:
        for line in t.evidence[:MAX_EVIDENCE]:
            yield from _wrap(f"- {clean(line)}", "    ", first="    ")


def _same(t: ThreadWait) -> tuple:
    top = t.python_stack[0].get("function") if t.python_stack else None
    return (t.activity, t.syscall, t.kind, t.resource if t.activity == WAITING else "", top)


def _thread_blocks(d: Diagnosis) -> Iterator[str]:
    """One block per thread; threads off the chain that look alike (a pool
    of idle workers) are shown once, with the others counted."""
    key_tids = {c.tid for c in d.chain + d.cycle if c.tid is not None} | {d.pid}
    shown: dict = {}
    for t in d.threads:
        if t.tid in key_tids or len(d.threads) <= 8:
            yield from thread_block(t, verbose=False)
            continue
        k = _same(t)
        if k in shown:
            shown[k].append(t.tid)
            continue
        shown[k] = []
        yield from thread_block(t, verbose=False)
    for k, tids in shown.items():
        if tids:
            more = ", ".join(str(x) for x in tids[:8]) + (" ..." if len(tids) > 8 else "")
            yield f"... and {len(tids)} more threads like the one above ({k[1] or k[0]}): {more}"


def _link_words(c: ChainLink) -> str:
    who = f"pid {c.pid}" if c.pid is not None else clean(c.name)
    if c.tid is not None and c.tid != c.pid:
        who += f" thread {c.tid}"
    if c.pid is not None or c.tid is not None:
        who += f" ({clean(c.name)}, {c.state})"
    if c.location:
        who += f" {clean(c.location)}"
    return who


def chain_lines(chain: List[ChainLink], title: str, arrows: bool = True) -> Iterator[str]:
    if not chain:
        return
    yield f"{title}:"
    for c in chain:
        yield from _wrap(_link_words(c), "    ", first="  ")
        if c.waits_on is not None:
            kind, res = str(c.waits_on.get("kind")), clean(c.waits_on.get("resource"))
            what = res if res.lower().startswith(kind.split("-")[0]) else f"{kind}: {res}"
            yield from _wrap(f"waits on {what}", "      ", first="    ↓ " if arrows else "      ")
        elif c.note:
            yield from _wrap(f"end: {clean(c.note)}", "      ", first="    ■ ")


def render(d: Diagnosis) -> Iterator[str]:
    """All lines of the human view.  Fields from other processes are escaped
    where they are placed (so wrapping measures what is shown); each whole
    line is escaped again on the way out, so a field that missed it still
    cannot print a control character or a second line."""
    for line in _render(d):
        yield clean(line)


def _render(d: Diagnosis) -> Iterator[str]:
    cmd = " ".join(d.cmdline) if d.cmdline else d.name
    yield from _wrap(f"Process {d.pid}: {clean(cmd)}", "  ", first="")
    how = "kernel probes + /proc" if d.bpf else "/proc only (no kernel probes)"
    lost = f", {d.lost_events} events LOST" if d.lost_events else ""
    window = seconds(d.window_s, 2) if d.window_s else "one snapshot"
    yield f"Observed {window} with {how}{lost}"
    yield ""
    rc = d.root_cause
    if d.verdict in ("idle", "progressing"):  # healthy: nothing is the cause of anything
        yield f"Verdict: {d.verdict.upper()} (confidence {d.confidence})"
        yield from _wrap(clean(d.summary), "  ", first="  ")
    else:
        yield f"Verdict: {d.verdict.upper()} ({rc.kind}, confidence {d.confidence})"
        yield from _wrap(clean(d.summary), "  ", first="  ")
        yield from _root_line(rc)
    yield ""
    yield from _thread_blocks(d)
    yield ""
    yield from _rest(d)


def _root_line(rc) -> Iterator[str]:
    who = []
    if rc.pid is not None:
        who.append(f"pid {rc.pid}")
    if rc.tid is not None and rc.tid != rc.pid:
        who.append(f"thread {rc.tid}")
    root = " ".join(who) if who else "no process on this machine"
    yield from _wrap(f"Root cause: {root} — {rc.kind}: {clean(rc.resource)}", "  ", first="  ")


def _rest(d: Diagnosis) -> Iterator[str]:
    if d.cycle:
        exact = d.confidence == "high"
        yield from chain_lines(d.cycle, "Cycle" if exact else
                               "Deadlocked threads (no lock owner recorded: the order is not known)", exact)
        if exact:
            yield f"    ↺ back to thread {d.cycle[0].tid}"
        if len(d.chain) > 1:
            first = d.chain[0]
            yield from chain_lines(d.chain, "From the main thread" if first.tid == d.pid else f"From thread {first.tid}")
    elif len(d.chain) > 1 or (d.chain and d.verdict not in ("idle", "progressing")):
        yield from chain_lines(d.chain, "Chain to the root cause")
    if d.gpu:
        yield "GPU:"
        for gp in d.gpu:
            yield (f"  device {gp.get('device')} {clean(gp.get('name') or '')}: pid {gp.get('pid')} "
                   f"holds {gp.get('used_memory_bytes')} B, utilisation {gp.get('util_gpu_pct')}%")
    yield "Evidence:"
    for line in d.evidence:
        yield from _wrap(f"- {clean(line)}", "    ", first="  ")
    yield "What to do:"
    for line in d.advice:
        yield from _wrap(f"- {clean(line)}", "    ", first="  ")
    if d.unavailable:
        yield "Not seen:"
        for line in d.unavailable:
            yield from _wrap(f"- {clean(line)}", "    ", first="  ")


def write(d: Diagnosis, stream: IO[str]) -> None:
    """Print the human view to ``stream`` and flush (the verdict must be out
    before the probes are detached)."""
    for line in render(d):
        stream.write(line + "\n")
    stream.flush()


def lines(d: Diagnosis) -> List[str]:
    return list(render(d))


def join(lines_: Iterable[str]) -> str:
    return "\n".join(lines_)
