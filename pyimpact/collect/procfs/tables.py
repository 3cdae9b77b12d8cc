"""Host-wide tables: file locks (/proc/locks), sockets (/proc/net/* and
sock_diag), and who holds which pipe or socket (every process's fds)."""
from __future__ import annotations

import os
import socket
import struct
from typing import Any, Dict, List, Optional, Sequence, Tuple

import psutil

from ...snapshot import LockInfo, SocketInfo
from .boundary import PROC, ErrorNotes, read, sys_call
from .parse import mode_of_flags, ns_inode, parse_kv

def read_locks() -> List[LockInfo]:
    """Every file lock on the host and every request waiting on one (/proc/locks).

    Lines of one lock tree share an id; a waiter's line is "ID: -> ...", with
    one more leading space per level when it waits on another waiter, and
    comes after the line it waits on (pre-order), so the blocker of a line at
    depth d is the nearest line above it at depth d-1.
    """
    out: List[LockInfo] = []
    last_at_depth: Dict[int, int] = {}
    for line in read(f"{PROC}/locks", 0).decode("utf-8", "replace").splitlines():
        head, sep, rest = line.partition(":")
        if not sep or not head.strip().isdigit():
            continue
        rest = rest[1:] if rest.startswith(" ") else rest
        depth = 0
        stripped = rest.lstrip(" ")
        if stripped.startswith("->"):
            depth = len(rest) - len(stripped) + 1
            stripped = stripped[2:]
        tok = stripped.split()
        if len(tok) < 7:
            continue
        lock_id = int(head)
        dev, inode = None, None
        devino = tok[4].split(":")
        if len(devino) == 3 and not tok[4].startswith("<none>"):
            dev, inode = f"{devino[0]}:{devino[1]}", int(devino[2])
        li = LockInfo(id=lock_id, kind=tok[0], mode=tok[1], access=tok[2], pid=int(tok[3]),
                      dev=dev, inode=inode, start=tok[5], end=tok[6],
                      waiting=depth > 0, blocked_by_id=lock_id if depth > 0 else None,
                      depth=depth)
        if depth > 0:
            li.blocker_index = last_at_depth.get(depth - 1)
        last_at_depth[depth] = len(out)
        out.append(li)
    return out


_TCP_STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
    6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
    11: "CLOSING", 12: "NEW_SYN_RECV",
}


_UNIX_STATES = {1: "UNCONNECTED", 2: "CONNECTING", 3: "CONNECTED", 4: "DISCONNECTING"}


_UNIX_TYPES = {1: "stream", 2: "dgram", 5: "seqpacket"}


_SO_ACCEPTCON = 0x10000


def _inet_addr(text: str, v6: bool) -> Tuple[str, str]:
    """("ip:port" for display, normalised key for peer matching) of a
    /proc/net/tcp address: the IP in host byte order words, the port in hex."""
    ip_hex, _, port_hex = text.partition(":")
    port = int(port_hex, 16)
    if v6:
        raw = struct.pack("<4I", *(int(ip_hex[i:i + 8], 16) for i in range(0, 32, 8)))
        ip = socket.inet_ntop(socket.AF_INET6, raw)
        key_ip = ip[7:] if ip.startswith("::ffff:") and "." in ip else ip
        return f"[{ip}]:{port}", f"{key_ip}:{port}"
    ip = socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(ip_hex, 16)))
    return f"{ip}:{port}", f"{ip}:{port}"


def _parse_inet(data: bytes, proto: str, netns: Optional[int],
                keys: Dict[int, Tuple[str, str]]) -> Dict[int, SocketInfo]:
    """Rows of /proc/net/{tcp,tcp6,udp,udp6} with an inode (TIME_WAIT rows have none)."""
    v6 = proto.endswith("6")
    out = {}
    for line in data.decode("ascii", "replace").splitlines()[1:]:
        tok = line.split()
        if len(tok) < 10 or tok[9] == "0":
            continue
        local, lkey = _inet_addr(tok[1], v6)
        remote, rkey = _inet_addr(tok[2], v6)
        unconnected = int(tok[2].partition(":")[2], 16) == 0  # remote port 0
        tx, _, rx = tok[4].partition(":")
        inode = int(tok[9])
        out[inode] = SocketInfo(
            inode=inode, proto=proto, local=local, remote="" if unconnected else remote,
            state=_TCP_STATES.get(int(tok[3], 16), tok[3]),
            tx_queue=int(tx, 16), rx_queue=int(rx, 16),
            sock_type="stream" if proto.startswith("tcp") else "dgram", netns=netns)
        if not unconnected:
            keys[inode] = (lkey, rkey)
    return out


