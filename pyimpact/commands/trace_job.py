"""`pyimpact trace -p PID --job -d S -o job.json`: record every node of a
distributed job over the same window and merge the timelines into one
Perfetto file.

Click glue: each node runs the hidden ``pyimpact trace-node KEY -d S``
defined here (the job's ranks there, traced by the ordinary `trace`, the
recording on standard output); the session that asks every node and merges
is pyimpact.sessions.job.trace_job.
"""
from __future__ import annotations

import sys

import click

from ..errors import UsageError
from .params import Number


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
        raise UsageError(f"no rank of job {key} on this node",
                         "check the job key (it comes from the rank's environment) and --all-netns for containers")
    args = [x for m in members for x in ("-p", str(m.pid))] + ["-d", f"{duration:g}", "-o", "-"]
    trace_command.main(args=args, prog_name="pyimpact trace", standalone_mode=False)
    sys.stdout.flush()
