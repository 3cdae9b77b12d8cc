"""The verdict rules: is a process hung, working, or waiting for work?

Pure.  Each rule looks at one process of the wait-for graph and returns its
own ``Verdict``, or None when it does not apply; ``Engine.verdict`` tries
them in order of certainty and the first answer wins.  The rules follow the
model in DESIGN.md ("The verdict model"), not the shape of any one program:

* the verdict is about the process's *own* progress: bytes it moved, syscalls
  it completed on CPU, or a child it waits for that progresses;
* a wait without a timeout is a hang only when what it waits for is *owed*
  (a lock someone holds, the reply from a peer, a child that should exit);
  a wait for work nobody owes (a listening socket, a client's next request,
  signals, work handed down by the parent, a terminal) is ``idle``;
* a client blocked on a peer that is alive but idle is ``blocked`` with the
  peer as root ("alive and has nothing to send -- possibly by design");
* a thread that only wakes to retry and fail (a lock refused, a connection
  refused, a queue poll timing out) polls for something: ``blocked`` on it;
* a rank of a distributed job waiting in a collective waits for the rank
  that is not in it.

Another process's verdict is asked for recursively (memoised; a cycle gives
up and counts as stuck), so a chain is judged by how its end really is.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from .chains import ChainLink, best_path, chain_links, deadlocked, end_note, exact_cycles, pct, stuck_cores
from .verdict import KINDS, RootCause, Verdict
from .waitmodel import (RUNNING, STOPPED, TIMED, WAITING, WAKING, ZOMBIE, Edge, ProcessInfo, ThreadWait,
                        WaitGraph, process_words, python_location, secs)

#: bytes moved in the window from which a process is doing real work, not housekeeping
#: (an idle server reads a few /proc files and writes a log line now and then)
WORK_BYTES = 64 * 1024
#: failed attempts of one call in the window from which a thread is retrying
RETRIES = 2
#: connections accepted in the window from which a server is serving (small replies move few bytes)
SERVED = 3
ETIMEDOUT, ECONNREFUSED, EAGAIN, EACCES, EINTR = 110, 111, 11, 13, 4
EHOSTUNREACH, ENETUNREACH = 113, 101
LOCK_CALLS = ("fcntl", "flock")
LOCK_KINDS = ("file-lock", "mutex", "futex", "db-lock")
#: Python files whose frames mean "waits for work or an event", not "acquires a lock"
_WAIT_MACHINERY = ("threading.py", "queue.py", "thread.py", "selectors.py", "events.py", "base_events.py",
                   "process.py", "connection.py", "synchronize.py", "pool.py")
#: a frame in one of these files means the thread is inside a torch.distributed collective
_COLLECTIVE_FILES = ("distributed_c10d.py", "c10d_logger.py")
#: bytes moved in the window below which a rank caught inside a collective is not completing any
COLLECTIVE_QUIET_BYTES = 4096

Path = List[Tuple[str, Optional[Edge]]]


def _sig_words(err: int) -> str:
    return {ETIMEDOUT: "ETIMEDOUT", ECONNREFUSED: "ECONNREFUSED", EAGAIN: "EAGAIN", EACCES: "EACCES",
            EINTR: "EINTR", EHOSTUNREACH: "EHOSTUNREACH", ENETUNREACH: "ENETUNREACH"}.get(err, f"errno {err}")


class Engine:
    """Verdicts for the processes of one wait-for graph, each computed once."""

    def __init__(self, g: WaitGraph, signals: Optional[Callable[[int], List[Dict[str, Any]]]] = None) -> None:
        self.g = g
        self.dead = deadlocked(g)
        self.cores = stuck_cores(g, self.dead)   # the deadlocks themselves, not those waiting on them
        self.memo: Dict[int, Optional[Verdict]] = {}
        self.visiting: Set[int] = set()
        self.stack: List[int] = []      # the verdicts being worked out, outermost first
        self.low: Dict[int, int] = {}   # pid on the stack -> the outermost frame its work ran into
        self.budget = 64 * max(1, len(g.processes))   # verdicts computed before provisional ones are kept
        self.signals = signals or (lambda pid: [])

    # -- facts ------------------------------------------------------------
    def threads(self, p: ProcessInfo) -> List[ThreadWait]:
        return [self.g.threads[t] for t in p.tids if t in self.g.threads]

    def work_done(self, p: ProcessInfo) -> List[str]:
        """The process's own completed work in the window, in words (empty: none)."""
        out = []
        io, disk = p.io_bytes or 0, p.disk_bytes or 0
        if io >= WORK_BYTES:
            out.append(f"{io} B read+written")
        if disk >= WORK_BYTES:
            out.append(f"{disk} B of disk I/O")
        if (p.data_bytes or 0) >= WORK_BYTES and io < WORK_BYTES:
            out.append(f"{p.data_bytes} B moved by its read/write/send/recv calls (probes)")
        if (p.accepted or 0) >= SERVED and p.listening:
            out.append(f"{p.accepted} connections accepted on {p.listening[0]} (probes)")
        for t in self.threads(p):
            if t.activity == RUNNING and (t.syscalls or 0) > 0:
                out.append(f"thread {t.tid} on CPU {pct(t.cpu_s, t.window_s)} of the window "
                           f"with {t.syscalls} syscalls")
                break
        return out

    def children(self, p: ProcessInfo) -> List[ProcessInfo]:
        return [self.g.processes[c] for c in p.children if c in self.g.processes]

    # -- the engine -------------------------------------------------------
    def verdict(self, pid: int) -> Optional[Verdict]:
        """The verdict on ``pid``; None for a process not observed, or when
        asked again while its own verdict is being worked out (a cycle).

        A verdict worked out while a cycle was cut (it asked, directly or not,
        for a verdict still being worked out further up) saw None where that
        process's verdict belongs: it is provisional and is not remembered, so
        the process is judged again, with the whole picture, when asked for
        from outside the cycle (two processes feeding each other -- a parent and
        the shell it writes commands to -- are judged the same in any order)."""
        if pid in self.memo:
            return self.memo[pid]
        p = self.g.processes.get(pid)
        if p is None:
            return None
        if pid in self.visiting:
            top = self.stack[-1]
            self.low[top] = min(self.low[top], self.stack.index(pid))
            return None
        depth = len(self.stack)
        self.stack.append(pid)
        self.low[pid] = depth
        self.visiting.add(pid)
        self.budget -= 1
        try:
            threads = self.threads(p)
            v = None
            for rule in RULES:
                v = rule(self, p, threads)
                if v is not None:
                    v.rule = v.rule or rule.__name__
                    v.evidence = [n for n in p.notes if n not in v.evidence] + v.evidence
                    break
        finally:
            self.visiting.discard(pid)
            self.stack.pop()
            low = self.low.pop(pid)
            if self.stack:
                self.low[self.stack[-1]] = min(self.low[self.stack[-1]], low)
        if low >= depth or self.budget <= 0:
            self.memo[pid] = v
        return v


# ==========================================================================
# the rules, in order
# ==========================================================================

def rule_zombie(e: Engine, p: ProcessInfo, threads: List[ThreadWait]) -> Optional[Verdict]:
    if not (p.state in ("Z", "X") or (threads and all(t.activity == ZOMBIE for t in threads))):
        return None
    import signal as _signal

    g = e.g
    parent = g.processes.get(p.ppid)
    how, ev = "", []
    if parent is not None:
        pt = g.threads.get(parent.pid)
        if pt is not None:
            how = f"; it {end_note(g, pt.node)}" if pt.activity == WAITING and pt.end_reason else \
                f"; it is {pt.activity}" + (f" in {pt.syscall}()" if pt.syscall else "")
        catches = bool(parent.sig_caught >> (_signal.SIGCHLD.value - 1) & 1)
        ev.append(f"parent pid {parent.pid} ({parent.name}) "
                  f"{'has a SIGCHLD handler' if catches else 'does not handle SIGCHLD'} (SigCgt){how}")
    ev.insert(0, f"/proc/{p.pid}/stat: state Z (exited, exit status not collected)")
    pname = f" ({parent.name})" if parent is not None else ""
    chain = [ChainLink(p.pid, p.pid, p.name, "Z", ZOMBIE, {"kind": "child",
                       "resource": "its parent to collect the exit status"})]
    if parent is not None:
        pt = g.threads.get(parent.pid)
        chain.append(ChainLink(parent.pid, parent.pid, parent.name, parent.state,
                               pt.activity if pt else "unknown", None,
                               note=end_note(g, f"t:{parent.pid}") if pt else "",
                               location=python_location(pt) if pt else ""))
    return Verdict("zombie", f"pid {p.pid} has exited and is a zombie: its parent pid {p.ppid}{pname} "
                   f"has not called wait() for it{how}",
                   RootCause(p.ppid, p.ppid, "child", f"exit status of pid {p.pid}, not collected by its "
                             f"parent pid {p.ppid}"), "high", chain=chain, evidence=ev)


