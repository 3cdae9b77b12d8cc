"""What `pyimpact diagnose` does with a verdict once the session has it:
redact it (one redactor: the same placeholders in view, JSON and file), save
the recording before anything is rendered (a view can never lose it), then
print the human view or the JSON document.

``one``: one process (pyimpact.sessions.observe.observe); ``machine``: every
tree (``--all``, observe_all); ``show_job``: the merged job diagnosis of
``--job``.  Streams are passed in, so the commands stay click glue.
"""
from __future__ import annotations

import sys
from typing import Optional

from ..errors import PyimpactError
from ..export import write_recording
from . import history
from .observe import observe, observe_all


def redactor_for(rec, enabled: bool):
    """The Redactor of ``rec``, or None (export.redact imported only when asked)."""
    if not enabled:
        return None
    from ..export.redact import redactor_for as build

    return build(rec, enabled)


def one(pid: int, *, window: float, use_bpf: bool, python_stacks: bool, local_values: bool, as_json: bool,
        output: Optional[str], to_stdout: bool, redact: bool, hist: dict, history_db=None) -> dict:
    """Diagnose ``pid`` and show the verdict (before the probes are detached);
    {"path": saved file} or {"error": PyimpactError of the save}, raised by
    the caller once the answer is out; "timings": the time-to-verdict marks ("probe_timings": the probes' own)."""
    saved: dict = {}

    def show(d, rec) -> None:
        rec.metadata.history = hist
        red = redactor_for(rec, redact)     # one redactor: the same placeholders in view and file
        if output:   # saved before anything is rendered: a view can never lose the recording
            try:
                saved["path"] = write_recording(red.recording(rec) if red is not None else rec, output)
            except PyimpactError as exc:   # the answer still comes, then the error's exit code
                saved["error"] = exc
        shown = hist
        if red is not None:
            d, shown = red.value(d), red.value(hist)
        if as_json:
            from ..render.text import json_dumps

            sys.stdout.write(json_dumps(history.add(d.to_json(), shown, history_db), indent=2) + "\n")
            sys.stdout.flush()
        else:
            from ..render import history_view
            from ..render.diagnose_view import write

            write(d, sys.stderr if to_stdout else sys.stdout)
            history_view.write(shown, sys.stderr if to_stdout else sys.stdout)

    _, rec = observe(pid, window=window, use_bpf=use_bpf, python_stacks=python_stacks, on_verdict=show,
                     local_values=local_values)
    saved["timings"] = rec.metadata.diagnose_timings_s or {}
    saved["probe_timings"] = dict(rec.metadata.probe_timings or {})
    return saved


def show_job(jd, elapsed: float, as_json: bool, out=None) -> None:
    """The job diagnosis of ``--job``: its JSON document or its view."""
    out = out or sys.stdout
    if as_json:
        from ..render.text import json_dumps

        doc = jd.to_json()
        doc["elapsed_s"] = elapsed
        out.write(json_dumps(doc, indent=2) + "\n")
    else:
        from ..render.job_view import write

        write(jd, out, elapsed)


def machine(*, window: float, as_json: bool, use_bpf: bool, python_stacks: bool, output: Optional[str],
            to_stdout: bool, redact: bool = False) -> Optional[str]:
    """``diagnose --all``: every process tree in one window, a row per
    unhealthy tree; the path the recording was saved to, if ``output``."""
    reds = []

    def show(r, rec) -> None:
        reds.append(redactor_for(rec, redact))
        if reds[0] is not None:
            r = reds[0].value(r)
        if as_json:
            import json

            sys.stdout.write(json.dumps(r.to_json(), indent=2, default=str) + "\n")
            sys.stdout.flush()
        else:
            from ..render.diagnose_all_view import write

            write(r, sys.stderr if to_stdout else sys.stdout)

    _, _, rec = observe_all(window=window, use_bpf=use_bpf, python_stacks=python_stacks, on_verdict=show)
    if not output:
        return None
    if redact:
        rec = (reds[0] if reds else redactor_for(rec, True)).recording(rec)
    return write_recording(rec, output)
