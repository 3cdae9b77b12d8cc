"""`pyimpact suspend PID` and `pyimpact resume PID`: SIGSTOP / SIGCONT of a whole process tree.

The order (parent first on suspend, children first on resume) and why is in
pyimpact/act/tree.py.  Before sending, the plan and what a suspend keeps held
(RAM, VRAM, ports; distributed peers timing out) are printed and confirmed
unless ``--yes``.  Every signal goes through a pidfd and into the signal log.

Exit codes: 0 done; 3 no such process; 4 not permitted; 6 the signal log
cannot be written; 8 declined, or some process did not reach the state.
"""
from __future__ import annotations

import click

from ..errors import NotDone, UsageError
from ..sessions.act_look import describe_tree, gpu_sample, tree_snapshot
from .act_common import confirm_or_stop, say, warn
from .target import process_target


EXAMPLES_S = """
\b
Examples:
  sudo pyimpact suspend 1234          print the plan and warnings, ask, then SIGSTOP the tree
  sudo pyimpact suspend 1234 --yes    without asking
  sudo pyimpact resume 1234           SIGCONT the tree, workers first
"""


@click.command("suspend", epilog=EXAMPLES_S)
@process_target
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def command(pid: int, yes: bool) -> None:
    """Suspend PID and its descendants (SIGSTOP, parent first): frees CPU, keeps RAM/VRAM."""
    from ..act.signal_log import SignalLog
    from ..act.tree import ProcessTree, suspend_tree
    from ..analyse.impact.act_notes import suspend_warnings

    from ..collect.special import special_process

    special = special_process(pid)
    if special is not None:
        raise UsageError(special.describe("suspend"), "give the PID of a user-space process")
    with ProcessTree.identify(pid) as tree:
        snap = tree_snapshot(pid)
        say(f"Plan: SIGSTOP to {len(tree.live())} process(es), parent first: {describe_tree(tree)}")
        for w in suspend_warnings(snap, pid, gpu_sample()):
            say(f"  warning: {w}")
        say(f"  resume later with: pyimpact resume {pid}")
        confirm_or_stop("Suspend now?", yes)
        with SignalLog(command="suspend", echo=warn) as log:
            res = suspend_tree(tree, log, "pyimpact suspend: user request")
        say(f"suspended: {', '.join(map(str, res['stopped'])) or 'none'}")
        if res["not_stopped"]:
            raise NotDone(f"not stopped yet: {', '.join(map(str, res['not_stopped']))} (in an uninterruptible "
                          "wait? it stops when that returns)", f"check with: pyimpact diagnose {pid}")
