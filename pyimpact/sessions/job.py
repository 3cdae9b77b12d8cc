"""The sessions of a distributed job, across its nodes.

``diagnose_job``: on each node the launcher (collect.launchers) runs the hidden
command ``pyimpact diagnose-node KEY``, which diagnoses the job's ranks there
in one observation window (``node_document``) and prints one JSON document;
the answers are merged into one wait-for picture by ``analyse.job.merge``.

``trace_job``: every node records the same window (``pyimpact trace-node KEY
-d S``, the recording on standard output) and the timelines are merged into
one Perfetto file; clock offsets come from a few ``date +%s%N`` round trips
per node through the same launcher, measured before the trace starts.
"""
from __future__ import annotations

import json
import socket
import time
from typing import Any, Dict, List, Optional, Sequence

from ..errors import NotInRecording, ProcessGone, UsageError
from ..text import json_dumps

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
    from .observe import observe

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


def diagnose_job_from(pid: int, window: float, python_stacks: bool, hosts_file, slurm_job, via, ssh_config,
                      remote_cmd):
    """Resolve the nodes and the launcher from the ``--job`` options, ask the
    nodes: (JobDiagnosis, seconds it took)."""
    import shlex

    from ..collect.launchers import read_hosts, slurm_hosts

    if hosts_file and slurm_job:
        raise UsageError("give --hosts or --slurm, not both", "use --hosts FILE for ssh, --slurm JOBID for Slurm")
    if not hosts_file and not slurm_job:
        raise UsageError("--job needs the nodes", "--hosts FILE (one host per line) or --slurm JOBID")
    hosts = read_hosts(hosts_file) if hosts_file else slurm_hosts(slurm_job)
    via = via or ("slurm" if slurm_job else "ssh")
    try:
        remote = shlex.split(remote_cmd)
    except ValueError as err:
        raise UsageError(f"--remote-cmd: {err}",
                         "quote it as one shell command line, e.g. --remote-cmd '/opt/venv/bin/pyimpact'") from None
    return diagnose_job(pid, hosts=hosts, via=via, ssh_config=ssh_config, slurm_job=slurm_job,
                        remote_cmd=remote or ["pyimpact"], window=window, python_stacks=python_stacks)


def kill_cascade_of(pid: int, hosts_file, slurm_job, via, ssh_config, remote_cmd):
    """kill-preview --job: (JobDiagnosis, the cascade of a kill of this rank
    across the nodes, seconds it took).  The rank is named by its RANK (a pid
    means nothing on another node)."""
    from ..analyse.job import kill_cascade

    env = local_job_key(pid)["env"]
    rank = env.get("RANK") or env.get("SLURM_PROCID")
    if rank is None or not rank.isdigit():
        raise UsageError(f"process {pid} has no RANK in its environment", "give the pid of one rank of the job")
    jd, elapsed = diagnose_job_from(pid, 1.0, False, hosts_file, slurm_job, via, ssh_config, remote_cmd)
    return jd, kill_cascade(jd, int(rank)), elapsed


CLOCK_ROUNDS = 3


def _clock_offsets(hosts: Sequence[str], *, via: str, ssh_config: Optional[str], slurm_job: Optional[str]):
    from ..collect.launchers import run_everywhere
    from ..export.job_trace import clock_offset

    samples = {h: [] for h in hosts}
    for _ in range(CLOCK_ROUNDS):
        sent = time.time_ns()
        answers = run_everywhere(hosts, ["date", "+%s%N"], via=via, ssh_config=ssh_config, slurm_job=slurm_job,
                                 timeout_s=15.0)
        for a in answers:
            if a.error is None and a.stdout.strip().isdigit():
                # each answer's own round trip: from the common start to its own end
                samples[a.host].append((sent, int(a.stdout.strip()), sent + int(a.elapsed_s * 1e9)))
    return {h: clock_offset(s) for h, s in samples.items()}


def _applied(offset) -> int:
    """The shift applied to a node's timestamps: its measured offset when the
    measurement resolves it (larger than its own uncertainty), else none."""
    if offset is None:
        return 0
    value, uncertainty = offset
    return value if abs(value) > uncertainty else 0


def trace_job(pid: int, duration: float, output: str, *, hosts_file, slurm_job, via, ssh_config, remote_cmd) -> dict:
    """Trace the job of ``pid`` on every node; write the merged timeline to ``output``."""
    import shlex

    from ..collect.launchers import read_hosts, run_everywhere, slurm_hosts
    from ..export import atomic_file
    from ..export.job_trace import merge_traces

    if not output or not output.endswith(".json"):
        raise UsageError("trace --job writes one merged Perfetto file", "give -o FILE.json")
    if duration is None:
        raise UsageError("trace --job needs -d SECONDS (every node records the same window)", "add -d SECONDS")
    if bool(hosts_file) == bool(slurm_job):
        raise UsageError("--job needs the nodes", "--hosts FILE (one host per line) or --slurm JOBID")
    hosts = read_hosts(hosts_file) if hosts_file else slurm_hosts(slurm_job)
    via = via or ("slurm" if slurm_job else "ssh")
    key = local_job_key(pid)["key"]
    offsets = _clock_offsets(hosts, via=via, ssh_config=ssh_config, slurm_job=slurm_job)
    remote = shlex.split(remote_cmd) + ["trace-node", "-d", f"{duration:g}", "--", key]
    answers = run_everywhere(hosts, remote, via=via, ssh_config=ssh_config, slurm_job=slurm_job,
                             timeout_s=duration + 40.0)
    nodes, unreachable = [], []
    for a in answers:
        doc = None
        if a.error is None:
            try:
                doc = json.loads(a.stdout)
            except ValueError:
                a.error = "its answer is not a pyimpact recording"
        if doc is None:
            unreachable.append({"host": a.host, "reason": a.error})
            continue
        nodes.append((a.host, doc, _applied(offsets.get(a.host))))
    merged = merge_traces(nodes, unreachable)
    for entry in merged["pyimpact_job"]["nodes"]:
        off = offsets.get(entry["host"])
        entry["clock_offset_measured_ns"] = off[0] if off else None
        entry["clock_uncertainty_ns"] = off[1] if off else None
    with atomic_file(output) as f:
        f.write(json_dumps(merged, separators=(",", ":")).encode())
    return merged["pyimpact_job"]
