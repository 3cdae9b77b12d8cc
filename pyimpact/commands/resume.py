"""`pyimpact resume PID`: SIGCONT of a suspended tree, deepest first, the root last (see act/tree.py)."""
from __future__ import annotations

import click

from ..errors import NotDone, UsageError
from .act_common import confirm_or_stop, say, warn
from ..sessions.act_look import describe_tree
from .target import process_target


@click.command("resume")
@process_target
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def command(pid: int, yes: bool) -> None:
    """Resume PID and its descendants (SIGCONT, children first, the parent last)."""
    from ..act.signal_log import SignalLog
    from ..act.tree import ProcessTree, resume_tree

    from ..collect.special import special_process

    special = special_process(pid)
    if special is not None:
        raise UsageError(special.describe("resume"), "give the PID of a user-space process")
    with ProcessTree.identify(pid) as tree:
        say(f"Plan: SIGCONT to {len(tree.live())} process(es), children first: {describe_tree(tree)}")
        confirm_or_stop("Resume now?", yes)
        with SignalLog(command="resume", echo=warn) as log:
            res = resume_tree(tree, log, "pyimpact resume: user request")
        say(f"resumed: {', '.join(map(str, res['resumed'])) or 'none'}")
        if res["still_stopped"]:
            raise NotDone(f"still stopped: {', '.join(map(str, res['still_stopped']))} (a debugger or "
                          "another stop holds it?)",
                          "see what holds it: cat /proc/PID/status (TracerPid), then resume again")
