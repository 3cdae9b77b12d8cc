"""The diagnose session: observe one process (or the machine) for a window and
diagnose it.

Composition only: collect (Tracer: snapshot, probes for a window, snapshot;
then the processes the waits point to, the details behind the syscall
arguments, Python stacks) -> Recording -> ``analyse.hang`` -> a callback that
shows the verdict.  The verdict is handed over before the probes are detached
(detaching classic tracepoints waits for RCU grace periods), and imports stay
lazy: time to verdict is part of the job.  Used by `pyimpact diagnose` and by
the job's node session (pyimpact.sessions.job).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import NotInRecording, ProcessGone

_T0 = time.monotonic()  # when this command's module was loaded (time-to-verdict marks)


def _since_exec() -> float:
    """Seconds from this interpreter's exec to the load of this module (0 when unknown)."""
    import os

    try:
        with open("/proc/self/stat") as f:
            start = int(f.read().rpartition(")")[2].split()[19])
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - (time.monotonic() - _T0)
                   - start / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


#: rounds of "snapshot the processes the waits point to" (A waits on B, B on C, ...)
RELATED_ROUNDS = 3


RELATED_MAX = 64


def _snapshot(pids: List[int], *, holders: bool = False):
    """Snapshot some extra processes; those that vanish or deny are skipped."""
    import psutil

    from ..collect import procfs

    keep = []
    for pid in pids:
        try:
            procfs.process_identity(pid)
            keep.append(pid)
        except (psutil.Error, OSError):
            continue
    if not keep:
        return None
    try:
        return procfs.take_snapshot(keep, tree=False, holders=holders, timeout_s=0.6)
    except (psutil.Error, OSError):
        return None


def _merge(base, extra):
    """Add the processes (and missing host tables) of ``extra`` into ``base``."""
    if base is None:
        return extra
    if extra is None:
        return base
    base.processes.update(extra.processes)
    if not base.locks:
        base.locks = extra.locks
    for k, v in extra.sockets.items():
        base.sockets.setdefault(k, v)
    for k, v in extra.inode_holders.items():
        base.inode_holders.setdefault(k, v)
    for k, v in extra.pid_namespaces.items():
        base.pid_namespaces.setdefault(k, v)
    if base.own_pidns is None:
        base.own_pidns = extra.own_pidns
    base.errors.extend(e for e in extra.errors if e not in base.errors)
    return base


def add_wait_details(rec, snap) -> None:
    """Read what the sleeping threads of ``snap`` point to (poll sets, futex
    words, timeouts) into the recording, so the graph can follow them."""
    from ..collect import waits

    if snap is None:
        return
    got = waits.collect(snap)
    cur = rec.metadata.wait_details
    if not cur:
        rec.metadata.wait_details = got
    else:
        cur["threads"].update(got["threads"])
        for pid, mon in (got.get("monitors") or {}).items():
            cur.setdefault("monitors", {})[pid] = mon


def gather_related(rec, key: str, rounds: int = RELATED_ROUNDS, again: Optional[List[int]] = None) -> List[int]:
    """Snapshot the processes the waits point to, outside the traced tree,
    into ``rec.snapshots[key]``; repeat so chains can be followed further.
    ``again``: processes to snapshot in any case (those seen at the start of
    the window, so their change over the window is known)."""
    from ..analyse.hang.waitgraph import referenced_pids

    from ..collect import jobs

    added: List[int] = []
    # Us and our ancestors (the shell, sudo, a harness that started the target
    # and waits for our output): a chain can lead to the observer, which is
    # running this diagnosis; seen as it is, it is a process at work, not one
    # "not observed" that a wait on it would be blamed on.
    again = list(again or []) + sorted(jobs.own_family() - set(again or []))
    if again:
        snap = _snapshot(list(again))
        added.extend(again)
        if snap is not None:
            rec.snapshots[key] = _merge(rec.snapshots.get(key), snap)
            add_wait_details(rec, snap)
    for _ in range(rounds):
        missing = [p for p in referenced_pids(rec) if p not in added][:RELATED_MAX - len(added)]
        if not missing:
            break
        snap = _snapshot(missing)
        added.extend(missing)
        if snap is None:
            continue
        rec.snapshots[key] = _merge(rec.snapshots.get(key), snap)
        add_wait_details(rec, snap)
    return added


