"""kill-preview on job shapes the other real-job tests do not stage: a plain
PyTorch loop (tests/targets/kp_loop.py) that

- starts fresh beside an earlier run's save (``model.pt`` + ``optimizer.pt``,
  unnumbered, already read once so no atime says the job read it, and aged
  by ``os.utime`` as a restore or copy leaves them: mtime old, ctime new);
- saves to a directory named only in its environment, outside its working
  directory, and says where in its log;
- writes its log and checkpoints under a run directory whose name looks
  numbered (``run7_epoch3/``), which is a place, not a directory checkpoint.

Ground truth is outside the tool: the files' own stat(), and the job's
"saved PATH MTIME" lines on its ready pipe.  Jobs run in their own process
groups (the ``jobs`` fixture of test_kill_preview kills them by group id and
reaps them).
"""
from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time

import psutil
import pytest

from test_kill_preview import TARGETS, jobs, needs_torch, preview_json, wait_until  # noqa: F401

ROOT = os.geteuid() == 0
pytestmark = pytest.mark.skipif(not ROOT, reason="kill-preview reads other processes' /proc and loads BPF: needs root")
LOOP = os.path.join(TARGETS, "kp_loop.py")


def saves_until(job, as_of: float, saves: list) -> list:
    """The job's saves completed by ``as_of`` (reads its further lines until one is later)."""
    while not saves or saves[-1][1] <= as_of:
        kind, path, mtime = job.line(timeout=30).split()
        assert kind == "saved"
        saves.append((path, float(mtime)))
    return [s for s in saves if s[1] <= as_of]


@needs_torch
def test_an_earlier_runs_unnumbered_save_is_the_checkpoint_a_restart_may_resume_from(jobs, tmp_path, capsys):
    ck = tmp_path / "ckpts"
    subprocess.run([sys.executable, LOOP, "earlier", str(ck)], check=True, cwd=str(tmp_path), timeout=120)
    aged = time.time() - 3600
    for i, name in enumerate(("model.pt", "optimizer.pt")):
        # an hour old, as a copy keeping the times leaves it (ctime: now); atime after mtime: no read shows
        os.utime(ck / name, (aged + i + 30, aged + i))
    job = jobs.start([LOOP, "train", "--ckpt-dir", "new", "--every-s", "600", "--log", "train.log"],
                     cwd=str(tmp_path), ready_arg=None)
    assert job.line(timeout=60) == "training"
    doc = preview_json(capsys, job.pid, 1.2)
    loss = doc["loss"]
    last = loss["last_checkpoint"]
    assert last is not None, loss["summary"]
    assert last["path"] == str(ck / "optimizer.pt") and last["companions"] == [str(ck / "model.pt")]
    # completed an hour ago (its mtime), not when its ctime was last changed
    assert abs(last["completed_at_ns"] / 1e9 - (aged + 1)) < 0.01, last["completed_at"]
    assert "later metadata change" in last["completed_at_basis"]
    assert last["predates_process"] is True and last["resume_uncertain"] is True
    assert loss["since"] == "start" and "No checkpoint found" not in loss["summary"]
    assert "can resume from optimizer.pt + model.pt" in loss["summary"]
    age = doc["as_of_ns"] / 1e9 - psutil.Process(job.pid).create_time()
    assert abs(loss["since_checkpoint_s"] - age) <= 0.5
    # its step counter started at 0: the steps redone are this process's, not counted from a checkpoint step
    # (known once the watch measured a step rate)
    if loss["step_rate"]:
        step = loss["progress"]["step"]
        assert abs(loss["steps_since_checkpoint"] - step) <= 0.2 * step + 20, (loss["steps_since_checkpoint"], step)


