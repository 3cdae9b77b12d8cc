"""One diagnosis for a distributed job, from the diagnoses of its nodes.

Each node runs the local diagnosis over the job's ranks that live there
(``pyimpact diagnose --node-job KEY --json``, schema
``pyimpact.diagnose-node/1``) and reports, per rank, the local verdict and the
rank's established TCP connections. This module merges those documents; it
is pure (no I/O, no clock).

The model, for any collective-communication job (gloo, NCCL's TCP
bootstrap, MPI over TCP, a parameter server):

- A rank that waits **in a collective** (its Python stack is inside a
  collective of a distributed library, or, without a stack, it is blocked on
  a wait with no local owner while it holds connections to other ranks) has
  arrived and waits for the others: it is *ahead*, and it owes nothing.
- A rank that is **not** in a collective while others wait in one is
  *behind*: the others wait on it. Whatever holds it locally (a sleep, a
  read of a file, a lock, a busy loop, being stopped) is the root cause of
  the job's hang, and its own local diagnosis says why.
- Ranks the world size promises but no reachable node has are the root when
  every rank found waits (dead ranks, or ranks on the unreachable nodes).
- TCP connections are matched across nodes by the address 4-tuple (one
  side's local/remote is the other side's remote/local): those are the
  job's cross-node edges.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

NODE_SCHEMA = "pyimpact.diagnose-node/1"
JOB_SCHEMA = "pyimpact.diagnose-job/1"

#: Functions of the distributed libraries a rank sits in while it waits for
#: the other ranks (torch.distributed, its c10d store, DeepSpeed, Horovod, mpi4py).
COLLECTIVE_FUNCTIONS = frozenset({
    "all_reduce", "all_gather", "all_gather_into_tensor", "all_gather_object", "reduce_scatter",
    "reduce_scatter_tensor", "broadcast", "broadcast_object_list", "barrier", "monitored_barrier",
    "reduce", "gather", "gather_object", "scatter", "scatter_object_list", "all_to_all",
    "all_to_all_single", "send", "recv", "isend", "irecv", "wait", "batch_isend_irecv",
    "allreduce", "allgather", "Allreduce", "Allgather", "Bcast", "Barrier", "Reduce", "Send", "Recv",
    "synchronize",
})
COLLECTIVE_MODULES = ("torch/distributed/", "deepspeed/comm", "horovod/", "mpi4py", "torch/nn/parallel/")
#: Local root-cause kinds that mean "waits on something this node cannot name":
#: a wait that only another rank can end.
PEER_WAIT_KINDS = frozenset({"futex", "socket", "unknown", "collective"})
HUNG_CLASSES = frozenset({"deadlock", "blocked", "stopped", "zombie"})


@dataclass
class RankState:
    """One rank as its node saw it."""

    node: str
    pid: int
    rank: Optional[int]
    local_rank: Optional[int]
    klass: str
    summary: str
    hung: bool
    in_collective: Optional[str]        # "all_reduce at job.py:11", or None
    root_cause: Optional[Dict[str, Any]]
    tcp: List[Tuple[str, str]] = field(default_factory=list)
    gpus: List[int] = field(default_factory=list)
    elastic: Dict[str, str] = field(default_factory=dict)
    waiting: bool = False               # arrived in a collective and makes no progress (set by merge)

    @property
    def label(self) -> str:
        r = f"rank {self.rank}" if self.rank is not None else f"pid {self.pid}"
        return f"{r} (node {self.node}, pid {self.pid})"

    def to_json(self) -> Dict[str, Any]:
        return {"node": self.node, "pid": self.pid, "rank": self.rank, "local_rank": self.local_rank,
                "class": self.klass, "summary": self.summary, "hung": self.hung,
                "in_collective": self.in_collective, "root_cause": self.root_cause,
                "role": "ahead" if self.waiting else "behind"}


@dataclass
class NodeResult:
    """What one node answered, or why it did not."""

    host: str
    doc: Optional[Dict[str, Any]] = None
    error: Optional[str] = None
    elapsed_s: Optional[float] = None


@dataclass
class JobDiagnosis:
    """The merged answer for the whole job."""

    job: str
    world_size: Optional[int]
    klass: str
    summary: str
    hung: bool
    root: List[RankState]
    ranks: List[RankState]
    edges: List[Dict[str, Any]]
    nodes: List[Dict[str, Any]]
    unreachable: List[Dict[str, str]]
    missing_ranks: List[int]
    evidence: List[str]
    confidence: str

    def to_json(self) -> Dict[str, Any]:
        root = None
        if self.root:
            r = self.root[0]
            root = {"node": r.node, "rank": r.rank, "local_rank": r.local_rank, "pid": r.pid,
                    "summary": r.summary, "local_root_cause": r.root_cause,
                    "also": [{"node": x.node, "rank": x.rank, "pid": x.pid} for x in self.root[1:]]}
        elif self.missing_ranks:
            root = {"node": None, "rank": self.missing_ranks[0], "pid": None,
                    "summary": f"rank(s) {ranges(self.missing_ranks)} not found on any reachable node"}
        return {
            "schema": JOB_SCHEMA,
            "job": self.job,
            "world_size": self.world_size,
            "verdict": {"class": self.klass, "summary": self.summary, "hung": self.hung,
                        "confidence": self.confidence, "root_cause": root if self.hung else None},
            "wavefront": {"ahead": [r.rank for r in self.ranks if r.waiting],
                          "behind": [r.rank for r in self.ranks if not r.waiting]},
            "ranks": [r.to_json() for r in self.ranks],
            "edges": self.edges,
            "nodes": self.nodes,
            "unreachable": self.unreachable,
            "missing_ranks": self.missing_ranks,
            "evidence": self.evidence,
        }


def _int(v: Any) -> Optional[int]:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def ranges(nums: Sequence[int]) -> str:
    """[0, 1, 2, 5] -> '0–2, 5'."""
    nums = sorted(set(nums))
    out, start, prev = [], None, None
    for n in nums + [None]:
        if start is None:
            start = prev = n
        elif n is not None and n == prev + 1:
            prev = n
        else:
            out.append(f"{start}" if start == prev else f"{start}–{prev}")
            start = prev = n
    return ", ".join(out)


def normalise_addr(addr: str) -> str:
    """'[::ffff:10.0.0.1]:80' -> '10.0.0.1:80' (an IPv4 peer of a dual-stack socket)."""
    if addr.startswith("[::ffff:") and "]:" in addr:
        host, port = addr[len("[::ffff:"):].split("]:", 1)
        if host.count(".") == 3:
            return f"{host}:{port}"
    return addr


def collective_of(diagnosis: Dict[str, Any]) -> Optional[str]:
    """'all_reduce at distributed_c10d.py:3252 (job.py:11)' when a waiting
    thread's Python stack is inside a collective, else None."""
    for t in diagnosis.get("threads") or []:
        if t.get("activity") == "running":
            continue
        frames = t.get("python_stack") or []
        for i, f in enumerate(frames):
            fn = str(f.get("function", "")).split(".")[-1]
            path = str(f.get("file", ""))
            if fn in COLLECTIVE_FUNCTIONS and any(m in path for m in COLLECTIVE_MODULES):
                caller = next((g for g in frames[i + 1:]
                               if not any(m in str(g.get("file", "")) for m in COLLECTIVE_MODULES)), None)
                where = f"{fn} at {path.rsplit('/', 1)[-1]}:{f.get('line')}"
                if caller is not None:
                    where += f" (called from {str(caller.get('file', '')).rsplit('/', 1)[-1]}:{caller.get('line')})"
                return where
    return None