class _WindowWork:
    """What runs during the observation window, beside the probes: snapshot
    the related processes (and follow them with the probes), start the py-spy
    dumps, sample the GPU.  Runs once, from the tracer's first tick."""

    def __init__(self, python_stacks: bool, on_window: Optional[Callable[[Any], None]] = None,
                 local_values: bool = False) -> None:
        self.python_stacks = python_stacks
        self.local_values = local_values
        self.on_window = on_window
        self.done = False
        self.dumps = None
        self.related: List[int] = []
        self.gpu_thread: Optional[threading.Thread] = None
        self.gpu_sample: Optional[Dict[str, Any]] = None

    def __call__(self, tracer) -> None:
        if self.done:
            return
        self.done = True
        rec = tracer.rec
        add_wait_details(rec, rec.snapshots.get("start"))
        self.related = gather_related(rec, "related_start")
        if tracer.probes is not None:
            followed = []
            for pid in self.related:
                try:
                    tracer.probes.follow(pid)
                    followed.append(pid)
                except Exception:  # a map update failing only narrows what is seen
                    pass
            rec.metadata.followed_pids = followed
        snaps = [s for s in (rec.snapshots.get("start"), rec.snapshots.get("related_start")) if s]
        if self.python_stacks:
            from ..collect.pystacks import StackDumps

            pys = sorted({pid for s in snaps for pid, p in s.processes.items()
                          if p.python and p.state not in ("Z", "X")})
            self.dumps = StackDumps(pys, timeout_s=2.0, keep_values=self.local_values) if pys else None
        if any(f.target.startswith("/dev/nvidia") for s in snaps for p in s.processes.values() for f in p.fds):
            self.gpu_thread = threading.Thread(target=self._gpu, name="pyimpact-gpu", daemon=True)
            self.gpu_thread.start()
        if self.on_window is not None:
            self.on_window(tracer)

    def _gpu(self) -> None:
        try:
            from ..collect import gpu  # optional: NVML may be absent
        except Exception:
            return
        try:
            self.gpu_sample = gpu.read_gpus().to_dict()
        except Exception as err:  # NVML trouble never stops a diagnosis
            self.gpu_sample = {"available": False, "reason": str(err)}


