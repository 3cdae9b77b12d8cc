"""`pyimpact demo`: the main job, on a bundled target, end to end.

Starts pyimpact/demo/stuck_pipeline.py (a pipeline that works, then gets stuck
in a pipe -> file lock chain), and runs on it, printing each command first:
`trace` while it works (writing a Perfetto timeline), then `diagnose` and
`kill-preview` once it is stuck, then `report` (the postmortem) on the saved
timeline. The
target is ended afterwards by its process group (which this command created),
on every path.
"""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys

import click

from ..errors import PyimpactError


def _run(args: list) -> int:
    click.secho("$ sudo pyimpact " + " ".join(args), bold=True)
    return subprocess.run([sys.executable, "-m", "pyimpact", *args]).returncode


def _run_trace(args: list, go) -> int:
    """Run `pyimpact trace`, passing its stderr through, and call ``go()`` once
    its probes are attached (or once it has ended, whatever happened)."""
    click.secho("$ sudo pyimpact " + " ".join(args), bold=True)
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


def _have(command_module: str) -> bool:
    return importlib.util.find_spec(f"pyimpact.commands.{command_module}") is not None


@click.command("demo")
@click.option("--output-dir", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Where to write the demo's timeline files.")
def command(output_dir):
    """Run trace, diagnose, kill-preview and report on a bundled demo target."""
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
        click.echo(f"demo target started: pid {pid} (a pipeline that works for 4 s once traced, then gets stuck)\n")
        failures += _run_trace(["trace", "-p", str(pid), "-d", "3", "-o", timeline], go) != 0
        click.echo(f"\nopen {timeline} in https://ui.perfetto.dev to see the timeline\n")
        if target.stdout.readline().decode().strip() != "stuck":
            raise PyimpactError("the demo target did not reach its stuck state",
                                "the machine may be too loaded: run it again")
        if _have("diagnose"):
            failures += _run(["diagnose", str(pid)]) != 0
            click.echo()
        if _have("kill_preview"):
            failures += _run(["kill-preview", str(pid)]) != 0
            click.echo()
        if _have("report"):
            failures += _run(["report", timeline]) != 0
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
    click.echo(f"\ndemo done; timeline: {timeline}")
