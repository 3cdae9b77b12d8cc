"""The options that turn a one-process command (diagnose, kill-preview) into
a whole-job one across nodes.  Click glue: their resolution into a job
diagnosis is pyimpact.sessions.job.diagnose_job_from."""
from __future__ import annotations

from typing import Optional

import click


def job_options(fn):
    """The options that turn a one-process command into a whole-job one."""
    for opt in reversed([
        click.option("--job", is_flag=True,
                     help="The process's whole distributed job, on every node (--hosts or --slurm)."),
        click.option("--hosts", "hosts_file", type=click.Path(dir_okay=False),
                     help="With --job: a file with one node host name per line."),
        click.option("--slurm", "slurm_job", metavar="JOBID", help="With --job: the nodes of this Slurm job."),
        click.option("--via", type=click.Choice(["ssh", "slurm", "kubectl"]), default=None,
                     help="With --job: how to reach the nodes [default: ssh; slurm with --slurm]."),
        click.option("--ssh-config", type=click.Path(dir_okay=False), help="With --job: ssh -F FILE."),
        click.option("--remote-cmd", default="pyimpact", show_default=True,
                     help="With --job: the pyimpact command on the nodes (a shell-quoted command line)."),
    ]):
        fn = opt(fn)
    return fn


def wants_job(job: bool, hosts_file: Optional[str], slurm_job: Optional[str]) -> bool:
    return bool(job or hosts_file or slurm_job)

