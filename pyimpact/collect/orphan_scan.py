"""What `pyimpact orphans` reads: every process's identity and, for the ones
that look re-parented, what they hold; and the recorder's history of them.

Why two depths: reading fds and sockets of every process on a machine is
slow and takes locks; the identity fields (parent, group, session, state,
start time) of all of them are one small read each and are enough to tell
which processes lost their parent or their group leader. Only those, and
their descendants, get the second look: command line, CPU over a short
interval, RSS, open /dev/nvidia* devices, listening ports, wchan.

Collection only: typed records, no decisions (pyimpact.analyse.history.orphans).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Set

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
_PF_KTHREAD = 0x00200000


@dataclass
class ProcFacts:
    pid: int
    ppid: int
    pgid: int
    sid: int
    uid: Optional[int]
    state: str
    start_ticks: int
    comm: str
    cpu_ticks: int
    rss_bytes: int
    kernel_thread: bool = False
    cmdline: List[str] = field(default_factory=list)
    cpu_pct: Optional[float] = None          # over the scan's short interval
    gpu_devices: List[str] = field(default_factory=list)
    ports: List[str] = field(default_factory=list)
    wchan: str = ""
    detailed: bool = False


@dataclass
class HistFacts:
    """What the recorder knew of one live process."""
    proc_id: int
    parent_pid: Optional[int]
    parent_known: bool
    parent_command: str
    parent_exit_ns: Optional[int]
    parent_gone: bool               # exited (recorded), or no longer in /proc
    job_id: Optional[int]
    job_key: str
    job_command: str
    job_root_pid: Optional[int]
    job_root_alive: bool
    job_ended_ns: Optional[int]


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _stat(pid: int) -> Optional[ProcFacts]:
    raw = _read(f"/proc/{pid}/stat")
    if not raw:
        return None
    try:
        head, rest = raw.rsplit(b")", 1)
        f = rest.split()
        uid = os.stat(f"/proc/{pid}").st_uid
    except (ValueError, IndexError, OSError):
        return None
    return ProcFacts(pid=pid, ppid=int(f[1]), pgid=int(f[2]), sid=int(f[3]), uid=uid, state=f[0].decode(),
                     start_ticks=int(f[19]), comm=head.split(b"(", 1)[1].decode("utf-8", "backslashreplace"),
                     cpu_ticks=int(f[11]) + int(f[12]), rss_bytes=int(f[21]) * PAGE,
                     kernel_thread=bool(int(f[6]) & _PF_KTHREAD) or int(f[1]) == 2 or pid == 2)


def _listening_inodes() -> Dict[int, str]:
    """socket inode -> 'tcp 0.0.0.0:8000' for listening TCP and bound UDP sockets."""
    out: Dict[int, str] = {}
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        raw = _read(f"/proc/net/{proto}") or b""
        for line in raw.decode("ascii", "replace").splitlines()[1:]:
            f = line.split()
            if len(f) < 10:
                continue
            if proto.startswith("tcp") and f[3] != "0A":
                continue
            try:
                port = int(f[1].rsplit(":", 1)[1], 16)
                inode = int(f[9])
            except (ValueError, IndexError):
                continue
            if inode and port:
                out[inode] = f"{proto.rstrip('6')} :{port}"
    return out


def _details(p: ProcFacts, sockets: Dict[int, str]) -> None:
    raw = _read(f"/proc/{p.pid}/cmdline") or b""
    p.cmdline = [a.decode("utf-8", "backslashreplace") for a in raw[:4096].rstrip(b"\0").split(b"\0")] if raw else []
    try:
        fds = os.listdir(f"/proc/{p.pid}/fd")
    except OSError:
        fds = []
    gpus, ports = set(), set()
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{p.pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/dev/nvidia"):
            gpus.add(target)
        elif target.startswith("socket:["):
            try:
                port = sockets.get(int(target[8:-1]))
            except ValueError:
                port = None
            if port:
                ports.add(port)
    p.gpu_devices = sorted(gpus)
    p.ports = sorted(ports)
    p.wchan = (_read(f"/proc/{p.pid}/wchan") or b"").decode("ascii", "replace").strip("\0 \n")
    p.detailed = True


def scan(interval_s: float = 0.3, detail: Optional[Set[int]] = None) -> Dict[int, ProcFacts]:
    """Every process's identity; details (and a CPU rate over ``interval_s``)
    for those that look re-parented (parent init or gone, group leader gone)
    and their descendants, or for ``detail`` when given."""
    procs: Dict[int, ProcFacts] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            p = _stat(int(name))
            if p is not None:
                procs[p.pid] = p
    want = set(detail) if detail is not None else suspects(procs)
    if not want:
        return procs
    sockets = _listening_inodes()
    t0 = time.monotonic()
    before = {pid: procs[pid].cpu_ticks for pid in want if pid in procs}
    for pid in want:
        if pid in procs:
            _details(procs[pid], sockets)
    rest = interval_s - (time.monotonic() - t0)
    if rest > 0:
        time.sleep(rest)
    span = time.monotonic() - t0
    for pid, ticks in before.items():
        again = _stat(pid)
        if again is not None and again.start_ticks == procs[pid].start_ticks and span > 0:
            procs[pid].cpu_pct = 100.0 * (again.cpu_ticks - ticks) / CLK_TCK / span
            procs[pid].state = again.state
    return procs


def suspects(procs: Dict[int, ProcFacts]) -> Set[int]:
    """Processes that may have lost their job: not kernel threads, not init,
    and re-parented (parent pid 1, or a parent in another session while they
    lead none) or in a group whose leader is gone; then their descendants."""
    top = set()
    for p in procs.values():
        if p.kernel_thread or p.pid <= 1:
            continue
        parent = procs.get(p.ppid)
        leader_gone = p.pgid != p.pid and p.pgid not in procs
        reparented = p.ppid == 1 or (parent is not None and parent.sid != p.sid and p.sid != p.pid)
        if leader_gone or (reparented and p.pid != p.pgid):
            top.add(p.pid)
    kids: Dict[int, List[int]] = {}
    for p in procs.values():
        kids.setdefault(p.ppid, []).append(p.pid)
    out, queue = set(top), list(top)
    while queue:
        for c in kids.get(queue.pop(), []):
            if c not in out:
                out.add(c)
                queue.append(c)
    return out


def history_facts(reader, procs: Dict[int, ProcFacts], pids: Iterable[int]) -> Dict[int, HistFacts]:
    """The recorder's knowledge of each of ``pids`` (matched by pid and start time)."""
    out: Dict[int, HistFacts] = {}
    for pid in pids:
        p = procs.get(pid)
        if p is None:
            continue
        rec = reader.process(pid, p.start_ticks)
        if rec is None:
            continue
        parent = reader.process_by_id(rec.parent_id)
        job = reader.job(rec.job_id) or {}
        root_alive = False
        root_pid = job.get("root_pid")
        if root_pid is not None:
            live = procs.get(root_pid)
            root_alive = (live is not None and job.get("ended_ns") is None and live.state not in ("Z", "X")
                          and abs(live.start_ticks - int(job.get("root_start_ticks") or -99)) <= 2)
        pl = procs.get(parent.pid) if parent else None
        parent_gone = parent is not None and (parent.exit_ns is not None or pl is None or pl.state in ("Z", "X")
                                              or abs(pl.start_ticks - parent.start_ticks) > 2)
        out[pid] = HistFacts(
            proc_id=rec.id, parent_pid=rec.ppid, parent_known=rec.parent_known,
            parent_command=" ".join(parent.cmdline) if parent and parent.cmdline else (parent.comm if parent else ""),
            parent_exit_ns=parent.exit_ns if parent else None, parent_gone=parent_gone, job_id=rec.job_id, job_key=job.get("key", ""),
            job_command=job.get("command") or "", job_root_pid=root_pid, job_root_alive=root_alive,
            job_ended_ns=job.get("ended_ns"))
    return out