def rule_stopped(e: Engine, p: ProcessInfo, threads: List[ThreadWait]) -> Optional[Verdict]:
    if not (threads and all(t.activity == STOPPED for t in threads)):
        return None
    g = e.g
    main = g.threads.get(p.pid) or threads[0]
    since = f" for at least {secs(main.blocked_for_s)}" if main.blocked_for_s else ""
    tids = set(p.tids)
    sent = [s for s in e.signals(p.pid) if s["target"] in tids]
    ev = [f"/proc/{p.pid}/stat: state {main.state} "
          f"({'stopped by a tracer' if main.state == 't' else 'stopped by a signal'}){since}"]
    traced = any(t.state == "t" for t in threads) or p.tracer_pid
    if sent:
        s = sent[-1]
        who = f"{s['sig']} sent by pid {s['sender_pid']} ({s['comm']})"
        ev.append(f"probes: {who} during the window")
        root, summary = RootCause(p.pid, main.tid, "signal-stop", who), f"stopped by {who}"
    elif traced and p.tracer_pid:
        tracer = g.processes.get(p.tracer_pid)
        name = f" ({tracer.name})" if tracer else ""
        ev.append(f"/proc/{p.pid}/status: TracerPid {p.tracer_pid}{name}")
        root = RootCause(p.tracer_pid, p.tracer_pid, "signal-stop", f"stopped under the tracer pid {p.tracer_pid}{name}")
        summary = f"stopped under the tracer pid {p.tracer_pid}{name} (a debugger holds it)"
    else:
        why = ("the stop happened before tracing began, so its sender is unknown" if g.bpf
               else "without the probes the sender of the stop signal cannot be seen")
        ev.append(why)
        root = RootCause(p.pid, main.tid, "signal-stop", "a stop signal (SIGSTOP/SIGTSTP/SIGTTIN/SIGTTOU)")
        summary = f"stopped by a signal{since}; {why}"
    chain = [ChainLink(p.pid, main.tid, main.label, main.state, STOPPED, None, note="stopped",
                       location=python_location(main))]
    return Verdict("stopped", summary, root, "high", chain=chain, evidence=ev)


def rule_deadlock(e: Engine, p: ProcessInfo, threads: List[ThreadWait]) -> Optional[Verdict]:
    g, dead = e.g, e.dead
    mine = [t for t in threads if t.node in dead]
    if not mine or not any(t.node in e.cores for t in mine):
        # none of its threads is part of a deadlock: when they are stuck, it is on one
        # elsewhere (a pipe's writer, a child), and the rules that follow say so
        return None
    cycles = exact_cycles(g, dead)
    mine_nodes = {t.node for t in mine}
    cycle = next((c for c in cycles if set(c) & mine_nodes), None)
    if cycle is None:  # follow a member's exact edges into a cycle elsewhere (a join waiting on one)
        for t in mine:
            nodes = {n for n, _ in best_path(g, t.node)}
            cycle = next((c for c in cycles if set(c) & nodes), None)
            if cycle:
                break
    if cycle is not None:
        core = [g.threads[int(n[2:])] for n in cycle]
        confidence = "high"
    else:
        # the stuck set this process is part of: what its stuck threads wait on, and
        # on, within the set (a machine-wide graph holds unrelated stuck sets too)
        near = _reach(g, {t.node for t in mine}, dead)
        core = sorted((g.threads[int(n[2:])] for n in near if n.startswith("t:")
                       and not g.threads[int(n[2:])].join), key=lambda t: t.tid)
        if not core:
            core = sorted((g.threads[int(n[2:])] for n in near if n.startswith("t:")), key=lambda t: t.tid)
        confidence = "medium"
    start = min(core, key=lambda t: t.tid)
    if cycle is not None:  # rotate so the lowest tid comes first
        i = [t.tid for t in core].index(start.tid)
        core = core[i:] + core[:i]
    kinds = [t.kind or "unknown" for t in core]
    kind = "mutex" if "mutex" in kinds else kinds[0]
    if kind not in KINDS:
        kind = "unknown"
    root = RootCause(start.pid, start.tid, kind, "; ".join(t.resource for t in core))
    procs = sorted({t.pid for t in core})
    where = "in this process" if procs == [p.pid] else "across pids " + ", ".join(str(x) for x in procs)
    names = ", ".join(f"{t.tid} ({t.label})" for t in core)
    if cycle is not None:
        summary = (f"threads {names} {where} wait on each other in a cycle: "
                   + "; ".join(f"{t.tid} needs {t.resource}" for t in core))
    elif not any(t.kind in ("futex", "mutex") for t in core):
        # pipes, sockets, children: each end's holders are known by process, not by thread
        summary = (f"threads {names} {where} wait on each other, each for what only another of them "
                   "can do: " + "; ".join(f"{t.tid} needs {t.resource}" for t in core))
    else:
        summary = (f"threads {names} {where} wait forever on locks that no thread left can release "
                   "(no owner is recorded, so the exact cycle is not known)")
    cyc = [ChainLink(t.pid, t.tid, t.label, t.state, t.activity,
                     {"kind": t.kind or "unknown", "resource": t.resource}, location=python_location(t))
           for t in core]
    first = next((t for t in mine if t.tid == p.pid), mine[0])
    path = best_path(g, first.node)
    core_nodes = {t.node for t in core}
    cut = next((i for i, (n, _) in enumerate(path) if n in core_nodes), None)
    if cut is not None:
        path = path[:cut] + [(path[cut][0], None)]
    chain = chain_links(g, path)
    if cut is not None and chain:
        chain[-1].note = "in the deadlock"
    ev: List[str] = []
    for t in core:
        ev.extend(_thread_lines(t))
    for t in mine:
        if t not in core:
            ev.append(f"thread {t.tid} ({t.label}) waits on {t.resource}, itself stuck in the deadlock")
    if cycle is None and any(t.kind in ("futex", "mutex") for t in core):
        ev.append("every thread of the set waits without a timeout on a private futex or on "
                  "another member: only a thread of the process could wake it, and none can")
    elif cycle is None:
        ev.append("every thread of the set waits without a timeout on a pipe, socket or child whose other "
                  "end only members of the set hold: only a member could release it, and none can")
    if g.bpf:
        ev.append(f"probes: none of these threads was woken during the {g.window_s or 0:.2f} s window")
    return Verdict("deadlock", summary, root, confidence, chain=chain, cycle=cyc, evidence=ev)


def _reach(g: WaitGraph, start: Set[str], within: Set[str]) -> Set[str]:
    """The nodes of ``within`` that ``start`` waits on, directly or not (``start`` included)."""
    seen = set(start)
    todo = list(start)
    while todo:
        for x in g.successors(todo.pop()):
            if x.target in within and x.target not in seen:
                seen.add(x.target)
                todo.append(x.target)
    return seen


def rule_working(e: Engine, p: ProcessInfo, threads: List[ThreadWait]) -> Optional[Verdict]:
    """Own progress: bytes moved, or a thread on CPU completing syscalls."""
    done = e.work_done(p)
    running = [t for t in threads if t.activity == RUNNING]
    if not done:
        return None
    hot = max(running, key=lambda t: t.cpu_s or 0) if running else (e.g.threads.get(p.pid) or threads[0])
    return Verdict("progressing", "working: " + ", ".join(done),
                   RootCause(p.pid, hot.tid, "unknown", "its own work: " + ", ".join(done)), "high",
                   chain=[ChainLink(p.pid, hot.tid, hot.label, hot.state, hot.activity, None,
                                    note=end_note(e.g, hot.node), location=python_location(hot))],
                   evidence=[f"{p.name} pid {p.pid} during the window: " + ", ".join(done)])


def rule_on_cpu(e: Engine, p: ProcessInfo, threads: List[ThreadWait]) -> Optional[Verdict]:
    """On CPU without moving data: progressing when it completes syscalls
    (below the bytes threshold), busy (spinning) when it completes none."""
    running = [t for t in threads if t.activity == RUNNING]
    if not running:
        return None
    hot = max(running, key=lambda t: t.cpu_s or 0)
    syscalls = p.syscalls
    tids = p.tids
    if p.syscalls and all(t.syscalls is not None for t in running) and not sum(t.syscalls for t in running):
        # the threads on CPU complete no syscalls; the others' calls are housekeeping
        # (a runtime's GC, JIT and periodic threads timing out in futex waits), not
        # the spinning thread's progress
        syscalls, tids = 0, [t.tid for t in running]
    failed = sum(r["errors"] for tid in tids for r in e.g.stats.get(tid, []))
    io = (p.io_bytes or 0) + (p.disk_bytes or 0)
    wakeups = sum(t.wakeups or 0 for t in running)
    all_failed = syscalls is not None and syscalls > 0 and failed >= syscalls and not io
    if all_failed:  # every call failed: a busy retry loop, polling for something
        v = rule_polling(e, p, threads, spinning=True)
        if v is not None:
            return v
    progressing = not all_failed and ((syscalls > 0 or io > 0) if syscalls is not None else (io > 0 or wakeups > 0))
    share = pct(hot.cpu_s, hot.window_s)
    ev = [f"thread {t.tid} ({t.label}): CPU {t.cpu_s or 0:.2f} s of {t.window_s or 0:.2f} s, "
          f"{t.wakeups or 0} voluntary sleeps" + (f", {t.syscalls} syscalls (probes)" if t.syscalls is not None else "")
          for t in running]
    chain = [ChainLink(p.pid, hot.tid, hot.label, hot.state, RUNNING, None, note=end_note(e.g, hot.node),
                       location=python_location(hot))]
    root = RootCause(p.pid, hot.tid, "unknown", f"CPU ({share} of the window on thread {hot.tid})")
    if progressing:
        what = [x for x in (f"{syscalls} syscalls" if syscalls else "", f"{io} B of I/O" if io else "",
                            f"{wakeups} wake-ups" if not syscalls and not io and wakeups else "") if x]
        return Verdict("progressing", f"working: thread {hot.tid} ({hot.label}) on CPU {share} of the window, "
                       + ", ".join(what), root, "high", chain=chain, evidence=ev)
    seen = "no syscalls, no I/O" if syscalls is not None else \
        "no I/O and no voluntary sleeps (syscalls not visible without the probes)"
    return Verdict("busy", f"spinning: thread {hot.tid} ({hot.label}) on CPU {share} of the window "
                   f"with {seen}: an endless loop or a long computation", root,
                   "high" if syscalls is not None else "medium", chain=chain, evidence=ev)


