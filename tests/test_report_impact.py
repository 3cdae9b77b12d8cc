"""`pyimpact report FILE` on a kill-preview recording: the same impact answer.

A real job (tests/targets/kp_slow_writer.py: writing a large checkpoint in
place; kp_busy.py: computing, never checkpointing) is previewed by the real
`pyimpact kill-preview PID --json -o x.parquet`; then the real `pyimpact
report x.parquet` must give the verdict and the loss figures the live run
gave, as JSON and in the same human view.  Jobs run in their own session and
are killed by process group and reaped by the ``spawn`` fixture; each says
"ready" over a pipe (no sleeps).
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys

import pytest

from conftest import PYIMPACT, RECORDINGS, TARGETS
from pyimpact.sessions.report import kill_previews
from pyimpact.export import read_recording

needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="kill-preview reads another process's /proc and loads BPF: needs root")
pytestmark = pytest.mark.filterwarnings("ignore:not a bytes object:DeprecationWarning")  # bcc 0.26

SIZE = 12 << 20
RATE = 1 << 20


def start_job(spawn, tmp_path, script: str, *args: str) -> subprocess.Popen:
    """Start a target with its ready pipe as the last argument; return once it said "ready"."""
    r, w = os.pipe()
    try:
        proc = spawn([sys.executable, os.path.join(TARGETS, script), *args, str(w)], pass_fds=(w,),
                     cwd=str(tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        os.close(w)
        w = -1
        line = b""
        while not line.endswith(b"\n"):
            ready, _, _ = select.select([r], [], [], 20)
            ch = os.read(r, 1) if ready else b""
            if not ch:
                pytest.fail(f"{script} did not say ready (rc {proc.poll()})")
            line += ch
        assert line == b"ready\n"
        return proc
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def pyimpact(*args: str) -> subprocess.CompletedProcess:
    res = subprocess.run(PYIMPACT + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         timeout=90)
    assert res.returncode == 0, res.stderr
    return res


@needs_root
def test_report_gives_the_live_kill_preview_again(spawn, tmp_path):
    """A checkpoint half-written in place: the live run says unsafe, names the
    partial file and its ETA; the report of the saved recording says the same."""
    d = tmp_path / "run"
    job = start_job(spawn, tmp_path, "kp_slow_writer.py", str(d), str(SIZE), str(RATE))
    saved = tmp_path / "x.parquet"

    live = json.loads(pyimpact("kill-preview", str(job.pid), "--json", "-d", "0.8", "-o", str(saved)).stdout)
    assert (d / "ckpt_0003.bin").stat().st_size < SIZE, "the writer finished first: machine too slow"
    assert live["safe_to_kill"]["verdict"] == "unsafe"

    doc = json.loads(pyimpact("report", str(saved), "--json").stdout)

    assert doc["schema"] == "pyimpact.report/1" and doc["kill_preview_skipped"] == []
    (again,) = doc["kill_preview"]
    assert again["target"]["pid"] == job.pid
    assert again["safe_to_kill"] == live["safe_to_kill"]
    assert again["loss"] == live["loss"]
    assert [p["path"] for p in again["loss"]["partial_files"]] == [str(d / "ckpt_0003.bin")]
    assert again == live                       # the whole document: the analysis is pure

    text = pyimpact("report", str(saved)).stdout
    assert text.startswith("Recording: ")
    assert f"kill-preview of PID {job.pid}" in text
    assert "UNSAFE" in text and "HALF-WRITTEN" in text


@needs_root
def test_report_judges_by_the_threshold_of_the_live_run(spawn, tmp_path):
    """--costly-after travels in the recording: a job that never checkpoints,
    judged costly after 0.5 s live, is judged costly again by the report (the
    default threshold, 60 s, would call it safe)."""
    job = start_job(spawn, tmp_path, "kp_busy.py")
    saved = tmp_path / "busy.parquet"

    live = json.loads(pyimpact("kill-preview", str(job.pid), "--json", "-d", "0.6", "--costly-after", "0.5",
                               "-o", str(saved)).stdout)
    doc = json.loads(pyimpact("report", str(saved), "--json").stdout)

    (again,) = doc["kill_preview"]
    assert live["safe_to_kill"]["verdict"] == "costly"
    assert again["safe_to_kill"] == live["safe_to_kill"]
    assert again["loss"]["since"] == "start"
    assert again["loss"]["since_checkpoint_s"] == live["loss"]["since_checkpoint_s"]
    assert again["loss"]["cpu_seconds"] == live["loss"]["cpu_seconds"]


def test_report_without_kill_preview_samples_has_none():
    """A diagnose recording: the key is there and empty, the human view unchanged."""
    path = os.path.join(RECORDINGS, "diag_rec_chain.parquet")
    res = subprocess.run(PYIMPACT + ["report", path, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["kill_preview"] == [] and doc["kill_preview_skipped"] == []


def test_a_job_without_a_snapshot_is_named_not_fatal():
    """`trace --kill-preview` follows jobs found after the start through /proc
    only: the recording has samples but no snapshot of them.  Such a job is
    named as not analysed; the others still are."""
    rec = read_recording(os.path.join(RECORDINGS, "diag_rec_chain.parquet"))
    missing = (1 << 22) + 1                    # above the largest pid_max: never in a snapshot
    rec.metadata["kill_preview"] = {"version": 1, "observations": [{"root": missing, "samples": []}]}

    reports, skipped = kill_previews(rec)

    assert reports == []
    assert skipped == [{"pid": missing, "why": f"no snapshot of process {missing} in the recording"}]
