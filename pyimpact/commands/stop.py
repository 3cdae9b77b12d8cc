"""`pyimpact stop PID`: stop a job at its next safe point, gracefully, and say what it cost.

Glue only: identify the tree (pidfds, pyimpact.act.tree), take a short
kill-preview (pyimpact.sessions.kill_preview.observe + analyse_impact), print
the plan and the preview figures, ask (unless ``--yes``), then run
pyimpact.act.stop.run_stop and print what was actually lost next to what the
preview predicted.

Exit codes: 0 the tree is gone; 3 no such process (or it exited on its own
while waiting: nothing sent); 4 not permitted; 6 the signal log cannot be
written; 8 declined, gave up waiting (--max-wait), or processes still alive
after the grace period without --force; 130 Ctrl-C (while waiting: nothing
sent).
"""
from __future__ import annotations

from typing import Optional

import click

from ..errors import NotDone, ProcessGone, UsageError
from ..formats import seconds
from ..render.stop_view import WaitLine, outcome_lines, plan_lines
from ..text import json_dumps
from .params import Number
from .act_common import confirm_or_stop, say, warn
from .target import process_target

SCHEMA = "pyimpact.stop/1"


EXAMPLES = """
\b
Examples:
  sudo pyimpact stop 1234                      wait for a safe moment, SIGTERM, wait 30 s
  sudo pyimpact stop 1234 --when checkpoint    stop right after the next checkpoint
  sudo pyimpact stop 1234 --signal USR1 --grace 120
  sudo pyimpact stop 1234 --when now --force --yes
"""


@click.command("stop", epilog=EXAMPLES)
@process_target
@click.option("--when", "when", type=click.Choice(["now", "safe", "checkpoint"]), default="safe", show_default=True,
              help="safe: when nothing is being written or fsync'd; checkpoint: right after the next "
                   "checkpoint completes; now: at once.")
@click.option("--grace", type=Number(0, 86400), default=30.0, show_default=True,
              help="Seconds the whole tree has to exit after the graceful signal.")
@click.option("--signal", "sig_name", metavar="SIG", help="Graceful signal to send (default: SIGTERM).")
@click.option("--force", is_flag=True, help="SIGKILL what is left after the grace period.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--max-wait", type=Number(0, 10**7), default=None, help="Give up (send nothing) after S seconds.")
@click.option("--preview", "preview_s", type=Number(0.2, 600), default=1.0, show_default=True,
              help="Seconds of kill-preview observation before the plan.")
@click.option("--no-bpf", is_flag=True, help="Observe through /proc only (no kernel probes).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (schema pyimpact.stop/1).")
def command(pid: int, when: str, grace: float, sig_name: Optional[str], force: bool, yes: bool,
            max_wait: Optional[float], preview_s: float, no_bpf: bool, as_json: bool) -> None:
    """Stop PID and its tree at a safe moment, with its graceful signal."""
    from ..act.pidfd import signal_label, signal_number
    from ..act.signal_log import SignalLog
    from ..act.stop import choose_signal, run_stop
    from ..act.tree import ProcessTree
    from ..analyse.impact.report import analyse_impact
    from ..collect.workfiles import TreeObserver, seed_from_snapshot
    from ..sessions.kill_preview import observe

    from ..collect.special import special_process

    special = special_process(pid)
    if special is not None:
        raise UsageError(special.describe("stop"), "give the PID of a user-space process")
    user_sig = None
    if sig_name:
        try:
            user_sig = signal_number(sig_name)
        except ValueError as exc:
            raise UsageError(str(exc), "use a name such as TERM, INT, USR1 or a number") from None
    with ProcessTree.identify(pid) as tree:
        rec, tracer = observe(pid, preview_s, use_bpf=not no_bpf)
        try:
            report = analyse_impact(rec, pid)
        finally:
            tracer.close()
        start = rec.snapshots["start"].processes[pid]
        if start.start_ticks != tree.root.start_ticks:
            raise ProcessGone(f"pid {pid} is now another process: the one identified has exited",
                              "nothing was sent; look the process up again (pgrep -a NAME)")
        end = (rec.snapshots.get("end") or rec.snapshots["start"]).processes.get(pid, start)
        sig, why = choose_signal(end.sig_caught, end.sig_ignored, user_sig)
        out = warn if as_json else say
        for line in plan_lines(pid, report, when, signal_label(sig), why, grace, force, tree):
            out(line)
        confirm_or_stop("Proceed?", yes)
        obs_doc = rec.metadata.kill_preview["observations"][0]
        observer = TreeObserver(pid, tree.root.start_ticks)
        seed_from_snapshot(observer, rec.snapshots["start"])
        observer.samples = list(obs_doc.get("samples", []))
        for d, reason in obs_doc.get("watch_reasons", {}).items():
            observer.watch.setdefault(d, reason)
        line = WaitLine()
        with SignalLog(command="stop", echo=warn) as log:
            try:
                res = run_stop(tree, observer, int(start.create_time * 1e9), log, when, sig, why, grace, force,
                               max_wait, on_status=line.status, on_tick=line.grace, sig_caught=end.sig_caught)
            finally:
                line.end()
        if as_json:
            doc = {"schema": SCHEMA, "pid": pid, "preview": report.to_dict(), **res.to_dict()}
            click.echo(json_dumps(doc, indent=2))
        if res.survivors:
            raise NotDone(f"still running after the {seconds(grace, 0)} grace period: "
                          + ", ".join(map(str, res.survivors)), "pass --force to SIGKILL them, or a longer --grace")
        if not as_json:
            for text in outcome_lines(res):
                say(text)