@needs_torch
def test_checkpoints_outside_the_cwd_named_only_in_the_log(jobs, tmp_path, capsys, monkeypatch):
    store = tmp_path / "store" / "ckpts"
    (tmp_path / "work").mkdir()
    monkeypatch.setenv("KP_CKPT_DIR", str(store))     # not on the command line, not under the cwd
    job = jobs.start([LOOP, "train", "--every-s", "1.5", "--log", "train.log"], cwd=str(tmp_path / "work"),
                     ready_arg=None)
    assert job.line(timeout=60) == "training"
    saves: list = []
    while len(saves) < 2:
        kind, path, mtime = job.line(timeout=30).split()
        saves.append((path, float(mtime)))
    doc = preview_json(capsys, job.pid, 0.8)
    as_of = doc["as_of_ns"] / 1e9
    done = saves_until(job, as_of, saves)
    loss = doc["loss"]
    assert str(store) in doc["observation"]["watched_dirs"]
    last = loss["last_checkpoint"]
    assert last is not None and last["path"] == done[-1][0], (loss["summary"], done)
    assert loss["since"] == "checkpoint" and last["predates_process"] is False
    assert abs(loss["since_checkpoint_s"] - (as_of - done[-1][1])) <= 0.05
    gaps = [b[1] - a[1] for a, b in zip(done, done[1:])]
    assert abs(loss["checkpoint_cadence_s"] - statistics.median(gaps[-10:])) <= 0.3, (loss["checkpoint_cadence_s"],
                                                                                      gaps)


@needs_torch
@pytest.mark.parametrize("where", ["run7_epoch3/ckpts", "run7_epoch3"])
def test_a_run_directory_with_a_numbered_name_is_a_place_not_a_checkpoint(jobs, tmp_path, capsys, where):
    """Its checkpoints in a subdirectory, or in it beside the log the job writes."""
    run = tmp_path / "run7_epoch3"
    run.mkdir()
    job = jobs.start([LOOP, "train", "--ckpt-dir", where, "--every-s", "1.5",
                      "--log", "run7_epoch3/train.log"], cwd=str(tmp_path), ready_arg=None)
    assert job.line(timeout=60) == "training"
    saves: list = []
    while len(saves) < 2:
        kind, path, mtime = job.line(timeout=30).split()
        saves.append((str(tmp_path / path), float(mtime)))
    doc = preview_json(capsys, job.pid, 0.8)
    as_of = doc["as_of_ns"] / 1e9
    done = [(str(tmp_path / p) if not p.startswith("/") else p, t) for p, t in saves_until(job, as_of, saves)]
    loss = doc["loss"]
    assert not [p for p in loss["partial_files"] if p["kind"] == "directory"], loss["partial_files"]
    assert loss["last_checkpoint"] is not None and loss["last_checkpoint"]["path"] == done[-1][0], loss["summary"]
    assert loss["since"] == "checkpoint" and abs(loss["since_checkpoint_s"] - (as_of - done[-1][1])) <= 0.05
    assert doc["loss"]["progress"]["epoch"] is None      # "epoch3" in a file's path is no epoch counter
    assert loss["next_checkpoint_name"] is None or loss["next_checkpoint_name"].startswith(str(run))
    if not loss["partial_files"]:     # a save can be in flight at the last sample (torch.save writes in place)
        assert doc["safe_to_kill"]["verdict"] != "unsafe", doc["safe_to_kill"]


