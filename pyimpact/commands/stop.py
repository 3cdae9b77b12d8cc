"""`pyimpact stop PID`: stop a job at its next safe point, gracefully, and say what it cost.

Glue only: identify the tree (pidfds, pyimpact.act.tree), take a short
kill-preview (pyimpact.commands.kill_preview.observe + analyse_impact), print
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

import os
import sys
import time
from typing import Optional

import click

from ..errors import NotDone, ProcessGone, UsageError
from ..render.text import json_dumps
from .params import Number
from .act_common import confirm_or_stop, say, warn
from .target import process_target

SCHEMA = "pyimpact.stop/1"


class WaitLine:
    """The live "waiting for ..." line on stderr: rewritten in place on a
    terminal, one line per change (or every 5 s) otherwise."""

    def __init__(self, quiet: bool = False):
        self.tty = sys.stderr.isatty()
        self.quiet = quiet
        self.last_text = ""
        self.last_t = 0.0

    def status(self, st, waited: float) -> None:
        from ..render.text import clean

        if self.quiet:
            return
        if st.ready:
            text = f"ready after {waited:.1f} s: sending now"
        else:
            eta = f", ETA {st.eta_s:.1f} s ({st.eta_basis})" if st.eta_s is not None else \
                (f" ({st.eta_basis})" if st.eta_basis else "")
            text = f"waiting {waited:5.1f} s for {st.waiting_for}{eta}; Ctrl-C cancels (nothing sent)"
        text = clean(text)
        if self.tty:
            sys.stderr.write("\r\x1b[K" + text[:200] + ("\n" if st.ready else ""))
            sys.stderr.flush()
        elif st.waiting_for != self.last_text or time.monotonic() - self.last_t > 5 or st.ready:
            self.last_text = st.waiting_for
            self.last_t = time.monotonic()
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def grace(self, alive, left: float) -> None:
        if self.quiet or not self.tty:
            return
        sys.stderr.write(f"\r\x1b[Kwaiting for {len(alive)} process(es) to exit "
                         f"({', '.join(str(h.pid) for h in alive[:6])}): {left:.1f} s of grace left")
        sys.stderr.flush()

    def end(self) -> None:
        if self.tty and not self.quiet:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def plan_lines(pid: int, report: dict, when: str, sig_label: str, why: str, grace: float, force: bool, tree) -> list:
    from ..render.impact_view import one_line

    loss, v = report["loss"], report["safe_to_kill"]
    lines = [f"Plan for pid {pid} ({report['target']['command'][:60]}):"]
    if when == "safe":
        lines.append("  1. wait until no checkpoint or large file of the tree is being written or fsync'd")
    elif when == "checkpoint":
        nxt = loss.get("next_checkpoint_in_s")
        lines.append("  1. wait for the next checkpoint to complete"
                     + (f" (expected in {nxt:.1f} s: {loss['basis']['next_checkpoint_in_s']['basis']})"
                        if nxt is not None else " (no cadence known yet)"))
    else:
        lines.append("  1. no wait (--when now)")
    lines.append(f"  2. send {sig_label} to pid {pid} through its pidfd: {why}")
    members = ", ".join(f"{h.pid} ({h.comm})" for h in tree.live())
    lines.append(f"  3. wait up to {grace:.0f} s for the whole tree to exit: {members}")
    lines.append("  4. then " + ("SIGKILL whatever is left (--force)" if force else
                                 "leave whatever is left running and say so (no --force: no SIGKILL)"))
    lines.append("Preview: " + loss["summary"])
    lines.append("  " + one_line(report) + f" ({v['reason']})")
    for p in loss.get("partial_files", []):
        lines.append(f"  being written now: {p['path']} ({p['bytes_written']} bytes)")
    return lines


def outcome_lines(res) -> list:
    o, p = res.outcome, res.predicted
    lines = [f"Stopped: {res.signal}" + (" then SIGKILL (--force)" if res.escalated else "")
             + (f" after waiting {res.waited_s:.1f} s" if res.waited_s else "")]
    d = o.get("newest_durable_checkpoint")
    pred = (f"predicted at the signal: loses {p['lost_s']:.1f} s since "
            + (os.path.basename(p["last_checkpoint"]) if p.get("last_checkpoint") else "the start"))
    if p.get("partial_files"):
        pred += f", {len(p['partial_files'])} file(s) being written"
    if d:
        act = (f"actual: lost {o['lost_s']:.1f} s since the newest durable checkpoint "
               f"{d['path']} ({d['before_exit_s']:.2f} s before the exit"
               + ("; written after the signal: the job's handler saved" if d["after_signal"] else "") + ")")
    else:
        act = f"actual: no durable checkpoint: lost everything since the start ({o['lost_s']:.1f} s)"
    lines += ["  " + act, "  " + pred]
    if o.get("left_behind"):
        for f in o["left_behind"]:
            lines.append(f"  left behind: {f['path']} ({f['size_bytes']} bytes): {f['why']}")
    else:
        lines.append("  no half-written files left behind")
    return lines


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
            report = analyse_impact(rec, pid).to_dict()
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
        obs_doc = rec.metadata["kill_preview"]["observations"][0]
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
            doc = {"schema": SCHEMA, "pid": pid, "preview": report, **res.to_dict()}
            click.echo(json_dumps(doc, indent=2))
        if res.survivors:
            raise NotDone(f"still running after the {grace:.0f} s grace period: "
                          + ", ".join(map(str, res.survivors)), "pass --force to SIGKILL them, or a longer --grace")
        if not as_json:
            for text in outcome_lines(res):
                say(text)
