"""The work a kill now loses: since the newest checkpoint this process wrote, or since it started.

Why "this process wrote": a checkpoint older than the process is one it may
have resumed from (an earlier run wrote it); the work since the process
started is lost then, and a restart resumes from that file.  The figures are
wall time, CPU seconds and GPU seconds since that anchor, with the
half-written files a kill truncates, what is not lost (completed checkpoints,
data already passed to write()), the next checkpoint, and what a restart
costs (pyimpact.analyse.impact.recovery), each with its basis.

Pure: the checkpoint findings, the collector's samples and NVML figures in, a
``Loss`` (``loss`` of the --json document) out.
"""
from __future__ import annotations

import datetime as _dt
import enum
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Union

from ...formats import human_bytes as _mib
from ...jsondoc import json_field
from ...snapshot import ProcessSnapshot, SystemSnapshot
from .checkpoints import CheckpointFindings, PartialFile
from .progress import Progress
from .recovery import Recovery, progress_sentence, restart_cost
from .resources import Figure, GpuFigures, cpu_since, gpu_since
from .schedule import next_checkpoint
from .tree import tree_pids


def iso(ns: Optional[int]) -> Optional[str]:
    """A wall-clock time in ns as an ISO 8601 UTC string (None for 0/None)."""
    if not ns:
        return None
    return _dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.timezone.utc).isoformat(timespec="milliseconds")


class Since(str, enum.Enum):
    """What the lost work is counted from."""

    CHECKPOINT = "checkpoint"     # the newest checkpoint this process completed
    START = "start"               # the process's start: no checkpoint of its own


@dataclass(frozen=True)
class Basis:
    """How a figure without a value of its own was obtained (``loss.basis`` entries
    of the cadence and the next checkpoint)."""

    kind: str                       # measured | estimated | unavailable
    basis: str
    sources: Optional[List[str]] = json_field(default=None, omit_none=True)   # the files it was read from


@dataclass(frozen=True)
class LastCheckpoint:
    """The newest durable checkpoint (``loss.last_checkpoint``): where a restart resumes from."""

    path: str
    completed_at: Optional[str]
    completed_at_ns: int
    size_bytes: int
    basis: str                      # why it counts as a checkpoint (the series' evidence)
    family: str                     # the series it belongs to
    kind: str                       # file | directory
    layout: str                     # file, or the framework's layout (HF Trainer, DCP, ...)
    complete_basis: str             # why it is complete
    step: Optional[int]
    epoch: Optional[float]
    predates_process: bool          # written by an earlier run: a restart resumes from it
    written_by: str
    resume_uncertain: bool = False  # an earlier run's by its place or company only: the job may not resume from it
    companions: List[str] = json_field(default_factory=list)   # the other files of the same save (optimizer.pt)
    completed_at_basis: str = ""    # how the completion time was read


@dataclass(frozen=True)
class Loss:
    """What a kill now loses (``loss`` of the --json document): the work since
    the anchor in wall/CPU/GPU seconds, the files it leaves half-written, what
    survives, the next checkpoint, and what a restart costs (``recovery``,
    written inline); every figure's basis is in ``basis``."""

    summary: str
    since: Since
    since_checkpoint_s: float
    cpu_seconds: Optional[float]
    gpu_seconds: Optional[float]
    last_checkpoint: Optional[LastCheckpoint]
    checkpoint_cadence_s: Optional[float]
    next_checkpoint_in_s: Optional[float]
    next_checkpoint_uncertainty_s: Optional[float]     # +/- seconds, from the cadence's spread
    partial_files: List[PartialFile]
    not_lost: List[str]
    other_checkpoint_candidates: List[str]
    basis: Dict[str, Union[Figure, Basis]]
    notes: List[str]
    progress_summary: Optional[str]
    recovery: Recovery = json_field(flatten=True)


