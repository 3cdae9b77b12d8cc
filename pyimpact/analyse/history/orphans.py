"""Orphaned workers: processes whose job has gone but which still run and hold things.

Two sources of truth, best first:

* **History** (the recorder's database): the process's ORIGINAL parent and
  job are known. It is an orphan when that parent has exited, it has been
  re-parented since, and its job's root is gone; the row says which job
  (root pid, command) and since when (the parent's exit).
* **/proc alone**: a process that was re-parented (its parent is init, or a
  subreaper in another session while it leads no session of its own) and
  whose process-group leader is gone. Groups are what shells, `setsid` and
  service managers give each job, and what forked or spawned workers keep,
  so a dead leader with live members is a job that died under its workers.
  Without history such a process is listed only when it looks like a worker
  (a multiprocessing / loky / joblib / DataLoader / torch signature in its
  command line, or forked copies: several re-parented members of the group
  with one command line); a program detached on purpose (`nohup cmd &` from a
  script that ended) looks the same and has neither.

Descendants of an orphan are orphans of the same job. A group with a live
member that is not orphaned means the job is alive in part: none of its
members is safe to clean. Other refusals: a process of another user (unless
the caller is root), a process in D state (a signal waits until its kernel
call returns: the row names where it sleeps).

Pure: from the collector's records (pyimpact.collect.orphan_scan) to rows.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Set

from ...formats import human_bytes

#: pyimpact.collect.orphan_scan's records, read by attribute only (analyse does not import collect).
HistFacts = Any
ProcFacts = Any

WORKER_MARKS = (
    ("loky.backend.resource_tracker", "loky resource tracker"),
    ("multiprocessing.spawn", "multiprocessing (spawn) worker"),
    ("multiprocessing.forkserver", "multiprocessing (forkserver) worker"),
    ("--multiprocessing-fork", "multiprocessing worker"),
    ("multiprocessing.resource_tracker", "multiprocessing resource tracker"),
    ("loky.backend", "loky worker"),
    ("loky", "loky worker"),
    ("joblib", "joblib worker"),
    ("torch.utils.data", "DataLoader worker"),
    ("pt_data_worker", "DataLoader worker"),
    ("torch.distributed", "torch distributed worker"),
    ("torchrun", "torch distributed worker"),
)
CPU_SHOWN_PCT = 0.5


@dataclass
class Orphan:
    pid: int
    start_ticks: int
    job: str
    command: str
    orphaned_since_ns: Optional[int]
    holds: List[str]
    safe_to_clean: bool
    reason: str
    uid: Optional[int] = None
    pgid: int = 0
    kind: str = ""
    source: str = "proc"            # history | proc
    state: str = ""
    evidence: List[str] = field(default_factory=list)

    def to_json(self) -> dict:
        d = asdict(self)
        d["orphaned_since"] = iso(self.orphaned_since_ns)
        return d


def iso(t_ns: Optional[int]) -> Optional[str]:
    if t_ns is None:
        return None
    return _dt.datetime.fromtimestamp(t_ns / 1e9, tz=_dt.timezone.utc).isoformat(timespec="seconds")


def worker_kind(cmdline: List[str], comm: str) -> str:
    text = " ".join(cmdline) + " " + comm
    for mark, kind in WORKER_MARKS:
        if mark in text:
            return kind
    return ""



def holdings(p: "ProcFacts", gpu_mem: Optional[Dict[int, int]] = None) -> List[str]:
    out = []
    if p.cpu_pct is not None and p.cpu_pct >= CPU_SHOWN_PCT:
        out.append(f"cpu {p.cpu_pct:.0f}%")
    out.append(f"rss {human_bytes(p.rss_bytes)}")
    mem = (gpu_mem or {}).get(p.pid)
    if p.gpu_devices or mem:
        gpu = "gpu " + ",".join(d.replace("/dev/", "") for d in p.gpu_devices)
        if mem:
            gpu += f" {human_bytes(mem)}"
        out.append(gpu.strip())
    out.extend(f"port {x}" for x in p.ports)
    return out


def _reparented(p: "ProcFacts", procs: Dict[int, "ProcFacts"]) -> bool:
    parent = procs.get(p.ppid)
    return p.ppid == 1 or (parent is not None and parent.sid != p.sid and p.sid != p.pid)


def _leader_gone(p: "ProcFacts", procs: Dict[int, "ProcFacts"]) -> bool:
    if p.pgid == p.pid:
        return False
    leader = procs.get(p.pgid)
    # gone, a zombie nobody reaped, or a later process that took the leader's pid
    return leader is None or leader.state in ("Z", "X") or leader.start_ticks > p.start_ticks


def find_orphans(procs: Dict[int, "ProcFacts"], history: Optional[Dict[int, "HistFacts"]] = None, *,
                 my_uid: int, is_root: bool, exclude: Set[int] = frozenset(),
                 gpu_mem: Optional[Dict[int, int]] = None) -> List[Orphan]:
    """One row per orphaned process, sorted by job then pid."""
    history = history or {}
    kids: Dict[int, List[int]] = {}
    for p in procs.values():
        kids.setdefault(p.ppid, []).append(p.pid)
    top: Dict[int, Orphan] = {}

    for p in procs.values():
        if p.kernel_thread or p.pid <= 1 or p.pid in exclude or p.state in ("Z", "X"):
            continue
        h = history.get(p.pid)
        if h is not None and h.parent_known:
            if h.job_root_alive or h.job_root_pid == p.pid:
                continue      # its job is alive (or it is the job): never an orphan
            if not h.parent_gone or p.ppid == h.parent_pid:
                continue
            when = iso(h.job_ended_ns)
            job = f"{h.job_command or '?'} (pid {h.job_root_pid}{', exited ' + when if when else ', gone'})"
            kind = worker_kind(p.cmdline, p.comm) or "worker"
            ev = [f"started by pid {h.parent_pid} ({h.parent_command or '?'}), which exited at "
                  f"{iso(h.parent_exit_ns) or 'an unrecorded time'}", f"now a child of pid {p.ppid}"]
            top[p.pid] = Orphan(pid=p.pid, start_ticks=p.start_ticks, job=job, command=" ".join(p.cmdline) or p.comm,
                                orphaned_since_ns=h.parent_exit_ns, holds=holdings(p, gpu_mem), safe_to_clean=True,
                                reason="", uid=p.uid, pgid=p.pgid, kind=kind, source="history", state=p.state,
                                evidence=ev)
            continue
        if not (_reparented(p, procs) and _leader_gone(p, procs)):
            continue
        kind = worker_kind(p.cmdline, p.comm)
        top[p.pid] = Orphan(pid=p.pid, start_ticks=p.start_ticks,
                            job=f"process group {p.pgid} (leader gone), session {p.sid}",
                            command=" ".join(p.cmdline) or p.comm, orphaned_since_ns=None,
                            holds=holdings(p, gpu_mem), safe_to_clean=True, reason="", uid=p.uid, pgid=p.pgid,
                            kind=kind, source="proc", state=p.state,
                            evidence=[f"parent is now pid {p.ppid}", f"its process group leader {p.pgid} is gone"])

    # /proc-only rows need a worker look: a signature, or forked copies in the group
    by_cmd: Dict[tuple, List[int]] = {}
    for o in top.values():
        if o.source == "proc":
            by_cmd.setdefault((o.pgid, o.command), []).append(o.pid)
    for pid in list(top):
        o = top[pid]
        if o.source != "proc" or o.kind:
            continue
        if len(by_cmd[(o.pgid, o.command)]) >= 2:
            o.kind = "forked worker (identical command lines)"
        else:
            del top[pid]      # no sign it is a worker: maybe detached on purpose

    # descendants of orphans belong to the same dead job
    rows: Dict[int, Orphan] = dict(top)
    queue = list(top)
    while queue:
        parent = rows[queue.pop()]
        for c in kids.get(parent.pid, []):
            p = procs.get(c)
            if c in rows or p is None or p.state in ("Z", "X") or c in exclude:
                continue
            rows[c] = Orphan(pid=c, start_ticks=p.start_ticks, job=parent.job, command=" ".join(p.cmdline) or p.comm,
                             orphaned_since_ns=parent.orphaned_since_ns, holds=holdings(p, gpu_mem),
                             safe_to_clean=True, reason="", uid=p.uid, pgid=p.pgid,
                             kind=worker_kind(p.cmdline, p.comm) or parent.kind, source=parent.source,
                             state=p.state, evidence=[f"child of orphan {parent.pid}"])
            queue.append(c)

    # safety
    members: Dict[int, List[int]] = {}
    for p in procs.values():
        if p.state not in ("Z", "X"):
            members.setdefault(p.pgid, []).append(p.pid)
    for o in rows.values():
        live_other = [m for m in members.get(o.pgid, []) if m not in rows]
        if o.state == "D":
            wchan = next((p.wchan for p in (procs.get(o.pid),) if p), "") or "a kernel call"
            o.safe_to_clean = False
            o.reason = (f"in uninterruptible sleep (D state) in {wchan}: a signal is acted on only when that "
                        "call returns; find what it waits for (I/O, NFS, a driver) first")
        elif o.uid is not None and o.uid != my_uid and not is_root:
            o.safe_to_clean = False
            o.reason = f"owned by uid {o.uid}: only root may clean another user's processes"
        elif live_other:
            o.safe_to_clean = False
            o.reason = (f"its process group {o.pgid} also holds live process(es) "
                        f"{', '.join(map(str, sorted(live_other)[:5]))} that are not orphaned: the job may be alive")
        else:
            o.reason = f"job gone; {o.kind or 'worker'}" + (" (stopped)" if o.state in ("T", "t") else "")
    # groups are cleaned whole or not at all
    blocked: Dict[int, int] = {}
    for o in rows.values():
        if not o.safe_to_clean:
            blocked.setdefault(o.pgid, o.pid)
    for o in rows.values():
        if o.safe_to_clean and o.pgid in blocked:
            o.safe_to_clean = False
            o.reason = (f"pid {blocked[o.pgid]} of the same process group {o.pgid} cannot be cleaned: "
                        "a group is cleaned whole or not at all")
    return sorted(rows.values(), key=lambda o: (o.job, o.pid))
