"""`--history DB` for diagnose, kill-preview and report: one option, one look-up.

Glue only: collect.history_context reads the database (or finds the running
recorder's), analyse.history.context summarises it, render.history_view prints it.
"""
from __future__ import annotations

import click

option = click.option("--history", "history_db", default=None, metavar="DB",
                      help="Recorder database to read this job's history from (default: a running recorder's).")


def lookup(pid: int, db=None, start_ticks=None, before_ns=None) -> dict:
    try:
        from ..analyse.history.context import summarise
        from ..collect.history_context import history_context

        return summarise(history_context(pid, db=db, start_ticks=start_ticks, before_ns=before_ns))
    except Exception as err:  # noqa: BLE001 - history is an addition: never the reason an answer fails
        return {"available": False, "why": f"history unreadable: {type(err).__name__}: {err}", "would_add": ""}


def add(doc: dict, hist: dict, history_db=None) -> dict:
    """The JSON document with its "history" key: when there is history, or it was
    asked for (a document stays as before where no recorder ever ran)."""
    if hist.get("available") or history_db:
        doc["history"] = hist
    return doc
