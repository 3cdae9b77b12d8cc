"""Per-thread CPU demand of a process tree and the machine's load: what a `--if` estimate is computed from.

Why per thread, and why schedstat: a change of nice, CPUs or quota acts on
threads competing for CPUs.  /proc/PID/task/TID/schedstat gives, per
thread, the nanoseconds it ran and the nanoseconds it waited runnable on a
run queue (CONFIG_SCHED_INFO; present on distribution kernels even when
/proc/schedstat is not): ran + waited is what the thread wanted.  The state
letters sampled every tick give how often each thread is runnable, and the
syscall file tells a thread inside an ioctl on /dev/nvidia* (waiting on the
GPU driver).  Machine-wide: /proc/stat per-CPU busy time and procs_running
(the run queue length), the online CPUs, and the thread's CPU affinity, nice
and the cgroup CPU quota now.

Collect only: ``ThreadSampler.to_dict()`` goes into the Recording as
``metadata.kill_preview["threads"]`` and pyimpact.analyse.impact.what_if reads it.
"""
from __future__ import annotations

import os
import time
from typing import Dict, List, Optional, Set

import psutil

from ..syscall_table import syscall_number
from ..recording import ThreadSample
from ..units import parse_cpu_list
from . import procfs

CLK = procfs.CLOCK_TICKS
IOCTL = syscall_number("ioctl")
MAX_SAMPLES = 2400
SYSCALL_TIMEOUT_S = 0.2     # a thread's syscall file takes its exec lock: bounded, then skipped
_GONE = (psutil.Error, OSError)


def _read(path: str) -> str:
    """A file outside /proc (sysfs, cgroupfs) as text."""
    with open(path, "rb") as f:
        return f.read().decode("ascii", "replace")


def _proc_text(path: str, pid: int) -> str:
    """A /proc file of ``pid`` as text, through the procfs boundary."""
    return procfs.read(path, pid).decode("ascii", "replace")


def online_cpus() -> List[int]:
    """The online CPUs (from /sys/devices/system/cpu/online)."""
    try:
        return parse_cpu_list(_read("/sys/devices/system/cpu/online").strip())
    except (OSError, ValueError):
        return list(range(os.cpu_count() or 1))


def cgroup_quota_cores(pid: int) -> Optional[dict]:
    """The CPU quota of the cgroup ``pid`` is in, as cores ({cores, path}), or None (no quota)."""
    try:
        lines = _proc_text(f"/proc/{pid}/cgroup", pid).splitlines()
    except _GONE:
        return None
    for line in lines:
        hid, ctrls, path = (line.split(":", 2) + ["", ""])[:3]
        try:
            if hid == "0" and ctrls == "":
                q, period = _read(f"/sys/fs/cgroup{path}/cpu.max").split()[:2]
                if q != "max":
                    return {"cores": int(q) / int(period), "path": path}
            elif "cpu" in ctrls.split(","):
                base = f"/sys/fs/cgroup/{ctrls}{path}"
                if not os.path.isdir(base):
                    base = f"/sys/fs/cgroup/cpu{path}"
                q = int(_read(f"{base}/cpu.cfs_quota_us"))
                if q > 0:
                    return {"cores": q / int(_read(f"{base}/cpu.cfs_period_us")), "path": path}
        except (OSError, ValueError):
            continue
    return None


def _machine() -> dict:
    busy: Dict[str, int] = {}
    running = None
    for line in _proc_text("/proc/stat", 0).splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            f = line.split()
            vals = [int(x) for x in f[1:]]
            idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
            busy[f[0][3:]] = [sum(vals[:8]) - idle, sum(vals[:8])]
        elif line.startswith("procs_running"):
            running = int(line.split()[1])
    return {"cpu": busy, "procs_running": running}