def _peer_wait_shape(v: Dict[str, Any], has_rank_peers: bool) -> bool:
    """Without a Python stack: blocked on a wait no local process owns, while
    connected to other ranks."""
    root = v.get("root_cause") or {}
    return bool(v.get("hung")) and has_rank_peers and root.get("kind") in PEER_WAIT_KINDS


def rank_states(results: Sequence[NodeResult]) -> List[RankState]:
    """Every rank of every node that answered, rank order."""
    states: List[RankState] = []
    for res in results:
        if res.doc is None:
            continue
        for r in res.doc.get("ranks") or []:
            d = r.get("diagnosis") or {}
            v = d.get("verdict") or {}
            states.append(RankState(
                node=res.host, pid=int(r.get("pid", 0)), rank=_int(r.get("rank")),
                local_rank=_int(r.get("local_rank")), klass=str(v.get("class", "unknown")),
                summary=str(v.get("summary", r.get("error", ""))), hung=bool(v.get("hung")),
                in_collective=collective_of(d), root_cause=v.get("root_cause"),
                tcp=[(normalise_addr(s["local"]), normalise_addr(s["remote"]))
                     for s in r.get("tcp") or [] if s.get("remote")],
                gpus=[int(g) for g in r.get("gpus") or []], elastic=dict(r.get("elastic") or {})))
    states.sort(key=lambda s: (s.rank if s.rank is not None else 1 << 30, s.node, s.pid))
    return states


