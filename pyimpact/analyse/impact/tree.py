"""The process tree of a job: who is who, what each holds, what dies with it.

Roles are read from what the processes show of themselves: PyTorch names its
DataLoader worker processes ``pt_data_worker`` (comm); multiprocessing,
joblib/loky, TensorBoard and torch's compile workers carry their module in
argv; a forked child with its parent's argv is a worker of it.

The cascade follows kernel rules, not hopes: SIGKILL of a process does not
kill its children; they are re-parented to init (or the nearest subreaper)
and live on unless they notice.  PyTorch's DataLoader workers poll
``os.getppid()`` and leave within ~5 s (MP_STATUS_CHECK_INTERVAL); a process
group kill (``kill -- -PGID``) ends them all at once.

Pure functions over ``SystemSnapshot`` records; the cascade comes out as a
typed ``Cascade`` (``cascade`` of the --json document).
"""
from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ...jsondoc import json_field
from ...snapshot import ProcessSnapshot, SystemSnapshot
from .. import pidns
from ...names import is_checkpoint_name, is_log_name, is_temp_name, writable

DATALOADER_WORKER_EXIT_S = 5.0     # torch.utils.data._utils.MP_STATUS_CHECK_INTERVAL
_BORING_READ = ("/usr/", "/lib", "/etc/", "/opt/conda/lib", "/proc/", "/sys/", "/dev/", "/run/")
_LAUNCHERS = ("torchrun", "torch.distributed.run", "torch.distributed.launch", "accelerate",
              "deepspeed", "mpirun", "mpiexec", "srun", "horovodrun")


def tree_pids(snap: SystemSnapshot, root: int) -> List[int]:
    """root and its descendants present in the snapshot, parents first."""
    return snap.subtree(root)


def role_of(p: ProcessSnapshot, parent: Optional[ProcessSnapshot], is_root: bool) -> str:
    argv = " ".join(p.cmdline)
    if is_root:
        return "launcher" if any(x in argv for x in _LAUNCHERS) else "main"
    if p.name == "pt_data_worker":
        return "dataloader worker"
    if "multiprocessing.resource_tracker" in argv or "multiprocessing.semaphore_tracker" in argv:
        return "helper: mp resource tracker"
    if "multiprocessing.forkserver" in argv:
        return "helper: mp forkserver"
    if "tensorboard" in argv:
        return "helper: TensorBoard"
    if "compile_worker" in argv or "torch._inductor" in argv:
        return "helper: torch compile worker"
    if "wandb" in argv:
        return "helper: wandb"
    if "loky" in argv or "joblib" in argv:
        return "joblib worker"
    if "multiprocessing.spawn" in argv or "--multiprocessing-fork" in argv:
        return "mp worker"
    if parent is not None and p.cmdline and p.cmdline == parent.cmdline:
        return "worker (forked)"
    return "child"


@dataclass
class FileGroups:
    """A process's open files by what they are for, so the reader sees which
    ones a kill leaves half-written (checkpoints, temp files) and which are data."""

    checkpoints: List[str] = field(default_factory=list)
    logs: List[str] = field(default_factory=list)
    temp: List[str] = field(default_factory=list)
    written: List[str] = field(default_factory=list)
    read: List[str] = field(default_factory=list)
    shm: List[str] = field(default_factory=list)          # shared memory (e.g. torch tensors)
    gpu_devices: List[str] = field(default_factory=list)


def group_files(p: ProcessSnapshot) -> FileGroups:
    """Open files by what they are for: written checkpoints, logs, temp
    files, other written files, read data (system files left out)."""
    g = FileGroups()
    for f in p.fds:
        t = f.target
        if f.kind == "dev":
            if t.startswith("/dev/nvidia") and t not in g.gpu_devices:
                g.gpu_devices.append(t)
            continue
        if f.kind != "file" or not t.startswith("/"):
            continue
        name = os.path.basename(t.replace(" (deleted)", ""))
        if t.startswith("/dev/shm/"):
            if t not in g.shm:
                g.shm.append(t)
            continue
        if writable(f.flags):
            if is_log_name(name) or f.fd in (1, 2):   # stdout/stderr redirected to a file
                bucket = g.logs
            elif is_temp_name(name) or t.endswith(" (deleted)"):
                bucket = g.temp
            elif is_checkpoint_name(name):
                bucket = g.checkpoints
            else:
                bucket = g.written
        elif t.startswith(_BORING_READ) or "/site-packages/" in t or t.endswith((".so", ".py", ".pyc")):
            continue
        else:
            bucket = g.read
        if t not in bucket:
            bucket.append(t)
    return g


