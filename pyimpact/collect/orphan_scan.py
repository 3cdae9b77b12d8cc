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

import psutil

from . import procfs

CLK_TCK = procfs.CLOCK_TICKS
PAGE = procfs.PAGE_SIZE
_GONE = (psutil.Error, OSError)


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


def _read(path: str, pid: int) -> Optional[bytes]:
    """A /proc file of ``pid`` through the procfs boundary (None: unreadable)."""
    try:
        return procfs.read(path, pid)
    except _GONE:
        return None


def _stat(pid: int) -> Optional[ProcFacts]:
    try:
        comm, f = procfs.read_stat(pid)
        uid = procfs.sys_call(pid, os.stat, f"/proc/{pid}").st_uid
    except (psutil.Error, ValueError, IndexError, OSError):
        return None
    field_ = procfs.stat_field
    try:
        return ProcFacts(pid=pid, ppid=field_(f, 4), pgid=field_(f, 5), sid=field_(f, 6), uid=uid,
                         state=f[0].decode(), start_ticks=field_(f, 22), comm=comm,
                         cpu_ticks=field_(f, 14) + field_(f, 15), rss_bytes=field_(f, 24) * PAGE,
                         kernel_thread=bool(field_(f, 9) & procfs.PF_KTHREAD) or field_(f, 4) == 2 or pid == 2)
    except (ValueError, IndexError):
        return None


def _listening_inodes() -> Dict[int, str]:
    """socket inode -> 'tcp 0.0.0.0:8000' for listening TCP and bound UDP sockets."""
    out: Dict[int, str] = {}
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        raw = _read(f"/proc/net/{proto}", 0) or b""
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
    try:   # argv takes the target's mmap lock: read under a deadline
        raw = procfs.read_bounded(f"/proc/{p.pid}/cmdline", p.pid, procfs.CMDLINE_TIMEOUT_S)
    except _GONE:
        raw = b""
    p.cmdline = procfs.parse_argv(raw[:4096])
    try:
        fds = procfs.sys_call(p.pid, os.listdir, f"/proc/{p.pid}/fd")
    except _GONE:
        fds = []
    gpus, ports = set(), set()
    for fd in fds:
        try:
            target = procfs.sys_call(p.pid, os.readlink, f"/proc/{p.pid}/fd/{fd}")
        except _GONE:
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
    p.wchan = (_read(f"/proc/{p.pid}/wchan", p.pid) or b"").decode("ascii", "replace").strip("\0 \n")
    p.detailed = True


def scan(interval_s: float = 0.3, detail: Optional[Set[int]] = None) -> Dict[int, ProcFacts]:
    """Every process's identity; details (and a CPU rate over ``interval_s``)
    for those that look re-parented (parent init or gone, group leader gone)
    and their descendants, or for ``detail`` when given."""
    procs: Dict[int, ProcFacts] = {}
    for pid in procfs.all_pids():
        p = _stat(pid)
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
