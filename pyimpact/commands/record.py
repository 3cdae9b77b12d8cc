"""`pyimpact record`: the always-on recorder (foreground, or as a systemd service).

Click glue: validates the options and runs the recorder session
(pyimpact.sessions.record: probes, NVML, the announcement of the database in
/run/pyimpact/recorder, a clean stop on SIGTERM or Ctrl-C).
`--install-service` writes a unit and enables it.

Exit codes: 0 stopped normally; 2 bad option; 4 not root; 5 BPF unavailable;
6 the database (or the unit file) cannot be written.
"""
from __future__ import annotations

import os

import click

from ..errors import UsageError
from ..sessions import record as session


EXAMPLES = """
\b
Examples:
  sudo pyimpact record                          foreground, /var/lib/pyimpact/history.db
  sudo pyimpact record --install-service        as a systemd service (enabled at boot)
  sudo pyimpact record --db /data/h.db -i 30    another database, samples every 30 s
  sqlite3 /var/lib/pyimpact/history.db 'SELECT * FROM files ORDER BY t_ns DESC LIMIT 5'
"""


@click.command("record", epilog=EXAMPLES)
@click.option("--db", "db_path", default=None, help="History database (default /var/lib/pyimpact/history.db).")
@click.option("-i", "--interval", "interval", default="10s", show_default=True,
              help="Sample (and commit) every this long: a kill -9 loses at most one interval.")
@click.option("--max-age", default="7d", show_default=True, help="Delete history older than this.")
@click.option("--max-size", default="1GiB", show_default=True, help="Keep the database below this size.")
@click.option("--min-file-size", default="1MiB", show_default=True,
              help="Record closes/fsyncs of written files this large (checkpoint-like names always).")
@click.option("--no-files", is_flag=True,
              help="No file completions: no fanotify watch, no file probe (lifecycle, signals, samples only).")
@click.option("--file-source", type=click.Choice(["auto", "fanotify", "syscalls"]), default="auto",
              show_default=True,
              help="Where closes and renames come from: fanotify (no cost to other syscalls), or the syscall "
                   "tracepoints (every syscall on the machine pays); auto: fanotify, else the tracepoints.")
@click.option("--no-gpu", is_flag=True, help="Do not sample NVML.")
@click.option("-d", "--duration", default=None, help="Stop after this long (default: until SIGTERM/Ctrl-C).")
@click.option("--install-service", is_flag=True, help="Write and enable a systemd unit running this recorder.")
def command(db_path, interval, max_age, max_size, min_file_size, no_files, file_source, no_gpu, duration,
            install_service):
    """Record process lifecycle, checkpoints, signals and CPU/RAM/GPU use, machine-wide.

    Keeps only rare events (fork/exec/exit with the original parent, file
    completions, signals) and a sample every interval, in a SQLite database
    (WAL mode) that other tools can read. Schema: docs/history.md.
    """
    from ..collect.history_db import DEFAULT_DB
    from ..units import parse_duration, parse_size

    interval_s = parse_duration(interval, "interval")
    if not 0.05 <= interval_s <= 3600:
        raise UsageError(f"interval out of range: {interval}", "between 50ms and 1h")
    settings_kw = dict(interval_s=interval_s, max_age_s=parse_duration(max_age, "--max-age"),
                       max_bytes=parse_size(max_size, "--max-size"),
                       min_file_bytes=parse_size(min_file_size, "--min-file-size"), files=not no_files,
                       file_source=file_source)
    duration_s = parse_duration(duration, "duration") if duration else None
    if install_service:
        tail = []
        if db_path:
            tail += ["--db", os.path.abspath(db_path)]
        for flag, value, default in (("--interval", interval, "10s"), ("--max-age", max_age, "7d"),
                                     ("--max-size", max_size, "1GiB"), ("--min-file-size", min_file_size, "1MiB")):
            if value != default:
                tail += [flag, value]
        tail += ["--no-files"] if no_files else []
        tail += ["--file-source", file_source] if file_source != "auto" else []
        tail += ["--no-gpu"] if no_gpu else []
        session.install_service(tail, echo=click.echo)
        return
    db_path = db_path or DEFAULT_DB

    from ..collect.recorder import RecorderSettings

    counts = session.run_recorder(RecorderSettings(db_path=db_path, **settings_kw), gpu=not no_gpu, duration_s=duration_s,
                          log=lambda line: click.echo(line, err=True))
    click.echo(f"pyimpact: recorder stopped ({counts['events']} events, {counts['files']} file "
               f"completions, {counts['signals']} signals, {counts['samples']} samples)", err=True)
