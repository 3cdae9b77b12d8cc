"""PostgreSQL: who blocks whom, from the server (pg_blocking_pids).

A backend waiting for a row or table lock sleeps on its latch; the kernel
shows no owner.  PostgreSQL knows: ``pg_blocking_pids(pid)`` names the
backends holding what it waits for, and ``pg_stat_activity`` what each one
does (``idle in transaction`` with the last query, a ``pg_sleep``...).  This
resolver runs one read-only query through the server's own unix socket
(found from the postmaster's listening ``.s.PGSQL.PORT``), as the OS user
the server runs as (peer authentication), with ``psql`` and a short
statement timeout.  When that fails (no psql, another auth method, no such
role), it says so and the chain stops at the backend.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any, Dict, List, Optional, Tuple

from ...snapshot import ProcessSnapshot, SystemSnapshot
from . import Resolver, exe_name

TIMEOUT_S = 4.0
QUERY = ("SELECT pid, array_to_string(pg_blocking_pids(pid), ','), coalesce(state, ''), "
         "coalesce(wait_event_type, ''), coalesce(wait_event, ''), "
         "coalesce(round(extract(epoch FROM now() - state_change))::text, ''), "
         "replace(replace(left(coalesce(query, ''), 160), chr(10), ' '), chr(9), ' ') "
         "FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")


def _socket_of(p: ProcessSnapshot, snap: SystemSnapshot) -> Optional[Tuple[str, str]]:
    """(directory, port) of the server's listening unix socket."""
    for f in p.fds:
        s = snap.sockets.get(f.inode) if f.kind == "socket" and f.inode is not None else None
        if s is not None and s.proto.startswith("unix") and s.state == "LISTEN" and ".s.PGSQL." in s.local:
            d, _, name = s.local.rpartition("/")
            return d, name.rsplit(".", 1)[-1]
    return None


def _postmasters(procs: List[ProcessSnapshot], snap: SystemSnapshot) -> List[ProcessSnapshot]:
    """The postmaster of each backend seen (read from /proc when not snapshotted)."""
    from .. import procfs

    out: Dict[int, ProcessSnapshot] = {}
    pids = {p.pid for p in procs}
    for p in procs:
        if p.ppid in pids or p.ppid in out:
            continue
        if snap.processes.get(p.ppid) is not None and exe_name(snap.processes[p.ppid]) == "postgres":
            pm = snap.processes[p.ppid]
        elif _socket_of(p, snap) is not None:
            pm = p
        else:
            try:
                pm = procfs.take_snapshot([p.ppid], tree=False, threads=False, stacks=False, holders=False,
                                          timeout_s=0.5).processes[p.ppid]
            except Exception:
                continue
            if exe_name(pm) != "postgres":
                continue
            for k, v in procfs.read_sockets(pm.pid).items():
                snap.sockets.setdefault(k, v)
        out[pm.pid] = pm
    return list(out.values())


def query(pm: ProcessSnapshot, sockdir: str, port: str) -> str:
    psql = shutil.which("psql")
    if psql is None:
        raise FileNotFoundError("psql not found")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGCONNECT_TIMEOUT": "3",
           "PGOPTIONS": "-c default_transaction_read_only=on -c statement_timeout=2000",
           "PGAPPNAME": "pyimpact", "LC_ALL": "C"}
    import pwd

    user = pwd.getpwuid(pm.uid).pw_name if pm.uid is not None else "postgres"
    res = subprocess.run([psql, "-X", "-q", "-A", "-t", "-F", "\t", "-h", sockdir, "-p", port, "-U", user,
                          "-d", "postgres", "-c", QUERY], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, timeout=TIMEOUT_S, env=env, stdin=subprocess.DEVNULL, cwd="/",
                         user=pm.uid if pm.uid is not None else None,
                         group=pwd.getpwuid(pm.uid).pw_gid if pm.uid is not None else None)
    if res.returncode != 0:
        raise PermissionError((res.stderr.strip().splitlines() or ["psql failed"])[-1][:160])
    return res.stdout


class PostgresResolver(Resolver):
    name = "postgresql"

    def owns(self, p: ProcessSnapshot) -> bool:
        return exe_name(p) == "postgres"

    def ask(self, procs: List[ProcessSnapshot], snap: SystemSnapshot) -> Dict[str, Any]:
        out: Dict[str, Any] = {"processes": {}, "notes": []}
        for pm in _postmasters(procs, snap):
            where = _socket_of(pm, snap)
            if where is None:
                out["notes"].append(f"postgresql pid {pm.pid}: no local socket found; not asked")
                continue
            try:
                text = query(pm, *where)
            except (OSError, PermissionError, subprocess.SubprocessError, KeyError) as err:
                out["notes"].append(f"postgresql pid {pm.pid}: pg_stat_activity not readable ({err}); "
                                    "the chain stops at the backend")
                continue
            rows = [line.split("\t") for line in text.splitlines() if line.count("\t") >= 6]
            info = {}
            for r in rows:
                pid, blockers, state, wtype, wevent, since, q = r[:7]
                info[int(pid)] = (blockers, state, wtype, wevent, since, q)
            for pid, (blockers, state, wtype, wevent, since, q) in info.items():
                wait = f", waiting on {wtype}/{wevent}" if wtype else ""
                words = (f"PostgreSQL (pg_stat_activity): backend {pid} is {state or '?'}"
                         + (f" for {since} s" if since else "") + wait + (f"; query: {q}" if q else ""))
                entry: Dict[str, Any] = {"evidence": words}
                bl = [int(b) for b in blockers.split(",") if b.strip().isdigit()]
                if bl:
                    b0 = info.get(bl[0])
                    what = f"{wtype.lower() or 'a'} lock" if wtype == "Lock" else "a lock"
                    entry.update(blocked_by=bl, kind="db-lock",
                                 resource=f"{what} ({wevent or '?'}) held by backend "
                                          + ", ".join(str(b) for b in bl)
                                          + (f", {b0[1]}" if b0 else ""))
                    entry["evidence"] += f"; pg_blocking_pids = {{{','.join(str(b) for b in bl)}}}"
                if state.startswith("idle"):
                    entry["work_wait"] = f"the next command from its client ({state})"
                out["processes"][pid] = entry
        return out
