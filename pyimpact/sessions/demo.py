"""The demo session (`pyimpact demo`): the main job, on a bundled target, end to end.

Starts pyimpact/demo/stuck_pipeline.py (a pipeline that works, then gets stuck
in a pipe -> file lock chain), and runs on it, printing each command first:
`trace` while it works (writing a Perfetto timeline), then `diagnose` and
`kill-preview` once it is stuck, then `report` (the postmortem) on the saved
timeline.  The target is ended afterwards by its process group (which this
session created), on every path.  ``echo(text, bold=False)`` prints a line:
the command passes click's, so this module holds no click.
"""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from typing import Callable

from ..errors import PyimpactError

Echo = Callable[..., None]


def run_step(args: list, echo: Echo) -> int:
    """Run one pyimpact command, shown first; its exit code."""
    echo("$ sudo pyimpact " + " ".join(args), bold=True)
    return subprocess.run([sys.executable, "-m", "pyimpact", *args]).returncode


def run_trace(args: list, go, echo: Echo) -> int:
    """Run `pyimpact trace`, passing its stderr through, and call ``go()`` once
    its probes are attached (or once it has ended, whatever happened)."""
    echo("$ sudo pyimpact " + " ".join(args), bold=True)
    proc = subprocess.Popen([sys.executable, "-m", "pyimpact", *args], stderr=subprocess.PIPE)
    started = False
    for raw in proc.stderr:
        sys.stderr.write(raw.decode(errors="replace"))
        sys.stderr.flush()
        if not started and b"probes attached" in raw:
            started = True
            go()
    proc.wait()
    proc.stderr.close()
    if not started:
        go()
    return proc.returncode


def have(command_module: str) -> bool:
    """Whether this install has the command (its module under pyimpact.commands)."""
    return importlib.util.find_spec(f"pyimpact.commands.{command_module}") is not None


def run_demo(output_dir: str, echo: Echo) -> str:
    """The whole demo; the timeline file it wrote.  PyimpactError when the
    target did not start or get stuck, or when a step failed."""
    os.makedirs(output_dir, exist_ok=True)
    timeline = os.path.join(output_dir, "pyimpact-demo.json")
    target = subprocess.Popen([sys.executable, "-m", "pyimpact.demo.stuck_pipeline", "4", "--wait-go"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)

    def go() -> None:
        try:
            target.stdin.write(b"go\n")
            target.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
    failures = 0
    try:
        line = target.stdout.readline().decode()
        if not line.startswith("ready"):
            raise PyimpactError("the demo target did not start",
                                "run it again; if it persists, see `pyimpact demo --help` and report a bug")
        pid = target.pid
        echo(f"demo target started: pid {pid} (a pipeline that works for 4 s once traced, then gets stuck)\n")
        failures += run_trace(["trace", "-p", str(pid), "-d", "3", "-o", timeline], go, echo) != 0
        echo(f"\nopen {timeline} in https://ui.perfetto.dev to see the timeline\n")
        if target.stdout.readline().decode().strip() != "stuck":
            raise PyimpactError("the demo target did not reach its stuck state",
                                "the machine may be too loaded: run it again")
        if have("diagnose"):
            failures += run_step(["diagnose", str(pid)], echo) != 0
            echo()
        if have("kill_preview"):
            failures += run_step(["kill-preview", str(pid)], echo) != 0
            echo()
        if have("report"):
            failures += run_step(["report", timeline], echo) != 0
    finally:
        try:
            os.killpg(target.pid, signal.SIGTERM)
            target.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(target.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            target.wait()
        target.stdout.close()
    if failures:
        raise PyimpactError(f"{failures} demo step(s) failed", "the steps above say which; each prints its own error")
    return timeline
