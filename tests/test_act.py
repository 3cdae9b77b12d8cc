"""The act layer against real processes: stop, suspend/resume, pidfds, signal log.

Every process signalled here was started by the test (its own session, so
teardown kills that process group by id and reaps it; the test process is a
child subreaper meanwhile, so orphaned workers come back to it and are
reaped).  The commands run as real subprocesses (`python -m pyimpact ...`),
with the signal log pointed into the test's tmp dir.

Ground truth comes from the jobs themselves: the training job logs every
step and checkpoint with a timestamp, the slow writer says when its file is
complete, the stubborn job reports each SIGTERM it catches.
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import select
import signal
import statistics
import subprocess
import sys
import time
from typing import List, Optional

import pytest

from pyimpact.act.pidfd import ProcessHandle
from pyimpact.act.signal_log import SignalLog
from pyimpact.act.tree import ProcessTree
from pyimpact.errors import ProcessGone

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TARGETS = os.path.join(HERE, "targets")
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


class Job:
    def __init__(self, proc: subprocess.Popen, ready: int):
        self.proc, self.ready = proc, ready

    @property
    def pid(self) -> int:
        return self.proc.pid

    def line(self, timeout: float = 30.0) -> str:
        buf = b""
        end = time.monotonic() + timeout
        while not buf.endswith(b"\n"):
            r, _, _ = select.select([self.ready], [], [], max(0.0, end - time.monotonic()))
            if not r:
                pytest.fail(f"job {self.pid} said nothing within {timeout} s")
            ch = os.read(self.ready, 1)
            if not ch:
                pytest.fail(f"job {self.pid} exited (rc {self.proc.poll()}) before saying anything")
            buf += ch
        return buf.decode().strip()


class Jobs:
    """Jobs in their own sessions; cleanup kills those groups by id and reaps."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.procs: List[subprocess.Popen] = []
        self.fds: List[int] = []

    def start(self, argv: List[str]) -> Job:
        """``argv`` names the ready pipe's fd as "{fd}"."""
        r, w = os.pipe()
        args = [a.replace("{fd}", str(w)) for a in argv]
        p = subprocess.Popen([sys.executable] + args, cwd=str(self.tmp), pass_fds=(w,), start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=open(self.tmp / f"stderr.{len(self.procs)}", "wb"))
        os.close(w)
        self.procs.append(p)
        self.fds.append(r)
        return Job(p, r)

    def cleanup(self) -> None:
        groups = {p.pid for p in self.procs}
        for pgid in groups:
            try:
                os.killpg(pgid, signal.SIGCONT)
                os.killpg(pgid, signal.SIGKILL)      # only groups this fixture created
            except ProcessLookupError:
                pass
        for p in self.procs:
            p.wait(timeout=10)
        reap_orphans(groups)
        for fd in self.fds:
            os.close(fd)


def reap_orphans(groups, timeout: float = 10.0) -> None:
    """Reap the processes of ``groups`` re-parented to us (we are a subreaper)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            mine = [c for c in _children(os.getpid()) if _pgid(c) in groups]
            if not mine:
                return
            time.sleep(0.02)


def _children(pid: int) -> List[int]:
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def _pgid(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return -1


def descendants(pid: int) -> List[int]:
    out, todo = [], [pid]
    while todo:
        cur = todo.pop(0)
        for c in _children(cur) if os.path.exists(f"/proc/{cur}") else []:
            out.append(c)
            todo.append(c)
    return out


def alive(pid: int, start_ticks: int) -> bool:
    """The process (pid, start time) still runs (a zombie does not count)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[19]) == start_ticks and fields[0] not in (b"Z", b"X")


def ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return int(data[data.rindex(b")") + 2:].split()[19])


