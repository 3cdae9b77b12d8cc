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
RECORDINGS = os.path.join(ROOT, "tests", "recordings")   # real recordings saved as fixtures
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


def prog_ids_of(pid: int) -> set:
    """IDs of the BPF programs a process holds, from its fds' fdinfo."""
    ids = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:bpf-prog":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                ids |= {int(line.split()[1]) for line in f if line.startswith("prog_id:")}
        except OSError:
            continue
    return ids


def all_prog_ids() -> set:
    """IDs of every BPF program loaded on the machine (bpftool)."""
    import json

    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True).stdout
    return {p["id"] for p in json.loads(out)}


# ==========================================================================
# diagnose / report fixtures (tests/test_diagnose*.py, tests/test_report*.py)
# ==========================================================================

DIAG_SCENARIOS = os.path.join(TARGETS, "diag_scenarios.py")


def _diag_descendants(pid: int) -> list:
    """All descendants of ``pid`` (from /proc/PID/task/*/children), deepest last."""
    out, queue = [], [pid]
    while queue:
        cur = queue.pop(0)
        try:
            tasks = os.listdir(f"/proc/{cur}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{cur}/task/{tid}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            for k in kids:
                if k not in out:
                    out.append(k)
                    queue.append(k)
    return out


def _diag_reap(pid: int, timeout: float = 5.0) -> None:
    """Reap ``pid`` once it has become our child (we are a subreaper), or
    return when it is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return
        except ChildProcessError:
            if not os.path.exists(f"/proc/{pid}"):
                return
        time.sleep(0.01)


class DiagProcs:
    """Starts scenario processes (own session each) and, on teardown, kills
    every one and every descendant by pid/process group, then reaps them all.

    The test process makes itself a child subreaper (prctl), so a grandchild
    orphaned by the kill comes to us and is reaped here: this machine's pid 1
    does not reap orphans, and a leaked zombie would outlive the test run.
    """

    def __init__(self):
        self.procs = []
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER

    def start(self, argv, **kw) -> subprocess.Popen:
        kw.setdefault("start_new_session", True)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(argv, **kw)
        self.procs.append(proc)
        return proc

    def scenario(self, name: str, *args: str, timeout: float = 20.0):
        """Start diag_scenarios.py NAME ARGS; return (proc, words after "ready")."""
        proc = self.start([sys.executable, DIAG_SCENARIOS, name, *args])
        line = wait_for_line(proc.stdout, "ready", timeout)
        return proc, line.split()[1:]

    def cleanup(self):
        for proc in reversed(self.procs):
            kids = _diag_descendants(proc.pid)
            for pid in [proc.pid] + kids:
                for sig in (signal.SIGCONT, signal.SIGKILL):
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
            kill_group_and_reap(proc)
            for pid in kids:
                _diag_reap(pid)


@pytest.fixture
def diag_procs():
    procs = DiagProcs()
    try:
        yield procs
    finally:
        procs.cleanup()


def proc_state(pid: int, tid: int = None) -> str:
    """State letter of /proc/PID[/task/TID]/stat, read plainly ('' if gone)."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        with open(path) as f:
            s = f.read()
    except OSError:
        return ""
    return s[s.rindex(")") + 2]


def proc_syscall(pid: int, tid: int = None) -> str:
    """First word of /proc/PID/task/TID/syscall ('' if unreadable)."""
    try:
        with open(f"/proc/{pid}/task/{tid or pid}/syscall") as f:
            return f.read().split()[0]
    except (OSError, IndexError):
        return ""


def wait_state(pred, timeout: float = 10.0, what: str = "state") -> None:
    """Poll the kernel's view until ``pred()`` holds: for states reached after
    the ready handshake (a thread going to sleep cannot tell us it slept)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


# --- running as an unprivileged user --------------------------------------
NOBODY = 65534


def _preimport_cli() -> None:
    """Import every pyimpact module (and what commands import lazily) now, so a
    forked child that drops root reads nothing from the checkout."""
    import importlib
    import pkgutil

    import pyimpact

    for mod in pkgutil.walk_packages(pyimpact.__path__, "pyimpact."):
        if not mod.name.endswith("__main__"):
            importlib.import_module(mod.name)
    for name in ("rich.console", "rich.table", "rich.text", "rich.panel", "rich.live", "rich.markup",
                 "json", "pandas", "numpy", "psutil"):
        importlib.import_module(name)


def run_cli_as_nobody(args, timeout: float = 60.0):
    """Run `pyimpact ARGS` as uid/gid 65534 in a child forked from this process.

    Forking (rather than exec'ing the venv's python as nobody) works wherever
    the checkout lives, /root included, which nobody may not read.
    Returns a CompletedProcess with text stdout/stderr.
    """
    import io
    import select
    import traceback

    _preimport_cli()
    from pyimpact.cli import main

    r_out, w_out = os.pipe()
    r_err, w_err = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.close(r_out)
            os.close(r_err)
            os.dup2(w_out, 1)
            os.dup2(w_err, 2)
            sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
            sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.chdir("/")
            code = main(list(args))
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code if isinstance(code, int) else 99)
    os.close(w_out)
    os.close(w_err)
    chunks = {r_out: [], r_err: []}
    deadline = time.monotonic() + timeout
    open_fds = [r_out, r_err]
    while open_fds and time.monotonic() < deadline:
        ready, _, _ = select.select(open_fds, [], [], 0.5)
        for fd in ready:
            data = os.read(fd, 65536)
            if data:
                chunks[fd].append(data)
            else:
                open_fds.remove(fd)
                os.close(fd)
    if open_fds:
        os.kill(pid, signal.SIGKILL)
        for fd in open_fds:
            os.close(fd)
    _, status = os.waitpid(pid, 0)
    return subprocess.CompletedProcess(["pyimpact", *args], os.waitstatus_to_exitcode(status),
                                       b"".join(chunks[r_out]).decode(), b"".join(chunks[r_err]).decode())


def python_as_nobody_argv(script: str, *args: str) -> tuple:
    """argv and preexec_fn to run a stdlib-only target script as nobody: the
    script is copied to a fresh world-readable directory (removed at exit) and
    run by the system python, so the checkout's location does not matter."""
    import atexit
    import shutil
    import tempfile

    where = tempfile.mkdtemp(prefix="pyimpact-nobody-")
    atexit.register(shutil.rmtree, where, True)
    os.chmod(where, 0o755)
    copy = os.path.join(where, os.path.basename(script))
    shutil.copy(script, copy)
    os.chmod(copy, 0o644)

    def drop():
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    return ["/usr/bin/python3", copy, *args], drop
