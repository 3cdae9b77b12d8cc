"""`pyimpact diagnose PID --job`: diagnose a distributed job on every node.

Composition only. On each node the launcher (collect.launchers) runs the
hidden command ``pyimpact diagnose-node KEY``, which diagnoses the job's
ranks there in one observation window (``node_document``) and prints one
JSON document; the answers are merged into one wait-for picture by
``analyse.job.merge`` and rendered by the ``diagnose --job`` command.
"""
from __future__ import annotations

import json
import socket
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import click

from ..errors import NotInRecording, ProcessGone, UsageError
from ..render.text import json_dumps
from .params import Number

DEFAULT_REMOTE = ("pyimpact",)
NODE_TIMEOUT_EXTRA_S = 25.0     # beyond the window: probe compile, snapshots, py-spy, ssh


def _gpus_of(snap, pid: int) -> List[int]:
    """The GPU device numbers a process has open (/dev/nvidiaN)."""
    import re

    p = snap.processes.get(pid) if snap is not None else None
    found = {int(m.group(1)) for f in (p.fds if p else []) for m in [re.match(r"^/dev/nvidia(\d+)$", f.target)] if m}
    return sorted(found)


def _tcp_of(snap, pid: int) -> List[Dict[str, str]]:
    """Established TCP connections of one process, from a snapshot."""
    p = snap.processes.get(pid) if snap is not None else None
    if p is None:
        return []
    out = []
    for f in p.fds:
        s = snap.sockets.get(f.inode) if f.kind == "socket" and f.inode is not None else None
        if s is not None and s.proto.startswith("tcp") and s.remote and s.state == "ESTABLISHED":
            out.append({"local": s.local, "remote": s.remote, "state": s.state})
    return out


def node_document(key: str, *, window: float = 1.0, all_netns: bool = False,
                  python_stacks: bool = True) -> Dict[str, Any]:
    """This node's part of a job diagnosis (schema pyimpact.diagnose-node/1):
    every rank of job ``key`` here, its local diagnosis and its TCP peers.

    Ranks started by one launcher (torchrun's agent, a Slurm step) are
    observed together through that parent, in one window; ranks with
    different parents are observed one group after the other."""
    from ..analyse.hang.diagnose import diagnose
    from ..analyse.job import NODE_SCHEMA
    from ..collect.job_members import find_members
    from .diagnose import observe

    t0 = time.monotonic()
    members = find_members(key, all_netns=all_netns)
    groups: Dict[int, list] = {}
    for m in members:
        groups.setdefault(m.ppid if m.ppid > 1 else m.pid, []).append(m)
    ranks, errors = [], []
    for parent, group in groups.items():
        target = parent if any(m.pid != parent for m in group) else group[0].pid
        try:
            _, rec = observe(target, window=window, python_stacks=python_stacks)
        except ProcessGone as err:
            errors.append(f"pid {target}: {err.message}")
            continue
        snap = rec.snapshots.get("end") or rec.snapshots.get("start")
        for m in group:
            entry = {"pid": m.pid, "rank": m.rank, "local_rank": m.local_rank, "world_size": m.world_size,
                     "tcp": _tcp_of(snap, m.pid), "gpus": _gpus_of(snap, m.pid),
                     "elastic": {k: m.env[k] for k in ("TORCHELASTIC_RUN_ID", "TORCHELASTIC_MAX_RESTARTS",
                                                       "TORCHELASTIC_RESTART_COUNT") if k in m.env}}
            try:
                entry["diagnosis"] = diagnose(rec, m.pid).to_json()
            except NotInRecording:
                entry["error"] = "exited during the window"
            ranks.append(entry)
    return {"schema": NODE_SCHEMA, "hostname": socket.gethostname(), "job": key,
            "wall_ns": time.time_ns(), "ranks": ranks, "errors": errors,
            "elapsed_s": round(time.monotonic() - t0, 3)}


def local_job_key(pid: int) -> Dict[str, Any]:
    """The job ``pid`` belongs to, from its allow-listed environment."""
    from ..collect import procfs
    from ..collect.job_members import job_key

    found = procfs.scan_environ([pid])
    if not found:
        raise ProcessGone(f"cannot read the environment of process {pid}",
                          "is it running, and are you root?")
    key = job_key(found[0].env)
    if key is None:
        raise UsageError(f"process {pid} does not look like a rank of a distributed job",
                         "no TORCHELASTIC_RUN_ID, SLURM_JOB_ID or MASTER_ADDR/MASTER_PORT in its environment")
    return {"key": key, "env": found[0].env}


def diagnose_job(pid: int, *, hosts: Sequence[str], via: str = "ssh", ssh_config: Optional[str] = None,
                 slurm_job: Optional[str] = None, remote_cmd: Sequence[str] = DEFAULT_REMOTE,
                 window: float = 1.0, python_stacks: bool = True):
    """Ask every node about the job of ``pid`` and merge the answers."""
    from ..analyse.job import NODE_SCHEMA, NodeResult, merge
    from ..collect.launchers import run_everywhere

    key = local_job_key(pid)["key"]
    remote = list(remote_cmd) + ["diagnose-node", "--window", f"{window:g}"]
    if not python_stacks:
        remote.append("--no-python")
    remote += ["--", key]      # the key came from another process's environment: never an option
    t0 = time.monotonic()
    answers = run_everywhere(hosts, remote, via=via, ssh_config=ssh_config, slurm_job=slurm_job,
                             timeout_s=window + NODE_TIMEOUT_EXTRA_S)
    results = []
    for ans in answers:
        res = NodeResult(host=ans.host, elapsed_s=round(ans.elapsed_s, 3), error=ans.error)
        if ans.error is None:
            try:
                doc = json.loads(ans.stdout)
                if doc.get("schema") != NODE_SCHEMA:
                    raise ValueError(doc.get("schema"))
                res.doc = doc
            except (ValueError, AttributeError):
                res.error = "its answer is not a pyimpact.diagnose-node/1 document (another pyimpact version?)"
        results.append(res)
    jd = merge(key, results)
    return jd, round(time.monotonic() - t0, 3)


@click.command("diagnose-node", hidden=True)
@click.argument("key")
@click.option("-w", "--window", type=Number(0.05, 60.0), default=1.0, show_default=True,
              help="Seconds to observe with the probes.")
@click.option("--no-python", is_flag=True, help="Do not read Python stacks with py-spy.")
@click.option("--all-netns", is_flag=True,
              help="Ranks in other network namespaces (containers) are this node's too.")
def command(key, window, no_python, all_netns):
    """Internal, what `diagnose --job` runs on each node: the ranks of job KEY
    here, each with its local diagnosis and TCP peers, as one JSON document
    (schema pyimpact.diagnose-node/1)."""
    doc = node_document(key, window=window, all_netns=all_netns, python_stacks=not no_python)
    sys.stdout.write(json_dumps(doc) + "\n")
    sys.stdout.flush()
