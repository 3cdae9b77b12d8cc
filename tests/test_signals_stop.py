"""`trace` stopped by a signal on a busy target (issue 8, item 4).

SIGHUP (the terminal or ssh session closing), SIGTERM and SIGINT each end the
trace like --duration does: exit code 0, the summary printed, -o written, the
probes detached, and all of it soon after the signal even though the target
keeps producing events (a getppid storm traced with --slow-ms 0: hundreds of
thousands of events a second). SIGKILL cannot be handled: the kernel must
still drop every probe with the process. The time bound asserted here is
loose (this machine is shared); scripts/bench.py measures the real figure.
"""
from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time

import pytest

from conftest import PYIMPACT, all_prog_ids, prog_ids_of, start_trace, wait_for_line
from pyimpact.export import read_recording

#: seconds from the signal to the trace's exit that the test accepts (the
#: goal is 3 s; a loaded CI machine gets slack, a hang or a 10 s drain does not)
STOP_BOUND_S = 8.0


def _assert_detached(ours: set) -> None:
    assert len(ours) >= 9, "expected the probe programs to be loaded by the trace process"
    deadline = time.monotonic() + 5   # the kernel frees a program after its last reference, asynchronously
    while ours & all_prog_ids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (ours & all_prog_ids()), "BPF programs still loaded after the trace ended"


@pytest.fixture
def storm(c_build, spawn):
    """A target that, once given a byte on stdin, calls getppid() without end."""
    exe = c_build("storm")
    return spawn([exe, "4000000000"], stdin=subprocess.PIPE)


def _go(target, busy_s: float = 1.5) -> None:
    target.stdin.write(b"g")
    target.stdin.flush()
    time.sleep(busy_s)


@pytest.mark.parametrize("how", ["SIGHUP", "SIGTERM", "SIGINT"])
def test_signal_stops_a_busy_trace(how, storm, spawn, tmp_path):
    out = str(tmp_path / f"{how}.parquet")
    trace = start_trace(spawn, ["-p", str(storm.pid), "--slow-ms", "0", "--json", "-o", out])
    ours = prog_ids_of(trace.pid)
    _go(storm)
    t0 = time.monotonic()
    trace.send_signal(getattr(signal, how))
    if how == "SIGHUP":
        # A hangup often comes twice (the kernel, then the shell forwarding
        # it), and a service manager may repeat SIGTERM: neither aborts the stop.
        time.sleep(0.05)
        trace.send_signal(signal.SIGHUP)
        trace.send_signal(signal.SIGTERM)
    stdout, stderr = trace.communicate(timeout=60)
    took = time.monotonic() - t0
    assert trace.returncode == 0, stderr.decode()[-2000:]
    summary = json.loads(stdout)
    assert summary["end_reason"] == f"interrupted by {how}"
    total = summary["events"]["total"]
    assert total > 10000, summary["events"]          # it was a busy trace
    assert "undrained" in summary["lost"]            # every loss has a counter, printed
    rec = read_recording(out)
    assert len(rec.events) == total
    assert rec.metadata["end_reason"] == f"interrupted by {how}"
    assert rec.metadata["lost"] == summary["lost"]
    _assert_detached(ours)
    assert took <= STOP_BOUND_S, f"{how}: {took:.1f} s from the signal to the exit ({total} events)"


def test_sighup_from_a_closed_terminal(storm, tmp_path):
    """The real thing: trace runs on a pseudo-terminal that is its controlling
    terminal; closing the master side hangs it up (the kernel sends SIGHUP,
    and writes to the terminal fail from then on). The recording must still
    be written and the exit be clean."""
    out = str(tmp_path / "hup.parquet")
    pid, master = pty.fork()
    if pid == 0:   # the child: session leader, the pty slave is its controlling terminal
        try:
            os.execvp(PYIMPACT[0], PYIMPACT + ["trace", "-p", str(storm.pid), "--slow-ms", "0", "-o", out])
        finally:
            os._exit(127)
    try:
        seen = b""
        deadline = time.monotonic() + 30
        while b"probes attached" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
        assert b"probes attached" in seen, seen[-2000:]
        ours = prog_ids_of(pid)
        _go(storm)
        t0 = time.monotonic()
        os.close(master)      # the terminal window closes
        master = -1
        status = None
        while time.monotonic() - t0 < 60:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                break
            time.sleep(0.02)
        took = time.monotonic() - t0
        assert status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        rec = read_recording(out)
        assert rec.metadata["end_reason"] == "interrupted by SIGHUP"
        assert len(rec.events) > 10000
        _assert_detached(ours)
        assert took <= STOP_BOUND_S, f"{took:.1f} s from the hangup to the exit"
    finally:
        if master >= 0:
            os.close(master)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def test_sigkill_leaves_no_probes(storm, spawn, tmp_path):
    trace = start_trace(spawn, ["-p", str(storm.pid), "--slow-ms", "0", "-o", str(tmp_path / "k.parquet")])
    ours = prog_ids_of(trace.pid)
    _go(storm, 0.5)
    trace.send_signal(signal.SIGKILL)
    trace.communicate(timeout=30)
    assert trace.returncode == -signal.SIGKILL
    _assert_detached(ours)
