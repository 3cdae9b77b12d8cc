"""Ask well-known servers, read-only, what the kernel cannot show.

Where a wait-for chain ends inside a server (a PostgreSQL backend sleeping
on its lock semaphore, a Redis connection with nothing to read), the server
itself knows who waits for whom.  Each resolver here is small, optional and
read-only, behind one interface (``Resolver``): it picks the processes it
knows from the snapshots, asks its server, and returns facts keyed by pid:

    {"processes": {pid: {"evidence": str, "blocked_by": [pid], "kind": str,
                         "resource": str, "work_wait": str}},
     "notes": [str]}          # what could not be asked, and why

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
    from .postgres import PostgresResolver
    from .redis import RedisResolver

    return [PostgresResolver(), RedisResolver()]


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
    out: Dict[str, Any] = {"processes": {}, "notes": []}
    for r in only if only is not None else resolvers():
        mine = [p for p in merged.processes.values() if p.state not in ("Z", "X") and r.owns(p)]
        if not mine:
            continue
        try:
            ans = r.ask(mine, merged)
        except Exception as err:  # a resolver's trouble never stops a diagnosis
            out["notes"].append(f"{r.name}: not asked ({type(err).__name__}: {err})")
            continue
        for pid, info in (ans.get("processes") or {}).items():
            cur = out["processes"].setdefault(str(pid), {})
            if cur.get("evidence") and info.get("evidence"):
                info = dict(info, evidence=cur["evidence"] + "; " + info["evidence"])
            cur.update(info)
        out["notes"].extend(ans.get("notes") or [])
    return out
