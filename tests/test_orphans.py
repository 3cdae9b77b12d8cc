"""`pyimpact orphans` against real orphaned workers: joblib/loky and
multiprocessing workers whose job was SIGKILLed, found with and without the
recorder's history, cleaned through pidfds; live jobs and unsafe groups left
alone; a pidfd of an exited process never signals.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import PYIMPACT, TARGETS, _diag_descendants, _diag_reap, proc_state, wait_for_line
from pyimpact.act.orphan_cleanup import CleanupPlan, execute, open_handles
from pyimpact.act.signal_log import SignalLog

LOKY_JOB = os.path.join(TARGETS, "loky_job.py")
HIST_JOB = os.path.join(TARGETS, "history_job.py")


@pytest.fixture
def reaper():
    """Make this test process a child subreaper, so orphans come to us and are
    reaped at the end (this machine's pid 1 does not reap)."""
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
    pids = []
    yield pids
    for pid in pids:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        _diag_reap(pid)


def run_cli(*args, env=None, timeout=60):
    res = subprocess.run(PYIMPACT + ["orphans", *args], capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, **(env or {})})
    assert "Traceback" not in res.stderr, res.stderr
    return res


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def kill_root(proc, reaper):
    kids = _diag_descendants(proc.pid)
    reaper.extend(kids)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    return kids


def test_loky_workers_orphaned_found_and_cleaned_without_history(spawn, reaper, tmp_path):
    live = spawn([sys.executable, LOKY_JOB], stdout=subprocess.PIPE, text=True)
    wait_for_line(live.stdout, "ready", 60)
    live_workers = _diag_descendants(live.pid)
    dead = spawn([sys.executable, LOKY_JOB], stdout=subprocess.PIPE, text=True)
    wait_for_line(dead.stdout, "ready", 60)
    workers = kill_root(dead, reaper)
    assert len(workers) >= 3          # two loky workers and the resource tracker(s)

    res = run_cli("--no-history", "--json")
    assert res.returncode == 0, res.stderr
    rows = {o["pid"]: o for o in json.loads(res.stdout)["orphans"]}
    for w in workers:
        o = rows[w]
        assert o["safe_to_clean"] is True, o
        assert o["job"].startswith(f"process group {dead.pid} (leader gone)")
        assert {"pid", "job", "command", "orphaned_since", "holds", "safe_to_clean", "reason"} <= set(o)
        assert any(h.startswith("rss ") for h in o["holds"])
    assert any(rows[w]["kind"] == "loky worker" for w in workers)
    assert not set(live_workers) & set(rows)         # a live job's workers are no orphans

    log = tmp_path / "signals.jsonl"
    args = ["--no-history", "--cleanup", "--yes", "--grace", "3s"] + [x for w in workers for x in ("-p", str(w))]
    res = run_cli(*args, env={"PYIMPACT_SIGNAL_LOG": str(log)})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "plan:" in res.stdout and "SIGTERM pid" in res.stdout
    for w in workers:
        _diag_reap(w)
        assert not alive(w)
    assert all(alive(w) for w in live_workers)
    sent = [json.loads(line) for line in log.read_text().splitlines()]
    assert {r["pid"] for r in sent} == set(workers)
    assert all(r["signal"] in ("SIGTERM", "SIGKILL") and r["result"] == "sent" for r in sent)


def test_cleanup_asks_and_sends_nothing_without_yes(spawn, reaper, tmp_path):
    dead = spawn([sys.executable, LOKY_JOB], stdout=subprocess.PIPE, text=True)
    wait_for_line(dead.stdout, "ready", 60)
    workers = kill_root(dead, reaper)
    log = tmp_path / "signals.jsonl"
    res = subprocess.run(PYIMPACT + ["orphans", "--no-history", "--cleanup", "-p", str(workers[0])],
                         input="n\n", capture_output=True, text=True, env={**os.environ,
                                                                          "PYIMPACT_SIGNAL_LOG": str(log)})
    assert res.returncode == 8, res.stderr
    assert "nothing was sent" in res.stderr
    assert alive(workers[0]) and not log.exists()


