"""Impact: what a kill costs (DESIGN.md "Impact"), as a pure function of a Recording.

``analyse_impact(rec)`` separates what a kill of the target now would lose
(compute since the last *completed* checkpoint, half-written files) from what
it would not (completed checkpoints, data already passed to write(), which
sits in the page cache and outlives the process), what it would free (USS,
VRAM, cores, disk rates), whom it would hurt (children, distributed peers,
the parent), whether a graceful stop exists (signal masks), and from all that
a verdict (safe / costly / unsafe) and a recommendation with the figures for
each way to stop.

Every figure carries its basis: *measured* (read from the kernel, /proc,
file timestamps or the probes over the window) or *estimated* (extrapolated
from a rate, the rate and span given), or *unavailable* (why).

Inputs, all inside the Recording (so a saved one gives the same answer):
snapshots (start/end), ``metadata.kill_preview["observations"]`` (the
collector's samples of the tree and its files over the window), ``gpu``
(NVML samples), ``syscall_stats`` and ``inflight`` (probes).  No I/O, no
clock reads: "now" is the time of the last sample (``as_of``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ...errors import NotInRecording
from ...jsondoc import to_json
from ...recording import ProbeStatus, Recording
from ...snapshot import SystemSnapshot
from ...names import writable
from .checkpoints import find_checkpoints
from .loss import Loss, iso, loss_if_killed
from .progress import job_progress
from .resources import GpuFigures, gpu_figures, per_process_rates, wchar_growth
from .signals import SignalReport, read_signals
from .freed import Freed, freed_by_kill
from .tree import Cascade, GpuHolding, ProcessRow, cascade, group_files, group_sockets, role_of, tree_pids
from .verdict import Recommendation, SafeToKill, recommend, verdict

SCHEMA = "pyimpact.kill-preview/1"
COSTLY_AFTER_S = 60.0          # lost wall, CPU or GPU seconds from which a kill is "costly"
RENAME_CALLS = ("rename", "renameat", "renameat2")
FSYNC_CALLS = ("fsync", "fdatasync", "sync_file_range", "msync", "syncfs")
WRITE_CALLS = FSYNC_CALLS + ("write", "pwrite64", "writev", "pwritev", "pwritev2", "copy_file_range",
                             "sendfile", "fallocate", "ftruncate", "close")


# --------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Observation:
    """How the figures were obtained (``observation`` of the --json document):
    the window, the samples, whether the kernel probes ran, what was lost or
    not seen -- so a reader knows how much to trust each absence."""

    window_s: float                    # first to last sample
    samples: int
    sample_interval_s: Optional[float]
    kernel_probes: bool                # the probes ran over the window (Recording.probe_status)
    events: int                        # probe events in the recording
    lost_events: int
    watched_dirs: List[str]            # directories whose checkpoint-like files were sampled
    recorder: dict                     # the recorder history's availability, as the collector read it
    ended: Optional[str]               # why the window ended (duration, interrupted, ...)
    unavailable: List[dict]            # [{what, why}]: what could not be seen, and why


@dataclass(frozen=True)
class Target:
    """The process whose kill is previewed (``target`` of the --json document)."""

    pid: int
    start_ticks: int             # with the pid, the identity: a reused pid is another process
    command: str
    comm: str
    age_s: float
    started_at: str
    state: str

    def to_dict(self) -> dict:
        return to_json(self)


@dataclass(frozen=True)
class GpuSummary:
    """The tree's GPU figures (``gpu`` of the --json document); ``available`` False says why in ``reason``."""

    available: bool
    reason: str
    devices: list
    tree_vram_bytes: Dict[str, int]
    tree_sm_util_pct: Dict[str, float]

    def to_dict(self) -> dict:
        return to_json(self)


