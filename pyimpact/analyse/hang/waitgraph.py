"""The wait-for graph: what each thread waits on, and who could release it.

Pure: built from a Recording and nothing else (snapshots at the start and end
of the window, the probes' timeline and aggregates, and the details read from
the targets' memory that ``pyimpact.collect.waits`` stored in
``metadata.wait_details``).  No I/O, no clock reads.

Nodes are threads (``t:TID``), processes (``p:PID``), remote peers
(``r:ADDR``) and other ends outside any process (``x:WHAT``).  A thread that
waits without a timeout has one edge per party that could release it: the
owner of a mutex, every process holding the write end of the pipe it reads,
the process behind the socket peer, the children it waits for, the holder of
a file lock.  Any one of them acting would free it, so a node is stuck only
when *all* its successors are stuck; that makes deadlock detection a greatest
fixed point (see ``pyimpact.analyse.hang.diagnose``), not just "find a cycle".

A process node stands for "some thread of that process": it is an end (a
sink) when any of its threads could still act (on CPU, waking up, in a timed
wait), and otherwise leads to all of its threads.  An unowned private futex
(a semaphore, a condition variable, a Python ``threading.Lock``) can only be
woken by a thread of the same process, so it leads to the own process node.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ...recording import ProbeStatus, Recording
from ...snapshot import LockInfo, ProcessSnapshot, SocketInfo, SystemSnapshot, ThreadSnapshot
from .waitmodel import (RUNNING, STOPPED, TIMED, UNKNOWN, WAITING, WAKING, ZOMBIE, ProcessInfo, ThreadWait,
                        WaitGraph)
from .waitresolve import python_joins, resolve

#: syscalls whose positive return is bytes moved
DATA_CALLS = frozenset({"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
                        "preadv2", "pwritev2", "recvfrom", "sendto", "recvmsg", "sendmsg", "recvmmsg",
                        "sendmmsg", "sendfile", "splice", "copy_file_range", "tee", "vmsplice"})
#: fraction of the window on CPU from which a thread counts as running
RUNNING_SHARE = 0.2
#: with one snapshot only: a thread that ran this recently is not blocked
RECENT_S = 0.5


# --------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------

class WaitContext:
    """Everything a resolver needs, merged from the recording's parts."""

    def __init__(self, rec: Recording) -> None:
        snaps = rec.snapshots
        start: Optional[SystemSnapshot] = snaps.get("start")
        end: Optional[SystemSnapshot] = snaps.get("end") or start
        rel0: Optional[SystemSnapshot] = snaps.get("related_start")
        rel1: Optional[SystemSnapshot] = snaps.get("related")
        self.latest: Dict[int, ProcessSnapshot] = {}
        self.first: Dict[int, ProcessSnapshot] = {}
        self.latest_snap: Dict[int, SystemSnapshot] = {}
        self.first_snap: Dict[int, SystemSnapshot] = {}
        self.related: set = set()
        # later entries win: the target's own snapshots over the related ones
        for snap, latest, related in ((rel0, False, True), (rel1, True, True), (start, False, False),
                                      (end, True, False)):
            if snap is None:
                continue
            for pid, p in snap.processes.items():
                if latest:
                    self.latest[pid], self.latest_snap[pid] = p, snap
                else:
                    self.first[pid], self.first_snap[pid] = p, snap
                if related:
                    self.related.add(pid)
        for pid, p in self.first.items():  # seen at the start only (exited meanwhile)
            if pid not in self.latest:
                self.latest[pid] = p
                self.latest_snap[pid] = self.first_snap[pid]
        for pid in list(self.related):
            if end is not None and pid in end.processes:
                self.related.discard(pid)
        self.end: Optional[SystemSnapshot] = end
        self.start_s: Optional[float] = start.taken_at_ns / 1e9 if start is not None and start.taken_at_ns else None
        tables = [s for s in (end, rel1, start, rel0) if s is not None]
        self.locks: List[LockInfo] = next((s.locks for s in tables if s.locks), [])
        self.sockets: Dict[int, SocketInfo] = {}
        self.holders: Dict[int, List[List[Any]]] = {}
        for s in reversed(tables):
            self.sockets.update(s.sockets)
            self.holders.update(s.inode_holders)
        self.tid_pid: Dict[int, int] = {}
        for pid, p in self.latest.items():
            for t in p.threads:
                self.tid_pid[t.tid] = pid
        meta = rec.metadata
        self.details: Dict[str, Any] = (meta.wait_details or {}).get("threads", {})
        self.read_at: Dict[str, int] = (meta.wait_details or {}).get("read_at", {})
        # pid -> the Java monitors its threads wait to enter, and their owners (collect.jvm_monitors)
        self.monitors: Dict[str, Any] = (meta.wait_details or {}).get("monitors") or {}
        self.stacks: Dict[str, Any] = meta.python_stacks or {}
        self.bpf = rec.probe_status is not ProbeStatus.UNAVAILABLE
        self.traced: set = {int(t["pid"]) for t in (meta.targets or []) if "pid" in t}
        self.followed: set = set(int(p) for p in (meta.followed_pids or []))
        self.window_s = float(meta.duration_s) if meta.duration_s else None
        self.ev = rec.events
        self.stats = _stats_by_tid(rec)
        self.stat_rows = _stat_rows(rec)
        self.inflight = _inflight_by_tid(rec)
        self.block = rec.block_inflight
        self.missing: set = set()

    def proc_first(self, pid: int) -> Optional[ProcessSnapshot]:
        return self.first.get(pid)

    def snap_time_ns(self, pid: int) -> Optional[int]:
        s = self.latest_snap.get(pid)
        return s.taken_at_ns if s is not None else None

    def watched(self, pid: int) -> bool:
        """Whether the probes saw this process during the window."""
        return self.bpf and (pid in self.traced or pid in self.followed or
                             (self.end is not None and pid in self.end.processes and pid not in self.related))