@dataclass(frozen=True)
class SocketPeer:
    """A TCP/UDP connection of the tree to something outside it: the other end
    sees it reset or closed by the kill."""

    proto: str
    local: str
    remote: str
    state: str
    local_pid: Optional[int]      # the process holding the other end, when it is on this machine


@dataclass
class SocketGroups:
    """A process's sockets: what it listens on (refused after the kill) and its peers."""

    listening: List[str] = field(default_factory=list)
    peers: List[SocketPeer] = field(default_factory=list)


@dataclass(frozen=True)
class GpuHolding:
    """VRAM one process holds on one GPU (NVML): freed by the kill."""

    device: int
    used_memory_bytes: Optional[int]


@dataclass(frozen=True)
class ProcessRow:
    """One process of the tree (``tree[]`` of the --json document): who it is
    and what it holds, so the reader sees what dies with the kill."""

    pid: int
    ppid: int
    role: str                    # launcher | main | dataloader worker | helper: ... | child (tree.role_of)
    command: str
    age_s: Optional[float]
    cpu_pct: Optional[float]     # over the window; None: alive in one sample only
    rss_bytes: Optional[int]
    uss_bytes: Optional[int]
    threads: int
    state: str
    files: FileGroups
    sockets: SocketGroups
    gpus: List[GpuHolding] = field(default_factory=list)


def group_sockets(p: ProcessSnapshot, snap: SystemSnapshot, tree: set) -> SocketGroups:
    g = SocketGroups()
    for f in p.fds:
        if f.kind != "socket" or f.inode is None:
            continue
        s = snap.sockets.get(f.inode)
        if s is None or not s.proto.startswith(("tcp", "udp")):
            continue
        if s.state == "LISTEN":
            if s.local not in g.listening:
                g.listening.append(s.local)
        elif s.remote and s.state in ("ESTABLISHED", "SYN_SENT", "CLOSE_WAIT", ""):
            local_pid = None
            if s.peer_inode is not None:
                for pid, _fd, _mode in snap.inode_holders.get(s.peer_inode, []):
                    local_pid = pid
                    break
            if local_pid in tree:
                continue    # talking to itself
            g.peers.append(SocketPeer(s.proto, s.local, s.remote, s.state, local_pid))
    return g


def distributed_env(p: ProcessSnapshot) -> Optional[dict]:
    """What the allow-listed environment says about a distributed job."""
    env = p.env
    keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    if not any(k in env for k in keys) and not any(k.startswith(("TORCHELASTIC_", "SLURM_")) for k in env):
        return None
    out = {k.lower(): env[k] for k in keys if k in env}
    elastic = {k: v for k, v in env.items() if k.startswith("TORCHELASTIC_")}
    slurm = {k: v for k, v in env.items() if k in ("SLURM_JOB_ID", "SLURM_PROCID", "SLURM_NTASKS",
                                                   "SLURM_STEP_ID", "SLURM_JOB_NAME")}
    if elastic:
        out["torchelastic"] = elastic
    if slurm:
        out["slurm"] = slurm
    if "CUDA_VISIBLE_DEVICES" in env:
        out["cuda_visible_devices"] = env["CUDA_VISIBLE_DEVICES"]
    return out


def child_fate(role: str, depth: int) -> str:
    """What SIGKILL of the root does to a descendant."""
    if role == "dataloader worker":
        return (f"orphaned (re-parented to init/subreaper); PyTorch's worker watchdog notices "
                f"the parent is gone and exits within ~{DATALOADER_WORKER_EXIT_S:.0f} s")
    if role in ("mp worker", "joblib worker", "worker (forked)"):
        return "orphaned (re-parented); exits when it next reads from the dead parent's pipe (EOF), else lives on"
    if role.startswith("helper: mp"):
        return "orphaned; exits when the parent's pipe closes, cleaning up its resources"
    if depth > 1:
        return "stays with its own parent (in the tree); dies or lives on with it"
    return "orphaned (re-parented to init/subreaper) and keeps running, holding its resources"


class PeerKind(str, enum.Enum):
    """What outside the process tree a kill hurts (``cascade.peers[].kind``)."""

    PID_NS = "pid-ns"              # the rest of the PID namespace the root is the init of
    DISTRIBUTED = "distributed"    # the other ranks of a distributed job
    TCP = "tcp"                    # the other end of a connection
    LISTENER = "listener"          # clients of a port the tree listens on
    PIPE = "pipe"                  # a process outside the tree holding the other end of a pipe


