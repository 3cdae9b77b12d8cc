"""The recorder history of a job, for diagnose, kill-preview and report
(``--history DB``): looked up once, added to the JSON document.

Composition only: collect.history_context reads the database (or finds the
running recorder's), analyse.history.context summarises it; render.history_view
prints it.  History is an addition: a failure to read it is one note in the
answer, never the reason the answer fails.
"""
from __future__ import annotations


def lookup(pid: int, db=None, start_ticks=None, before_ns=None) -> dict:
    """The summarised history of ``pid`` (``{"available": False, "why": ...}``
    when there is none or it cannot be read)."""
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


def with_saved(doc: dict, rec) -> dict:
    """A kill preview as the live run printed it: with the history it was given."""
    return add(doc, rec.metadata.history or {})


def of_recording(rec, pids, history_db) -> dict:
    """The history of the recording's first target: looked up now when a
    database is given (or a recorder runs), else the one saved with it."""
    from ..collect.history_db import find_default_db

    saved = rec.metadata.history
    targets = list(pids) or [int(t["pid"]) for t in (rec.metadata.targets or []) if "pid" in t]
    if not targets or (saved and not history_db) or find_default_db(history_db) is None:
        return saved or lookup(targets[0] if targets else 0, history_db)
    start = rec.snapshots.get("start")
    proc = start.processes.get(targets[0]) if start is not None else None
    return lookup(targets[0], history_db, start_ticks=getattr(proc, "start_ticks", None),
                  before_ns=rec.start_ns or None)