# -- waits on others ------------------------------------------------------------

def _owed(t: ThreadWait) -> bool:
    """Waits without a timeout, all window long, on something a party owes it."""
    return t.activity == WAITING and not t.work_wait and bool(t.edges)


def _first_other(e: Engine, path: Path, pid: int) -> Optional[int]:
    """Index in ``path`` of the first node of another process."""
    for i, (node, _) in enumerate(path):
        other = e.g.pid_of(node)
        if other is not None and other != pid:
            return i
    return None


def _through(v: Verdict, pid: int) -> bool:
    """``v`` is what it is because of ``pid`` (its chain or root passes there)."""
    return v.root_cause.pid == pid or any(c.pid == pid for c in v.chain)


def _pipe_peers(t: ThreadWait) -> List[int]:
    """The holders of the other end when ``t`` waits only on pipes (a read of
    an empty one, a write to a full one, a poll on nothing but pipes); []: not."""
    peers = t.feed_from or t.drained_by
    if not peers or t.kind != "pipe":
        return []
    if all(x.kind == "pipe" and x.target.startswith("p:") and int(x.target[2:]) in peers for x in t.edges):
        return peers
    return []


def _can_act(e: Engine, pid: int, v: Verdict, depth: int = 0) -> str:
    """Why an idle process at the other end of a pipe may still act on it
    (write into it, read from it), in words; "" when it is parked
    (every thread asleep with no timeout on nothing that brings it work --
    pause(), a futex none of its threads will wake -- and no child of it
    that could act either)."""
    g = e.g
    p = g.processes.get(pid)
    if p is None or v.verdict != "idle":
        return ""
    for t in e.threads(p):
        if t.input_wait and t.work_wait:
            return f"it waits for {t.work_wait}"
    for t in e.threads(p):
        if t.activity in (TIMED, WAKING):
            return f"it wakes up by itself (thread {t.tid}: {end_note(g, t.node)})"
    if v.rule in ("pipe_feed", "conversation", "rule_unresolved"):
        return f"it waits itself ({v.summary})"
    if depth < 8:
        for c in p.children:
            cv = e.verdict(c)
            why = _can_act(e, c, cv, depth + 1) if cv is not None else ""
            if why:
                return f"its child pid {c} ({g.processes[c].name}) is alive and {why[3:] if why.startswith('it ') else why}"
    return ""


def _feed_outcome(e: Engine, p: ProcessInfo, t: ThreadWait) -> Optional[Tuple[int, Verdict]]:
    """A wait on a pipe, judged by who holds its other end: the writers that
    would fill the empty pipe it reads, or the readers that would drain the
    full pipe it writes.  Data on a pipe is nobody's reply (no request went the
    other way on it), so the wait is owed only when the other end cannot act:
    a holder itself stuck (then this one is blocked, on that holder's root), or
    holders that are all parked (the rules that follow: blocked on an idle
    peer).  A holder working makes this a wait on work in progress; a holder
    that waits for work itself (input, clients, its parent, its children) or
    wakes up by itself makes this a wait for work: what reaches a writer flows
    on down the pipe, like input from a terminal, and a reader that waits for
    its user (a pager) reads on when asked.  None: the holders say nothing
    (not observed, or only reachable back through this process), or are parked."""
    g = e.g
    reading = bool(t.feed_from)
    peers = [w for w in (t.feed_from or t.drained_by) if w != p.pid]
    role = "writer" if reading else "reader"
    seen = [(w, e.verdict(w)) for w in peers]
    seen = [(w, v) for w, v in seen if v is not None and not _through(v, p.pid)]
    if not seen:
        return None
    me = _link(t, {"kind": "pipe", "resource": t.resource})
    since = _since(t)
    # a holder stuck itself: not one whose threads only wait for work or timers and
    # that is called hung for a child of its own (a supervisor): it can still act
    hung = [(w, v) for w, v in seen if v.hung and v.rule != "rule_supervisor"]
    if hung:
        w, v = hung[0]
        who = process_words(g.processes[w])
        return 4, Verdict("blocked", f"thread {t.tid} ({t.label}) blocked{since} on {t.resource}; its {role} "
                          f"{who} is {v.verdict.upper()}: {v.summary}", v.root_cause, v.confidence,
                          chain=[me] + list(v.chain), evidence=_thread_lines(t) + v.evidence, soft=v.soft,
                          rule="pipe_feed")
    if t.work_wait:
        return None  # fed by its ancestors, none stuck: the wait for work it already is
    working = [(w, v) for w, v in seen if v.verdict in ("progressing", "busy") and v.rule != "rule_supervisor"]
    if working:
        w, v = working[0]
        who = process_words(g.processes[w])
        tid = v.root_cause.tid if v.root_cause.pid == w else w
        return 2, Verdict(v.verdict, f"{'reads' if reading else 'writes'} {t.resource}, "
                          f"{'written' if reading else 'read'} by {who}, which is "
                          f"{'working' if v.verdict == 'progressing' else 'on CPU'}: {v.summary}",
                          RootCause(w, tid, "pipe", t.resource), "high" if v.confidence == "high" else "medium",
                          chain=[me] + v.chain[:1], evidence=_thread_lines(t) + v.evidence[:3], rule="pipe_feed")
    for w, v in seen:
        why = _can_act(e, w, v)
        if not why:
            continue
        wp = g.processes[w]
        who = process_words(wp)
        what = (f"waits for work on {t.resource}: its writer" if reading
                else f"waits for its reader to make room in {t.resource}:")
        owed = "nothing is owed on the pipe until that work comes" if reading else             "it reads on when that comes"
        return 1, Verdict("idle", f"not hung: thread {t.tid} ({t.label}) {what} {who} is idle and "
                          f"{why[3:] if why.startswith('it ') else why}; {owed}",
                          RootCause(p.pid, t.tid, "pipe", t.resource), "high",
                          chain=[me, ChainLink(w, w, wp.name, wp.state, "process", None, note=f"idle: {why}")],
                          evidence=_thread_lines(t) + [f"{who} holds the {'write' if reading else 'read'} end; "
                                                       f"it is idle: {v.summary}; {why}"],
                          rule="pipe_feed")
    return None