@needs_torch
def test_a_fresh_run_beside_an_earlier_runs_series_is_not_predicted_by_its_step_numbers(jobs, tmp_path, capsys):
    first = jobs.start([LOOP, "train", "--ckpt-dir", "ckpts", "--every-s", "0.5"], cwd=str(tmp_path),
                       ready_arg=None)
    assert first.line(timeout=60) == "training"
    saved = [first.line(timeout=30).split()[1] for _ in range(6)]
    os.killpg(first.pid, signal.SIGKILL)          # the group this test started
    first.proc.wait(timeout=10)
    top = max(int(os.path.basename(p)[5:-3]) for p in saved)
    # a new run in the same place, counting its steps from 0 again, saving every 10 minutes
    job = jobs.start([LOOP, "train", "--ckpt-dir", "ckpts", "--every-s", "600", "--log", "train.log"],
                     cwd=str(tmp_path), ready_arg=None)
    assert job.line(timeout=60) == "training"
    doc = preview_json(capsys, job.pid, 0.6)
    loss = doc["loss"]
    assert loss["progress"]["step"] < top, (loss["progress"]["step"], top)
    assert loss["since"] == "start" and loss["last_checkpoint"]["path"] == str(tmp_path / "ckpts" / f"ckpt-{top}.pt")
    # the old series' next number (ckpt-TOP+N.pt in some seconds) is not this run's next save
    assert loss["next_checkpoint_name"] is None, loss["basis"]["next_checkpoint_name"]
    assert "below the checkpoint's step" in loss["basis"]["next_checkpoint_name"]["basis"]
    assert loss["next_checkpoint_in_s"] is None, loss["basis"]["next_checkpoint_in_s"]


@needs_torch
def test_lightning_nested_layout_and_a_job_that_stopped_saving(jobs, tmp_path, capsys, monkeypatch):
    """Lightning's default place (lightning_logs/version_0/checkpoints/, three
    levels under the cwd, named by no argument), and saves that stopped: two
    1 s apart, then none."""
    monkeypatch.setenv("KP_CKPT_DIR", "lightning_logs/version_0/checkpoints")
    job = jobs.start([LOOP, "train", "--every-s", "1", "--max-saves", "2", "--name", "epoch=0-step={step}.ckpt"],
                     cwd=str(tmp_path), ready_arg=None)
    assert job.line(timeout=60) == "training"
    saves = [job.line(timeout=30).split() for _ in range(2)]
    newest = str(tmp_path / saves[-1][1])
    time.sleep(max(0.0, float(saves[-1][2]) + 3.0 - time.time()))     # three cadences without a save
    doc = preview_json(capsys, job.pid, 0.6)
    loss = doc["loss"]
    last = loss["last_checkpoint"]
    assert last is not None and last["path"] == newest, loss["summary"]
    assert last["layout"] == "lightning" and last["step"] == int(newest.rsplit("=", 1)[1][:-5])
    assert loss["since"] == "checkpoint"
    assert abs(loss["since_checkpoint_s"] - (doc["as_of_ns"] / 1e9 - float(saves[-1][2]))) <= 0.05
    assert abs(loss["checkpoint_cadence_s"] - (float(saves[1][2]) - float(saves[0][2]))) <= 0.05
    # overdue by three cadences: no "next checkpoint in 0 s, wait and lose nothing"
    assert loss["next_checkpoint_in_s"] is None, loss["basis"]["next_checkpoint_in_s"]
    assert any("overdue" in n for n in loss["notes"])
    assert not [o for o in doc["recommendation"]["options"] if o["action"] == "wait"], doc["recommendation"]


@needs_torch
def test_a_batch_counter_that_restarts_every_epoch(jobs, tmp_path, capsys):
    """'Epoch 3/50 | batch 40/50': the run is ~5 % done, not 80 %; a save per epoch."""
    job = jobs.start([LOOP, "train", "--ckpt-dir", "checkpoints", "--epoch-steps", "50",
                      "--name", "model_epoch{epoch}.pt", "--log", "train.log"], cwd=str(tmp_path), ready_arg=None)
    assert job.line(timeout=60) == "training"
    for _ in range(2):
        assert job.line(timeout=30).startswith("saved")
    doc = preview_json(capsys, job.pid, 0.6)
    prog = doc["loss"]["progress"]
    # the log's own last progress line, as of the answer
    lines = [x for x in (tmp_path / "train.log").read_text().splitlines() if x.startswith("Epoch")]
    assert prog["step_per_epoch"] is True and prog["epochs"] == 50 and prog["total_steps"] == 50
    epochs_in_log = {int(x.split()[1].split("/")[0]) for x in lines}
    assert prog["epoch"] in epochs_in_log and 1 <= prog["step"] <= 50
    # inside the current epoch's share of the run (a per-run reading of 'batch I/50' gives 20-100 %)
    assert 100.0 * (prog["epoch"] - 1) / 50 <= prog["pct_complete"] <= 100.0 * prog["epoch"] / 50, prog
    assert "of it)" in doc["loss"]["progress_summary"]