class ThreadSampler:
    """Samples every thread of one tree: schedstat, state, nice, GPU-driver waits."""

    def __init__(self, root: int):
        self.root = root
        self.samples: List[dict] = []
        self.online = online_cpus()
        self.quota = cgroup_quota_cores(root)
        self.affinity: Dict[str, List[int]] = {}
        self.roles: Dict[str, str] = {}
        self.openmp: Dict[str, str] = {}        # pid -> the OpenMP runtime it has mapped
        self._maps_read: set = set()
        self._stuck: Set[str] = set()    # tids whose syscall read did not return in time

    def _openmp(self, pid: int) -> None:
        """Note an OpenMP runtime mapped by ``pid`` (once per process): its pools
        spin-wait, which matters when their threads outnumber the CPUs."""
        if pid in self._maps_read:
            return
        self._maps_read.add(pid)
        try:   # maps takes the target's mmap lock: under a deadline
            maps = procfs.read_bounded(f"/proc/{pid}/maps", pid, procfs.CMDLINE_TIMEOUT_S)
        except _GONE:
            return
        for line in maps.split(b"\n"):
            name = line.rsplit(b"/", 1)[-1]
            if name.startswith((b"libgomp", b"libiomp", b"libomp")):
                self.openmp[str(pid)] = name.strip().decode("ascii", "replace")
                return

    def _nvidia_fds(self, pid: int) -> set:
        out = set()
        try:
            for name in procfs.sys_call(pid, os.listdir, f"/proc/{pid}/fd"):
                try:
                    if procfs.sys_call(pid, os.readlink, f"/proc/{pid}/fd/{name}").startswith("/dev/nvidia"):
                        out.add(int(name))
                except _GONE:
                    continue
        except _GONE:
            pass
        return out

    def sample(self) -> Optional[dict]:
        t_ns = time.time_ns()
        threads: Dict[str, ThreadSample] = {}
        for pid in procfs.tree_of(self.root):
            nv = self._nvidia_fds(pid) if len(self.samples) % 8 == 0 or not self.samples else None
            self._openmp(pid)
            try:
                tids = procfs.sys_call(pid, os.listdir, f"/proc/{pid}/task")
            except _GONE:
                continue
            for tid in tids:
                base = f"/proc/{pid}/task/{tid}"
                try:
                    comm, f = procfs.read_stat(pid, int(tid))
                    run_ns, wait_ns = (int(x) for x in _proc_text(f"{base}/schedstat", int(tid)).split()[:2])
                except (psutil.Error, OSError, ValueError, IndexError):
                    continue
                state = f[0].decode()
                gpu_wait = False
                if state in ("S", "D") and IOCTL is not None and tid not in self._stuck:
                    try:
                        nr, args = procfs.parse_syscall(
                            procfs.read_bounded(f"{base}/syscall", int(tid), SYSCALL_TIMEOUT_S).decode())
                        if nr == IOCTL and args:
                            fd = args[0]
                            gpu_wait = procfs.sys_call(pid, os.readlink, f"/proc/{pid}/fd/{fd}").startswith("/dev/nvidia")
                    except TimeoutError:
                        self._stuck.add(tid)
                    except (psutil.Error, OSError, ValueError, IndexError):
                        pass
                threads[tid] = ThreadSample(pid, run_ns, wait_ns, state, procfs.stat_field(f, 19), gpu_wait, comm)
                if tid not in self.affinity:
                    try:
                        self.affinity[tid] = sorted(os.sched_getaffinity(int(tid)))
                    except OSError:
                        self.affinity[tid] = list(self.online)
            if nv is not None and nv:
                self.roles.setdefault(str(pid), "gpu")
        if not threads:
            return None
        sample = {"t_ns": t_ns, "threads": threads, **_machine()}
        self.samples.append(sample)
        if len(self.samples) > MAX_SAMPLES:
            self.samples = self.samples[:1] + self.samples[2::2]
        return sample

    def to_dict(self) -> dict:
        return {"root": self.root, "online": self.online, "quota": self.quota, "affinity": self.affinity,
                "gpu_pids": [int(p) for p in self.roles], "autogroup": autogroup(self.root), "openmp": dict(self.openmp),
                "samples": self.samples}


def autogroup(pid: int) -> Optional[dict]:
    """{name, nice} of the autogroup (session group) ``pid`` is scheduled in, when
    autogroup scheduling is on (kernel.sched_autogroup_enabled=1); else None."""
    try:
        if _proc_text("/proc/sys/kernel/sched_autogroup_enabled", 0).strip() != "1":
            return None
        name, _, nice = _proc_text(f"/proc/{pid}/autogroup", pid).split()[:3]
        return {"name": name, "nice": int(nice)}
    except (psutil.Error, OSError, ValueError):
        return None
