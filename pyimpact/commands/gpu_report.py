"""`pyimpact gpu-report`: GPU use per process / job / user from the recorder's history.

Glue: find the history database, read the period's samples
(pyimpact.collect.gpu_history), analyse them (pyimpact.analyse.history.gpu_usage),
print text or --json, and with -o write an HTML page with the chart.

Exit codes: 0 report given; 2 bad option or share file syntax; 6 -o cannot be
written; 7 no history database (or it cannot be read).
"""
from __future__ import annotations

import os
import sys
import time

import click

from ..errors import InputError, UsageError
from ..render.text import json_dumps
from .params import Number

DEFAULT_SHARES = "/etc/pyimpact/gpu-shares.conf"

EXAMPLES = """
\b
Examples:
  pyimpact gpu-report                        last 24 h, by job
  pyimpact gpu-report --last 7d --by user
  pyimpact gpu-report --by process --json
  pyimpact gpu-report -o report.html         with the utilisation/memory chart
  pyimpact gpu-report --shares shares.conf   lines like: user alice 30% of gpu 0
"""


@click.command("gpu-report", epilog=EXAMPLES)
@click.option("--last", default="24h", show_default=True, help="The period, up to now (e.g. 90m, 24h, 7d).")
@click.option("--by", type=click.Choice(["process", "job", "user"]), default="job", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (schema pyimpact.gpu-report/1).")
@click.option("-o", "--output", default=None, help="Also write an HTML page with the chart (.html).")
@click.option("--history", "history_db", default=None, help="Recorder database (default: the running recorder's).")
@click.option("--shares", "shares_path", default=None,
              help=f"Fair-share file (default {DEFAULT_SHARES} if it exists).")
@click.option("--hog-pct", type=Number(0, 100, unit=" %"), default=80.0, show_default=True,
              help="Utilisation from which a holder is a hog...")
@click.option("--hog-for", default="10m", show_default=True, help="...when it lasts longer than this.")
@click.option("--idle-pct", type=Number(0, 100, unit=" %"), default=2.0, show_default=True,
              help="Utilisation up to which a memory holder is idle...")
@click.option("--idle-for", default="1h", show_default=True, help="...when it lasts longer than this.")
def command(last, by, as_json, output, history_db, shares_path, hog_pct, hog_for, idle_pct, idle_for):
    """GPU-seconds, VRAM-hours and peak VRAM per GPU and per holder; hogs,
    idle holders and fair-share violations, each with a recommendation."""
    from ..analyse.history.gpu_usage import Thresholds, analyse_usage, parse_shares
    from ..collect.gpu_history import read_usage
    from ..collect.history_db import HistoryReader, find_default_db
    from ..units import parse_duration

    period_s = parse_duration(last, "--last")
    th = Thresholds(hog_pct=hog_pct, hog_s=parse_duration(hog_for, "--hog-for"), idle_pct=idle_pct,
                    idle_s=parse_duration(idle_for, "--idle-for"))
    if output:
        if not output.lower().endswith(".html"):
            raise UsageError(f"cannot write {output}: the report is written as .html", "give -o a FILE.html")
        from ..export.atomic import check_output_path

        check_output_path(output)
    shares = []
    path = shares_path or (DEFAULT_SHARES if os.path.isfile(DEFAULT_SHARES) else None)
    if path:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                shares = parse_shares(f.read())
        except OSError as err:
            raise InputError(f"cannot read the share file {path}: {err.strerror}",
                             "check the path and its permissions") from None
        except ValueError as err:
            raise UsageError(f"bad share file {path}: {err}",
                             "see `pyimpact gpu-report --help` for the share file's format") from None
    db = find_default_db(history_db)
    if db is None:
        raise InputError("no history to report on: no recorder database found",
                         "start one with: sudo pyimpact record (or give --history DB)")
    end_ns = time.time_ns()
    with HistoryReader(db) as reader:
        data = read_usage(reader, end_ns - int(period_s * 1e9), end_ns)
    report = analyse_usage(data, by=by, thresholds=th, shares=shares)
    if as_json:
        doc = report.to_dict()
        doc["history"] = db
        sys.stdout.write(json_dumps(doc, indent=2) + "\n")
    else:
        from ..render.gpu_report_view import write

        write(report, sys.stdout)
    if output:
        from ..export.gpu_chart import write_html

        write_html(report, output)
        click.echo(f"report written to {output}", err=True)
