"""Unit tests of the pure impact analysis: checkpoint evidence, heavy-job
picking, signal masks.  The samples are shaped exactly as the collector
(pyimpact.collect.workfiles.TreeObserver) writes them; each case is one
file-system story the end-to-end tests cannot stage cheaply (a single file
replaced by rename, an in-place rewrite, checkpoints older than the job).
"""
from __future__ import annotations

from pyimpact.analyse.impact.checkpoints import family_key, find_checkpoints
from pyimpact.names import final_name, is_checkpoint_name, is_log_name, is_temp_name
from pyimpact.analyse.impact.jobs import ProcRow, pick_jobs
from pyimpact.analyse.impact.progress import Progress
from pyimpact.analyse.impact.recovery import restart_cost
from pyimpact.analyse.impact.schedule import next_checkpoint
from pyimpact.analyse.impact.signals import read_signals
from pyimpact.snapshot import ProcessSnapshot

S = 1_000_000_000
W = 0o1          # O_WRONLY
T0 = 1_000 * S   # window start


def sample(t, files, wfds=()):
    """files: path -> (size, mtime, ctime, ino); wfds: (pid, fd, path, pos, flags, size)."""
    return {"t_ns": t, "procs": {}, "files": {p: list(v) for p, v in files.items()},
            "wfds": [list(w) for w in wfds]}


def test_names():
    assert is_temp_name("checkpoint_0001.pt.tmp") and is_temp_name("model.ckpt~") and is_temp_name(".x.pt.part")
    assert not is_temp_name("checkpoint_0001.pt")
    assert final_name("checkpoint_0001.pt.tmp") == "checkpoint_0001.pt"
    assert final_name("tmpab12.pt") == "ab12.pt"
    assert is_checkpoint_name("model.safetensors") and is_checkpoint_name("checkpoint-500")
    assert is_checkpoint_name("weights.h5") and not is_checkpoint_name("train.py")
    assert is_log_name("train.log") and is_log_name("events.out.tfevents.123.host")
    assert family_key("/r/ckpt/checkpoint_0000120.pt.tmp") == "/r/ckpt/checkpoint_#.pt"
    assert family_key("/r/out/checkpoint-500/model.safetensors") == "/r/out/checkpoint-#/model.safetensors"
    assert family_key("/r/run3/model.pt") == "/r/run3/model.pt"


def test_files_saved_together_are_one_checkpoint_for_the_cadence():
    """Two shards written together every 30 s: the cadence is 30 s, not 0.01 s."""
    files = {}
    for k, t in enumerate((T0 - 60 * S, T0 - 30 * S)):
        step = f"/r/out/checkpoint-{k}"
        for shard in (1, 2):
            ts = t + shard * S // 100
            files[f"{step}/model-0000{shard}-of-00002.safetensors"] = (100, ts, ts, 10 * k + shard)
    samples = [sample(T0, files), sample(T0 + S, files)]
    ck = find_checkpoints(samples, root_start_ns=T0 - 100 * S, rename_calls={}, fsync_calls={})
    assert ck.family.key == "/r/out/checkpoint-#/model-#-of-#.safetensors"
    assert len(ck.family.completions) == 4 and abs(ck.cadence_s - 30.0) < 0.1


