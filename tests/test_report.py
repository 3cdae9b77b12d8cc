"""`pyimpact report FILE`: the same diagnosis on a saved recording, and the
timeline's story.

Recordings are made here from real processes (a live diagnosis saved with
``Recording.save``, or `pyimpact trace -o`), then read back by the real
`pyimpact report` command.  Processes are started and reaped by fixtures.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from conftest import PYIMPACT, proc_state, proc_syscall, wait_for_line, wait_state
from pyimpact.sessions.observe import observe
from pyimpact.export import write_recording

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="recording starts the kernel probes: run as root")
pytestmark = pytest.mark.filterwarnings("ignore:not a bytes object:DeprecationWarning")  # bcc 0.26


def report(path, *args):
    return subprocess.run(PYIMPACT + ["report", str(path), *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=60)


@needs_root
def test_report_gives_the_live_verdict_again(diag_procs, tmp_path):
    """A live diagnosis saved to Parquet and reported later: same class, same
    root cause, same chain (the related processes' snapshots and the memory
    details travel in the recording)."""
    lock = str(tmp_path / "lock")
    c, _ = diag_procs.scenario("flock-holder", lock)
    a, (b,) = diag_procs.scenario("chain-parent", lock)
    b = int(b)
    wait_state(lambda: proc_syscall(a.pid) == "61" and proc_syscall(b) == "73", what="wait4 / flock")
    live, rec = observe(a.pid, window=0.5)
    path = tmp_path / "chain.parquet"
    write_recording(rec, str(path))

    res = report(path, "--json")

    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["schema"] == "pyimpact.report/1"
    (d,) = doc["diagnoses"]
    assert d["verdict"]["class"] == live.verdict == "blocked"
    assert d["verdict"]["root_cause"] == live.root_cause.to_dict()
    assert d["verdict"]["root_cause"]["pid"] == c.pid and d["verdict"]["root_cause"]["kind"] == "file-lock"
    assert [x["pid"] for x in d["chain"]] == [a.pid, b, c.pid]

    human = report(path)
    assert human.returncode == 0, human.stderr
    assert human.stdout.startswith("Recording: ")
    assert "Verdict: BLOCKED (file-lock, confidence high)" in human.stdout


@needs_root
def test_report_tells_the_story_of_the_window(diag_procs, tmp_path):
    """Signals, fork/exec/exit and the waits that completed, counted from the
    timeline: the target runs /bin/true when it gets SIGUSR1, sent here inside
    the window, and sleeps 50 ms at a time otherwise."""
    proc, _ = diag_procs.scenario("reactive")
    wait_state(lambda: proc_syscall(proc.pid) == "230", what="sleeping")

    def poke(tracer):
        os.kill(proc.pid, signal.SIGUSR1)
        wait_for_line(proc.stdout, "ran")

    live, rec = observe(proc.pid, window=0.5, python_stacks=False, on_window=poke)
    path = tmp_path / "story.parquet"
    write_recording(rec, str(path))

    res = report(path, "--json")

    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    st = doc["story"]
    texts = [h["text"] for h in st["happenings"]]
    kinds = [h["kind"] for h in st["happenings"]]
    sig = [h for h in st["happenings"] if h["kind"] == "signal_generate" and "SIGUSR1" in h["text"]]
    assert sig and sig[0]["pid"] == os.getpid(), texts
    fork = [h for h in st["happenings"] if h["kind"] == "fork" and h["pid"] == proc.pid]
    assert fork, texts
    child = int(fork[0]["text"].split("forked pid ")[1].split()[0])
    assert any(h["kind"] == "exec" and h["pid"] == child and "true" in h["text"] for h in st["happenings"]), texts
    assert any(h["kind"] == "exit" and h["pid"] == child and "exit status 0" in h["text"]
               for h in st["happenings"]), texts
    assert kinds.index("fork") < kinds.index("exit")
    naps = [w for w in st["waits"] if w["pid"] == proc.pid and w["what"] == "clock_nanosleep()"]
    assert naps and naps[0]["count"] >= 3 and naps[0]["max_s"] >= 0.04
    assert {"ringbuf_full", "map_full"} <= set(st["lost"]) and not any(st["lost"].values()), st["lost"]
    assert doc["diagnoses"][0]["verdict"]["class"] in ("idle", "progressing")

    human = report(path).stdout
    assert "Signals, forks, execs and exits:" in human and "SIGUSR1 from pid" in human
    assert "clock_nanosleep()" in human


@needs_root
def test_report_reads_a_trace_recording(diag_procs, tmp_path):
    """`pyimpact trace -o x.parquet` (no diagnose-specific extras) is enough
    for the postmortem verdict."""
    proc, (child,) = diag_procs.scenario("pipe-parent")
    wait_state(lambda: proc_state(proc.pid) == "S" and proc_syscall(proc.pid) == "0", what="read")
    path = tmp_path / "trace.parquet"
    res = subprocess.run(PYIMPACT + ["trace", "-p", str(proc.pid), "-d", "0.3", "-o", str(path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert res.returncode == 0, res.stderr

    out = report(path, "--json")

    assert out.returncode == 0, out.stderr
    (d,) = json.loads(out.stdout)["diagnoses"]
    assert d["verdict"]["class"] == "blocked"
    assert (d["verdict"]["root_cause"]["pid"], d["verdict"]["root_cause"]["kind"]) == (int(child), "pipe")


def test_report_missing_file_exits_7(tmp_path):
    res = report(tmp_path / "nope.parquet")
    assert res.returncode == 7
    assert res.stderr.startswith("pyimpact: ") and res.stderr.count("\n") == 1
    assert "Traceback" not in res.stderr


def test_report_damaged_file_exits_7(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not a parquet file")
    res = report(bad)
    assert res.returncode == 7
    assert res.stderr.startswith("pyimpact: ") and res.stderr.count("\n") == 1
    assert "Traceback" not in res.stderr