def _parse_unix(data: bytes, netns: Optional[int]) -> Dict[int, SocketInfo]:
    """Rows of /proc/net/unix (the path may contain spaces, so split at most 7 times)."""
    out = {}
    for raw in data.split(b"\n")[1:]:   # bytes first: a path holding U+2028 is not a new row
        tok = raw.decode("utf-8", "backslashreplace").split(None, 7)
        if len(tok) < 7:
            continue
        flags, stype, st, inode = int(tok[3], 16), int(tok[4], 16), int(tok[5], 16), int(tok[6])
        state = "LISTEN" if flags & _SO_ACCEPTCON else _UNIX_STATES.get(st, str(st))
        out[inode] = SocketInfo(inode=inode, proto="unix", local=tok[7] if len(tok) > 7 else "",
                                state=state, sock_type=_UNIX_TYPES.get(stype, str(stype)),
                                netns=netns)
    return out


def _unix_diag() -> Dict[int, Tuple[Optional[int], int, int]]:
    """inode -> (peer inode, rx queue, tx queue) of every unix socket of our
    network namespace, from the sock_diag netlink interface (UNIX_DIAG_PEER,
    UNIX_DIAG_RQLEN): /proc/net/unix does not say who the peer is."""
    NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY = 4, 20
    NLM_F_REQUEST, NLM_F_DUMP, NLMSG_ERROR, NLMSG_DONE = 1, 0x300, 2, 3
    UDIAG_SHOW_PEER, UDIAG_SHOW_RQLEN = 0x4, 0x10
    UNIX_DIAG_PEER, UNIX_DIAG_RQLEN = 2, 4
    req = struct.pack("=BBHIII2I", socket.AF_UNIX, 0, 0, 0xFFFFFFFF, 0,
                      UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN, 0xFFFFFFFF, 0xFFFFFFFF)
    msg = struct.pack("=IHHII", 16 + len(req), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + req
    out: Dict[int, Tuple[Optional[int], int, int]] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG) as s:
        s.settimeout(1.0)
        s.sendto(msg, (0, 0))
        while True:
            data = s.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                length, mtype = struct.unpack_from("=IH", data, off)
                if length < 16:
                    return out
                if mtype == NLMSG_DONE:
                    return out
                if mtype == NLMSG_ERROR:
                    code = struct.unpack_from("=i", data, off + 16)[0]
                    raise OSError(-code, os.strerror(-code))
                ino = struct.unpack_from("=I", data, off + 20)[0]
                peer, rq, wq = None, 0, 0
                a = off + 32
                while a + 4 <= off + length:
                    alen, atype = struct.unpack_from("=HH", data, a)
                    if alen < 4:
                        break
                    if atype == UNIX_DIAG_PEER:
                        peer = struct.unpack_from("=I", data, a + 4)[0] or None
                    elif atype == UNIX_DIAG_RQLEN:
                        rq, wq = struct.unpack_from("=II", data, a + 4)
                    a += (alen + 3) & ~3
                out[ino] = (peer, rq, wq)
                off += (length + 3) & ~3