def _outcome(e: Engine, p: ProcessInfo, t: ThreadWait) -> Optional[Tuple[int, Verdict]]:
    """What one owed wait of ``t`` amounts to, with a rank (higher = worse):
    4 blocked on something stuck, 3 blocked on an idle peer, 2 waits for a
    working peer, 1 waits for idle children (a supervisor) or for work."""
    g = e.g
    if _pipe_peers(t):
        out = _feed_outcome(e, p, t)
        if out is not None:
            return out
    if t.kind == "child" or (t.edges and all(x.kind == "child" for x in t.edges)):
        kids = [int(x.target[2:]) for x in t.edges if x.target.startswith("p:")]
        return _children_outcome(e, p, t, kids)
    path = best_path(g, t.node)
    i = _first_other(e, path, p.pid)
    if i is None:
        if len(path) > 1 and path[-1][0].startswith("r:"):
            # the chain leaves the machine (or this network namespace: a container):
            # the peer there owes what it waits for; how that peer is cannot be seen
            peer = path[-1][0][2:]
            return 3, Verdict("blocked", f"thread {t.tid} ({t.label}) blocked{_since(t)} on {t.resource}; the "
                              f"peer {peer} is outside this machine (or in another network namespace): whether "
                              "it works, is stuck or has nothing to send cannot be seen from here",
                              _root_of(g, path, t), "medium", chain=chain_links(g, path),
                              evidence=_path_lines(e, path), soft=True)
        return None  # the chain stays inside this process (its own threads): another rule
    other = g.pid_of(path[i][0])
    assert other is not None
    v = e.verdict(other)
    edge = path[i - 1][1] if i > 0 else None
    kind = edge.kind if edge is not None and edge.kind else (t.kind or "unknown")
    op = g.processes.get(other)
    who = process_words(op) if op is not None else f"pid {other}"
    lines = _path_lines(e, path)
    since = _since(t)
    if v is not None and v.verdict in ("progressing", "busy"):
        chain = chain_links(g, path[:i] + [(path[i][0], None)])
        tid = v.root_cause.tid if v.root_cause.pid == other else other
        return 2, Verdict(v.verdict, f"waits for {who}, which is {'working' if v.verdict == 'progressing' else 'on CPU'}: "
                          + v.summary, RootCause(other, tid, kind if kind in KINDS else "unknown",
                                                 edge.resource if edge is not None else t.resource),
                          "high" if v.confidence == "high" else "medium", chain=chain,
                          evidence=lines + v.evidence[:3])
    if v is not None and v.verdict == "idle" and op is not None and kind in ("pipe", "socket"):
        # every holder of the other end, not only the one the chain went to (a server's
        # end is often held by two processes: a monitor and its session child)
        for q in [op] + [e.g.processes[x] for x in _edge_pids(t) if x != other and x in e.g.processes]:
            qv = e.verdict(q.pid) if q is not op else v
            if qv is None or qv.verdict != "idle":
                continue
            mutual = [x for x in e.threads(q) if x.work_wait and p.pid in x.work_from
                      and not _also_accepts(e.g, x)]
            if mutual:  # each side waits for the other's next message: an idle conversation
                x = mutual[0]
                qwho = process_words(q)
                return 1, Verdict("idle", f"not hung: an idle conversation: it waits for {qwho}, which waits for "
                                  f"its next request ({x.work_wait})",
                                  RootCause(p.pid, t.tid, kind, t.resource), "high",
                                  chain=[_link(t, {"kind": kind, "resource": t.resource})],
                                  evidence=lines + [f"thread {x.tid} of pid {q.pid} waits for {x.work_wait}"],
                                  rule="conversation")
    if v is not None and v.verdict == "idle" and op is not None and kind == "socket" and t.peer_inodes:
        work = _asks_us(e, op, t)
        if work:  # the peer is the side that asks: this end serves it (a privilege-separation monitor)
            return 1, Verdict("idle", f"not hung: thread {t.tid} ({t.label}) waits for {who} to ask on "
                              f"{t.resource}: {who} is idle, waits for {work}, and does not wait on its end of "
                              "this connection -- it is the side that asks, and this one serves it",
                              RootCause(p.pid, t.tid, kind, t.resource), "medium",
                              chain=[_link(t, {"kind": kind, "resource": t.resource})],
                              evidence=lines + [f"{who}: {v.summary}; none of its threads waits on "
                                                + ", ".join(f"socket:[{i}]" for i in t.peer_inodes)],
                              rule="conversation")
    if v is not None and v.verdict == "idle" and kind == "pipe" and any(x.target == p.node for x in t.edges):
        # the process holds the write end itself (a result or notification channel its
        # own threads also write to), and the other writers are idle: nothing is owed
        return 1, Verdict("idle", f"not hung: thread {t.tid} ({t.label}) reads {t.resource}; this process "
                          f"holds the write end itself and the other writer, {who}, is idle: {v.summary}",
                          RootCause(p.pid, t.tid, kind, t.resource), "medium",
                          chain=[_link(t, {"kind": kind, "resource": t.resource})],
                          evidence=lines + [f"{who}: {v.summary}"])
    if v is not None and v.verdict == "idle" and kind == "socket" and op is not None and op.ppid == p.pid \
            and i > 0 and _child_stdio(e, path[i - 1][0], other):
        # the other end is its child's standard output or error (a socketpair, as
        # libuv spawns children): it waits for what the child writes or its exit,
        # as a parent reading a child's pipe or in wait4 does -- judged by the child
        out = _children_outcome(e, p, t, [other])
        if out is not None:
            return out
    holder = kind in LOCK_KINDS and v is not None and v.soft
    if v is not None and (v.verdict == "idle" or holder):
        if kind in LOCK_KINDS:
            # the lock's holder is where the lock is stuck: one that waits by design, or
            # one that is idle (what it waits for itself -- a child it runs while holding
            # the lock, a timer -- is not what this thread waits for: the release is)
            chain = chain_links(g, path[:i] + [(path[i][0], None)])
            htid = int(path[i][0][2:]) if path[i][0].startswith("t:") else other
            root = RootCause(other, htid, kind, edge.resource if edge is not None else t.resource)
            end = f"holds it and is itself blocked: {v.summary}" if holder else _peer_idle_words(kind)
        else:
            chain = chain_links(g, path)
            root = _root_of(g, path, t)
            end = _peer_idle_words(kind, writing=bool(t.drained_by) or t.syscall in _WRITES,
                                   connecting=t.syscall == "connect" or "(SYN_SENT)" in t.resource,
                                   unaccepted=edge is not None and edge.resource.startswith("listening socket"))
        return 3, Verdict("blocked", f"thread {t.tid} ({t.label}) blocked{since} on {t.resource}; {who} {end}",
                          root, "high" if t.window_s is not None else "medium", chain=chain,
                          evidence=lines + [f"{who}: {v.summary}"] + v.evidence[:2], soft=not holder)
    if v is not None and v.hung:
        chain = chain_links(g, path[:i]) + list(v.chain)
        return 4, Verdict("blocked", f"thread {t.tid} ({t.label}) blocked{since} on {t.resource}; "
                          f"{who} is {v.verdict.upper()}: {v.summary}", v.root_cause, v.confidence,
                          chain=chain, evidence=lines + v.evidence)
    # the other end is not observed, or leads back here (a cycle not all waiting)
    chain = chain_links(g, path)
    root = _root_of(g, path, t)
    end = end_note(g, path[-1][0])
    return 4, Verdict("blocked", f"thread {t.tid} ({t.label}) blocked{since} on {t.resource}; at the end "
                      f"of the chain, {g.node_label(path[-1][0])}: {end}", root, "medium", chain=chain,
                      evidence=lines)


def _also_accepts(g: WaitGraph, x: ThreadWait) -> bool:
    """``x`` watches a listening socket beside its connections: an event loop
    serving many clients.  That it also watches a client's connection says
    nothing about whose turn it is on it (a request it has not answered is
    watched the same way), so it is no sign of an idle conversation; a thread
    waiting on that connection alone (a session process, a thread per client)
    is."""
    return any(i in g.sockets and getattr(g.sockets[i], "state", "") == "LISTEN" for i in x.watches)


def _child_stdio(e: Engine, node: str, child: int) -> bool:
    """The sockets thread ``node`` waits on have their other end at the child's
    fd 0, 1 or 2 (its standard streams)."""
    t = e.g.threads.get(int(node[2:])) if node.startswith("t:") else None
    return t is not None and any(int(h[0]) == child and int(h[1]) in (0, 1, 2)
                                 for i in t.peer_inodes for h in e.g.holders.get(i, []))


def _edge_pids(t: ThreadWait) -> List[int]:
    return [int(x.target[2:]) for x in t.edges if x.target.startswith("p:")]


def _asks_us(e: Engine, q: ProcessInfo, t: ThreadWait) -> str:
    """What peer ``q`` waits for, when it waits for work elsewhere (input, clients,
    a terminal -- with no timeout) and none of its threads waits on its end of
    ``t``'s socket: then ``q`` is not about to answer ``t``, it is the one that
    would ask (``t`` serves it).  A server that owes ``t`` a reply keeps watching
    the connection (an event loop polls every client), or works, or waits with a
    timeout on what it needs to answer.  "" when not so."""
    mine = set(t.peer_inodes)
    threads = e.threads(q)
    if any(mine & set(x.watches) for x in threads):
        return ""
    for x in threads:
        if x.activity == WAITING and x.input_wait and x.work_wait and not x.has_timeout:
            return x.work_wait
    return ""


#: calls that wait for the other end to make room (a full pipe or send buffer)
_WRITES = ("write", "writev", "pwrite64", "pwritev", "pwritev2", "sendto", "sendmsg", "sendmmsg", "sendfile",
           "splice")


def _peer_idle_words(kind: str, writing: bool = False, connecting: bool = False,
                     unaccepted: bool = False) -> str:
    if kind in ("file-lock", "mutex", "futex", "db-lock"):
        return "holds it and is alive but idle: it is not about to release it"
    if kind == "vfork":
        return "is alive but has not called exec or exit"
    if connecting:
        return "is alive but does not accept connections (its listen backlog is full)"
    if unaccepted:
        return "is alive but has not accepted the connection (it waits in the listen backlog)"
    if writing:
        return "is alive but does not read its end -- possibly by design (it reads when it is ready)"
    return ("is alive and has nothing to send -- possibly by design (a blocking pop, a long poll, "
            "a subscription, a sleep in a query)")


def _since(t: ThreadWait) -> str:
    if t.blocked_for_s is None:
        return ""
    return f" for {'' if t.blocked_exact else '≥ '}{secs(t.blocked_for_s)}"


def _children_outcome(e: Engine, p: ProcessInfo, t: ThreadWait, kids: List[int]) -> Optional[Tuple[int, Verdict]]:
    """A wait for children: as hung as the worst child, working when one works,
    idle (a supervisor) when they are all healthy and idle."""
    g = e.g
    seen = [(c, e.verdict(c)) for c in kids]
    # a zombie child waits for this process to collect it: that is this process's doing
    # (the zombie's own verdict says so), not something this process waits for
    seen = [(c, v) for c, v in seen if v is not None and not (v.verdict == "zombie" and v.root_cause.pid == p.pid)]
    if not seen:
        return None
    me = ChainLink(p.pid, t.tid, t.label, t.state, t.activity, {"kind": "child", "resource": t.resource},
                   location=python_location(t))
    hung = [(c, v) for c, v in seen if v.hung]
    if hung:
        c, v = hung[0]
        cp = g.processes[c]
        return 4, Verdict("blocked", f"thread {t.tid} ({t.label}) waits{_since(t)} for child "
                          f"{process_words(cp)}, which is {v.verdict.upper()}: {v.summary}", v.root_cause,
                          v.confidence, chain=[me] + list(v.chain), evidence=_thread_lines(t) + v.evidence)
    working = [(c, v) for c, v in seen if v.verdict in ("progressing", "busy")]
    if working:
        c, v = next(((c, v) for c, v in working if v.verdict == "busy"), working[0])
        cp = g.processes[c]
        tid = v.root_cause.tid if v.root_cause.pid == c else c
        return 2, Verdict(v.verdict, f"waits for child {process_words(cp)}, which is "
                          f"{'working' if v.verdict == 'progressing' else 'on CPU'}: {v.summary}",
                          RootCause(c, tid, "child", f"child pid {c}"), v.confidence,
                          chain=[me] + v.chain[:1], evidence=_thread_lines(t) + v.evidence[:3])
    names = ", ".join(f"pid {c} ({g.processes[c].name}: {v.verdict})" for c, v in seen[:4])
    return 1, Verdict("idle", f"not hung: waits for its children, which are healthy and idle ({names})",
                      RootCause(p.pid, t.tid, "child", t.resource), "high", chain=[me],
                      evidence=[f"thread {t.tid} ({t.label}) waits for children {names}"])


