"""The signal log: every signal pyimpact sends, with time, target, reason and result.

Why a log: a stop or a suspend changes someone's job; afterwards "who sent
SIGTERM to my training at 03:12, and why?" must have an answer.  Each record
is one JSON line: time, the target's (pid, start time, name), the signal, the
reason (which command, which rule: "graceful stop: SIGTERM is caught",
"--force after 30 s grace"), and the result (sent / already exited).

Where: ``$PYIMPACT_SIGNAL_LOG`` if set, else /var/log/pyimpact/signals.jsonl
as root, else ~/.local/state/pyimpact/signals.jsonl.  The file is opened
before anything is sent (a command that cannot log does not signal), with
O_APPEND|O_NOFOLLOW and mode 0600, in a directory created 0700: a planted
symlink is refused, never followed.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import time
from typing import Callable, List, Optional

from ..errors import OutputError
from .pidfd import ProcessHandle, signal_label


def default_path() -> str:
    env = os.environ.get("PYIMPACT_SIGNAL_LOG")
    if env:
        return env
    if os.geteuid() == 0:
        return "/var/log/pyimpact/signals.jsonl"
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "pyimpact", "signals.jsonl")


class SignalLog:
    """Append-only record of the signals sent; ``echo`` gets one line per signal."""

    def __init__(self, path: Optional[str] = None, echo: Optional[Callable[[str], None]] = None,
                 command: str = ""):
        self.path = path or default_path()
        self.echo = echo
        self.command = command
        self.records: List[dict] = []
        self._fd = -1

    def open(self) -> "SignalLog":
        d = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(d, mode=0o700, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                               0o600)
        except OSError as exc:
            raise OutputError(f"cannot open the signal log {self.path}: {exc.strerror or exc}",
                              "set PYIMPACT_SIGNAL_LOG to a writable file; nothing was sent") from None
        return self

    def record(self, h: ProcessHandle, sig: int, reason: str, result: str) -> dict:
        now = time.time_ns()
        rec = {"time": _dt.datetime.fromtimestamp(now / 1e9, tz=_dt.timezone.utc).isoformat(timespec="milliseconds"),
               "t_ns": now, "pid": h.pid, "start_ticks": h.start_ticks, "comm": h.comm,
               "signal": signal_label(sig), "signo": sig, "reason": reason, "result": result,
               "command": self.command, "by_pid": os.getpid(), "by_uid": os.getuid()}
        self.records.append(rec)
        if self._fd >= 0:
            try:
                os.write(self._fd, (json.dumps(rec, ensure_ascii=True) + "\n").encode())
            except OSError:
                pass    # the record is still kept and echoed
        if self.echo is not None:
            self.echo(f"{rec['time']} {rec['signal']} -> pid {h.pid} ({h.comm}): {result}; {reason}")
        return rec

    def send(self, h: ProcessHandle, sig: int, reason: str) -> bool:
        """Send ``sig`` to ``h`` through its pidfd and log it; False if it had exited."""
        ok = h.send(sig)
        self.record(h, sig, reason, "sent" if ok else "not sent: the process had already exited")
        return ok

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "SignalLog":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()
