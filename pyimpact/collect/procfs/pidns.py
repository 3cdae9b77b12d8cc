"""PID namespaces: which namespace each snapshotted process is in, and how the
pids it names translate to host pids.

Why: a process in a container (or `unshare --pid`) sees pids of its own
namespace. The pids it *names* -- a syscall argument (`wait4(42)`, `waitid`),
the owner TID glibc stores in a pthread mutex, the TID in a PI or robust
futex word -- are namespace pids, while everything pyimpact reads from the
host's /proc (and the probes) is a host pid. Taking one for the other blames
an unrelated process. The kernel gives the mapping in `NSpid:` of
/proc/PID/task/TID/status (the host pid first, the innermost namespace's
last), so for each namespace a snapshotted process lives in (other than
ours) we read NSpid of every task of every process in it (the processes
whose /proc/PID/ns/pid is that namespace) and store ns pid -> host pid.

This module only reads /proc and fills the snapshot's fields
(`ProcessSnapshot.pidns` / `nspid`, `SystemSnapshot.own_pidns` /
`pid_namespaces`); the analysis translates with `pyimpact.analyse.pidns`.
Processes of namespaces nested deeper inside that namespace are not in the
table: a pid naming one of them is reported as not translatable.

Not translated because already host pids: /proc/locks (the kernel prints
lock holders in the pid namespace of the procfs being read, ours), the
socket and pipe holders (found through our /proc), and the probes' events.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional

import psutil

from .boundary import PROC, read, sys_call
from .tree import all_pids

_GONE = (psutil.Error, OSError)


def _ns_inode(pid: int) -> Optional[int]:
    try:
        return sys_call(pid, os.stat, f"{PROC}/{pid}/ns/pid").st_ino
    except _GONE:
        return None


def own_pidns() -> Optional[int]:
    """The PID namespace this process (and so the /proc it reads) lives in."""
    try:
        return sys_call(os.getpid(), os.stat, f"{PROC}/self/ns/pid").st_ino
    except _GONE:
        return None


def read_nspid(pid: int, tid: Optional[int] = None) -> List[int]:
    """NSpid of a process (or one of its threads): [host pid, ..., innermost pid];
    empty when unreadable."""
    path = f"{PROC}/{pid}/status" if tid is None else f"{PROC}/{pid}/task/{tid}/status"
    try:
        for line in read(path, pid if tid is None else tid).split(b"\n"):
            if line.startswith(b"NSpid:"):
                return [int(x) for x in line.split()[1:]]
    except (psutil.Error, OSError, ValueError):
        pass
    return []


def read_namespace(ns: int, level: int) -> Dict:
    """The translation table of the PID namespace with inode ``ns``, whose own
    pids are at index ``level`` of NSpid: every task of every process directly
    in it. Returns {"level", "to_host": {ns pid: host pid}, "members": [host
    pids of its processes], "init": host pid of its pid 1 or None}."""
    to_host: Dict[int, int] = {}
    members: List[int] = []
    init: Optional[int] = None
    try:
        pids = all_pids()
    except OSError:
        pids = []
    for pid in pids:
        if _ns_inode(pid) != ns:
            continue
        members.append(pid)
        try:
            tids = [int(t) for t in sys_call(pid, os.listdir, f"{PROC}/{pid}/task") if t.isdigit()]
        except _GONE:
            tids = [pid]
        for tid in tids:
            nspid = read_nspid(pid, tid)
            if len(nspid) > level:
                to_host[nspid[level]] = nspid[0]
                if nspid[level] == 1:
                    init = nspid[0]
    return {"level": level, "to_host": to_host, "members": sorted(members), "init": init}


def annotate(snap, errors=None) -> None:
    """Fill the PID namespace fields of ``snap`` (a SystemSnapshot) and the
    tables of the namespaces its processes live in, other than ours."""
    own = own_pidns()
    snap.own_pidns = own
    levels: Dict[int, int] = {}
    for p in snap.processes.values():
        p.pidns = _ns_inode(p.pid)
        p.nspid = read_nspid(p.pid)
        if p.pidns is None or p.pidns == own or not p.nspid:
            continue
        levels.setdefault(p.pidns, len(p.nspid) - 1)
    for ns, level in levels.items():
        if ns in snap.pid_namespaces:
            continue
        try:
            snap.pid_namespaces[ns] = read_namespace(ns, level)
        except Exception as err:  # a table that cannot be read only leaves pids untranslated
            if errors is not None:
                errors.add("host", f"PID namespace {ns} unreadable", err)