def observe(pid: int, *, window: float = 1.0, use_bpf: bool = True, python_stacks: bool = True,
            on_verdict: Optional[Callable[[Any, Any], None]] = None,
            on_window: Optional[Callable[[Any], None]] = None, ask_servers: bool = True,
            local_values: bool = False) -> Tuple[Any, Any]:
    """Observe ``pid`` for ``window`` seconds and diagnose it.

    Returns (Diagnosis, Recording).  ``on_verdict(diagnosis, recording)`` is
    called before the probes are detached, so the answer is shown first;
    ``on_window(tracer)`` once the probes watch (tests use it to act inside
    the window).  ``local_values``: keep the values of Python locals (they
    may be secrets; by default only their names and addresses are kept).
    """
    opener = None
    if use_bpf:  # compile the probes while pandas and the analysis import (time to verdict)
        from ..collect.probes import ProbeConfig, ProbeOpener

        def first_snapshot():
            from ..collect import procfs

            return procfs.take_snapshot([pid], tree=True)

        opener = ProbeOpener(ProbeConfig(pids=(pid,)), snapshot=first_snapshot)
    try:
        from ..analyse.hang.diagnose import diagnose
        from ..collect import waits
        from ..collect.tracer import TraceRequest, Tracer

        marks = {"imported": time.monotonic() - _T0, "process": _since_exec()}
        req = TraceRequest(pids=(pid,), duration_s=window, use_bpf=use_bpf, degrade=True,
                           options={"command": "diagnose", "window_s": window})
        work = _WindowWork(python_stacks, on_window, local_values)
        tracer = Tracer(req, opener=opener)
    except BaseException:
        if opener is not None:
            opener.discard()
        raise
    with tracer as tr:
        marks["attached"] = time.monotonic() - _T0
        if tr.attached_early_mono is not None:  # the window began when the probes attached
            tr.request.duration_s = max(0.05, window - (time.monotonic() - tr.attached_early_mono))
            marks["attached"] = tr.attached_early_mono - _T0
        tr.run(on_tick=work, tick_s=3600.0)
        work(tr)  # a window too short for a tick still gets its work
        marks["window_done"] = time.monotonic() - _T0
        rec = tr.recording()
        marks["recording"] = time.monotonic() - _T0
        rec.metadata.wait_details = waits.collect(rec.snapshots.get("end") or rec.snapshots.get("start"))
        gather_related(rec, "related", again=work.related)
        rel = rec.snapshots.get("related")
        marks["related"] = time.monotonic() - _T0
        if ask_servers:
            from ..collect.servers import ask_servers as _ask

            rec.metadata.server_waits = _ask([rec.snapshots.get("end"), rel])
            for name, took in (rec.metadata.server_waits.get("timings_s") or {}).items():
                marks[f"server:{name}"] = took
            known = set(rec.snapshots["end"].processes) if rec.snapshots.get("end") else set()
            known |= set(rel.processes) if rel is not None else set()
            more = sorted({int(b) for info in rec.metadata.server_waits["processes"].values()
                           for b in info.get("blocked_by") or []} - known)
            if more:  # the sessions a server says hold the locks: snapshot them too
                snap = _snapshot(more[:RELATED_MAX])
                if snap is not None:
                    rec.snapshots["related"] = rel = _merge(rel, snap)
                    add_wait_details(rec, snap)
                    gather_related(rec, "related", rounds=1, again=None)   # and what they wait on
                    rel = rec.snapshots.get("related")
        marks["servers"] = time.monotonic() - _T0
        if not python_stacks:
            snap = rec.snapshots.get("start")
            if snap is not None and any(p.python for p in snap.processes.values()):
                rec.note_unavailable("Python stacks", "not asked for (--no-python)")
        elif work.dumps is not None:
            stacks = work.dumps.wait(2.0)
            rel_py = [p for p, info in (rel.processes.items() if rel else []) if info.python
                      and str(p) not in stacks]
            if rel_py:
                from ..collect.pystacks import StackDumps

                stacks.update(StackDumps(rel_py, timeout_s=1.0, keep_values=local_values).wait(1.0))
            rec.metadata.python_stacks = stacks
        marks["stacks"] = time.monotonic() - _T0
        if work.gpu_thread is not None:
            work.gpu_thread.join(1.0)
            if work.gpu_sample is not None:
                rec.gpu = list(rec.gpu or []) + [work.gpu_sample]
        start = rec.snapshots.get("start")
        was = start.processes.get(pid) if start is not None else None
        if pid in (rec.metadata.exited_targets or []) and (was is None or was.state not in ("Z", "X")):
            raise ProcessGone(f"process {pid} exited during the observation window",
                              "it is not stuck any more")
        marks["collected"] = time.monotonic() - _T0
        try:
            d = diagnose(rec, pid)
        except NotInRecording:
            raise ProcessGone(f"process {pid} exited before it could be diagnosed",
                              "check the PID (ps -p PID); diagnose a process that is still running") from None
        marks["diagnosed"] = time.monotonic() - _T0
        rec.metadata.diagnose_timings_s = {k: round(v, 4) for k, v in marks.items()}
        if on_verdict is not None:
            on_verdict(d, rec)
        marks["shown"] = time.monotonic() - _T0
        rec.metadata.diagnose_timings_s = {k: round(v, 4) for k, v in marks.items()}
    return d, rec


def _snapshot_all(pids: List[int], timeout_s: float = 3.0):
    """A snapshot of many processes; those that exit meanwhile are left out."""
    import psutil

    from ..collect import procfs

    pids = list(pids)
    for _ in range(50):
        if not pids:
            return None
        try:
            return procfs.take_snapshot(pids, tree=False, timeout_s=timeout_s)
        except (psutil.NoSuchProcess, psutil.AccessDenied) as err:
            gone = getattr(err, "pid", None)
            if gone not in pids:
                return None
            pids.remove(gone)
    return None


