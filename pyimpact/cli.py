"""The `pyimpact` command line: a click group whose commands live one per module
in pyimpact/commands/, each exposing a click command named `command`.

This is the one boundary where errors meet the user: a PyimpactError (or a
psutil process error) becomes `pyimpact: <one line>` on stderr and its exit
code; only a real bug shows a traceback. Exit codes are listed in
pyimpact/errors.py and the README.
"""
from __future__ import annotations

import importlib
import sys
import textwrap

import click
import psutil

from . import __version__
from .errors import NotPermitted, ProcessGone, PyimpactError, UsageError

COMMANDS = {
    "trace": "pyimpact.commands.trace",
    "diagnose": "pyimpact.commands.diagnose",
    "kill-preview": "pyimpact.commands.kill_preview",
    "report": "pyimpact.commands.report",
    "demo": "pyimpact.commands.demo",
    "stop": "pyimpact.commands.stop",
    "suspend": "pyimpact.commands.suspend",
    "resume": "pyimpact.commands.resume",
    "record": "pyimpact.commands.record",
    "orphans": "pyimpact.commands.orphans",
    "gpu-report": "pyimpact.commands.gpu_report",
    "diagnose-node": "pyimpact.commands.diagnose_job",
    "trace-node": "pyimpact.commands.trace_job",
}


class LazyGroup(click.Group):
    """Imports a command's module only when it runs (startup time matters for
    time-to-verdict: pandas and bcc load only where needed)."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        module = COMMANDS.get(name)
        if module is None:
            return None
        try:
            return importlib.import_module(module).command
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            return None  # a command not built in this checkout


def exit_code_lines() -> list:
    """(code, meaning) pairs from pyimpact/errors.py's docstring: the one list
    of exit codes, which --help shows and the README repeats (a test checks)."""
    from . import errors

    body = errors.__doc__.split("Exit codes", 1)[1].split("\n", 1)[1]
    pairs = []
    for line in body.splitlines():
        head = line.strip().split(None, 1)
        if head and head[0].isdigit():
            pairs.append([head[0], head[1] if len(head) > 1 else ""])
        elif head and pairs:
            pairs[-1][1] += " " + line.strip()
    return [tuple(p) for p in pairs]


#: shown under the group's --help (\b keeps click from rewrapping the table)
EXIT_CODES = "\n\b\nExit codes:\n" + "\n".join(
    textwrap.fill(text, 78, initial_indent=f"  {code:<4} ", subsequent_indent=" " * 7)
    for code, text in exit_code_lines()) + """
\b
Shell completion (bash; zsh and fish alike, see README):
  eval "$(_PYIMPACT_COMPLETE=bash_source pyimpact)"
"""


@click.group(cls=LazyGroup, epilog=EXIT_CODES,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 80})
@click.version_option(__version__, "-V", "--version", prog_name="pyimpact",
                      message="%(prog)s %(version)s")
def cli():
    """Why is this process stuck, and what do I lose if I kill it now?

    \b
    Examples:
      sudo pyimpact diagnose 1234           what each thread waits for, and the root cause
      sudo pyimpact diagnose train.py       the same, the process found by name
      sudo pyimpact kill-preview 1234       what a kill would lose, free and break
      sudo pyimpact trace -p 1234 -o t.json record; open t.json in ui.perfetto.dev
      pyimpact report t.parquet             the same analysis on a saved recording
    """


def error_line(message: str) -> None:
    """One line on stderr, prefixed, with control characters stripped."""
    from .text import clean

    click.echo(f"pyimpact: {clean(message)}", err=True)


def main(argv=None) -> int:
    try:
        cli.main(args=argv, prog_name="pyimpact", standalone_mode=False)
        return 0
    except PyimpactError as err:
        error_line(err.one_line())
        return err.exit_code
    except psutil.NoSuchProcess as err:
        error_line(ProcessGone(f"no such process: {err.pid}").one_line())
        return ProcessGone.exit_code
    except psutil.AccessDenied as err:
        error_line(NotPermitted(f"cannot read process {err.pid}", "run as root").one_line())
        return NotPermitted.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        # One line, like every other error: the message and where to look.
        where = f"see '{exc.ctx.command_path} --help'" if exc.ctx is not None else "see 'pyimpact --help'"
        error_line(f"{exc.format_message()} ({where})")
        return UsageError.exit_code
    except click.ClickException as exc:
        error_line(exc.format_message())
        return exc.exit_code
    except click.exceptions.Abort:
        error_line("interrupted")
        return 130
    except KeyboardInterrupt:
        error_line("interrupted")
        return 130
    except BrokenPipeError:
        return 0


def entry() -> None:
    sys.exit(main())
