"""`pyimpact demo` (what `make demo` runs): every step succeeds on the bundled
target, and the diagnosis finds the chain the target builds."""
from __future__ import annotations

import json
import os
import subprocess

from conftest import PYIMPACT


def test_demo_end_to_end(tmp_path):
    res = subprocess.run(PYIMPACT + ["demo", "--output-dir", str(tmp_path)], capture_output=True, text=True,
                         timeout=240)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    for step in ("$ sudo pyimpact trace", "$ sudo pyimpact diagnose", "$ sudo pyimpact kill-preview",
                 "$ sudo pyimpact report"):
        assert step in out, step
    # pipeline -> pipe -> worker -> flock -> holder
    assert "Verdict: BLOCKED (file-lock" in out
    assert "queue.lock" in out
    timeline = tmp_path / "pyimpact-demo.json"
    doc = json.loads(timeline.read_text())
    kinds = {e.get("cat") for e in doc["traceEvents"]}
    assert {"fork", "exit", "signal_generate", "futex_wait", "block_io"} <= kinds
    # the target and its children are gone
    pid = int(out.split("demo target started: pid ")[1].split()[0])
    assert not os.path.exists(f"/proc/{pid}")
