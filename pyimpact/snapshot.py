"""Typed records of one moment of the system, as read from /proc.

These dataclasses are what ``pyimpact.collect.procfs`` returns and what a
Recording stores: every one converts to a plain JSON-able dict (``to_dict``)
and back (``from_dict``) exactly, so a saved recording is analysed with the same
objects a live run produced.  JSON object keys are strings, so the dict form
writes integer keys (pids, inodes) as strings and ``from_dict`` turns them back
into ints; lists are lists in both forms (never tuples), so equality survives a
``json.dumps``/``json.loads`` round trip.

``from_dict`` ignores keys it does not know and fills missing ones with their
defaults, so a recording written by a newer or older pyimpact still loads.

Nothing here reads the system, prints or decides: the readers live in
``pyimpact.collect.procfs`` and the conclusions in ``pyimpact.analyse``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Type, TypeVar

T = TypeVar("T")

#: Environment keys read from other processes (DESIGN.md "Safety and privacy"):
#: ranks, world size, rendezvous address, visible GPUs, scheduler job ids.
ENV_ALLOW_KEYS = frozenset({
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
    "MASTER_ADDR", "MASTER_PORT",
    "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES",
    "TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC",   # how long a suspended rank has before NCCL aborts it
})
#: Environment key prefixes allowed as well (SLURM_JOB_* is within SLURM_*),
#: except the keys the deny-list below matches.
ENV_ALLOW_PREFIXES = ("TORCHELASTIC_", "SLURM_")
#: Words that mark a key as a credential (case-insensitive, anywhere in the
#: key): SLURM_DB_PASSWORD, TORCHELASTIC_TOKEN, SLURM_MUNGE_KEY... are never
#: kept, whatever prefix they carry.  None of the allowed exact keys contains one.
ENV_DENY_WORDS = ("PASSWORD", "PASSWD", "TOKEN", "SECRET", "KEY", "CREDENTIAL", "AUTH", "COOKIE",
                  "PRIVATE", "SESSION", "SIGNATURE")


def env_key_allowed(key: str) -> bool:
    """True when ``key`` is on the environment allow-list and not a credential;
    everything else is never kept."""
    if key in ENV_ALLOW_KEYS:
        return True
    upper = key.upper()
    return key.startswith(ENV_ALLOW_PREFIXES) and not any(w in upper for w in ENV_DENY_WORDS)


def _flat_from_dict(cls: Type[T], d: Dict[str, Any]) -> T:
    """Build a dataclass whose fields are all JSON types, ignoring unknown keys.

    Lists are copied so the record never shares a list with the caller's dict.
    """
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kw = {k: (list(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
    return cls(**kw)


def _flat_to_dict(obj: Any) -> Dict[str, Any]:
    """Dict of a dataclass whose fields are JSON types or lists of them (copied)."""
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, list):
            v = [list(x) if isinstance(x, list) else x for x in v]
        elif isinstance(v, dict):
            v = dict(v)
        out[f.name] = v
    return out


@dataclass
class ThreadSnapshot:
    """One thread (task) at snapshot time: what it is doing and what it waits on.

    ``syscall_nr`` is the syscall the thread is blocked in, -1 when it is
    stopped or sleeping outside any syscall (in user space), and None when
    /proc could not tell (unreadable, or the thread was on a CPU: the kernel
    then prints "running").  ``syscall_args`` are the six raw argument
    registers (empty when not in a syscall).

    ``exec_start_ms`` and ``sum_exec_runtime_ms`` are the scheduler's
    ``se.exec_start`` and ``se.sum_exec_runtime`` (/proc/.../sched), in ms of
    the per-CPU task clock.  ``last_ran_mono_ns`` is when the thread last ran,
    converted to CLOCK_MONOTONIC (the clock of BPF timestamps) with an offset
    measured on the CPU it last ran on (``processor``), and
    ``last_ran_ago_s`` is how long before the snapshot that was: a thread
    blocked since before tracing began shows "blocked >= N s" from it.
    """

    tid: int
    name: str = ""
    state: str = "?"
    wchan: str = ""
    syscall_nr: Optional[int] = None
    syscall_name: Optional[str] = None
    syscall_args: List[int] = field(default_factory=list)
    kernel_stack: List[str] = field(default_factory=list)
    utime_s: float = 0.0
    stime_s: float = 0.0
    voluntary_ctxt_switches: Optional[int] = None
    nonvoluntary_ctxt_switches: Optional[int] = None
    sum_exec_runtime_ms: Optional[float] = None
    exec_start_ms: Optional[float] = None
    last_ran_ago_s: Optional[float] = None
    last_ran_mono_ns: Optional[int] = None
    processor: Optional[int] = None
    read_mono_ns: int = 0  # CLOCK_MONOTONIC when this thread's state was read

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-able dict."""
        return _flat_to_dict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ThreadSnapshot":
        """Inverse of ``to_dict``."""
        return _flat_from_dict(cls, d)


