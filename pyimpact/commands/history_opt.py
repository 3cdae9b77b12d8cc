"""`--history DB` for diagnose, kill-preview and report: the one option.

Click glue only: the look-up and the JSON key are pyimpact.sessions.history.
"""
from __future__ import annotations

import click

option = click.option("--history", "history_db", default=None, metavar="DB",
                      help="Recorder database to read this job's history from (default: a running recorder's).")
