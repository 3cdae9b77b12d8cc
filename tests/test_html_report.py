"""`report FILE -o page.html`: a self-contained page, checked in a real
headless browser (Debian's chromium, installed by setup from
tests/apt-packages.txt): it renders (a screenshot with content), shows the
wait-for chain and the resource charts, loads nothing and logs no console
message. Control pages prove the console check can fail.
"""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import zlib

import pytest

from conftest import PYIMPACT, RECORDINGS, ROOT, wait_for_line
from pyimpact.export import read_recording, write_recording

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (tests/apt-packages.txt)")


def _cli(args, timeout=90):
    return subprocess.run(PYIMPACT + list(args), capture_output=True, timeout=timeout,
                          env=dict(os.environ, PYTHONPATH=ROOT))


def browse(page: str, tmp_path, screenshot: str = None):
    """(DOM after load, console lines) of ``page`` in headless Chromium."""
    args = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={tmp_path}/chromium",
            "--enable-logging=stderr", "--v=0", "--window-size=1000,1600", "--no-first-run"]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    res = subprocess.run(args + [f"file://{page}"], capture_output=True, timeout=90)
    console = [line for line in res.stderr.decode(errors="replace").splitlines() if ":CONSOLE" in line]
    return res.stdout.decode(errors="replace"), console


def png_colours(path: str) -> int:
    """How many distinct byte values the decoded image data holds (a blank page: a handful)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    idat, pos = b"", 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(idat)))


def test_console_check_catches_errors(tmp_path):
    """The detector itself: a script error and a blocked load are both seen."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><p>x</p><script>throw new Error('boom')</script></body></html>")
    _, console = browse(str(bad), tmp_path)
    assert any("Uncaught Error: boom" in line for line in console), console
    csp = tmp_path / "csp.html"
    csp.write_text("<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" "
                   "content=\"default-src 'none'\"></head><body><img src=\"http://127.0.0.1:9/x.png\"></body></html>")
    _, console = browse(str(csp), tmp_path)
    assert any("Content Security Policy" in line for line in console), console


def test_report_html_of_a_saved_diagnosis(tmp_path):
    """The chain fixture (a child -> file-lock chain) as a page: chain, verdict, charts."""
    rec = read_recording(os.path.join(RECORDINGS, "diag_rec_chain.parquet"))
    # hostile text in a process's command line must stay text
    pid = int(rec.metadata["targets"][0]["pid"])
    rec.snapshots["start"].processes[pid].cmdline = ["python", "<script>alert(1)</script>", "\x1b[31mred"]
    # no GPU on this machine: NVML samples are the one thing faked here
    t0 = rec.start_ns
    rec.gpu = [{"t_ns": t0 + i * 100_000_000, "available": True, "driver": "test",
                "devices": [], "processes": [{"pid": pid, "device": 0, "used_memory_bytes": (1 + i) << 28,
                                              "sm_util_pct": 20.0 * i}]} for i in range(5)]
    src = tmp_path / "chain.parquet"
    write_recording(rec, str(src))
    page = tmp_path / "chain.html"
    res = _cli(["report", str(src), "-o", str(page)])
    assert res.returncode == 0, res.stderr
    dom, console = browse(str(page), tmp_path)
    assert console == [], console
    assert "blocked" in dom and "waits on child: child pid" in dom and "waits on file-lock" in dom
    assert "<script" not in dom.lower() and "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert "\x1b" not in dom
    charts = re.findall(r'<svg[^>]*aria-label="([^"]+)"', dom)
    assert charts[0] == "wait-for chain"
    assert {"CPU", "Resident memory (RSS)", "GPU memory", "GPU utilisation (SM)"} <= set(charts)
    assert dom.count("<polyline") >= 4
    shot = str(tmp_path / "chain.png")
    browse(str(page), tmp_path, screenshot=shot)
    assert os.path.getsize(shot) > 20_000 and png_colours(shot) > 50


def test_report_html_of_a_kill_preview_recording(spawn, tmp_path):
    """A live kill-preview recording of a job that burns CPU and grows: several samples per curve."""
    job = spawn([sys.executable, "-c", "import time\nprint('ready', flush=True)\nx = []\n"
                 "while True:\n    x.append(bytearray(1 << 20))\n    t = time.time()\n"
                 "    while time.time() - t < 0.05: pass\n    if len(x) > 200: x.clear()\n"],
                stdout=subprocess.PIPE)
    wait_for_line(job.stdout, "ready")
    rec_path = tmp_path / "k.parquet"
    res = _cli(["kill-preview", "--no-bpf", "-d", "1.2", str(job.pid), "-o", str(rec_path)])
    assert res.returncode == 0, res.stderr
    page = tmp_path / "k.html"
    res = _cli(["report", str(rec_path), "-o", str(page)])
    assert res.returncode == 0, res.stderr
    dom, console = browse(str(page), tmp_path)
    assert console == [], console
    cpu_svg = dom.split('aria-label="CPU"')[1].split("</svg>")[0]
    points = re.search(r'<polyline[^>]*points="([^"]+)"', cpu_svg).group(1).split()
    assert len(points) >= 3, points
    assert "kill-preview samples" in dom