def _stats_by_tid(rec: Recording) -> Dict[int, int]:
    out: Dict[int, int] = {}
    df = rec.syscall_stats
    if df is not None and len(df):
        for tid, count in zip(df["tid"].tolist(), df["count"].tolist()):
            out[int(tid)] = out.get(int(tid), 0) + int(count)
    return out


def _stat_rows(rec: Recording) -> Dict[int, List[Dict[str, Any]]]:
    """tid -> [{syscall, count, errors, last_err, last_err_arg0}] from the probes."""
    out: Dict[int, List[Dict[str, Any]]] = {}
    df = rec.syscall_stats
    if df is None or not len(df):
        return out
    cols = set(df.columns)
    for r in df.to_dict(orient="records"):
        def num(k: str) -> int:
            v = r.get(k) if k in cols else 0
            try:
                return 0 if v is None or v != v else int(v)
            except (TypeError, ValueError):
                return 0
        out.setdefault(int(r["tid"]), []).append({
            "syscall": str(r.get("syscall") or r.get("nr")), "count": num("count"), "errors": num("errors"),
            "last_err": num("last_err"), "last_err_arg0": num("last_err_arg0"), "ret_sum": num("ret_sum")})
    # connects that failed, counted by the probes with the address (a non-blocking
    # connect returns EINPROGRESS and its refusal comes back through getsockopt)
    for c in rec.metadata.connect_failures or []:
        try:
            tid, n, err = int(c["tid"]), int(c["count"]), int(c["last_err"])
        except (KeyError, TypeError, ValueError):
            continue
        rows = out.setdefault(tid, [])
        row = next((r for r in rows if r["syscall"] == "connect"), None)
        if row is None:
            row = {"syscall": "connect", "count": n, "errors": 0, "last_err": 0, "last_err_arg0": 0, "ret_sum": 0}
            rows.append(row)
        row["errors"] = max(row["errors"], n)
        row["count"] = max(row["count"], n)
        row["last_err"] = err
        row["addr"] = str(c.get("addr") or "")
    return out


def _inflight_by_tid(rec: Recording) -> Dict[int, Tuple[int, int]]:
    out: Dict[int, Tuple[int, int]] = {}
    df = rec.inflight
    if df is not None and len(df):
        for tid, nr, since in zip(df["tid"].tolist(), df["nr"].tolist(), df["since_ns"].tolist()):
            out[int(tid)] = (int(nr), int(since))
    return out


