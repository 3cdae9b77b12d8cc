"""Ask well-known servers, read-only, what the kernel cannot show.

Where a wait-for chain ends inside a server (a PostgreSQL backend sleeping
on its lock semaphore, a Redis connection with nothing to read), the server
itself knows who waits for whom.  Each resolver here is small, optional and
read-only, behind one interface (``Resolver``): it picks the processes it
knows from the snapshots, asks its server, and returns facts keyed by pid:

    {"processes": {pid: {"evidence": str, "blocked_by": [pid], "kind": str,
                         "resource": str, "work_wait": str}},
     "threads": {tid: {...the same keys..., "pid": pid, "blocked_by_tids": [tid]}},
     "notes": [str]}          # what could not be asked, and why

A process key is whatever holds one session: a PostgreSQL backend, or the
client process of a connection to a threaded server; a thread key is the
server thread serving one connection (MySQL/MariaDB).  ``blocked_by`` names
the processes holding what that session waits for (the answer to "who blocks
this connection"), ``blocked_by_tids`` the server threads when the blocking
session's process is not known.

``pyimpact.analyse.hang.waitgraph.server_edges`` turns these into edges and
evidence.  A resolver that cannot reach its server says so in ``notes`` and
the chain stops at the kernel-visible root.  Collect layer: no decisions.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from ...snapshot import ProcessSnapshot, SystemSnapshot


class Resolver:
    """One kind of server: which processes are its, and what it says about them."""

    name = "server"

    def owns(self, p: ProcessSnapshot) -> bool:
        raise NotImplementedError

    def ask(self, procs: List[ProcessSnapshot], snap: SystemSnapshot) -> Dict[str, Any]:
        raise NotImplementedError


def exe_name(p: ProcessSnapshot) -> str:
    import os

    return os.path.basename(p.exe or (p.cmdline[0] if p.cmdline else "") or p.name)


def resolvers() -> List[Resolver]:
    from .mysql import MysqlResolver
    from .postgres import PostgresResolver
    from .redis import RedisResolver

    return [PostgresResolver(), RedisResolver(), MysqlResolver()]


def ask_servers(snaps: List[Optional[SystemSnapshot]], only: Optional[List[Resolver]] = None) -> Dict[str, Any]:
    """Run every resolver whose server has a process in ``snaps`` (merged)."""
    merged = SystemSnapshot()
    for s in snaps:
        if s is None:
            continue
        merged.processes.update(s.processes)
        for k, v in s.sockets.items():
            merged.sockets.setdefault(k, v)
        for k, v in s.inode_holders.items():
            merged.inode_holders.setdefault(k, v)
    import time

    out: Dict[str, Any] = {"processes": {}, "threads": {}, "notes": [], "timings_s": {}}
    for r in only if only is not None else resolvers():
        mine = [p for p in merged.processes.values() if p.state not in ("Z", "X") and r.owns(p)]
        if not mine:
            continue
        t0 = time.monotonic()
        try:
            ans = r.ask(mine, merged)
        except Exception as err:  # a resolver's trouble never stops a diagnosis
            out["notes"].append(f"{r.name}: not asked ({type(err).__name__}: {err})")
            continue
        finally:
            out["timings_s"][r.name] = round(time.monotonic() - t0, 4)
        for key in ("processes", "threads"):
            for ident, info in (ans.get(key) or {}).items():
                cur = out[key].setdefault(str(ident), {})
                if cur.get("evidence") and info.get("evidence"):
                    info = dict(info, evidence=cur["evidence"] + "; " + info["evidence"])
                cur.update(info)
        out["notes"].extend(ans.get("notes") or [])
    return out
