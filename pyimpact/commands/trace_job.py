"""`pyimpact trace -p PID --job -d S -o job.json`: record every node of a
distributed job over the same window and merge the timelines into one
Perfetto file.

Each node runs the hidden ``pyimpact trace-node KEY -d S``: the job's ranks
there, traced by the ordinary `trace`, the recording on standard output.
Clock offsets come from a few ``date +%s%N`` round trips per node through
the same launcher, measured before the trace starts.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Optional, Sequence

import click

from ..errors import UsageError
from ..render.text import json_dumps
from .params import Number

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
    from .diagnose_job import local_job_key

    if not output or not output.endswith(".json"):
        raise UsageError("trace --job writes one merged Perfetto file", "give -o FILE.json")
    if duration is None:
        raise UsageError("trace --job needs -d SECONDS (every node records the same window)")
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


@click.command("trace-node", hidden=True)
@click.argument("key")
@click.option("-d", "--duration", type=Number(0.01, 3600), required=True, help="Seconds to record.")
@click.option("--all-netns", is_flag=True, help="Ranks in other network namespaces are this node's too.")
def command(key, duration, all_netns):
    """Internal, what `trace --job` runs on each node: trace the ranks of job
    KEY here for the window; the recording (Perfetto JSON) on standard output."""
    from ..collect.job_members import find_members
    from .trace import command as trace_command

    members = find_members(key, all_netns=all_netns)
    if not members:
        raise UsageError(f"no rank of job {key} on this node")
    args = [x for m in members for x in ("-p", str(m.pid))] + ["-d", f"{duration:g}", "-o", "-"]
    trace_command.main(args=args, prog_name="pyimpact trace", standalone_mode=False)
    sys.stdout.flush()