def build(rec: Recording) -> WaitGraph:
    """The wait-for graph of every process in the recording's snapshots."""
    ctx = WaitContext(rec)
    g = WaitGraph(window_s=ctx.window_s, bpf=ctx.bpf, locks=list(ctx.locks), sockets=ctx.sockets,
                  holders=ctx.holders, stats=ctx.stat_rows)
    for pid, p in sorted(ctx.latest.items()):
        g.processes[pid] = _process_info(ctx, p)
        g.fds[pid] = list(p.fds)
        for t in p.threads:
            g.threads[t.tid] = _thread_wait(ctx, p, t)
    for pid, p in sorted(ctx.latest.items()):
        for t in p.threads:
            tw = g.threads[t.tid]
            if tw.activity in (WAITING, TIMED) or (tw.activity == WAKING and p.state != "Z"):
                resolve(ctx, g, p, t, tw)
    own_wakeups(g)
    python_joins(ctx, g)
    server_edges(rec, g)
    for pid, p in ctx.latest.items():  # holders of the locks a polling thread fails to take
        if any(r["errors"] and r["syscall"] in ("fcntl", "flock") for t in p.threads
               for r in g.stats.get(t.tid, [])):
            inodes = {f.inode for f in p.fds if f.kind == "file"}
            for lk in ctx.locks:
                if not lk.waiting and lk.inode in inodes and lk.pid > 0 and lk.pid != pid \
                        and lk.pid not in ctx.latest:
                    ctx.missing.add(lk.pid)
    for pid, p in ctx.latest.items():  # the peer ranks of a distributed job
        if "RANK" in p.env:
            for pid2 in socket_peers(ctx.sockets, ctx.holders, p.fds):
                if pid2 != pid and pid2 not in ctx.latest:
                    ctx.missing.add(pid2)
    for pid, p in ctx.latest.items():  # a shared futex without owner: its parent, then its siblings
        if any("shared futex" in g.threads[t.tid].end_reason for t in p.threads if t.tid in g.threads) \
                and p.ppid > 1:
            parent = ctx.latest.get(p.ppid)
            if parent is None:
                ctx.missing.add(p.ppid)
            else:
                ctx.missing.update(c for c in parent.children if c not in ctx.latest)
    for pid, p in ctx.latest.items():  # a zombie's parent, a stopped process's tracer
        if p.state in ("Z", "X") and p.ppid > 1 and p.ppid not in ctx.latest:
            ctx.missing.add(p.ppid)
        if p.tracer_pid and p.tracer_pid not in ctx.latest:
            ctx.missing.add(p.tracer_pid)
    for pid in sorted(ctx.missing):
        if pid not in g.processes:
            g.missing_pids.append(pid)
    return g


def own_wakeups(g: WaitGraph) -> None:
    """A thread polling descriptors others owe it and a channel of its own (a
    self-pipe) waits for work from its own threads only when one of them could
    bring it: another thread of the process that runs or wakes in the window
    (a worker posting results to an event loop).  With every other thread
    asleep without a timeout (or none: the self-pipe of a signal handler, as in
    a single-threaded event loop or a compressor), the descriptors others owe
    say what it waits for: an asyncio client awaiting a reply, xz writing to a
    reader that stopped.  A thread asleep in a timed wait all window (a runtime's
    housekeeping: Go's sysmon, a JVM's periodic tasks, a timer thread) brought
    nothing in the window and is no sign that anything will come."""
    for tw in g.threads.values():
        if not tw.own_wake or not tw.edges or tw.activity != WAITING:
            continue
        p = g.processes.get(tw.pid)
        if p is None:
            continue
        active = [g.threads[x] for x in p.tids if x != tw.tid and x in g.threads
                  and g.threads[x].activity in (RUNNING, WAKING)]
        if not active:
            tw.evidence.append("no other thread of the process ran or woke in the window: nothing of its own "
                               f"is about to write {tw.own_wake}")
            continue
        a = active[0]
        tw.work_wait = f"a wake-up from its own threads (it holds the other end: {tw.own_wake})"
        tw.work_from = [tw.pid]
        tw.input_wait = True
        tw.end_reason = (f"waits in {tw.syscall or 'poll'} without a timeout; its own threads can end the wait "
                         f"({tw.own_wake}; thread {a.tid} is {a.activity})")
        tw.edges, tw.kind = [], "unknown"


def socket_peers(sockets: Dict[int, Any], holders: Dict[int, List[List[Any]]], fds: List[Any]) -> List[int]:
    """Processes holding the local other end of this process's connected sockets."""
    out: List[int] = []
    for f in fds:
        s = sockets.get(f.inode) if f.kind == "socket" and f.inode is not None else None
        if s is None or not s.peer_inode:
            continue
        for h in holders.get(s.peer_inode, []):
            if int(h[0]) not in out:
                out.append(int(h[0]))
    return out


