"""MySQL / MariaDB: which connection holds the InnoDB row lock another waits for.

A statement waiting for a row lock runs in a server thread that sleeps on a
condition variable (with ``innodb_lock_wait_timeout``); its client sleeps in
recv() on the connection.  The kernel shows no owner.  The server knows:
``information_schema.INNODB_LOCK_WAITS`` pairs the waiting transaction with
the blocking one, ``INNODB_TRX`` names their connections, and ``PROCESSLIST``
says what each connection does (``Sleep`` for N s: idle in an open
transaction) and, on MariaDB, the OS thread serving it (``TID``).  MySQL 8
moved the lock tables to ``performance_schema.data_lock_waits`` (with
``threads.THREAD_OS_ID``): asked when the first form is missing.

One read-only batch of SELECTs runs through the server's own unix socket
(found from its listening socket), as root (or else as the server's OS user) with the ``unix_socket`` /
``auth_socket`` authentication Debian installs, with the ``mariadb`` or
``mysql`` client, a connect timeout and a limit on the whole run (TIMEOUT_S).  When that
fails it says so and the chain stops at the server process.

Each connection is mapped to the process holding its client end: for TCP
from the ``host:port`` the server reports (the client's local address); for
a unix socket from the descriptor the serving thread waits on (an idle
connection's thread sleeps in poll()/recv() on it) and the peer of that
socket; a connection left over when all but one are mapped is the one
client left.  Collect layer: facts only, no verdict.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any, Dict, List, Optional, Set, Tuple

from ...snapshot import ProcessSnapshot, SystemSnapshot
from . import Resolver, exe_name

TIMEOUT_S = 3.0
SERVERS = ("mariadbd", "mysqld")

#: MariaDB (any version with TID), MySQL 5.7: processlist + InnoDB lock waits
QUERY_IS = (
    "SELECT 'P', ID, COMMAND, TIME, coalesce(STATE, ''), coalesce(HOST, ''), TID, "
    "left(coalesce(INFO, ''), 160) FROM information_schema.PROCESSLIST WHERE ID <> connection_id(); "
    "SELECT 'T', trx_mysql_thread_id, trx_state, "
    "coalesce(timestampdiff(SECOND, trx_started, now()), ''), "
    "coalesce(timestampdiff(SECOND, trx_wait_started, now()), '') FROM information_schema.INNODB_TRX; "
    "SELECT 'W', r.trx_mysql_thread_id, b.trx_mysql_thread_id, coalesce(l.lock_mode, ''), "
    "coalesce(l.lock_type, ''), coalesce(l.lock_table, ''), coalesce(l.lock_index, '') "
    "FROM information_schema.INNODB_LOCK_WAITS w "
    "JOIN information_schema.INNODB_TRX r ON r.trx_id = w.requesting_trx_id "
    "JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id "
    "LEFT JOIN information_schema.INNODB_LOCKS l ON l.lock_id = w.requested_lock_id;")
#: MySQL 8: the lock tables moved to performance_schema; TID from threads.THREAD_OS_ID
QUERY_PS = (
    "SELECT 'P', p.ID, p.COMMAND, p.TIME, coalesce(p.STATE, ''), coalesce(p.HOST, ''), "
    "coalesce(t.THREAD_OS_ID, 0), left(coalesce(p.INFO, ''), 160) FROM information_schema.PROCESSLIST p "
    "LEFT JOIN performance_schema.threads t ON t.PROCESSLIST_ID = p.ID WHERE p.ID <> connection_id(); "
    "SELECT 'T', trx_mysql_thread_id, trx_state, "
    "coalesce(timestampdiff(SECOND, trx_started, now()), ''), "
    "coalesce(timestampdiff(SECOND, trx_wait_started, now()), '') FROM information_schema.INNODB_TRX; "
    "SELECT 'W', r.trx_mysql_thread_id, b.trx_mysql_thread_id, coalesce(l.LOCK_MODE, ''), "
    "coalesce(l.LOCK_TYPE, ''), concat(coalesce(l.OBJECT_SCHEMA, ''), '.', coalesce(l.OBJECT_NAME, '')), "
    "coalesce(l.INDEX_NAME, '') FROM performance_schema.data_lock_waits w "
    "JOIN information_schema.INNODB_TRX r ON r.trx_id = w.REQUESTING_ENGINE_TRANSACTION_ID "
    "JOIN information_schema.INNODB_TRX b ON b.trx_id = w.BLOCKING_ENGINE_TRANSACTION_ID "
    "LEFT JOIN performance_schema.data_locks l ON l.ENGINE_LOCK_ID = w.REQUESTING_ENGINE_LOCK_ID;")


def _socket_path(p: ProcessSnapshot, snap: SystemSnapshot) -> Optional[str]:
    for f in p.fds:
        s = snap.sockets.get(f.inode) if f.kind == "socket" and f.inode is not None else None
        if s is not None and s.proto.startswith("unix") and s.state == "LISTEN" and s.local.startswith("/"):
            return s.local
    return None


def run_queries(sock: str, server_uid: Optional[int] = None) -> List[List[str]]:
    """Rows of the batch (first column: P process, T transaction, W lock wait).

    Asked as root (Debian's root@localhost authenticates by unix_socket), and
    when that is refused as the OS user the server runs as (``mysql``, which
    Debian's packages also let in by its socket), with the client run as that
    user so the server sees that uid."""
    client = shutil.which("mariadb") or shutil.which("mysql")
    if client is None:
        raise FileNotFoundError("no mariadb/mysql client found")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": "/nonexistent"}
    users: List[Tuple[str, Optional[int], Optional[int]]] = [("root", None, None)]
    if server_uid not in (None, 0):
        import pwd

        try:
            pw = pwd.getpwuid(server_uid)
            users.append((pw.pw_name, pw.pw_uid, pw.pw_gid))
        except KeyError:
            pass
    err = ""
    for name, uid, gid in users:
        for q in (QUERY_IS, QUERY_PS):
            res = subprocess.run([client, "--no-defaults", "--protocol=socket", "-S", sock, "-u", name,
                                  "--connect-timeout=2", "-N", "-B", "-r", "-e",
                                  "SET SESSION TRANSACTION READ ONLY; " + q],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                                 timeout=TIMEOUT_S, env=env, stdin=subprocess.DEVNULL, cwd="/", user=uid, group=gid)
            if res.returncode == 0:
                return [line.split("\t") for line in res.stdout.splitlines() if line[:2] in ("P\t", "T\t", "W\t")]
            err = (res.stderr.strip().splitlines() or ["client failed"])[-1][:160]
            if "doesn't exist" not in err and "Unknown column" not in err and "Unknown table" not in err:
                break       # access denied, no server: the second form would fail the same way
        if "Access denied" not in err:
            break           # no server behind the socket: another user would not help
    raise PermissionError(err)


def _client_of_fd(p: ProcessSnapshot, fd: int, snap: SystemSnapshot) -> Optional[int]:
    """The process holding the other end of the server's socket ``fd``."""
    f = next((x for x in p.fds if x.fd == fd and x.kind == "socket"), None)
    s = snap.sockets.get(f.inode) if f is not None and f.inode is not None else None
    if s is None or not s.peer_inode:
        return None
    pids = sorted({int(h[0]) for h in snap.inode_holders.get(s.peer_inode, []) if int(h[0]) != p.pid})
    return pids[0] if len(pids) == 1 else None


def _thread_fd(p: ProcessSnapshot, tid: int) -> Optional[int]:
    """The descriptor a server thread sleeps on (poll on one fd, or recv/read)."""
    from .. import waits

    t = next((x for x in p.threads if x.tid == tid), None)
    if t is None or not t.syscall_name or len(t.syscall_args) < 6:
        return None
    if t.syscall_name in ("read", "recvfrom", "recvmsg", "recv"):
        return int(t.syscall_args[0])
    if t.syscall_name in ("poll", "ppoll"):
        det = waits.thread_details(p.pid, t, waits._Reader(p.pid)) or {}
        fds = det.get("fds") or []
        return int(fds[0]) if len(fds) == 1 else None
    return None


def map_clients(p: ProcessSnapshot, snap: SystemSnapshot,
                conns: Dict[int, Tuple[str, int]]) -> Dict[int, int]:
    """Connection id -> client pid, for the connections that can be mapped.
    ``conns``: id -> (HOST column, serving OS thread id or 0)."""
    by_local: Dict[str, int] = {}
    for inode, holders in snap.inode_holders.items():
        s = snap.sockets.get(inode)
        if s is not None and s.local and holders and not s.proto.startswith("unix"):
            by_local.setdefault(s.local, int(holders[0][0]))
    out: Dict[int, int] = {}
    for cid, (host, tid) in conns.items():
        if ":" in host and host.rpartition(":")[2].isdigit():      # TCP: the client's own address
            h, _, port = host.rpartition(":")
            for cand in (f"{h}:{port}", f"[{h}]:{port}", f"[::ffff:{h}]:{port}"):
                if cand in by_local:
                    out[cid] = by_local[cand]
                    break
            continue
        fd = _thread_fd(p, tid) if tid else None
        pid = _client_of_fd(p, fd, snap) if fd is not None else None
        if pid is not None:
            out[cid] = pid
    # the one unix-socket client left over is the one connection left over
    clients: Set[int] = set()
    for f in p.fds:
        s = snap.sockets.get(f.inode) if f.kind == "socket" and f.inode is not None else None
        if s is not None and s.proto.startswith("unix") and s.state != "LISTEN" and s.peer_inode:
            c = _client_of_fd(p, f.fd, snap)
            if c is not None:
                clients.add(c)
    left_c = sorted(clients - set(out.values()))
    left_ids = [cid for cid, (host, _) in conns.items() if cid not in out and ":" not in host]
    if len(left_c) == 1 and len(left_ids) == 1:
        out[left_ids[0]] = left_c[0]
    return out


class MysqlResolver(Resolver):
    name = "mysql"

    def owns(self, p: ProcessSnapshot) -> bool:
        return exe_name(p) in SERVERS or p.name in SERVERS

    def ask(self, procs: List[ProcessSnapshot], snap: SystemSnapshot) -> Dict[str, Any]:
        out: Dict[str, Any] = {"processes": {}, "threads": {}, "notes": []}
        for p in procs:
            sock = _socket_path(p, snap)
            if sock is None:
                out["notes"].append(f"{p.name} pid {p.pid}: no local socket found; not asked")
                continue
            try:
                rows = run_queries(sock, p.uid)
            except (OSError, PermissionError, subprocess.SubprocessError) as err:
                out["notes"].append(f"{p.name} pid {p.pid}: InnoDB lock waits not readable ({err}); "
                                    "the chain stops at the server process")
                continue
            self._facts(p, snap, rows, out)
        return out

    def _facts(self, p: ProcessSnapshot, snap: SystemSnapshot, rows: List[List[str]],
               out: Dict[str, Any]) -> None:
        procs: Dict[int, Dict[str, Any]] = {}
        trx: Dict[int, Dict[str, str]] = {}
        waits: Dict[int, Tuple[int, str]] = {}
        for r in rows:
            try:
                if r[0] == "P" and len(r) >= 8:
                    procs[int(r[1])] = {"command": r[2], "time": r[3], "state": r[4], "host": r[5],
                                        "tid": int(r[6] or 0), "info": r[7]}
                elif r[0] == "T" and len(r) >= 5:
                    trx[int(r[1])] = {"state": r[2], "age": r[3], "waiting": r[4]}
                elif r[0] == "W" and len(r) >= 7:
                    what = " ".join(x for x in (r[3], r[4].lower() + " lock" if r[4] else "lock") if x)
                    where = " on " + r[5] + (f" (index {r[6]})" if r[6] else "") if r[5] else ""
                    waits.setdefault(int(r[1]), (int(r[2]), what + where))
            except ValueError:
                continue
        clients = map_clients(p, snap, {cid: (c["host"], c["tid"]) for cid, c in procs.items()})

        def words(cid: int) -> str:
            c = procs.get(cid, {})
            t = trx.get(cid)
            doing = f"{c.get('command', '?')}"
            if c.get("command") == "Sleep":
                doing = f"idle for {c.get('time')} s" + (" in an open transaction"
                                                         f" (started {t['age']} s ago)" if t else "")
            elif c.get("state"):
                doing += f" ({c['state']}) for {c.get('time')} s"
            q = f"; query: {c['info']}" if c.get("info") else ""
            who = f", client pid {clients[cid]}" if cid in clients else ", client not mapped"
            tid = f", server thread {c['tid']}" if c.get("tid") else ""
            return f"connection {cid}{tid}{who}: {doing}{q}"

        server = f"{p.name} pid {p.pid} (PROCESSLIST, INNODB_TRX, INNODB_LOCK_WAITS)"
        for cid, c in procs.items():
            line = f"{server}: {words(cid)}"
            entry: Dict[str, Any] = {"evidence": line}
            if cid in waits:
                bcid, lock = waits[cid]
                bpid = clients.get(bcid)
                btid = procs.get(bcid, {}).get("tid") or 0
                res = (f"InnoDB {lock}, held by connection {bcid}"
                       + (f" (client pid {bpid})" if bpid else "") + f": {words(bcid).split(': ', 1)[-1]}")
                entry.update(kind="db-lock", resource=res)
                entry["evidence"] += f"; waits {trx.get(cid, {}).get('waiting', '?')} s for {res}"
                if bpid:
                    entry["blocked_by"] = [bpid]
                elif btid:
                    entry["blocked_by_tids"] = [btid]
            elif c.get("command") == "Sleep":
                entry["work_wait"] = "the next command from its client" + (
                    " (idle in an open transaction)" if cid in trx else "")
            if c.get("tid"):
                out["threads"][c["tid"]] = dict(entry, pid=p.pid)
            if cid in clients and (cid in waits or cid in trx):
                out["processes"][clients[cid]] = {k: v for k, v in entry.items() if k != "work_wait"}