@dataclass(frozen=True)
class ImpactReport:
    """What a kill of ``target`` now would cost; ``to_dict()`` is the --json document.

    Each part is typed where it is built (this package) and read by attribute
    by the views; the document is written from the fields by the one JSON
    writer (pyimpact.jsondoc), in field order.
    """

    # the document's head: its schema, and the as-of moment (the last sample) as an ISO time
    schema: str = field(default=SCHEMA, init=False)
    as_of: Optional[str] = field(default=None, init=False)
    as_of_ns: int
    target: Target
    observation: Observation
    tree: List[ProcessRow]
    loss: Loss
    freed: Freed
    cascade: Cascade
    signals: SignalReport
    gpu: GpuSummary
    safe_to_kill: SafeToKill
    recommendation: Recommendation
    notes: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "as_of", iso(self.as_of_ns))

    def to_dict(self) -> dict:
        """The stable ``--json`` document (schema ``pyimpact.kill-preview/1``).

        Keys (new keys may be added; these keep their meaning):
          as_of, as_of_ns      the moment the figures describe (last sample)
          target               pid, start_ticks, command, age_s, started_at
          observation          window_s, samples, kernel_probes, lost_events,
                               watched_dirs, unavailable [{what, why}]
          tree[]               pid, ppid, role, command, age_s, cpu_pct, rss_bytes,
                               uss_bytes, threads, files{checkpoints, logs, temp,
                               written, read, shm, gpu_devices}, sockets{listening,
                               peers}, gpus[{device, used_memory_bytes}]
          loss                 since ("checkpoint" | "start"), since_checkpoint_s,
                               cpu_seconds, gpu_seconds, last_checkpoint{path,
                               completed_at, completed_at_ns, size_bytes, basis,
                               family} | null, checkpoint_cadence_s,
                               next_checkpoint_in_s, next_checkpoint_uncertainty_s
                               (+/- s: the intervals' spread; null: one interval),
                               saves_by_steps, partial_files[{path, pid, fd,
                               bytes_written, expected_size_bytes, write_rate_bps,
                               eta_s, temp_and_rename, survives, overwrites_previous,
                               basis{...}}], not_lost[], summary, notes[],
                               basis{<figure>: {value?, kind, basis}}
          freed                ram_uss_bytes, ram_rss_bytes, vram_bytes{gpu: bytes},
                               cpu_cores, disk_read_bps, disk_write_bps,
                               network_bps (null: not measurable), listening_ports,
                               basis{...}
          cascade              children[{pid, role, fate, ...}], parent{pid, effect},
                               peers[{kind: distributed|tcp|listener|pipe, who,
                               effect}], group_kill
          signals              handles_sigterm, handles_sigint, handles_sigusr1,
                               graceful_stop_possible, detail{SIG: {state, meaning}},
                               pending[]
          gpu                  available, reason, devices[], tree_vram_bytes,
                               tree_sm_util_pct
          safe_to_kill         verdict (safe | costly | unsafe), reason,
                               next_safe_in_s, next_safe_basis
          recommendation       action (kill | wait | sigterm | suspend), text,
                               options[{action, text, loses_s, ...}]
        "kind" is measured (read from the kernel, /proc, file times or the
        probes), estimated (extrapolated, basis given) or unavailable (why).
        """
        return to_json(self)


# --------------------------------------------------------------------------
# Inputs out of the Recording
# --------------------------------------------------------------------------

def observation_for(rec: Recording, root: int) -> dict:
    """The collector's observation of ``root`` (empty when there is none)."""
    for obs in (rec.metadata.kill_preview or {}).get("observations", []):
        if int(obs.get("root", -1)) == root:
            return obs
    return {"root": root, "samples": []}


def _call_counts(rec: Recording, pids: set, names) -> Dict[int, int]:
    st = rec.syscall_stats
    if st is None or st.empty:
        return {}
    rows = st[st["pid"].isin(list(pids)) & st["syscall"].isin(list(names))]
    return {int(pid): int(n) for pid, n in rows.groupby("pid")["count"].sum().items()}


def _inflight_writes(rec: Recording, snap: SystemSnapshot, pids: set, as_of_ns: int) -> List[dict]:
    """Writes and fsyncs in progress at the end of the trace, mapped to paths
    through the end snapshot's fds (the fd is open while its call runs)."""
    df = rec.inflight
    if df is None or df.empty:
        return []
    out = []
    for r in df.to_dict(orient="records"):
        if int(r["pid"]) not in pids or r["syscall"] not in WRITE_CALLS or r["syscall"] == "close":
            continue
        args = list(r.get("args") or [])
        fd = int(args[0]) if args else -1
        p = snap.processes.get(int(r["pid"]))
        f = next((x for x in p.fds if x.fd == fd), None) if p else None
        if f is None or f.kind != "file":
            continue
        if r["syscall"] not in FSYNC_CALLS and not writable(f.flags):
            continue
        out.append({"pid": int(r["pid"]), "fd": fd, "path": f.target, "syscall": r["syscall"],
                    "for_ns": max(0, as_of_ns - int(r["since_ns"])), "flags": f.flags, "size": f.size_bytes})
    return out


def _slow_write_notes(rec: Recording, pids: set) -> List[str]:
    ev = rec.events
    if ev is None or ev.empty:
        return []
    rows = ev[(ev["kind"] == "syscall") & ev["pid"].isin(list(pids)) & ev["syscall"].isin(list(FSYNC_CALLS))]
    if rows.empty:
        return []
    longest = int(rows["dur_ns"].max())
    return [f"{len(rows)} slow fsync-type call(s) during the window (probes), longest "
            f"{longest / 1e6:.0f} ms: the tree flushes files to disk"]


# --------------------------------------------------------------------------
# The analysis
# --------------------------------------------------------------------------