def server_edges(rec: Recording, g: WaitGraph) -> None:
    """What the servers said, read-only (``metadata.server_waits``, filled
    by ``pyimpact.collect.servers``): a session waiting on a lock another
    session holds gets an edge to that session's process (or to the server
    thread serving it), which the kernel cannot see (the waiter sleeps on a
    semaphore or condition variable with no owner).  A session is a process
    (a PostgreSQL backend, the client of a threaded server) or a server
    thread (MySQL/MariaDB); the same facts apply to either."""
    waits = rec.metadata.server_waits or {}
    for pid_s, info in (waits.get("processes") or {}).items():
        p = g.processes.get(int(pid_s))
        if p is None or not isinstance(info, dict):
            continue
        line = str(info.get("evidence") or "")
        if line:
            p.notes.append(line)
        _session_facts(g, [g.threads[t] for t in p.tids if t in g.threads], info, line)
    for tid_s, info in (waits.get("threads") or {}).items():
        t = g.threads.get(int(tid_s))
        if t is None or not isinstance(info, dict):
            continue
        _session_facts(g, [t], info, str(info.get("evidence") or ""))


def _session_facts(g: WaitGraph, threads: List[ThreadWait], info: Dict[str, Any], line: str) -> None:
    """Apply one session's facts to the threads that hold it."""
    from .waitmodel import Edge

    targets = [f"p:{int(b)}" for b in info.get("blocked_by") or [] if int(b) in g.processes]
    targets += [f"t:{int(b)}" for b in info.get("blocked_by_tids") or [] if int(b) in g.threads
                and all(int(b) != t.tid for t in threads)]
    for t in threads:
        if line and line not in t.evidence:
            t.evidence.append(line)
        # The server's word stands even for a thread that woke in the window: a
        # PostgreSQL backend waiting on a lock wakes every deadlock_timeout (1 s)
        # to run the deadlock check, and goes back to the same wait; a client
        # sleeping in a timed poll for the reply waits for the same thing.
        if targets and t.activity in (WAITING, TIMED, WAKING):
            t.activity = WAITING
            t.kind = str(info.get("kind") or "db-lock")
            t.resource = str(info.get("resource") or "a lock held by another session")
            t.edges = [Edge(n, t.kind, t.resource, [line], exact=n.startswith("t:")) for n in targets]
            t.end_reason = ""
            t.work_wait = ""
            break
    if info.get("work_wait") and not targets:
        for t in threads:
            if not t.edges and t.activity in (WAITING, TIMED):
                t.work_wait = str(info["work_wait"])
                t.input_wait = True


def referenced_pids(rec: Recording) -> List[int]:
    """Processes the waits point to that no snapshot covers yet (the collector
    snapshots these too, so chains can be followed beyond the target's tree)."""
    return build(rec).missing_pids


def _process_info(ctx: WaitContext, p: ProcessSnapshot) -> ProcessInfo:
    info = ProcessInfo(pid=p.pid, name=p.name, state=p.state, ppid=p.ppid, cmdline=list(p.cmdline),
                       tids=[t.tid for t in p.threads], children=list(p.children), python=p.python,
                       uid=p.uid, sig_caught=p.sig_caught, sig_ignored=p.sig_ignored,
                       sig_blocked=p.sig_blocked, tracer_pid=p.tracer_pid, exe=p.exe,
                       create_time=p.create_time,
                       observed="related" if p.pid in ctx.related else "target",
                       env=dict(p.env), pgid=p.pgid, sid=p.sid, kernel_thread=p.kernel_thread)
    for f in p.fds:
        s = ctx.sockets.get(f.inode) if f.kind == "socket" and f.inode is not None else None
        if s is not None and s.state == "LISTEN":
            info.listening.append(f"{s.proto} {s.local or f.target}")
    p0 = ctx.proc_first(p.pid)
    if p0 is not None and p0.start_ticks == p.start_ticks:
        info.was_state = p0.state
    if ctx.start_s is not None and p.create_time and p.create_time > ctx.start_s:
        info.born_in_window = True
    if p0 is not None and p0 is not p and p0.start_ticks == p.start_ticks:
        info.cpu_s = max(0.0, (p.cpu_user_s + p.cpu_system_s) - (p0.cpu_user_s + p0.cpu_system_s))
        runtime = [(t.sum_exec_runtime_ms, t0.sum_exec_runtime_ms) for t in p.threads
                   for t0 in [p0.thread(t.tid)] if t0 is not None
                   and t.sum_exec_runtime_ms is not None and t0.sum_exec_runtime_ms is not None]
        if runtime:
            info.cpu_s = max(0.0, sum(a - b for a, b in runtime) / 1e3)
        if p.io_read_chars is not None and p0.io_read_chars is not None:
            info.io_bytes = max(0, (p.io_read_chars + (p.io_write_chars or 0))
                                - (p0.io_read_chars + (p0.io_write_chars or 0)))
        if p.io_read_bytes is not None and p0.io_read_bytes is not None:
            info.disk_bytes = max(0, (p.io_read_bytes + (p.io_write_bytes or 0))
                                  - (p0.io_read_bytes + (p0.io_write_bytes or 0)))
    if ctx.watched(p.pid):
        info.syscalls = sum(ctx.stats.get(t.tid, 0) for t in p.threads)
        info.data_bytes = sum(r["ret_sum"] for t in p.threads for r in ctx.stat_rows.get(t.tid, [])
                              if r["syscall"] in DATA_CALLS)
        # connections it accepted in the window: a server answering small requests
        info.accepted = sum(max(0, r["count"] - r["errors"]) for t in p.threads
                            for r in ctx.stat_rows.get(t.tid, []) if r["syscall"] in ("accept", "accept4"))
    return info


