"""`pyimpact record`: the always-on recorder (foreground, or as a systemd service).

Click glue around pyimpact.collect.recorder: validates the options, loads the
recorder probes, announces the database of the running recorder in
/run/pyimpact/recorder (so `diagnose --history` and friends find it), and
stops cleanly on SIGTERM or Ctrl-C (remaining events written, run marked
ended, probes detached). `--install-service` writes a unit and enables it.

Exit codes: 0 stopped normally; 2 bad option; 4 not root; 5 BPF unavailable;
6 the database (or the unit file) cannot be written.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import click

from ..errors import OutputError, UsageError

UNIT_PATH = "/etc/systemd/system/pyimpact-record.service"

UNIT = """[Unit]
Description=pyimpact recorder: process lifecycle, checkpoints, signals and GPU use, machine-wide
Documentation=file://{doc}
After=local-fs.target

[Service]
Type=simple
ExecStart={exec_start}
Restart=on-failure
RestartSec=5
Nice=10
# The recorder needs root for BPF; it writes only its database.
ProtectHome=read-only
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
"""


def unit_text(argv_tail) -> str:
    exe = shutil.which("pyimpact") or sys.executable + " -m pyimpact"
    exec_start = " ".join([exe if " " not in exe else exe] + ["record"] + [shlex.quote(a) for a in argv_tail])
    return UNIT.format(exec_start=exec_start, doc="/usr/share/doc/pyimpact/history.md")


def systemd_running() -> bool:
    return shutil.which("systemctl") is not None and os.path.isdir("/run/systemd/system")


def install_service(argv_tail, echo=click.echo, systemd=None) -> None:
    text = unit_text(argv_tail)
    if not (systemd_running() if systemd is None else systemd):
        echo("systemd is not running here: run `sudo pyimpact record` under your own supervisor; the unit would be:")
        echo(text)
        return
    # written through an O_EXCL|O_NOFOLLOW temporary file, then renamed into place
    directory = os.path.dirname(UNIT_PATH)
    tmp = os.path.join(directory, f".pyimpact-record.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, UNIT_PATH)
    except OSError as err:
        raise OutputError(f"cannot write {UNIT_PATH}: {err.strerror or err}", "run as root") from None
    for cmd in (["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", "pyimpact-record.service"]):
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise OutputError(f"{' '.join(cmd)} failed: {res.stderr.strip().splitlines()[-1:]}",
                              "install the unit by hand: `pyimpact record --help` shows it")
    echo(f"installed and started {UNIT_PATH}")


def _announce(db_path: str) -> str:
    from ..collect.history_db import RUNTIME_POINTER

    os.makedirs(os.path.dirname(RUNTIME_POINTER), mode=0o755, exist_ok=True)
    tmp = f"{RUNTIME_POINTER}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()} {os.path.abspath(db_path)}\n")
    os.replace(tmp, RUNTIME_POINTER)
    return RUNTIME_POINTER


def _unannounce(pointer: str) -> None:
    try:
        with open(pointer) as f:
            if f.read().split(" ", 1)[0] == str(os.getpid()):
                os.unlink(pointer)
    except OSError:
        pass


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
              help="No file completions: no syscall tracepoint at all (lifecycle, signals, samples only).")
@click.option("--no-gpu", is_flag=True, help="Do not sample NVML.")
@click.option("-d", "--duration", default=None, help="Stop after this long (default: until SIGTERM/Ctrl-C).")
@click.option("--install-service", is_flag=True, help="Write and enable a systemd unit running this recorder.")
def command(db_path, interval, max_age, max_size, min_file_size, no_files, no_gpu, duration, install_service):
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
                       min_file_bytes=parse_size(min_file_size, "--min-file-size"), files=not no_files)
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
        tail += ["--no-gpu"] if no_gpu else []
        install_service(tail)
        return
    db_path = db_path or DEFAULT_DB

    from ..collect.gpu import GpuReader
    from ..collect.recorder import Recorder, RecorderSettings, recorder_config
    from ..collect.recorder_probes import RecorderProbes

    settings = RecorderSettings(db_path=db_path, **settings_kw)
    stop = {"flag": False}

    def on_signal(signum, _frame):
        stop["flag"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    t_end = time.monotonic() + duration_s if duration_s else None
    probes = RecorderProbes(recorder_config(settings)).open()
    gpu = GpuReader().open() if not no_gpu else None
    pointer = None
    rec = None
    try:
        rec = Recorder(settings, probes=probes, gpu_reader=gpu, log=lambda line: click.echo(line, err=True))
        try:
            pointer = _announce(db_path)
        except OSError:
            pointer = None      # only the default look-up is lost; --history DB still works
        if gpu is not None and gpu.reason:
            click.echo(f"pyimpact: GPU unavailable ({gpu.reason}): recorded as unavailable", err=True)
        rec.run(lambda: stop["flag"] or (t_end is not None and time.monotonic() >= t_end),
                on_started=lambda: click.echo(f"pyimpact: recorder running, history in {db_path} "
                                              f"(every {interval_s:g} s)", err=True))
    finally:
        if rec is not None:
            rec.stop()
        probes.close()
        if gpu is not None:
            gpu.close()
        if pointer:
            _unannounce(pointer)
        for s, h in old.items():
            signal.signal(s, h)
    click.echo(f"pyimpact: recorder stopped ({rec.counts['events']} events, {rec.counts['files']} file "
               f"completions, {rec.counts['signals']} signals, {rec.counts['samples']} samples)", err=True)