def match_edges(ranks: Sequence[RankState]) -> List[Dict[str, Any]]:
    """Connections between ranks, matched by the 4-tuple; cross-node ones marked."""
    by_tuple: Dict[Tuple[str, str], RankState] = {}
    for r in ranks:
        for local, remote in r.tcp:
            by_tuple[(local, remote)] = r
    edges, seen = [], set()
    for r in ranks:
        for local, remote in r.tcp:
            peer = by_tuple.get((remote, local))
            if peer is None or peer is r:
                continue
            key = tuple(sorted([(r.node, r.pid, local), (peer.node, peer.pid, remote)]))
            if key in seen:
                continue
            seen.add(key)
            edges.append({"a": {"node": r.node, "rank": r.rank, "pid": r.pid, "addr": local},
                          "b": {"node": peer.node, "rank": peer.rank, "pid": peer.pid, "addr": remote},
                          "cross_node": r.node != peer.node})
    return edges


def _expected_world(results: Sequence[NodeResult], ranks: Sequence[RankState]) -> Optional[int]:
    sizes = [_int(r.get("world_size")) for res in results if res.doc for r in res.doc.get("ranks") or []]
    sizes = [s for s in sizes if s]
    return max(sizes) if sizes else (len(ranks) or None)


def merge(job: str, results: Sequence[NodeResult]) -> JobDiagnosis:
    """The job's verdict, root cause (node, rank, pid, why), wavefront and edges."""
    ranks = rank_states(results)
    edges = match_edges(ranks)
    world = _expected_world(results, ranks)
    unreachable = [{"host": r.host, "reason": r.error or "no answer"} for r in results if r.doc is None]
    nodes = []
    for res in results:
        if res.doc is None:
            continue
        mine = [r for r in ranks if r.node == res.host]
        nodes.append({"host": res.host, "ranks": [r.rank for r in mine], "elapsed_s": res.elapsed_s,
                      "hung": any(r.hung for r in mine),
                      "errors": list(res.doc.get("errors") or [])})
    found = {r.rank for r in ranks if r.rank is not None}
    missing = [n for n in range(world or 0) if n not in found] if world else []
    peers_of: Dict[int, set] = {}
    for e in edges:
        peers_of.setdefault(e["a"]["pid"], set()).add(e["b"]["pid"])
        peers_of.setdefault(e["b"]["pid"], set()).add(e["a"]["pid"])
    for r in ranks:
        if r.in_collective is None and _peer_wait_shape(
                {"hung": r.hung, "root_cause": r.root_cause}, bool(peers_of.get(r.pid))):
            r.in_collective = "a wait no local process owns (no Python stack to name the collective)"
        # Caught inside a collective is normal for a healthy rank: only a rank
        # whose own node found it hung (no progress over the window) waits in it.
        r.waiting = r.in_collective is not None and r.hung
    waiting = [r for r in ranks if r.waiting]
    behind = [r for r in ranks if not r.waiting]
    cross = [e for e in edges if e["cross_node"]]
    evidence = [f"{len(results) - len(unreachable)} of {len(results)} node(s) answered; "
                f"{len(ranks)} rank(s) found of world size {world if world else '?'}",
                f"{len(edges)} TCP connection(s) between ranks matched by address, {len(cross)} across nodes"]
    for r in waiting:
        evidence.append(f"{r.label}: waits in {r.in_collective}")
    for r in behind:
        evidence.append(f"{r.label}: not in a collective: {r.klass}: {r.summary}")
    if unreachable:
        evidence.extend(f"node {u['host']}: {u['reason']}" for u in unreachable)

    def job_label(rs: Sequence[RankState]) -> str:
        nums = [r.rank for r in rs if r.rank is not None]
        return f"rank{'s' if len(nums) != 1 else ''} {ranges(nums)}" if nums else f"{len(rs)} process(es)"

    if waiting and behind:
        root = behind
        first = root[0]
        coll = waiting[0].in_collective.split(" (")[0]
        summary = (f"{job_label(waiting)} wait in {coll} on {first.label}, which is not in the collective: "
                   f"{first.klass}: {first.summary}")
        if len(root) > 1:
            summary += f" (also behind: {', '.join(r.label for r in root[1:])})"
        return JobDiagnosis(job, world, "blocked", summary, True, root, ranks, edges, nodes, unreachable,
                            missing, evidence, "high" if not missing else "medium")
    if waiting and missing:
        where = f"; unreachable node(s): {', '.join(u['host'] for u in unreachable)}" if unreachable else ""
        summary = (f"{job_label(waiting)} wait in {waiting[0].in_collective.split(' (')[0]} for "
                   f"rank(s) {ranges(missing)}, found on no reachable node (exited, or on a node that did not "
                   f"answer){where}")
        return JobDiagnosis(job, world, "blocked", summary, True, [], ranks, edges, nodes, unreachable,
                            missing, evidence, "medium")
    if waiting:
        summary = (f"every rank found ({job_label(waiting)}) waits in a collective and none is behind: "
                   "mismatched collectives (different op or order on some rank) or a lost connection")
        return JobDiagnosis(job, world, "blocked", summary, True, [], ranks, edges, nodes, unreachable,
                            missing, evidence, "low")
    hung = [r for r in ranks if r.klass in HUNG_CLASSES]
    if hung:
        first = hung[0]
        summary = f"{first.label} is {first.klass}: {first.summary}"
        return JobDiagnosis(job, world, first.klass, summary, True, hung, ranks, edges, nodes, unreachable,
                            missing, evidence, "medium")
    if not ranks:
        summary = "no rank of the job answered" + (
            f" (unreachable: {', '.join(u['host'] for u in unreachable)})" if unreachable else "")
        return JobDiagnosis(job, world, "unknown", summary, False, [], ranks, edges, nodes, unreachable,
                            missing, evidence, "low")
    classes = sorted({r.klass for r in ranks})
    klass = "progressing" if "progressing" in classes else classes[0]
    summary = f"not hung: {len(ranks)} rank(s): " + ", ".join(
        f"{job_label([r for r in ranks if r.klass == c])} {c}" for c in classes)
    if missing:
        summary += f"; rank(s) {ranges(missing)} not found on any reachable node"
    return JobDiagnosis(job, world, klass, summary, False, [], ranks, edges, nodes, unreachable, missing,
                        evidence, "high" if not missing else "medium")