def states(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return data[data.rindex(b")") + 2:].split()[0].decode()


@pytest.fixture
def jobs(tmp_path):
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    j = Jobs(tmp_path)
    try:
        yield j
    finally:
        try:
            j.cleanup()
        finally:
            _prctl(PR_SET_CHILD_SUBREAPER, 0)


def pyimpact(tmp_path, *args: str, stdin: Optional[str] = None, timeout: float = 90.0):
    env = dict(os.environ, PYIMPACT_SIGNAL_LOG=str(tmp_path / "signals.jsonl"))
    p = subprocess.run([sys.executable, "-m", "pyimpact", *args], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=timeout, input=stdin if stdin is not None else "")
    return p.returncode, p.stdout, p.stderr


def signal_log(tmp_path) -> List[dict]:
    path = tmp_path / "signals.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def parse_log(path) -> List[tuple]:
    out = []
    for line in open(path):
        parts = line.split()
        step = re.search(r"step[= ](\d+)", line)
        out.append((float(parts[0]), parts[1], int(step.group(1)) if step else -1))
    return out


def report_line(text: str) -> None:
    """Figures for the closing note: appended to $PYIMPACT_ACT_REPORT if set."""
    path = os.environ.get("PYIMPACT_ACT_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(text + "\n")


# --------------------------------------------------------------------------
# pidfds: a reused pid is never signalled
# --------------------------------------------------------------------------

def _spawn_with_pid(jobs: Jobs, want: int) -> Optional[Job]:
    """Start a sleeper that gets pid ``want`` (ns_last_pid; retried: other
    processes fork too)."""
    for _ in range(200):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(want - 1))
        job = jobs.start([os.path.join(TARGETS, "act_jobs.py"), "graceful", "{fd}"])
        if job.pid == want:
            return job
        os.killpg(job.pid, signal.SIGKILL)
        job.proc.wait()
    return None


def test_a_pidfd_never_signals_a_new_process_with_the_old_pid(jobs, tmp_path):
    old = jobs.start([os.path.join(TARGETS, "act_jobs.py"), "stubborn", "{fd}"])
    old.line()
    old_ticks = ticks(old.pid)
    handle = ProcessHandle.open(old.pid, old_ticks)
    tree = ProcessTree(handle)
    os.killpg(old.pid, signal.SIGKILL)      # the test's own job exits...
    old.proc.wait()
    new = _spawn_with_pid(jobs, old.pid)    # ...and a new process gets its pid
    assert new is not None, "could not get the same pid again"
    assert new.line() == "ready"
    assert new.pid == handle.pid and ticks(new.pid) != old_ticks

    with SignalLog(str(tmp_path / "signals.jsonl"), command="test") as log:
        assert handle.exited()
        assert log.send(handle, signal.SIGTERM, "test: stale handle") is False
        tree.kill(log, "test: stale tree")
    time.sleep(0.3)
    assert new.proc.poll() is None, "the new process with the old pid was signalled"
    r, _, _ = select.select([new.ready], [], [], 0)
    assert not r, "the new process received a SIGTERM"
    rec = signal_log(tmp_path)
    assert rec[0]["result"].startswith("not sent") and rec[0]["start_ticks"] == old_ticks
    # identifying by (pid, start time) refuses the newcomer too
    with pytest.raises(ProcessGone):
        ProcessHandle.open(old.pid, old_ticks)
    handle.close()


# --------------------------------------------------------------------------
# suspend / resume of a tree
# --------------------------------------------------------------------------

def test_suspend_then_resume_a_tree_in_order(jobs, tmp_path):
    job = jobs.start([os.path.join(TARGETS, "act_jobs.py"), "tree", "{fd}", "2"])
    assert job.line() == "ready"
    tree = [job.pid] + descendants(job.pid)
    assert len(tree) == 5

    rc, out, err = pyimpact(tmp_path, "suspend", str(job.pid), stdin="n\n")
    assert rc == 8 and "nothing was sent" in err
    assert not signal_log(tmp_path) and all(states(p) != "T" for p in tree)

    rc, out, err = pyimpact(tmp_path, "suspend", str(job.pid), "--yes")
    assert rc == 0, err
    assert "RAM stays held" in out and "5 process(es)" in out
    assert all(states(p) == "T" for p in tree), {p: states(p) for p in tree}
    stops = [r for r in signal_log(tmp_path) if r["signal"] == "SIGSTOP"]
    assert [r["pid"] for r in stops][0] == job.pid            # the parent first
    assert sorted(r["pid"] for r in stops) == sorted(tree)

    rc, out, err = pyimpact(tmp_path, "resume", str(job.pid), "--yes")
    assert rc == 0, err
    assert all(states(p) in ("S", "R") for p in tree), {p: states(p) for p in tree}
    conts = [r for r in signal_log(tmp_path) if r["signal"] == "SIGCONT"]
    assert conts[-1]["pid"] == job.pid                         # the parent last
    assert sorted(r["pid"] for r in conts) == sorted(tree)
    depth = {job.pid: 0, **{c: 1 for c in _children(job.pid)}}
    order = [depth.get(r["pid"], 2) for r in conts]
    assert order == sorted(order, reverse=True)               # deepest first


# --------------------------------------------------------------------------
# stop
# --------------------------------------------------------------------------

def train(jobs: Jobs, *extra: str) -> Job:
    return jobs.start([os.path.join(TARGETS, "train_ckpt.py"), "--ckpt-dir", "ckpt", "--log", "train.log",
                       "--interval", "2.0", "--ready-fd", "{fd}", *extra])


def test_stop_when_checkpoint_lands_right_after_one_and_restart_redoes_little(jobs, tmp_path):
    job = train(jobs)
    job.line()                                      # first checkpoint done: cadence from here on
    rc, out, err = pyimpact(tmp_path, "stop", str(job.pid), "--when", "checkpoint", "--yes", "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert "waiting" in err and "next checkpoint" in err
    log = parse_log(tmp_path / "train.log")
    ckpts = [x for x in log if x[1] == "ckpt"]
    steps = [x for x in log if x[1] == "step"]
    term = [r for r in signal_log(tmp_path) if r["pid"] == job.pid]
    assert [r["signal"] for r in term] == ["SIGTERM"]
    t_sig = term[0]["t_ns"] / 1e9
    last_ckpt = max(c for c in ckpts if c[0] <= t_sig)
    # the stop landed right after a checkpoint, not at a random moment of the cadence
    assert 0 <= t_sig - last_ckpt[0] < 1.0, (t_sig - last_ckpt[0])   # cadence 2 s: half of it at most
    assert not any(c[0] > t_sig for c in ckpts)
    lost_steps = steps[-1][2] - last_ckpt[2]
    o = doc["outcome"]
    assert o["newest_durable_checkpoint"]["path"].endswith(f"checkpoint_{last_ckpt[2]:07d}.pt")
    assert abs(o["lost_s"] - (steps[-1][0] - last_ckpt[0])) < 0.5
    assert o["left_behind"] == []
    assert doc["predicted"]["lost_s"] < 1.0
    # restart from it: the steps redone are exactly the ones since that checkpoint
    restart = jobs.start([os.path.join(TARGETS, "train_ckpt.py"), "--ckpt-dir", "ckpt", "--log", "restart.log",
                          "--resume", "--stop-at-step", str(last_ckpt[2] + 1), "--ready-fd", "{fd}"])
    restart.proc.wait(timeout=60)
    resumed = [x for x in parse_log(tmp_path / "restart.log") if x[1] == "resume"]
    assert resumed and resumed[0][2] == last_ckpt[2]
    report_line(f"stop --when checkpoint: signal {t_sig - last_ckpt[0]:.3f} s after checkpoint step "
                f"{last_ckpt[2]}; predicted loss {doc['predicted']['lost_s']:.2f} s, actual {o['lost_s']:.2f} s "
                f"({lost_steps} steps, redone after restart from step {resumed[0][2]})")


def test_stop_when_safe_waits_for_the_large_write(jobs, tmp_path):
    size, rate = 8 << 20, 1 << 20      # ~7 s of writing after "ready": the stop starts well before the end
    job = jobs.start([os.path.join(TARGETS, "kp_slow_writer.py"), str(tmp_path / "out"), str(size), str(rate),
                      "{fd}"])
    assert job.line() == "ready"
    rc, out, err = pyimpact(tmp_path, "stop", str(job.pid), "--yes", "--no-bpf", "--grace", "5")
    assert rc == 0, err
    assert "ckpt_0003.bin to finish" in err
    f = tmp_path / "out" / "ckpt_0003.bin"
    assert f.stat().st_size == size                   # the write was not cut short
    sent = signal_log(tmp_path)[0]
    assert sent["signal"] == "SIGTERM" and sent["t_ns"] >= f.stat().st_mtime_ns
    assert "no half-written files left behind" in out


def test_stop_a_tree_whose_sigterm_is_not_caught_leaves_no_orphans(jobs, tmp_path):
    job = jobs.start([os.path.join(TARGETS, "act_jobs.py"), "tree", "{fd}", "2"])
    assert job.line() == "ready"
    members = [(p, ticks(p)) for p in [job.pid] + descendants(job.pid)]
    rc, out, err = pyimpact(tmp_path, "stop", str(job.pid), "--when", "now", "--yes", "--no-bpf", "--preview", "0.3", "--grace", "5")
    assert rc == 0, err
    assert "SIGTERM is not caught" in out
    assert not [p for p, t in members if alive(p, t)]
    assert sorted(r["pid"] for r in signal_log(tmp_path)) == sorted(p for p, _ in members)
    assert {r["signal"] for r in signal_log(tmp_path)} == {"SIGTERM"}


@pytest.mark.timeout(180)
def test_stop_graceful_training_job_saves_and_its_workers_go(jobs, tmp_path):
    job = train(jobs, "--sigterm")
    job.line()
    workers = [(p, ticks(p)) for p in descendants(job.pid)]
    assert len(workers) >= 2
    rc, out, err = pyimpact(tmp_path, "stop", str(job.pid), "--when", "now", "--yes", "--no-bpf", "--preview", "0.3", "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert "SIGTERM is caught" in err
    assert not alive(job.pid, ticks(job.pid)) if os.path.exists(f"/proc/{job.pid}") else True
    assert not [p for p, t in workers if alive(p, t)]
    assert "SIGKILL" not in {r["signal"] for r in signal_log(tmp_path)}
    o = doc["outcome"]
    assert o["saved_on_signal"] is True and o["lost_s"] < 2.0
    stop_line = [x for x in parse_log(tmp_path / "train.log") if x[1] == "stop"]
    assert stop_line, "the job's SIGTERM handler did not run"


def test_stop_escalates_to_sigkill_only_with_force(jobs, tmp_path):
    job = jobs.start([os.path.join(TARGETS, "act_jobs.py"), "stubborn", "{fd}"])
    assert job.line() == "ready"
    rc, out, err = pyimpact(tmp_path, "stop", str(job.pid), "--when", "now", "--yes", "--no-bpf", "--preview", "0.3", "--grace", "1")
    assert rc == 8 and "still running" in err and "--force" in err
    assert job.line(5) == "term" and job.proc.poll() is None
    assert [r["signal"] for r in signal_log(tmp_path)] == ["SIGTERM"]
    rc, out, err = pyimpact(tmp_path, "stop", str(job.pid), "--when", "now", "--yes", "--no-bpf", "--preview", "0.3", "--grace", "1",
                            "--force")
    assert rc == 0, err
    assert [r["signal"] for r in signal_log(tmp_path)] == ["SIGTERM", "SIGTERM", "SIGKILL"]
    assert job.proc.wait(5) == -signal.SIGKILL


def test_stop_cancelled_while_waiting_sends_nothing(jobs, tmp_path):
    job = jobs.start([os.path.join(TARGETS, "act_jobs.py"), "stubborn", "{fd}"])
    assert job.line() == "ready"
    env = dict(os.environ, PYIMPACT_SIGNAL_LOG=str(tmp_path / "signals.jsonl"))
    p = subprocess.Popen([sys.executable, "-m", "pyimpact", "stop", str(job.pid), "--when", "checkpoint", "--yes",
                          "--no-bpf"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True)
    try:
        line = p.stderr.readline()
        assert "waiting" in line and "first checkpoint" in line, line
        p.send_signal(signal.SIGINT)                # our own child: Ctrl-C
        _, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130 and "nothing was sent" in err
    assert signal_log(tmp_path) == [] and job.proc.poll() is None


# --------------------------------------------------------------------------
# kill-preview --if: the estimate against the change actually applied
# --------------------------------------------------------------------------

def _count_steps(job: Job, seconds: float) -> float:
    """Steps per second the job reports over ``seconds``."""
    n = 0
    end = time.monotonic() + seconds
    t0 = time.monotonic()
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([job.ready], [], [], left)
        if r:
            n += os.read(job.ready, 65536).count(b"s")
    return n / (time.monotonic() - t0)


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds every thread of the job tree has run (schedstat), so far."""
    total = 0
    for p in [pid] + descendants(pid):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                pass
    return total / 1e9


def _phase(job: Job, seconds: float) -> tuple:
    """(steps per second, cores the job tree used) over ``seconds``."""
    c0, t0 = _tree_cpu_s(job.pid), time.monotonic()
    rate = _count_steps(job, seconds)
    return rate, (_tree_cpu_s(job.pid) - c0) / (time.monotonic() - t0)


def _pin_tree(pid: int, cpus) -> None:
    """Set the CPU affinity of every thread of the test's own job tree."""
    for p in [pid] + descendants(pid):
        for tid in os.listdir(f"/proc/{p}/task"):
            try:
                os.sched_setaffinity(int(tid), cpus)
            except ProcessLookupError:
                pass


@pytest.mark.timeout(180)
def test_if_cpus_estimate_matches_the_applied_change(jobs, tmp_path):
    online = sorted(os.sched_getaffinity(0))
    assert len(online) >= 2, "needs two CPUs to take one away"
    job = jobs.start([os.path.join(TARGETS, "act_cpu_train.py"), "{fd}"])
    assert job.line(60) == "ready"
    # The job runs in its own session, so in its own autogroup when autogroup
    # scheduling is on: a higher autogroup priority keeps other work on a shared
    # test machine from setting its pace (the estimate models that weight too).
    if os.path.exists(f"/proc/{job.pid}/autogroup"):
        with open(f"/proc/{job.pid}/autogroup", "w") as f:
            f.write("-20")
    _count_steps(job, 1.0)                                  # warm up
    pin = online[:1]                                        # 2 busy threads on 1 CPU
    kp = subprocess.Popen([sys.executable, "-m", "pyimpact", "kill-preview", str(job.pid), "--no-bpf", "-d", "2",
                           "--json", "--if", "cpus=" + ",".join(map(str, pin))], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ticks_seen = []                                         # (time, steps) while kill-preview runs
    while kp.poll() is None:
        ticks_seen.append((time.monotonic(), _count_steps(job, 0.2) * 0.2))
    t_end = time.monotonic()
    out, err = kp.communicate()
    assert kp.returncode == 0, err
    est = json.loads(out)["what_if"][0]
    # both threads want a CPU (ran + waited runnable): pinning to one must cost something
    assert est["kind"] == "estimated" and est["now"]["cpu_cores"] + est["now"]["runqueue_wait_cores"] > 1.3, \
        est["now"]
    # Baseline: the step rate while the estimate measured (its window ends just
    # before the JSON is printed) and in free phases between the pinned ones, so
    # a drift of the machine's other load does not decide the comparison.
    lo, hi = t_end - est["window_s"] - 0.4, t_end - 0.2
    during = [n for t, n in ticks_seen if lo <= t <= hi]
    free = [sum(during) / (0.2 * len(during))] if during else []
    free_cpu, pinned, pinned_cpu = [], [], []
    for _ in range(2):
        rate, cores = _phase(job, 1.2)
        free.append(rate)
        free_cpu.append(cores)
        _pin_tree(job.pid, set(pin))
        _count_steps(job, 0.3)                              # let the migration settle
        rate, cores = _phase(job, 1.2)
        pinned.append(rate)
        pinned_cpu.append(cores)
        _pin_tree(job.pid, set(online))
        _count_steps(job, 0.3)
    rate, cores = _phase(job, 1.2)
    free.append(rate)
    free_cpu.append(cores)
    measured = statistics.median(pinned) / statistics.median(free)
    measured_cpu = statistics.median(pinned_cpu) / statistics.median(free_cpu)
    # The estimate models the CPU the job gets; its step rate follows that CPU
    # only while each CPU does as much work per second as before.  Where vCPUs
    # share a physical core on the host (or clock up when fewer are busy), work
    # per CPU-second changes with the number of busy CPUs: measured here, shown.
    per_cpu_speed = (statistics.median(pinned) / statistics.median(pinned_cpu)) / \
        (statistics.median(free) / statistics.median(free_cpu))
    report_line(f"kill-preview --if {est['change']}: estimated CPU x{est['cpu_factor']:.2f}, rate "
                f"x{est['rate_factor']:.2f} ({est['slowdown_pct']:.0f}% slower; job used "
                f"{est['now']['cpu_cores']:.2f} cores); measured CPU x{measured_cpu:.2f}, rate x{measured:.2f} "
                f"(steps/s free {[round(x, 1) for x in free]}, pinned {[round(x, 1) for x in pinned]} on CPUs "
                f"{pin}; cores free {[round(x, 2) for x in free_cpu]}, pinned {[round(x, 2) for x in pinned_cpu]}; "
                f"work per CPU-second pinned/free x{per_cpu_speed:.2f})")
    assert abs(est["cpu_factor"] / measured_cpu - 1) <= 0.15, (est["cpu_factor"], measured_cpu, free_cpu,
                                                                pinned_cpu, est["basis"])
    assert abs(est["rate_factor"] * per_cpu_speed / measured - 1) <= 0.20, (
        est["rate_factor"], measured, per_cpu_speed, free, pinned, est["basis"])
    assert any("work per second" in n for n in est["notes"]), est["notes"]


# --------------------------------------------------------------------------
# the live panel's keys
# --------------------------------------------------------------------------

def test_panel_keys_run_the_act_code(jobs, tmp_path):
    """The key state machine, on real jobs: [G] confirmed stops a job that
    handles SIGTERM; [K] refused sends nothing, confirmed kills the tree."""
    from pyimpact.sessions.panel_keys import PanelKeys
    from pyimpact.sessions.panel import JobWatch

    log_path = str(tmp_path / "signals.jsonl")
    graceful = jobs.start([os.path.join(TARGETS, "act_jobs.py"), "graceful", "{fd}"])
    assert graceful.line() == "ready"
    w = JobWatch(graceful.pid)
    w.observer.sample()
    keys = PanelKeys(w, log_factory=lambda: SignalLog(log_path, command="test"))
    assert "? [y/N]" in keys.press("g")
    assert "stopped with SIGTERM" in keys.press("y"), keys.status
    assert graceful.line(5) == "term" and graceful.proc.wait(5) == 0

    tree = jobs.start([os.path.join(TARGETS, "act_jobs.py"), "tree", "{fd}", "1"])
    assert tree.line() == "ready"
    members = [(p, ticks(p)) for p in [tree.pid] + descendants(tree.pid)]
    w = JobWatch(tree.pid)
    keys = PanelKeys(w, log_factory=lambda: SignalLog(log_path, command="test"))
    keys.press("k")
    assert keys.press("n").startswith("cancelled: nothing sent")
    assert all(alive(p, t) for p, t in members)
    keys.press("K")
    assert keys.press("y").startswith("killed: the tree is gone"), keys.status
    assert not [p for p, t in members if alive(p, t)]
    sent = [(r["pid"], r["signal"]) for r in signal_log(tmp_path)]
    assert sent[0] == (graceful.pid, "SIGTERM") and sent[1] == (tree.pid, "SIGKILL")
    assert sorted(p for p, s in sent[1:]) == sorted(p for p, _ in members)
    keys.press("q")
    assert keys.quit


def test_panel_wait_key_waits_for_the_write_then_stops(jobs, tmp_path):
    """[W] y: the same wait for the safe point as `stop --when safe`."""
    from pyimpact.sessions.panel_keys import PanelKeys
    from pyimpact.sessions.panel import JobWatch

    size = 6 << 20
    job = jobs.start([os.path.join(TARGETS, "kp_slow_writer.py"), str(tmp_path / "out"), str(size), str(2 << 20),
                      "{fd}"])
    assert job.line() == "ready"
    w = JobWatch(job.pid)
    w.observer.sample()
    seen = []
    keys = PanelKeys(w, log_factory=lambda: SignalLog(str(tmp_path / "signals.jsonl"), command="test"),
                     refresh=seen.append)
    keys.press("w")
    assert keys.press("y").startswith("stopped with SIGTERM"), keys.status
    assert any("ckpt_0003.bin to finish" in x for x in seen), seen[:3]
    f = tmp_path / "out" / "ckpt_0003.bin"
    assert f.stat().st_size == size and signal_log(tmp_path)[0]["t_ns"] >= f.stat().st_mtime_ns


@pytest.mark.timeout(120)
def test_live_panel_keys_on_a_terminal_suspend_resume_quit(jobs, tmp_path):
    """`trace -p PID --kill-preview` on a real pseudo-terminal: S y suspends
    the tree, R y resumes it, Q quits."""
    import pty  # noqa: F401 - the terminal below is a real pty pair

    job = jobs.start([os.path.join(TARGETS, "act_jobs.py"), "tree", "{fd}", "1"])
    assert job.line() == "ready"
    members = [job.pid] + descendants(job.pid)
    master, slave = os.openpty()
    env = dict(os.environ, PYIMPACT_SIGNAL_LOG=str(tmp_path / "signals.jsonl"), TERM="xterm", COLUMNS="100")
    p = subprocess.Popen([sys.executable, "-m", "pyimpact", "trace", "-p", str(job.pid), "--kill-preview",
                          "-d", "60"], cwd=REPO, env=env, stdin=slave, stdout=slave, stderr=slave,
                         start_new_session=True)
    os.close(slave)
    screen = b""

    def read_until(needle: bytes, timeout: float = 30.0) -> None:
        nonlocal screen
        end = time.monotonic() + timeout
        while needle not in screen:
            r, _, _ = select.select([master], [], [], max(0.0, end - time.monotonic()))
            if not r:
                pytest.fail(f"never saw {needle!r}: {screen[-1500:]!r}")
            try:
                screen += os.read(master, 65536)
            except OSError:
                pytest.fail(f"the panel ended early: {screen[-1500:]!r}")

    try:
        read_until(b"[W]ait-safe-stop")
        os.write(master, b"s")
        read_until(b"[y/N]")
        os.write(master, b"y")
        read_until(b"suspended")
        assert all(states(q) == "T" for q in members)
        os.write(master, b"r")
        read_until(b"resume pid")
        os.write(master, b"y")
        read_until(b"resumed")
        assert all(states(q) != "T" for q in members)
        os.write(master, b"q")
        end = time.monotonic() + 30
        while p.poll() is None and time.monotonic() < end:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    screen += os.read(master, 65536)
                except OSError:
                    break
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        os.close(master)
    sent = [(r["pid"], r["signal"]) for r in signal_log(tmp_path)]
    assert sent[0] == (job.pid, "SIGSTOP") and sent[-1] == (job.pid, "SIGCONT")
    assert all(alive(q, ticks(q)) for q in members)


def test_refuses_init_and_its_own_shell(tmp_path):
    rc, out, err = pyimpact(tmp_path, "suspend", "1", "--yes")
    assert rc == 2 and "init" in err
    env = dict(os.environ, PYIMPACT_SIGNAL_LOG=str(tmp_path / "signals.jsonl"))
    p = subprocess.run(["bash", "-c", f'"{sys.executable}" -m pyimpact stop $$ --when now --yes --no-bpf; echo "rc=$?"'],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert "rc=2" in p.stdout and "pyimpact's own process or an ancestor" in p.stderr, p.stderr
    assert signal_log(tmp_path) == []
