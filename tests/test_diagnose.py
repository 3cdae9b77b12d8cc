"""`pyimpact diagnose` against real processes in real states.

Each scenario is started by a fixture (tests/targets/diag_*), says "ready"
over its stdout pipe, and the test then waits until /proc shows the state
itself (a thread going to sleep cannot say that it slept).  The diagnosis
runs the real probes (root, BPF) for a short window, in-process for speed;
the command-line tests run the real `pyimpact` command.  Every test asserts
the verdict class, the root cause's pid/tid and its kind.  Every process is
killed and reaped by the fixture, on success and on failure.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import (DIAG_SCENARIOS, PYIMPACT, proc_state, proc_syscall, python_as_nobody_argv, run_cli_as_nobody,
                      wait_for_line, wait_state)
from pyimpact.analyse.hang.diagnose import CLASSES, KINDS
from pyimpact.sessions.observe import observe
from pyimpact.render.diagnose_view import lines

ROOT = os.geteuid() == 0
WINDOW = 0.5

pytestmark = [
    pytest.mark.skipif(not ROOT, reason="diagnose tests start the kernel probes: run as root"),
    pytest.mark.filterwarnings("ignore:not a bytes object:DeprecationWarning"),  # bcc 0.26 on str names
]

NR = {"read": "0", "futex": "202", "wait4": "61", "flock": "73", "recvfrom": "45", "vfork": "58",
      "pause": "34", "clock_nanosleep": "230", "fcntl": "72", "poll": "7"}


def sleeping_in(pid: int, call: str, tid: int = None, states=("S",)) -> bool:
    return proc_state(pid, tid) in states and proc_syscall(pid, tid) == NR[call]


def diagnose(pid: int, **kw):
    """Run the real diagnosis (probes on unless told otherwise) and render it."""
    kw.setdefault("window", WINDOW)
    d, rec = observe(pid, **kw)
    text = "\n".join(lines(d))
    assert d.verdict in CLASSES and d.root_cause.kind in KINDS, text
    return d, rec, text


def thread(d, tid):
    return next(t for t in d.threads if t.tid == tid)


# --------------------------------------------------------------------------
# deadlocks
# --------------------------------------------------------------------------

def test_c_pthread_mutex_abba_deadlock(c_build, diag_procs):
    exe = c_build("diag_mutex_deadlock")
    proc = diag_procs.start([exe])
    _, t1, t2, addr_a, addr_b = wait_for_line(proc.stdout, "ready").split()
    t1, t2, pid = int(t1), int(t2), proc.pid
    wait_state(lambda: sleeping_in(pid, "futex", t1) and sleeping_in(pid, "futex", t2), what="both in futex")

    d, _, text = diagnose(pid)

    assert d.verdict == "deadlock", text
    assert d.root_cause.kind == "mutex", text
    assert (d.root_cause.pid, d.root_cause.tid) == (pid, min(t1, t2)), text
    assert d.confidence == "high"
    assert {c.tid for c in d.cycle} == {t1, t2}, text
    # each mutex's owner, read from the mutex itself
    a = thread(d, t1)   # holds A, wants B
    b = thread(d, t2)   # holds B, wants A
    assert a.kind == b.kind == "mutex"
    assert [e.target for e in a.edges] == [f"t:{t2}"] and [e.target for e in b.edges] == [f"t:{t1}"]
    assert f"mutex {int(addr_b, 16):#x} held by thread {t2}" in a.resource, text
    assert f"mutex {int(addr_a, 16):#x} held by thread {t1}" in b.resource, text
    assert any("__owner=" in e for e in a.evidence)
    # the main thread joins the first thread, itself in the deadlock
    assert [e.target for e in thread(d, pid).edges] == [f"t:{t1}"]
    assert "Verdict: DEADLOCK (mutex" in text
    js = d.to_json()
    assert js["verdict"]["root_cause"] == {"pid": pid, "tid": min(t1, t2), "kind": "mutex",
                                           "resource": d.root_cause.resource}


def test_python_threading_lock_abba_deadlock(diag_procs):
    proc, (t1, t2) = diag_procs.scenario("py-deadlock")
    t1, t2, pid = int(t1), int(t2), proc.pid
    wait_state(lambda: all(sleeping_in(pid, "futex", t) for t in (pid, t1, t2)), what="all in futex")

    d, _, text = diagnose(pid)

    assert d.verdict == "deadlock", text
    assert d.root_cause.kind == "futex", text        # a Python Lock records no owner
    assert (d.root_cause.pid, d.root_cause.tid) == (pid, min(t1, t2)), text
    assert {c.tid for c in d.cycle} == {t1, t2}, text
    # py-spy: each lock wait is shown with its Python line; the main thread joins take-a-b
    assert thread(d, t1).python_stack and thread(d, t1).python_stack[0]["function"].endswith("take")
    main = thread(d, pid)
    assert main.join and [e.target for e in main.edges] == [f"t:{t1}"], text
    assert "take-a-b" in text and "diag_scenarios.py" in text


def test_python_lock_waits_beside_an_active_thread_are_blocked_not_idle(diag_procs):
    """The same AB-BA deadlock, but a heartbeat thread keeps the process alive:
    with no owner recorded, the waits are "blocked" on a lock held inside the
    process (low confidence), never "idle"."""
    proc, (t1, t2) = diag_procs.scenario("py-deadlock-heartbeat")
    t1, t2, pid = int(t1), int(t2), proc.pid
    wait_state(lambda: all(sleeping_in(pid, "futex", t) for t in (t1, t2)), what="both in futex")

    d, _, text = diagnose(pid)

    assert d.verdict == "blocked", text
    assert (d.root_cause.pid, d.root_cause.tid, d.root_cause.kind) == (pid, None, "futex"), text
    assert d.confidence == "low"
    assert d.hung


# --------------------------------------------------------------------------
# blocked on another process
# --------------------------------------------------------------------------

def test_parent_blocked_on_pipe_from_blocked_child(diag_procs):
    proc, (child,) = diag_procs.scenario("pipe-parent")
    pid, child = proc.pid, int(child)
    wait_state(lambda: sleeping_in(pid, "read") and sleeping_in(child, "pause"), what="read / pause")

    d, _, text = diagnose(pid)

    assert d.verdict == "blocked", text
    assert (d.root_cause.pid, d.root_cause.tid, d.root_cause.kind) == (child, child, "pipe"), text
    assert [c.pid for c in d.chain] == [pid, child]
    assert "pause" in d.chain[-1].note
    assert d.confidence == "high"
    assert thread(d, pid).blocked_for_s is not None


def test_poll_on_pipes_of_a_silent_child(diag_procs):
    """subprocess.communicate(): poll() on the child's stdout and stderr."""
    proc, (child,) = diag_procs.scenario("communicate")
    child = int(child)
    wait_state(lambda: sleeping_in(proc.pid, "poll") and sleeping_in(child, "pause"), what="poll / pause")

    d, _, text = diagnose(proc.pid)

    assert d.verdict == "blocked", text
    assert (d.root_cause.pid, d.root_cause.tid, d.root_cause.kind) == (child, child, "pipe"), text
    assert thread(d, proc.pid).syscall == "poll" and len(thread(d, proc.pid).edges) == 2


