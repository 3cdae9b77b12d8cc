"""`pyimpact trace`: record what processes do, summarise it, optionally save it.

Ends when --duration passes, every target has exited, or on Ctrl-C / SIGTERM /
SIGHUP; each of these still writes -o and prints the summary (exit code 0).
The file is written first, before anything is rendered (a rendering failure
must not lose the recording), and both come before the probes are detached,
since detaching classic tracepoints waits for RCU grace periods.
"""
from __future__ import annotations

import os
import signal
import sys
import time

import click

from ..errors import PyimpactError, UsageError
from ..export import write_recording
from .job_options import job_options, wants_job
from .params import Number
from .redaction import redact_option, redactor_for, refuse_redact_with_job

#: the longest -d accepted (30 days); without -d a trace runs until stopped
MAX_DURATION_S = 30 * 86400


class StopFlag:
    """Turns SIGINT, SIGTERM and SIGHUP into a reason to stop, so the trace
    ends cleanly (summary, output file, probes detached) instead of dying
    mid-way: closing the terminal or the ssh session (SIGHUP) must not lose
    the recording.

    After SIGHUP the terminal is gone and writing to it fails (EIO), so the
    standard streams that were a terminal are pointed at /dev/null: the
    summary then goes nowhere, but the -o file is still written (a stream
    redirected to a file keeps getting the summary). A second SIGINT (Ctrl-C
    twice) aborts; a repeated SIGTERM or SIGHUP does not (a hangup often
    arrives twice: from the kernel and from the shell forwarding it)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.reason = ""
        self._old = {}
        self._ttys = []

    def __enter__(self):
        self._ttys = [fd for fd in (1, 2) if _isatty(fd)]
        for sig in self.SIGNALS:
            self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handler(self, signum, _frame):
        if signum == signal.SIGHUP:
            self._detach_terminal()
        if self.reason:
            if signum == signal.SIGINT and self.reason.endswith("SIGINT"):
                raise KeyboardInterrupt   # a second Ctrl-C: stop waiting for anything
            return
        self.reason = f"interrupted by {signal.Signals(signum).name}"

    def _detach_terminal(self) -> None:
        try:
            null = os.open(os.devnull, os.O_WRONLY)
        except OSError:
            return
        try:
            for fd in self._ttys:
                try:
                    os.dup2(null, fd)
                except OSError:
                    pass
        finally:
            os.close(null)
        self._ttys = []

    def __call__(self) -> str:
        return self.reason


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


class StatusLine:
    """A live status line on a terminal (elapsed, events, lost), rewritten in
    place: carriage return, the text, erase to the end of the line.  Written
    to the stream itself, not through rich, which strips the ``\r`` (each
    tick would append).  Off a terminal it prints nothing: a log gets no
    stream of half-lines."""

    def __init__(self, stream):
        self.stream = stream
        self.active = _isatty(stream.fileno()) if hasattr(stream, "fileno") else False
        self.shown = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except OSError:   # the terminal hung up (EIO) before SIGHUP was handled: the trace goes on
            self.active = False

    def __call__(self, tracer) -> None:
        if not self.active:
            return
        lost = sum(tracer.lost().values())
        self._write(f"\r{tracer.elapsed():6.1f} s  {tracer.event_count} events  {lost} lost\x1b[K")
        self.shown = True

    def clear(self) -> None:
        """Erase the line, so what follows starts at column 0 on a clean line."""
        if self.shown:
            self._write("\r\x1b[K")
            self.shown = False


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
        raise UsageError("give either -p PID / -n NAME or --all, not both")
    if pids or names:
        from .target import resolve_many

        pids = resolve_many(pids, names)
    if wants_job(job, hosts_file, slurm_job):
        refuse_redact_with_job(redact)
        if len(pids) != 1:
            raise UsageError("trace --job takes one rank of the job", "-p PID of any rank")
        from ..render.text import clean
        from .trace_job import trace_job

        done = trace_job(pids[0], duration, output, hosts_file=hosts_file, slurm_job=slurm_job, via=via,
                         ssh_config=ssh_config, remote_cmd=remote_cmd)
        for n in done["nodes"]:
            click.echo(f"{n['host']}: {n['events']} events, clock offset {n['clock_offset_ns'] / 1e6:+.1f} ms", err=True)
        for u in done["unreachable"]:
            click.echo(clean(f"{u['host']}: NOT RECORDED: {u['reason']}"), err=True)
        click.echo(f"merged timeline of {len(done['nodes'])} node(s) written to {output}", err=True)
        return
    if kill_preview:
        from ..collect.special import special_process

        for pid in pids:
            special = special_process(pid)
            if special is not None:
                raise UsageError(special.describe("trace --kill-preview"))
        # Without -p (or with --all) the panel watches the machine's heavy jobs.
        from .trace_kill_preview import run_kill_preview_panel

        sys.exit(run_kill_preview_panel(list(pids), duration, output, as_json, redact=redact))
    if not trace_all and not pids:
        raise UsageError("nothing to trace", "give -p PID (repeatable) or --all")

    from rich.console import Console

    from ..analyse.timeline_summary import summarise
    from ..collect.tracer import Tracer, TraceRequest
    from ..render.summary_view import render_summary
    from ..render.text import clean, json_dumps

    out = Console(soft_wrap=False, stderr=to_stdout, markup=False, emoji=False, highlight=False)
    err = Console(stderr=True, markup=False, emoji=False, highlight=False)
    request = TraceRequest(pids=tuple(pids), trace_all=trace_all, duration_s=duration,
                           slow_ns=int(slow_ms * 1e6), ringbuf_pages=buffer_pages,
                           options={"slow_ms": slow_ms, "buffer_pages": buffer_pages, "output": output})
    with StopFlag() as stop:
        tracer = Tracer(request)
        with tracer:
            # On stderr even with --json: it is also the ready signal for scripts.
            err.print(f"tracing {'all processes' if trace_all else ', '.join(map(str, pids))} "
                      f"(probes attached in {tracer.rec.metadata['probes_attached_after_s']:.2f} s); "
                      f"Ctrl-C to stop", highlight=False)
            status = StatusLine(sys.stderr)
            try:
                tracer.run(should_stop=stop, on_tick=status)
            finally:
                status.clear()
            rec = tracer.recording()
            red = redactor_for(rec, redact)     # one redactor: the same placeholders in view and file
            save_error = None
            if output:   # saved before anything is rendered: a view can never lose the recording
                try:
                    err.print(f"wrote {clean(write_recording(red.recording(rec) if red is not None else rec, output))}")
                except PyimpactError as exc:   # still show the summary, then fail with its code
                    save_error = exc
            summary = summarise(rec)
            if red is not None:
                summary = red.value(summary)
            if as_json:
                click.echo(json_dumps(summary, indent=2))
            else:
                render_summary(summary, out)
                for pid in rec.metadata.get("exited_targets", []):
                    err.print(f"target {pid} exited during the trace")
            t0 = time.monotonic()
            if save_error is not None:
                raise save_error
        err.print(f"probes detached in {time.monotonic() - t0:.2f} s", highlight=False)
