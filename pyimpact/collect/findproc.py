"""Find the process a user means: a PID, or a name as they would type it.

Why: users of bcc's tools give ``-n NAME`` and users of py-spy think of their
job as ``train.py``, not as 12345. Every command that takes a PID (diagnose,
kill-preview, trace -p) resolves it here, so the rules are the same everywhere:

- all digits: that PID (it must exist: else ProcessGone, exit 3);
- anything else is a name. A process matches NAME when NAME equals its
  ``comm``, its executable's or ``argv[0]``'s base name, or, for an
  interpreter (python, bash, node, ...), the script it runs (as given, its
  base name, or the base name without the suffix: ``train.py`` and ``train``)
  or the module of ``python -m module``. Exact words only, never substrings:
  a name typed on purpose should not also catch ``trainer_monitor``.
- one match is used; several are listed (UsageError, exit 2: give the PID);
  none is ProcessGone (exit 3).
- never this process, nor the chain that started it up to the nearest shell
  (sudo, the shell itself): ``pyimpact diagnose bash`` typed in bash means
  another bash, and our own command line contains the name as an argument.

Only processes (thread-group leaders) are matched, like pgrep. Names from
other processes are untrusted text: callers print them through the CLI's
``error_line``, which strips control characters.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Set

import psutil

from ..errors import ProcessGone, UsageError
from . import procfs

#: interpreters whose first non-option argument is the program the user thinks of
INTERPRETERS = ("python", "pypy", "bash", "sh", "dash", "zsh", "ksh", "fish", "node", "nodejs",
                "ruby", "perl", "php", "lua", "julia", "rscript", "deno", "bun", "uv", "torchrun",
                "accelerate", "deepspeed")
#: shells: the search for our own invoking chain stops at the first one
SHELLS = ("bash", "sh", "dash", "zsh", "ksh", "mksh", "fish", "tcsh", "csh", "busybox", "ash")
#: interpreter options that take the next argument as their value
OPTIONS_WITH_VALUE = ("-W", "-X", "-Q", "--require", "-I", "-o", "-O", "--nproc-per-node",
                      "--nproc_per_node", "--nnodes", "--node-rank", "--node_rank", "--master-addr",
                      "--master_addr", "--master-port", "--master_port", "--rdzv-endpoint",
                      "--rdzv_endpoint", "--rdzv-backend", "--rdzv_backend", "--rdzv-id", "--rdzv_id",
                      "--config_file", "--config-file", "--num_processes", "--num-processes")
#: interpreters whose -e (and php's -r) takes code, not a flag as in the shells
EVAL_FLAG_FAMILIES = ("perl", "ruby", "node", "nodejs", "deno", "bun", "php", "lua")
MAX_LISTED = 8


@dataclass(frozen=True)
class Candidate:
    """A process that matched a name, for the user to choose from."""

    pid: int
    name: str            # comm
    cmdline: str         # joined argv, non-printable characters escaped


def _family(word: str) -> str:
    """``python3.11`` -> ``python``: the interpreter family of a program name."""
    base = os.path.basename(word).lower()
    return base.rstrip("0123456789.-")


def _is_interpreter(word: str) -> bool:
    return _family(word) in INTERPRETERS


def _script_of(argv: Sequence[str]) -> List[str]:
    """What an interpreter runs: the script path (and ``-m`` module) in argv."""
    out: List[str] = []
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg in ("-m", "--module") and i + 1 < len(argv):
            out.append(argv[i + 1])
            break
        if arg.startswith("-m") and len(arg) > 2 and not arg.startswith("--"):
            out.append(arg[2:])
            break
        if arg in ("-c", "--command") or (arg in ("-e", "-E", "--eval", "-r", "-p", "--print")
                                          and _family(argv[0]) in EVAL_FLAG_FAMILIES):
            break                      # code on the command line: no script to name it by
        if arg == "--":
            if i + 1 < len(argv):
                out.append(argv[i + 1])
            break
        if arg.startswith("-"):
            if arg in OPTIONS_WITH_VALUE:
                i += 1
            i += 1
            continue
        out.append(arg)
        # `uv run train.py`, `python -u torchrun ...`: a launcher runs another program
        if _is_interpreter(arg) or arg in ("run", "exec"):
            out.extend(_script_of(argv[i:]))
        break
    return out


def names_of(comm: str, exe: str, argv: Sequence[str]) -> Set[str]:
    """Every word by which a user may call this process."""
    words = {comm}
    if exe:
        words.add(os.path.basename(exe))
    if argv:
        words.add(argv[0])
        words.add(os.path.basename(argv[0]))
        if _is_interpreter(argv[0]) or _is_interpreter(exe or "") or _is_interpreter(comm):
            for script in _script_of(argv):
                words.add(script)
                base = os.path.basename(script.rstrip("/"))
                words.add(base)
                stem, dot, _ = base.rpartition(".")
                if dot and stem:
                    words.add(stem)
    words.discard("")
    return words


def invoking_chain(pid: Optional[int] = None) -> Set[int]:
    """This process and its ancestors up to (and with) the nearest shell; only
    self and parent when no shell is close (a script, a test runner)."""
    me = os.getpid() if pid is None else pid
    chain = [me]
    try:
        proc = psutil.Process(me)
        for _ in range(8):
            proc = proc.parent()
            if proc is None or proc.pid <= 1:
                break
            chain.append(proc.pid)
            try:
                name = _family(proc.name())
            except psutil.Error:
                break
            if name in SHELLS:
                return set(chain)
    except psutil.Error:
        pass
    return set(chain[:2])


def _candidates(exclude: Set[int]) -> Iterable[tuple]:
    for proc in psutil.process_iter(["pid", "name", "exe", "cmdline"]):
        info = proc.info
        if info["pid"] in exclude:
            continue
        yield info["pid"], info.get("name") or "", info.get("exe") or "", info.get("cmdline") or []


def find_by_name(name: str, exclude: Optional[Set[int]] = None) -> List[Candidate]:
    """Every process called ``name`` (see the module's rules), by PID."""
    if exclude is None:
        exclude = invoking_chain()
    found = []
    for pid, comm, exe, argv in _candidates(exclude):
        if name in names_of(comm, exe, argv):
            found.append(Candidate(pid=pid, name=comm, cmdline=_printable(" ".join(argv) or f"[{comm}]")))
    return sorted(found, key=lambda c: c.pid)


def _printable(text: str) -> str:
    """Untrusted argv as one printable line (a newline in argv must not spoof a line)."""
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def _exists(pid: int) -> bool:
    return psutil.pid_exists(pid) and procfs.exists(pid)


def resolve(spec: str, *, what: str = "process") -> int:
    """The one PID that ``spec`` (a PID or a name) means; errors say what to do."""
    spec = str(spec).strip()
    if not spec:
        raise UsageError(f"empty {what}", "give a PID or a process name")
    if spec.isdigit():
        pid = int(spec)
        if pid <= 0:
            raise UsageError(f"invalid PID {spec}", "PIDs are positive")
        if not _exists(pid):
            raise ProcessGone(f"no such process: {pid}", "check the PID with ps")
        return pid
    return resolve_name(spec)


def resolve_name(name: str) -> int:
    """The one process called ``name``: none -> exit 3, several -> exit 2 with the list."""
    matches = find_by_name(name)
    if not matches:
        raise ProcessGone(f"no process is called {name!r}",
                          "check with: ps -eo pid,args; or give the PID")
    if len(matches) > 1:
        shown = "; ".join(f"{c.pid} {c.cmdline[:60]}" for c in matches[:MAX_LISTED])
        more = f"; and {len(matches) - MAX_LISTED} more" if len(matches) > MAX_LISTED else ""
        raise UsageError(f"{len(matches)} processes are called {name!r}: {shown}{more}",
                         "give the PID of the one you mean")
    return matches[0].pid
