"""Parsers of /proc file contents: pure functions of bytes, no I/O.

ONE parser of ``stat`` lines (``parse_stat`` + ``stat_field``) serves every
reader of /proc/PID/stat and /proc/PID/task/TID/stat in the tool; the others
parse status/io/fdinfo ("Key: value"), sched, syscall and stack files.
"""
from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

PF_KTHREAD = 0x00200000  # task flag of kernel threads (stat field 9)


_PYTHON_RE = re.compile(r"^(?:python|pypy)[0-9.]*[dmu]*(?:-dbg)?$")


def parse_stat(data: bytes) -> Tuple[str, List[bytes]]:
    """(comm, fields) of a stat line; fields[0] is field 3 (state).

    comm may contain spaces and ')' so it is cut at the LAST ')'.
    """
    lp = data.index(b"(")
    rp = data.rindex(b")")
    return data[lp + 1:rp].decode("utf-8", "backslashreplace"), data[rp + 2:].split()


def stat_field(fields: List[bytes], n: int) -> int:
    """Field ``n`` (1-based, as in proc(5)) of a parsed stat line, as int."""
    return int(fields[n - 3])


def parse_argv(raw: bytes) -> List[str]:
    """NUL-separated argv of a cmdline file ([] when empty: kernel threads, zombies)."""
    return [a.decode("utf-8", "backslashreplace") for a in raw.rstrip(b"\0").split(b"\0")] if raw else []


def parse_kv(data: bytes) -> Dict[bytes, bytes]:
    """"Key:<tab>value" lines (status, io, fdinfo) into a dict of bytes."""
    out = {}
    for line in data.split(b"\n"):
        k, sep, v = line.partition(b":")
        if sep:
            out[k] = v.strip()
    return out


def kb(v: Optional[bytes]) -> Optional[int]:
    """"1792 kB" -> bytes."""
    return int(v.split()[0]) * 1024 if v else None


def hex_mask(v: Optional[bytes]) -> int:
    """Hex signal mask -> int (0 when absent)."""
    return int(v, 16) if v else 0


def split_ns(text: bytes) -> int:
    """"1805805.846515" (ms.ns as /proc/.../sched prints it) -> exact int ns."""
    ms, _, frac = text.strip().partition(b".")
    return int(ms) * 1_000_000 + int(frac[:6].ljust(6, b"0") or b"0")


def parse_sched(data: bytes) -> Tuple[Optional[int], Optional[int]]:
    """(se.exec_start, se.sum_exec_runtime) in ns from a sched file."""
    start = runtime = None
    for line in data.split(b"\n"):
        if line.startswith(b"se.exec_start"):
            start = split_ns(line.partition(b":")[2])
        elif line.startswith(b"se.sum_exec_runtime"):
            runtime = split_ns(line.partition(b":")[2])
    return start, runtime


def parse_syscall(text: str) -> Tuple[Optional[int], List[int]]:
    """(nr, args) from /proc/.../syscall: "running" -> (None, []),
    "-1 sp pc" -> (-1, []), "nr a0..a5 sp pc" -> (nr, [a0..a5])."""
    parts = text.split()
    if not parts or parts[0] == "running":
        return None, []
    nr = int(parts[0])
    if nr < 0:
        return -1, []
    return nr, [int(x, 16) for x in parts[1:7]]


def parse_stack(data: bytes) -> List[str]:
    """Kernel stack frames without the "[<0>] " address prefix."""
    out = []
    for line in data.decode("utf-8", "replace").splitlines():
        _, sep, sym = line.partition("] ")
        out.append(sym if sep else line)
    return out


def mode_of_flags(flags: int) -> str:
    """'r', 'w' or 'rw' from the O_ACCMODE bits."""
    return {os.O_RDONLY: "r", os.O_WRONLY: "w"}.get(flags & 3, "rw")


def ns_inode(link: str) -> Optional[int]:
    """"net:[4026531840]" -> 4026531840."""
    lb = link.find("[")
    return int(link[lb + 1:-1]) if lb >= 0 and link.endswith("]") else None


def looks_like_python(exe: Optional[str], cmdline: Sequence[str]) -> bool:
    """True when the executable or argv[0] is named like a Python interpreter."""
    for path in (exe or "", cmdline[0] if cmdline else ""):
        base = os.path.basename(path.replace(" (deleted)", ""))
        if base and _PYTHON_RE.match(base):
            return True
    return False