def test_missing_stack_tool_is_said_and_the_verdict_still_comes(diag_procs, monkeypatch):
    monkeypatch.setenv("PYIMPACT_PYSPY", "")          # as if py-spy were not installed
    proc, (child,) = diag_procs.scenario("pipe-parent")
    wait_state(lambda: sleeping_in(proc.pid, "read"), what="read")

    d, _, text = diagnose(proc.pid, window=0.3)

    assert d.verdict == "blocked" and d.root_cause.pid == int(child), text
    assert any("py-spy not found" in u for u in d.unavailable), d.unavailable
    assert not thread(d, proc.pid).python_stack


def test_fifo_reader_blocked_on_silent_writer(diag_procs, tmp_path):
    path = str(tmp_path / "fifo")
    writer = diag_procs.start([sys.executable, DIAG_SCENARIOS, "fifo-writer", path])
    wait_for_line(writer.stdout, "made")
    reader, _ = diag_procs.scenario("fifo-reader", path)
    wait_for_line(writer.stdout, "ready")
    wait_state(lambda: sleeping_in(reader.pid, "read"), what="reader in read")

    d, _, text = diagnose(reader.pid, python_stacks=False)

    assert d.verdict == "blocked", text
    assert (d.root_cause.pid, d.root_cause.tid, d.root_cause.kind) == (writer.pid, writer.pid, "pipe"), text
    assert f"FIFO {path}" in thread(d, reader.pid).resource


def test_tcp_client_blocked_on_silent_local_server(diag_procs):
    server, (port,) = diag_procs.scenario("tcp-server")
    client, _ = diag_procs.scenario("tcp-client", port)
    wait_for_line(server.stdout, "accepted")
    wait_state(lambda: sleeping_in(client.pid, "recvfrom"), what="client in recvfrom")

    d, _, text = diagnose(client.pid)

    assert d.verdict == "blocked", text
    assert (d.root_cause.pid, d.root_cause.tid, d.root_cause.kind) == (server.pid, server.pid, "socket"), text
    assert f"127.0.0.1:{port}" in thread(d, client.pid).resource


