"""Shared fixtures: real processes started and reaped by the tests themselves.

Every process a test starts gets its own process group, which teardown kills
(by group id, never by name) and reaps, on success and on failure.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = os.path.join(ROOT, "tests", "targets")
PYIMPACT = [sys.executable, "-m", "pyimpact"]


def kill_group_and_reap(proc: subprocess.Popen) -> None:
    """SIGKILL the process group we created for `proc`, then reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


class Spawner:
    """Starts processes in their own process group and cleans all of them up."""

    def __init__(self):
        self.procs = []

    def __call__(self, argv, **kw) -> subprocess.Popen:
        kw.setdefault("start_new_session", True)
        proc = subprocess.Popen(argv, **kw)
        self.procs.append(proc)
        return proc

    def cleanup(self):
        for proc in reversed(self.procs):
            kill_group_and_reap(proc)


@pytest.fixture
def spawn():
    s = Spawner()
    try:
        yield s
    finally:
        s.cleanup()


@pytest.fixture(scope="session")
def c_build(tmp_path_factory):
    """Compile a C target from tests/targets once per session; returns its path."""
    out = tmp_path_factory.mktemp("bin")
    cache = {}

    def build(name: str, *flags: str) -> str:
        if name not in cache:
            exe = str(out / name)
            subprocess.run(["gcc", "-O2", "-pthread", "-o", exe, os.path.join(TARGETS, f"{name}.c"), *flags],
                           check=True)
            cache[name] = exe
        return cache[name]
    return build


def wait_for_line(stream, needle: str, timeout: float = 20.0) -> str:
    """Read lines from a pipe until one contains `needle` (the ready handshake)."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        line = line.decode() if isinstance(line, bytes) else line
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"never saw {needle!r}; got: {''.join(seen)[-2000:]}")


def start_trace(spawn, args, timeout: float = 30.0) -> subprocess.Popen:
    """Start `pyimpact trace ARGS` and return once its probes are attached."""
    proc = spawn(PYIMPACT + ["trace"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_line(proc.stderr, "probes attached", timeout)
    return proc
