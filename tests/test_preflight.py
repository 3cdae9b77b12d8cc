"""Missing pieces of the BPF environment, made really missing for a moment:
one clear line, exit 5, and /proc-only diagnosis still answers.

These tests change the machine (rename the kernel-headers link, unmount
tracefs) and put it back in `finally`; pytest runs them one at a time.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from conftest import PYIMPACT

BUILD = f"/lib/modules/{platform.release()}/build"


def _one_line(res, code, needle):
    err = res.stderr.decode().strip()
    assert res.returncode == code, (res.returncode, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err, err


@pytest.fixture
def sleeper(spawn):
    return spawn([sys.executable, "-c", "import time; time.sleep(60)"])


def test_missing_headers(sleeper):
    os.rename(BUILD, BUILD + ".pyimpact-test")
    try:
        res = subprocess.run(PYIMPACT + ["trace", "-p", str(sleeper.pid), "-d", "1"], capture_output=True, timeout=60)
        _one_line(res, 5, "kernel headers not found")
        assert "setup.sh" in res.stderr.decode()
        diag = subprocess.run(PYIMPACT + ["diagnose", str(sleeper.pid), "--window", "0.3", "--json"],
                              capture_output=True, timeout=60)
    finally:
        os.rename(BUILD + ".pyimpact-test", BUILD)
    assert diag.returncode == 0, diag.stderr
    doc = json.loads(diag.stdout)
    assert doc["bpf"] is False
    assert any("headers" in u for u in doc["unavailable"]), doc["unavailable"]
    assert doc["verdict"]["class"] == "idle"


def _mounted(path: str) -> bool:
    return subprocess.run(["mountpoint", "-q", path]).returncode == 0


def test_missing_tracefs(sleeper):
    had_debugfs = _mounted("/sys/kernel/debug")
    if had_debugfs:
        subprocess.run(["umount", "/sys/kernel/debug"], check=True)
    subprocess.run(["umount", "/sys/kernel/tracing"], check=True)
    try:
        res = subprocess.run(PYIMPACT + ["trace", "-p", str(sleeper.pid), "-d", "1"], capture_output=True, timeout=60)
    finally:
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], check=True)
        if had_debugfs:
            subprocess.run(["mount", "-t", "debugfs", "none", "/sys/kernel/debug"], check=True)
    _one_line(res, 5, "tracefs is not mounted")
