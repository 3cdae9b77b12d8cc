"""Plumbing shared by the benchmarks: paths, processes we start (and only those
we start are ever signalled), C builds, the machine description, noise
detection, and small statistics.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
C_DIR = Path(__file__).resolve().parent / "c"
VENV_PY = ROOT / ".venv" / "bin" / "python"
PY = str(VENV_PY) if VENV_PY.exists() else sys.executable
PYIMPACT = [PY, "-m", "pyimpact"]
SYSCOUNT = "/usr/sbin/syscount-bpfcc"
NCPU = os.cpu_count() or 1
LOOP_CPU = NCPU - 1          # the measured loop is pinned here
OTHER_CPU = 0                # helpers (the noise monitor) run here when there are two CPUs


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- processes ---------------------------------------------------------------
class Procs:
    """Every process the benchmark starts, each in its own session (so its
    process group id is its pid); cleanup signals those groups only, and reaps."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []
        self.lock = threading.Lock()

    def spawn(self, argv, **kw) -> subprocess.Popen:
        kw.setdefault("start_new_session", True)
        proc = subprocess.Popen([str(a) for a in argv], **kw)
        with self.lock:
            self.procs.append(proc)
        return proc

    def pids(self) -> set:
        with self.lock:
            return {p.pid for p in self.procs if p.poll() is None}

    def finish(self, proc: subprocess.Popen, sig=signal.SIGINT, timeout: float = 30.0):
        """Ask a process we started to stop (sig), wait for it, SIGKILL its group
        if it does not; returns its exit status."""
        if proc.poll() is None and sig is not None:
            try:
                proc.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(proc)
            return proc.wait(timeout=10)

    def kill(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                try:
                    proc.kill()
                except ProcessLookupError:
                    pass

    def cleanup(self) -> None:
        with self.lock:
            procs = list(self.procs)
            self.procs.clear()
        for proc in reversed(procs):
            self.kill(proc)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass


class LineReader(threading.Thread):
    """Reads a pipe line by line in the background, stamping each line with
    time.monotonic(); wait_for() returns the first line containing a needle."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream = stream
        self.lines: list[tuple[float, str]] = []
        self.cond = threading.Condition()
        self.closed = False
        self.start()

    def run(self):
        for raw in iter(self.stream.readline, b"" if "b" in getattr(self.stream, "mode", "") else ""):
            line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            with self.cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait_for(self, needle: str, timeout: float, start: int = 0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for t, line in self.lines[start:]:
                    if needle in line:
                        return t, line
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    return None
                self.cond.wait(min(left, 0.5))

    def text(self) -> str:
        with self.cond:
            return "\n".join(line for _, line in self.lines)


# -- builds ------------------------------------------------------------------
def build_c(name: str, outdir: str, *flags: str, source: str = "") -> str:
    """Compile scripts/bench/c/NAME.c (or `source`) into outdir once."""
    exe = os.path.join(outdir, name)
    if not os.path.exists(exe):
        src = source or str(C_DIR / f"{name}.c")
        subprocess.run(["gcc", "-O2", "-Wall", "-pthread", "-o", exe, src, *flags], check=True)
    return exe


# -- noise -------------------------------------------------------------------
class AttachMonitor(threading.Thread):
    """The machine is shared: other people's tracers attached to the syscall
    tracepoints slow every process down (their untraced-process cost). This
    thread lists BPF attachments every `period` s (bpftool perf) and keeps the
    pids of foreign ones on sys_enter/sys_exit, so each sample can say whether
    it was disturbed."""

    def __init__(self, procs: Procs, period: float = 0.25):
        super().__init__(daemon=True)
        self.procs = procs
        self.period = period
        self.samples: list[tuple[float, frozenset]] = []
        self.available = shutil.which("bpftool") is not None
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()

    def _foreign(self) -> frozenset:
        argv = ["bpftool", "-j", "perf"]
        if NCPU > 1:
            argv = ["taskset", "-c", str(OTHER_CPU)] + argv
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
            entries = json.loads(out or "[]")
        except (subprocess.SubprocessError, ValueError, OSError):
            return frozenset()
        mine = self.procs.pids() | {os.getpid()}
        return frozenset(e["pid"] for e in entries
                         if e.get("pid") not in mine and _is_syscall_tp(e.get("tracepoint", "")))

    def run(self):
        if not self.available:
            return
        while not self.stop_flag.is_set():
            t0 = time.monotonic()
            foreign = self._foreign()
            with self.lock:
                self.samples.append((t0, foreign))
                if len(self.samples) > 100000:
                    del self.samples[:50000]
            self.stop_flag.wait(self.period)

    def foreign_during(self, t0: float, t1: float) -> list:
        """Foreign pids seen attached to syscall tracepoints from just before t0
        to just after t1."""
        seen = set()
        with self.lock:
            for t, pids in self.samples:
                if t0 - 2 * self.period <= t <= t1 + 2 * self.period:
                    seen |= pids
        return sorted(seen)

    def stop(self):
        self.stop_flag.set()


def _is_syscall_tp(name: str) -> bool:
    """raw_syscalls:sys_enter/sys_exit (raw or classic) and syscalls:sys_enter_*/sys_exit_*."""
    return name in ("sys_enter", "sys_exit") or name.startswith(("sys_enter_", "sys_exit_"))


def bpf_prog_stats(pid: int) -> dict:
    """The BPF programs a process has attached (bpftool perf), by name, with
    their kernel counters; recursion_misses counts the runs the kernel skipped
    because another BPF tracing program was already running on that CPU (e.g.
    an interrupt's tracepoint firing while a syscall's program runs): events
    lost without passing through the program, so without being counted by it."""
    try:
        attached = json.loads(subprocess.run(["bpftool", "-j", "perf"], capture_output=True, text=True,
                                             timeout=30).stdout or "[]")
        ids = {e["prog_id"]: e.get("tracepoint", "") for e in attached if e.get("pid") == pid}
        progs = json.loads(subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True,
                                          timeout=30).stdout or "[]")
    except (OSError, ValueError, subprocess.SubprocessError):
        return {}
    out = {}
    for p in progs:
        if p.get("id") in ids:
            out[ids[p["id"]] or p.get("name", "?")] = {"recursion_misses": int(p.get("recursion_misses", 0)),
                                                       "run_cnt": p.get("run_cnt"), "type": p.get("type")}
    return out


def loadavg() -> list:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def cpu_busy() -> dict:
    """Per-CPU busy jiffies (user+nice+system+irq+softirq+steal)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                parts = line.split()
                v = [int(x) for x in parts[1:]]
                out[int(parts[0][3:])] = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    return out


# -- /proc -------------------------------------------------------------------
def status_kb(pid: int, field: str):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


# -- machine -----------------------------------------------------------------
def _cmd(argv) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info() -> dict:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    info = {
        "cpu": model, "cpus": NCPU, "memory_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(), "os": _os_release(),
        "python": platform.python_version(),
        "bcc": _cmd([PY, "-c", "import bcc; print(bcc.__version__)"]) or "?",
        "torch": _cmd([PY, "-c", "import torch; print(torch.__version__)"]) or "not installed",
        "strace": (_cmd(["strace", "-V"]).splitlines() or ["?"])[0],
        "bpfcc_tools": _cmd(["dpkg-query", "-W", "-f", "${Version}", "bpfcc-tools"]) or "?",
        "clocksource": _read("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
        "pid_max": _read("/proc/sys/kernel/pid_max"),
        "pyimpact_commit": _cmd(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "pyimpact_dirty": bool(_cmd(["git", "-C", str(ROOT), "status", "--porcelain", "--", "pyimpact", "probes"])),
        "virtualization": _cmd(["systemd-detect-virt"]) or "?",
    }
    return info


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return "?"


def _os_release() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "?"


# -- statistics --------------------------------------------------------------
def summary(values) -> dict | None:
    """median, min, max, n of the finite values given (None if there are none)."""
    vals = [float(v) for v in values if v is not None and v == v]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}
