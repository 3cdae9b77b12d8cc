"""Python stacks of a live process, from py-spy (`py-spy dump --nonblocking`).

Why py-spy: it reads the interpreter's frames from outside with
process_vm_readv, and with ``--nonblocking`` it never stops the target, so a
stuck production process is looked at without being disturbed.  The kernel
side (what each thread waits on) comes from /proc and the probes; this module
adds the Python side so "thread fulfil waits on futex 0x... in acquire at
orders.py:42" can be said in one line.

``--locals`` is asked for as well: the ``self`` of ``Thread.join`` and of
``Thread.run`` are the same object, which tells which thread a joining thread
waits for.  Only the names and addresses of locals are kept: their values
(``repr``) can be passwords, keys and tokens, and reach a recording only when
the user asks for them (``diagnose --locals``, ``keep_values``).  When the
locals cannot be read the plain stacks are tried.

Collect only: the result is a plain JSON-able dict stored in the Recording;
nothing here decides anything.  A missing tool is a result too (``error``),
never an exception.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

#: environment variable naming the py-spy binary (tests, unusual installs)
ENV_PYSPY = "PYIMPACT_PYSPY"


def find_pyspy() -> Optional[str]:
    """Path of py-spy: $PYIMPACT_PYSPY, next to our interpreter (a venv), then $PATH."""
    explicit = os.environ.get(ENV_PYSPY)
    if explicit is not None:
        return explicit if explicit and os.access(explicit, os.X_OK) else None
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("py-spy")


def _frames(raw: List[Dict[str, Any]], keep_values: bool = False) -> List[Dict[str, Any]]:
    """Innermost-first frames, each {function, file, line, locals?}; a local is
    {name, addr}, plus its ``repr`` only with ``keep_values``."""
    out = []
    for f in raw or []:
        frame = {"function": str(f.get("name", "?")),
                 "file": str(f.get("short_filename") or f.get("filename") or "?"),
                 "path": str(f.get("filename") or ""),
                 "line": int(f.get("line") or 0)}
        loc = f.get("locals")
        if loc:
            frame["locals"] = [dict({"name": str(v.get("name", "")), "addr": v.get("addr")},
                                    **({"repr": str(v.get("repr", ""))[:200]} if keep_values else {}))
                               for v in loc]
        out.append(frame)
    return out


def _run(argv: List[str], timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout_s, check=False)


def dump(pid: int, *, timeout_s: float = 3.0, with_locals: bool = True, keep_values: bool = False,
         pyspy: Optional[str] = None) -> Dict[str, Any]:
    """Python stacks of every thread of ``pid``.

    Returns ``{"tool": "py-spy", "threads": {tid: {"name", "frames", ...}}}`` or
    ``{"tool": ..., "error": "why not"}`` (tool missing, not a Python process,
    permission denied, timed out).
    """
    exe = pyspy or find_pyspy()
    if not exe:
        return {"tool": "py-spy", "error": "py-spy not found (pip install py-spy)"}
    base = [exe, "dump", "--pid", str(pid), "--nonblocking", "--json"]
    attempts = [base + ["--locals"], base] if with_locals else [base]
    last = ""
    for argv in attempts:
        try:
            res = _run(argv, timeout_s)
        except subprocess.TimeoutExpired:
            return {"tool": "py-spy", "error": f"py-spy did not answer within {timeout_s:g} s"}
        except OSError as err:
            return {"tool": "py-spy", "error": f"py-spy could not run: {err.strerror or err}"}
        if res.returncode == 0:
            try:
                data = json.loads(res.stdout.decode("utf-8", "replace"))
            except ValueError:
                last = "py-spy printed no JSON"
                continue
            threads = {}
            for t in data if isinstance(data, list) else []:
                tid = t.get("os_thread_id")
                if tid is None:
                    continue
                threads[str(int(tid))] = {
                    "name": str(t.get("thread_name") or ""),
                    "owns_gil": bool(t.get("owns_gil")),
                    "active": bool(t.get("active")),
                    "frames": _frames(t.get("frames") or [], keep_values),
                }
            return {"tool": "py-spy", "threads": threads}
        err_lines = [ln for ln in res.stderr.decode("utf-8", "replace").splitlines()
                     if ln.strip() and not ln.startswith(" ")]
        last = err_lines[0] if err_lines else f"py-spy exited with status {res.returncode}"
        if last.startswith("Error: "):
            last = last[len("Error: "):]
    return {"tool": "py-spy", "error": last}


class StackDumps:
    """py-spy dumps of several processes, run in the background while the
    probes observe, so they add nothing to the time to verdict."""

    def __init__(self, pids: List[int], *, timeout_s: float = 3.0, keep_values: bool = False) -> None:
        self.keep_values = keep_values
        self.results: Dict[str, Dict[str, Any]] = {}
        self._threads = []
        self._pids = list(pids)
        exe = find_pyspy()
        for pid in pids:
            t = threading.Thread(target=self._one, args=(pid, exe, timeout_s),
                                 name=f"pyimpact-pyspy-{pid}", daemon=True)
            t.start()
            self._threads.append(t)

    def _one(self, pid: int, exe: Optional[str], timeout_s: float) -> None:
        self.results[str(pid)] = dump(pid, timeout_s=timeout_s, pyspy=exe, keep_values=self.keep_values)

    def wait(self, timeout_s: float = 3.0) -> Dict[str, Dict[str, Any]]:
        """The dumps finished within ``timeout_s`` in all; one still running is
        reported as not finished (its py-spy is left to its own timeout)."""
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        out = dict(self.results)
        for t, pid in zip(self._threads, self._pids):
            if str(pid) not in out:
                out[str(pid)] = {"tool": "py-spy", "error": f"py-spy did not finish within {timeout_s:g} s"}
        return out