@needs_torch
def test_killing_a_dataloader_worker_ends_the_training_job(jobs, tmp_path, capsys):
    """The PID given is one of the DataLoader workers: the cascade is the
    whole job (its main process raises at its next batch), which the kill
    itself then shows."""
    job = jobs.start([os.path.join(TARGETS, "train_ckpt.py"), "--ckpt-dir", "ckpt", "--log", "train.log",
                      "--interval", "2.0"], cwd=str(tmp_path))
    job.line(timeout=60)
    wait_until(lambda: len(psutil.Process(job.pid).children()) == 2, 10, "two DataLoader workers")
    worker = sorted(c.pid for c in psutil.Process(job.pid).children())[0]
    assert psutil.Process(worker).name() == "pt_data_worker"
    doc = preview_json(capsys, worker, 0.4)
    parent = doc["cascade"]["parent"]
    assert parent["pid"] == job.pid and "DataLoader" in parent["effect"] and "job ends" in parent["effect"]
    assert any(f"main process {job.pid}" in n for n in doc["notes"]), doc["notes"]
    # what the tool said, done: a worker of the group this test started, by its pid
    os.kill(worker, signal.SIGKILL)
    assert job.proc.wait(timeout=30) != 0
    assert "DataLoader worker" in (tmp_path / "stderr.0").read_text()


@needs_torch
def test_torchrun_agent_and_a_rank_without_restarts(jobs, tmp_path, capsys):
    """A real torchrun job of two gloo ranks and no restart allowed: the
    agent's preview lists both ranks as the children it leaves; a rank's says
    the whole job ends (no restart left), which killing that rank then shows."""
    job = jobs.start(["-m", "torch.distributed.run", "--nproc_per_node", "2", "--max-restarts", "0",
                      os.path.join(TARGETS, "kp_torchrun.py")], cwd=str(tmp_path), ready_arg=None)
    wait_until(lambda: all((tmp_path / f"ready.{r}").exists() for r in (0, 1)), 90, "both ranks training")
    ranks = [int((tmp_path / f"ready.{r}").read_text()) for r in (0, 1)]
    held = [psutil.Process(r) for r in ranks]       # identity by start time: a reused pid is never signalled
    try:
        doc = preview_json(capsys, job.pid, 0.4)
        assert sorted(c["pid"] for c in doc["cascade"]["children"]) == sorted(ranks)
        # torchrun starts each rank in a session of its own: the agent's group kill would orphan them
        assert all(os.getpgid(r) != job.pid for r in ranks)
        assert "does not end the whole tree" in doc["cascade"]["group_kill"], doc["cascade"]["group_kill"]
        assert doc["signals"]["handles_sigterm"] is True          # the agent forwards SIGTERM to its workers
        doc = preview_json(capsys, ranks[1], 0.4)
        dist = next(p for p in doc["cascade"]["peers"] if p["kind"] == "distributed")
        assert dist["who"] == "rank 1 of 2" and dist["env"]["torchelastic"]["TORCHELASTIC_MAX_RESTARTS"] == "0"
        assert "no restart left" in dist["effect"] and "whole job ends" in dist["effect"], dist["effect"]
        # what it said, done: rank 1 of the group this test started, by its pid
        os.kill(ranks[1], signal.SIGKILL)
        assert job.proc.wait(timeout=60) != 0
        wait_until(lambda: not psutil.pid_exists(ranks[0]) or psutil.Process(ranks[0]).status() == psutil.STATUS_ZOMBIE,
                   30, "rank 0 stopped by the agent")
    finally:
        for p in held:           # torchrun put them in sessions of their own: the fixture's group kill misses them
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