@dataclass(frozen=True)
class ChildFate:
    """A descendant of the root and what SIGKILL of the root does to it (it is not killed with it)."""

    pid: int
    ppid: int
    role: str
    command: str
    fate: str
    uss_bytes: Optional[int]
    cpu_pct: Optional[float]


@dataclass(frozen=True)
class ParentEffect:
    """The root's parent: it sees the child end, and may restart it."""

    pid: int
    command: Optional[str]          # None: the parent is not in the snapshot
    effect: str


@dataclass(frozen=True)
class Peer:
    """One party outside the tree that the kill hurts; ``pid``, ``env`` and
    ``state`` only where the kind has them (left out of the document otherwise)."""

    kind: PeerKind
    pid: Optional[int] = json_field(default=None, omit_none=True)
    who: str = ""
    env: Optional[dict] = json_field(default=None, omit_none=True)     # distributed: the allow-listed env
    state: Optional[str] = json_field(default=None, omit_none=True)    # tcp: the connection state
    effect: str = ""


@dataclass(frozen=True)
class PidNamespaceFate:
    """The root is the init of a PID namespace: the whole namespace dies with it."""

    init: int
    ns_pid: int
    members: List[int]
    effect: str


@dataclass(frozen=True)
class Cascade:
    """Who is hurt by the kill besides the root: its children and their fate,
    its parent, the peers outside the tree, and the one command that ends the
    whole group at once."""

    children: List[ChildFate]
    parent: ParentEffect
    peers: List[Peer]
    group_kill: str
    pid_namespace: Optional[PidNamespaceFate] = json_field(default=None, omit_none=True)


def _restarts_left(te: dict) -> Optional[int]:
    """Restarts torchelastic's agent still has (TORCHELASTIC_MAX_RESTARTS minus
    TORCHELASTIC_RESTART_COUNT), None when the environment does not say."""
    try:
        return max(0, int(te["TORCHELASTIC_MAX_RESTARTS"]) - int(te.get("TORCHELASTIC_RESTART_COUNT") or 0))
    except (KeyError, TypeError, ValueError):
        return None


def cascade(snap: SystemSnapshot, root: int, pids: List[int], tree: List[ProcessRow]) -> Cascade:
    """Who is hurt by the kill: children (and their fate), the parent,
    distributed peers, TCP peers and listeners, pipe ends held outside."""
    depth = {root: 0}
    for pid in pids:
        p = snap.processes[pid]
        if pid != root:
            depth[pid] = depth.get(p.ppid, 0) + 1
    rp = snap.processes[root]
    pidset = set(pids)
    ns = _namespace_fate(snap, rp, pidset)
    children = []
    for r in tree:
        if r.pid == root:
            continue
        children.append(ChildFate(r.pid, r.ppid, r.role, r.command,
                                  ns[0] if ns else child_fate(r.role, depth.get(r.pid, 1)), r.uss_bytes, r.cpu_pct))
    parent = snap.processes.get(rp.ppid)
    effect = ("sees the child end (wait status: killed by the signal); a launcher or supervisor may "
              "restart it")
    if rp.name == "pt_data_worker":
        # PyTorch's DataLoader: the main process's SIGCHLD handler and its next fetch raise
        # "DataLoader worker (pid N) is killed by signal": the training loop ends unless it catches that
        effect = ("is the training process of this PyTorch DataLoader worker: its next batch fetch raises "
                  "RuntimeError (\"DataLoader worker ... is killed by signal\") and the job ends unless its loop "
                  "catches it, losing the main process's work since its last checkpoint")
    parent_info = ParentEffect(rp.ppid, " ".join(parent.cmdline) if parent else None, effect)
    peers: List[Peer] = [ns[1]] if ns else []
    dist = distributed_env(rp)
    if dist:
        what = "distributed job"
        if "rank" in dist or "world_size" in dist:
            what = f"rank {dist.get('rank', '?')} of {dist.get('world_size', '?')}"
        effect = ("the other ranks stall in their next collective until it times out (PyTorch's "
                  "default: 10 min NCCL, 30 min Gloo) unless an elastic agent restarts the group")
        if "torchelastic" in dist:
            te = dist["torchelastic"] if isinstance(dist["torchelastic"], dict) else {}
            left = _restarts_left(te)
            if left == 0:
                effect = ("torchelastic's agent sees this worker fail and, with no restart left (TORCHELASTIC_"
                          f"MAX_RESTARTS={te.get('TORCHELASTIC_MAX_RESTARTS')}, restart "
                          f"{te.get('TORCHELASTIC_RESTART_COUNT')} now), stops the other ranks: the whole job "
                          "ends, every rank losing its work since the last checkpoint")
            else:
                effect = ("torchelastic's agent sees this worker fail and restarts the whole group from "
                          "its last checkpoint (" + (f"{left} restart(s) left" if left is not None
                                                     else "if restarts remain")
                          + "); the other ranks lose their work since then too")
        peers.append(Peer(PeerKind.DISTRIBUTED, who=what, env=dist, effect=effect))
    for r in tree:
        for s in r.sockets.peers:
            who = f"{s.remote}" + (f" (local pid {s.local_pid})" if s.local_pid else "")
            peers.append(Peer(PeerKind.TCP, pid=r.pid, who=who, state=s.state,
                              effect="the peer sees the connection reset or closed (EOF/ECONNRESET)"))
        for port in r.sockets.listening:
            peers.append(Peer(PeerKind.LISTENER, pid=r.pid, who=port,
                              effect="new connections to this port are refused"))
    # Pipes shared with processes outside the tree, where they hold the other end:
    # a reader of the job's output, or a writer feeding the job.
    outside: Dict[int, set] = {}
    for pid in pids:
        for f in snap.processes[pid].fds:
            if f.kind != "pipe" or f.inode is None or not f.mode:
                continue
            for hpid, _fd, mode in snap.inode_holders.get(f.inode, []):
                if hpid in pidset or not mode:
                    continue
                if "w" in f.mode and "r" in mode:
                    outside.setdefault(hpid, set()).add("reads")
                elif "r" in f.mode and "w" in mode:
                    outside.setdefault(hpid, set()).add("writes")
    for hpid, how in sorted(outside.items())[:8]:
        other = snap.processes.get(hpid)
        if "reads" in how:
            effect = "reads the job's output through a pipe: gets EOF once its last writer is gone"
        else:
            effect = "writes into the job through a pipe: gets EPIPE/SIGPIPE once no reader is left"
        peers.append(Peer(PeerKind.PIPE, pid=hpid, who=f"pid {hpid}" + (f" ({other.name})" if other else ""),
                          effect=effect))
    return Cascade(children, parent_info, peers, _group_kill(snap, rp, pids), ns[2] if ns else None)


