"""`pyimpact report FILE`: the diagnosis of a saved recording, and its story.

Postmortem: the same pure analysis a live `diagnose` runs, on a recording
written by `pyimpact trace -o` or `pyimpact diagnose -o` (.parquet or .json),
plus the timeline's story (who blocked on what and for how long, signals,
forks and exits, slow I/O, losses).  A recording written by `kill-preview -o`
or `trace --kill-preview -o` carries the kill-preview samples too; for those
the same impact analysis a live kill-preview runs is given again (with the
``--costly-after`` threshold the live run used, kept in the recording's
options).  Reads the file only; touches nothing else but ``-o``, which
converts the recording to another format (.html, .json, .parquet, .csv)
instead of printing the report.
"""
from __future__ import annotations

import sys

import click

from . import history_opt
from ..export import write_recording
from ..sessions import history
from ..sessions.report import analyse, kill_previews, load
from .params import PID
from .redaction import redact_option, redactor_for


@click.command("report")
@click.argument("file", type=str)   # checked by load(): exit code 7, not 2
@click.option("-p", "--pid", "pids", type=PID, multiple=True,
              help="Report on this process only (default: the targets and every previewed job).")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON document: the story, the diagnoses and any kill previews.")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Convert instead: write the recording as .html (page with charts), .json or .pftrace "
                   "(Perfetto), .parquet or .csv; - = JSON on stdout.")
@history_opt.option
@redact_option
def command(file, pids, as_json, output, history_db, redact):
    """Diagnose a saved recording and tell what happened during it.

    \b
    Examples:
      pyimpact report t.parquet          story + diagnosis of each target
      pyimpact report t.parquet --json
      pyimpact report t.json -p 1234     one process of a system-wide trace
      pyimpact report k.parquet          also the kill preview (kill-preview -o)
      pyimpact report t.parquet -o t.html   a self-contained page with charts
    """
    if output:
        from .output import check_output

        check_output(output, as_json)
        rec = load(file)
        red = redactor_for(rec, redact)
        path = write_recording(red.recording(rec) if red is not None else rec, output)
        click.echo(f"wrote {path}", err=True)
        return
    rec = load(file)
    story, diagnoses = analyse(rec, pids)
    impacts, skipped = kill_previews(rec, pids)
    hist = history.of_recording(rec, pids, history_db)
    red = redactor_for(rec, redact)
    if red is not None:
        story, diagnoses, impacts, skipped, hist = (red.value(story), red.value(diagnoses), red.value(impacts),
                                                    red.value(skipped), red.value(hist))
        file = red.text(file)
    if as_json:
        from ..render.text import json_dumps

        doc = {"schema": "pyimpact.report/1", "file": file, "story": story.to_dict(),
               "diagnoses": [d.to_json() for d in diagnoses],
               "kill_preview": [history.with_saved(r.to_dict(), rec) for r in impacts],
               "kill_preview_skipped": skipped}
        history.add(doc, hist, history_db)
        sys.stdout.write(json_dumps(doc, indent=2) + "\n")
        sys.stdout.flush()
        return
    from ..render.report_view import write

    write(story, diagnoses, sys.stdout, impacts, skipped)
    from ..render import history_view

    history_view.write(hist, sys.stdout)