@dataclass
class FdInfo:
    """One open file descriptor.

    ``kind`` is 'file', 'pipe' (anonymous pipe or named FIFO), 'socket',
    'anon' (eventfd, epoll, ...), 'dev' (character or block device) or
    'other' (directories and what cannot be classified).  ``inode`` is the
    pipefs/sockfs inode for pipes and sockets (the key of
    ``SystemSnapshot.inode_holders`` and ``sockets``), else the file's inode;
    ``dev`` is "maj:min" in hex, the way /proc/locks prints it, so a file lock
    can be matched to the descriptors that hold its file.  ``mode`` comes from
    the O_ACCMODE bits of ``flags`` (octal in fdinfo, stored as an int).
    ``size_bytes`` is the size of a regular file (None when not read).
    """

    fd: int
    target: str = ""
    kind: str = "other"
    inode: Optional[int] = None
    dev: Optional[str] = None
    pos: Optional[int] = None
    flags: Optional[int] = None
    mode: Optional[str] = None
    size_bytes: Optional[int] = None
    mnt_id: Optional[int] = None
    fs_type: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-able dict."""
        return _flat_to_dict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "FdInfo":
        """Inverse of ``to_dict``."""
        return _flat_from_dict(cls, d)


@dataclass
class SocketInfo:
    """One socket of the host, from /proc/net/{tcp,tcp6,udp,udp6,unix}.

    ``local``/``remote`` are "ip:port" ("[ip6]:port" for IPv6) or, for unix
    sockets, the bound path ("@name" for abstract names, "" when unbound);
    ``remote`` is "" when unconnected.  ``tx_queue``/``rx_queue`` are bytes
    queued (for a listening socket: backlog limit / connections waiting to be
    accepted).  ``peer_inode`` is the inode of the other end when it is on
    this host: from sock_diag for unix sockets, and for TCP/UDP the socket in
    the same network namespace whose addresses are ours swapped.
    ``netns`` is the inode of the network namespace the row was read in.
    """

    inode: int
    proto: str = ""
    local: str = ""
    remote: str = ""
    state: str = ""
    tx_queue: int = 0
    rx_queue: int = 0
    peer_inode: Optional[int] = None
    sock_type: str = ""
    netns: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-able dict."""
        return _flat_to_dict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "SocketInfo":
        """Inverse of ``to_dict``."""
        return _flat_from_dict(cls, d)


