"""The recorder session (`pyimpact record`): load the recorder probes, open
NVML, announce the database of the running recorder in /run/pyimpact/recorder
(so `diagnose --history` and friends find it), run pyimpact.collect.recorder
until stopped (SIGTERM, Ctrl-C or the duration), and close every stage on
every path (ExitStack: run marked ended, probes detached, NVML closed, the
announcement removed, the signal handlers given back).  ``install_service``
writes the systemd unit of `record --install-service` and enables it.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Callable, Optional

from ..errors import OutputError

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


def systemd_quote(arg: str, executable: bool = False) -> str:
    """One ExecStart= word as systemd reads it back: double-quoted, with the
    C escapes of backslash and quote, and ``%`` (unit specifiers) and, in an
    argument, ``$`` (environment substitution, not done on the executable)
    doubled, so a path such as ``/data/50%/$x`` reaches the recorder
    unchanged (systemd.service(5), "Command lines")."""
    if "\n" in arg or "\0" in arg:
        raise OutputError(f"cannot put {arg!r} on a systemd command line (a newline or NUL)",
                          "use a path without control characters")
    body = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{body if executable else body.replace("$", "$$")}"'


def unit_text(argv_tail) -> str:
    exe = shutil.which("pyimpact")
    argv = ([exe] if exe else [sys.executable, "-m", "pyimpact"]) + ["record"] + list(argv_tail)
    words = [systemd_quote(argv[0], executable=True)] + [systemd_quote(a) for a in argv[1:]]
    return UNIT.format(exec_start=" ".join(words), doc="/usr/share/doc/pyimpact/history.md")


def systemd_running() -> bool:
    return shutil.which("systemctl") is not None and os.path.isdir("/run/systemd/system")


def install_service(argv_tail, echo=print, systemd=None) -> None:
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


def _open_file_watch(settings, rec, log):
    """The fanotify watch for closes and renames (--file-source auto or fanotify),
    or None and the syscall-tracepoint fallback, with one line saying why."""
    from ..collect.fanotify_files import FileWatch
    from ..errors import BPFUnavailable

    if not settings.files or settings.file_source == "syscalls":
        return None, "syscalls"
    try:
        return FileWatch(settings.min_file_bytes, ignore_pids={os.getpid()}, wanted=rec.wanted_file).open(), "fanotify"
    except BPFUnavailable as err:
        if settings.file_source == "fanotify":
            raise
        log(f"pyimpact: {err.message}: file completions from the syscall tracepoints instead "
            f"(every syscall on the machine then takes the kernel's tracing path)")
        return None, "syscalls"


def describe_file_source(settings, watch, probes) -> str:
    """Where file completions come from, for the start line and the database's meta."""
    if not settings.files:
        return "off (--no-files)"
    tps = ", ".join(probes.file_tracepoints) or "none"
    if watch is not None:
        return f"{watch.describe()}; fsync from the tracepoints {tps}; no syscall tracepoint"
    return f"syscall tracepoints {tps}"


def run_recorder(settings, *, gpu: bool = True, duration_s: Optional[float] = None,
                 log: Callable[[str], None] = print) -> dict:
    """Record until SIGTERM/SIGINT or ``duration_s``; returns the recorder's counts."""
    from ..collect.gpu import GpuReader
    from ..collect.recorder import Recorder, recorder_config
    from ..collect.recorder_probes import RecorderProbes

    stop = {"flag": False}

    def on_signal(signum, _frame):
        stop["flag"] = True

    t_end = time.monotonic() + duration_s if duration_s else None
    with contextlib.ExitStack() as stage:
        for s in (signal.SIGTERM, signal.SIGINT):
            stage.callback(signal.signal, s, signal.signal(s, on_signal))
        # The database first: a bad --db path fails in one line before any probe is compiled.
        rec = Recorder(settings, log=log)
        stage.callback(rec.db.close)      # runs last (idempotent after rec.stop)
        watch, source = _open_file_watch(settings, rec, log)
        if watch is not None:
            stage.callback(watch.close)
        probes = RecorderProbes(recorder_config(settings, source)).open()
        stage.callback(probes.close)
        rec.file_source = describe_file_source(settings, watch, probes)
        reader = GpuReader().open() if gpu else None
        if reader is not None:
            stage.callback(reader.close)
        rec.probes, rec.gpu, rec.file_watch = probes, reader, watch
        stage.callback(rec.stop)          # runs first: remaining events written, run marked ended
        try:
            stage.callback(_unannounce, _announce(settings.db_path))
        except OSError:
            pass      # only the default look-up is lost; --history DB still works
        if reader is not None and reader.reason:
            log(f"pyimpact: GPU unavailable ({reader.reason}): recorded as unavailable")
        rec.run(lambda: stop["flag"] or (t_end is not None and time.monotonic() >= t_end),
                on_started=lambda: log(f"pyimpact: recorder running, history in {settings.db_path} "
                                       f"(every {settings.interval_s:g} s; file completions: {rec.file_source})"))
    return rec.counts