def _thread_wait(ctx: WaitContext, p: ProcessSnapshot, t: ThreadSnapshot) -> ThreadWait:
    """Activity over the window, from the two snapshots (and the probes)."""
    tw = ThreadWait(pid=p.pid, tid=t.tid, name=t.name, state=t.state, activity=UNKNOWN,
                    syscall=t.syscall_name, wchan=t.wchan, kernel_stack=list(t.kernel_stack))
    stack = ((ctx.stacks.get(str(p.pid)) or {}).get("threads") or {}).get(str(t.tid))
    if stack:
        tw.python_stack = list(stack.get("frames") or [])
        tw.python_name = str(stack.get("name") or "")
    p0 = ctx.proc_first(p.pid)
    t0 = p0.thread(t.tid) if p0 is not None and p0 is not p and p0.start_ticks == p.start_ticks else None
    if ctx.watched(p.pid):
        tw.syscalls = ctx.stats.get(t.tid, 0)
    if t0 is not None and t.read_mono_ns and t0.read_mono_ns and t.read_mono_ns > t0.read_mono_ns:
        tw.window_s = (t.read_mono_ns - t0.read_mono_ns) / 1e9
        if t.sum_exec_runtime_ms is not None and t0.sum_exec_runtime_ms is not None:
            tw.cpu_s = max(0.0, (t.sum_exec_runtime_ms - t0.sum_exec_runtime_ms) / 1e3)
        else:
            tw.cpu_s = max(0.0, (t.utime_s + t.stime_s) - (t0.utime_s + t0.stime_s))
        if t.voluntary_ctxt_switches is not None and t0.voluntary_ctxt_switches is not None:
            tw.wakeups = t.voluntary_ctxt_switches - t0.voluntary_ctxt_switches
    if t.state in ("Z", "X"):
        tw.activity = ZOMBIE
    elif t.state in ("T", "t"):
        tw.activity = STOPPED
    elif tw.window_s:
        share = (tw.cpu_s or 0.0) / tw.window_s
        if share >= RUNNING_SHARE:
            tw.activity = RUNNING
        elif (tw.wakeups or 0) > 0 or (tw.syscalls or 0) > 0:
            tw.activity = WAKING
        elif t.state == "R":
            tw.activity = RUNNING
        elif t.state in ("S", "D", "I"):
            tw.activity = WAITING
    else:  # one snapshot: judge by when it last ran
        if t.state == "R":
            tw.activity = RUNNING
        elif t.state in ("S", "D", "I"):
            recent = t.last_ran_ago_s is not None and t.last_ran_ago_s < RECENT_S
            tw.activity = WAKING if recent else WAITING
    # how long it has been in its current wait
    if tw.activity in (WAITING, STOPPED) or (t.state in ("S", "D") and tw.activity != RUNNING):
        infl = ctx.inflight.get(t.tid)
        end_ns = ctx.snap_time_ns(p.pid)
        if infl is not None and infl[0] == t.syscall_nr and end_ns and infl[1] <= end_ns:
            tw.blocked_for_s = (end_ns - infl[1]) / 1e9
            tw.blocked_exact = True
        elif t.last_ran_ago_s is not None:
            tw.blocked_for_s = t.last_ran_ago_s
        elif tw.window_s is not None and tw.activity == WAITING:
            tw.blocked_for_s = tw.window_s
    return tw
