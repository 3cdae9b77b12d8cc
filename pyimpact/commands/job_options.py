"""The options that turn a one-process command (diagnose, kill-preview) into
a whole-job one across nodes, and their resolution into a job diagnosis
(commands/diagnose_job.py does the asking)."""
from __future__ import annotations

from typing import Optional

import click

from ..errors import UsageError


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


def job_from_options(pid: int, window: float, python_stacks: bool, hosts_file, slurm_job, via, ssh_config,
                     remote_cmd):
    """Resolve the nodes and the launcher from the options, ask the nodes:
    (JobDiagnosis, seconds it took)."""
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
    from ..sessions.job import diagnose_job

    return diagnose_job(pid, hosts=hosts, via=via, ssh_config=ssh_config, slurm_job=slurm_job,
                        remote_cmd=remote or ["pyimpact"], window=window, python_stacks=python_stacks)