def machine_pids() -> List[int]:
    """Every user-space process but our own family (us, our shell, sudo, the
    rest of the pipeline we run in)."""
    from ..collect import jobs

    import os

    own = jobs.own_family()
    try:
        own_pgid = os.getpgid(0)
    except OSError:
        own_pgid = -1
    table = jobs.proc_table()
    own |= jobs.pipeline_neighbours(table, own)

    def ours(pid: int) -> bool:
        try:
            return pid in own or os.getpgid(pid) == own_pgid
        except OSError:
            return True   # gone already

    return sorted(pid for pid, st in table.procs.items() if not st.kernel_thread and pid != 1
                  and st.state not in ("X",) and not ours(pid))


def observe_all(*, window: float = 1.0, use_bpf: bool = True, python_stacks: bool = True,
                on_verdict: Optional[Callable[[Any, Any], None]] = None):
    """Observe every user process of the machine for one window and judge
    every process tree.  Returns (MachineReport, diagnoses by pid, Recording).

    Python stacks are read (py-spy) only where they change a verdict: the
    processes of a distributed job and those judged hung in the first pass;
    then the graph is built again with them."""
    from ..analyse.hang.diagnose import diagnose_many
    from ..analyse.hang.machine import report
    from ..collect import jobs, waits
    from ..collect.tracer import TraceRequest, Tracer

    marks = {"imported": time.monotonic() - _T0}
    req = TraceRequest(pids=(), trace_all=True, duration_s=window, use_bpf=use_bpf, degrade=True,
                       options={"command": "diagnose --all", "window_s": window})
    with Tracer(req) as tr:
        t_attached = time.monotonic()
        rec = tr.rec
        pids = machine_pids()
        rec.snapshots["start"] = _snapshot_all(pids)
        marks["attached"] = time.monotonic() - _T0
        tr.request.duration_s = max(0.05, window - (time.monotonic() - t_attached))
        tr.run()
        rec = tr.recording()
        alive = machine_pids()
        # our own family is seen too, not judged: a process that waits on the
        # shell or harness that runs us waits on one at work
        family = sorted(jobs.own_family() - set(alive))
        rec.snapshots["end"] = _snapshot_all(alive + family)
        rec.metadata.followed_pids = alive
        rec.metadata.wait_details = waits.collect(rec.snapshots.get("end"))
        from ..collect.servers import ask_servers as _ask

        rec.metadata.server_waits = _ask([rec.snapshots.get("end")])
        marks["collected"] = time.monotonic() - _T0
        end = rec.snapshots.get("end")
        mine = sorted(set(end.processes) - set(family)) if end is not None else []
        ds = {d.pid: d for d in diagnose_many(rec, mine)}
        if python_stacks and end is not None:
            want = [pid for pid, d in ds.items() if end.processes[pid].python
                    and (d.hung or "RANK" in end.processes[pid].env)]
            if want:
                from ..collect.pystacks import StackDumps

                rec.metadata.python_stacks = StackDumps(want, timeout_s=2.0).wait(2.5)
                ds = {d.pid: d for d in diagnose_many(rec, mine)}
        elif end is not None and any(p.python for p in end.processes.values()):
            rec.note_unavailable("Python stacks", "not asked for (--no-python)")
        marks["diagnosed"] = time.monotonic() - _T0
        g = next(iter(ds.values())).graph if ds else None
        unavailable = [f"{u.get('what')}: {u.get('why')}" for u in (rec.metadata.unavailable or [])]
        unavailable += list((rec.metadata.server_waits or {}).get("notes") or [])
        if g is None:
            from ..analyse.hang.waitgraph import build

            g = build(rec)
        r = report(g, ds, unavailable=unavailable, lost=int(sum((rec.metadata.lost or {}).values())))
        if on_verdict is not None:
            on_verdict(r, rec)
        marks["shown"] = time.monotonic() - _T0
        rec.metadata.diagnose_timings_s = {k: round(v, 4) for k, v in marks.items()}
    return r, ds, rec


def tgid_of(pid: int) -> Optional[int]:
    """The process a task id belongs to (None when it cannot be read)."""
    import psutil

    from ..collect import procfs

    try:
        return procfs.tgid_of(pid)
    except (psutil.Error, OSError, KeyError, ValueError):
        return None
