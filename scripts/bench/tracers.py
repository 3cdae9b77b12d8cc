"""The tools compared: each attaches to a running PID, says when it is ready,
and stops on SIGINT (Ctrl-C) with its own summary.

  untraced         nothing attached
  pyimpact         `pyimpact trace -p PID --json` (default probes)
  pyimpact-other   `pyimpact trace -p OTHER --json`: the measured process is NOT traced
  syscount         `syscount-bpfcc -L -p PID` (bcc: counts + latency, classic tracepoints)
  syscount-other   the same on another PID
  strace-pinned    `strace -f -c -p PID` on the same CPU as the target
  strace           `strace -f -c -p PID`, free to run on any CPU
  floor            an empty sys_enter + sys_exit program pair attached as pyimpact attaches
                   its own (floor_probe.py): the kernel's dispatch cost, for every task
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import time

from .common import LOOP_CPU, PY, PYIMPACT, SYSCOUNT, LineReader, Procs, status_kb


class Handle:
    """An attached tool. `ready_s`: command start to ready, seen from outside."""

    name = "untraced"

    def __init__(self, procs: Procs, other: bool = False):
        self.procs = procs
        self.proc = None
        self.ready_s = None
        self.info: dict = {}
        # other=True: trace a sleeping bystander instead of the loop, to measure
        # what tracing costs the processes that are NOT traced.
        self.other = other
        self.sleeper = None
        if other:
            self.name = f"{self.name}-other"

    def _target(self, pid: int) -> int:
        if not self.other:
            return pid
        self.sleeper = self.procs.spawn(["sleep", "86400"])
        return self.sleeper.pid

    def _end_sleeper(self) -> None:
        if self.sleeper is not None:
            self.procs.finish(self.sleeper, sig=signal.SIGKILL)

    def start(self, pid: int, timeout: float = 60.0) -> "Handle":
        return self

    def stop(self) -> dict:
        return self.info

    def kill(self) -> None:
        if self.proc is not None:
            self.procs.kill(self.proc)
            self.proc.wait()
        self._end_sleeper()


class PyimpactTrace(Handle):
    name = "pyimpact"

    def __init__(self, procs: Procs, extra=(), other: bool = False, workdir: str | None = None,
                 tree: str | None = None):
        super().__init__(procs, other)
        self.extra = list(extra)
        # pyimpact from another checkout: PYTHONPATH, and a working directory
        # without a pyimpact package (python -m puts the cwd first on sys.path)
        self.env = dict(os.environ, PYTHONPATH=tree) if tree else None
        self.cwd = tree
        self.workdir = workdir or tempfile.gettempdir()

    def start(self, pid: int, timeout: float = 60.0) -> "PyimpactTrace":
        target = self._target(pid)
        self.stdout = tempfile.TemporaryFile(mode="w+", dir=self.workdir)
        t0 = time.monotonic()
        self.proc = self.procs.spawn(PYIMPACT + ["trace", "-p", str(target), "--json"] + self.extra,
                                     stdout=self.stdout, stderr=subprocess.PIPE, text=True, env=self.env,
                                     cwd=self.cwd)
        self.t0 = t0
        self.err = LineReader(self.proc.stderr)
        hit = self.err.wait_for("probes attached", timeout)
        if hit is None:
            self.kill()
            raise RuntimeError(f"pyimpact trace never attached: {self.err.text()[-2000:]}")
        self.ready_s = hit[0] - t0
        m = re.search(r"probes attached in ([0-9.]+) s", hit[1])
        self.info["attached_reported_s"] = float(m.group(1)) if m else None
        self.info["ready_seen_s"] = self.ready_s
        return self

    def peak_rss_kb(self):
        return status_kb(self.proc.pid, "VmHWM") if self.proc is not None else None

    def stop(self, sig=signal.SIGINT, timeout: float = 120.0) -> dict:
        t0 = time.monotonic()
        self.info["vmhwm_kb_before_stop"] = self.peak_rss_kb()
        rc = self.procs.finish(self.proc, sig=sig, timeout=timeout)
        self.info["stop_to_exit_s"] = time.monotonic() - t0
        self.err.join(5)
        self.info["rc"] = rc
        self.stdout.seek(0)
        text = self.stdout.read()
        self.stdout.close()
        try:
            self.info["summary"] = json.loads(text)
        except ValueError:
            self.info["summary"] = None
            self.info["stdout_tail"] = text[-2000:]
        self.info["stderr_tail"] = self.err.text()[-1500:]
        m = re.search(r"probes detached in ([0-9.]+) s", self.err.text())
        self.info["detach_reported_s"] = float(m.group(1)) if m else None
        self._end_sleeper()
        return self.info


class Syscount(Handle):
    name = "syscount"

    def __init__(self, procs: Procs, other: bool = False):
        super().__init__(procs, other)

    def start(self, pid: int, timeout: float = 60.0) -> "Syscount":
        target = self._target(pid)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        t0 = time.monotonic()
        self.proc = self.procs.spawn([SYSCOUNT, "-L", "-p", str(target)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env)
        self.out = LineReader(self.proc.stdout)
        hit = self.out.wait_for("Tracing syscalls", timeout)
        if hit is None:
            self.kill()
            raise RuntimeError(f"syscount never attached: {self.out.text()[-2000:]}")
        self.ready_s = hit[0] - t0
        return self

    def stop(self) -> dict:
        t0 = time.monotonic()
        self.procs.finish(self.proc, sig=signal.SIGINT, timeout=15)
        self.info["stop_s"] = time.monotonic() - t0
        self.out.join(5)
        counts = {}
        for line in self.out.text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                counts[parts[0]] = int(parts[1])
        self.info["counts"] = counts
        self._end_sleeper()
        return self.info


class Floor(Handle):
    """floor_probe.py: empty syscall programs; the same for every process (no filter)."""

    name = "floor"

    def start(self, pid: int, timeout: float = 60.0) -> "Floor":
        t0 = time.monotonic()
        self.proc = self.procs.spawn([PY, os.path.join(os.path.dirname(os.path.abspath(__file__)), "floor_probe.py")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.err = LineReader(self.proc.stderr)
        hit = self.err.wait_for("floor attached", timeout)
        if hit is None:
            self.kill()
            raise RuntimeError(f"the floor probe never attached: {self.err.text()[-2000:]}")
        self.ready_s = hit[0] - t0
        m = re.search(r"floor attached \(([a-z_]+)", hit[1])
        self.info["kind"] = m.group(1) if m else None
        return self

    def stop(self) -> dict:
        self.procs.finish(self.proc, sig=signal.SIGINT, timeout=15)
        self.err.join(5)
        return self.info


class Strace(Handle):
    name = "strace"

    def __init__(self, procs: Procs, pinned: bool, workdir: str | None = None):
        super().__init__(procs)
        self.pinned = pinned
        self.workdir = workdir or tempfile.gettempdir()
        if pinned:
            self.name = "strace-pinned"

    def start(self, pid: int, timeout: float = 60.0) -> "Strace":
        fd, self.outfile = tempfile.mkstemp(prefix="strace-", dir=self.workdir)
        os.close(fd)
        argv = ["strace", "-f", "-c", "-o", self.outfile, "-p", str(pid)]
        if self.pinned:
            argv = ["taskset", "-c", str(LOOP_CPU)] + argv
        t0 = time.monotonic()
        self.proc = self.procs.spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if _tracer_pid(pid) == self.proc.pid:
                self.ready_s = time.monotonic() - t0
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.005)
        self.kill()
        raise RuntimeError("strace never attached")

    def stop(self) -> dict:
        self.procs.finish(self.proc, sig=signal.SIGINT, timeout=60)
        counts = {}
        try:
            with open(self.outfile) as f:
                for line in f:
                    parts = line.split()
                    # % time  seconds  usecs/call  calls  [errors]  syscall
                    if len(parts) >= 5 and parts[3].isdigit():
                        counts[parts[-1]] = int(parts[3])
        finally:
            os.unlink(self.outfile)
        self.info["counts"] = counts
        return self.info


def _tracer_pid(pid: int):
    v = status_kb(pid, "TracerPid")
    return v


def make(name: str, procs: Procs, workdir: str | None = None, extra=(), tree: str | None = None) -> Handle:
    """A tool by name; "pyimpact-baseline" is `pyimpact trace -p` run from the
    checkout `tree` (a directory holding the pyimpact package, probes inside)."""
    if name == "untraced":
        return Handle(procs)
    if name == "pyimpact-baseline":
        h = PyimpactTrace(procs, extra=extra, workdir=workdir, tree=tree)
        h.name = name
        return h
    if name == "pyimpact":
        return PyimpactTrace(procs, extra=extra, workdir=workdir)
    if name == "pyimpact-other":
        return PyimpactTrace(procs, extra=extra, other=True, workdir=workdir)
    if name == "syscount":
        return Syscount(procs)
    if name == "syscount-other":
        return Syscount(procs, other=True)
    if name == "floor":
        return Floor(procs)
    if name == "strace-pinned":
        return Strace(procs, pinned=True, workdir=workdir)
    if name == "strace":
        return Strace(procs, pinned=False, workdir=workdir)
    raise ValueError(name)
