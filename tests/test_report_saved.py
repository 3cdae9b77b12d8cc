"""The pure analysis on recordings captured from real runs (no root, no BPF).

tests/recordings/diag_rec_*.parquet were recorded by tests/targets/diag_record.py
from the real scenarios; each carries what the diagnosis must find, written
from the scenario (who holds what), not from a diagnosis.  These tests run
anywhere, fast, and pin the analysis: a change that alters a verdict on a
real recording fails here.
"""
from __future__ import annotations

import glob
import json
import os
import subprocess

import pytest

from conftest import PYIMPACT, RECORDINGS
from pyimpact.analyse.hang.diagnose import CLASSES, KINDS, diagnose
from pyimpact.analyse.timeline_summary import tell
from pyimpact.export import read_recording
from pyimpact.render.diagnose_view import lines

SAVED = sorted(glob.glob(os.path.join(RECORDINGS, "diag_rec_*.parquet")))


def _name(path: str) -> str:
    return os.path.basename(path)[len("diag_rec_"):-len(".parquet")]


@pytest.mark.parametrize("path", SAVED, ids=[_name(p) for p in SAVED])
def test_saved_recording_gives_the_expected_verdict(path):
    rec = read_recording(path)
    fx = rec.metadata["fixture"]
    exp = fx["expect"]

    d = diagnose(rec, fx["pid"])

    text = "\n".join(lines(d))
    assert d.verdict == exp["class"], text
    assert (d.root_cause.pid, d.root_cause.tid, d.root_cause.kind) == \
        (exp["root_pid"], exp["root_tid"], exp["kind"]), text
    if "cycle" in exp:
        assert sorted(c.tid for c in d.cycle) == exp["cycle"], text
    if "chain" in exp:
        assert [c.pid for c in d.chain] == exp["chain"], text
    assert d.hung == (exp["class"] in ("deadlock", "blocked", "stopped", "zombie"))
    doc = json.loads(json.dumps(d.to_json(), default=str))
    assert doc["verdict"]["class"] in CLASSES and doc["verdict"]["root_cause"]["kind"] in KINDS
    tell(rec)  # the story of any recording can be told


def test_processes_feeding_each_other_are_judged_the_same_in_any_order():
    """The harness and its shell each read a pipe the other writes: asking for
    either verdict first must not leave the other judged from half the picture
    (a verdict worked out across the cycle is provisional, not remembered)."""
    from pyimpact.analyse.hang.rules import Engine
    from pyimpact.analyse.hang.waitgraph import build

    rec = read_recording(os.path.join(RECORDINGS, "diag_rec_harness.parquet"))
    fx = rec.metadata["fixture"]
    pids = (fx["pid"], fx["expect"]["shell"])
    g = build(rec)
    for order in (pids, pids[::-1]):
        e = Engine(g)
        got = {pid: e.verdict(pid) for pid in order}
        assert {pid: v.verdict for pid, v in got.items()} == {pids[0]: "idle", pids[1]: "idle"}, \
            (order, {pid: v.summary for pid, v in got.items()})


def test_saved_recordings_exist():
    assert len(SAVED) >= 8, "run: sudo .venv/bin/python tests/targets/diag_record.py"


def test_json_document_is_stable():
    """The --json document: these keys, these types (the schema is a promise)."""
    rec = read_recording(os.path.join(RECORDINGS, "diag_rec_c-deadlock.parquet"))
    doc = json.loads(json.dumps(diagnose(rec, rec.metadata["fixture"]["pid"]).to_json(), default=str))
    assert doc["schema"] == "pyimpact.diagnose/1"
    assert {"pid", "verdict", "threads", "chain", "evidence", "unavailable", "lost_events"} <= set(doc)
    assert set(doc["verdict"]) == {"class", "summary", "root_cause", "confidence", "hung"}
    assert set(doc["verdict"]["root_cause"]) == {"pid", "tid", "kind", "resource"}
    assert doc["verdict"]["confidence"] in ("high", "medium", "low")
    t = doc["threads"][0]
    assert {"tid", "pid", "name", "state", "activity", "syscall", "blocked_on", "blocked_for_s",
            "python_stack", "evidence"} <= set(t)
    assert {"pid", "tid", "name", "state", "waits_on"} <= set(doc["chain"][0])
    assert isinstance(doc["lost_events"], int) and isinstance(doc["evidence"], list)


def test_report_command_on_a_saved_recording():
    path = os.path.join(RECORDINGS, "diag_rec_chain.parquet")
    exp = read_recording(path).metadata["fixture"]["expect"]

    res = subprocess.run(PYIMPACT + ["report", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, timeout=60)

    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("Recording: ")
    assert "Verdict: BLOCKED (file-lock" in res.stdout
    assert f"Root cause: pid {exp['root_pid']}" in res.stdout


def _gpu_sample(pid: int, util: float) -> dict:
    """An NVML sample as pyimpact.collect.gpu stores it (no GPU on the test machine)."""
    return {"t_ns": 0, "available": True, "reason": "", "driver": "550",
            "devices": [{"index": 0, "name": "NVIDIA H100", "util_gpu_pct": util, "mem_used_bytes": 1 << 30,
                         "mem_total_bytes": 80 << 30}],
            "processes": [{"pid": pid, "device": 0, "used_memory_bytes": 1 << 30, "sm_util_pct": util}]}


@pytest.mark.parametrize("util, verdict", [(87.0, "progressing"), (0.0, "idle")])
def test_gpu_busy_while_host_waits_is_progressing(util, verdict):
    """Host threads sleeping while their GPU computes: working, root kind gpu;
    with the GPU idle the host-side verdict stands."""
    rec = read_recording(os.path.join(RECORDINGS, "diag_rec_sleeper.parquet"))
    pid = rec.metadata["fixture"]["pid"]
    rec.gpu = [_gpu_sample(pid, util)]

    d = diagnose(rec, pid)

    assert d.verdict == verdict
    assert d.gpu and d.gpu[0]["name"] == "NVIDIA H100"
    if verdict == "progressing":
        assert (d.root_cause.pid, d.root_cause.kind) == (pid, "gpu")
    assert any("NVML" in e for e in d.evidence)


def test_gpu_does_not_hide_a_deadlock():
    rec = read_recording(os.path.join(RECORDINGS, "diag_rec_c-deadlock.parquet"))
    pid = rec.metadata["fixture"]["pid"]
    rec.gpu = [_gpu_sample(pid, 90.0)]
    assert diagnose(rec, pid).verdict == "deadlock"