@pytest.mark.parametrize("how", ["flock", "lockf"])
def test_file_lock_waiter_blocked_on_holder(diag_procs, tmp_path, how):
    path = str(tmp_path / "lock")
    holder, _ = diag_procs.scenario("flock-holder", path, how)
    waiter, _ = diag_procs.scenario("flock-waiter", path, how)
    call = "flock" if how == "flock" else "fcntl"
    wait_state(lambda: sleeping_in(waiter.pid, call), what=f"waiter in {call}")

    d, _, text = diagnose(waiter.pid)

    assert d.verdict == "blocked", text
    assert (d.root_cause.pid, d.root_cause.tid, d.root_cause.kind) == (holder.pid, holder.pid, "file-lock"), text
    assert any("/proc/locks" in e and ("FLOCK" if how == "flock" else "POSIX") in e for e in d.evidence)


def test_chain_of_three_processes(diag_procs, tmp_path):
    """A waits for its child B; B waits for a flock held by C: the root is C."""
    path = str(tmp_path / "lock")
    c, _ = diag_procs.scenario("flock-holder", path)
    a, (b,) = diag_procs.scenario("chain-parent", path)
    b = int(b)
    wait_state(lambda: sleeping_in(a.pid, "wait4") and sleeping_in(b, "flock"), what="wait4 / flock")

    d, _, text = diagnose(a.pid)

    assert d.verdict == "blocked", text
    assert (d.root_cause.pid, d.root_cause.tid, d.root_cause.kind) == (c.pid, c.pid, "file-lock"), text
    assert [x.pid for x in d.chain] == [a.pid, b, c.pid], text
    assert [x.waits_on["kind"] for x in d.chain[:-1]] == ["child", "file-lock"]


def test_vfork_parent_waits_for_child(c_build, diag_procs):
    exe = c_build("diag_vfork")
    proc = diag_procs.start([exe])
    child = int(wait_for_line(proc.stdout, "ready").split()[1])
    # the parent sleeps inside vfork() (D on this kernel, killable), the child in pause()
    wait_state(lambda: sleeping_in(proc.pid, "vfork", states=("D", "S")) and sleeping_in(child, "pause"),
               what="vfork / pause")

    d, _, text = diagnose(proc.pid)

    assert d.verdict == "blocked", text
    assert (d.root_cause.pid, d.root_cause.tid, d.root_cause.kind) == (child, child, "vfork"), text
    assert thread(d, proc.pid).kind == "vfork"


# --------------------------------------------------------------------------
# stopped, zombie
# --------------------------------------------------------------------------

def test_sigstopped_process_names_the_sender_seen_in_the_window(diag_procs):
    proc, _ = diag_procs.scenario("long-sleep")
    wait_state(lambda: sleeping_in(proc.pid, "clock_nanosleep"), what="sleeping")

    def stop_now(tracer):  # called once the probes are attached
        os.kill(proc.pid, signal.SIGSTOP)
        wait_state(lambda: proc_state(proc.pid) == "T", what="stopped")

    d, _, text = diagnose(proc.pid, on_window=stop_now)

    assert d.verdict == "stopped", text
    assert (d.root_cause.pid, d.root_cause.tid, d.root_cause.kind) == (proc.pid, proc.pid, "signal-stop"), text
    assert f"SIGSTOP sent by pid {os.getpid()}" in d.root_cause.resource, text
    assert f"kill -CONT {proc.pid}" in text


def test_process_stopped_before_tracing(diag_procs):
    proc, _ = diag_procs.scenario("sleeper")
    os.kill(proc.pid, signal.SIGSTOP)
    wait_state(lambda: proc_state(proc.pid) == "T", what="stopped")

    d, _, text = diagnose(proc.pid, python_stacks=False)

    assert d.verdict == "stopped", text
    assert (d.root_cause.pid, d.root_cause.tid, d.root_cause.kind) == (proc.pid, proc.pid, "signal-stop"), text
    assert "before tracing began" in d.summary


def test_zombie_child_of_non_reaping_parent(diag_procs):
    parent, (child,) = diag_procs.scenario("zombie-parent")
    child = int(child)
    wait_state(lambda: proc_state(child) == "Z" and sleeping_in(parent.pid, "pause"), what="zombie")

    d, _, text = diagnose(child)

    assert d.verdict == "zombie", text
    assert (d.root_cause.pid, d.root_cause.tid, d.root_cause.kind) == (parent.pid, parent.pid, "child"), text
    assert "pause" in d.summary, text      # what the parent does instead of reaping


# --------------------------------------------------------------------------
# not hung
# --------------------------------------------------------------------------

def test_pure_cpu_loop_is_busy(diag_procs):
    proc, _ = diag_procs.scenario("busy")
    wait_state(lambda: proc_state(proc.pid) == "R", what="running")

    d, _, text = diagnose(proc.pid, python_stacks=False)

    assert d.verdict == "busy", text
    assert not d.hung
    assert (d.root_cause.pid, d.root_cause.tid, d.root_cause.kind) == (proc.pid, proc.pid, "unknown"), text
    assert thread(d, proc.pid).syscalls == 0


