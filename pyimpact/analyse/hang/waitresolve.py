"""Resolve what one sleeping thread waits on, syscall by syscall.

Called by ``pyimpact.analyse.hang.waitgraph.build`` for every sleeping thread: from
the syscall and its arguments (/proc/PID/task/TID/syscall), the descriptors
and host tables of the snapshots, the memory details read by
``pyimpact.collect.waits`` and the probes' timeline, each resolver fills the
thread's kind, resource and edges (who could release it), or says why the
chain ends there (``end_reason``).  Every fact used is appended to the
thread's evidence.  Pure: no I/O.

The ``ctx`` argument is ``waitgraph.WaitContext``: the recording's parts, merged.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ...snapshot import FdInfo, LockInfo, ProcessSnapshot, SocketInfo, ThreadSnapshot
from ..pidns import to_host as _ns_to_host
from .waitmodel import TIMED, WAITING, WAKING, Edge, ThreadWait, WaitGraph, secs as _secs

READ_CALLS = {"read", "readv", "pread64", "preadv", "preadv2", "recvfrom", "recvmsg", "recvmmsg"}
WRITE_CALLS = {"write", "writev", "pwrite64", "pwritev", "pwritev2", "sendto", "sendmsg", "sendmmsg",
               "sendfile", "splice"}
POLL_CALLS = {"poll", "ppoll", "select", "pselect6", "epoll_wait", "epoll_pwait", "epoll_pwait2"}
SLEEP_CALLS = {"nanosleep", "clock_nanosleep"}
SIGNAL_WAITS = {"pause", "rt_sigsuspend", "rt_sigtimedwait"}

FUTEX_PRIVATE = 128
FUTEX_CLOCK_REALTIME = 256
FUTEX_CMDS = {0: "FUTEX_WAIT", 6: "FUTEX_LOCK_PI", 9: "FUTEX_WAIT_BITSET", 11: "FUTEX_WAIT_REQUEUE_PI",
              13: "FUTEX_LOCK_PI2"}
FUTEX_TID_MASK = 0x3FFFFFFF
CLONE_VFORK = 0x4000
F_SETLKW, F_OFD_SETLKW = 7, 38
P_ALL, P_PID, P_PGID, P_PIDFD = 0, 1, 2, 3
LOCK_NAMES = {1: "LOCK_SH", 2: "LOCK_EX", 8: "LOCK_UN"}

#: Python functions whose frame means "waits for that thread to finish"
PY_JOIN_FUNCS = ("Thread.join", "Thread._wait_for_tstate_lock", "join", "_wait_for_tstate_lock")
PY_RUN_FUNCS = ("Thread.run", "Thread._bootstrap_inner", "Thread._bootstrap", "run",
                "_bootstrap_inner", "_bootstrap")


def _fd(p: ProcessSnapshot, fd: int) -> Optional[FdInfo]:
    for f in p.fds:
        if f.fd == fd:
            return f
    return None


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _fd_words(f: Optional[FdInfo], fd: int) -> str:
    if f is None:
        return f"fd {fd}"
    return f"fd {fd} ({f.target})"


def _details(ctx: Any, t: ThreadSnapshot) -> Dict[str, Any]:
    """Memory details read for this thread, if read for the call it is in now."""
    d = ctx.details.get(str(t.tid))
    if not d or d.get("nr") != t.syscall_nr:
        return {}
    if list(d.get("args", []))[:3] != list(t.syscall_args)[:3]:
        # a thread polling in a loop builds its array anew for each call (another
        # address): the same count and timeout in the next call poll the same set
        if not (d.get("fds") and t.syscall_name in ("poll", "ppoll")
                and list(d.get("args", []))[1:3] == list(t.syscall_args)[1:3]):
            return {}
    return d


def resolve(ctx: Any, g: WaitGraph, p: ProcessSnapshot, t: ThreadSnapshot, tw: ThreadWait) -> None:
    """Fill kind, resource, edges or end_reason of a sleeping thread."""
    name = t.syscall_name
    a = list(t.syscall_args) + [0] * 6
    det = _details(ctx, t)
    if t.state == "D" or (name in ("vfork", "clone", "clone3")):
        if _resolve_vfork(ctx, g, p, t, tw, a):
            return
    if t.state == "D" and _resolve_block_io(ctx, g, p, t, tw):
        return
    if name is None:
        tw.call = "(syscall unreadable)" if t.syscall_nr is None else "(not in a syscall)"
        tw.kind, tw.resource = "unknown", "unknown"
        tw.end_reason = _d_state_words(t) if t.state == "D" else "what it waits on could not be read"
        if t.state == "D":
            tw.end_kind = None
        return
    if name == "futex" or name == "futex_wait" or name == "futex_waitv":
        _resolve_futex(ctx, g, p, t, tw, a, det)
        _java_monitor(ctx, p, t, tw)
    elif name in READ_CALLS or name in WRITE_CALLS:
        fd = int(a[1] if name in ("sendfile",) else a[0])
        if name == "splice":
            fd = int(a[2]) if _fd(p, int(a[2])) is not None and _fd(p, int(a[2])).kind == "pipe" else int(a[0])
        _resolve_fd(ctx, g, p, t, tw, fd, reading=name in READ_CALLS, call=name)
    elif name in ("accept", "accept4", "connect"):
        _resolve_fd(ctx, g, p, t, tw, int(a[0]), reading=True, call=name)
    elif name in ("wait4", "waitid"):
        _resolve_wait_child(ctx, g, p, t, tw, name, a)
    elif name == "flock" or (name == "fcntl" and int(a[1]) in (F_SETLKW, F_OFD_SETLKW)):
        _resolve_file_lock(ctx, g, p, t, tw, name, a)
    elif name in POLL_CALLS:
        _resolve_poll(ctx, g, p, t, tw, name, a, det)
    elif name in SLEEP_CALLS:
        tw.call = f"{name}()"
        tw.kind, tw.resource = "unknown", "a timer (sleep)"
        _apply_timeout(ctx, p, t, tw, det, default_forever=False)
        if not tw.has_timeout:
            tw.has_timeout = True
        tw.end_reason = "sleeps (a timer wakes it)"
    elif name in SIGNAL_WAITS:
        tw.call = f"{name}()"
        tw.kind, tw.resource = "unknown", "a signal"
        if name == "rt_sigtimedwait":
            _apply_timeout(ctx, p, t, tw, det, default_forever=not a[2])
        tw.end_reason = f"waits for a signal in {name}()" + ("" if tw.has_timeout else ", with no timeout")
        if not tw.has_timeout:
            tw.work_wait = f"signals (in {name}())"
    elif name in ("open", "openat", "openat2") and t.state == "S" and \
            (t.wchan == "wait_for_partner" or "fifo_open" in " ".join(t.kernel_stack[:3])):
        # opening a FIFO blocks until the other end is opened: nobody owes that
        tw.call = f"{name}() of a FIFO"
        tw.kind, tw.resource = "pipe", "a FIFO's other end to be opened"
        tw.end_reason = "waits in open() of a FIFO for a process to open its other end"
        tw.input_wait = True
        tw.work_wait = "a process to open the other end of the FIFO it opens (wait_for_partner)"
    else:
        tw.call = f"{name}()"
        tw.kind, tw.resource = "unknown", f"{name}()"
        tw.end_reason = (_d_state_words(t) if t.state == "D"
                         else f"sleeps in {name}(); pyimpact does not follow this call")
    if tw.has_timeout and tw.activity == WAITING:
        tw.activity = TIMED
    if not any(e.startswith("/proc/") for e in tw.evidence):
        tw.evidence.insert(0, f"/proc/{p.pid}/task/{t.tid}/syscall: {tw.call or name} (state {t.state})")


def _d_state_words(t: ThreadSnapshot) -> str:
    where = t.wchan or (t.kernel_stack[0] if t.kernel_stack else "?")
    return f"uninterruptible sleep (D) in the kernel at {where}"


def _apply_timeout(ctx: Any, p: ProcessSnapshot, t: ThreadSnapshot, tw: ThreadWait,
                   det: Dict[str, Any], *, default_forever: bool) -> None:
    """Set has_timeout / timeout_s from the timeout read from memory."""
    to = det.get("timeout")
    if not to:
        tw.has_timeout = not default_forever
        return
    tw.has_timeout = True
    if "ns" not in to:
        tw.evidence.append(f"timeout not readable ({to.get('error', '?')})")
        return
    if to.get("absolute"):
        now = ctx.read_at.get(str(to.get("clock", 1)))
        if now is not None:
            tw.timeout_s = max(0.0, (int(to["ns"]) - int(now)) / 1e9)
    else:
        total = int(to["ns"]) / 1e9
        slept = t.last_ran_ago_s or 0.0
        tw.timeout_s = max(0.0, total - slept)
        tw.evidence.append(f"timeout {_secs(total)} (relative)")


# -- futex -------------------------------------------------------------------

def _futex_call(name: str, a: List[int]) -> Tuple[str, int, bool, str]:
    """(call text, uaddr, private, op name) of a futex wait."""
    if name == "futex":
        op = int(a[1])
        cmd = op & ~(FUTEX_PRIVATE | FUTEX_CLOCK_REALTIME)
        opname = FUTEX_CMDS.get(cmd, f"op {cmd}") + ("_PRIVATE" if op & FUTEX_PRIVATE else "")
        timeout = "NULL" if not a[3] else f"{a[3]:#x}"
        return (f"futex({a[0]:#x}, {opname}, {_s32(a[2])}, {timeout})", int(a[0]),
                bool(op & FUTEX_PRIVATE), opname)
    if name == "futex_wait":
        private = bool(a[3] & FUTEX_PRIVATE)
        return (f"futex_wait({a[0]:#x}, {a[1]}, flags={a[3]:#x})", int(a[0]), private, "futex_wait")
    return (f"futex_waitv({a[0]:#x}, {a[1]} futexes)", int(a[0]), bool(a[2] & FUTEX_PRIVATE), "futex_waitv")


def _resolve_futex(ctx: Any, g: WaitGraph, p: ProcessSnapshot, t: ThreadSnapshot, tw: ThreadWait,
                   a: List[int], det: Dict[str, Any]) -> None:
    name = t.syscall_name or "futex"
    tw.call, uaddr, private, opname = _futex_call(name, a)
    tw.kind = "futex"
    tw.resource = f"futex {uaddr:#x}"
    timeout_ptr = a[3] if name == "futex" else (a[4] if name == "futex_wait" else a[3])
    _apply_timeout(ctx, p, t, tw, det, default_forever=not timeout_ptr)
    tw.evidence.append(f"/proc/{p.pid}/task/{t.tid}/syscall: {tw.call}")
    wakes = _wakes(ctx, p.pid, uaddr, private)
    if wakes is not None:
        n, woken = wakes
        tw.evidence.append(f"probes: no wake on {uaddr:#x} during the window" if n == 0 else
                           f"probes: {n} wake(s) on {uaddr:#x} during the window ({woken} woken)")
    fx = det.get("futex") or {}
    cmd = int(a[1]) & ~(FUTEX_PRIVATE | FUTEX_CLOCK_REALTIME) if name == "futex" else 0
    owner_tid: Optional[int] = None
    if fx and "word" in fx and fx.get("uaddr") == uaddr:
        word = int(fx["word"])
        owner = int(fx.get("owner", 0) or 0)
        mkind = int(fx.get("kind", 0) or 0)
        tid_in_word = word & FUTEX_TID_MASK
        expected = _s32(a[2]) if name == "futex" else int(a[1])
        # TIDs in memory are TIDs of the process's PID namespace
        owner_h, owner_note = _host(ctx, p, owner) if owner else (None, "")
        tid_h, tid_note = _host(ctx, p, tid_in_word) if tid_in_word else (None, "")
        used_note = ""
        if cmd in (6, 11, 13):  # PI futex: the word is the owner's TID
            owner_tid, used_note = tid_h, tid_note
            tw.kind = "mutex"
            tw.resource = f"PI mutex {uaddr:#x}"
            tw.evidence.append(f"futex word = {word:#x}: owner TID {tid_in_word} (PI futex)")
        elif word in (1, 2) and owner and _thread_exists(ctx, owner_h) and mkind < 0x100 and \
                (not private or ctx.tid_pid.get(owner_h) == p.pid):
            owner_tid, used_note = owner_h, owner_note
            tw.kind = "mutex"
            tw.resource = f"mutex {uaddr:#x}"
            tw.evidence.append(f"pthread mutex at {uaddr:#x}: __lock={word} "
                               f"({'locked, contended' if word == 2 else 'locked'}), "
                               f"__owner={owner} (read from memory, offset 8)")
        elif tid_in_word and tid_in_word == expected and _thread_exists(ctx, tid_h) \
                and tid_h != t.tid:
            # pthread_join / thread exit: waits on the joined thread's TID word
            owner_tid, used_note = tid_h, tid_note
            tw.join = True
            tw.resource = f"thread {tid_in_word} to exit (futex {uaddr:#x} holds its TID)"
            tw.evidence.append(f"futex word = {word} = TID of thread {tid_in_word}: "
                               "waits for that thread to exit (pthread_join)")
        elif tid_in_word and _thread_exists(ctx, tid_h) and word & 0x80000000:
            owner_tid, used_note = tid_h, tid_note  # robust mutex: TID | FUTEX_WAITERS in the word
            tw.kind = "mutex"
            tw.resource = f"robust mutex {uaddr:#x}"
            tw.evidence.append(f"futex word = {word:#x}: owner TID {tid_in_word} (robust mutex)")
        elif word in (1, 2) and owner and owner_h is None:
            # glibc recorded an owner, but a TID of a PID namespace we cannot map: say so, blame nobody
            tw.evidence.append(f"pthread mutex at {uaddr:#x}: __lock={word}, __owner={owner}; {owner_note}")
        else:
            tw.evidence.append(f"futex word = {word} at {uaddr:#x}; no owner recorded in memory "
                               "(a semaphore, condition variable or event, e.g. Python threading.Lock)")
        if owner_tid is not None and used_note:
            tw.evidence.insert(len(tw.evidence) - 1, used_note)
    elif fx.get("error"):
        tw.evidence.append(f"futex memory not readable: {fx['error']}")
    elif not det:
        tw.evidence.append("futex memory not read")
    if owner_tid is not None:
        opid = ctx.tid_pid.get(owner_tid)
        who = f"thread {owner_tid}" + ("" if opid == p.pid else f" of pid {opid}")
        if tw.kind == "mutex":
            tw.resource += f" held by {who}"
        tw.edges.append(Edge(f"t:{owner_tid}", tw.kind, tw.resource, [tw.evidence[-1]]))
        return
    if tw.has_timeout:
        tw.end_reason = "waits on a futex with a timeout"
        return
    if private:
        # only a thread of this process can wake a private futex
        tw.edges.append(Edge(f"p:{p.pid}", "futex", tw.resource,
                             ["private futex: only a thread of this process can wake it"], exact=False))
    else:
        tw.end_reason = "waits on a shared futex with no recorded owner (another process may wake it)"
        m = fx.get("map") if fx.get("uaddr") == uaddr else None
        if m:
            tw.futex_key = f"{m.get('dev')}:{m.get('inode')}:{m.get('offset')}"
            others = sorted({int(x) for x in fx.get("sharers") or [] if int(x) != p.pid})
            tw.sharers = others
            where = m.get("path") or f"inode {m.get('inode')}"
            tw.evidence.append(f"futex {uaddr:#x} lies in a shared mapping of {where} (inode {m.get('inode')}, "
                               f"offset {m.get('offset')}): " + (f"also mapped by pid {', '.join(map(str, others))}"
                                                                 if others else "mapped by no other process seen"))


def _java_monitor(ctx: Any, p: ProcessSnapshot, t: ThreadSnapshot, tw: ThreadWait) -> None:
    """A JVM thread waiting to enter a monitor (``synchronized``) or parked on a
    java.util.concurrent lock waits for the owner the JVM or the lock records
    (``collect.jvm_monitors``), not for the futex it sleeps on.  Entering a monitor has no timeout: the timed sleeps of
    the thread the JVM makes re-check the lock are its polling, not progress."""
    mon = (getattr(ctx, "monitors", {}).get(str(p.pid)) or {}).get("threads", {}).get(str(t.tid))
    if not mon or mon.get("owner_tid") is None:
        return
    owner_h, note = _host(ctx, p, int(mon["owner_tid"]))
    if owner_h is None or owner_h == t.tid or not _thread_exists(ctx, owner_h):
        return
    opid = ctx.tid_pid.get(owner_h)
    who = f"thread {owner_h}" + ("" if opid == p.pid else f" of pid {opid}")
    what = str(mon.get("what") or "Java monitor")
    if what == "Java monitor":
        line = (f"the JVM records thread {t.tid} as waiting to enter Java monitor {int(mon['monitor']):#x} "
                f"(JavaThread::_current_pending_monitor), owned by {who} (ObjectMonitor::_owner; read from memory)")
    else:
        line = (f"thread {t.tid} is parked on the lock {what}@{int(mon['monitor']):#x} (Thread.parkBlocker), "
                f"owned by {who} (AbstractOwnableSynchronizer.exclusiveOwnerThread; read from the Java heap)")
    tw.evidence.append(line)
    if note:
        tw.evidence.append(note)
    tw.kind = "mutex"
    tw.resource = f"{what} {int(mon['monitor']):#x} held by {who}"
    tw.edges = [Edge(f"t:{owner_h}", "mutex", tw.resource, [line])]
    tw.end_reason = ""
    if tw.has_timeout or tw.activity in (TIMED, WAKING):
        tw.evidence.append("its timed wake-ups are the JVM re-checking the monitor; entering it has no timeout")
        tw.has_timeout, tw.timeout_s = False, None
        tw.activity = WAITING


def _thread_exists(ctx: Any, tid: Optional[int]) -> bool:
    return tid is not None and tid in ctx.tid_pid


def _host(ctx: Any, p: ProcessSnapshot, value: int) -> Tuple[Optional[int], str]:
    """A pid/TID that ``p`` names (argument, memory) as a host pid: inside a
    PID namespace they differ (pyimpact.analyse.pidns)."""
    return _ns_to_host(ctx.latest_snap.get(p.pid), p, value)


def _wakes(ctx: Any, pid: int, uaddr: int, private: bool) -> Optional[Tuple[int, int]]:
    """(wake calls, threads woken) on ``uaddr`` seen by the probes, None without them."""
    if not ctx.watched(pid):
        return None
    ev = ctx.ev
    if ev is None or not len(ev):
        return 0, 0
    sel = ev[(ev["kind"] == "futex_wake") & (ev["uaddr"] == uaddr)]
    if private:
        sel = sel[sel["pid"] == pid]
    if not len(sel):
        return 0, 0
    return int(len(sel)), int(sel["woken"].fillna(0).sum())


def python_joins(ctx: Any, g: WaitGraph) -> None:
    """A Python thread in Thread.join waits for the thread whose Thread.run has
    the same ``self`` (py-spy --locals gives both addresses)."""
    for pid_s, dump in ctx.stacks.items():
        threads = (dump or {}).get("threads") or {}
        runs: Dict[Any, int] = {}
        for tid_s, th in threads.items():
            for fr in th.get("frames") or []:
                if fr.get("function") in PY_RUN_FUNCS:
                    for v in fr.get("locals") or []:
                        if v.get("name") == "self" and v.get("addr") is not None:
                            runs[v["addr"]] = int(tid_s)
        for tid_s, th in threads.items():
            tw = g.threads.get(int(tid_s))
            if tw is None or tw.activity != WAITING:
                continue
            for fr in th.get("frames") or []:
                if fr.get("function") not in PY_JOIN_FUNCS:
                    continue
                target = None
                for v in fr.get("locals") or []:
                    if v.get("name") == "self" and v.get("addr") in runs:
                        target = runs[v["addr"]]
                if target is None or target == tw.tid:
                    continue
                other = g.threads.get(target)
                words = f"thread {target}" + (f" ({other.label})" if other else "") + " to finish (Thread.join)"
                ev = f"py-spy: {fr.get('function')} at {fr.get('file')}:{fr.get('line')} joins {words[:-16]}"
                tw.edges = [e for e in tw.edges if e.exact] + [Edge(f"t:{target}", "futex", words, [ev])]
                tw.resource = words
                tw.join = True
                tw.evidence.append(ev)
                break


# -- file descriptors: pipes, sockets ------------------------------------------

def _resolve_fd(ctx: Any, g: WaitGraph, p: ProcessSnapshot, t: ThreadSnapshot, tw: ThreadWait,
                fd: int, *, reading: bool, call: str) -> None:
    f = _fd(p, fd)
    if f is not None and f.inode is not None:
        tw.watches.append(f.inode)
    tw.call = f"{call}({_fd_words(f, fd)})"
    tw.evidence.append(f"/proc/{p.pid}/task/{t.tid}/syscall: {call} on {_fd_words(f, fd)}")
    if f is None:
        tw.kind, tw.resource = "unknown", f"fd {fd}"
        tw.end_reason = f"fd {fd} could not be read"
        return
    if f.kind == "pipe":
        _pipe_edges(ctx, g, p, tw, f, reading=reading)
    elif f.kind == "socket":
        _socket_edges(ctx, g, p, tw, f, call=call, reading=reading)
    elif f.target in WATCH_FDS:
        tw.kind, tw.resource = "unknown", f.target
        tw.end_reason = f"waits for {WATCH_FDS[f.target]}"
        tw.input_wait = True
        tw.work_wait = WATCH_FDS[f.target]
    elif f.kind == "dev" and _is_tty(f.target):
        tw.kind, tw.resource = "unknown", f"terminal {f.target}"
        tw.end_reason = f"waits for input from the terminal {f.target}"
        tw.input_wait = True
        tw.work_wait = f"input from the terminal {f.target}"
    else:
        tw.kind, tw.resource = "unknown", f.target
        tw.end_reason = f"sleeps in {call} on {f.target}"


#: descriptors that only report events nobody owes (a change to a watched file, a signal)
WATCH_FDS = {"anon_inode:inotify": "changes to the files it watches (inotify)",
             "anon_inode:[fanotify]": "file events it watches (fanotify)",
             "anon_inode:[signalfd]": "a signal (signalfd)"}
#: /proc/PID/fd's name for an eventfd (one anonymous inode for all of them)
EVENTFD = "anon_inode:[eventfd]"


def _is_tty(path: str) -> bool:
    return path.startswith(("/dev/pts/", "/dev/tty", "/dev/console"))


def _holder_words(h: List[Any]) -> str:
    return f"pid {h[0]} (fd {h[1]}, {h[2]})"


def _pipe_edges(ctx: Any, g: WaitGraph, p: ProcessSnapshot, tw: ThreadWait, f: FdInfo,
                *, reading: bool) -> None:
    named = f.target.startswith("/")
    what = f"FIFO {f.target}" if named else f.target
    tw.kind = "pipe"
    holders = ctx.holders.get(f.inode, []) if f.inode is not None else []
    want = ("w", "rw", "?") if reading else ("r", "rw", "?")
    others = [h for h in holders if h[2] in want and not (h[0] == p.pid and h[1] == f.fd)]
    end = "write" if reading else "read"
    tw.resource = f"{what} ({'read' if reading else 'write'} end; {'empty' if reading else 'full'})"
    if not holders:
        tw.end_reason = f"no holder of the {end} end of {what} was found"
        return
    if not others:
        tw.end_reason = f"no process holds the {end} end of {what}"
        return
    by_pid: Dict[int, List[List[Any]]] = {}
    for h in others:
        by_pid.setdefault(int(h[0]), []).append(h)
    peers = {pid for pid in by_pid if pid != p.pid}
    if reading:
        tw.feed_from = sorted(set(tw.feed_from) | peers)
    else:
        tw.drained_by = sorted(set(tw.drained_by) | peers)
    if reading and _fed_by_ancestors(ctx, p, tw, by_pid):
        return
    for pid, hs in by_pid.items():
        ev = f"{what}: {end} end held by " + ", ".join(_holder_words(h) for h in hs)
        if pid == p.pid:
            ev += " -- this process itself (it cannot see EOF while it holds it)"
        tw.evidence.append(ev)
        if pid not in ctx.latest:
            ctx.missing.add(pid)
        tw.edges.append(Edge(f"p:{pid}", "pipe", f"{what} ({end} end)", [ev], exact=False))
    tw.resource = f"{what}, {end} end held by " + ", ".join(f"pid {pid}" for pid in by_pid)


def _socket_edges(ctx: Any, g: WaitGraph, p: ProcessSnapshot, tw: ThreadWait, f: FdInfo,
                  *, call: str, reading: bool) -> None:
    tw.kind = "socket"
    s = ctx.sockets.get(f.inode) if f.inode is not None else None
    if s is None:
        tw.resource = f.target
        tw.end_reason = f"{f.target} is not in the socket tables (another network namespace?)"
        return
    desc = _sock_words(s)
    tw.evidence.append(f"{f.target}: {desc}")
    if call in ("accept", "accept4") or s.state == "LISTEN":
        tw.resource = f"new connections on {s.local or f.target} ({s.proto}, listening)"
        tw.end_reason = f"waits for a client to connect to {s.local or f.target}"
        tw.input_wait = True
        tw.work_wait = f"clients to connect to {s.proto} {s.local or f.target} (listening)"
        return
    if reading and not s.remote and s.local and s.sock_type == "dgram" and not s.peer_inode:
        # a bound, unconnected datagram socket: a server waiting for whoever sends
        # the next datagram (DNS, syslog, statsd); nobody owes it one
        tw.resource = f"datagrams to {s.proto} {s.local}"
        tw.end_reason = f"waits for a datagram to {s.proto} {s.local} (bound, not connected)"
        tw.input_wait = True
        tw.work_wait = f"datagrams to {s.proto} {s.local} (a bound, unconnected socket)"
        return
    if reading and call != "connect" and _server_side(ctx, s):
        who = s.remote or "its client"
        tw.resource = f"the next request on {s.proto} {s.local} from {who}"
        tw.end_reason = (f"waits for the next request from {who} on a connection it accepted on "
                         f"{s.local}: nothing is owed to it")
        tw.input_wait = True
        tw.work_wait = f"the next request from {who} (an accepted {s.proto} connection on {s.local})"
        if s.peer_inode:
            tw.work_from = sorted({int(h[0]) for h in ctx.holders.get(s.peer_inode, [])})
        tw.evidence.append(f"{s.proto} {s.local} is a listening address on this host: "
                           "this end accepted the connection (the server side)")
        return
    if call == "connect":
        tw.resource = f"connection to {s.remote or '?'} ({s.state})"
    else:
        tw.resource = (f"data from the peer of {s.proto} {s.local} -> {s.remote or '?'}" if reading else
                       f"the peer of {s.proto} {s.local} -> {s.remote or '?'} to read (send buffer full)")
    peer = s.peer_inode
    if peer:
        tw.peer_inodes = sorted(set(tw.peer_inodes) | {peer})
        hs = ctx.holders.get(peer, [])
        pids = sorted({int(h[0]) for h in hs})
        if reading and pids and call != "connect" and \
                _fed_by_ancestors(ctx, p, tw, {pid: [h for h in hs if int(h[0]) == pid] for pid in pids}):
            return
        if pids:
            for pid in pids:
                if pid not in ctx.latest:
                    ctx.missing.add(pid)
                ev = (f"peer socket:[{peer}] held by " +
                      ", ".join(_holder_words(h) for h in hs if int(h[0]) == pid))
                tw.evidence.append(ev)
                tw.edges.append(Edge(f"p:{pid}", "socket", f"{s.proto} peer {s.remote or '?'} (socket:[{peer}])",
                                     [ev], exact=False))
            return
        tw.end_reason = f"the peer socket:[{peer}] is held by no process found"
        return
    if s.remote:
        listener = _listener_for(ctx, s)
        if listener is not None:
            ls, hs = listener
            pids = sorted({int(h[0]) for h in hs})
            for pid in pids:
                if pid not in ctx.latest:
                    ctx.missing.add(pid)
                ev = (f"the connection waits in the listen backlog of {ls.local} (socket:[{ls.inode}]), "
                      f"not accepted yet by pid {pid}")
                tw.evidence.append(ev)
                tw.edges.append(Edge(f"p:{pid}", "socket", f"listening socket {ls.local}", [ev], exact=False))
            if pids:
                return
        node = f"r:{s.remote}"
        g.ends[node] = f"a peer outside this machine (or namespace): {s.remote}"
        tw.edges.append(Edge(node, "socket", f"{s.proto} peer {s.remote}",
                             [f"peer {s.remote} is not a socket of this host"]))
        return
    tw.end_reason = f"{f.target} is not connected ({s.state})"


def _ancestors(ctx: Any, pid: int, limit: int = 64) -> List[int]:
    out: List[int] = []
    cur = ctx.latest.get(pid)
    while cur is not None and cur.ppid > 0 and len(out) < limit:
        out.append(cur.ppid)
        cur = ctx.latest.get(cur.ppid)
    return out


def _only_reaps(ctx: Any, pid: int) -> bool:
    """Every thread of ``pid`` sleeps in wait4/waitid (waits for a child to exit)."""
    q = ctx.latest.get(pid)
    return q is not None and bool(q.threads) and all(
        t.state == "S" and t.syscall_name in ("wait4", "waitid") for t in q.threads)


def _fed_by_ancestors(ctx: Any, p: ProcessSnapshot, tw: ThreadWait,
                      by_pid: Dict[int, List[List[Any]]]) -> bool:
    """A reader whose only writers are its parent (or ancestors) waits for
    work handed down to it (a job queue, a control channel): nothing is owed,
    so the wait is a wait for work, not an edge."""
    others = [pid for pid in by_pid if pid != p.pid]
    if not others:
        return False
    anc = _ancestors(ctx, p.pid)
    if not all(pid in anc for pid in others):
        return False
    unseen = [pid for pid in others if pid not in ctx.latest]
    if unseen:
        ctx.missing.update(unseen)  # snapshot them too: is the parent still able to write?
    if all(_only_reaps(ctx, pid) for pid in others):
        # the parent holds the other end and does nothing but wait for its children
        # to exit (subprocess.Popen(stdin=PIPE) then wait(), stdin never closed): no
        # work can come down the pipe while it waits, nor EOF -- the edge stays, and
        # the graph says whether that parent waits on this one alone (a deadlock)
        tw.evidence.append("the other end is held only by " + ", ".join(f"pid {x}" for x in sorted(others))
                           + ", which only waits for its children to exit (wait4/waitid): it will write "
                           "nothing, and not close it, while it waits")
        return False
    who = ", ".join(f"pid {pid}" for pid in sorted(others))
    tw.work_wait = f"work from its parent ({who} holds the other end)"
    tw.work_from = sorted(others)
    tw.end_reason = f"waits for work handed down by its parent: only {who} (an ancestor) can send"
    tw.input_wait = True
    tw.evidence.append(f"the other end is held only by {who}, an ancestor of pid {p.pid}")
    return True


def _server_side(ctx: Any, s: SocketInfo) -> bool:
    """This connected socket is the accepting end: its local address is a
    listening address of this host (TCP port, or the unix socket's bound path)."""
    if not s.local or s.state == "LISTEN":
        return False
    if s.proto.startswith("unix"):
        return any(c.state == "LISTEN" and c.local == s.local for c in ctx.sockets.values()
                   if c.proto.startswith("unix"))
    host, port = _split_addr(s.local)
    for c in ctx.sockets.values():
        if c.state != "LISTEN" or c.proto.rstrip("6") != s.proto.rstrip("6"):
            continue
        if s.netns is not None and c.netns is not None and c.netns != s.netns:
            continue
        lhost, lport = _split_addr(c.local)
        if lport == port and lhost in (host, "0.0.0.0", "::", "*"):
            return True
    return False


def _sock_words(s: SocketInfo) -> str:
    parts = [s.proto, s.local or "(unbound)"]
    if s.remote:
        parts += ["->", s.remote]
    parts.append(s.state)
    q = []
    if s.rx_queue:
        q.append(f"{s.rx_queue} B to read")
    if s.tx_queue:
        q.append(f"{s.tx_queue} B unsent")
    return " ".join(parts) + (f" ({', '.join(q)})" if q else "")


def _split_addr(a: str) -> Tuple[str, str]:
    """(host, port); an IPv4-mapped IPv6 host ("[::ffff:127.0.0.1]", a JVM's
    sockets) as the IPv4 address it is, so it meets an IPv4 listener."""
    host, _, port = a.rpartition(":")
    host = host.strip("[]")
    if host.lower().startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, port


def _listener_for(ctx: Any, s: SocketInfo) -> Optional[Tuple[SocketInfo, List[List[Any]]]]:
    """The listening socket a connection to ``s.remote`` waits in, if on this host."""
    rhost, rport = _split_addr(s.remote)
    for cand in ctx.sockets.values():
        if cand.state != "LISTEN" or cand.proto.rstrip("6") != s.proto.rstrip("6"):
            continue
        if s.netns is not None and cand.netns is not None and cand.netns != s.netns:
            continue
        host, port = _split_addr(cand.local)
        if port != rport:
            continue
        if host in (rhost, "0.0.0.0", "::") or host.endswith(rhost):
            hs = ctx.holders.get(cand.inode, [])
            if hs:
                return cand, hs
    return None


# -- children, vfork ------------------------------------------------------------

def _resolve_wait_child(ctx: Any, g: WaitGraph, p: ProcessSnapshot, t: ThreadSnapshot, tw: ThreadWait,
                        name: str, a: List[int]) -> None:
    tw.kind = "child"
    # a tracer's wait4/waitid reports its tracees' stops and exits too (ptrace):
    # `strace -p`, `gdb -p` wait on processes that are not their children
    kids = [c for c in p.children] + sorted(pid for pid, q in ctx.latest.items()
                                            if q.tracer_pid == p.pid and pid not in p.children)
    named: Optional[int] = None      # the pid or process group the call names, if any
    if name == "wait4":
        sel = _s32(a[0])
        tw.call = f"wait4({sel})"
        named = sel if sel > 0 else (-sel if sel < -1 else None)
    else:
        idtype, ident = int(a[0]), _s32(a[1])
        tw.call = f"waitid({['P_ALL', 'P_PID', 'P_PGID', 'P_PIDFD'][idtype] if idtype < 4 else idtype}, {ident})"
        named = ident if idtype in (P_PID, P_PGID) and ident > 0 else None
    host = named
    if named is not None:
        # a pid of the caller's PID namespace: never take it for the host pid of the same number
        host, note = _host(ctx, p, named)
        if note:
            tw.evidence.append(note)
        if host is None:
            tw.resource = f"pid {named} of its PID namespace to exit"
            tw.end_reason = (f"waits for pid {named} of its PID namespace, which cannot be translated "
                             "to a host pid")
            return
    if name == "wait4":
        if sel > 0:
            chosen = [host]
        elif sel == -1:
            chosen = kids
        else:
            pg = p.pgid if sel == 0 else host
            chosen = [c for c in kids if ctx.latest.get(c) is not None and ctx.latest[c].pgid == pg]
    else:
        if idtype == P_PID:
            chosen = [host]
        elif idtype == P_PGID:
            pg = p.pgid if ident == 0 else host
            chosen = [c for c in kids if ctx.latest.get(c) is not None and ctx.latest[c].pgid == pg]
        else:
            chosen = kids
    traced = [c for c in kids if c not in p.children]
    tw.evidence.append(f"/proc/{p.pid}/task/{t.tid}/syscall: {tw.call}; children: "
                       + (", ".join(str(c) for c in p.children) or "none")
                       + (f"; traced by it (TracerPid): {', '.join(str(c) for c in traced)}" if traced else ""))
    if not chosen:
        # asleep in wait4/waitid with no child to wait for would have failed (ECHILD):
        # what it waits for is out of sight -- a process it traces (ptrace: strace -p,
        # gdb -p) that was not looked at, or a child the snapshot does not show
        tw.resource = "a child to exit"
        tw.end_reason = ("waits for a child, but no matching child was found: a process it traces "
                         "(strace -p, gdb -p) or a child not visible here")
        return

    def words(c: int) -> str:
        return f"traced pid {c} to stop or exit" if c in traced else f"child pid {c} to exit"

    tw.resource = "; ".join(words(c) for c in chosen) if traced else \
        "child " + ", ".join(f"pid {c}" for c in chosen) + " to exit"
    for c in chosen:
        if c not in ctx.latest:
            ctx.missing.add(c)
        tw.edges.append(Edge(f"p:{c}", "child", words(c), [f"waits for {words(c)}"], exact=False))


def _resolve_vfork(ctx: Any, g: WaitGraph, p: ProcessSnapshot, t: ThreadSnapshot, tw: ThreadWait,
                   a: List[int]) -> bool:
    """A parent suspended in vfork() until its child execs or exits."""
    name = t.syscall_name
    stack = " ".join(t.kernel_stack)
    infl = ctx.inflight.get(t.tid)
    flags = int(a[0])
    if name == "clone3" and infl is not None:
        flags = int(a[0])  # the probes store clone3's flags where clone has them (not in /proc)
    is_vfork = (name == "vfork" or (name == "clone" and flags & CLONE_VFORK)
                or "wait_for_vfork_done" in stack or t.wchan == "wait_for_vfork_done"
                or (name == "clone3" and t.state == "D" and ("kernel_clone" in stack or t.wchan == "kernel_clone")))
    if not is_vfork:
        return False
    tw.kind = "vfork"
    tw.call = f"{name}()"
    kids = [ctx.latest[c] for c in p.children if c in ctx.latest]
    # the parent thread cannot fork again until released, so its vfork child is its newest
    same = [c for c in kids if c.state not in ("Z", "X")]
    child = max(same, key=lambda c: c.start_ticks) if same else None
    ev = (f"/proc/{p.pid}/task/{t.tid}: {name}() in state {t.state}"
          + (f", wchan {t.wchan}" if t.wchan else "") + ": suspended until its vfork child execs or exits")
    tw.evidence.append(ev)
    if child is None:
        tw.resource = "its vfork child to exec or exit"
        tw.end_reason = "suspended in vfork(); the child was not found"
        return True
    same_exe = child.exe is not None and child.exe == p.exe
    cev = (f"the newest child, pid {child.pid} ({child.name}), is the vfork child"
           + (" (same executable: it has not called exec yet)" if same_exe else ""))
    tw.evidence.append(cev)
    tw.resource = f"vfork child pid {child.pid} to exec or exit"
    tw.edges.append(Edge(f"p:{child.pid}", "vfork", tw.resource, [ev, cev], exact=False))
    return True


# -- file locks, block I/O ----------------------------------------------------------

def _same_dev(a: Optional[str], b: Optional[str]) -> bool:
    if not a or not b:
        return True
    try:
        return tuple(int(x, 16) for x in a.split(":")) == tuple(int(x, 16) for x in b.split(":"))
    except ValueError:
        return a == b


def _resolve_file_lock(ctx: Any, g: WaitGraph, p: ProcessSnapshot, t: ThreadSnapshot, tw: ThreadWait,
                       name: str, a: List[int]) -> None:
    fd = int(a[0])
    f = _fd(p, fd)
    tw.kind = "file-lock"
    if name == "flock":
        op = int(a[1]) & ~4
        tw.call = f"flock({_fd_words(f, fd)}, {LOCK_NAMES.get(op, op)})"
    else:
        tw.call = f"fcntl({_fd_words(f, fd)}, {'F_SETLKW' if int(a[1]) == F_SETLKW else 'F_OFD_SETLKW'})"
    target = f.target if f is not None else f"fd {fd}"
    tw.resource = f"lock on {target}"
    tw.evidence.append(f"/proc/{p.pid}/task/{t.tid}/syscall: {tw.call}")
    locks = ctx.locks
    inode = f.inode if f is not None else None
    waiting = [i for i, lk in enumerate(locks) if lk.waiting and lk.pid == p.pid
               and (inode is None or lk.inode == inode) and _same_dev(lk.dev, f.dev if f else None)]
    holders: List[LockInfo] = []
    for i in waiting:
        # the kernel queues a request behind another waiting request that conflicts
        # with it ("1:  -> FLOCK ..." under "1: -> FLOCK ..."): the lock is still held
        # by the granted lock at the top of that tree, and released only by its holder
        b = locks[i].blocker_index
        hops = 0
        while b is not None and 0 <= b < len(locks) and locks[b].waiting and hops < len(locks):
            b, hops = locks[b].blocker_index, hops + 1
        if b is not None and 0 <= b < len(locks) and locks[b] not in holders:
            holders.append(locks[b])
    if not holders and inode is not None:
        holders = [lk for lk in locks if not lk.waiting and lk.inode == inode and lk.pid != p.pid
                   and _same_dev(lk.dev, f.dev if f else None)]
    if not holders:
        tw.end_reason = f"the holder of the lock on {target} is not in /proc/locks"
        return
    seen = set()
    for lk in holders:
        line = (f"/proc/locks: {lk.id}: {lk.kind} {lk.mode} {lk.access} pid {lk.pid} "
                f"{lk.dev}:{lk.inode} {lk.start}-{lk.end} (held); pid {p.pid} waits")
        tw.evidence.append(line)
        # flock/OFD locks live with the open file: when the pid that took it holds it
        # no more (exited, or handed the descriptor on), whoever holds the file open does
        opened = sorted({int(h[0]) for h in ctx.holders.get(lk.inode, []) if int(h[0]) != p.pid}) \
            if lk.kind in ("FLOCK", "OFDLCK") and lk.inode is not None else []
        if opened and lk.pid not in opened:
            for pid in opened:
                if pid in seen:
                    continue
                seen.add(pid)
                if pid not in ctx.latest:
                    ctx.missing.add(pid)
                ev = (f"the {lk.kind} lock belongs to the open file: pid {lk.pid} that took it no longer "
                      f"holds it open; pid {pid} does ({target})")
                tw.evidence.append(ev)
                tw.edges.append(Edge(f"p:{pid}", "file-lock", f"{_lock_words(lk)} on {target}, held by pid {pid} "
                                     f"(the open file; taken by pid {lk.pid})", [line, ev], exact=False))
            continue
        if lk.pid <= 0:
            tw.end_reason = f"the lock on {target} is an open-file-description lock; its holder has no pid"
            continue
        if lk.pid in seen:
            continue
        seen.add(lk.pid)
        if lk.pid not in ctx.latest:
            ctx.missing.add(lk.pid)
        tw.edges.append(Edge(f"p:{lk.pid}", "file-lock", f"{_lock_words(lk)} on {target}, held by pid {lk.pid}",
                             [line], exact=False))
    if tw.edges:
        tw.resource = f"{_lock_words(holders[0])} on {target}, held by " + \
            ", ".join(f"pid {pid}" for pid in sorted(seen))


def _lock_words(lk: LockInfo) -> str:
    """"exclusive flock", "POSIX write lock", "OFD read lock"."""
    if lk.kind == "FLOCK":
        return ("exclusive" if lk.access == "WRITE" else "shared") + " flock"
    kind = {"POSIX": "POSIX", "OFDLCK": "OFD", "LEASE": "lease"}.get(lk.kind, lk.kind)
    return f"{kind} {lk.access.lower()} lock"


def _resolve_block_io(ctx: Any, g: WaitGraph, p: ProcessSnapshot, t: ThreadSnapshot, tw: ThreadWait) -> bool:
    df = ctx.block
    if df is None or not len(df):
        return False
    rows = df[(df["tid"] == t.tid) | (df["pid"] == p.pid)]
    if not len(rows):
        return False
    end_ns = ctx.snap_time_ns(p.pid) or 0
    r = rows.sort_values("queued_ns").iloc[0]
    age = (end_ns - int(r["queued_ns"])) / 1e9 if end_ns else None
    node = f"x:block device {r['dev']}"
    what = (f"block request on {r['dev']}: sector {int(r['sector'])}, {int(r['bytes'])} B {r['rwbs']}"
            + (f", queued {_secs(age)} ago" if age is not None else "")
            + ("" if int(r["issued_ns"] or 0) else ", not yet issued to the driver"))
    tw.kind, tw.resource = "block-io", what
    tw.call = tw.call or f"{t.syscall_name or '?'}()"
    ev = f"probes: {len(rows)} block request(s) of pid {p.pid} not completed; oldest: {what}"
    tw.evidence.append(ev)
    g.ends[node] = f"the device {r['dev']} has not completed the request"
    g.end_kinds[node] = "block-io"
    tw.edges.append(Edge(node, "block-io", what, [ev]))
    return True


# -- poll, select, epoll ---------------------------------------------------------------

def _resolve_poll(ctx: Any, g: WaitGraph, p: ProcessSnapshot, t: ThreadSnapshot, tw: ThreadWait,
                  name: str, a: List[int], det: Dict[str, Any]) -> None:
    if name == "poll":
        ms = _s32(a[2])
        tw.has_timeout = ms >= 0
        if ms >= 0:
            tw.timeout_s = max(0.0, ms / 1000 - (t.last_ran_ago_s or 0.0))
    elif name in ("epoll_wait", "epoll_pwait"):
        ms = _s32(a[3])
        tw.has_timeout = ms >= 0
        if ms >= 0:
            tw.timeout_s = max(0.0, ms / 1000 - (t.last_ran_ago_s or 0.0))
    else:
        ptr = a[2] if name == "ppoll" else (a[3] if name == "epoll_pwait2" else a[4])
        _apply_timeout(ctx, p, t, tw, det, default_forever=not ptr)
    fds = det.get("fds")
    tw.call = f"{name}({'fds ' + ', '.join(str(x) for x in fds) if fds else '...'})"
    tw.kind, tw.resource = "unknown", f"{name} on " + (f"fds {', '.join(str(x) for x in fds)}" if fds else "?")
    if tw.has_timeout:
        tw.end_reason = f"waits in {name} with a timeout"
        if fds:  # who would end the wait, were it not for the timeout (a polling waiter's root)
            sub, _, _, works = _poll_fd_edges(ctx, g, p, tw, fds, name, det.get("out_fds") or [])
            tw.poll_edges = [] if works else sub
            tw.timed_work = works[0] if works else ""
        return
    if not fds:
        tw.end_reason = f"waits in {name} without a timeout; the descriptors could not be read"
        return
    sub, kinds, unresolved, works = _poll_fd_edges(ctx, g, p, tw, fds, name, det.get("out_fds") or [])
    if works:  # a listener says most about what it waits for
        works.sort(key=lambda w: ("listening" not in w, "request" not in w))
        tw.work_wait = works[0]
        tw.input_wait = True
        tw.end_reason = f"waits in {name} without a timeout for {works[0]}"
        return
    if unresolved:
        tw.end_reason = unresolved
        return
    own = [x for x in sub if x.target == f"p:{p.pid}"]
    others = [x for x in sub if x.target != f"p:{p.pid}"]
    if own and others:
        # a channel it writes to itself (a self-pipe: a signal handler's or another
        # thread's wake-up) beside descriptors others must make ready (the reader of
        # its output, the server that owes a reply): the others say what it waits
        # for; whether its own threads bring it work is known once every thread's
        # activity is (``waitgraph.own_wakeups``)
        tw.own_wake = own[0].resource
        tw.evidence.append(f"{own[0].resource}: the other end is held by this process itself "
                           "(a self-pipe: its own threads or signal handlers can also end the wait)")
        sub = others
        kinds = {x.kind for x in others}
    elif own:
        # one of the descriptors is a channel this process writes to itself (a
        # self-pipe, a notifier queue): its own threads end this wait, nobody
        # else owes it anything (an event loop, a pool's worker handler)
        tw.work_wait = f"a wake-up from its own threads (it holds the other end: {own[0].resource})"
        tw.work_from = [p.pid]
        tw.input_wait = True
        tw.end_reason = f"waits in {name} without a timeout; its own threads can end the wait ({own[0].resource})"
        tw.evidence.append(f"{own[0].resource}: the other end is held by this process itself")
        return
    tw.edges = sub
    if len(kinds) == 1:
        tw.kind = kinds.pop()


def _poll_fd_edges(ctx: Any, g: WaitGraph, p: ProcessSnapshot, tw: ThreadWait, fds: List[int],
                   name: str, out_fds: List[int]) -> Tuple[List[Edge], set, str, List[str]]:
    """Who would make one of ``fds`` ready: (edges, their kinds, the first fd
    that leads nowhere in words, the waits for work among them).  A
    descriptor is waited on for reading unless it is the write end of a pipe
    (a pipe's end goes one way) or was polled for writing only (``out_fds``:
    POLLOUT alone, a select write set, EPOLLOUT alone): then whoever drains the
    other end releases it (a compressor whose output pipe is full)."""
    # any one descriptor becoming ready frees it: edges are an OR over all of them,
    # and one descriptor that waits for work (a listener, a client's next
    # request, a terminal) makes the whole wait a wait for work.
    sub: List[Edge] = []
    kinds = set()
    unresolved = ""
    works: List[str] = []
    for fd in fds:
        f = _fd(p, fd)
        if f is not None and f.inode is not None:
            tw.watches.append(f.inode)
        probe = ThreadWait(pid=tw.pid, tid=tw.tid, name=tw.name, state=tw.state, activity=WAITING)
        if f is None:
            probe.end_reason = f"fd {fd} unreadable"
        elif f.kind == "pipe":
            _pipe_edges(ctx, g, p, probe, f, reading=f.mode != "w" and not (fd in out_fds and f.mode != "r"))
        elif f.kind == "socket":
            si = ctx.sockets.get(f.inode) if f.inode is not None else None
            if si is not None and si.state == "SYN_SENT":   # a non-blocking connect in progress
                _socket_edges(ctx, g, p, probe, f, call="connect", reading=True)
            else:
                out = fd in out_fds
                _socket_edges(ctx, g, p, probe, f, call="sendto" if out else "recvfrom", reading=not out)
        elif f.kind == "dev" and _is_tty(f.target):
            probe.work_wait = f"input from the terminal {f.target}"
            probe.end_reason = f"waits for input from the terminal {f.target}"
        elif f.target in WATCH_FDS:
            probe.work_wait = WATCH_FDS[f.target]
            probe.end_reason = f"waits for {WATCH_FDS[f.target]}"
        elif f.target == EVENTFD:
            # an event loop's wake-up counter (libuv's async handle, a runtime's
            # notifier): written by whoever holds it, in practice its own threads
            # (every eventfd shares one anonymous inode, so its holders cannot be
            # told from the tables): a channel of its own, like a self-pipe
            probe.kind = "unknown"
            probe.edges = [Edge(f"p:{p.pid}", "unknown", f"eventfd (fd {fd})",
                                [f"fd {fd} is an eventfd: a wake-up counter its own threads write"], exact=False)]
        else:
            probe.end_reason = f"fd {fd} is {f.target}"
        tw.evidence.extend(e for e in probe.evidence if e not in tw.evidence)
        tw.feed_from = sorted(set(tw.feed_from) | set(probe.feed_from))
        tw.peer_inodes = sorted(set(tw.peer_inodes) | set(probe.peer_inodes))
        if probe.work_wait:
            works.append(probe.work_wait)
            tw.work_from = sorted(set(tw.work_from) | set(probe.work_from))
            continue
        if probe.end_reason or not probe.edges:
            unresolved = unresolved or f"waits in {name} without a timeout, among others on {_fd_words(f, fd)}"
            continue
        kinds.add(probe.kind)
        sub.extend(probe.edges)
    return sub, kinds, unresolved, works