def rule_owed_waits(e: Engine, p: ProcessInfo, threads: List[ThreadWait]) -> Optional[Verdict]:
    """Threads waiting without a timeout on what another process owes them
    (and readers fed by their parent, when the parent is itself stuck)."""
    best: Optional[Tuple[Tuple[int, int, int], Verdict]] = None
    for t in threads:
        if t.activity == WAITING and t.work_wait and t.feed_from and t.kind == "pipe":
            out = _feed_outcome(e, p, t)     # only a stuck writer makes this wait for work owed
        elif not _owed(t):
            continue
        else:
            out = _outcome(e, p, t)
        if out is None:
            continue
        rank, v = out
        key = (rank, int(t.tid == p.pid), len(v.chain))
        if best is None or key > best[0]:
            best = (key, v)
    return best[1] if best is not None else None


def rule_owned_lock_inside(e: Engine, p: ProcessInfo, threads: List[ThreadWait]) -> Optional[Verdict]:
    """A thread waiting all window, without a timeout, for a lock whose owner is
    recorded (a glibc mutex, a Java monitor) and is another thread of this
    process that is not on CPU (it sleeps, or waits on something of its own,
    while it holds the lock): blocked on that holder, which is not about to
    release it.  (A holder that waits on another process: ``rule_owed_waits``.)"""
    g = e.g
    for t in sorted(threads, key=lambda x: (x.tid != p.pid, x.tid)):
        if t.activity != WAITING or t.work_wait:
            continue
        lock = next((x for x in t.edges if x.kind == "mutex" and x.exact and x.target.startswith("t:")), None)
        h = g.threads.get(int(lock.target[2:])) if lock is not None else None
        if h is None or h.pid != p.pid or h.activity == RUNNING:
            continue
        path = best_path(g, t.node)
        if _first_other(e, path, p.pid) is not None or path[-1][0].startswith("r:"):
            continue
        return Verdict("blocked", f"thread {t.tid} ({t.label}) blocked{_since(t)} on {t.resource}; its holder, "
                       f"thread {h.tid} ({h.label}) of this process, {end_note(g, h.node)} -- "
                       "it is not about to release it",
                       RootCause(p.pid, h.tid, "mutex", lock.resource), "high" if g.window_s else "medium",
                       chain=chain_links(g, [(t.node, lock), (h.node, None)]),
                       evidence=_thread_lines(t) + _thread_lines(h))
    return None


def rule_lock_in_own_threads(e: Engine, p: ProcessInfo, threads: List[ThreadWait]) -> Optional[Verdict]:
    """Threads stuck acquiring locks while other threads of the process still
    run: blocked on a lock whose holder is not recorded (Python locks keep no
    owner), so the holder can only be guessed from the other stacks."""
    g = e.g
    held = []
    for t in threads:
        if t.activity != WAITING or t.work_wait or not _lock_acquire(t):
            continue
        path = best_path(g, t.node)
        if path[-1][0] == p.node and "alive" in g.process_end_reason(p.pid):
            held.append(t)
    if not held:
        return None
    first = min(held, key=lambda t: t.tid)
    names = ", ".join(f"{t.tid} ({t.label}) {python_location(t)}" for t in held)
    summary = (f"thread(s) {names} wait{_since(first)} to acquire a lock that another thread of this "
               "process holds; the lock records no owner, and other threads are still active, "
               "so this is either a lock held for long or a deadlock among these threads")
    chain = [ChainLink(t.pid, t.tid, t.label, t.state, t.activity, {"kind": "futex", "resource": t.resource},
                       location=python_location(t)) for t in held[:1]]
    chain.append(ChainLink(p.pid, None, p.name, p.state, "process", None, note=g.process_end_reason(p.pid)))
    ev: List[str] = []
    for t in held:
        ev.extend(_thread_lines(t))
    return Verdict("blocked", summary, RootCause(p.pid, None, "futex", "; ".join(t.resource for t in held)),
                   "low", chain=chain, evidence=ev)


#: Python files of job queues: a futex wait under one of these frames is a wait for the next job
_QUEUE_FILES = ("queues.py", "queue.py")


def _queue_get(t: ThreadWait) -> str:
    """"multiprocessing/queues.py get": the queue call a futex wait happens in
    (taking the queue's read lock, or waiting for an item), "" when not."""
    if t.kind != "futex" or not t.python_stack:
        return ""
    for fr in t.python_stack[:4]:
        f = str(fr.get("file") or "")
        fn = str(fr.get("function") or "").rpartition(".")[2]
        if f.endswith(_QUEUE_FILES) and fn in ("get", "_get", "get_nowait", "recv"):
            parts = f.replace("\\", "/").split("/")
            return f"{'/'.join(parts[-2:])} {fr.get('function')}"
        if not f.endswith(_WAIT_MACHINERY):
            return ""
    return ""


def _shared_turn(e: Engine, p: ProcessInfo, t: ThreadWait) -> str:
    """A shared futex (no owner recorded) waited on by a process whose sibling
    waits for work on a pipe or listener they both hold: the lock that gives
    one worker at a time the read end of a shared queue (multiprocessing's
    queues, a prefork server's accept mutex).  Its turn comes with the work."""
    if t.kind != "futex" or "shared futex" not in t.end_reason:
        return ""
    g = e.g
    mine = {f.inode for f in g.fds.get(p.pid, []) if f.kind in ("pipe", "socket") and f.inode is not None}
    for q in g.processes.values():
        if q.pid == p.pid or q.ppid != p.ppid or not any(x.work_wait for x in e.threads(q)):
            continue
        shared = mine & {f.inode for f in g.fds.get(q.pid, []) if f.kind in ("pipe", "socket")}
        if shared:
            w = next(x.work_wait for x in e.threads(q) if x.work_wait)
            return f"its sibling pid {q.pid} holds the same work source and waits for {w}"
    return ""


def _lock_acquire(t: ThreadWait) -> bool:
    """A thread waiting forever on an unowned futex from its own code (a
    ``with lock:`` or ``lock.acquire()`` at its innermost Python frame), not
    from Condition/Event/Queue waits, which wait for work."""
    if t.kind != "futex" or t.join or not t.python_stack:
        return False
    top = str(t.python_stack[0].get("file") or "")
    return not top.endswith(_WAIT_MACHINERY + _COLLECTIVE_FILES)


# -- polling waiters ------------------------------------------------------------

def _failures(e: Engine, t: ThreadWait) -> List[Dict[str, Any]]:
    return [r for r in e.g.stats.get(t.tid, []) if r["errors"] >= RETRIES]


def rule_polling(e: Engine, p: ProcessInfo, threads: List[ThreadWait], spinning: bool = False) -> Optional[Verdict]:
    """A thread that wakes only to retry and fail: a lock refused (F_SETLK,
    LOCK_NB), a connection refused, a wait timing out while the child that
    should answer is stuck.  It is blocked on what it polls for."""
    for t in sorted(threads, key=lambda t: (t.tid != p.pid, t.tid)):
        if t.activity not in ((WAKING, TIMED, RUNNING) if spinning else (WAKING, TIMED)):
            continue
        timed_out = _timed_out_polls(e, t)
        if timed_out is not None and t.poll_edges:
            v = _polled_fds(e, p, t, timed_out)
            if v is not None:
                return v
        for r in _failures(e, t):
            call, err = r["syscall"], -int(r["last_err"])
            tries = f"{r['errors']} of {r['count']} {call}() calls failed in the window (last: {_sig_words(err)})"
            if call in LOCK_CALLS and err in (EAGAIN, EACCES):
                v = _polled_lock(e, p, t, r, tries)
                if v is not None:
                    return v
            if call == "connect" and err in (ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, ENETUNREACH):
                addr = str(r.get("addr") or "")
                where = addr or "the address it wants"
                if err == ECONNREFUSED:
                    what, words = f"nothing listening on {where}", f"nothing accepts connections on {where}"
                else:
                    what, words = f"nothing answering at {where}", f"{where} does not answer ({_sig_words(err)})"
                return Verdict("blocked", f"thread {t.tid} ({t.label}) retries a connection that fails: "
                               f"{tries}; {words}",
                               RootCause(None, None, "socket", f"{what} (connection {'refused' if err == ECONNREFUSED else 'failing'})"),
                               "high" if addr else "medium",
                               chain=[_link(t, {"kind": "socket", "resource": f"a connection to {where}"})],
                               evidence=[f"probes: thread {t.tid}: {tries}"
                                         + (f"; the last to {addr}" if addr else "")])
            if call in ("futex", "futex_wait") and err == ETIMEDOUT:
                for c in p.children:
                    v = e.verdict(c)
                    if v is not None and v.hung:
                        return Verdict("blocked", f"thread {t.tid} ({t.label}) polls with timeouts ({tries}) "
                                       f"while its child pid {c} is {v.verdict.upper()}: {v.summary}",
                                       v.root_cause, "medium", chain=[_link(t)] + list(v.chain),
                                       evidence=[f"probes: thread {t.tid}: {tries}"] + v.evidence)
    return _timed_reply(e, p, threads)


