"""kill-preview and `trace --kill-preview` against real jobs, with real probes.

The targets (tests/targets/train_ckpt.py, kp_slow_writer.py, kp_busy.py) are
real processes: a PyTorch CPU training loop with two DataLoader workers and
temp-file-and-rename checkpoints, a process slowly writing a large file in
place, a process that never checkpoints.  Each says "ready" (or one line per
checkpoint) over a pipe; tests wait on that pipe, never on sleeps.

Ground truth comes from outside the tool: the training job logs every step
and checkpoint with a timestamp, and the kill-and-restart test kills the job
itself (SIGKILL by pid: the tool never sends a signal), restarts it from its
checkpoint and measures the work redone.

Every job runs in its own session (process group = its pid); teardown kills
that group by its id and reaps.  While a test runs, the test process is a
child subreaper, so DataLoader workers orphaned by the kill are re-parented
to it and reaped here (pid 1 of a test VM may not reap).
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import List, Optional

import psutil
import pytest

from pyimpact.analyse.impact.report import analyse_impact
from pyimpact.cli import main as cli_main
from pyimpact.collect.gpu import read_gpus
from pyimpact.export import read_recording

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = os.path.join(HERE, "targets")
ROOT = os.geteuid() == 0
PR_SET_CHILD_SUBREAPER = 36

pytestmark = pytest.mark.skipif(not ROOT, reason="kill-preview reads other processes' /proc and loads BPF: needs root")

try:
    import torch  # noqa: F401
    HAVE_TORCH = True
except ImportError:  # pragma: no cover - CI installs torch (make setup --with-torch)
    HAVE_TORCH = False
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed (pip install torch==2.13.0)")


# --------------------------------------------------------------------------
# Fixtures: jobs in their own process groups, killed and reaped by id
# --------------------------------------------------------------------------

def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(option, value, 0, 0, 0)


class Jobs:
    def __init__(self) -> None:
        self.procs: List[subprocess.Popen] = []
        self.fds: List[int] = []

    def start(self, argv: List[str], cwd: str, ready_arg: Optional[str] = "--ready-fd") -> "Job":
        r, w = os.pipe()
        args = list(argv) + ([ready_arg, str(w)] if ready_arg else [str(w)])
        p = subprocess.Popen([sys.executable] + args, cwd=cwd, pass_fds=(w,), start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=open(os.path.join(cwd, f"stderr.{len(self.procs)}"), "wb"))
        os.close(w)
        self.procs.append(p)
        self.fds.append(r)
        return Job(p, r)

    def cleanup(self) -> None:
        groups = {p.pid for p in self.procs}
        for pgid in groups:
            try:
                os.killpg(pgid, signal.SIGKILL)   # only groups this fixture created
            except ProcessLookupError:
                pass
        for p in self.procs:
            p.wait(timeout=10)
        # orphans of these groups that were re-parented to us (we are a subreaper)
        deadline = time.monotonic() + 10
        for child in psutil.Process().children():
            try:
                if os.getpgid(child.pid) in groups:
                    left = max(0.1, deadline - time.monotonic())
                    child.wait(timeout=left)
            except (psutil.Error, ProcessLookupError, ChildProcessError):
                pass
        for fd in self.fds:
            os.close(fd)


@dataclass
class Job:
    proc: subprocess.Popen
    ready: int

    @property
    def pid(self) -> int:
        return self.proc.pid

    def has_line(self) -> bool:
        """A line is waiting on the ready pipe now (the job wrote it while we did not read)."""
        return bool(select.select([self.ready], [], [], 0)[0])

    def line(self, timeout: float = 20.0) -> str:
        """The next line the job wrote to its ready pipe."""
        buf = b""
        end = time.monotonic() + timeout
        while not buf.endswith(b"\n"):
            r, _, _ = select.select([self.ready], [], [], max(0.0, end - time.monotonic()))
            if not r:
                pytest.fail(f"job {self.pid} said nothing within {timeout} s")
            ch = os.read(self.ready, 1)
            if not ch:
                pytest.fail(f"job {self.pid} exited (rc {self.proc.poll()}) before saying ready")
            buf += ch
        return buf.decode().strip()


@pytest.fixture
def jobs():
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    j = Jobs()
    try:
        yield j
    finally:
        try:
            j.cleanup()
        finally:
            _prctl(PR_SET_CHILD_SUBREAPER, 0)


def run_cli(capsys, args: List[str]) -> str:
    capsys.readouterr()
    rc = cli_main(args)
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def preview_json(capsys, pid: int, duration: float) -> dict:
    return json.loads(run_cli(capsys, ["kill-preview", str(pid), "--json", "-d", str(duration)]))


class PreviewProcess:
    """kill-preview --json in its own process; ``doc()`` returns as soon as
    the JSON document is complete on stdout (the tool prints before it
    detaches its probes), ``reap()`` waits for it to exit."""

    def __init__(self, pid: int, duration: float):
        self.proc = subprocess.Popen([sys.executable, "-m", "pyimpact", "kill-preview", str(pid), "--json",
                                      "-d", str(duration)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=os.path.dirname(HERE))

    def doc(self) -> dict:
        text = b""
        for line in self.proc.stdout:
            text += line
            if line.rstrip() == b"}":
                return json.loads(text)
        self.reap()
        pytest.fail(f"kill-preview gave no JSON (rc {self.proc.returncode}): {self.err}")

    def reap(self) -> None:
        try:
            _, err = self.proc.communicate(timeout=30)
            self.err = err.decode()
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise


def report_line(text: str) -> None:
    """Figures for the closing note: appended to $PYIMPACT_KP_REPORT if set."""
    path = os.environ.get("PYIMPACT_KP_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(text + "\n")


@dataclass
class LogLine:
    t: float
    kind: str
    step: int
    path: str


def parse_log(path: str) -> List[LogLine]:
    out = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 2:
                continue
            t, kind = float(parts[0]), parts[1]
            step = re.search(r"step[= ](\d+)", line)
            p = re.search(r"path=(\S+)", line)
            out.append(LogLine(t, kind, int(step.group(1)) if step else -1, p.group(1) if p else ""))
    return out


def wait_until(pred, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def dataloader_workers(pid: int) -> List[int]:
    return sorted(c.pid for c in psutil.Process(pid).children() if c.name() == "pt_data_worker")


def train(jobs: Jobs, tmp_path, *extra: str) -> Job:
    return jobs.start([os.path.join(TARGETS, "train_ckpt.py"), "--ckpt-dir", "ckpt", "--log", "train.log",
                       "--interval", "2.0", *extra], cwd=str(tmp_path))


# --------------------------------------------------------------------------
# The training job: find checkpoints, then kill, restart and compare
# --------------------------------------------------------------------------

@needs_torch
def test_training_job_preview_then_kill_and_restart(jobs, tmp_path, capsys):
    job = train(jobs, tmp_path)
    job.line()
    job.line()                                    # two checkpoints exist: a cadence is visible
    wait_until(lambda: len(dataloader_workers(job.pid)) == 2, 10, "two DataLoader workers")
    workers = dataloader_workers(job.pid)

    # As an operator would: read the answer, then act on it at once (the
    # tool prints before it detaches its probes).  We kill it ourselves: the
    # tool never signals.  If the checkpoint the tool predicts next is
    # imminent, kill right after it instead: the prediction then is "lost =
    # time since the predicted next checkpoint".
    preview = PreviewProcess(job.pid, 0.3)
    try:
        doc = preview.doc()
        loss = doc["loss"]
        as_of = doc["as_of_ns"] / 1e9
        next_at = as_of + (loss["next_checkpoint_in_s"] or 0.0)
        if next_at - time.time() < 0.4:  # too close to kill before it: kill right after it
            while float(job.line(timeout=10).split()[2]) <= as_of:
                pass
            # Under load the answer can come so late that the job has saved
            # again since the predicted checkpoint: its saves are a cadence apart.
            later = 0
            while job.has_line():
                job.line()
                later += 1
            predicted_from = next_at + later * loss["checkpoint_cadence_s"]
            branch = "after the predicted next checkpoint"
        else:
            predicted_from = as_of - loss["since_checkpoint_s"]
            branch = "before the next checkpoint"
        t_kill = time.time()
        os.kill(job.pid, signal.SIGKILL)
        job.proc.wait(timeout=10)
    finally:
        preview.reap()
    assert preview.proc.returncode == 0, preview.err
    predicted = t_kill - predicted_from

    # The tree: the main process and its two DataLoader workers.
    roles = {r["pid"]: r["role"] for r in doc["tree"]}
    assert roles[job.pid] == "main"
    assert sorted(p for p, role in roles.items() if role == "dataloader worker") == workers
    assert sorted(c["pid"] for c in doc["cascade"]["children"]) == workers
    assert doc["signals"]["handles_sigterm"] is False
    assert doc["observation"]["kernel_probes"] is True
    freed = doc["freed"]      # workers share copy-on-write pages with main: PSS sum > USS sum
    assert 0 < freed["ram_uss_bytes"] < freed["ram_pss_bytes"] <= freed["ram_rss_bytes"]

    # The checkpoint, its cadence, and the time since it, against the job's own log.
    ckpts = [x for x in parse_log(str(tmp_path / "train.log")) if x.kind == "ckpt"]
    truth = max((c for c in ckpts if c.t <= as_of), key=lambda c: c.t)
    last = loss["last_checkpoint"]
    assert last is not None, loss
    assert last["path"] == str(tmp_path / truth.path)
    assert loss["since"] == "checkpoint"
    assert abs(loss["since_checkpoint_s"] - (as_of - truth.t)) <= 0.5
    assert abs(loss["checkpoint_cadence_s"] - 2.0) <= 0.35
    assert loss["basis"]["since_checkpoint_s"]["kind"] == "measured"
    assert loss["basis"]["cpu_seconds"]["kind"] in ("measured", "estimated")
    assert loss["cpu_seconds"] is not None and loss["cpu_seconds"] >= 0
    assert doc["safe_to_kill"]["verdict"] in ("safe", "unsafe")  # unsafe only if caught mid-save
    assert loss["next_checkpoint_in_s"] is not None
    # The job saves every 2 s (--interval) and names the file by the step the clock ran
    # out at: the prediction follows the time, and says so.
    assert loss["saves_by_steps"] is False, loss["basis"]["next_checkpoint_in_s"]
    assert "saves by time" in loss["basis"]["next_checkpoint_in_s"]["basis"]
    assert "next_checkpoint_uncertainty_s" in loss and "next_checkpoint_uncertainty_s" in loss["basis"]

    log = parse_log(str(tmp_path / "train.log"))
    done = max((c for c in log if c.kind == "ckpt" and c.t <= t_kill), key=lambda c: c.t)
    last_step = max(c.step for c in log if c.kind == "step")
    actual = t_kill - done.t
    assert abs(predicted - actual) <= 0.5, (branch, predicted, actual)
    if branch == "after the predicted next checkpoint":     # the prediction itself, against the log
        first = min((c for c in log if c.kind == "ckpt" and c.t > as_of), key=lambda c: c.t)
        assert abs(first.t - next_at) <= 0.5, (first.t - as_of, loss["next_checkpoint_in_s"])
    if branch == "before the next checkpoint":
        assert str(tmp_path / done.path) == last["path"]

    # Restart from the checkpoint and redo the lost steps.
    t_restart = time.time()
    restart = jobs.start([os.path.join(TARGETS, "train_ckpt.py"), "--ckpt-dir", "ckpt", "--log", "restart.log",
                          "--resume", "--stop-at-step", str(last_step)], cwd=str(tmp_path))
    assert restart.proc.wait(timeout=60) == 0
    rlog = parse_log(str(tmp_path / "restart.log"))
    resume = next(x for x in rlog if x.kind == "resume")
    stop = next(x for x in rlog if x.kind == "stop")
    assert resume.step == done.step and resume.path == done.path
    redone_steps = last_step - resume.step
    redo_s = stop.t - resume.t
    orig_span = max(c.t for c in log if c.kind == "step") - done.t
    print(f"\nkill-and-restart ({branch}): predicted lost {predicted:.2f} s wall, actual lost "
          f"{actual:.2f} s (checkpoint {done.path} -> kill); {redone_steps} steps redone in {redo_s:.2f} s "
          f"after restart (they had taken {orig_span:.2f} s); CPU lost predicted "
          f"{loss['cpu_seconds']:.2f} s at as-of (+{t_kill - as_of:.2f} s to the kill); "
          f"restart began {t_restart - t_kill:.2f} s after the kill")
    # Restart warm-up: predicted from the first run (its start to its first step,
    # by the log's timestamps), against this restart's start to its first step.
    first_redo = next(x for x in rlog if x.kind == "step")
    warm_actual = first_redo.t - t_restart
    warm_pred = loss["restart_warmup_s"]
    assert loss["basis"]["restart_warmup_s"]["kind"] == "measured", loss["basis"]["restart_warmup_s"]
    # The prediction is this run's own warm-up (checked against its log in
    # test_kill_preview_real); a restart's differs with the page cache and the
    # machine's load, so it is reported, not bounded.
    assert warm_pred > 0 and warm_actual > 0
    print(f"restart warm-up predicted {warm_pred:.2f} s, actual {warm_actual:.2f} s; total lost predicted "
          f"{predicted + warm_pred:.2f} s (work + warm-up), actual {actual + warm_actual:.2f} s; the restart "
          f"was back at step {last_step} {stop.t - t_restart:.2f} s after it began")
    report_line(f"restart warm-up predicted {warm_pred:.3f} s, actual {warm_actual:.3f} s; total lost predicted "
                f"{predicted + warm_pred:.3f} s, actual {actual + warm_actual:.3f} s; back at the kill's step "
                f"{stop.t - t_restart:.3f} s after the restart began")
    report_line(f"kill-and-restart ({branch}): predicted lost {predicted:.3f} s, actual {actual:.3f} s; "
                f"steps redone {redone_steps} in {redo_s:.3f} s (originally {orig_span:.3f} s); "
                f"since_checkpoint_s {loss['since_checkpoint_s']:.3f} vs log {as_of - truth.t:.3f}; "
                f"cadence {loss['checkpoint_cadence_s']:.3f} s; kill {t_kill - as_of:.3f} s after as-of")
    assert redone_steps >= 0
    assert redo_s <= 2.5 * predicted + 3.0      # redo includes the workers' start-up
    assert redo_s >= 0.3 * orig_span - 0.3

    # The cascade said: the orphaned DataLoader workers exit within ~5 s.
    def gone(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True
    wait_until(lambda: all(gone(w) for w in workers), max(0.5, t_kill + 7.0 - time.time()),
               "the orphaned DataLoader workers to exit")


@needs_torch
def test_training_job_with_sigterm_handler_recommends_graceful_stop(jobs, tmp_path, capsys):
    job = train(jobs, tmp_path, "--sigterm")
    job.line()
    doc = preview_json(capsys, job.pid, 0.8)
    sig = doc["signals"]
    assert sig["handles_sigterm"] is True and sig["graceful_stop_possible"] is True
    assert sig["detail"]["SIGTERM"]["state"] == "caught"
    rec = doc["recommendation"]
    if doc["safe_to_kill"]["verdict"] == "unsafe":        # caught mid-save: wait, then SIGTERM
        assert rec["action"] == "wait" and "SIGTERM" in rec["text"]
    else:
        assert rec["action"] == "sigterm", rec
        assert "graceful" in rec["text"]
    assert any(o["action"] == "sigterm" and o["loses_s"] is None for o in rec["options"])
    # The graceful stop the tool recommends works: the handler checkpoints and exits.
    os.kill(job.pid, signal.SIGTERM)
    assert job.proc.wait(timeout=20) == 0
    log = parse_log(str(tmp_path / "train.log"))
    stop = next(x for x in log if x.kind == "stop")
    final = [x for x in log if x.kind == "ckpt"][-1]
    assert final.step == stop.step               # nothing lost


# --------------------------------------------------------------------------
# A large checkpoint half-written; a job with no checkpoint at all
# --------------------------------------------------------------------------

SIZE = 12 << 20
RATE = 1 << 20


def test_slow_writer_is_unsafe_with_the_partial_file(jobs, tmp_path, capsys):
    d = tmp_path / "run"
    job = jobs.start([os.path.join(TARGETS, "kp_slow_writer.py"), str(d), str(SIZE), str(RATE)],
                     cwd=str(tmp_path), ready_arg=None)
    assert job.line() == "ready"
    partial = d / "ckpt_0003.bin"
    saved = tmp_path / "preview.json"
    before = partial.stat().st_size
    doc = json.loads(run_cli(capsys, ["kill-preview", str(job.pid), "--json", "-d", "0.8", "-o", str(saved)]))
    after = partial.stat().st_size
    assert after < SIZE, "the writer finished before the preview: machine too slow for this test"
    v = doc["safe_to_kill"]
    assert v["verdict"] == "unsafe", v
    files = doc["loss"]["partial_files"]
    assert [p["path"] for p in files] == [str(partial)]
    p = files[0]
    assert before <= p["bytes_written"] <= after
    assert p["expected_size_bytes"] == SIZE
    assert p["temp_and_rename"] is False
    assert p["survives"] == str(d / "ckpt_0002.bin")
    assert p["write_rate_bps"] and 0.5 * RATE < p["write_rate_bps"] < 2 * RATE
    eta = (SIZE - p["bytes_written"]) / RATE          # the writer's real pace
    assert v["next_safe_in_s"] is not None and abs(v["next_safe_in_s"] - eta) <= 0.3 * eta + 1.0
    assert str(partial) in v["reason"] and doc["recommendation"]["action"] == "wait"

    # The saved recording gives the same answer when analysed again (pure analysis).
    again = analyse_impact(read_recording(str(saved)), job.pid).to_dict()
    assert json.loads(json.dumps(again, default=str)) == doc

    text = run_cli(capsys, ["kill-preview", str(job.pid), "-d", "0.5"])
    assert "UNSAFE" in text and "HALF-WRITTEN" in text
    assert str(partial) in re.sub(r"\s+", "", text)          # long paths fold, never cut
    assert all(len(line) <= 80 for line in text.splitlines())


def test_no_checkpoint_loses_everything_since_start(jobs, tmp_path, capsys):
    job = jobs.start([os.path.join(TARGETS, "kp_busy.py")], cwd=str(tmp_path), ready_arg=None)
    assert job.line() == "ready"
    doc = preview_json(capsys, job.pid, 0.6)
    loss = doc["loss"]
    p = psutil.Process(job.pid)
    age = doc["as_of_ns"] / 1e9 - p.create_time()
    assert loss["last_checkpoint"] is None and loss["since"] == "start"
    assert abs(loss["since_checkpoint_s"] - age) <= 0.5
    assert loss["basis"]["cpu_seconds"]["kind"] == "measured"
    cpu = p.cpu_times()
    assert 0 < loss["cpu_seconds"] <= cpu.user + cpu.system + 0.05
    assert loss["checkpoint_cadence_s"] is None and loss["partial_files"] == []
    # what would make the unknowns known, instead of null with no reason
    know = {k["figure"]: k["how"] for k in loss["to_know"]}
    assert "checkpoint_cadence_s" in know and "--watch" in know["checkpoint_cadence_s"]
    assert "progress" in know and loss["progress"]["step"] is None
    assert doc["signals"]["handles_sigterm"] is False
    assert doc["cascade"]["children"] == []

    text = run_cli(capsys, ["kill-preview", str(job.pid), "-d", "0.4"])
    assert "No checkpoint found: a kill now loses everything since the process started" in text
    gpu_lines = [line for line in text.splitlines() if line.startswith("GPU:") or "NVML" in line]
    if not read_gpus().available:
        # No GPU here: one line says so, and the rest of the answer is complete.
        assert len(gpu_lines) == 1 and gpu_lines[0].startswith("GPU: unavailable"), gpu_lines
        assert doc["gpu"]["available"] is False and doc["gpu"]["reason"]
        assert doc["loss"]["gpu_seconds"] is None
        assert doc["loss"]["basis"]["gpu_seconds"]["kind"] == "unavailable"
    for section in ("VERDICT", "Work lost if killed now", "Process tree", "Resources freed", "Cascade",
                    "Signals"):
        assert section in text


def test_distributed_peers_and_ports(jobs, tmp_path, capsys):
    """Rank and world size from the allow-listed environment, the TCP peer
    (here: this test process, as the master) and the port a kill releases."""
    import socket

    master = socket.socket()
    master.bind(("127.0.0.1", 0))
    master.listen(1)
    port = master.getsockname()[1]
    env = dict(os.environ, RANK="1", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
               SECRET_TOKEN="never-read")
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, os.path.join(TARGETS, "kp_rank.py"), str(w)], pass_fds=(w,),
                            env=env, start_new_session=True, cwd=str(tmp_path))
    jobs.procs.append(proc)
    jobs.fds.append(r)
    os.close(w)
    conn, _ = master.accept()
    try:
        own_port = Job(proc, r).line()
        doc = preview_json(capsys, proc.pid, 0.3)
    finally:
        conn.close()
        master.close()
    peers = doc["cascade"]["peers"]
    dist = next(p for p in peers if p["kind"] == "distributed")
    assert dist["who"] == "rank 1 of 2" and dist["env"]["master_port"] == str(port)
    assert "stall" in dist["effect"]
    assert "never-read" not in json.dumps(doc)
    tcp = [p for p in peers if p["kind"] == "tcp"]
    assert any(p["who"].startswith(f"127.0.0.1:{port}") and f"local pid {os.getpid()}" in p["who"] for p in tcp)
    assert doc["freed"]["listening_ports"] == [f"127.0.0.1:{own_port}"]
    assert doc["tree"][0]["sockets"]["listening"] == [f"127.0.0.1:{own_port}"]


# --------------------------------------------------------------------------
# The live panel
# --------------------------------------------------------------------------

def _ndjson(text: str) -> List[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_live_panel_for_a_pid_and_for_the_machine(jobs, tmp_path, capsys):
    from pyimpact.sessions.panel import run_kill_preview_panel

    job = jobs.start([os.path.join(TARGETS, "kp_busy.py")], cwd=str(tmp_path), ready_arg=None)
    assert job.line() == "ready"
    capsys.readouterr()
    assert run_kill_preview_panel([job.pid], 1.6, None, True) == 0
    docs = _ndjson(capsys.readouterr().out)
    assert len(docs) >= 2 and docs[-1]["final"] is True
    live = [d for d in docs if not d.get("final")]
    assert live and all(d["jobs"][0]["pid"] == job.pid for d in live)
    assert "If killed now: loses" in live[-1]["jobs"][0]["line"]
    final = docs[-1]["reports"][0]
    assert final["target"]["pid"] == job.pid and final["loss"]["since"] == "start"

    # The same on a terminal-less stdout: the final panel as text.
    assert run_kill_preview_panel([job.pid], 1.2, None, False) == 0
    text = capsys.readouterr().out
    assert f"PID {job.pid}" in text and "If killed now: loses" in text and "no checkpoint found" in text

    # Without -p: the machine view finds the busy job by itself (a tree older
    # than 5 s using a core), one row per job.
    wait_until(lambda: time.time() - psutil.Process(job.pid).create_time() >= 5.5, 10, "the job to be 5 s old")
    assert run_kill_preview_panel([], 1.2, None, True) == 0
    docs = _ndjson(capsys.readouterr().out)
    assert docs[-1]["final"] is True and docs[-1]["mode"] == "machine"
    rows = {j["pid"]: j for j in docs[-1]["jobs"]}
    assert job.pid in rows, rows.keys()
    assert rows[job.pid]["since"] == "start" and rows[job.pid]["verdict"] in ("safe", "costly")
    assert os.getpid() not in rows


def test_trace_kill_preview_ctrl_c_writes_the_recording(jobs, tmp_path):
    """`pyimpact trace -p PID --kill-preview`: Ctrl-C ends the panel with exit
    code 0 and writes -o, which analyses again to the same job."""
    job = jobs.start([os.path.join(TARGETS, "kp_busy.py")], cwd=str(tmp_path), ready_arg=None)
    assert job.line() == "ready"
    out = tmp_path / "panel.json"
    child = subprocess.Popen([sys.executable, "-m", "pyimpact", "trace", "-p", str(job.pid), "--kill-preview",
                              "--json", "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             cwd=os.path.dirname(HERE))
    try:
        first = child.stdout.readline()          # the first live refresh: the loop is running
        assert first.startswith(b"{"), child.stderr.read()
        child.send_signal(signal.SIGINT)
        rest, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err.decode()
    final = json.loads(rest.splitlines()[-1])
    assert final["final"] is True and final["status"].startswith("interrupted")
    assert final["reports"][0]["target"]["pid"] == job.pid
    rec = read_recording(str(out))
    again = analyse_impact(rec, job.pid).to_dict()
    assert again["loss"]["since"] == "start" and again["target"]["pid"] == job.pid
    assert rec.metadata["kill_preview"]["observations"][0]["samples"]


# --------------------------------------------------------------------------
# Exit paths
# --------------------------------------------------------------------------

def test_no_such_process_and_exit_during_the_window(jobs, tmp_path, capsys):
    pid = (1 << 22) + 1                              # above the largest pid_max: never a process
    assert cli_main(["kill-preview", str(pid), "--no-bpf"]) == 3
    assert "no such process" in capsys.readouterr().err
    # A job that ends by itself while it is being observed: one line, exit code 3.
    r, w = os.pipe()
    short = subprocess.Popen([sys.executable, "-c", "import os, sys, select; os.write(int(sys.argv[1]), b'r');"
                              " select.select([sys.stdin], [], [], 5)", str(w)], pass_fds=(w,),
                             stdin=subprocess.PIPE, start_new_session=True)
    jobs.procs.append(short)
    os.close(w)
    try:
        assert os.read(r, 1) == b"r"
        import threading
        threading.Timer(0.3, short.stdin.close).start()   # EOF on stdin: the job ends
        rc = cli_main(["kill-preview", str(short.pid), "--no-bpf", "-d", "2"])
    finally:
        os.close(r)
    assert rc == 3
    assert "exited during the observation" in capsys.readouterr().err
