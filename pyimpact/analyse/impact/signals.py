"""Which stop signals a process handles, from its /proc/PID/status masks.

Why it matters: SIGTERM that is *caught* lets the job run its handler (save a
checkpoint, close files, tell its peers); SIGTERM with the default action ends
it at once, losing exactly what SIGKILL loses; an *ignored* SIGTERM does
nothing, and a *blocked* one waits until the process unblocks it.  What the
handler does cannot be seen from outside; that it exists can.

CPython installs a SIGINT handler in every interpreter (it raises
KeyboardInterrupt in the main thread), so "SIGINT caught" in a Python process
says little about a clean stop unless the code catches KeyboardInterrupt.

Bit n-1 of a mask is signal n (proc(5)).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List

from ...snapshot import ProcessSnapshot
from ...timeline import signal_name

WATCHED = {"SIGTERM": 15, "SIGINT": 2, "SIGUSR1": 10, "SIGHUP": 1, "SIGUSR2": 12}


def _has(mask: int, sig: int) -> bool:
    return bool(mask >> (sig - 1) & 1)


@dataclass
class SignalState:
    state: str            # caught | ignored | default, with "+blocked" when blocked
    caught: bool
    ignored: bool
    blocked: bool
    meaning: str


@dataclass
class SignalReport:
    handles_sigterm: bool
    handles_sigint: bool
    handles_sigusr1: bool
    graceful_stop_possible: bool
    detail: Dict[str, SignalState] = field(default_factory=dict)
    pending: List[str] = field(default_factory=list)
    note: str = ""


def _meaning(name: str, caught: bool, ignored: bool, blocked: bool, python: bool) -> str:
    if ignored:
        return "ignored: sending it does nothing"
    if caught:
        text = "caught: the process runs its own handler"
        if name == "SIGINT" and python:
            text = "caught (CPython's default: KeyboardInterrupt; clean only if the code catches it)"
        if blocked:
            text += "; blocked now, so it waits until unblocked"
        return text
    if name in ("SIGTERM", "SIGINT", "SIGUSR1", "SIGHUP", "SIGUSR2"):
        text = "default: ends the process at once, no cleanup (same loss as SIGKILL)"
        if blocked:
            text = "blocked, default action: pending until unblocked, then ends the process"
        return text
    return "default"


def read_signals(p: ProcessSnapshot) -> SignalReport:
    detail: Dict[str, SignalState] = {}
    # NSpid is relative to the namespace it was read from: two or more entries
    # and a last one of 1 is the pid 1 of a namespace below ours (a container's init)
    ns_init = len(p.nspid) >= 2 and p.nspid[-1] == 1
    for name, sig in WATCHED.items():
        caught = _has(p.sig_caught, sig)
        ignored = _has(p.sig_ignored, sig)
        blocked = _has(p.sig_blocked, sig)
        state = "ignored" if ignored else ("caught" if caught else "default")
        if blocked:
            state += "+blocked"
        meaning = _meaning(name, caught, ignored, blocked, p.python)
        if ns_init and not caught and not ignored:
            meaning = ("default action, but this is the init of a PID namespace: the kernel discards "
                       "the signal (only a handler, or SIGKILL, stops a namespace's pid 1)")
        detail[name] = SignalState(state, caught, ignored, blocked, meaning)
    pending_mask = p.sig_pending | p.sig_shared_pending
    pending = [signal_name(n) for n in range(1, 65) if _has(pending_mask, n)]
    term = detail["SIGTERM"]
    handles_term = term.caught and not term.ignored
    note = ""
    if handles_term and term.blocked:
        note = "SIGTERM is caught but blocked right now: the handler runs once the process unblocks it"
    elif not handles_term and not term.ignored and ns_init:
        note = ("SIGTERM has no handler and this is a PID namespace's init: SIGTERM is discarded, "
                "only SIGKILL stops it (and with it every process of the namespace)")
    elif not handles_term and not term.ignored:
        note = "SIGTERM has its default action: it stops the job as abruptly as SIGKILL"
    elif term.ignored:
        note = "SIGTERM is ignored: only SIGKILL stops this process"
    return SignalReport(
        handles_sigterm=handles_term,
        handles_sigint=detail["SIGINT"].caught and not detail["SIGINT"].ignored,
        handles_sigusr1=detail["SIGUSR1"].caught and not detail["SIGUSR1"].ignored,
        graceful_stop_possible=handles_term,
        detail=detail, pending=pending, note=note)
