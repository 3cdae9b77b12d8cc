"""`pyimpact trace`: record what processes do, summarise it, optionally save it.

Ends when --duration passes, every target has exited, or on Ctrl-C / SIGTERM /
SIGHUP; each of these still writes -o and prints the summary (exit code 0).
The file is written first, before anything is rendered (a rendering failure
must not lose the recording), and both come before the probes are detached
(pyimpact.sessions.trace runs the loop; this module is the click glue).
"""
from __future__ import annotations

import sys

import click

from ..errors import PyimpactError, UsageError
from ..export import write_recording
from ..formats import ns_millis, seconds
from ..sessions.trace import StatusLine, run_trace
from .job_options import job_options, wants_job
from .params import Number
from .redaction import redact_option, redactor_for, refuse_redact_with_job

#: the longest -d accepted (30 days); without -d a trace runs until stopped
MAX_DURATION_S = 30 * 86400


@click.command("trace")
@click.option("-p", "--pid", "pids", multiple=True, metavar="PID|NAME",
              help="Process to trace, by PID or unique name (repeatable); children follow.")
@click.option("-n", "--name", "names", multiple=True, metavar="NAME",
              help="Process to trace by name (comm, program or script; must be unique; repeatable).")
@click.option("--all", "trace_all", is_flag=True, help="Trace every process on the machine.")
@click.option("-d", "--duration", type=Number(0.01, MAX_DURATION_S), help="Stop after S seconds.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the recording: .json or .pftrace (Perfetto), .parquet, .csv, .html; - = JSON on stdout.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON document.")
@click.option("--slow-ms", type=Number(0, 3_600_000, unit=" ms"), default=1.0, show_default=True,
              help="Report syscalls blocking at least this long as events.")
@click.option("--buffer-pages", type=click.IntRange(1, 65536), default=1024, show_default=True, help="Ring buffer size in pages (power of two).")
@click.option("--kill-preview", is_flag=True, help="Live panel: what a kill would cost now (no -p, or --all: every heavy job).")
@redact_option
@job_options
def command(pids, names, trace_all, duration, output, as_json, slow_ms, buffer_pages, kill_preview, redact,
            job, hosts_file, slurm_job, via, ssh_config, remote_cmd):
    """Record syscalls, futex waits/wakes, signals, forks/exits and block I/O.

    \b
    Examples:
      sudo pyimpact trace -p 1234 -d 10 -o t.json   then open t.json in ui.perfetto.dev
      sudo pyimpact trace -p 1234 --json            summary as JSON, Ctrl-C to stop
      sudo pyimpact trace -n train.py -d 10         the process running train.py
      sudo pyimpact trace --all -d 5                every process for 5 s
    """
    from .output import check_output

    to_stdout = check_output(output, as_json)
    if to_stdout and kill_preview:
        raise UsageError("-o - cannot be used with --kill-preview: the live panel is on standard output",
                         "give -o a file name")
    if trace_all and (pids or names):
        raise UsageError("give either -p PID / -n NAME or --all, not both",
                         "-p/-n for some processes, --all for every one")
    if pids or names:
        from .target import resolve_many

        pids = resolve_many(pids, names)
    if wants_job(job, hosts_file, slurm_job):
        refuse_redact_with_job(redact)
        if len(pids) != 1:
            raise UsageError("trace --job takes one rank of the job", "-p PID of any rank")
        from ..render.text import clean
        from ..sessions.job import trace_job

        done = trace_job(pids[0], duration, output, hosts_file=hosts_file, slurm_job=slurm_job, via=via,
                         ssh_config=ssh_config, remote_cmd=remote_cmd)
        for n in done["nodes"]:
            click.echo(f"{n['host']}: {n['events']} events, "
                       f"clock offset {ns_millis(n['clock_offset_ns'], signed=True)}", err=True)
        for u in done["unreachable"]:
            click.echo(clean(f"{u['host']}: NOT RECORDED: {u['reason']}"), err=True)
        click.echo(f"merged timeline of {len(done['nodes'])} node(s) written to {output}", err=True)
        return
    if kill_preview:
        from ..collect.special import special_process

        for pid in pids:
            special = special_process(pid)
            if special is not None:
                raise UsageError(special.describe("trace --kill-preview"), "give the PID of a user-space process")
        # Without -p (or with --all) the panel watches the machine's heavy jobs.
        from ..sessions.panel import run_kill_preview_panel

        sys.exit(run_kill_preview_panel(list(pids), duration, output, as_json, redact=redact))
    if not trace_all and not pids:
        raise UsageError("nothing to trace", "give -p PID (repeatable) or --all")

    from rich.console import Console

    from ..analyse.timeline_summary import summarise
    from ..collect.tracer import TraceRequest
    from ..render.summary_view import render_summary
    from ..render.text import clean, json_dumps

    out = Console(soft_wrap=False, stderr=to_stdout, markup=False, emoji=False, highlight=False)
    err = Console(stderr=True, markup=False, emoji=False, highlight=False)
    request = TraceRequest(pids=tuple(pids), trace_all=trace_all, duration_s=duration,
                           slow_ns=int(slow_ms * 1e6), ringbuf_pages=buffer_pages,
                           options={"slow_ms": slow_ms, "buffer_pages": buffer_pages, "output": output})
    def ready(tracer) -> None:
        # On stderr even with --json: it is also the ready signal for scripts.
        err.print(f"tracing {'all processes' if trace_all else ', '.join(map(str, pids))} "
                  f"(probes attached in {seconds(tracer.rec.metadata.probes_attached_after_s, 2)}); "
                  f"Ctrl-C to stop", highlight=False)

    def show(rec, stream) -> None:
        red = redactor_for(rec, redact)     # one redactor: the same placeholders in view and file
        save_error = None
        if output:   # saved before anything is rendered: a view can never lose the recording
            try:
                if stream is not None:      # the timeline is in the file already: add the rest, publish
                    wrote = stream.finish(rec)
                else:
                    wrote = write_recording(red.recording(rec) if red is not None else rec, output)
                err.print(f"wrote {clean(wrote)}")
            except PyimpactError as exc:   # still show the summary, then fail with its code
                save_error = exc
        summary = summarise(rec, stream.totals if stream is not None else None)
        if red is not None:
            summary = red.value(summary)
        if as_json:
            click.echo(json_dumps(summary, indent=2))
        else:
            render_summary(summary, out)
            for pid in (rec.metadata.exited_targets or []):
                err.print(f"target {pid} exited during the trace")
        if save_error is not None:
            raise save_error

    # -o X.parquet is written while tracing (memory stays bounded, the stop has
    # one batch left to write); --redact needs the whole recording first.
    streamed = output if output and not to_stdout and not redact and output.lower().endswith(".parquet") else None
    detach_s = run_trace(request, on_ready=ready, status=StatusLine(sys.stderr), on_recording=show,
                         stream_to=streamed)
    err.print(f"probes detached in {seconds(detach_s, 2)}", highlight=False)
