"""`pyimpact diagnose PID`: is it hung, what does each thread wait on, and who
is the root cause.

Click glue: the session (pyimpact.sessions.observe: collect -> Recording ->
analyse) calls back with the verdict, which pyimpact.sessions.diagnose saves
and prints before the probes are detached; imports stay lazy: time to verdict
is part of the job.
"""
from __future__ import annotations


import click

from ..errors import UsageError
from ..sessions import diagnose, history
from ..sessions.job import diagnose_job_from
from ..sessions.observe import tgid_of
from .job_options import job_options, wants_job
from . import history_opt
from .params import Number
from .redaction import redact_option, refuse_redact_with_job
from .target import PID, _complete_process, resolve_target


@click.command("diagnose")
@click.argument("target", required=False, metavar="PID|NAME", shell_complete=_complete_process)
@click.option("-p", "--pid", "pid_opt", type=PID, metavar="N", help="The process by PID (same as giving PID).")
@click.option("-n", "--name", "name_opt", metavar="NAME", shell_complete=_complete_process,
              help="The process by name: comm, program or script (train.py); must be unique.")
@click.option("--all", "all_", is_flag=True,
              help="Every process tree of the machine in one window: a row per unhealthy tree.")
@click.option("-w", "--window", type=Number(0.05, 60.0), default=1.0, show_default=True,
              help="Seconds to observe with the probes.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (schema pyimpact.diagnose/1).")
@click.option("--no-bpf", is_flag=True, help="Use /proc only (no root or BPF needed; sees less).")
@click.option("--no-python", is_flag=True, help="Do not read Python stacks with py-spy.")
@redact_option
@click.option("--locals", "local_values", is_flag=True,
              help="Keep the values of Python local variables in the recording (may hold secrets).")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Also save the recording (.parquet, .json, .html; - = JSON on stdout) for `pyimpact report`.")
@click.option("--timings", is_flag=True, help="Also print where the time to verdict went (on stderr).")
@job_options
@history_opt.option
def command(target, pid_opt, name_opt, all_, window, as_json, no_bpf, no_python, redact, local_values, output,
            timings, job, hosts_file, slurm_job, via, ssh_config, remote_cmd, history_db):
    """Why is it stuck: what each thread waits on, and the root cause.

    The process is a PID or a name (comm, program, or the script an
    interpreter runs: train.py); a name must match one process.

    \b
    Verdicts: deadlock, blocked, stopped, zombie (hung); busy (spinning),
    idle, progressing (not hung).
    \b
    Examples:
      sudo pyimpact diagnose 1234            human view
      sudo pyimpact diagnose train.py        the one process running train.py
      sudo pyimpact diagnose 1234 --json     one JSON document
      pyimpact diagnose --no-bpf 1234        /proc only, without root
      sudo pyimpact diagnose 1234 --job --hosts nodes.txt   the whole job, every node
      sudo pyimpact diagnose --all           every process tree: what is hung
    """
    if all_:
        if any(x is not None for x in (target, pid_opt, name_opt)) or wants_job(job, hosts_file, slurm_job):
            raise UsageError("--all takes no process", "give either --all or one PID|NAME")
        from .output import check_output

        to_stdout = check_output(output, as_json)
        path = diagnose.machine(window=window, as_json=as_json, use_bpf=not no_bpf, python_stacks=not no_python,
                                output=output, to_stdout=to_stdout, redact=redact)
        if path is not None:
            click.echo(f"recording written to {path}", err=True)
        return
    pid = resolve_target(target, pid_opt, name_opt)
    from ..collect.special import special_process

    special = special_process(pid)
    if special is not None:
        raise UsageError(special.describe("diagnose"), "give the PID of a user-space process")
    if wants_job(job, hosts_file, slurm_job):
        refuse_redact_with_job(redact)
        jd, elapsed = diagnose_job_from(pid, window, not no_python, hosts_file, slurm_job, via, ssh_config,
                                        remote_cmd)
        diagnose.show_job(jd, elapsed, as_json)
        return
    tgid = tgid_of(pid)
    if tgid is not None and tgid != pid:
        raise UsageError(f"{pid} is a thread of process {tgid}", f"run: pyimpact diagnose {tgid}")
    from .output import check_output

    to_stdout = check_output(output, as_json)
    hist = history.lookup(pid, history_db)
    saved = diagnose.one(pid, window=window, use_bpf=not no_bpf, python_stacks=not no_python,
                         local_values=local_values, as_json=as_json, output=output, to_stdout=to_stdout,
                         redact=redact, hist=hist, history_db=history_db)
    if timings:
        from ..render.timings_view import timings_line

        click.echo(timings_line(saved.get("timings") or {}, saved.get("probe_timings")), err=True)
    if "error" in saved:
        raise saved["error"]
    if "path" in saved:
        from ..render.text import clean

        click.echo(f"recording written to {clean(saved['path'])}", err=True)

