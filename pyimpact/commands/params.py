"""Click parameter types shared by every command: numbers and PIDs checked
at the door.

Why not click.FloatRange: float("nan") compares false with every bound, so a
range check lets NaN through, and "inf" passes a lower bound; either then
reaches int() deep inside a run and ends in a traceback. These types accept
only finite values inside the documented range and reject everything else as
a usage error (one line, exit code 2, see pyimpact.cli).
"""
from __future__ import annotations

import math
from typing import Optional

import click

#: the kernel's largest possible pid_max (PID_MAX_LIMIT on 64-bit)
PID_MAX_LIMIT = 4194304
#: the largest pid_t: a number above it cannot name a process at all (usage
#: error); one up to it that names no process is "no such process" (exit 3)
PID_T_MAX = 2**31 - 1


def _fmt(x: float) -> str:
    """A bound as people write it: 2592000, not 2.592e+06."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


class Number(click.ParamType):
    """A finite float in [low, high]; ``low_open`` makes the lower bound
    exclusive (a duration of 0 means nothing)."""

    name = "number"

    def __init__(self, low: Optional[float] = None, high: Optional[float] = None, *,
                 low_open: bool = False, unit: str = " s"):
        self.low, self.high, self.low_open, self.unit = low, high, low_open, unit

    def _range(self) -> str:
        lo = "" if self.low is None else f"{'>' if self.low_open else '>='} {_fmt(self.low)}{self.unit}"
        hi = "" if self.high is None else f"<= {_fmt(self.high)}{self.unit}"
        return " and ".join(x for x in (lo, hi) if x)

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        else:
            text = str(value).strip()
            try:
                number = float(text)
            except ValueError:
                self.fail(f"{text!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number (give a value {self._range()})", param, ctx)
        too_low = self.low is not None and (number <= self.low if self.low_open else number < self.low)
        too_high = self.high is not None and number > self.high
        if too_low or too_high:
            self.fail(f"{value!r} is out of range (give a value {self._range()})", param, ctx)
        return number

    def __repr__(self) -> str:
        return f"Number({self._range()})"


class Pid(click.ParamType):
    """A process id: an integer from 1 to the largest pid_t. Whether such a
    process exists (above PID_MAX_LIMIT none can) is the command's answer:
    "no such process", exit code 3."""

    name = "pid"

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            pid = value
        else:
            text = str(value).strip()
            try:
                pid = int(text, 10)
            except ValueError:
                self.fail(f"{text!r} is not a process id (a positive integer)", param, ctx)
        if not 1 <= pid <= PID_T_MAX:
            self.fail(f"{value!r} is not a process id (1 to {PID_T_MAX})", param, ctx)
        return pid


PID = Pid()
