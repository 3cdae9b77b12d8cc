"""The text of `pyimpact stop`: the plan printed before asking, the live
"waiting for ..." line while it waits for the safe point, and the outcome
(what was lost, next to what the preview predicted)."""
from __future__ import annotations

import os
import sys
import time

from ..analyse.impact.report import ImpactReport
from ..formats import seconds
from ..text import clean
from .impact_view import one_line


class WaitLine:
    """The live "waiting for ..." line on stderr: rewritten in place on a
    terminal, one line per change (or every 5 s) otherwise."""

    def __init__(self, quiet: bool = False):
        self.tty = sys.stderr.isatty()
        self.quiet = quiet
        self.last_text = ""
        self.last_t = 0.0

    def status(self, st, waited: float) -> None:
        if self.quiet:
            return
        if st.ready:
            text = f"ready after {seconds(waited)}: sending now"
        else:
            eta = f", ETA {seconds(st.eta_s)} ({st.eta_basis})" if st.eta_s is not None else \
                (f" ({st.eta_basis})" if st.eta_basis else "")
            text = f"waiting {seconds(waited, 1, 5)} for {st.waiting_for}{eta}; Ctrl-C cancels (nothing sent)"
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
                         f"({', '.join(str(h.pid) for h in alive[:6])}): {seconds(left)} of grace left")
        sys.stderr.flush()

    def end(self) -> None:
        if self.tty and not self.quiet:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def plan_lines(pid: int, report: ImpactReport, when: str, sig_label: str, why: str, grace: float, force: bool,
               tree) -> list:
    loss, v = report.loss, report.safe_to_kill
    lines = [f"Plan for pid {pid} ({report.target.command[:60]}):"]
    if when == "safe":
        lines.append("  1. wait until no checkpoint or large file of the tree is being written or fsync'd")
    elif when == "checkpoint":
        nxt = loss.next_checkpoint_in_s
        lines.append("  1. wait for the next checkpoint to complete"
                     + (f" (expected in {seconds(nxt)}: {loss.basis['next_checkpoint_in_s'].basis})"
                        if nxt is not None else " (no cadence known yet)"))
    else:
        lines.append("  1. no wait (--when now)")
    lines.append(f"  2. send {sig_label} to pid {pid} through its pidfd: {why}")
    members = ", ".join(f"{h.pid} ({h.comm})" for h in tree.live())
    lines.append(f"  3. wait up to {seconds(grace, 0)} for the whole tree to exit: {members}")
    lines.append("  4. then " + ("SIGKILL whatever is left (--force)" if force else
                                 "leave whatever is left running and say so (no --force: no SIGKILL)"))
    lines.append("Preview: " + loss.summary)
    lines.append("  " + one_line(report) + f" ({v.reason})")
    for p in loss.partial_files:
        lines.append(f"  being written now: {p.path} ({p.bytes_written} bytes)")
    return lines


def outcome_lines(res) -> list:
    o, p = res.outcome, res.predicted
    lines = [f"Stopped: {res.signal}" + (" then SIGKILL (--force)" if res.escalated else "")
             + (f" after waiting {seconds(res.waited_s)}" if res.waited_s else "")]
    d = o.get("newest_durable_checkpoint")
    pred = (f"predicted at the signal: loses {seconds(p['lost_s'])} since "
            + (os.path.basename(p["last_checkpoint"]) if p.get("last_checkpoint") else "the start"))
    if p.get("partial_files"):
        pred += f", {len(p['partial_files'])} file(s) being written"
    if d:
        act = (f"actual: lost {seconds(o['lost_s'])} since the newest durable checkpoint "
               f"{d['path']} ({seconds(d['before_exit_s'], 2)} before the exit"
               + ("; written after the signal: the job's handler saved" if d["after_signal"] else "") + ")")
    else:
        act = f"actual: no durable checkpoint: lost everything since the start ({seconds(o['lost_s'])})"
    lines += ["  " + act, "  " + pred]
    if o.get("left_behind"):
        for f in o["left_behind"]:
            lines.append(f"  left behind: {f['path']} ({f['size_bytes']} bytes): {f['why']}")
    else:
        lines.append("  no half-written files left behind")
    return lines
