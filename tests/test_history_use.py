"""diagnose, kill-preview and report with the recorder's history (`--history DB`):
checkpoint cadence and last completions of the job, the job that started an
orphaned worker and when it exited, signals before the window; without a
database, one line saying what history would add.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time

from conftest import PYIMPACT, TARGETS, _diag_reap, wait_for_line
from test_record import cue, wait_rows

JOB = os.path.join(TARGETS, "history_job.py")


def cli(*args):
    res = subprocess.run(PYIMPACT + list(args), capture_output=True, text=True, timeout=90)
    assert "Traceback" not in res.stderr, res.stderr
    return res


def test_history_in_diagnose_kill_preview_and_report(spawn, tmp_path):
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)     # orphans come to us, reaped below
    db = tmp_path / "h.db"
    rec = spawn(PYIMPACT + ["record", "--db", str(db), "-i", "0.3s", "--no-gpu"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_line(rec.stderr, "recorder running", 60)
    out = tmp_path / "ck"
    out.mkdir()
    job = spawn([sys.executable, JOB, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    root, w1, _w2 = (int(x) for x in wait_for_line(job.stdout, "ready").split()[1:])
    for i in range(3):
        if i:
            time.sleep(1.2)
        cue(job, f"ckpt {i}", f"ckpt {i}")
    cue(job, "signal", "signalled")
    wait_rows(db, "SELECT 1 FROM files WHERE kind = 'rename' AND pid = ?", (root,), 3)
    wait_rows(db, "SELECT 1 FROM signals WHERE target_pid = ? AND sig = ?", (w1, signal.SIGUSR1), 1)

    res = cli("diagnose", str(w1), "--no-bpf", "--no-python", "-w", "0.2", "--json", "--history", str(db))
    assert res.returncode == 0, res.stderr
    h = json.loads(res.stdout)["history"]
    assert h["available"] and h["job"]["root_pid"] == root and h["original_parent"]["pid"] == root
    assert h["saves"] == 3 and 1.0 < h["cadence_s"] < 3.0
    assert [os.path.basename(c["path"]) for c in h["last_saves"]] == ["ckpt-0.pt", "ckpt-1.pt", "ckpt-2.pt"]
    assert h["started_by"] is None                     # its parent is alive
    usr1 = [s for s in h["signals_before"] if s["sig"] == signal.SIGUSR1]
    assert usr1 and usr1[0]["sender_pid"] == root

    saved = tmp_path / "d.json"
    res = cli("diagnose", str(w1), "--no-bpf", "--no-python", "-w", "0.2", "--history", str(db), "-o", str(saved))
    assert res.returncode == 0, res.stderr
    assert "history (recorder database" in res.stdout and "checkpoints: 3 saves recorded, every" in res.stdout

    os.kill(root, signal.SIGKILL)                      # the job dies under its workers
    job.wait(10)
    wait_rows(db, "SELECT 1 FROM processes WHERE pid = ? AND exit_ns IS NOT NULL", (root,), 1)
    res = cli("kill-preview", str(w1), "--no-bpf", "-d", "0.3", "--json", "--history", str(db))
    assert res.returncode == 0, res.stderr
    h = json.loads(res.stdout)["history"]
    assert h["started_by"].startswith(f"this process was started by pid {root} (")
    assert "history_job.py" in h["started_by"] and "which exited at" in h["started_by"]

    res = cli("report", str(saved), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["history"]["saves"] == 3     # saved with the recording
    res = cli("report", str(saved), "--json", "--history", str(db))
    assert json.loads(res.stdout)["history"]["original_parent"]["exit_ns"] is not None   # looked up again

    rec.send_signal(signal.SIGTERM)
    rec.wait(30)
    os.killpg(root, signal.SIGKILL)
    for pid in _w2, w1:
        _diag_reap(pid)


def test_without_history_one_line_says_what_it_would_add(spawn, tmp_path):
    sleeper = spawn(["sleep", "30"])
    res = cli("diagnose", str(sleeper.pid), "--no-bpf", "--no-python", "-w", "0.1", "--history",
              str(tmp_path / "missing.db"))
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    at = [i for i, ln in enumerate(out) if ln.startswith("history:")]
    assert len(at) == 1 and "no history database at" in " ".join(out[at[0]:at[0] + 2])
    assert "would add" in " ".join(out[at[0]:])
