"""Translating the pids a process names into host pids (pure).

A process in a PID namespace (a container, `unshare --pid`) names pids of its
own namespace: `wait4(2)` there waits for the namespace's pid 2, not for the
host's kthreadd. The snapshot carries, per namespace other than the one it
was read in, the table ns pid -> host pid built from NSpid
(``pyimpact.collect.pidns``); this module looks values up in it and says
when a pid cannot be translated, so that no process outside the namespace
is ever blamed for it.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from ..snapshot import ProcessSnapshot, SystemSnapshot


def foreign(snap: Optional[SystemSnapshot], p: ProcessSnapshot) -> bool:
    """True when ``p`` lives in a PID namespace other than the snapshot's own."""
    if p.pidns is None or len(p.nspid) < 2:
        return False
    own = snap.own_pidns if snap is not None else None
    return own is None or p.pidns != own


def table(snap: Optional[SystemSnapshot], p: ProcessSnapshot) -> Optional[Dict[str, Any]]:
    """The translation table of ``p``'s namespace, None if it was not read."""
    if snap is None or p.pidns is None:
        return None
    return snap.pid_namespaces.get(p.pidns)


def to_host(snap: Optional[SystemSnapshot], p: ProcessSnapshot, value: int) -> Tuple[Optional[int], str]:
    """(host pid, evidence) for a pid or TID ``value`` that process ``p``
    names. Same namespace as ours: (value, ""). In another namespace: the
    host pid and a line saying so, or (None, why it cannot be translated)."""
    if not foreign(snap, p):
        return value, ""
    where = f"the PID namespace of pid {p.pid} (where it is pid {p.nspid[-1]})"
    t = table(snap, p)
    if t is None:
        return None, f"pid {value} is a pid of {where}, whose processes could not be read: not translated"
    host = t.get("to_host", {}).get(int(value))
    if host is None:
        return None, (f"pid {value} is a pid of {where}, and no process of that namespace has it "
                      f"(NSpid): not translated")
    return int(host), f"pid {value} in {where} is host pid {host} (NSpid)"


def namespace_init(snap: Optional[SystemSnapshot], p: ProcessSnapshot) -> bool:
    """True when ``p`` is the init (pid 1) of a PID namespace other than ours:
    when it dies the kernel kills every other process of that namespace."""
    return foreign(snap, p) and p.nspid[-1] == 1


def namespace_members(snap: Optional[SystemSnapshot], p: ProcessSnapshot) -> list:
    """Host pids of the processes in ``p``'s namespace (empty if unknown)."""
    t = table(snap, p)
    return list(t.get("members", [])) if t else []
