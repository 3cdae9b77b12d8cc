"""The click side of "which process": one argument and two options, shared by
every command that takes a PID, all resolved by pyimpact.collect.findproc.

    pyimpact diagnose 1234          pyimpact diagnose train.py
    pyimpact diagnose --pid 1234    pyimpact diagnose -n train.py

Exactly one of TARGET, ``--pid`` and ``-n`` is given; anything else is a usage
error (exit 2). Resolution happens in the command body, after click parsed
everything, so ``--help`` and usage errors never scan /proc.
"""
from __future__ import annotations

import functools
from typing import Optional

import click

from ..errors import UsageError
from .params import PID


def _complete_process(ctx, param, incomplete: str):
    """Shell completion: PIDs and the names processes answer to."""
    from click.shell_completion import CompletionItem

    from ..collect import findproc

    words = set()
    try:
        for pid, comm, exe, argv in findproc._candidates(findproc.invoking_chain()):
            for word in (str(pid), *findproc.names_of(comm, exe, argv)):
                if word.startswith(incomplete) and "/" not in word and word.isprintable():
                    words.add(word)
    except Exception:      # completion must never print a traceback into a shell
        return []
    return [CompletionItem(w) for w in sorted(words)[:200]]


def process_target(fn):
    """Add TARGET (PID or name), ``-p/--pid N`` and ``-n/--name NAME`` to a
    command; the command receives ``pid`` (an int, resolved) instead."""

    @click.argument("target", required=False, metavar="PID|NAME", shell_complete=_complete_process)
    @click.option("-p", "--pid", "pid_opt", type=PID, metavar="N",
                  help="The process by PID (same as giving PID).")
    @click.option("-n", "--name", "name_opt", metavar="NAME", shell_complete=_complete_process,
                  help="The process by name: comm, program or script (train.py); must be unique.")
    @functools.wraps(fn)
    def wrapper(*args, target: Optional[str], pid_opt: Optional[int], name_opt: Optional[str], **kwargs):
        return fn(*args, pid=resolve_target(target, pid_opt, name_opt), **kwargs)

    return wrapper


def resolve_target(target: Optional[str], pid_opt: Optional[int], name_opt: Optional[str]) -> int:
    """The PID meant by exactly one of TARGET, --pid, -n."""
    from ..collect import findproc

    given = [x for x in (target, pid_opt, name_opt) if x is not None]
    if not given:
        raise UsageError("which process?", "give a PID or a name (e.g. 1234, train.py), or --pid / -n")
    if len(given) > 1:
        raise UsageError("give the process once: PID|NAME, --pid or -n",
                         "e.g. `pyimpact diagnose 1234` or `pyimpact diagnose -n train.py`")
    if pid_opt is not None:
        return findproc.resolve(str(pid_opt))
    if name_opt is not None:
        return findproc.resolve_name(name_opt)
    return _resolve_spec(target)


def _resolve_spec(spec: str) -> int:
    """A PID (checked as every PID option is: 1..PID_T_MAX) or a name.
    Anything ``float()`` reads is taken for a mistyped PID, never for a name."""
    from ..collect import findproc

    if spec.strip().isdigit() or _numeric(spec):
        # out of range, or a number that is no PID (nan, -1, 1.5): a usage error, exit 2
        pid = PID.convert(spec, None, None)
        return findproc.resolve(str(pid))
    return findproc.resolve(spec)


def _numeric(spec: str) -> bool:
    """Looks like a number (a mistyped PID), not like a name."""
    try:
        float(spec)
    except ValueError:
        return False
    return True


def resolve_many(specs, names) -> tuple:
    """PIDs for ``trace``: each ``-p`` (PID or name) and each ``-n`` resolved
    the same way (a name must be unique), duplicates dropped, order kept."""
    from ..collect import findproc

    out = []
    for spec in specs:
        out.append(_resolve_spec(spec))
    for name in names:
        out.append(findproc.resolve_name(name))
    return tuple(dict.fromkeys(out))
