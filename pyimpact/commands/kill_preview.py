"""`pyimpact kill-preview PID`: what a kill of PID now would lose, free and break.

Read-only: this command never sends a signal.  It observes the process tree
for a short window (kernel probes where available, /proc always), samples the
tree's CPU counters, its files open for writing and the checkpoint-like files
in the directories the job works in (pyimpact.collect.workfiles), reads NVML,
and prints the impact analysis (pyimpact.analyse.impact.report) as text or ``--json``.

The samples go into the Recording (``metadata.kill_preview``) and the
``--costly-after`` threshold into its options, so `pyimpact report` on a
saved recording gives the same answer.

Ctrl-C or SIGTERM during the window ends it early with the answer from what
was seen so far (a second Ctrl-C aborts).

Exit codes: 0 answer given; 3 the process does not exist or exited during
the window; 4 not permitted (run as root); 6 the -o file cannot be written.
"""
from __future__ import annotations

import sys
from typing import Optional

import click

from . import history_opt
from ..errors import OutputError, UsageError
from ..sessions import history
from ..sessions.kill_preview import LiveLine, observe, parse_changes, save_output, what_if_estimates
from ..sessions.job import kill_cascade_of
from .job_options import job_options, wants_job
from .params import Number
from .redaction import redact_option, redactor_for, refuse_redact_with_job
from .target import process_target


EXAMPLES = """
\b
Examples:
  sudo pyimpact kill-preview 1234            observe 2 s, then print the impact
  sudo pyimpact kill-preview train.py        the one process running train.py
  sudo pyimpact kill-preview 1234 -d 10      watch longer (more checkpoints seen)
  sudo pyimpact kill-preview 1234 --watch 60 look 60 s with a live progress line
  sudo pyimpact kill-preview 1234 --json     the stable JSON document
  sudo pyimpact kill-preview 1234 -o k.json  also save the recording
  sudo pyimpact kill-preview 1234 --if cpus=0-1 --if nice=10
                                             what pinning or renicing would cost
"""


@click.command("kill-preview", epilog=EXAMPLES)
@process_target
@click.option("-d", "--duration", "duration_s", type=Number(0.2, 3600), default=2.0,
              show_default=True, help="Seconds to observe before answering.")
@click.option("--watch", "watch_s", type=Number(0.2, 3600), default=None,
              help="Look this many seconds instead of -d, with a live progress line on stderr "
                   "(long enough to see a save or the step rate); Ctrl-C answers early.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document instead of text.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Also save the recording here (.parquet, .json, .html; - = JSON on stdout).")
@click.option("--no-bpf", is_flag=True, help="Use /proc only (no kernel probes).")
@redact_option
@click.option("--costly-after", type=Number(0, 10**9), default=60.0, show_default=True,
              help="Lost seconds (wall, CPU or GPU) from which a kill counts as costly.")
@click.option("--if", "changes", multiple=True, metavar="CHANGE",
              help="Also estimate what a change would cost: nice=N, cpus=LIST (e.g. 0-3), cpu-quota=P% "
                   "(100% = one CPU); measured from per-thread CPU and run-queue delay. Repeatable.")
@job_options
@history_opt.option
def command(pid: int, duration_s: float, watch_s: Optional[float], as_json: bool, output: Optional[str],
            no_bpf: bool, redact: bool, costly_after: float, job: bool, hosts_file, slurm_job, via, ssh_config,
            remote_cmd, changes=(), history_db: Optional[str] = None) -> None:
    """What a kill now would lose, free and break (read-only: sends no signal).

    The process is a PID or a name (comm, program, or script: train.py);
    a name must match one process.
    """
    from ..analyse.impact.report import analyse_impact
    from ..collect.special import special_process
    from ..render.impact_view import render_impact
    from ..render.text import json_dumps

    special = special_process(pid)
    if special is not None:
        raise UsageError(special.describe("kill-preview"), "give the PID of a user-space process")
    if wants_job(job, hosts_file, slurm_job):
        refuse_redact_with_job(redact)
        jd, cascade, elapsed = kill_cascade_of(pid, hosts_file, slurm_job, via, ssh_config, remote_cmd)
        if as_json:
            click.echo(json_dumps({"schema": "pyimpact.kill-preview-job/1", "job": jd.job, "elapsed_s": elapsed,
                                   "cascade": cascade, "diagnosis": jd.to_json()}, indent=2))
        else:
            from ..render.job_view import write_cascade

            write_cascade(jd, cascade, sys.stdout)
        return
    from .output import check_output

    to_stdout = check_output(output, as_json)
    parsed = parse_changes(changes)
    hist = history.lookup(pid, history_db)
    live = LiveLine(sys.stderr, watch_s) if watch_s else None
    try:
        rec, tracer = observe(pid, watch_s or duration_s, use_bpf=not no_bpf, costly_after_s=costly_after,
                              on_sample=live, threads=bool(parsed), history_db=history_db)
    finally:
        if live is not None:
            live.done()
    rec.metadata.history = hist
    try:
        save_error = None
        red = redactor_for(rec, redact)     # one redactor: the same placeholders in view and file
        if output:   # saved before anything is rendered: a view can never lose the recording
            try:
                save_output(red.recording(rec) if red is not None else rec, output)
            except OutputError as exc:   # the answer still comes, then the error's exit code
                save_error = exc
        report = analyse_impact(rec, pid, costly_after_s=costly_after)
        what_if = what_if_estimates(rec, report, parsed, pid)
        if red is not None:
            report, what_if, hist = red.value(report), red.value(what_if), red.value(hist)
        if as_json:
            doc = report.to_dict()
            if what_if:
                doc["what_if"] = what_if
            click.echo(json_dumps(history.add(doc, hist, history_db), indent=2))
        else:
            from ..render import history_view

            render_impact(report, sys.stderr if to_stdout else sys.stdout)
            if what_if:
                from ..render.what_if_view import render_what_if

                render_what_if(what_if, sys.stderr if to_stdout else sys.stdout)
            history_view.write(hist, sys.stderr if to_stdout else sys.stdout)
        sys.stdout.flush()
        if save_error is not None:
            raise save_error
    finally:
        tracer.close()

