"""User-facing errors: each carries its exit code and the fix the user should try.

The CLI catches `PyimpactError` at one place and prints `pyimpact: <message>`
plus the hint on one line, never a traceback. Process errors reuse psutil's
classes (NoSuchProcess, AccessDenied, ZombieProcess) inside the collectors and
are mapped to these at the command boundary.

Exit codes (documented in the README):
  0  success
  1  internal error (a bug: please report it)
  2  usage error (bad option or argument; an unknown -o format; a name that
     several processes match; a kernel thread or init given to diagnose /
     kill-preview, which do not apply to them)
  3  no such process (or none has that name), or it exited before an answer
     could be given
  4  permission denied (not root)
  5  BPF unavailable (no bcc, BPF not permitted, no headers, no tracefs)
  6  output path cannot be written
  7  input file cannot be read (report)
  8  an action was not carried out: declined at the prompt, a wait that gave up,
     or processes still running after the grace period (stop, suspend, resume)
  130 interrupted before anything could be shown
"""
from __future__ import annotations


class PyimpactError(Exception):
    """An error the user can act on."""

    exit_code = 1

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(PyimpactError):
    exit_code = 2


class ProcessGone(PyimpactError):
    exit_code = 3


class NotPermitted(PyimpactError):
    exit_code = 4


class BPFUnavailable(PyimpactError):
    exit_code = 5


class OutputError(PyimpactError):
    exit_code = 6


class InputError(PyimpactError):
    exit_code = 7


class NotInRecording(InputError):
    """The analysis was asked about a process the recording holds no snapshot of (or names no target at all).

    One class for the condition, raised by the pure analyses (``analyse.hang.diagnose``,
    ``analyse.impact.report``); each command decides what it means there (a live target that exited: ProcessGone;
    a saved recording: this error, exit code 7)."""

    DEFAULT_HINT = "pass a pid the recording observed (see its targets), or record that process"

    def __init__(self, message: str, hint: str = DEFAULT_HINT):
        super().__init__(message, hint)


class NotDone(PyimpactError):
    """An action command did not do (all of) what it was asked."""

    exit_code = 8


class Interrupted(PyimpactError):
    """Ctrl-C (or SIGTERM) ended a command; the message says what was and was not done."""

    exit_code = 130
