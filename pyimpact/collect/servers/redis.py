"""Redis: which connections are blocked in a blocking command (CLIENT LIST).

A client in BLPOP/BRPOP/XREAD BLOCK/WAIT sleeps in recv() on a healthy,
idle server: the kernel sees only "the server has nothing to send".  Redis
says which command each connection runs and whether it is blocked
(``flags=b``); this resolver asks it over its own listening address with
one inline ``CLIENT LIST`` (read-only) and maps each connection back to the
client process holding the socket.  Without access (AUTH required, a
``rename-command``) it says so.
"""
from __future__ import annotations

import socket
from typing import Any, Dict, List, Optional, Tuple

from ...snapshot import ProcessSnapshot, SystemSnapshot
from . import Resolver, exe_name

TIMEOUT_S = 2.0


def _listen_addr(p: ProcessSnapshot, snap: SystemSnapshot) -> Optional[Tuple[str, Any]]:
    for f in p.fds:
        s = snap.sockets.get(f.inode) if f.kind == "socket" and f.inode is not None else None
        if s is None or s.state != "LISTEN":
            continue
        if s.proto.startswith("unix") and s.local:
            return "unix", s.local
        if s.proto.startswith("tcp"):
            host, _, port = s.local.rpartition(":")
            host = host.strip("[]")
            if host in ("0.0.0.0", "*"):
                host = "127.0.0.1"
            elif host == "::":
                host = "::1"
            return "tcp", (host, int(port))
    return None


def client_list(kind: str, addr: Any) -> str:
    fam = socket.AF_UNIX if kind == "unix" else (socket.AF_INET6 if ":" in addr[0] else socket.AF_INET)
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(TIMEOUT_S)
        s.connect(addr)
        s.sendall(b"CLIENT LIST\r\n")
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            if buf.startswith(b"-") and buf.endswith(b"\r\n"):
                break
            if buf.startswith(b"$"):
                head, _, rest = buf.partition(b"\r\n")
                if len(rest) >= int(head[1:]) + 2:
                    break
        s.sendall(b"QUIT\r\n")
    if buf.startswith(b"-"):
        raise PermissionError(buf[1:].strip().decode("utf-8", "replace")[:120])
    _, _, body = buf.partition(b"\r\n")
    return body.decode("utf-8", "replace")


def parse_client_list(text: str) -> List[Dict[str, str]]:
    out = []
    for line in text.splitlines():
        kv = dict(part.split("=", 1) for part in line.split(" ") if "=" in part)
        if kv.get("addr"):
            out.append(kv)
    return out


class RedisResolver(Resolver):
    name = "redis"

    def owns(self, p: ProcessSnapshot) -> bool:
        return exe_name(p) in ("redis-server", "valkey-server") or p.name in ("redis-server", "valkey-server")

    def ask(self, procs: List[ProcessSnapshot], snap: SystemSnapshot) -> Dict[str, Any]:
        out: Dict[str, Any] = {"processes": {}, "notes": []}
        # the local address of each client socket -> the client pid
        by_local: Dict[str, int] = {}
        for inode, holders in snap.inode_holders.items():
            s = snap.sockets.get(inode)
            if s is not None and s.local and holders:
                by_local.setdefault(s.local, int(holders[0][0]))
        for p in procs:
            where = _listen_addr(p, snap)
            if where is None:
                continue
            try:
                entries = parse_client_list(client_list(*where))
            except (OSError, PermissionError, ValueError) as err:
                out["notes"].append(f"redis pid {p.pid}: CLIENT LIST failed ({err}); "
                                    "the chain stops at the server process")
                continue
            for c in entries:
                pid = by_local.get(c["addr"])
                if pid is None or pid == p.pid:
                    continue
                cmd = c.get("cmd", "?").upper()
                blocked = "b" in c.get("flags", "")
                words = (f"redis pid {p.pid} (CLIENT LIST): connection {c['addr']} runs {cmd}"
                         + (", blocked (flags=b): it waits for another client to push or publish, by design"
                            if blocked else f", idle {c.get('idle', '?')} s"))
                out["processes"][pid] = {"evidence": words}
        return out
