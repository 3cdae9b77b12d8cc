"""Which processes on this machine are ranks of a given distributed job.

A job is named by what its launcher put in every rank's environment (the
allow-listed keys only): the elastic run id (``TORCHELASTIC_RUN_ID``, when it
is not torchrun's placeholder ``none``), the scheduler's job id
(``SLURM_JOB_ID``), or else the rendezvous address every rank connects to
(``MASTER_ADDR:MASTER_PORT``). A rank is a process with ``RANK`` (or
``SLURM_PROCID``) in that environment.

A node is a network stack: by default only the ranks in this tool's own
network namespace are this node's (on a plain host: the host's); ranks in
containers with a network namespace of their own are included with
``all_netns``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

from . import procfs

_PLACEHOLDER_IDS = ("", "none", "default")


def job_key(env: Dict[str, str]) -> Optional[str]:
    """'TORCHELASTIC_RUN_ID=abc', 'SLURM_JOB_ID=42' or 'MASTER=10.0.0.1:29500'; None when
    the environment names no job."""
    run_id = env.get("TORCHELASTIC_RUN_ID", "")
    if run_id.lower() not in _PLACEHOLDER_IDS:
        return f"TORCHELASTIC_RUN_ID={run_id}"
    if env.get("SLURM_JOB_ID"):
        return f"SLURM_JOB_ID={env['SLURM_JOB_ID']}"
    if env.get("MASTER_ADDR") and env.get("MASTER_PORT"):
        return f"MASTER={env['MASTER_ADDR']}:{env['MASTER_PORT']}"
    return None


def _rank(env: Dict[str, str]) -> Optional[int]:
    for key in ("RANK", "SLURM_PROCID"):
        try:
            return int(env[key])
        except (KeyError, ValueError):
            continue
    return None


def _int(v: Optional[str]) -> Optional[int]:
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


@dataclass
class JobMember:
    """One rank of the job on this node."""

    pid: int
    ppid: int
    rank: Optional[int]
    local_rank: Optional[int]
    world_size: Optional[int]
    env: Dict[str, str]


def find_members(key: str, *, all_netns: bool = False, timeout_s: float = 1.0) -> List[JobMember]:
    """The ranks of job ``key`` on this node, rank order. A rank's own children
    (data-loader workers inherit the environment) are not ranks: only the
    topmost process of each rank is kept."""
    own = None if all_netns else procfs.own_netns()
    found = {}
    for e in procfs.scan_environ(timeout_s=timeout_s):
        if job_key(e.env) != key or _rank(e.env) is None:
            continue
        if own is not None and e.netns is not None and e.netns != own:
            continue
        found[e.pid] = e
    members = [JobMember(pid=e.pid, ppid=e.ppid, rank=_rank(e.env), local_rank=_int(e.env.get("LOCAL_RANK")),
                         world_size=_int(e.env.get("WORLD_SIZE") or e.env.get("SLURM_NTASKS")), env=e.env)
               for e in found.values()
               if not (e.ppid in found and _rank(found[e.ppid].env) == _rank(e.env))]
    members.sort(key=lambda m: (m.rank if m.rank is not None else 1 << 30, m.pid))
    return members