def _timed_reply(e: Engine, p: ProcessInfo, threads: List[ThreadWait]) -> Optional[Verdict]:
    """A client waiting with a timeout for its peer to send (a poll on its
    connection, as curl, socket timeouts and event loops with timers wait),
    nothing arriving all window: the same wait as a blocking read, judged the
    same way -- by the peer: blocked on a stuck one, waiting on a working one,
    blocked on an idle one ("possibly by design") unless the peer waits for
    this client's next request (an idle conversation).  Only for the main
    thread, or a thread the rest of the process waits on: a helper thread's
    heartbeat on an idle connection says nothing of the process's progress."""
    g = e.g
    for t in sorted(threads, key=lambda t: (t.tid != p.pid, t.tid)):
        if t.activity not in (WAKING, TIMED) or not t.poll_edges or t.timed_work:
            continue
        if t.tid != p.pid and any(x.activity in (RUNNING, WAKING, TIMED) for x in threads if x is not t) \
                and not _waited_on_amid_housekeeping(e, p, t, threads):
            continue
        edges = [x for x in t.poll_edges if x.target != p.node]
        if not edges or any(x.kind != "socket" or not x.target.startswith("p:") for x in edges):
            continue
        rows = [r for r in g.stats.get(t.tid, []) if r["syscall"] in POLL_CALLS]
        if any(int(r.get("ret_sum") or 0) for r in rows) or (p.data_bytes or 0) > 0:
            continue           # a poll returned ready, data came: it is talking
        # woke up without the probes: whether a poll returned ready cannot be seen; a
        # client whose reply does not come and one polling on a timer look the same
        unsure = t.activity == WAKING and not g.bpf
        if unsure and p.io_bytes:
            continue
        n = sum(int(r["count"]) for r in rows)
        tries = (f"{n} of {n} {'/'.join(sorted({r['syscall'] + '()' for r in rows}))} calls returned with "
                 "nothing ready in the window" if n else f"no wake-up in the {secs(t.window_s or g.window_s or 0)} window")
        if unsure:
            tries = f"woke up {t.wakeups or 0} times, no bytes read or written (/proc; the probes were off)"
        res = edges[0].resource
        me = _link(t, {"kind": "socket", "resource": res})
        for q in sorted({int(x.target[2:]) for x in edges}):
            v = e.verdict(q)
            qp = g.processes.get(q)
            if v is None or qp is None or _through(v, p.pid):
                continue
            who = process_words(qp)
            ev = [f"thread {t.tid} ({t.label}) polls {res} with a timeout: {tries}"] + _thread_lines(t)
            if v.hung:
                return Verdict("blocked", f"thread {t.tid} ({t.label}) waits with timeouts for {res}; {who} is "
                               f"{v.verdict.upper()}: {v.summary}", v.root_cause, v.confidence,
                               chain=[me] + list(v.chain), evidence=ev + v.evidence[:3])
            if v.verdict in ("progressing", "busy"):
                tid = v.root_cause.tid if v.root_cause.pid == q else q
                return Verdict(v.verdict, f"waits for {who}, which is "
                               f"{'working' if v.verdict == 'progressing' else 'on CPU'}: {v.summary}",
                               RootCause(q, tid, "socket", res), "medium", chain=[me] + v.chain[:1],
                               evidence=ev + v.evidence[:3])
            mutual = [x for x in e.threads(qp) if x.work_wait and p.pid in x.work_from
                      and not _also_accepts(g, x)]
            if mutual:
                return None     # each side waits for the other's next message
            if unsure:
                return Verdict("idle", f"idle or waiting for a reply, which /proc alone cannot tell apart: thread "
                               f"{t.tid} ({t.label}) polls {res} with a timeout, woke up {t.wakeups or 0} times "
                               f"and moved no data; {who} is idle; run without --no-bpf: the probes see whether "
                               "its polls returned anything",
                               RootCause(p.pid, t.tid, "socket", res), "low", chain=[me],
                               evidence=ev + [f"{who}: {v.summary}"])
            return Verdict("blocked", f"thread {t.tid} ({t.label}) waits with timeouts for {res} ({tries}); "
                           f"{who} {_peer_idle_words('socket')}",
                           RootCause(q, q, "socket", res), "medium",
                           chain=[me, ChainLink(q, q, qp.name, qp.state, "process", None, note=f"idle: {v.summary}")],
                           evidence=ev + [f"{who}: {v.summary}"] + v.evidence[:2], soft=True)
    return None


#: calls that only keep time (a timed futex wait, a sleep): no descriptor, nobody else's work
_TIMEKEEPING = ("futex", "futex_wait", "nanosleep", "clock_nanosleep")


def _waited_on_amid_housekeeping(e: Engine, p: ProcessInfo, t: ThreadWait, threads: List[ThreadWait]) -> bool:
    """The process waits on ``t``: its main thread sleeps without a timeout on
    its own threads (a join, a future's result), and the others only keep time
    -- timed futex waits and sleeps on no descriptor, off CPU: a runtime's
    housekeeping (GC, JIT compilers, periodic tasks, a pool's idle timeout), no
    sign of work.  A JVM's HttpClient awaiting a reply polls in its selector
    thread while the caller parks."""
    g = e.g
    main = g.threads.get(p.pid)
    if main is None or main is t or main.activity != WAITING or main.work_wait or not main.edges:
        return False
    if any(g.pid_of(x.target) != p.pid for x in main.edges):
        return False
    for x in threads:
        if x is t or x is main or x.activity == WAITING:
            continue
        if x.activity == RUNNING or x.poll_edges or x.timed_work or x.syscall not in _TIMEKEEPING:
            return False
    return True


#: waits on descriptors with a timeout; returning 0 means "timed out, nothing ready"
POLL_CALLS = ("poll", "ppoll", "select", "pselect6", "epoll_wait", "epoll_pwait", "epoll_pwait2")


def _timed_out_polls(e: Engine, t: ThreadWait) -> Optional[str]:
    """"3 of 3 poll() calls timed out", when every wait on descriptors the
    thread completed in the window (at least RETRIES) returned nothing ready."""
    rows = [r for r in e.g.stats.get(t.tid, []) if r["syscall"] in POLL_CALLS]
    n = sum(int(r["count"]) for r in rows)
    if n < RETRIES or any(int(r.get("ret_sum") or 0) for r in rows):
        return None
    calls = "/".join(sorted({f"{r['syscall']}()" for r in rows}))
    return f"{n} of {n} {calls} calls returned with nothing ready (timed out) in the window"


def _polled_fds(e: Engine, p: ProcessInfo, t: ThreadWait, tries: str) -> Optional[Verdict]:
    """A thread polling descriptors with timeouts, nothing ever ready: blocked
    on whoever should make them ready when that one is hung; when only this
    process still holds the other end and a child of it has exited, the
    producer is gone and nothing will ever arrive."""
    g = e.g
    pids = sorted({int(x.target[2:]) for x in t.poll_edges if x.target.startswith("p:")})
    others = [q for q in pids if q != p.pid]
    res = t.poll_edges[0].resource if t.poll_edges else t.resource
    ev = [f"probes: thread {t.tid}: {tries}"] + _thread_lines(t)
    for q in others:
        v = e.verdict(q)
        if v is not None and v.hung:
            qp = g.processes.get(q)
            who = process_words(qp) if qp is not None else f"pid {q}"
            return Verdict("blocked", f"thread {t.tid} ({t.label}) polls {res} with timeouts ({tries}); "
                           f"{who}, which should make it ready, is {v.verdict.upper()}: {v.summary}",
                           v.root_cause, v.confidence,
                           chain=[_link(t, {"kind": t.poll_edges[0].kind, "resource": res})] + list(v.chain),
                           evidence=ev + v.evidence[:3])
    if others:
        return None
    dead = [c for c in p.children if c in g.processes and g.processes[c].state in ("Z", "X")]
    if not dead:
        return None
    c = dead[0]
    cp = g.processes[c]
    return Verdict("blocked", f"thread {t.tid} ({t.label}) polls {res} with timeouts ({tries}), and no other "
                   f"process holds the other end any more: its child {process_words(cp)} has exited "
                   "(a zombie, not reaped); the producer is gone, nothing will arrive",
                   RootCause(c, c, t.poll_edges[0].kind if t.poll_edges[0].kind in KINDS else "unknown",
                             f"{res}: the producer pid {c} exited"), "high",
                   chain=[_link(t, {"kind": t.poll_edges[0].kind, "resource": res}),
                          ChainLink(c, c, cp.name, cp.state, ZOMBIE, None, note="exited (zombie)")],
                   evidence=ev + [f"/proc/{c}/stat: state Z (exited, exit status not collected)"])


def _polled_lock(e: Engine, p: ProcessInfo, t: ThreadWait, r: Dict[str, Any], tries: str) -> Optional[Verdict]:
    """The holder of the lock a thread keeps failing to take, from /proc/locks."""
    g = e.g
    fds = g.fds.get(p.pid, [])
    fd = int(r["last_err_arg0"])
    files = [f for f in fds if f.fd == fd] or [f for f in fds if f.kind == "file"]
    for f in files:
        held = [lk for lk in g.locks if not lk.waiting and lk.inode == f.inode and lk.pid not in (p.pid, 0, -1)
                and lk.pid > 0]
        if not held:
            continue
        lk = held[0]
        line = (f"/proc/locks: {lk.id}: {lk.kind} {lk.mode} {lk.access} pid {lk.pid} {lk.dev}:{lk.inode} "
                f"{lk.start}-{lk.end} (held) on {f.target}")
        hp = g.processes.get(lk.pid)
        who = process_words(hp) if hp is not None else f"pid {lk.pid}"
        hv = e.verdict(lk.pid) if hp is not None else None
        state = f"; {who} is {hv.verdict.upper()}: {hv.summary}" if hv is not None else ""
        chain = [_link(t, {"kind": "file-lock", "resource": f"{lk.kind} {lk.access.lower()} lock on {f.target}"})]
        if hv is not None and hv.hung and not hv.soft:
            root = hv.root_cause
            chain += list(hv.chain)
        else:
            root = RootCause(lk.pid, lk.pid, "file-lock", f"{lk.kind} {lk.access.lower()} lock on {f.target}, "
                             f"held by pid {lk.pid}")
            if hp is not None:
                ht = g.threads.get(lk.pid)
                chain.append(ChainLink(lk.pid, lk.pid, hp.name, hp.state, ht.activity if ht else "process", None,
                                       note=end_note(g, f"p:{lk.pid}")))
        return Verdict("blocked", f"thread {t.tid} ({t.label}) polls for a lock on {f.target}: {tries}, "
                       f"sleeping between attempts; {who} holds it{state}", root, "high", chain=chain,
                       evidence=[f"probes: thread {t.tid}: {tries}", line]
                       + (hv.evidence[:2] if hv is not None else []))
    return None


