"""Parsing of the durations, sizes and CPU lists users type (`--last 24h`, `--max-size 1GiB`, `cpus=0-3`).

One place, so every command accepts the same spellings and rejects the same
nonsense with the same one-line error (a UsageError, exit code 2).
"""
from __future__ import annotations

import re
from typing import List

from .errors import UsageError

_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h|d|w)?\s*$", re.IGNORECASE)
_DUR_UNIT = {"ms": 1e-3, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNIT = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_duration(text: str, what: str = "duration") -> float:
    """'90' (seconds), '10m', '24h', '7d' -> seconds."""
    m = _DUR.match(str(text))
    if not m:
        raise UsageError(f"invalid {what} {text!r}", "use e.g. 90s, 10m, 24h or 7d")
    return float(m.group(1)) * _DUR_UNIT[(m.group(2) or "s").lower()]


def parse_size(text: str, what: str = "size") -> int:
    """'1GiB', '500M', '4096' -> bytes (K/M/G/T are powers of 1024)."""
    m = _SIZE.match(str(text))
    if not m:
        raise UsageError(f"invalid {what} {text!r}", "use e.g. 1GiB, 500MiB or a number of bytes")
    unit = (m.group(2) or "").lower()[:1]
    return int(float(m.group(1)) * _SIZE_UNIT["" if unit == "b" else unit])


def parse_cpu_list(text: str) -> List[int]:
    """'0-3,8' -> [0, 1, 2, 3, 8] (ValueError on anything else)."""
    out: List[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            lo, hi = int(a), int(b)
            if hi < lo or hi - lo > 65536:
                raise ValueError(part)
            out.extend(range(lo, hi + 1))
        else:
            out.append(int(part))
    if not out or any(c < 0 for c in out):
        raise ValueError(text)
    return sorted(set(out))