#: torch.distributed's default collective timeouts (init_process_group), used
#: when the job's own cannot be seen from outside.
DEFAULT_TIMEOUT_S = {"gloo": 1800.0, "nccl": 600.0}


def kill_cascade(jd: JobDiagnosis, rank: int) -> Dict[str, Any]:
    """What a kill of rank ``rank`` does to the rest of the job: which ranks
    stall, for how long and on what basis, and the GPU time that stall costs.

    Under torchrun's elastic agent (TORCHELASTIC_* in the rank's environment)
    the agent sees its worker die and stops the other local workers; every
    node's agent then restarts all ranks while restarts remain
    (TORCHELASTIC_MAX_RESTARTS minus TORCHELASTIC_RESTART_COUNT), else the job
    fails. Without an agent the other ranks wait in their next collective
    until its timeout, then fail."""
    target = next((r for r in jd.ranks if r.rank == rank), None)
    if target is None:
        return {"target": None, "reason": f"rank {rank} was found on no node that answered"}
    others = [r for r in jd.ranks if r is not target]
    backend = "nccl" if any(r.gpus for r in jd.ranks) else "gloo"
    gpus_stalled = sum(len(r.gpus) for r in others)
    out: Dict[str, Any] = {
        "target": {"node": target.node, "rank": target.rank, "pid": target.pid, "gpus": target.gpus},
        "stall": [{"node": r.node, "rank": r.rank, "pid": r.pid, "gpus": r.gpus} for r in others],
        "backend_guess": backend,
        "gpus_stalled": gpus_stalled,
        "gpu_seconds_wasted_per_minute": gpus_stalled * 60.0,
        "missing_ranks": jd.missing_ranks,
        "unreachable": [u["host"] for u in jd.unreachable],
    }
    elastic = target.elastic
    if "TORCHELASTIC_RUN_ID" in elastic:
        left = None
        try:
            left = int(elastic.get("TORCHELASTIC_MAX_RESTARTS", "0")) - int(elastic.get("TORCHELASTIC_RESTART_COUNT", "0"))
        except ValueError:
            pass
        out["supervisor"] = "torchrun elastic agent"
        out["restarts_left"] = left
        if left is not None and left > 0:
            out["effect"] = (f"the elastic agent on node {target.node} sees rank {target.rank} die and stops its "
                             f"other local ranks; every node's agent restarts all {len(jd.ranks)} rank(s) "
                             f"({left} restart(s) left): the whole job redoes its work since the last checkpoint")
            out["stall_s"] = None
            out["stall_basis"] = "ends when the agents restart the job (seconds), not at a timeout"
        else:
            out["effect"] = (f"no restart left (TORCHELASTIC_MAX_RESTARTS reached): the agents stop every rank and "
                             f"the job fails; {len(others)} other rank(s) end with it")
            out["stall_s"] = None
            out["stall_basis"] = "the job ends: nothing to stall"
    else:
        timeout = DEFAULT_TIMEOUT_S[backend]
        out["supervisor"] = None
        out["effect"] = (f"{len(others)} other rank(s) wait in their next collective for rank {target.rank} "
                         f"until the collective timeout, then fail")
        out["stall_s"] = timeout
        out["stall_basis"] = (f"estimated: torch.distributed's default {backend} timeout ({timeout / 60:.0f} min); "
                              "a timeout the job passed to init_process_group is not visible from outside")
    return out
