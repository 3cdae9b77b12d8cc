"""Which process trees on a shared machine are the "heavy jobs" worth a row.

Why a rule and not a top-N by CPU: an operator deciding what to stop wants
*jobs* (a training run with its DataLoader workers, a torchrun launcher with
its ranks), not their individual processes, and wants GPU holders even when
their CPU is idle.  So each heavy process is climbed up to the root of its
job: through parents with the same command line (forked workers), from
known worker kinds (DataLoader, multiprocessing, joblib), and into known
launchers (torchrun, accelerate, deepspeed, mpirun, srun); never into a
shell, a terminal or init.

Pure: works on the process tables the collector read
(pyimpact.collect.jobs), two of them a moment apart for CPU rates, and on
an NVML sample; no I/O, no clock reads.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional

from ...snapshot import breadth_first

#: pyimpact.collect.jobs.ProcTable, read by attribute only (analyse does not import collect).
ProcTable = Any

MIN_AGE_S = 5.0
MIN_CORES = 0.5
MIN_RSS = 1 << 30
MAX_JOBS = 12
NOTABLE_CORES = 0.05          # a process this busy (or holding GPU or this much memory)
NOTABLE_RSS = 64 << 20        # may be part of a heavy job: its argv is worth reading
_LAUNCHERS = ("torchrun", "torch.distributed.run", "torch.distributed.launch", "accelerate",
              "deepspeed", "mpirun", "mpiexec", "srun", "horovodrun")
_WORKER_MARKS = ("multiprocessing.spawn", "--multiprocessing-fork", "multiprocessing.forkserver",
                 "loky", "joblib")


@dataclass
class ProcRow:
    pid: int
    ppid: int
    comm: str
    age_s: float
    cpu_cores: float
    rss_bytes: int
    cmdline: List[str] = field(default_factory=list)
    kernel_thread: bool = False
    gpu_bytes: int = 0
    runnable: bool = False          # state R at both looks: it wants a CPU (it waits for one when it has none)


@dataclass
class Job:
    root: int
    pids: List[int]
    command: str
    cpu_cores: float
    rss_bytes: int
    gpu_bytes: int
    why: str


def proc_rows(before: "ProcTable", after: "ProcTable", span_s: float,
              gpu_sample: Optional[dict]) -> Dict[int, ProcRow]:
    """One row per process of ``after``: its CPU rate (cores), age and GPU memory.

    The rate is the larger of the recent one (``before`` to ``after``, span_s
    apart, same process by start ticks) and the average since start: a busy
    moment or a busy life, as the recent rate is noisy on a loaded machine
    and the average since start is not."""
    gpu_mem: Dict[int, int] = {}
    if gpu_sample and gpu_sample.get("available"):
        for p in gpu_sample.get("processes", []):
            gpu_mem[p["pid"]] = gpu_mem.get(p["pid"], 0) + (p.get("used_memory_bytes") or 1)
    rows: Dict[int, ProcRow] = {}
    for pid, st in after.procs.items():
        b = before.procs.get(pid)
        cores = 0.0
        if b is not None and b.start_ticks == st.start_ticks and span_s > 0:
            cores = max(0.0, (st.cpu_s - b.cpu_s) / span_s)
        age = after.taken_at_s - (after.boot_s + st.start_ticks / after.clk_tck)
        cores = max(cores, st.cpu_s / age if age > 1 else 0.0)
        rows[pid] = ProcRow(pid=pid, ppid=st.ppid, comm=st.comm, age_s=age, cpu_cores=cores,
                            rss_bytes=st.rss_bytes, kernel_thread=st.kernel_thread,
                            gpu_bytes=gpu_mem.get(pid, 0),
                            runnable=st.state == "R" and b is not None and b.state == "R")
    return rows


def notable(r: ProcRow) -> bool:
    """Busy, holding GPU memory, or large enough to count toward a job."""
    return bool(r.gpu_bytes or r.cpu_cores >= NOTABLE_CORES or r.rss_bytes >= NOTABLE_RSS)


def argv_wanted(rows: Dict[int, ProcRow]) -> List[int]:
    """The pids whose command line the job rules need (in table order)."""
    return [r.pid for r in rows.values() if not r.kernel_thread and notable(r)]


def _is_worker(r: ProcRow) -> bool:
    argv = " ".join(r.cmdline)
    return r.comm == "pt_data_worker" or any(m in argv for m in _WORKER_MARKS)


def _is_launcher(r: ProcRow) -> bool:
    return any(m in " ".join(r.cmdline) for m in _LAUNCHERS)


def job_root(pid: int, rows: Dict[int, ProcRow], exclude: Iterable[int] = ()) -> int:
    excluded = set(exclude)
    cur = pid
    for _ in range(64):
        r = rows.get(cur)
        p = rows.get(r.ppid) if r else None
        if r is None or p is None or p.pid in excluded or p.pid <= 1 or p.kernel_thread:
            break
        if (r.cmdline and p.cmdline == r.cmdline) or _is_worker(r) or _is_launcher(p):
            cur = p.pid
            continue
        break
    return cur


def descendants(root: int, rows: Dict[int, ProcRow], stop: Iterable[int] = ()) -> List[int]:
    """root and its descendants, not entering the subtrees of ``stop`` pids
    (other jobs' roots: a job started from a shell or a test runner is its own job)."""
    stops = set(stop) - {root}
    kids: Dict[int, List[int]] = {}
    for r in rows.values():
        kids.setdefault(r.ppid, []).append(r.pid)
    return breadth_first(root, lambda pid: (k for k in sorted(kids.get(pid, [])) if k not in stops))


def pick_jobs(rows: Dict[int, ProcRow], exclude: Iterable[int] = (), min_age_s: float = MIN_AGE_S,
              min_cores: float = MIN_CORES, min_rss: int = MIN_RSS, max_jobs: int = MAX_JOBS) -> List[Job]:
    """The heavy jobs, costliest first (GPU memory, then cores, then memory).

    Thresholds apply to whole jobs (a main process at 0.4 cores with two
    DataLoader workers at 0.3 each is a 1-core job)."""
    excluded = set(exclude)
    roots = set()
    for r in rows.values():
        if r.kernel_thread or r.pid in excluded or r.pid <= 1:
            continue
        if notable(r):
            roots.add(job_root(r.pid, rows, excluded))
    jobs = []
    for root in roots:
        pids = [p for p in descendants(root, rows, stop=roots) if p not in excluded]
        rs = [rows[p] for p in pids if p in rows]
        job = Job(root=root, pids=pids, command=" ".join(rows[root].cmdline) or rows[root].comm,
                  cpu_cores=sum(x.cpu_cores for x in rs), rss_bytes=sum(x.rss_bytes for x in rs),
                  gpu_bytes=sum(x.gpu_bytes for x in rs), why="")
        old = rows[root].age_s >= min_age_s
        if job.gpu_bytes:
            job.why = "holds GPU memory"
        elif old and job.cpu_cores >= min_cores:
            job.why = f"uses {job.cpu_cores:.1f} cores"
        elif old and job.cpu_cores >= min_cores / 2 and any(x.runnable and x.cpu_cores >= NOTABLE_CORES for x in rs):
            # CPU-bound on a machine with more runnable work than cores: it gets less than
            # it would use (its state is R at both looks), so the rate alone undercounts it
            job.why = f"uses {job.cpu_cores:.1f} cores, runnable at both looks (starved by load)"
        elif old and job.rss_bytes >= min_rss:
            job.why = "uses a lot of memory"
        else:
            continue
        jobs.append(job)
    jobs.sort(key=lambda j: (j.gpu_bytes, j.cpu_cores, j.rss_bytes), reverse=True)
    return jobs[:max_jobs]