# -- distributed jobs ---------------------------------------------------------------

def _in_collective(t: ThreadWait) -> str:
    for fr in t.python_stack:
        if str(fr.get("file") or "").endswith(_COLLECTIVE_FILES):
            return str(fr.get("function") or "?")
    return ""


def _job_key(p: ProcessInfo) -> Optional[Tuple[str, ...]]:
    env = p.env
    if "RANK" not in env:
        return None
    return (env.get("TORCHELASTIC_RUN_ID", ""), env.get("MASTER_ADDR", ""), env.get("MASTER_PORT", ""),
            env.get("WORLD_SIZE", ""))


def rule_collective(e: Engine, p: ProcessInfo, threads: List[ThreadWait]) -> Optional[Verdict]:
    """A rank waiting in a collective waits for the ranks that are not in it."""
    key = _job_key(p)
    if key is None:
        return None
    inside = [(t, _in_collective(t)) for t in threads]
    inside = [(t, fn) for t, fn in inside if fn and t.activity != RUNNING]
    if not inside:
        return None
    t, fn = inside[0]
    g = e.g
    if max(p.io_bytes or 0, p.data_bytes or 0) >= COLLECTIVE_QUIET_BYTES:
        return None  # data moved over the window: collectives complete, it was only caught inside one
    peers = [q for q in g.processes.values() if q.pid != p.pid and _job_key(q) == key
             and q.env.get("RANK") != p.env.get("RANK")]
    out = []
    for q in sorted(peers, key=lambda q: int(q.env.get("RANK", "0") or 0)):
        qin = [x for x in e.threads(q) if _in_collective(x)]
        if qin:
            continue
        v = e.verdict(q.pid)
        out.append((q, v))
    rank = p.env.get("RANK")
    ev = [f"thread {t.tid} ({t.label}) is in torch.distributed {fn} ({python_location(t)}); "
          f"rank {rank} of {p.env.get('WORLD_SIZE', '?')} (environment)"]
    for q in peers:
        qin = [x for x in e.threads(q) if _in_collective(x)]
        ev.append(f"rank {q.env.get('RANK')} is pid {q.pid}: "
                  + (f"in {_in_collective(qin[0])} too" if qin else "not in a collective"))
    if not out:
        # every rank seen here waits in it too: what holds them back is a rank elsewhere
        world = p.env.get("WORLD_SIZE", "?")
        here = sorted(int(q.env.get("RANK", "0") or 0) for q in peers + [p])
        return Verdict("blocked", f"rank {rank} waits in {fn} with no data moving; the ranks on this machine "
                       f"({', '.join(map(str, here))} of world size {world}) are all in it: the rank holding "
                       "them back runs elsewhere (another node), or has exited",
                       RootCause(None, None, "collective", f"the ranks of world size {world} not on this machine"),
                       "medium", chain=[_link(t, {"kind": "collective", "resource": f"{fn}: the other ranks"})],
                       evidence=ev)
    q, v = out[0]
    doing = f"{v.verdict}: {v.summary}" if v is not None else "not observed"
    qmain = g.threads.get(q.pid)
    if qmain is not None and qmain.python_stack:
        doing = f"its main thread is {qmain.activity} {python_location(qmain)} ({doing})"
    root = RootCause(q.pid, q.pid, "collective", f"rank {q.env.get('RANK')} (pid {q.pid}) has not joined "
                     f"{fn}; it is {doing}")
    chain = [_link(t, {"kind": "collective", "resource": f"{fn}: the other ranks to join"}),
             ChainLink(q.pid, q.pid, q.name, q.state, "process", None,
                       note=f"rank {q.env.get('RANK')}, not in a collective: {doing}")]
    return Verdict("blocked", f"rank {rank} waits in {fn} for rank {q.env.get('RANK')} "
                   f"({process_words(q)}), which does not call it: {doing}", root, "high", chain=chain,
                   evidence=ev + (v.evidence[:2] if v is not None else []))


# -- supervisors, waits for work ---------------------------------------------------

def rule_supervisor(e: Engine, p: ProcessInfo, threads: List[ThreadWait]) -> Optional[Verdict]:
    """A process waiting only for signals or work whose children work (or
    are hung) is as its children are; with idle children the idle rule says so."""
    kids = [c for c in p.children]
    if not kids or not all(t.work_wait or t.activity in (WAKING, TIMED) for t in threads):
        return None
    main = e.g.threads.get(p.pid) or threads[0]
    out = _children_outcome(e, p, main, kids)
    if out is None or out[1].verdict == "idle":
        return None
    v = out[1]
    if v.verdict in ("progressing", "busy"):
        v.summary = "a supervisor whose children work: " + v.summary
    return v


def rule_unresolved(e: Engine, p: ProcessInfo, threads: List[ThreadWait]) -> Optional[Verdict]:
    """A thread asleep all window with no timeout, on something the tool could
    not follow (a shared futex with no owner, an uninterruptible sleep, a call
    it does not resolve) and no wait for work: blocked, with what was seen."""
    stuck = [t for t in threads if t.activity == WAITING and not t.work_wait and not t.edges
             and not t.has_timeout]
    if not stuck:
        return None
    if any(t.activity in (WAKING, TIMED, RUNNING) for t in threads) and not any(t.tid == p.pid for t in stuck):
        return None  # a helper thread waiting while the main thread lives: not evidence of a hang
    t = next((x for x in stuck if x.tid == p.pid), stuck[0])
    queue = _queue_get(t) or _shared_turn(e, p, t)
    if queue:
        # the lock of a shared job queue: a sibling worker holds it while it waits
        # for the next job itself; this one waits for work too
        return Verdict("idle", f"not hung: thread {t.tid} ({t.label}) waits for work on a queue shared with "
                       f"other workers ({queue}): the queue's lock is held by a worker that waits for the next "
                       "job", RootCause(p.pid, t.tid, "unknown", t.resource or "a queue's lock"), "medium",
                       chain=[_link(t, note=end_note(e.g, t.node))], evidence=_thread_lines(t)
                       + [f"thread {t.tid} ({t.label}) is {python_location(t)}, inside {queue}"])
    if t.kind == "futex" and t.sharers:
        v = _shared_lock(e, p, t)
        if v is not None:
            return v
    # (a wait for children that names none it could find waits on what is out of sight: below)
    owed_kind = t.state == "D" or t.kind in ("futex", "mutex", "file-lock", "vfork", "block-io") \
        or (t.kind == "child" and "no matching child" not in t.end_reason) or t.end_kind is not None
    if not owed_kind:
        # a read on a pipe or socket whose other end is not visible (another PID or
        # network namespace), a call not followed: nothing shows that anyone owes it
        return Verdict("idle", f"not hung as far as can be seen: thread {t.tid} ({t.label}) waits{_since(t)} "
                       f"on {t.resource or t.syscall}, and who would end that wait could not be seen "
                       f"({end_note(e.g, t.node)})",
                       RootCause(p.pid, t.tid, "unknown", t.resource or f"{t.syscall or '?'}()"), "low",
                       chain=[_link(t, note=end_note(e.g, t.node))], evidence=_thread_lines(t))
    if t.syscall is None and t.kind == "unknown":
        summary = (f"thread {t.tid} ({t.label}) sleeps{_since(t)} with no wake-up seen; "
                   "what it waits on could not be read")
        conf = "low"
    else:
        summary = f"thread {t.tid} ({t.label}) blocked{_since(t)} on {t.resource}: {end_note(e.g, t.node)}"
        conf = "medium"
    kind = t.end_kind or t.kind or "unknown"
    return Verdict("blocked", summary, RootCause(p.pid, t.tid, kind if kind in KINDS else "unknown",
                                                 t.resource or f"{t.syscall or '?'}()"), conf,
                   chain=[_link(t, note=end_note(e.g, t.node))], evidence=_thread_lines(t))