def test_multiprocessing_orphans_from_history_and_unsafe_group(spawn, reaper, tmp_path, c_build):
    vfork = c_build("diag_vfork")
    db = tmp_path / "h.db"
    rec = spawn(PYIMPACT + ["record", "--db", str(db), "-i", "0.3s", "--no-gpu", "--no-files"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_line(rec.stderr, "recorder running", 60)

    def job():
        p = spawn([sys.executable, HIST_JOB, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                  text=True)
        root, w1, w2 = (int(x) for x in wait_for_line(p.stdout, "ready").split()[1:])
        return p, root, [w1, w2]

    live, _, live_workers = job()
    a, a_root, a_workers = job()
    b, b_root, b_workers = job()
    b.stdin.write(f"spawn {vfork}\n")
    b.stdin.flush()
    vparent = int(wait_for_line(b.stdout, "spawned").split()[1])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc_state(vparent) != "D":
        time.sleep(0.05)
    kill_root(a, reaper)
    kill_root(b, reaper)
    # the recorder has written both exits (one commit later)
    from test_record import wait_rows
    for root in (a_root, b_root):
        wait_rows(db, "SELECT 1 FROM processes WHERE pid = ? AND exit_ns IS NOT NULL", (root,), 1)

    res = run_cli("--history", str(db), "--json")
    assert res.returncode == 0, res.stderr
    rows = {o["pid"]: o for o in json.loads(res.stdout)["orphans"]}
    for w in a_workers:
        o = rows[w]
        assert o["source"] == "history" and o["safe_to_clean"], o
        assert "history_job.py" in o["job"] and f"pid {a_root}" in o["job"]
        assert o["orphaned_since"] is not None
        assert any(f"started by pid {a_root}" in e for e in o["evidence"])
    # the group with a process in D state (vfork) is not safe, and says why
    assert rows[vparent]["safe_to_clean"] is False and "D state" in rows[vparent]["reason"]
    for w in b_workers:
        assert rows[w]["safe_to_clean"] is False and f"pid {vparent} of the same process group" in rows[w]["reason"]
    assert not set(live_workers) & set(rows)

    # the same workers without history: forked copies of one command line
    res = run_cli("--no-history", "--json")
    rows = {o["pid"]: o for o in json.loads(res.stdout)["orphans"]}
    assert all(rows[w]["kind"].startswith("forked worker") and rows[w]["job"].startswith(
        f"process group {a_root}") for w in a_workers)

    log = tmp_path / "signals.jsonl"
    args = ["--history", str(db), "--cleanup", "--yes", "--grace", "2s"]
    args += [x for w in a_workers + b_workers + [vparent] for x in ("-p", str(w))]
    res = run_cli(*args, env={"PYIMPACT_SIGNAL_LOG": str(log)})
    assert res.returncode == 0, res.stdout + res.stderr
    for w in a_workers:
        _diag_reap(w)
        assert not alive(w)
    assert all(alive(w) for w in b_workers + [vparent] + live_workers)
    assert "leave pid %d" % vparent in res.stdout
    sent = {json.loads(line)["pid"] for line in log.read_text().splitlines()}
    assert sent == set(a_workers)
    rec.send_signal(signal.SIGTERM)
    rec.wait(30)


def test_pidfd_taken_at_discovery_never_signals_a_reused_pid(spawn, tmp_path):
    """The handle of an exited process refuses to signal, whoever has the pid now."""
    victim = spawn(["sleep", "60"])
    with open(f"/proc/{victim.pid}/stat") as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    handles = open_handles([(victim.pid, ticks)])
    assert victim.pid in handles
    victim.kill()
    victim.wait()

    class Row:
        pid, command, reason, pgid, safe_to_clean = victim.pid, "sleep 60", "test", victim.pid, True

    log = tmp_path / "s.jsonl"
    with SignalLog(str(log), command="test") as lg:
        results = execute(CleanupPlan(steps=[(Row(), handles[victim.pid])]), lg, grace_s=0.5)
    assert results[0].outcome == "already gone" and results[0].signals == []
    # and a new process that got the pid (or any other) is not reachable through the old handle
    assert handles[victim.pid].send(signal.SIGTERM) is False
    assert open_handles([(os.getpid(), ticks)]) == {}      # start time differs: refused at discovery