def test_parent_of_a_computing_child_is_not_hung(diag_procs):
    """Waiting for a child that works is the job working: never "blocked"."""
    proc, (child,) = diag_procs.scenario("wait-busy-child")
    child = int(child)
    wait_state(lambda: sleeping_in(proc.pid, "wait4") and proc_state(child) == "R", what="wait4 / R")

    d, _, text = diagnose(proc.pid, python_stacks=False)

    assert d.verdict == "busy", text      # the child computes without syscalls
    assert not d.hung
    assert (d.root_cause.pid, d.root_cause.tid, d.root_cause.kind) == (child, child, "child"), text
    assert [c.pid for c in d.chain] == [proc.pid, child]


@pytest.mark.parametrize("scenario", ["sleeper", "long-sleep"])
def test_healthy_sleeping_process_is_idle(diag_procs, scenario):
    proc, _ = diag_procs.scenario(scenario)
    wait_state(lambda: proc_syscall(proc.pid) == NR["clock_nanosleep"], what="sleeping")

    d, _, text = diagnose(proc.pid, python_stacks=False)

    assert d.verdict == "idle", text
    assert not d.hung
    assert (d.root_cause.pid, d.root_cause.tid, d.root_cause.kind) == (proc.pid, proc.pid, "unknown"), text
    if scenario == "long-sleep":
        assert thread(d, proc.pid).timeout_s > 3000
    else:
        assert thread(d, proc.pid).wakeups > 0


# --------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------

JSON_KEYS = {"pid", "verdict", "threads", "chain", "evidence", "unavailable", "lost_events"}


def run_cli(args, **kw):
    return subprocess.run(PYIMPACT + ["diagnose"] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=60, **kw)


def test_cli_human_view_with_probes(diag_procs):
    proc, (child,) = diag_procs.scenario("pipe-parent")
    wait_state(lambda: sleeping_in(proc.pid, "read"), what="read")

    res = run_cli([str(proc.pid), "--window", "0.3"])

    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.startswith(f"Process {proc.pid}: ")
    assert "Verdict: BLOCKED (pipe, confidence high)" in out
    assert f"Root cause: pid {child}" in out
    assert f'Thread {proc.pid} "MainThread" (S in read)' in out and "Chain to the root cause:" in out
    assert "Python: pipe_parent (diag_scenarios.py:" in out
    assert "SIGTERM is handled (SigCgt)" in out      # the scenario installs a handler


def test_cli_json_no_bpf(diag_procs):
    proc, (child,) = diag_procs.scenario("pipe-parent")
    child = int(child)
    wait_state(lambda: sleeping_in(proc.pid, "read"), what="read")

    res = run_cli([str(proc.pid), "--no-bpf", "--json", "--window", "0.3"])

    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert JSON_KEYS <= set(doc)
    assert set(doc["verdict"]) >= {"class", "summary", "root_cause", "confidence"}
    assert doc["verdict"]["class"] == "blocked"
    assert doc["verdict"]["root_cause"]["pid"] == child
    assert doc["verdict"]["root_cause"]["kind"] == "pipe"
    assert doc["bpf"] is False
    assert any("kernel probes" in u for u in doc["unavailable"])
    t = next(t for t in doc["threads"] if t["tid"] == proc.pid)
    assert t["blocked_on"]["kind"] == "pipe" and {"pid": child} in t["blocked_on"]["holders"]
    assert [c["pid"] for c in doc["chain"]] == [proc.pid, child]
    assert isinstance(doc["lost_events"], int)


def test_cli_bad_pid_exits_3_with_one_line():
    res = run_cli(["4194303", "--window", "0.1"])
    assert res.returncode == 3
    assert res.stdout == ""
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("pyimpact: ")
    assert "Traceback" not in res.stderr


def test_cli_not_root_degrades_to_proc(diag_procs):
    """Without root: no probes, one line saying so, and still a verdict."""
    argv, drop = python_as_nobody_argv(os.path.join(os.path.dirname(__file__), "targets", "diag_scenarios.py"),
                                       "pipe-parent")
    proc = diag_procs.start(argv, preexec_fn=drop)
    child = int(wait_for_line(proc.stdout, "ready").split()[1])
    wait_state(lambda: sleeping_in(proc.pid, "read"), what="read")

    res = run_cli_as_nobody(["diagnose", str(proc.pid), "--json", "--window", "0.3"])

    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["bpf"] is False
    assert any("need root" in u for u in doc["unavailable"]), doc["unavailable"]
    assert doc["verdict"]["class"] == "blocked"
    assert (doc["verdict"]["root_cause"]["pid"], doc["verdict"]["root_cause"]["kind"]) == (child, "pipe")
