"""The ``--redact`` option shared by trace, diagnose, kill-preview and report.

Click glue only: the work is ``pyimpact.export.redact.Redactor``, built once
per command from the recording, so the terminal view, ``--json`` and the
``-o`` file all carry the same placeholders.
"""
from __future__ import annotations

import click

HELP = ("Replace command lines and paths (argv, executables, files, cwd) with "
        "placeholders (<arg-N>, <path-N>) in every output: terminal, --json and -o.")


def redact_option(f):
    return click.option("--redact", is_flag=True, help=HELP)(f)


def redactor_for(rec, enabled: bool):
    """The Redactor of ``rec``, or None when --redact was not given (export
    and pandas are imported only when it was)."""
    if not enabled:
        return None
    from ..export.redact import redactor_for as build

    return build(rec, enabled)


def refuse_redact_with_job(redact: bool) -> None:
    """The whole-job views (--job, several nodes) are not redacted yet: refuse
    rather than print command lines the user asked to hide."""
    if redact:
        from ..errors import UsageError

        raise UsageError("--redact does not apply to --job views yet", "drop --job, or --redact")
