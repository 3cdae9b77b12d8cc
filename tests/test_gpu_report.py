"""`pyimpact gpu-report` on a recorded day of GPU use.

The only fake is NVML (no GPU on this machine or in CI): a scripted module
shaped like nvidia-ml-py answers the real GpuReader, which the real recorder
samples into a real history database, attributed to real processes (a
"training" job, an idle "notebook", and a job of another user) through /proc.
Time is what is simulated: 24 hours at one sample every 5 minutes.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from conftest import NOBODY, PYIMPACT
from pyimpact.analyse.history.gpu_usage import Thresholds, analyse_usage, parse_shares
from pyimpact.collect.gpu import GpuReader
from pyimpact.collect.gpu_history import read_usage
from pyimpact.collect.history_db import HistoryReader
from pyimpact.collect.recorder import Recorder, RecorderSettings

GiB = 1 << 30
TICK_S = 300
HOUR = 3600


class DayNVML:
    """Two devices; ``state`` maps device -> {pid: (sm %, bytes)}, set by the test before each sample."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self):
        self.state = {0: {}, 1: {}}
        self.t_us = 0

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlSystemGetDriverVersion(self):
        return "550.54.15"

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return "NVIDIA A100-SXM4-80GB"

    def nvmlDeviceGetUUID(self, h):
        return f"GPU-0000000{h}"

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=min(100, sum(u for u, _ in self.state[h].values())), memory=10)

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(used=sum(m for _, m in self.state[h].values()) + (500 << 20), total=80 * GiB)

    def nvmlDeviceGetTemperature(self, h, kind):
        return 50

    def nvmlDeviceGetPowerUsage(self, h):
        return 250000

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [SimpleNamespace(pid=pid, usedGpuMemory=m) for pid, (_, m) in self.state[h].items()]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h):
        return []

    def nvmlDeviceGetProcessUtilization(self, h, last_us):
        return [SimpleNamespace(pid=pid, timeStamp=self.t_us, smUtil=u, memUtil=u // 2, encUtil=0, decUtil=0)
                for pid, (u, _) in self.state[h].items() if self.t_us > last_us]


def _drop():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    """A history database holding one recorded day, and the pids in it."""
    from conftest import Spawner

    spawn = Spawner()
    tmp = tmp_path_factory.mktemp("gpuday")
    try:
        sleeper = "import time; time.sleep(600)"
        train = spawn([sys.executable, "-c", sleeper, "train.py", "--epochs", "90"], start_new_session=True)
        notebook = spawn([sys.executable, "-c", sleeper, "ipykernel_launcher", "-f", "kernel.json"])
        other = spawn(["sleep", "600"], preexec_fn=_drop)
        time.sleep(0.3)             # let them exec: their command lines are read from /proc
        db = tmp / "h.db"
        nv = DayNVML()
        rec = Recorder(RecorderSettings(db_path=str(db), interval_s=TICK_S), gpu_reader=GpuReader(nv).open())
        end = time.time_ns()
        start = end - 24 * HOUR * 10**9
        rec.run_id = rec.db.execute("INSERT INTO runs(started_ns, pid) VALUES (?, ?)", (start, os.getpid())).lastrowid
        for i in range(24 * HOUR // TICK_S):
            h = i * TICK_S / HOUR
            nv.state = {0: {}, 1: {}}
            if h < 8:
                nv.state[0][train.pid] = (95, 30 * GiB)
            if h >= 2:
                nv.state[0][notebook.pid] = (0, 12 * GiB)
            nv.state[1][other.pid] = (45, 8 * GiB)
            t = start + i * TICK_S * 10**9
            nv.t_us = t // 1000
            rec.sample(t)
        rec.db.flush()
        rec.db.close()
        yield SimpleNamespace(db=str(db), start=start, end=end, train=train.pid, notebook=notebook.pid,
                              other=other.pid, tmp=tmp)
    finally:
        spawn.cleanup()


def _report(day, by="job", shares=""):
    with HistoryReader(day.db) as r:
        data = read_usage(r, day.start, day.end)
    return analyse_usage(data, by=by, thresholds=Thresholds(), shares=parse_shares(shares))


def test_day_per_gpu_and_per_job_figures(day):
    rep = _report(day)
    assert rep.gpu_available and rep.interval_s == TICK_S
    g0, g1 = rep.devices
    assert g0.name == "NVIDIA A100-SXM4-80GB" and g0.mem_total_bytes == 80 * GiB
    assert g0.peak_vram_bytes == 42 * GiB + (500 << 20)
    train = next(u for u in rep.usage if u.device == 0 and "train.py" in u.key)
    assert train.gpu_seconds == pytest.approx(0.95 * 8 * HOUR, rel=0.01)
    assert train.vram_gib_hours == pytest.approx(30 * 8, rel=0.01)
    assert train.peak_vram_bytes == 30 * GiB and train.mean_util_pct == pytest.approx(95)
    nb = next(u for u in rep.usage if u.device == 0 and "ipykernel_launcher" in u.key)
    assert nb.gpu_seconds == 0 and nb.vram_gib_hours == pytest.approx(12 * 22, rel=0.01)
    other = next(u for u in rep.usage if u.device == 1)
    assert other.gpu_seconds == pytest.approx(0.45 * 24 * HOUR, rel=0.01)
    # CPU/RAM per job comes from the same samples, GPU or not
    assert any("train.py" in j.job and j.peak_rss_bytes > 0 for j in rep.jobs_cpu)


def test_day_findings_hog_idle_and_fair_share(day):
    rep = _report(day, shares="user nobody 30% of gpu 1   # batch user\nuser root 90%\n")
    kinds = [(f.kind, f.device) for f in rep.findings]
    hog = [f for f in rep.findings if f.kind == "hog"]
    assert len(hog) == 1 and hog[0].device == 0 and "train.py" in hog[0].who
    assert hog[0].figures["seconds"] == pytest.approx(8 * HOUR, rel=0.02)
    idle = [f for f in rep.findings if f.kind == "idle"]
    assert len(idle) == 1 and "ipykernel_launcher" in idle[0].who
    assert idle[0].figures["seconds"] == pytest.approx(22 * HOUR, rel=0.02)
    fair = [f for f in rep.findings if f.kind == "fair-share"]
    assert [(f.who, f.device) for f in fair] == [("user nobody", 1)]
    assert fair[0].figures["used_pct"] == pytest.approx(45, abs=1)
    assert all(f.recommendation for f in rep.findings)
    assert ("hog", 1) not in kinds        # 45 % is busy, not a hog


def test_by_user_and_by_process(day):
    users = {u.key for u in _report(day, by="user").usage}
    assert users == {"root", "nobody"}
    procs = _report(day, by="process").usage
    assert {u.key.split()[0] for u in procs} == {str(day.train), str(day.notebook), str(day.other)}


def test_cli_text_json_and_html(day):
    shares = day.tmp / "shares.conf"
    shares.write_text("user nobody 30% of gpu 1\n")
    out = day.tmp / "report.html"
    res = subprocess.run(PYIMPACT + ["gpu-report", "--history", day.db, "--last", "25h", "--shares", str(shares),
                                     "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert "GPU 0  NVIDIA A100-SXM4-80GB" in text and "[idle] GPU 0" in text and "[hog] GPU 0" in text
    assert "[fair-share] GPU 1 user nobody" in text and "->" in text
    page = out.read_text()
    assert "<svg" in page and "utilisation per job" in page
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    res = subprocess.run(PYIMPACT + ["gpu-report", "--history", day.db, "--last", "25h", "--by", "user", "--json"],
                         capture_output=True, text=True, timeout=60)
    doc = json.loads(res.stdout)
    assert doc["schema"] == "pyimpact.gpu-report/1" and doc["by"] == "user"
    assert {f["kind"] for f in doc["findings"]} == {"hog", "idle"}
    res = subprocess.run(PYIMPACT + ["gpu-report", "--history", day.db, "--shares", "/dev/null/x"],
                         capture_output=True, text=True)
    assert res.returncode == 7 and res.stderr.startswith("pyimpact: cannot read the share file")
    bad = day.tmp / "bad.conf"
    bad.write_text("alice gets a lot\n")
    res = subprocess.run(PYIMPACT + ["gpu-report", "--history", day.db, "--shares", str(bad)],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "line 1" in res.stderr


def test_without_nvml_one_line_and_cpu_ram_still(tmp_path, spawn):
    job = spawn([sys.executable, "-c", "import time; time.sleep(600)", "cpu-only-job"])
    time.sleep(0.3)
    db = tmp_path / "h.db"
    rec = Recorder(RecorderSettings(db_path=str(db), interval_s=0.2), gpu_reader=GpuReader().open())
    rec.start()
    time.sleep(0.25)
    rec.sample()
    rec.flush()
    rec.db.close()
    res = subprocess.run(PYIMPACT + ["gpu-report", "--history", str(db), "--last", "1h"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("GPU: unavailable")]
    assert len(lines) == 1 and "NVML" in lines[0]
    assert "CPU / RAM per job" in res.stdout
    res = subprocess.run(PYIMPACT + ["gpu-report", "--history", str(db), "--last", "1h", "--json"],
                         capture_output=True, text=True, timeout=60)
    doc = json.loads(res.stdout)
    assert doc["gpu_available"] is False and "NVML" in doc["gpu_reason"]
    assert any(f"cpu-only-job (pid {job.pid})" in j["job"] and j["peak_rss_bytes"] > 0 for j in doc["jobs_cpu"])


def test_no_history_database_is_one_line(tmp_path):
    res = subprocess.run(PYIMPACT + ["gpu-report", "--history", str(tmp_path / "none.db")], capture_output=True,
                         text=True)
    assert res.returncode == 7 and res.stderr.count("\n") == 1 and "no history database" in res.stderr
