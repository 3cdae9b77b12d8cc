"""Machine-wide scan of the allow-listed environment (finding a job's ranks)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional

import psutil

from ...snapshot import env_key_allowed
from .boundary import PROC, ErrorNotes, read, run_bounded, sys_call
from .parse import ns_inode, parse_stat, stat_field
from .tree import all_pids


def allowed_environ(raw: bytes, errors: str = "backslashreplace") -> Dict[str, str]:
    """The allow-listed (``env_key_allowed``) variables of an environ file;
    ``errors`` is how undecodable bytes are decoded."""
    env = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            key = k.decode("utf-8", errors)
            if env_key_allowed(key):
                env[key] = v.decode("utf-8", errors)
    return env

@dataclass
class EnvironEntry:
    """A process's allow-listed environment, parent and network namespace."""

    pid: int
    ppid: int
    netns: Optional[int]
    env: Dict[str, str]


def scan_environ(pids: Optional[Iterable[int]] = None, *, timeout_s: float = 1.0) -> List[EnvironEntry]:
    """The allow-listed environment (``env_key_allowed``) of many processes,
    for finding the ranks of a job by its rendezvous keys.

    Reading ``environ`` takes the process's mmap lock, so the reads run on the
    bounded workers: a stuck process costs at most ``timeout_s`` and is left out.
    Processes that vanish, deny or have no allow-listed key are left out.
    """
    items = list(pids) if pids is not None else all_pids()

    def one(pid: int, errs: ErrorNotes, holder: Dict[str, Any]) -> Optional[EnvironEntry]:
        env = allowed_environ(read(f"{PROC}/{pid}/environ", pid), "replace")
        if not env:
            return None
        _, fields = parse_stat(read(f"{PROC}/{pid}/stat", pid))
        try:
            netns = ns_inode(sys_call(pid, os.readlink, f"{PROC}/{pid}/ns/net"))
        except (psutil.Error, OSError):
            netns = None
        return EnvironEntry(pid=pid, ppid=stat_field(fields, 4), netns=netns, env=env)

    slots = run_bounded(one, items, time.monotonic_ns() + int(timeout_s * 1e9), workers=4)
    return [s.result for s in slots if s.done and s.error is None and s.result is not None]