def _group_kill(snap: SystemSnapshot, rp: ProcessSnapshot, pids: List[int]) -> str:
    """The command that ends the tree at once, if one group holds it: a launcher
    that starts its workers in sessions of their own (torchrun does) leaves them
    out of its group, and ``kill -- -PGID`` would orphan them."""
    if not rp.pgid:
        return ""
    outside = sorted(pid for pid in pids if pid != rp.pid and pid in snap.processes
                     and snap.processes[pid].pgid and snap.processes[pid].pgid != rp.pgid)
    if not outside:
        return f"kill -- -{rp.pgid} ends the whole process group at once"
    groups = sorted({snap.processes[pid].pgid for pid in outside})
    return (f"kill -- -{rp.pgid} does not end the whole tree: {len(outside)} of its processes "
            f"(pid {', '.join(map(str, outside[:4]))}{' ...' if len(outside) > 4 else ''}) are in other process "
            f"group(s) ({', '.join(map(str, groups[:4]))}{' ...' if len(groups) > 4 else ''}); signal those "
            "groups too, or each pid")


def _namespace_fate(snap: SystemSnapshot, rp: ProcessSnapshot,
                    pidset: set) -> Optional[Tuple[str, Peer, PidNamespaceFate]]:
    """The root is the init of a PID namespace (a container's pid 1): when it
    dies the kernel SIGKILLs every other process of the namespace, so nothing
    is orphaned -- also the processes that entered it later (docker exec,
    nsenter), which are not its descendants.  (every child's fate, the
    namespace's peer entry, the namespace) or None."""
    if not pidns.namespace_init(snap, rp):
        return None
    members = pidns.namespace_members(snap, rp)
    fate = (f"killed with its PID namespace: when the namespace's init (pid {rp.pid}) dies, the kernel "
            "sends SIGKILL to every process in it")
    outside_tree = [m for m in members if m != rp.pid and m not in pidset]
    who = f"{len(members)} processes" if members else "all processes"
    effect = ("all die with pid 1 of the namespace (SIGKILL from the kernel, no cleanup): a container "
              "stops as a whole")
    if outside_tree:
        effect += "; not in the tree above: pids " + ", ".join(map(str, outside_tree[:10])) + \
            (" ..." if len(outside_tree) > 10 else "") + " (entered the namespace later, e.g. docker exec)"
    return (fate, Peer(PeerKind.PID_NS, who=who, effect=effect),
            PidNamespaceFate(rp.pid, rp.nspid[-1], members, "every process of the namespace is killed with its init"))