def analyse_impact(rec: Recording, root: Optional[int] = None, costly_after_s: float = COSTLY_AFTER_S,
                   wait_limit_s: float = 600.0) -> ImpactReport:
    """What killing ``root`` (default: the recording's first target) now would cost."""
    if root is None:
        targets = rec.metadata.targets or []
        if not targets:
            raise NotInRecording("the recording names no target process")
        root = int(targets[0]["pid"])
    snap = rec.snapshots.get("end") or rec.snapshots.get("start")
    if snap is None or root not in snap.processes:
        raise NotInRecording(f"no snapshot of process {root} in the recording")
    obs = observation_for(rec, root)
    samples = obs.get("samples", [])
    as_of_ns = int(samples[-1]["t_ns"]) if samples else int(rec.end_ns or snap.taken_at_ns)
    first_ns = int(samples[0]["t_ns"]) if samples else as_of_ns
    rp = snap.processes[root]
    pids = tree_pids(snap, root)
    pidset = set(pids)
    # pids seen in any sample belong to the tree too (short-lived workers)
    for s in samples:
        pidset.update(int(k) for k in s.get("procs", {}))
    root_start_ns = int(rp.create_time * 1e9)
    notes: List[str] = list(obs.get("notes", []))

    renames = _call_counts(rec, pidset, RENAME_CALLS)
    fsyncs = _call_counts(rec, pidset, FSYNC_CALLS)
    inflight = _inflight_writes(rec, snap, pidset, as_of_ns)
    ck = find_checkpoints(samples, root_start_ns, renames, fsyncs, inflight, wchar_growth(samples),
                          meta=obs.get("meta") or {},
                          recorded=(obs.get("recorded") or {}).get("completions") or ())
    prog = job_progress(samples, obs.get("log_heads") or {}, root_start_ns, as_of_ns,
                        int(obs.get("utc_offset_s") or 0))
    notes += ck.notes + _slow_write_notes(rec, pidset)

    gpuf = gpu_figures(rec.gpu or [], pidset)
    rates = per_process_rates(samples)
    loss = loss_if_killed(ck, samples, gpuf, root_start_ns, as_of_ns, rp, snap, prog, (as_of_ns - first_ns) / 1e9)
    tree = _tree_rows(snap, root, pids, rates, gpuf, as_of_ns)
    freed = freed_by_kill(tree, samples, gpuf)
    effects = cascade(snap, root, pids, tree)
    signals = read_signals(rp)
    safe = verdict(loss, ck.partial, costly_after_s)
    recommendation = recommend(loss, safe, signals, freed, effects, wait_limit_s)

    meta = rec.metadata
    unavailable = [dict(u) for u in (meta.unavailable or [])]
    if not gpuf.available and not any(u.get("what", "").startswith("GPU") for u in unavailable):
        unavailable.append({"what": "GPU (NVML)", "why": gpuf.reason})
    observation = Observation(
        window_s=round((as_of_ns - first_ns) / 1e9, 3),
        samples=len(samples),
        sample_interval_s=obs.get("interval_s"),
        kernel_probes=rec.probe_status is ProbeStatus.ATTACHED,
        events=0 if rec.events is None else int(len(rec.events)),
        lost_events=rec.lost_total,
        watched_dirs=list(obs.get("watched", [])),
        recorder={k: v for k, v in (obs.get("recorded") or {"available": False, "reason": "not read"}).items()
                  if k != "completions"},
        ended=meta.end_reason,
        unavailable=unavailable,
    )
    target = Target(pid=root, start_ticks=rp.start_ticks, command=" ".join(rp.cmdline) or rp.name,
                    comm=rp.name, age_s=round((as_of_ns - root_start_ns) / 1e9, 3),
                    started_at=iso(root_start_ns), state=rp.state)
    gpu = GpuSummary(available=gpuf.available, reason=gpuf.reason, devices=gpuf.devices,
                     tree_vram_bytes={str(k): v for k, v in gpuf.vram_by_device.items()},
                     tree_sm_util_pct={str(k): round(v[0], 1) for k, v in gpuf.util_by_device.items()})
    if rp.name == "pt_data_worker":
        notes.append(f"pid {root} is a PyTorch DataLoader worker: killing it ends the training job too (its main "
                     f"process {rp.ppid} raises at its next batch): preview pid {rp.ppid} for what that loses")
    if not gpuf.available and any(r.files.gpu_devices for r in tree):
        notes.append("the tree holds /dev/nvidia* open, but NVML could not be read: GPU figures are missing")
    return ImpactReport(target=target, as_of_ns=as_of_ns, observation=observation, tree=tree, loss=loss,
                        freed=freed, cascade=effects, signals=signals, gpu=gpu, safe_to_kill=safe,
                        recommendation=recommendation, notes=notes)


def _tree_rows(snap: SystemSnapshot, root: int, pids: List[int], rates, gpuf: GpuFigures,
               as_of_ns: int) -> List[ProcessRow]:
    rows = []
    tree = set(pids)
    for pid in pids:
        p = snap.processes[pid]
        parent = snap.processes.get(p.ppid)
        r = rates.get(pid)
        rows.append(ProcessRow(
            pid=pid, ppid=p.ppid, role=role_of(p, parent, pid == root),
            command=" ".join(p.cmdline) or f"[{p.name}]",
            age_s=round(as_of_ns / 1e9 - p.create_time, 2) if p.create_time else None,
            cpu_pct=round(100 * r["cpu_cores"], 1) if r else None,
            rss_bytes=p.rss_bytes, uss_bytes=p.uss_bytes, threads=p.num_threads, state=p.state,
            files=group_files(p), sockets=group_sockets(p, snap, tree),
            gpus=[GpuHolding(d, b) for d, b in gpuf.vram_by_pid.get(pid, [])]))
    return rows
