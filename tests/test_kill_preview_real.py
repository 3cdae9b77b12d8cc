"""kill-preview on real training jobs: checkpoint history from the directory,
framework layouts, progress from the job's own output, recovery cost.

Each job is real (PyTorch CPU, the real ``transformers`` Trainer, real
``torch.distributed.checkpoint.save``, tqdm bars); ground truth comes from
outside the tool: the files' own stat(), the job's messages on its ready pipe
(step numbers, times), and what the job does next (the name its next
checkpoint really gets).  Jobs run in their own process groups (the ``jobs``
fixture of test_kill_preview kills the group by its id and reaps it).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import psutil
import pytest

from test_kill_preview import TARGETS, jobs, needs_torch, parse_log, preview_json, run_cli, wait_until  # noqa: F401

ROOT = os.geteuid() == 0
pytestmark = pytest.mark.skipif(not ROOT, reason="kill-preview reads other processes' /proc and loads BPF: needs root")


def sample_out(name: str, text: str) -> None:
    """Outputs for the closing note: written to $PYIMPACT_KP_SAMPLES/NAME if set."""
    d = os.environ.get("PYIMPACT_KP_SAMPLES")
    if d:
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, name), "w") as f:
            f.write(text)


# --------------------------------------------------------------------------
# A resumed job, then its large checkpoint written slowly under a temp name
# --------------------------------------------------------------------------

RATE = 512 << 10


@needs_torch
def test_resumed_job_then_slow_large_write(jobs, tmp_path, capsys):
    ck = tmp_path / "ckpt"
    subprocess.run([sys.executable, os.path.join(TARGETS, "kp_resume.py"), "first", str(ck)], check=True,
                   cwd=str(tmp_path), timeout=120)
    earlier = {p: os.stat(ck / p) for p in ("step-100.pt", "step-200.pt")}
    go = tmp_path / "go"
    job = jobs.start([os.path.join(TARGETS, "kp_resume.py"), "resume", str(ck), str(go), str(RATE)],
                     cwd=str(tmp_path), ready_arg=None)
    _, step_seen, first_step_t = job.line(timeout=60).split()
    create = psutil.Process(job.pid).create_time()
    assert all(st.st_mtime < create for st in earlier.values())     # an earlier run's files

    # 1. Resumed, training, nothing being written.
    doc = preview_json(capsys, job.pid, 0.8)
    loss = doc["loss"]
    last = loss["last_checkpoint"]
    assert last["path"] == str(ck / "step-200.pt") and last["predates_process"] is True
    assert last["size_bytes"] == earlier["step-200.pt"].st_size and last["step"] == 200
    assert loss["since"] == "start"
    assert "restart resumes from step-200.pt" in loss["summary"]
    truth_cadence = earlier["step-200.pt"].st_mtime - earlier["step-100.pt"].st_mtime
    assert abs(loss["checkpoint_cadence_s"] - truth_cadence) <= 0.05
    assert loss["basis"]["checkpoint_cadence_s"]["sources"] == [str(ck / "step-100.pt"), str(ck / "step-200.pt")]
    assert loss["checkpoint_cadence_steps"] == 100
    assert loss["next_checkpoint_name"] == str(ck / "step-300.pt")
    assert loss["history"]["earlier_run"] is True and loss["history"]["count"] == 2
    prog = loss["progress"]
    assert prog["fmt"] == "tqdm" and prog["total_steps"] == 1000 and prog["log"] == str(tmp_path / "stderr.0")
    assert prog["step"] >= int(step_seen)
    assert loss["steps_since_checkpoint"] == prog["step"] - 200
    assert loss["basis"]["steps_since_checkpoint"]["kind"] == "measured"
    assert loss["step_rate"] and loss["step_rate"] < 60          # the job sleeps 20 ms a step
    # Warm-up: the process start to its first step (tqdm's elapsed counter has 1 s resolution).
    warm_truth = float(first_step_t) - create
    assert loss["basis"]["restart_warmup_s"]["kind"] == "measured"
    assert abs(loss["restart_warmup_s"] - warm_truth) <= 1.5, (loss["restart_warmup_s"], warm_truth)
    assert abs(loss["total_lost_s"] - loss["since_checkpoint_s"]) <= 1.5
    assert loss["partial_files"] == [] and doc["safe_to_kill"]["verdict"] != "unsafe"
    sample_out("resumed.json", json.dumps(doc, indent=2))
    sample_out("resumed.txt", run_cli(capsys, ["kill-preview", str(job.pid), "-d", "0.4"]))
    report = (f"resumed: warm-up predicted {loss['restart_warmup_s']:.2f} s vs {warm_truth:.2f} s measured by the "
              f"job; cadence {loss['checkpoint_cadence_s']:.3f} s vs {truth_cadence:.3f} s")

    # 2. The next checkpoint, written slowly to a mkstemp() temporary.
    go.write_text("")
    _, tmp, size, _t0 = job.line(timeout=30).split()
    size = int(size)
    text = run_cli(capsys, ["kill-preview", str(job.pid), "-d", "0.4"])
    doc = preview_json(capsys, job.pid, 1.0)
    now = os.stat(tmp).st_size
    assert now < size, "the write finished before the preview: machine too slow for this test"
    v = doc["safe_to_kill"]
    assert v["verdict"] == "unsafe", v
    [p] = doc["loss"]["partial_files"]
    assert p["path"] == tmp and p["unsafe"] is True and p["temp_and_rename"] is True
    assert p["expected_size_bytes"] == p["expected_bytes"] == earlier["step-200.pt"].st_size
    assert abs(size - p["expected_size_bytes"]) <= 64      # torch.save's zip records the archive's name
    assert p["final_name"] == str(ck / "step-300.pt")
    assert p["survives"] == str(ck / "step-200.pt")
    assert 0.5 * RATE < p["write_rate_bps"] < 2 * RATE
    eta = (size - p["bytes_written"]) / RATE
    assert abs(p["eta_s"] - eta) <= 0.3 * eta + 1.0, (p["eta_s"], eta)
    assert doc["loss"]["last_checkpoint"]["path"] == str(ck / "step-200.pt")
    assert str(ck / "step-100.pt") in p["expected_sources"] and str(ck / "step-200.pt") in p["expected_sources"]
    sample_out("large-write.json", json.dumps(doc, indent=2))
    sample_out("large-write.txt", text)
    flat = re.sub(r"\s+", "", text)
    assert "UNSAFE" in text and "step-300.pt" in flat and all(len(x) <= 80 for x in text.splitlines())
    # The job's next file really gets the predicted name.
    (tmp_path / "go.finish").write_text("")
    assert job.line(timeout=30) == "saved"
    assert (ck / "step-300.pt").stat().st_size == size
    print("\n" + report)


# --------------------------------------------------------------------------
# A cadence longer than the watch: the directory gives it
# --------------------------------------------------------------------------

@needs_torch
def test_cadence_longer_than_the_watch_comes_from_the_directory(jobs, tmp_path, capsys):
    job = jobs.start([os.path.join(TARGETS, "train_ckpt.py"), "--ckpt-dir", "ckpt", "--log", "train.log",
                      "--interval", "3.0"], cwd=str(tmp_path))
    job.line(timeout=60)
    job.line(timeout=30)
    # --watch: the look with a live progress line on stderr; shorter than the
    # cadence, so it sees at most one save.
    capsys.readouterr()
    from pyimpact.cli import main as cli_main
    assert cli_main(["kill-preview", str(job.pid), "--json", "--watch", "0.8"]) == 0
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert out.err.startswith("watching ") and doc["observation"]["window_s"] >= 0.7
    loss = doc["loss"]
    as_of = doc["as_of_ns"] / 1e9
    log = parse_log(str(tmp_path / "train.log"))
    ckpts = [x for x in log if x.kind == "ckpt" and x.t <= as_of]
    assert len(ckpts) >= 2
    assert abs(loss["checkpoint_cadence_s"] - 3.0) <= 0.4, loss["basis"]["checkpoint_cadence_s"]
    assert loss["basis"]["checkpoint_cadence_s"]["kind"] == "measured"
    assert loss["next_checkpoint_in_s"] is not None
    # Progress from its log (plain timestamped "step N" lines): the step, the
    # rate, the steps since the checkpoint and the warm-up, against the log.
    prog = loss["progress"]
    assert prog["log"] == str(tmp_path / "train.log") and prog["fmt"] == "step"
    steps = [x for x in log if x.kind == "step"]
    def step_at(t: float) -> int:
        return max((x.step for x in steps if x.t <= t), default=0)
    assert step_at(as_of - 0.5) <= prog["step"] <= step_at(as_of + 0.5)
    newest = max(ckpts, key=lambda c: c.t)
    assert loss["last_checkpoint"]["path"] == str(tmp_path / newest.path)
    assert abs(loss["steps_since_checkpoint"] - (prog["step"] - newest.step)) <= 1
    start = next(x for x in log if x.kind == "start")
    first = next(x for x in log if x.kind == "step")
    create = psutil.Process(job.pid).create_time()
    assert abs(loss["restart_warmup_s"] - (first.t - create)) <= 0.3, (loss["restart_warmup_s"], first.t - create)
    assert loss["basis"]["restart_warmup_s"]["kind"] == "measured" and start.t >= create - 0.1
    assert abs(loss["total_lost_s"] - (loss["since_checkpoint_s"] + loss["restart_warmup_s"])) <= 0.01


# --------------------------------------------------------------------------
# Directory checkpoints: the HF Trainer and torch.distributed.checkpoint
# --------------------------------------------------------------------------

def _have(mod: str) -> bool:
    try:
        __import__(mod)
        return True
    except ImportError:
        return False


@needs_torch
@pytest.mark.skipif(not _have("transformers"), reason="transformers not installed (pip install -e .[test])")
def test_hf_trainer_checkpoint_directories(jobs, tmp_path, capsys):
    job = jobs.start([os.path.join(TARGETS, "kp_hf_trainer.py"), str(tmp_path / "out")], cwd=str(tmp_path),
                     ready_arg=None)
    saves = [job.line(timeout=90).split() for _ in range(2)]
    doc = preview_json(capsys, job.pid, 0.8)
    loss = doc["loss"]
    as_of = doc["as_of_ns"] / 1e9
    last = loss["last_checkpoint"]
    # The newest complete checkpoint-N/ at as-of (the Trainer may have saved again meanwhile).
    done = sorted((int(d.split("-")[1]), d) for d in os.listdir(tmp_path / "out")
                  if (tmp_path / "out" / d / "trainer_state.json").exists()
                  and (tmp_path / "out" / d / "trainer_state.json").stat().st_mtime <= as_of)
    assert last["path"] == str(tmp_path / "out" / done[-1][1]) + "/", (last, done)
    assert last["kind"] == "directory" and last["layout"] == "hf-trainer"
    assert "trainer_state.json" in last["complete_basis"]
    assert loss["checkpoint_cadence_steps"] == 20
    assert "save_steps" in loss["basis"]["checkpoint_cadence_steps"]["basis"]
    assert loss["history"]["figures"]["run_info"]["max_steps"] == 400
    prog = loss["progress"]
    assert prog["fmt"] == "tqdm" and prog["total_steps"] == 400
    assert loss["steps_since_checkpoint"] == prog["step"] - done[-1][0]
    # The cadence against the job's own on_save times (the saves up to as-of).
    while float(saves[-1][2]) <= as_of:
        saves.append(job.line(timeout=60).split())
    step_t = [float(t) for _, _, t in saves if float(t) <= as_of]
    gaps = sorted(b - a for a, b in zip(step_t, step_t[1:]))
    truth = gaps[len(gaps) // 2] if len(gaps) % 2 else (gaps[len(gaps) // 2 - 1] + gaps[len(gaps) // 2]) / 2
    assert abs(loss["checkpoint_cadence_s"] - truth) <= 0.3, (loss["checkpoint_cadence_s"], gaps)
    assert loss["next_checkpoint_name"] == str(tmp_path / "out" / f"checkpoint-{done[-1][0] + 20}") + "/"
    assert loss["saves_by_steps"] is True and loss["next_checkpoint_in_s"] is not None


@needs_torch
def test_torch_distributed_checkpoint_directories(jobs, tmp_path, capsys):
    job = jobs.start([os.path.join(TARGETS, "kp_dcp.py"), str(tmp_path / "dcp")], cwd=str(tmp_path),
                     ready_arg=None)
    for _ in range(2):
        assert job.line(timeout=60).startswith("saved")
    assert job.line(timeout=30).startswith("writing")     # the third: shards only, slowly
    doc = preview_json(capsys, job.pid, 0.8)
    loss = doc["loss"]
    last = loss["last_checkpoint"]
    assert last["path"] == str(tmp_path / "dcp" / "step_20") + "/"
    assert last["layout"] == "torch.distributed.checkpoint" and ".metadata" in last["complete_basis"]
    assert doc["safe_to_kill"]["verdict"] == "unsafe"
    [p] = loss["partial_files"]
    assert p["path"] == str(tmp_path / "dcp" / "step_30") + "/" and p["kind"] == "directory"
    assert p["layout"] == "torch.distributed.checkpoint" and ".metadata" in p["complete_when"]
    assert p["expected_size_bytes"] == last["size_bytes"]
    assert p["survives"] == str(tmp_path / "dcp" / "step_20") + "/"
    assert loss["checkpoint_cadence_steps"] == 10
    (tmp_path / "finish").write_text("")
    assert job.line(timeout=30) == "saved 30"