def test_single_file_replaced_by_rename_gives_cadence_and_survivor():
    p, tmp = "/r/latest.pt", "/r/latest.pt.tmp"
    samples = [
        sample(T0, {p: (100, T0 - 2 * S, T0 - 2 * S, 1)}),
        sample(T0 + 1 * S, {p: (100, T0 - 2 * S + 2 * S, T0 + S - S // 2, 2)}),        # replaced: ino 2
        sample(T0 + 2 * S, {p: (100, T0 + 2 * S - S // 2, T0 + 2 * S - S // 2 + 10, 3),  # replaced: ino 3
                            tmp: (40, T0 + 2 * S, T0 + 2 * S, 4)},
               wfds=[(7, 5, tmp, 40, W, 40)]),
    ]
    ck = find_checkpoints(samples, root_start_ns=T0 - 60 * S, rename_calls={7: 2}, fsync_calls={})
    fam = ck.family
    assert fam.key == "/r/latest.pt" and len(fam.completions) == 3
    assert fam.newest.ino == 3 and any("rename" in e for e in fam.evidence)
    assert ck.cadence_s is not None and 1.0 <= ck.cadence_s <= 2.5
    [part] = ck.partial
    assert part.path == tmp and part.temp_and_rename is True and part.survives == p
    assert part.expected_size_bytes == 100 and part.progress_pct == 40
    assert not part.overwrites_previous


def test_in_place_rewrite_destroys_the_previous_checkpoint():
    p = "/r/model.ckpt"
    samples = [
        sample(T0, {p: (1000, T0 - 30 * S, T0 - 30 * S, 9)}),
        sample(T0 + S, {p: (200, T0 + S, T0 + S, 9)}, wfds=[(7, 3, p, 200, W, 200)]),
        sample(T0 + 2 * S, {p: (400, T0 + 2 * S, T0 + 2 * S, 9)}, wfds=[(7, 3, p, 400, W, 400)]),
    ]
    ck = find_checkpoints(samples, root_start_ns=T0 - 60 * S, rename_calls={}, fsync_calls={})
    [part] = ck.partial
    assert part.overwrites_previous and part.temp_and_rename is False and part.survives is None
    assert part.write_rate_bps == 200 and part.expected_size_bytes == 1000 and part.eta_s == 3.0


def test_checkpoints_older_than_the_process_are_not_its_own():
    files = {f"/r/ckpt_{i}.pt": (10, T0 - (100 - i) * S, T0 - (100 - i) * S, i) for i in range(3)}
    samples = [sample(T0, files), sample(T0 + S, files)]
    ck = find_checkpoints(samples, root_start_ns=T0 - 10 * S, rename_calls={}, fsync_calls={})
    # a numbered series older than the process: the history a resumed job restarts from
    assert ck.family is not None and ck.family.earlier_run and ck.family.newest.path == "/r/ckpt_2.pt"
    assert ck.partial == [] and ck.family.score == 0
    assert abs(ck.cadence_s - 1.0) < 1e-6 and ck.figures.cadence_steps == 1
    # one unnumbered file older than the process (pretrained weights?): not a checkpoint of the job
    one = {"/r/model.pt": (10, T0 - 100 * S, T0 - 100 * S, 1)}
    ck = find_checkpoints([sample(T0, one), sample(T0 + S, one)], root_start_ns=T0 - 10 * S,
                          rename_calls={}, fsync_calls={})
    assert ck.family is None


def test_logs_and_appends_are_never_half_written_checkpoints():
    log, big = "/r/train.log", "/r/data.out"
    samples = [sample(T0 + i * S, {}, wfds=[(7, 3, log, 5 << 20, W, 5 << 20),
                                            (7, 4, "/r/blob", 9 << 20, W | 0o2000, 9 << 20),
                                            (7, 1, big, 10, W, 10)]) for i in range(2)]
    ck = find_checkpoints(samples, root_start_ns=T0 - S, rename_calls={}, fsync_calls={})
    assert ck.partial == []


def test_pick_jobs_groups_workers_and_launchers_and_skips_the_caller():
    rows = {
        1: ProcRow(1, 0, "init", 9e3, 0.0, 10 << 20, ["/sbin/init"]),
        10: ProcRow(10, 1, "bash", 9e3, 0.0, 5 << 20, ["bash"]),
        20: ProcRow(20, 10, "torchrun", 600, 0.01, 80 << 20, ["torchrun", "--nproc-per-node=2", "train.py"]),
        21: ProcRow(21, 20, "python", 590, 0.9, 2 << 30, ["python", "train.py"], gpu_bytes=10 << 30),
        22: ProcRow(22, 20, "python", 590, 0.9, 2 << 30, ["python", "train.py"], gpu_bytes=10 << 30),
        23: ProcRow(23, 21, "pt_data_worker", 580, 0.4, 1 << 29, ["python", "train.py"]),
        30: ProcRow(30, 10, "python", 100, 0.3, 50 << 20, ["python", "-m", "pytest"]),   # the caller
        31: ProcRow(31, 30, "python", 50, 1.0, 10 << 20, ["python", "busy.py"]),
        32: ProcRow(32, 10, "python", 2, 1.0, 10 << 20, ["python", "new.py"]),          # too young
        40: ProcRow(40, 2, "kworker", 9e3, 1.0, 0, [], kernel_thread=True),
        50: ProcRow(50, 10, "python", 900, 0.0, 100 << 20, ["python", "idle_gpu.py"], gpu_bytes=1 << 30),
    }
    jobs = pick_jobs(rows, exclude={30})
    assert [j.root for j in jobs] == [20, 50, 31]
    launcher = jobs[0]
    assert sorted(launcher.pids) == [20, 21, 22, 23] and launcher.gpu_bytes == 20 << 30
    assert jobs[1].why == "holds GPU memory"


def test_signal_masks():
    def mask(*sigs):
        return sum(1 << (s - 1) for s in sigs)

    p = ProcessSnapshot(pid=5, python=True, sig_caught=mask(2, 15), sig_blocked=mask(15),
                        sig_ignored=mask(10), sig_pending=mask(15))
    s = read_signals(p)
    assert s.handles_sigterm and s.graceful_stop_possible and not s.handles_sigusr1
    assert s.detail["SIGTERM"].state == "caught+blocked" and "unblocks" in s.note
    assert s.detail["SIGUSR1"].state == "ignored" and "KeyboardInterrupt" in s.detail["SIGINT"].meaning
    assert s.pending == ["SIGTERM"]
    plain = read_signals(ProcessSnapshot(pid=6))
    assert not plain.handles_sigterm and "same loss as SIGKILL" in plain.detail["SIGTERM"].meaning


def test_files_another_process_writes_are_not_the_jobs():
    """A checkpoint appears in the job's directory while the job wrote less
    than its size: someone else writes it (a neighbour job in the same place)."""
    old = {f"/r/ckpt_{i}.pt": (5000, T0 - (10 - i) * S, T0 - (10 - i) * S, i) for i in range(3)}
    new = dict(old, **{"/r/ckpt_3.pt": (5000, T0 + S // 2, T0 + S // 2, 3)})
    samples = [sample(T0, old), sample(T0 + S, new)]
    ck = find_checkpoints(samples, root_start_ns=T0 - 60 * S, rename_calls={}, fsync_calls={}, wrote_bytes=100)
    assert ck.family is None
    ck = find_checkpoints(samples, root_start_ns=T0 - 60 * S, rename_calls={}, fsync_calls={}, wrote_bytes=6000)
    assert ck.family is not None and ck.family.newest.path == "/r/ckpt_3.pt"


# --------------------------------------------------------------------------
# Framework layouts, series figures and progress from logs (pure rules)
# --------------------------------------------------------------------------

from pyimpact.analyse.impact.ckpt_layouts import dir_layout, file_layout, name_numbers, render_name, tf_indexed  # noqa: E402
from pyimpact.analyse.impact.progress import job_progress, parse_line  # noqa: E402


def test_names_carry_steps_and_epochs():
    assert name_numbers("epoch=3-step=1200.ckpt") == {"step": 1200, "epoch": 3, "number": 1200}
    assert name_numbers("checkpoint-500")["step"] == 500 and name_numbers("global_step500")["step"] == 500
    assert name_numbers("ckpt_0007.pt") == {"step": None, "epoch": None, "number": 7}
    assert name_numbers("deep_5.pt")["epoch"] is None          # "ep" inside a word is no epoch
    assert render_name("ckpt_step0200.pt", 300) == "ckpt_step0300.pt"
    assert render_name("epoch=3-step=1200.ckpt", 1400) == "epoch=3-step=1400.ckpt"
    assert file_layout("epoch=3-step=1200.ckpt") == file_layout("last.ckpt") == "lightning"
    assert file_layout("model.keras") == "keras" and file_layout("ckpt-3.data-00000-of-00001") == "tf-checkpoint"


def test_directory_layouts_are_complete_only_when_their_framework_says_so():
    hf = ["config.json", "model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"]
    assert dir_layout("checkpoint-40", hf, {})[:2] == ("hf-trainer", False)
    assert dir_layout("checkpoint-40", hf + ["trainer_state.json"], {})[:2] == ("hf-trainer", True)
    assert dir_layout("step_30", ["__0_0.distcp"], {})[:2] == ("torch.distributed.checkpoint", False)
    assert dir_layout("step_30", ["__0_0.distcp", ".metadata.tmp"], {})[1] is False
    assert dir_layout("step_30", ["__0_0.distcp", ".metadata"], {})[:2] == ("torch.distributed.checkpoint", True)
    ds = ["mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt"]
    assert dir_layout("global_step200", ds, {"latest": {"text": "global_step100"}})[:2] == ("deepspeed", False)
    assert dir_layout("global_step200", ds, {"latest": {"text": "global_step200\n"}})[:2] == ("deepspeed", True)
    assert dir_layout("global_step200", ds, {})[1] is None
    assert dir_layout("100.orbax-checkpoint-tmp-1733", ["default/x"], {})[:2] == ("orbax", False)
    assert dir_layout("100", ["default/x", "_CHECKPOINT_METADATA"], {})[:2] == ("orbax", True)
    assert dir_layout("100", ["commit_success.txt", "state/x"], {})[:2] == ("orbax", True)
    assert tf_indexed('model_checkpoint_path: "ckpt-3"\nall_model_checkpoint_paths: "ckpt-2"\n'
                      'all_model_checkpoint_paths: "ckpt-3"\n') == ["ckpt-3", "ckpt-2", "ckpt-3"]


def _dirs_sample(t, dirs, wfds=()):
    s = sample(t, {}, wfds)
    s["dirs"] = {p: list(v) for p, v in dirs.items()}
    return s


def test_directory_series_history_and_a_half_written_one():
    """HF checkpoint-N/ directories: complete ones give the cadence in time and
    steps (save_steps from trainer_state.json); the one being written is unsafe
    with the expected size of the others and its own final name."""
    names = ["trainer_state.json", "model.safetensors", "optimizer.pt"]
    done = {f"/r/out/checkpoint-{n}": (1000, T0 - (40 - n) * S, T0 - (40 - n) * S, n, 3, names)
            for n in (10, 20, 30)}
    half = ("/r/out/checkpoint-40", (400, T0 + S, T0 + S, 40, 2, names[1:]))
    meta = {"/r/out/checkpoint-30/trainer_state.json": {"global_step": 30, "save_steps": 10, "max_steps": 100}}
    samples = [_dirs_sample(T0, done),
               _dirs_sample(T0 + S, dict(done, **{half[0]: (200, T0 + S, T0 + S, 40, 1, names[1:2])}),
                            wfds=[(7, 9, half[0] + "/optimizer.pt", 0, W, 0)]),
               _dirs_sample(T0 + 2 * S, dict(done, **{half[0]: half[1]}),
                            wfds=[(7, 9, half[0] + "/optimizer.pt", 200, W, 200)])]
    ck = find_checkpoints(samples, root_start_ns=T0 - 100 * S, rename_calls={}, fsync_calls={}, meta=meta)
    assert ck.family.key == "/r/out/checkpoint-#/" and ck.family.newest.path == "/r/out/checkpoint-30/"
    assert abs(ck.cadence_s - 10.0) < 1e-6 and ck.figures.cadence_steps == 10
    assert "save_steps" in ck.figures.cadence_steps_basis
    [p] = ck.partial
    assert p.kind == "directory" and p.path == "/r/out/checkpoint-40/" and p.layout == "hf-trainer"
    assert p.expected_size_bytes == 1000 and p.write_rate_bps == 200 and p.eta_s == 3.0
    assert p.survives == "/r/out/checkpoint-30/" and "trainer_state.json" in p.complete_when


def test_series_cadence_skips_the_gap_across_a_restart():
    """Saves of an earlier run and of this one: the interval that spans the
    restart (downtime included) is not a cadence."""
    files = {f"/r/ckpt/step-{n}.pt": (50, t, t, n) for n, t in
             ((100, T0 - 300 * S), (200, T0 - 240 * S), (300, T0 - 20 * S), (400, T0 + 40 * S))}
    samples = [sample(T0 + 41 * S, files), sample(T0 + 42 * S, files)]
    ck = find_checkpoints(samples, root_start_ns=T0 - 100 * S, rename_calls={}, fsync_calls={})
    assert abs(ck.cadence_s - 60.0) < 1e-6          # not the 220 s across the restart
    assert ck.figures.cadence_steps == 100 and ck.figures.next_name == "/r/ckpt/step-500.pt"


def test_progress_lines_of_common_formats():
    bar = parse_line("Epoch 3:  45%|████▌     | 45/100 [00:12<00:15,  3.60it/s, v_num=0, train_loss=0.1]")
    assert (bar.fmt, bar.step, bar.total, bar.epoch, bar.rate, bar.elapsed_s) == ("tqdm", 45, 100, 3.0, 3.6, 12.0)
    slow = parse_line(" 10/10 [00:05<00:00,  1.95s/it]")
    assert abs(slow.rate - 1 / 1.95) < 1e-9
    hf = parse_line("{'loss': '3.918', 'grad_norm': '1.12', 'learning_rate': '1.3e-05', 'epoch': '0.37'}")
    assert hf.epoch == 0.37 and hf.step is None
    plain = parse_line("2026-12-01 19:15:02,123 INFO Step [120/1000] epoch 3/40 loss 0.2")
    assert (plain.step, plain.total, plain.epoch, plain.epochs) == (120, 1000, 3.0, 40)
    assert parse_line("iter=77 lr=0.1").step == 77 and parse_line("loaded 3 files") is None


def test_progress_from_the_text_a_job_appends():
    """The counter's advance between samples gives the rate; the tail found at
    the first sample is history (its older lines are not timed by the sample)."""
    tail = "".join(f"\r 20%|##  | {n}/1000 [00:{n // 10:02d}<00:40, 10.0it/s]" for n in range(100, 201, 10))
    samples = [dict(sample(T0, {}), logs={"/r/out.log": [100, T0, tail]}),
               dict(sample(T0 + S, {}), logs={"/r/out.log": [200, T0 + S, "\r 22%|##  | 220/1000 [00:22<00:38]"]}),
               dict(sample(T0 + 2 * S, {}), logs={"/r/out.log": [300, T0 + 2 * S,
                                                                   "\r 24%|##  | 240/1000 [00:24<00:36, 10.0it/s]"]})]
    p = job_progress(samples, {}, root_start_ns=T0 - 30 * S, as_of_ns=T0 + 2 * S)
    assert (p.step, p.total_steps, p.pct_complete) == (240, 1000, 24.0)
    assert p.step_rate_kind == "measured" and abs(p.step_rate - 20.0) < 1e-6     # 200 -> 240 in 2 s
    assert abs(p.eta_s - 760 / 20.0) < 1e-6
    # the bar started 24 s before it was read: the first step, 6 s after the start
    assert p.first_step_ns == T0 + 2 * S - 24 * S


def test_recorded_completions_give_the_cadence_of_a_single_replaced_file():
    """``latest.pt`` replaced by rename every 600 s: the disk holds one version;
    the recorder's rename records give the history."""
    p = "/r/latest.pt"
    files = {p: (100, T0 - 100 * S, T0 - 100 * S, 9)}
    samples = [sample(T0, files), sample(T0 + S, files)]
    rec = [{"t_ns": T0 - (100 + 600 * k) * S, "kind": "rename", "pid": 7, "path": p, "size": 100}
           for k in range(4)]
    ck = find_checkpoints(samples, root_start_ns=T0 - 3000 * S, rename_calls={}, fsync_calls={}, recorded=rec)
    assert ck.family.key == p and len(ck.family.completions) == 4       # the sampled one stands for the newest
    assert abs(ck.cadence_s - 600.0) < 1e-6
    ck = find_checkpoints(samples, root_start_ns=T0 - 3000 * S, rename_calls={}, fsync_calls={})
    assert ck.cadence_s is None and "at least" in ck.cadence_basis


def test_save_lines_in_the_log_give_the_cadence():
    """A job that saves one file in place, logging each save with a timestamp:
    the log's save lines are the history the disk does not keep."""
    from pyimpact.analyse.impact.recovery import recovery
    log = "".join(f"2026-12-01 10:{m:02d}:00,000 INFO Saving model checkpoint to out/model.pt (step {m * 50})\n"
                  f"2026-12-01 10:{m:02d}:30,000 INFO step {m * 50 + 25} loss 0.1\n" for m in range(0, 40, 10))
    samples = [dict(sample(T0, {}), logs={"/r/train.log": [len(log), T0, log]})]
    p = job_progress(samples, {}, root_start_ns=T0 - 10_000 * S, as_of_ns=T0, utc_offset_s=0)
    assert len(p.saves) == 4 and p.step == 1525
    ck = find_checkpoints(samples, root_start_ns=T0 - 10_000 * S, rename_calls={}, fsync_calls={})
    rec = recovery(ck, p, T0 - 10_000 * S, T0, T0 - 10_000 * S, "start", 1.0)
    assert rec["cadence_estimate_s"] == 600.0 and rec["basis"]["cadence_estimate_s"]["kind"] == "measured"


def test_lightning_last_ckpt_does_not_hide_the_numbered_series():
    files = {f"/r/lightning_logs/version_0/checkpoints/epoch={e}-step={100 * (e + 1)}.ckpt":
             (70, T0 + e * 10 * S, T0 + e * 10 * S, e + 1) for e in range(3)}
    last = {"/r/lightning_logs/version_0/checkpoints/last.ckpt": (70, T0 + 20 * S + S // 10, T0 + 20 * S + S // 10, 9)}
    samples = [sample(T0 + 21 * S, dict(files, **last)), sample(T0 + 22 * S, dict(files, **last))]
    ck = find_checkpoints(samples, root_start_ns=T0 - S, rename_calls={}, fsync_calls={})
    assert ck.family.key.endswith("epoch=#-step=#.ckpt")
    assert abs(ck.cadence_s - 10.0) < 1e-6 and ck.figures.cadence_steps == 100
    assert ck.figures.next_name.endswith("epoch=2-step=400.ckpt")     # the step advances; the epoch is not guessed


def test_fsyncs_of_a_file_still_being_written_complete_nothing():
    """A writer that fsync()s every MiB of ckpt_0003.bin while a recorder runs:
    those fsyncs are not completions (the expected size stays the series' own),
    while a version that was closed still counts."""
    mib = 1 << 20
    done = {f"/r/ckpt_000{n}.bin": (12 * mib, T0 - (40 - 10 * n) * S, T0 - (40 - 10 * n) * S, n) for n in (1, 2)}
    cur = "/r/ckpt_0003.bin"
    samples = [sample(T0 + k * S, dict(done, **{cur: ((7 + k) * mib, T0 + k * S, T0 + k * S, 3)}),
                      wfds=[(7, 3, cur, (7 + k) * mib, W, (7 + k) * mib)]) for k in range(2)]
    rec = [{"t_ns": T0 - (7 - m) * S, "kind": "fsync", "pid": 7, "path": cur, "size": m * mib} for m in range(1, 8)]
    rec += [{"t_ns": T0 - 60 * S, "kind": "close", "pid": 7, "path": "/r/ckpt_0000.bin", "size": 12 * mib}]
    ck = find_checkpoints(samples, root_start_ns=T0 - 100 * S, rename_calls={}, fsync_calls={}, recorded=rec)
    assert [p.path for p in ck.partial] == [cur]
    assert ck.partial[0].expected_size_bytes == 12 * mib
    assert sorted(c.path for c in ck.family.completions) == [f"/r/ckpt_000{n}.bin" for n in (0, 1, 2)]


def _next(saves, step, rate, name="/r/ckpt/checkpoint_{:07d}.pt"):
    """The next checkpoint of a job that saved ``saves`` [(t, step)] and is at ``step``
    going ``rate`` steps/s, as of T0 + 1 s (the window's end)."""
    files = {name.format(n): (100, t, t, i + 1) for i, (t, n) in enumerate(saves)}
    samples = [sample(T0, files), sample(T0 + S, files)]
    root = T0 - 1000 * S
    ck = find_checkpoints(samples, root_start_ns=root, rename_calls={}, fsync_calls={})
    prog = Progress(log="/r/train.log", step=step, step_rate=rate, step_rate_kind="measured", step_rate_basis="test")
    anchor = ck.family.newest.completed_ns
    rec = restart_cost(ck, prog, root, T0 + S, anchor, "checkpoint", 1.0)
    return rec, next_checkpoint(ck, rec, prog, "checkpoint", anchor, root, T0 + S)


def test_a_job_saving_by_time_is_predicted_by_time_though_its_files_carry_steps():
    """Saves every 10 s named by the step the clock ran out at: one step interval
    (1350) is no schedule; the step rate now (slowed, say, by the look itself)
    would put the save 13.7 s late."""
    rec, nxt = _next([(T0 - 15 * S, 1183), (T0 - 5 * S, 2533)], step=3000, rate=50.0)
    assert rec.saves_by_steps is False
    assert nxt.in_s == 4.0 and "saves by time" in nxt.basis and "not multiples of their interval 1350" in nxt.basis
    assert nxt.uncertainty_s is None and "single interval" in nxt.uncertainty_basis


def test_an_irregular_cadence_gives_the_next_save_an_uncertainty():
    rec, nxt = _next([(T0 - 40 * S, 800), (T0 - 28 * S, 1900), (T0 - 20 * S, 2650), (T0 - 5 * S, 4100)],
                     step=4500, rate=90.0)
    assert rec.saves_by_steps is False and "unevenly" in nxt.basis
    assert nxt.in_s == 6.0                                  # median interval 12 s
    assert nxt.uncertainty_s == 3.5 and "8.0-15.0 s" in nxt.uncertainty_basis
    assert any("irregular" in n for n in nxt.notes)


def test_a_job_saving_by_steps_is_predicted_by_steps():
    """step-500, step-1000: multiples of their interval, a `step % 500` schedule;
    200 steps to go at 40 steps/s.  At the rate between the saves (500 steps in
    13 s) it would be 5.2 s: that difference is the uncertainty."""
    rec, nxt = _next([(T0 - 25 * S, 500), (T0 - 12 * S, 1000)], step=1300, rate=40.0, name="/r/ckpt/step-{}.pt")
    assert rec.saves_by_steps is True and "multiples of 500" in nxt.basis
    assert nxt.in_s == 5.0 and nxt.uncertainty_s == 0.2
    # resumed at an odd step, then every 500 steps: exactly 500 apart
    rec, nxt = _next([(T0 - 38 * S, 1183), (T0 - 25 * S, 1683), (T0 - 12 * S, 2183)], step=2483, rate=40.0,
                     name="/r/ckpt/step-{}.pt")
    assert rec.saves_by_steps is True and "exactly 500 apart" in nxt.basis and nxt.in_s == 5.0


def test_a_restored_series_keeps_its_cadence_from_the_mtimes():
    """Checkpoints copied back keeping their times (cp -a, shutil.copy2): the
    ctimes are all the copy's moment, the mtimes say when each was written."""
    files = {f"/r/ckpt/step-{i * 100}.pt": (10, T0 - (3 - i) * 600 * S, T0 - 20 * S, i) for i in range(1, 4)}
    samples = [sample(T0, files), sample(T0 + S, files)]
    ck = find_checkpoints(samples, root_start_ns=T0 - 10 * S, rename_calls={}, fsync_calls={})
    assert ck.family.newest.path == "/r/ckpt/step-300.pt" and ck.family.newest.completed_ns == T0
    assert abs(ck.cadence_s - 600.0) < 1e-6
    # a rename into place just after the last write: the ctime is the completion
    one = {"/r/ckpt/last.pt": (10, T0 - 5 * S, T0 - 3 * S, 1)}
    ck = find_checkpoints([sample(T0, one), sample(T0 + S, one)], root_start_ns=T0 - 60 * S,
                          rename_calls={}, fsync_calls={})
    assert ck.family.newest.completed_ns == T0 - 3 * S


def test_a_save_renamed_in_while_the_last_sample_was_read_is_not_complete_as_of_it():
    """The sample's time is taken before its files are read: a rename during
    the read stamps a ctime after it, and the figures are as of that time."""
    a, b = "/r/ckpt/ckpt_0100.pt", "/r/ckpt/ckpt_0200.pt"
    old = {a: (10, T0 - 2 * S, T0 - 2 * S, 1)}
    new = dict(old, **{b: (10, T0 + S - S // 10, T0 + S + S // 100, 2)})   # renamed 10 ms after the stamp
    ck = find_checkpoints([sample(T0, old), sample(T0 + S, new)], root_start_ns=T0 - 60 * S,
                          rename_calls={}, fsync_calls={}, wrote_bytes=100)
    assert ck.family.newest.path == a and any("as-of" in n for n in ck.notes)
    later = dict(new)
    ck = find_checkpoints([sample(T0, old), sample(T0 + S, new), sample(T0 + 2 * S, later)],
                          root_start_ns=T0 - 60 * S, rename_calls={}, fsync_calls={}, wrote_bytes=100)
    assert ck.family.newest.path == b


def test_a_save_far_past_its_cadence_is_not_predicted_at_once():
    """Two saves 1 s apart, then nothing for 8 s: the cadence no longer holds,
    and 'the next checkpoint in 0 s' would promise a kill that loses nothing."""
    files = {"/r/ckpt/ckpt-79.pt": (10, T0 - 9 * S, T0 - 9 * S, 1), "/r/ckpt/ckpt-154.pt": (10, T0 - 8 * S, T0 - 8 * S, 2)}
    samples = [sample(T0, files), sample(T0 + S, files)]
    ck = find_checkpoints(samples, root_start_ns=T0 - 60 * S, rename_calls={}, fsync_calls={})
    assert abs(ck.cadence_s - 1.0) < 1e-6
    rec = restart_cost(ck, Progress(), T0 - 60 * S, T0 + S, ck.family.newest.completed_ns, "checkpoint", 1.0)
    nxt = next_checkpoint(ck, rec, Progress(), "checkpoint", ck.family.newest.completed_ns, T0 - 60 * S, T0 + S)
    assert nxt.in_s is None and "unknown" in nxt.basis and any("overdue" in n for n in nxt.notes)
    # a little late (under half the cadence): it comes any moment
    nxt = next_checkpoint(ck, rec, Progress(), "checkpoint", ck.family.newest.completed_ns, T0 - 60 * S,
                          ck.family.newest.completed_ns + int(1.3 * S))
    assert nxt.in_s == 0.0


def test_a_step_counter_per_epoch_is_not_the_runs_progress():
    """'Epoch 7/50 | batch 90/100': 12.8 % of the run, not 90 %."""
    text = "".join(f"Epoch {e}/50 | batch {b}/100 | loss 0.1\n" for e in (6, 7) for b in range(10, 101, 10)
                   if (e, b) <= (7, 90))
    samples = [{"t_ns": T0, "procs": {}, "files": {}, "wfds": [], "logs": {"/r/train.log": [len(text), T0, text]}}]
    p = job_progress(samples, {}, T0 - 60 * S, T0)
    assert p.epoch == 7 and p.epochs == 50 and p.step == 90 and p.step_per_epoch
    assert abs(p.pct_complete - 100 * (6 + 0.9) / 50) < 0.1
    # a global counter beside the epoch stays the run's progress
    text = "".join(f"epoch {1 + s // 200}/20 step {s}/4000\n" for s in range(20, 701, 20))
    samples = [{"t_ns": T0, "procs": {}, "files": {}, "wfds": [], "logs": {"/r/train.log": [len(text), T0, text]}}]
    p = job_progress(samples, {}, T0 - 60 * S, T0)
    assert not p.step_per_epoch and p.pct_complete == 17.5


def test_a_neighbour_saving_into_the_same_directory_at_another_moment_is_not_the_job():
    """Job A saves runA-*.pt; job B saves runB-*.pt into the same directory a
    second later.  Over the window A wrote more than a checkpoint, but not in
    the half second before B's file appeared."""
    MB = 1 << 20

    def s(i, files, wc):
        x = sample(T0 + i * S // 4, files)
        x["procs"] = {"7": {"wc": wc, "start_ticks": 1}}
        return x
    a1 = {"/r/ck/runA-100.pt": (4 * MB, T0 - 2 * S, T0 - 2 * S, 1)}
    a2 = dict(a1, **{"/r/ck/runA-200.pt": (4 * MB, T0 + S // 4 + 1, T0 + S // 4 + 1, 2)})
    b = dict(a2, **{"/r/ck/runB-150.pt": (4 * MB, T0 + 5 * S // 4 + 1, T0 + 5 * S // 4 + 1, 3)})
    samples = [s(0, a1, 10 * MB), s(1, a2, 14 * MB + 100), s(2, a2, 14 * MB + 200), s(3, a2, 14 * MB + 300),
               s(4, a2, 14 * MB + 400), s(5, b, 14 * MB + 500), s(6, b, 14 * MB + 600)]
    ck = find_checkpoints(samples, root_start_ns=T0 - 60 * S, rename_calls={}, fsync_calls={},
                          wrote_bytes=4 * MB + 600)
    assert ck.family.newest.path == "/r/ck/runA-200.pt", ck.family.evidence


def test_a_cpu_bound_job_starved_by_load_is_still_heavy():
    """On 2 cores with 6 runnable tasks a busy loop gets a third of a core: it
    is runnable at both looks, and that is what makes it heavy, not its rate."""
    rows = {
        10: ProcRow(10, 1, "bash", 9e3, 0.0, 5 << 20, ["bash"]),
        31: ProcRow(31, 10, "python", 50, 0.33, 10 << 20, ["python", "busy.py"], runnable=True),
        32: ProcRow(32, 10, "python", 50, 0.33, 10 << 20, ["python", "io.py"]),        # as busy, but sleeps/waits
    }
    jobs = pick_jobs(rows)
    assert [j.root for j in jobs] == [31] and "runnable" in jobs[0].why


def test_data_shards_beside_the_job_are_not_an_earlier_runs_checkpoints():
    """fineweb_train_000001.bin ... read by the job (atime): its input, not a checkpoint series."""
    files = {f"/r/data/fineweb_train_{i:06d}.bin": (100 << 20, T0 - (50 - i) * S, T0 - (50 - i) * S, i, T0 - S // 2)
             for i in range(1, 9)}
    samples = [sample(T0, files), sample(T0 + S, files)]
    ck = find_checkpoints(samples, root_start_ns=T0 - 10 * S, rename_calls={}, fsync_calls={})
    assert ck.family is None
    # a numbered series named for a model stays an earlier run's
    files = {f"/r/out/model_{i:06d}.bin": v for i, v in enumerate(files.values())}
    ck = find_checkpoints([sample(T0, files), sample(T0 + S, files)], root_start_ns=T0 - 10 * S,
                          rename_calls={}, fsync_calls={})
    assert ck.family is not None and ck.family.earlier_run