def read_sockets(pid: Optional[int] = None, *, errors: Optional[ErrorNotes] = None) -> Dict[int, SocketInfo]:
    """Every TCP, UDP and unix socket of a network namespace, by inode.

    The namespace is ours, or that of ``pid`` (its /proc/PID/net).  Peers on
    this host are filled in: for TCP/UDP the socket whose local and remote
    addresses are ours swapped (loopback and any other local connection), for
    unix sockets from sock_diag (only for our own namespace).
    """
    errs = errors if errors is not None else ErrorNotes()
    who = "self" if pid is None else str(pid)
    owner = os.getpid() if pid is None else pid
    try:
        netns = ns_inode(sys_call(owner, os.readlink, f"{PROC}/{who}/ns/net"))
    except (psutil.Error, OSError):
        netns = None
    keys: Dict[int, Tuple[str, str]] = {}
    out: Dict[int, SocketInfo] = {}
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            out.update(_parse_inet(read(f"{PROC}/{who}/net/{proto}", owner), proto, netns, keys))
        except psutil.NoSuchProcess:
            raise
        except (psutil.Error, OSError) as e:
            errs.add(f"netns {netns}", f"/proc/net/{proto}", e)
    try:
        out.update(_parse_unix(read(f"{PROC}/{who}/net/unix", owner), netns))
    except psutil.NoSuchProcess:
        raise
    except (psutil.Error, OSError) as e:
        errs.add(f"netns {netns}", "/proc/net/unix", e)
    _match_inet_peers(out, keys)
    if pid is None or netns == own_netns():
        try:
            for ino, (peer, rq, wq) in _unix_diag().items():
                si = out.get(ino)
                if si is not None and si.proto == "unix":
                    si.peer_inode, si.rx_queue, si.tx_queue = peer, rq, wq
        except OSError as e:
            errs.add(f"netns {netns}", "unix socket peers (sock_diag)", e)
    return out


def own_netns() -> Optional[int]:
    """Inode of the network namespace this tool runs in."""
    try:
        return ns_inode(os.readlink(f"{PROC}/self/ns/net"))
    except OSError:
        return None



def _match_inet_peers(socks: Dict[int, SocketInfo], keys: Dict[int, Tuple[str, str]]) -> None:
    """Set peer_inode of connected TCP/UDP sockets whose other end is on this
    host: the unique socket whose (local, remote) is our (remote, local)."""
    by_pair: Dict[Tuple[str, str, str], List[int]] = {}
    for ino, (lkey, rkey) in keys.items():
        base = socks[ino].proto.rstrip("6")
        by_pair.setdefault((base, lkey, rkey), []).append(ino)
    for ino, (lkey, rkey) in keys.items():
        base = socks[ino].proto.rstrip("6")
        cands = [c for c in by_pair.get((base, rkey, lkey), []) if c != ino]
        if len(cands) == 1:
            socks[ino].peer_inode = cands[0]


def inode_holders(kinds: Sequence[str] = ("pipe", "socket"), *,
                  fifo_paths: Optional[Dict[str, int]] = None,
                  errors: Optional[ErrorNotes] = None) -> Dict[int, List[List[Any]]]:
    """inode -> [[pid, fd, mode], ...] for every pipe/socket fd of every process.

    This is how the other end of a pipe (who holds the write end?) or the
    process behind a local socket peer is found.  Only link texts are read,
    plus the fdinfo of pipes (the access mode tells the read end from the
    write end; sockets are always 'rw').  Named FIFOs are matched by path
    (``fifo_paths``: path -> inode).  Processes whose fds we may not read are
    counted in ``errors``.
    """
    errs = errors if errors is not None else ErrorNotes()
    want_pipe, want_sock = "pipe" in kinds, "socket" in kinds
    out: Dict[int, List[List[Any]]] = {}
    denied: List[int] = []
    for name in os.listdir(PROC):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            fds = sys_call(pid, os.listdir, f"{PROC}/{pid}/fd")
        except psutil.AccessDenied:
            denied.append(pid)
            continue
        except (psutil.Error, OSError):
            continue
        for fd in fds:
            try:
                link = sys_call(pid, os.readlink, f"{PROC}/{pid}/fd/{fd}")
            except (psutil.Error, OSError):
                continue
            if want_sock and link.startswith("socket:["):
                out.setdefault(int(link[8:-1]), []).append([pid, int(fd), "rw"])
                continue
            if want_pipe and link.startswith("pipe:["):
                inode = int(link[6:-1])
            elif fifo_paths and link in fifo_paths:
                inode = fifo_paths[link]
            else:
                continue
            try:
                kv = parse_kv(read(f"{PROC}/{pid}/fdinfo/{fd}", pid))
                mode = mode_of_flags(int(kv[b"flags"], 8))
            except (psutil.Error, OSError, KeyError, ValueError):
                mode = "?"
            out.setdefault(inode, []).append([pid, int(fd), mode])
    if denied:
        shown = ", ".join(str(p) for p in denied[:10]) + (" ..." if len(denied) > 10 else "")
        errs.add("inode holders", f"fds of {len(denied)} process(es) ({shown})", "permission denied")
    return out
