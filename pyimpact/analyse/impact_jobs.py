"""Which process trees on a shared machine are the "heavy jobs" worth a row.

Why a rule and not a top-N by CPU: an operator deciding what to stop wants
*jobs* (a training run with its DataLoader workers, a torchrun launcher with
its ranks), not their individual processes, and wants GPU holders even when
their CPU is idle.  So each heavy process is climbed up to the root of its
job: through parents with the same command line (forked workers), from
known worker kinds (DataLoader, multiprocessing, joblib), and into known
launchers (torchrun, accelerate, deepspeed, mpirun, srun); never into a
shell, a terminal or init.

Pure: works on a table of process rows the collector read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List

MIN_AGE_S = 5.0
MIN_CORES = 0.5
MIN_RSS = 1 << 30
MAX_JOBS = 12
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


@dataclass
class Job:
    root: int
    pids: List[int]
    command: str
    cpu_cores: float
    rss_bytes: int
    gpu_bytes: int
    why: str


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
    out, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        if pid in out:
            continue
        out.append(pid)
        todo.extend(k for k in sorted(kids.get(pid, [])) if k not in stops)
    return out


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
        if r.gpu_bytes or r.cpu_cores >= 0.05 or r.rss_bytes >= (64 << 20):
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
        elif old and job.rss_bytes >= min_rss:
            job.why = "uses a lot of memory"
        else:
            continue
        jobs.append(job)
    jobs.sort(key=lambda j: (j.gpu_bytes, j.cpu_cores, j.rss_bytes), reverse=True)
    return jobs[:max_jobs]
