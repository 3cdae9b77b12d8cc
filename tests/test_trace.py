"""`pyimpact trace` against real processes with the real probes (root, BPF).

The workload (tests/targets/workload.c) does exact, prime numbers of things;
the trace must record exactly those.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import PYIMPACT, all_prog_ids, prog_ids_of, run_cli_as_nobody, start_trace, wait_for_line
from pyimpact.export import read_recording, write_recording
from pyimpact.timeline import COLUMNS

NFORK, NSIG, NBLOCK, NLOOP, NIDLE = 23, 13, 17, 29, 11


@pytest.fixture(scope="module")
def traced_workload(c_build, tmp_path_factory):
    """Run the workload under `trace -o .parquet` once; share the result."""
    from conftest import Spawner

    spawn = Spawner()
    tmp = tmp_path_factory.mktemp("trace")
    try:
        exe = c_build("workload")
        data = f"/var/tmp/pyimpact-test-{os.getpid()}.dat"   # O_DIRECT needs a real disk, not tmpfs
        target = spawn([exe, data], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        mutex_addr, idle_addr = (int(x, 16) for x in target.stdout.readline().decode().split())
        out = str(tmp / "workload.parquet")
        trace = start_trace(spawn, ["-p", str(target.pid), "-o", out, "--json"], timeout=30)
        target.stdin.write(b"g")
        target.stdin.flush()
        done = wait_for_line(target.stdout, "done")
        target.wait(timeout=30)
        stdout, stderr = trace.communicate(timeout=60)
        assert trace.returncode == 0, stderr.decode()
        summary = json.loads(stdout)
        rec = read_recording(out)
        os.unlink(data)
        yield {"pid": target.pid, "mutex": mutex_addr, "idle_futex": idle_addr, "summary": summary, "rec": rec, "done": done,
               "path": out, "tmp": tmp}
    finally:
        spawn.cleanup()


def test_forks_and_exits_exact(traced_workload):
    rec, pid = traced_workload["rec"], traced_workload["pid"]
    ev = rec.events
    forks = ev[(ev.kind == "fork") & (ev.pid == pid)]
    assert (forks.is_thread == False).sum() == NFORK + 1  # noqa: E712  (+1: the exec child)
    assert (forks.is_thread == True).sum() == 2  # noqa: E712
    children = set(forks[forks.is_thread == False].child_pid.astype(int))  # noqa: E712
    exits = ev[(ev.kind == "exit") & ev.pid.isin(children) & (ev.group_dead == True)]  # noqa: E712
    assert len(exits) == NFORK + 1
    codes = sorted(exits[exits.filename.isna()].exit_code.dropna().astype(int).tolist())
    assert codes == sorted([i % 7 for i in range(NFORK)] + [0])
    assert traced_workload["summary"]["forks"] == {"processes": NFORK + 1, "threads": 2}
    assert traced_workload["summary"]["end_reason"] == "all targets exited"


def test_signals_exact(traced_workload):
    ev, pid = traced_workload["rec"].events, traced_workload["pid"]
    sent = ev[(ev.kind == "signal_generate") & (ev.pid == pid) & (ev.signame == "SIGUSR1")]
    assert len(sent) == NSIG
    assert set(sent.target_tid.astype(int)) == {pid}
    delivered = ev[(ev.kind == "signal_deliver") & (ev.pid == pid) & (ev.signame == "SIGUSR1")]
    assert len(delivered) == NSIG
    assert set(delivered.handler.astype(str)) == {"handler"}
    assert traced_workload["done"].split()[1] == str(NSIG)
    # each child's exit sends SIGCHLD to the parent
    sigchld = ev[(ev.kind == "signal_generate") & (ev.signame == "SIGCHLD") & (ev.target_tid == pid)]
    assert len(sigchld) == NFORK + 1


def test_futex_on_contended_mutex(traced_workload):
    ev, pid, addr = traced_workload["rec"].events, traced_workload["pid"], traced_workload["mutex"]
    waits = ev[(ev.kind == "futex_wait") & (ev.uaddr == addr)]
    wakes = ev[(ev.kind == "futex_wake") & (ev.uaddr == addr)]
    assert len(waits) >= 1 and len(wakes) >= 1
    assert set(waits.pid) == {pid} and waits.tid.nunique() >= 1
    assert (waits.tid != pid).all()       # the two worker threads, not main
    assert wakes.woken.sum() >= 1
    # a wait blocks while the other thread holds the lock for ~2 ms
    assert waits.dur_ns.max() > 500_000


def test_futex_wakes_that_woke_nobody_are_counted_not_sent(traced_workload):
    ev, rec = traced_workload["rec"].events, traced_workload["rec"]
    assert not (ev.uaddr == traced_workload["idle_futex"]).any()
    assert rec.metadata["futex_wakes_woke_nobody"] >= NIDLE
    assert traced_workload["summary"]["futex"]["wakes_woke_nobody"] == rec.metadata["futex_wakes_woke_nobody"]
    assert (ev[ev.kind == "futex_wake"].woken >= 1).all()


def test_block_io_attributed(traced_workload):
    ev, pid = traced_workload["rec"].events, traced_workload["pid"]
    writes = ev[(ev.kind == "block_io") & (ev.pid == pid) & ev.rwbs.astype(str).str.contains("W")]
    assert writes.bytes.sum() >= NBLOCK * 4096
    assert (writes.dur_ns > 0).all()
    assert writes.dev.notna().all()


def test_children_followed(traced_workload):
    ev, pid = traced_workload["rec"].events, traced_workload["pid"]
    execs = ev[ev.kind == "exec"]
    assert execs.filename.tolist() == ["/bin/true"]
    child = int(execs.pid.iloc[0])
    assert child != pid
    naps = ev[(ev.kind == "syscall") & (ev.pid == child) & (ev.syscall == "clock_nanosleep")]
    assert len(naps) == 1 and naps.dur_ns.iloc[0] >= 20_000_000


def test_lost_zero_and_metadata(traced_workload):
    rec, s = traced_workload["rec"], traced_workload["summary"]
    assert rec.lost_total == 0 and s["lost_total"] == 0
    meta = rec.metadata
    for key in ("host", "kernel", "tool_version", "clock_offset_ns", "started_at_ns", "ended_at_ns",
                "duration_s", "targets", "lost", "unavailable", "bcc_version"):
        assert key in meta, key
    assert rec.snapshots["start"].processes[traced_workload["pid"]].name == "workload"
    assert len(rec.syscall_stats) > 0 and rec.syscall_stats["count"].sum() > 100
    # events carry wall-clock times inside the trace span
    ev = rec.events
    assert ev.time_ns.min() >= meta["started_at_ns"] - 1_000_000_000
    assert ev.time_ns.max() <= meta["ended_at_ns"]


def test_parquet_round_trip(traced_workload, tmp_path):
    rec = traced_workload["rec"]
    again = str(tmp_path / "again.parquet")
    write_recording(rec, again)
    back = read_recording(again)
    pd.testing.assert_frame_equal(rec.events, back.events)
    assert back.metadata == rec.metadata
    assert back.snapshots["start"] == rec.snapshots["start"]
    pd.testing.assert_frame_equal(rec.syscall_stats, back.syscall_stats)


def test_csv_columns(traced_workload, tmp_path):
    path = str(tmp_path / "t.csv")
    write_recording(traced_workload["rec"], path)
    df = pd.read_csv(path)
    assert list(df.columns) == COLUMNS
    assert len(df) == len(traced_workload["rec"].events)
    back = read_recording(path)
    assert (back.events.kind.astype(str) == traced_workload["rec"].events.kind.astype(str)).all()


def validate_trace_event_json(doc: dict) -> list:
    """Check the Chrome/Perfetto trace-event rules; returns the timed events."""
    assert isinstance(doc["traceEvents"], list)
    named = set()
    timed = []
    for e in doc["traceEvents"]:
        assert e["ph"] in ("X", "i", "M"), e
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        if e["ph"] == "M":
            assert e["name"] in ("process_name", "thread_name") and e["args"]["name"]
            named.add((e["name"], e["pid"], e["tid"] if e["name"] == "thread_name" else None))
            continue
        assert isinstance(e["name"], str) and e["name"]
        assert isinstance(e["ts"], (int, float)) and e["ts"] > 0
        if e["ph"] == "X":
            assert isinstance(e["dur"], (int, float)) and e["dur"] >= 0
        else:
            assert e["s"] in ("t", "p", "g")
        timed.append(e)
    for e in timed:
        assert ("thread_name", e["pid"], e["tid"]) in named, e
        assert ("process_name", e["pid"], None) in named, e
    ts = [e["ts"] for e in timed]
    assert ts == sorted(ts), "timestamps must be monotonic"
    return timed


def test_perfetto_json(traced_workload, tmp_path):
    rec = traced_workload["rec"]
    path = str(tmp_path / "t.json")
    write_recording(rec, path)
    with open(path) as f:
        doc = json.load(f)
    timed = validate_trace_event_json(doc)
    assert len(timed) == len(rec.events)
    cats = {e["cat"] for e in timed}
    assert {"fork", "exit", "signal_generate", "futex_wait", "block_io"} <= cats
    on_mutex = [e for e in timed if e["ph"] == "X" and e["cat"] == "futex_wait"
                and e["args"]["uaddr"] == traced_workload["mutex"]]
    assert on_mutex and all(e["tid"] != traced_workload["pid"] for e in on_mutex)
    # the JSON reads back to the same timeline
    back = read_recording(path)
    assert len(back.events) == len(rec.events)
    assert (back.events.time_ns.to_numpy() == rec.events.time_ns.to_numpy()).all()


def test_loss_is_counted(c_build, spawn, tmp_path):
    """A storm into a one-page ring buffer must report losses, never hide them."""
    exe = c_build("storm")
    target = spawn([exe, "300000"], stdin=subprocess.PIPE)
    out = str(tmp_path / "storm.parquet")
    trace = start_trace(spawn, ["-p", str(target.pid), "--slow-ms", "0", "--buffer-pages", "1",
                                "--json", "-o", out])
    target.stdin.write(b"g")
    target.stdin.flush()
    target.wait(timeout=60)
    stdout, stderr = trace.communicate(timeout=60)
    assert trace.returncode == 0, stderr.decode()
    s = json.loads(stdout)
    assert s["lost"]["ringbuf_full"] > 0
    rec = read_recording(out)
    assert rec.metadata["lost"]["ringbuf_full"] == s["lost"]["ringbuf_full"]
    # every getppid was either received or counted as lost (plus the process's other syscalls)
    received = s["events"]["by_kind"].get("syscall", 0)
    assert received + s["lost"]["ringbuf_full"] >= 300000


@pytest.mark.parametrize("how", ["duration", "SIGINT", "SIGTERM"])
def test_probes_detached(how, spawn, tmp_path):
    sleeper = spawn([sys.executable, "-c", "import time; time.sleep(120)"])
    out = str(tmp_path / f"{how}.json")
    args = ["-p", str(sleeper.pid), "-o", out] + (["-d", "1"] if how == "duration" else [])
    trace = start_trace(spawn, args)
    ours = prog_ids_of(trace.pid)
    assert len(ours) >= 9, "expected the probe programs to be loaded by the trace process"
    if how != "duration":
        trace.send_signal(getattr(signal, how))
    stdout, stderr = trace.communicate(timeout=30)
    assert trace.returncode == 0, stderr.decode()
    assert "pyimpact trace of" in stdout.decode()
    assert os.path.exists(out)
    # The kernel frees a program after its last reference goes, asynchronously.
    deadline = time.monotonic() + 5
    while ours & all_prog_ids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (ours & all_prog_ids()), "BPF programs still loaded after the trace ended"
    if how != "duration":
        assert f"interrupted by {how}" in stdout.decode()


def test_target_exits_mid_trace(spawn):
    # The target exits once the probes watch it (a fixed sleep races a slow attach on a loaded machine).
    target = spawn([sys.executable, "-c", "import sys, time; sys.stdin.readline(); time.sleep(0.5)"],
                   stdin=subprocess.PIPE)
    trace = start_trace(spawn, ["-p", str(target.pid), "--json"])
    target.stdin.write(b"go\n")
    target.stdin.flush()
    stdout, stderr = trace.communicate(timeout=60)
    res = subprocess.CompletedProcess(trace.args, trace.returncode, stdout, stderr)
    assert res.returncode == 0, res.stderr
    s = json.loads(res.stdout)
    assert s["end_reason"] == "all targets exited"
    assert any(e["pid"] == target.pid and e["exit_code"] == 0 for e in s["exits"])


def _one_line_error(res, code, needle):
    err = res.stderr.decode().strip()
    assert res.returncode == code, (res.returncode, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("pyimpact: ") and needle in err, err


def test_error_bad_pid():
    res = subprocess.run(PYIMPACT + ["trace", "-p", "4194304", "-d", "1"], capture_output=True, timeout=60)
    _one_line_error(res, 3, "no such process")


def test_error_unwritable_output(spawn, tmp_path):
    sleeper = spawn([sys.executable, "-c", "import time; time.sleep(60)"])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = subprocess.run(PYIMPACT + ["trace", "-p", str(sleeper.pid), "-d", "1", "-o", str(blocker / "t.json")],
                         capture_output=True, timeout=60)
    _one_line_error(res, 6, "cannot write")
    res = subprocess.run(PYIMPACT + ["trace", "-p", str(sleeper.pid), "-d", "1", "-o", str(tmp_path / "t.txt")],
                         capture_output=True, timeout=60)
    _one_line_error(res, 2, "unknown format")


def test_error_not_root(spawn):
    sleeper = spawn([sys.executable, "-c", "import time; time.sleep(60)"])
    res = run_cli_as_nobody(["trace", "-p", str(sleeper.pid), "-d", "1"])
    assert res.returncode == 4, (res.returncode, res.stderr)
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.startswith("pyimpact: ") and "root" in res.stderr, res.stderr


def test_error_nothing_to_trace():
    res = subprocess.run(PYIMPACT + ["trace", "-d", "1"], capture_output=True, timeout=60)
    _one_line_error(res, 2, "nothing to trace")


def test_trace_all_sees_unrelated_processes(spawn):
    """--all follows processes the tracer was never told about."""
    code = ("import os, sys\nsys.stdin.readline()\nfor i in range(7):\n    pid = os.fork()\n    if pid == 0:\n        os._exit(3)\n    os.waitpid(pid, 0)\n")
    target = spawn([sys.executable, "-c", code], stdin=subprocess.PIPE)
    trace = start_trace(spawn, ["--all", "-d", "2", "--json"])
    target.stdin.write(b"go\n")
    target.stdin.flush()
    target.wait(timeout=30)
    stdout, stderr = trace.communicate(timeout=60)
    assert trace.returncode == 0, stderr.decode()
    s = json.loads(stdout)
    assert s["mode"] == "system"
    ours = [e for e in s["exits"] if e["exit_code"] == 3]
    assert len(ours) >= 7
