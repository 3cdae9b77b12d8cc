"""The wait-for graph's data model: threads, processes, edges, and the graph.

Plain records shared by the builder (``pyimpact.analyse.hang.waitgraph``), the
per-syscall resolvers (``pyimpact.analyse.hang.waitresolve``) and the verdict
(``pyimpact.analyse.hang.diagnose``).  Node ids are ``t:TID`` (thread),
``p:PID`` (process), ``r:ADDR`` (remote peer) and ``x:WHAT`` (another end
outside any process, e.g. a block device).  Pure: no I/O.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ...formats import words_duration as secs  # the one duration formatter ("850 ms", "4 min")

# activity of a thread over the window
RUNNING = "running"      # on CPU for a good part of the window
WAKING = "waking"        # woke up during the window (periodic work, timed waits)
TIMED = "timed"          # sleeping in a wait with a finite timeout
WAITING = "waiting"      # sleeping without a timeout, and did not wake during the window
STOPPED = "stopped"
ZOMBIE = "zombie"
UNKNOWN = "unknown"



@dataclass
class Edge:
    """``source`` waits for ``target`` to act on ``resource``."""

    target: str
    kind: str                       # root-cause vocabulary: mutex, futex, pipe, socket, child, ...
    resource: str                   # in words: "mutex 0x55d0c0a0", "pipe:[1234]"
    evidence: List[str] = field(default_factory=list)
    exact: bool = True              # False: "some thread of that process" (an OR over its threads)


@dataclass
class ThreadWait:
    """One thread: what it does, what it waits on, and for how long."""

    pid: int
    tid: int
    name: str
    state: str
    activity: str
    syscall: Optional[str] = None
    call: str = ""                  # the syscall with its arguments, in words
    kind: Optional[str] = None      # what it waits on, in the root-cause vocabulary
    resource: str = ""              # what it waits on, in words
    edges: List[Edge] = field(default_factory=list)
    poll_edges: List[Edge] = field(default_factory=list)  # a timed poll: who would make its fds ready
    timed_work: str = ""            # a timed poll that also waits for work (a listener among its fds)
    own_wake: str = ""              # a poll that also watches a channel of its own (a self-pipe), in words
    futex_key: str = ""             # a shared futex: "dev:inode:offset" of the memory it lies in
    sharers: List[int] = field(default_factory=list)  # other processes mapping that memory
    end_reason: str = ""            # when it leads nowhere: why (sleeps forever, remote peer, ...)
    end_kind: Optional[str] = None  # an intrinsic root-cause kind (signal-stop, block-io, gpu)
    input_wait: bool = False        # waits for outside input (listening socket, terminal)
    work_wait: str = ""             # waits for work nobody owes it, in words ("" = not known to be)
    work_from: List[int] = field(default_factory=list)  # pids that would send that work, when known
    # a wait on a pipe: the pids holding its other end (itself excluded) -- the writers
    # that would feed an empty pipe it reads, the readers that would drain a full pipe it
    # writes.  Data on a pipe is nobody's reply: whether the wait is owed depends on how they are
    feed_from: List[int] = field(default_factory=list)
    drained_by: List[int] = field(default_factory=list)
    watches: List[int] = field(default_factory=list)      # inodes of the descriptors it waits on
    peer_inodes: List[int] = field(default_factory=list)  # a socket wait: the inodes of the other ends
    join: bool = False              # waits for another thread to finish (join)
    timeout_s: Optional[float] = None   # time left of a finite timeout, when known
    has_timeout: bool = False
    blocked_for_s: Optional[float] = None
    blocked_exact: bool = False     # blocked_for_s from the probes (syscall entry), not a bound
    window_s: Optional[float] = None
    cpu_s: Optional[float] = None
    wakeups: Optional[int] = None
    syscalls: Optional[int] = None  # completed during the window (probes)
    wchan: str = ""
    kernel_stack: List[str] = field(default_factory=list)
    python_stack: List[Dict[str, Any]] = field(default_factory=list)
    python_name: str = ""
    evidence: List[str] = field(default_factory=list)

    @property
    def node(self) -> str:
        return f"t:{self.tid}"

    @property
    def label(self) -> str:
        return self.python_name or self.name


@dataclass
class ProcessInfo:
    """One process as the analysis sees it (latest snapshot, deltas over the window)."""

    pid: int
    name: str
    state: str
    ppid: int
    cmdline: List[str]
    tids: List[int]
    children: List[int]
    python: bool
    uid: Optional[int]
    sig_caught: int
    sig_ignored: int
    sig_blocked: int
    tracer_pid: int
    exe: Optional[str]
    create_time: float
    cpu_s: Optional[float] = None        # CPU over the window, all threads
    io_bytes: Optional[int] = None       # rchar + wchar over the window
    disk_bytes: Optional[int] = None     # read_bytes + write_bytes over the window
    syscalls: Optional[int] = None       # completed during the window (probes)
    data_bytes: Optional[int] = None     # bytes the read/write/send/recv calls returned (probes)
    observed: str = "target"             # target (traced) or related (snapshotted only)
    listening: List[str] = field(default_factory=list)   # addresses of its listening sockets
    env: Dict[str, str] = field(default_factory=dict)    # allow-listed environment (RANK, ...)
    pgid: int = 0
    sid: int = 0
    kernel_thread: bool = False
    was_state: str = ""                  # state at the start of the window ("" = not seen then)
    accepted: Optional[int] = None       # connections accepted during the window (probes)
    born_in_window: bool = False         # started during the window (its I/O includes its start-up)
    notes: List[str] = field(default_factory=list)       # what a server said about this process

    @property
    def node(self) -> str:
        return f"p:{self.pid}"


@dataclass
class WaitGraph:
    """Threads, processes and the edges between them, plus what was missing."""

    threads: Dict[int, ThreadWait] = field(default_factory=dict)
    processes: Dict[int, ProcessInfo] = field(default_factory=dict)
    ends: Dict[str, str] = field(default_factory=dict)      # non-thread, non-process sink -> reason
    end_kinds: Dict[str, str] = field(default_factory=dict)  # sink -> intrinsic kind
    missing_pids: List[int] = field(default_factory=list)   # referenced, never snapshotted
    window_s: Optional[float] = None
    bpf: bool = False
    notes: List[str] = field(default_factory=list)
    locks: List[Any] = field(default_factory=list)           # /proc/locks (snapshot LockInfo)
    fds: Dict[int, List[Any]] = field(default_factory=dict)  # pid -> its FdInfo list
    sockets: Dict[int, Any] = field(default_factory=dict)    # inode -> SocketInfo
    holders: Dict[int, List[List[Any]]] = field(default_factory=dict)   # inode -> [[pid, fd, mode]]
    stats: Dict[int, List[Dict[str, Any]]] = field(default_factory=dict)  # tid -> per-syscall rows

    # -- graph access ---------------------------------------------------
    def successors(self, node: str) -> List[Edge]:
        """Who ``node`` waits for (empty for an end)."""
        kind, _, ident = node.partition(":")
        if kind == "t":
            t = self.threads.get(int(ident))
            if t is None or t.activity != WAITING:
                return []
            return list(t.edges)
        if kind == "p":
            p = self.processes.get(int(ident))
            if p is None or self.process_end_reason(p.pid):
                return []
            return [Edge(f"t:{tid}", "", f"thread {tid}", exact=False) for tid in p.tids
                    if tid in self.threads]
        return []

    def process_end_reason(self, pid: int) -> str:
        """Why process ``pid`` is an end of a chain ("" when all its threads wait)."""
        p = self.processes.get(pid)
        if p is None:
            return f"pid {pid} was not observed (exited, or not readable)"
        if p.state in ("Z", "X"):
            return "it is a zombie (exited, not reaped)"
        threads = [self.threads[t] for t in p.tids if t in self.threads]
        if not threads:
            return "its threads could not be read"
        if all(t.activity == STOPPED for t in threads):
            return "it is stopped"
        for t in threads:
            if t.activity == RUNNING:
                return f"it is running (thread {t.tid} on CPU)"
        for t in threads:
            if t.activity in (WAKING, TIMED):
                return f"it is alive (thread {t.tid} {_alive_words(t)})"
        if any(t.activity != WAITING for t in threads):
            return "some of its threads are in an unknown state"
        return ""

    def node_label(self, node: str) -> str:
        kind, _, ident = node.partition(":")
        if kind == "t":
            t = self.threads.get(int(ident))
            return f"thread {ident} ({t.label})" if t else f"thread {ident}"
        if kind == "p":
            p = self.processes.get(int(ident))
            return f"pid {ident} ({p.name})" if p else f"pid {ident}"
        if kind == "r":
            return f"remote {ident}"
        return ident

    def pid_of(self, node: str) -> Optional[int]:
        kind, _, ident = node.partition(":")
        if kind == "t":
            t = self.threads.get(int(ident))
            return t.pid if t else None
        if kind == "p":
            return int(ident)
        return None


def _alive_words(t: ThreadWait) -> str:
    if t.activity == RUNNING:
        return "is on CPU"
    if t.activity == TIMED:
        left = f", {secs(t.timeout_s)} left" if t.timeout_s is not None else ""
        return f"sleeps with a timeout in {t.syscall or '?'}{left}"
    return f"woke up {t.wakeups or 0} times in the window"



def _short_path(word: str) -> str:
    """A path's last part; anything else as it is.  A program may rewrite its
    own argv ("sshd: user@pts/0", "postgres: checkpointer"): only a word with
    no spaces that starts like a path is one."""
    if " " in word or word.endswith("/") or not word.startswith(("/", "./", "../", "~/")):
        return word
    return os.path.basename(word)


def process_words(p: ProcessInfo, width: int = 48) -> str:
    """"pid 123 (python worker.py --fast)": program and arguments, paths
    shortened to their last part, cut to ``width``."""
    if not p.cmdline:
        return f"pid {p.pid} ({p.name})"
    words = [_short_path(a) for a in p.cmdline]
    cmd = " ".join(words)
    if len(cmd) > width:
        cmd = cmd[:width - 1] + "…"
    return f"pid {p.pid} ({cmd})"


def python_location(tw: ThreadWait) -> str:
    """"in acquire at orders.py:42" from the innermost Python frame."""
    if not tw.python_stack:
        return ""
    fr = tw.python_stack[0]
    return f"in {fr.get('function')} at {os.path.basename(str(fr.get('file')))}:{fr.get('line')}"