def _shared_lock(e: Engine, p: ProcessInfo, t: ThreadWait) -> Optional[Verdict]:
    """A wait on a futex in shared memory that records no owner (a POSIX
    semaphore, a multiprocessing Lock): its holder is one of the other
    processes mapping that memory and not waiting on the same word.  Blocked on
    such a process that is stuck, or that is idle without waiting for work
    (it holds the lock and is not about to release it); waiting on one that
    works.  None when every candidate waits for work (a queue's turn) or none
    is seen: the caller says what it can."""
    g = e.g
    cands = []
    for q in t.sharers:
        qp = g.processes.get(q)
        if qp is None or qp.state in ("Z", "X"):
            continue
        if any(x.futex_key == t.futex_key and x.activity in (WAITING, TIMED) for x in e.threads(qp)):
            continue        # it waits for the same lock
        cands.append(qp)
    seen = [(q, e.verdict(q.pid)) for q in cands]
    seen = [(q, v) for q, v in seen if v is not None and not _through(v, p.pid)]
    if not seen:
        return None
    me = _link(t, {"kind": "futex", "resource": t.resource})
    names = ", ".join(f"pid {q.pid}" for q, _ in seen)
    what = f"{t.resource}, a lock in memory it shares with {names} (no owner is recorded)"
    ev = _thread_lines(t) + [f"of the processes mapping that memory, {names} do not wait on the futex: "
                             "the holder is among them"]
    hung = [(q, v) for q, v in seen if v.hung]
    if hung:
        q, v = hung[0]
        return Verdict("blocked", f"thread {t.tid} ({t.label}) blocked{_since(t)} on {what}; {process_words(q)} "
                       f"is {v.verdict.upper()}: {v.summary}", v.root_cause, "medium",
                       chain=[me] + list(v.chain), evidence=ev + v.evidence[:3])
    working = [(q, v) for q, v in seen if v.verdict in ("progressing", "busy")]
    if working:
        q, v = working[0]
        tid = v.root_cause.tid if v.root_cause.pid == q.pid else q.pid
        return Verdict(v.verdict, f"waits for {what}; {process_words(q)} is working: {v.summary}",
                       RootCause(q.pid, tid, "futex", t.resource), "medium", chain=[me] + v.chain[:1],
                       evidence=ev + v.evidence[:3])
    # (a sharer waiting for work that comes to it -- a listener, its parent's pipe, a
    # terminal -- takes its turn when the work comes; one waiting only for signals is parked)
    parked = [(q, v) for q, v in seen if v.verdict == "idle"
              and not any(x.work_wait and x.input_wait for x in e.threads(q))]
    if t.python_stack and not _lock_acquire(t):
        # a wait in Condition/Event/Queue machinery waits to be notified, not for a
        # release: a process that wakes by itself (or waits for work) may still notify it
        able = [(q, v, _can_act(e, q.pid, v)) for q, v in seen if v.verdict == "idle"]
        able = [(q, v, why) for q, v, why in able if why]
        if able:
            q, v, why = able[0]
            return Verdict("idle", f"not hung: thread {t.tid} ({t.label}) waits to be notified through "
                           f"{t.resource} ({python_location(t)}), shared with {names}; {process_words(q)} is idle "
                           f"and {why[3:] if why.startswith('it ') else why}: nothing is owed until it notifies",
                           RootCause(p.pid, t.tid, "futex", t.resource), "medium",
                           chain=[me, ChainLink(q.pid, q.pid, q.name, q.state, "process", None, note=f"idle: {why}")],
                           evidence=ev + [f"{process_words(q)}: {v.summary}"])
        parked = [(q, v) for q, v in parked if not _can_act(e, q.pid, v)]
    if not parked:
        return None
    q, v = parked[0]
    conf = "medium" if len(seen) == 1 else "low"
    return Verdict("blocked", f"thread {t.tid} ({t.label}) blocked{_since(t)} on {what}; {process_words(q)} "
                   f"{_peer_idle_words('futex')}", RootCause(q.pid, q.pid, "futex", t.resource), conf,
                   chain=[me, ChainLink(q.pid, q.pid, q.name, q.state, "process", None, note=f"idle: {v.summary}")],
                   evidence=ev + [f"{process_words(q)}: {v.summary}"] + v.evidence[:2], soft=True)


def rule_idle(e: Engine, p: ProcessInfo, threads: List[ThreadWait]) -> Verdict:
    """Nothing owed and nothing stuck: waiting for work, or sleeping with timeouts."""
    g = e.g
    main = g.threads.get(p.pid) or (threads[0] if threads else None)
    alive = [t for t in threads if t.activity in (WAKING, TIMED)]
    works = [t for t in threads if t.work_wait]
    bits, ev = [], []
    for t in works[:3]:
        bits.append(f"waits for {t.work_wait}")
        ev.append(f"thread {t.tid} ({t.label}) waits for {t.work_wait}")
    if len(works) > 3:
        bits.append(f"{len(works) - 3} more thread(s) wait for work")
    if p.listening and not any("listening" in t.work_wait for t in works):
        bits.insert(0, "a server waiting for clients on " + ", ".join(p.listening[:2]))
    if p.listening:
        ev.append("listens on " + ", ".join(p.listening[:4]))
    kids = [(c, e.verdict(c)) for c in p.children]
    kids = [(c, v) for c, v in kids if v is not None]
    if kids:
        ev.append("children: " + ", ".join(f"pid {c} {v.verdict}" for c, v in kids[:6]))
    if any(t.activity == TIMED for t in threads):
        bits.append("sleeps with timeouts")
    wake = sum(t.wakeups or 0 for t in threads)
    if wake:
        span = next((t.window_s for t in threads if t.window_s), None)
        bits.append(f"woke up {wake} times in {span or 0:.2f} s")
    internal = [t for t in threads if t.activity == WAITING and not t.work_wait]
    if internal:
        bits.append(f"{len(internal)} thread(s) wait on work from its own threads")
    # its own bytes: the probes' count of its read/write calls when they watched it
    # (/proc/PID/io also adds the I/O of children it reaped: a shell loop's `sleep`s)
    io = p.data_bytes if p.data_bytes is not None else (p.io_bytes or 0)
    if io and not p.listening and not works and not p.born_in_window:
        # (a process born in the window read its program and libraries: start-up, not work)
        # small but real I/O by a process that is no server waiting for work
        return Verdict("progressing", f"working slowly: {io} B read+written in the window",
                       RootCause(p.pid, main.tid if main else None, "unknown", f"{io} B of I/O"), "medium",
                       chain=[_link(main)] if main else [], evidence=ev)
    if io:
        ev.append(f"{io} B of housekeeping I/O in the window (below {WORK_BYTES // 1024} KiB)")
    lead = main if main in alive or main in works else (alive[0] if alive else (works[0] if works else main))
    for t in alive[:3]:
        ev.append(f"thread {t.tid} ({t.label}): {end_note(g, t.node)}")
    root = RootCause(p.pid, lead.tid if lead else None, "unknown",
                     (lead.resource or f"{lead.syscall or '?'}()") if lead else "")
    pollers = [t for t in alive if t.activity == WAKING and (t.wakeups or 0) >= RETRIES and not t.timed_work]
    if not g.bpf and pollers and not works and not p.listening:
        # Without the probes a polling waiter (a lock retried, a connection refused,
        # a queue poll timing out) and a periodic timer look the same: wake-ups,
        # no progress.  Not called hung, and not idle with confidence either.
        t = next((x for x in pollers if x.tid == p.pid), pollers[0])
        span = t.window_s or g.window_s or 0
        return Verdict("idle", f"idle or polling, which /proc alone cannot tell apart: thread {t.tid} ({t.label}) "
                       f"woke up {t.wakeups} times in {span:.2f} s without moving data or using CPU, "
                       f"and sleeps in {t.syscall or '?'}() between; a thread retrying something that fails "
                       "(a lock, a refused connection, a queue poll timing out) looks the same -- run without "
                       "--no-bpf: the probes see the failed attempts",
                       RootCause(p.pid, t.tid, "unknown", t.resource or f"{t.syscall or '?'}()"), "low",
                       chain=[_link(t, note=end_note(g, t.node))],
                       evidence=ev + [f"thread {t.tid} ({t.label}): {t.wakeups} voluntary context switches in "
                                      f"{span:.2f} s, no I/O, no CPU to speak of (/proc)"])
    return Verdict("idle", "not hung: " + (", ".join(bits) if bits else "no thread is stuck"), root,
                   "high" if (alive or works) and g.window_s else "medium",
                   chain=[_link(lead, note=end_note(g, lead.node))] if lead else [], evidence=ev)


RULES = (rule_zombie, rule_stopped, rule_deadlock, rule_working, rule_on_cpu, rule_collective, rule_owed_waits,
         rule_owned_lock_inside, rule_lock_in_own_threads, rule_polling, rule_supervisor, rule_unresolved, rule_idle)


# -- helpers ---------------------------------------------------------------------------

def _link(t: ThreadWait, waits: Optional[Dict[str, str]] = None, note: str = "") -> ChainLink:
    return ChainLink(t.pid, t.tid, t.label, t.state, t.activity, waits, note=note, location=python_location(t))


def _thread_lines(t: ThreadWait) -> List[str]:
    return [f"thread {t.tid} ({t.label}): {line}" for line in t.evidence]


def _path_lines(e: Engine, path: Path) -> List[str]:
    out: List[str] = []
    for node, _ in path:
        if node.startswith("t:") and int(node[2:]) in e.g.threads:
            out.extend(_thread_lines(e.g.threads[int(node[2:])]))
    return out


def _root_of(g: WaitGraph, path: Path, first: ThreadWait) -> RootCause:
    """Root cause from the chain's last node and the last real edge into it."""
    node = path[-1][0]
    kind_, _, ident = node.partition(":")
    last_edge = next((e for _, e in reversed(path) if e is not None and e.kind), None)
    kind = last_edge.kind if last_edge is not None else (first.kind or "unknown")
    resource = last_edge.resource if last_edge is not None else (first.resource or "")
    pid: Optional[int] = None
    tid: Optional[int] = None
    if kind_ == "t":
        t = g.threads[int(ident)]
        pid, tid = t.pid, t.tid
        if t.activity == STOPPED:
            kind = "signal-stop"
        elif t.end_kind:
            kind = t.end_kind
    elif kind_ == "p":
        pid = int(ident)
        p = g.processes.get(pid)
        tid = pid
        if p is not None:
            ths = [g.threads[x] for x in p.tids if x in g.threads]
            run = [t for t in ths if t.activity == RUNNING]
            if run:
                tid = max(run, key=lambda t: t.cpu_s or 0).tid
            if ths and all(t.activity == STOPPED for t in ths):
                kind = "signal-stop"
    elif kind_ == "x":
        kind = g.end_kinds.get(node, kind)
        prev = path[-2][0] if len(path) > 1 else None
        if prev and prev.startswith("t:"):
            t = g.threads[int(prev[2:])]
            pid, tid = t.pid, t.tid
    if kind not in KINDS:
        kind = "unknown"
    return RootCause(pid, tid, kind, resource)
