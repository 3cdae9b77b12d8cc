"""The one set of formatters for durations and byte counts (base layer).

Every view, exporter and analysis sentence formats sizes and times through
these, so "1.5 GiB" and "12.3 s" read the same everywhere; each style below
has one job (prose, table cell, age) rather than each module having its own.
"""
from __future__ import annotations

from typing import Optional


def human_bytes(n) -> str:
    if n is None:
        return "?"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_duration(seconds) -> str:
    if seconds is None:
        return "?"
    s = float(seconds)
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def compact_bytes(n) -> str:
    """'304M', '15.2M', '2.1G': for table cells."""
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if abs(n) < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "B" or n >= 100 else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.0f}T"


def compact_age(s) -> str:
    """'45s', '12m', '3.5h', '9d': an age for table cells."""
    if s is None:
        return "-"
    s = float(s)
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s / 60:.0f}m"
    if s < 86400 * 2:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.0f}d"


def words_duration(s: Optional[float]) -> str:
    """A duration in the analysis' sentences ("850 ms", "12.3 s", "4 min")."""
    if s is None:
        return "?"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def seconds(s, digits: int = 1, width: int = 0, sep: str = " ") -> str:
    """'12.3 s' at a fixed precision: a figure read beside its neighbours (a
    window, a cadence, a grace period, a timeline offset), so it keeps its unit
    where human_duration would switch to minutes.  ``width`` pads the number
    (a ticking status line keeps its place); ``sep=""`` gives the cell form '45s'."""
    return f"{float(s):{width}.{digits}f}{sep}s"


def millis(ms, digits: int = 1, signed: bool = False) -> str:
    """'1.5 ms' (or '+1.5 ms' with ``signed``: a clock offset) from milliseconds."""
    return f"{float(ms):{'+' if signed else ''}.{digits}f} ms"


def ns_millis(ns, digits: int = 1, signed: bool = False) -> str:
    """'1.5 ms' from nanoseconds."""
    return millis(ns / 1e6, digits, signed)


def utc_datetime(ns):
    """The UTC datetime of a wall-clock time in nanoseconds since the epoch."""
    import datetime as _dt

    return _dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.timezone.utc)


def utc_time(ns, fmt: str = "%H:%M:%S") -> str:
    """A wall-clock time in nanoseconds since the epoch, in UTC, as ``fmt``."""
    return utc_datetime(ns).strftime(fmt)


def minutes(s, digits: int = 0) -> str:
    """'12 min' at a fixed precision (a stall the reader compares with a timeout)."""
    return f"{float(s) / 60:.{digits}f} min"


def hours_figure(s, digits: int = 1) -> str:
    """Seconds as a number of hours, without a unit ('3.25'): for GPU-hours and
    CPU-hours cells and sentences that name their unit themselves."""
    return f"{float(s) / 3600:.{digits}f}"
