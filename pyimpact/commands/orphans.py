"""`pyimpact orphans [--cleanup] [--yes]`: worker processes whose job has gone.

Glue: scan /proc (pyimpact.collect.orphan_scan), take a pidfd for every
suspect at once (discovery), read the recorder's history when there is one,
find the orphans (pyimpact.analyse.history.orphans), print them; with --cleanup show
the plan, ask unless --yes, and signal through the handles taken at
discovery (pyimpact.act.orphan_cleanup).

Exit codes: 0 listed (and, with --cleanup, every planned process is gone);
2 bad option; 7 the --history database cannot be read; 8 not confirmed, or
a planned process could not be cleaned.
"""
from __future__ import annotations

import os
import sys

import click

from ..errors import NotDone
from ..render.text import json_dumps
from ..sessions.act_look import gpu_memory_by_pid
from .params import PID

EXAMPLES = """
\b
Examples:
  pyimpact orphans                       list orphaned workers (history if a recorder runs)
  pyimpact orphans --json
  sudo pyimpact orphans --cleanup        show the plan, ask, then SIGTERM / SIGKILL
  sudo pyimpact orphans --cleanup --yes --grace 10s
"""


@click.command("orphans", epilog=EXAMPLES)
@click.option("--history", "history_db", default=None, help="Recorder database (default: the running recorder's).")
@click.option("--no-history", is_flag=True, help="Use /proc only, even if a recorder runs.")
@click.option("--json", "as_json", is_flag=True, help='Print {"orphans": [...]} instead of a table.')
@click.option("--cleanup", is_flag=True, help="Signal the orphans that are safe to clean (asks first).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before --cleanup signals.")
@click.option("--grace", default="5s", show_default=True, help="Wait this long after SIGTERM before SIGKILL.")
@click.option("-p", "--pid", "only", type=PID, multiple=True,
              help="Only this orphan (repeatable): list and clean no other.")
def command(history_db, no_history, as_json, cleanup, yes, grace, only):
    """Find worker processes whose job has gone and that still hold CPU, RAM, GPU or ports."""
    from ..act.orphan_cleanup import close_handles, execute, open_handles, plan_cleanup
    from ..analyse.history.orphans import find_orphans
    from ..collect import orphan_scan
    from ..collect.history_db import HistoryReader, find_default_db
    from ..collect.jobs import own_family
    from ..units import parse_duration

    grace_s = parse_duration(grace, "--grace")
    path = None if no_history else find_default_db(history_db)
    reader = HistoryReader(path) if path else None
    procs = orphan_scan.scan()
    suspects = [p for p in procs.values() if p.detailed]
    handles = open_handles([(p.pid, p.start_ticks) for p in suspects])     # discovery: pidfds now
    try:
        hist = orphan_scan.history_facts(reader, procs, [p.pid for p in suspects]) if reader else None
        gpu_mem = gpu_memory_by_pid(suspects)
        orphans = find_orphans(procs, hist, my_uid=os.geteuid(), is_root=os.geteuid() == 0,
                               exclude=own_family(), gpu_mem=gpu_mem)
        if only:
            orphans = [o for o in orphans if o.pid in set(only)]
        note = "" if reader else ("no recorder history: jobs told from /proc only (the recorder would name each "
                                  "job, its command and when it ended: sudo pyimpact record)")
        if as_json:
            doc = {"schema": "pyimpact.orphans/1", "history": path, "note": note or None,
                   "orphans": [o.to_json() for o in orphans]}
        else:
            from ..render.orphans_view import write

            write(orphans, sys.stdout, note)
        if not cleanup:
            if as_json:
                click.echo(json_dumps(doc, indent=2))
            return
        plan = plan_cleanup(orphans, handles)
        out = (lambda s: click.echo(s, err=True)) if as_json else click.echo
        if not plan.steps:
            if as_json:
                doc["cleanup"] = {"planned": [], "results": []}
                click.echo(json_dumps(doc, indent=2))
            out("nothing to clean" + (f" ({len(plan.skipped)} not safe)" if plan.skipped else ""))
            return
        from ..render.text import clean

        out("plan:")
        for line in plan.lines(grace_s):
            out("  " + clean(line))
        from .act_common import confirm_or_stop

        confirm_or_stop(f"Send these signals to {len(plan.steps)} process(es)?", yes)
        from ..act.signal_log import SignalLog

        with SignalLog(command="orphans --cleanup", echo=out) as log:
            results = execute(plan, log, grace_s=grace_s, echo=out)
        if as_json:
            doc["cleanup"] = {"planned": [o.pid for o, _ in plan.steps],
                              "results": [{"pid": r.pid, "outcome": r.outcome, "signals": r.signals}
                                          for r in results], "signal_log": log.path}
            click.echo(json_dumps(doc, indent=2))
        bad = [r for r in results if r.outcome not in ("exited after SIGTERM", "killed", "already gone")]
        if bad:
            raise NotDone(f"{len(bad)} process(es) not cleaned: " + "; ".join(f"{r.pid} {r.outcome}" for r in bad),
                          "check them with ps; run `pyimpact orphans --cleanup` again, or stop them by PID")
    finally:
        close_handles(handles)
        if reader is not None:
            reader.close()