def _tree_wchar_at_first(samples) -> Optional[int]:
    """Bytes the tree's processes passed to write() since they started, at the first sample."""
    if not samples:
        return None
    wc = [p.get("wc") for p in samples[0].get("procs", {}).values()]
    return sum(w for w in wc if w is not None) if any(w is not None for w in wc) else None


def loss_if_killed(ck: CheckpointFindings, samples, gpuf: GpuFigures, root_start_ns: int, as_of_ns: int,
                   rp: ProcessSnapshot, snap: SystemSnapshot, prog: Optional[Progress] = None,
                   watched_s: float = 0.0) -> Loss:
    """The work a kill now loses, since the newest checkpoint this process wrote (or its start)."""
    fam = ck.family
    newest = fam.newest if fam else None
    notes: List[str] = []
    # A checkpoint older than the process is one it may have resumed from, not one it wrote.
    # The start time is known to ~1 s only (/proc/stat btime is whole seconds): a file
    # completed that close to the start is the process's only if it wrote that much.
    near_start = newest is not None and abs(newest.completed_ns - root_start_ns) < 1_000_000_000
    wrote = _tree_wchar_at_first(samples)
    before = newest is not None and (newest.completed_ns < root_start_ns - 1_000_000_000 or (
        near_start and wrote is not None and wrote < newest.size_bytes))
    weak = bool(fam is not None and fam.weak_history and not fam.read_since_start)
    resumes = ("a restart can resume from it if the job resumes from its checkpoints (it was not seen "
               "reading it)" if weak else "a restart resumes from it")
    if newest is not None and not before:
        anchor, since = newest.completed_ns, "checkpoint"
    else:
        anchor, since = root_start_ns, "start"
        if newest is not None:
            notes.append(f"the newest checkpoint {newest.path} predates this process (an earlier run wrote "
                         f"it; {resumes}): the work since the process started is lost")
    since_s = max(0.0, (as_of_ns - anchor) / 1e9)
    if since == "checkpoint":
        since_fig = Figure(round(since_s, 3), "measured",
                           f"as-of time minus the completion time of {os.path.basename(newest.path)} "
                           + (f"({newest.time_basis})" if newest.time_basis else
                              "(its ctime/mtime: when it was renamed into place or last written)"))
    else:
        since_fig = Figure(round(since_s, 3), "measured", "no checkpoint by this process: everything "
                           "since it started (start time from /proc)")
    cpu = cpu_since(samples, anchor, since == "start")
    gpu = gpu_since(gpuf, since_s)
    last = None
    if newest is not None:
        last = LastCheckpoint(
            path=newest.path, completed_at=iso(newest.completed_ns), completed_at_ns=newest.completed_ns,
            size_bytes=newest.size_bytes, basis="; ".join(fam.evidence) or "checkpoint-like file in a watched directory",
            family=fam.key, kind=newest.kind, layout=newest.layout, complete_basis=newest.complete_basis,
            step=newest.numbers.get("step"), epoch=newest.numbers.get("epoch"),
            predates_process=since != "checkpoint",
            written_by="this process" if since == "checkpoint" else
            f"an earlier run (it predates this process): {resumes}",
            resume_uncertain=weak and since != "checkpoint", companions=list(ck.companions),
            completed_at_basis=newest.time_basis or ("seen completing while watched" if newest.seen_in_window
                                                     else "max(mtime, ctime): its last write or its rename "
                                                          "into place"))
    rec = restart_cost(ck, prog or Progress(), root_start_ns, as_of_ns, anchor, since, watched_s)
    nxt = next_checkpoint(ck, rec, prog or Progress(), since, anchor, root_start_ns, as_of_ns)
    next_in = nxt.in_s
    notes += nxt.notes
    if rec.notes_steps:
        notes.append(rec.notes_steps)
    written = sum((snap.processes[pid].io_write_bytes or 0) for pid in tree_pids(snap, rp.pid))
    not_lost = []
    if last:
        not_lost.append(f"completed checkpoints stay on disk (newest: {last.path})")
    for p in ck.partial:
        if p.temp_and_rename and p.survives:
            not_lost.append(f"{p.survives} survives: the file being written is a temporary that would be "
                            "left behind, the complete one is replaced only by a rename")
    if written:
        not_lost.append(f"{_mib(written)} the tree wrote to files is in the page cache or on disk: "
                        "the kernel keeps it after the process dies (not counted as lost)")
    name = os.path.basename(newest.path.rstrip('/')) if newest is not None else ""
    if ck.companions:
        name += " + " + ", ".join(os.path.basename(p.rstrip("/")) for p in ck.companions[:3])
    if since == "checkpoint":
        summary = (f"A kill now loses {since_s:.1f} s of work since the last completed checkpoint "
                   f"({name})")
    elif newest is not None:
        summary = (f"No checkpoint by this process yet: a kill now loses everything since it started "
                   f"{since_s:.1f} s ago; a restart {'can resume' if weak else 'resumes'} from "
                   f"{name} (written before it started"
                   + ("; if the job resumes from its checkpoints)" if weak else ")"))
    else:
        summary = (f"No checkpoint found: a kill now loses everything since the process started "
                   f"{since_s:.1f} s ago")
    if cpu.value is not None:
        summary += f", {cpu.value:.1f} CPU-s ({cpu.kind})"
    if gpu.value:
        summary += f", {gpu.value:.1f} GPU-s ({gpu.kind})"
    summary += "."
    if ck.partial:
        p = max(ck.partial, key=lambda x: x.bytes_written)
        summary += (f" The write in flight ({os.path.basename(p.path.rstrip('/'))}, {_mib(p.bytes_written)}"
                    + (f" of ~{_mib(p.expected_size_bytes)}" if p.expected_size_bytes else "")
                    + (f", ~{p.eta_s:.0f} s from done" if p.eta_s is not None else "") + ") is lost too.")
    if rec.restart_warmup_s is not None:
        summary += (f" A restart costs ~{rec.total_lost_s:.1f} s in all "
                    f"(+{rec.restart_warmup_s:.1f} s warm-up).")
    sentence = progress_sentence(rec.progress, rec.steps_since_checkpoint)
    cad_kind = "measured" if ck.cadence_s else (rec.basis["cadence_estimate_s"].kind
                                                 if rec.cadence_estimate_s else "unavailable")
    cad_basis = ck.cadence_basis if ck.cadence_s else (rec.basis["cadence_estimate_s"].basis
                                                       if rec.cadence_estimate_s else ck.cadence_basis)
    basis: Dict[str, Union[Figure, Basis]] = {
        "since_checkpoint_s": since_fig,
        "cpu_seconds": cpu,
        "gpu_seconds": gpu,
        "checkpoint_cadence_s": Basis(cad_kind, cad_basis, ck.figures.cadence_sources if ck.figures else []),
        "next_checkpoint_in_s": Basis("estimated" if next_in is not None else "unavailable",
                                      nxt.basis or "no cadence known"),
        "next_checkpoint_uncertainty_s": Basis("estimated" if nxt.uncertainty_s is not None else "unavailable",
                                               nxt.uncertainty_basis or "no next checkpoint predicted"),
    }
    basis.update(rec.basis)
    return Loss(
        summary=summary,
        since=Since(since),
        since_checkpoint_s=round(since_s, 3),
        cpu_seconds=cpu.value,
        gpu_seconds=gpu.value,
        last_checkpoint=last,
        checkpoint_cadence_s=round(ck.cadence_s, 3) if ck.cadence_s else rec.cadence_estimate_s,
        next_checkpoint_in_s=next_in,
        next_checkpoint_uncertainty_s=nxt.uncertainty_s,
        partial_files=list(ck.partial),
        not_lost=not_lost,
        other_checkpoint_candidates=[f.key for f in ck.other_families],
        basis=basis,
        notes=notes,
        progress_summary=sentence,
        recovery=rec,
    )