@dataclass
class LockInfo:
    """One line of /proc/locks: a file lock held, or a request waiting on one.

    The kernel prints each held lock followed by the tree of requests it
    blocks; all lines of one tree share ``id``.  A waiter has
    ``waiting=True``, ``blocked_by_id`` = that id, ``depth`` >= 1 (a request
    can wait on another waiter), and ``blocker_index``: the index, in the list
    ``read_locks`` returned, of the exact line it waits on.  ``pid`` is the
    process that took the lock (-1 for OFD locks; for flock() the holder is
    the open file, which may since be shared with other processes).
    ``dev`` is "maj:min" as printed (hex), None when the kernel printed no
    inode.
    """

    id: int
    kind: str = ""
    mode: str = ""
    access: str = ""
    pid: int = 0
    dev: Optional[str] = None
    inode: Optional[int] = None
    start: str = ""
    end: str = ""
    waiting: bool = False
    blocked_by_id: Optional[int] = None
    depth: int = 0
    blocker_index: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-able dict."""
        return _flat_to_dict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "LockInfo":
        """Inverse of ``to_dict``."""
        return _flat_from_dict(cls, d)


@dataclass
class ProcessSnapshot:
    """One process at snapshot time.

    (``pid``, ``start_ticks``) identify the process: a reused pid has another
    start time, so it is never mistaken for the original.  Fields that could
    not be read are None (or empty) and the reason is in
    ``SystemSnapshot.errors``.  ``env`` holds only allow-listed keys
    (``env_key_allowed``) of the environment the process was started with.
    The ``sig_*`` fields are the signal masks of /proc/PID/status as ints
    (bit n-1 is signal n).  ``pidns`` / ``nspid`` say which PID namespace it
    is in and its pid there (``nspid[-1]``; 1 = the namespace's init): pids
    it names (syscall arguments, mutex owners) are pids of that namespace.
    """

    pid: int
    start_ticks: int = 0
    create_time: float = 0.0
    ppid: int = 0
    pgid: int = 0
    sid: int = 0
    name: str = ""
    cmdline: List[str] = field(default_factory=list)
    exe: Optional[str] = None
    cwd: Optional[str] = None
    uid: Optional[int] = None
    state: str = "?"
    tracer_pid: int = 0
    num_threads: int = 0
    threads: List[ThreadSnapshot] = field(default_factory=list)
    fds: List[FdInfo] = field(default_factory=list)
    children: List[int] = field(default_factory=list)
    rss_bytes: Optional[int] = None
    uss_bytes: Optional[int] = None
    vms_bytes: Optional[int] = None
    cpu_user_s: float = 0.0
    cpu_system_s: float = 0.0
    children_cpu_user_s: float = 0.0
    children_cpu_system_s: float = 0.0
    io_read_bytes: Optional[int] = None
    io_write_bytes: Optional[int] = None
    io_read_chars: Optional[int] = None
    io_write_chars: Optional[int] = None
    sig_pending: int = 0
    sig_shared_pending: int = 0
    sig_blocked: int = 0
    sig_ignored: int = 0
    sig_caught: int = 0
    env: Dict[str, str] = field(default_factory=dict)
    python: bool = False
    kernel_thread: bool = False
    netns: Optional[int] = None
    pidns: Optional[int] = None            # inode of its PID namespace (/proc/PID/ns/pid)
    nspid: List[int] = field(default_factory=list)   # NSpid: host pid first, innermost namespace's last

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-able dict (threads and fds as lists of dicts)."""
        d = _flat_to_dict(self)
        d["threads"] = [t.to_dict() for t in self.threads]
        d["fds"] = [f.to_dict() for f in self.fds]
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ProcessSnapshot":
        """Inverse of ``to_dict``."""
        d = dict(d)
        threads = [ThreadSnapshot.from_dict(t) for t in d.pop("threads", [])]
        fds = [FdInfo.from_dict(f) for f in d.pop("fds", [])]
        p = _flat_from_dict(cls, d)
        # a recording written before the deny-list may carry credentials: not read back
        p.env = {k: v for k, v in dict(p.env or {}).items() if env_key_allowed(str(k))}
        p.threads, p.fds = threads, fds
        return p

    def thread(self, tid: int) -> Optional[ThreadSnapshot]:
        """The snapshot of thread ``tid``, or None."""
        for t in self.threads:
            if t.tid == tid:
                return t
        return None


def breadth_first(root: int, children_of: Callable[[int], Iterable[int]]) -> List[int]:
    """``root`` and everything reachable through ``children_of``, breadth-first,
    each pid once (linear: a set of seen pids and an index into the order)."""
    order, seen, i = [root], {root}, 0
    while i < len(order):
        for c in children_of(order[i]):
            if c not in seen:
                seen.add(c)
                order.append(c)
        i += 1
    return order


@dataclass
class SystemSnapshot:
    """Everything read in one snapshot: processes plus the host-wide tables
    needed to follow what they wait on (file locks, sockets, and who holds
    each pipe and socket).

    ``inode_holders`` maps a pipe/socket inode to ``[pid, fd, mode]`` for
    every descriptor on the machine that refers to it (a named FIFO held by a
    snapshotted process is included, keyed by its inode and matched by path).
    ``errors`` says what could not be read and why, one line each.

    ``own_pidns`` is the PID namespace the snapshot was read from (its pids
    are the "host" pids); ``pid_namespaces`` has, for every other namespace a
    snapshotted process is in, ``{"level", "to_host": {ns pid: host pid},
    "members": [host pids], "init": host pid of its pid 1}`` (see
    ``pyimpact.collect.procfs.pidns``).
    """

    taken_at_ns: int = 0
    monotonic_ns: int = 0
    boot_time: float = 0.0
    clock_ticks: int = 100
    page_size: int = 4096
    duration_ns: int = 0
    processes: Dict[int, ProcessSnapshot] = field(default_factory=dict)
    locks: List[LockInfo] = field(default_factory=list)
    sockets: Dict[int, SocketInfo] = field(default_factory=dict)
    inode_holders: Dict[int, List[List[Any]]] = field(default_factory=dict)
    errors: List[str] = field(default_factory=list)
    own_pidns: Optional[int] = None
    pid_namespaces: Dict[int, Dict[str, Any]] = field(default_factory=dict)

    def subtree(self, pid: int) -> List[int]:
        """``pid`` and its descendants present in this snapshot, breadth-first
        (parents first, children in pid order); [] when ``pid`` is not in it.
        The one walk of a snapshot's process tree on the analysis side."""
        procs = self.processes
        if pid not in procs:
            return []
        return breadth_first(pid, lambda p: (c for c in sorted(procs[p].children) if c in procs))

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-able dict; integer keys are written as strings."""
        return {
            "taken_at_ns": self.taken_at_ns,
            "monotonic_ns": self.monotonic_ns,
            "boot_time": self.boot_time,
            "clock_ticks": self.clock_ticks,
            "page_size": self.page_size,
            "duration_ns": self.duration_ns,
            "processes": {str(k): p.to_dict() for k, p in self.processes.items()},
            "locks": [lk.to_dict() for lk in self.locks],
            "sockets": {str(k): s.to_dict() for k, s in self.sockets.items()},
            "inode_holders": {str(k): [list(h) for h in v]
                              for k, v in self.inode_holders.items()},
            "errors": list(self.errors),
            "own_pidns": self.own_pidns,
            "pid_namespaces": {str(ns): {**t, "to_host": {str(k): v for k, v in t.get("to_host", {}).items()},
                                         "members": list(t.get("members", []))}
                               for ns, t in self.pid_namespaces.items()},
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "SystemSnapshot":
        """Inverse of ``to_dict``; accepts int or str keys."""
        s = cls(**{k: d[k] for k in ("taken_at_ns", "monotonic_ns", "boot_time",
                                     "clock_ticks", "page_size", "duration_ns")
                   if k in d})
        s.processes = {int(k): ProcessSnapshot.from_dict(v)
                       for k, v in d.get("processes", {}).items()}
        s.locks = [LockInfo.from_dict(x) for x in d.get("locks", [])]
        s.sockets = {int(k): SocketInfo.from_dict(v) for k, v in d.get("sockets", {}).items()}
        s.inode_holders = {int(k): [list(h) for h in v]
                           for k, v in d.get("inode_holders", {}).items()}
        s.errors = list(d.get("errors", []))
        s.own_pidns = d.get("own_pidns")
        s.pid_namespaces = {int(ns): {**t, "to_host": {int(k): int(v) for k, v in t.get("to_host", {}).items()},
                                      "members": [int(m) for m in t.get("members", [])]}
                            for ns, t in (d.get("pid_namespaces") or {}).items()}
        return s
