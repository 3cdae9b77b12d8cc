"""When to stop a job, and what a stop actually cost: the decisions behind `pyimpact stop`.

Why these rules (DESIGN.md "Impact"):

* **safe point**: no file a kill would leave half-written is open for
  writing (checkpoint-like, temporary, large or growing: the same
  ``PartialFile`` rules kill-preview's "unsafe" verdict uses), and no thread
  of the tree is inside fsync()/write() on a regular file right now.  Data
  already passed to write() survives the process; an interrupted checkpoint
  does not.
* **checkpoint point**: a checkpoint of the job's own family completed after
  the wait began, and nothing is being written any more (a save of several
  files -- model, optimizer -- is over only when the last one is).  The ETA
  is the newest completion plus the measured cadence.
* **outcome**: after the tree has exited, the newest *durable* checkpoint is
  the newest complete version at a final (non-temporary) name that was not
  left half-written; the work lost is the exit time minus its completion
  time.  Left behind: temporaries that still exist, and files that were open
  for writing when last seen and are smaller than the family's usual size.

Pure: samples (pyimpact.collect.workfiles), in-flight rows
(pyimpact.collect.inflight), times passed in.  No I/O, no clock.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional

from ...jsondoc import to_json
from ...names import is_checkpoint_name, is_temp_name
from .checkpoints import CheckpointFindings, file_stat, find_checkpoints
from .resources import wchar_growth

#: the granularity of file timestamps (the kernel's coarse clock: a tick, 10 ms at HZ=100)
FILE_CLOCK_TICK_NS = 10_000_000

FSYNC_CALLS = ("fsync", "fdatasync", "sync_file_range")


@dataclass
class PointStatus:
    """Whether the safe point a stop waits for has come, and if not, what it waits for and until when."""

    ready: bool
    waiting_for: str              # "" when ready
    eta_s: Optional[float] = None
    eta_basis: str = ""

    def to_dict(self) -> dict:
        return to_json(self)


def findings(samples: List[dict], root_start_ns: int, inflight: List[dict]) -> CheckpointFindings:
    """The checkpoint findings over the samples so far (no probe counts)."""
    return find_checkpoints(samples, root_start_ns, {}, {}, inflight, wchar_growth(samples))


def _busy(ck: CheckpointFindings, inflight: List[dict]) -> Optional[PointStatus]:
    syncs = [r for r in inflight if r["syscall"] in FSYNC_CALLS]
    if ck.partial:
        p = max(ck.partial, key=lambda x: x.bytes_written)
        what = f"{p.path} to finish ({p.bytes_written} bytes written"
        what += f" of ~{p.expected_size_bytes})" if p.expected_size_bytes else ")"
        if p.in_flight:
            what += f"; {p.in_flight}"
        eta = max((x.eta_s for x in ck.partial if x.eta_s is not None), default=None)
        return PointStatus(False, what, eta, "bytes still to write at the measured rate" if eta is not None else "")
    if syncs:
        r = syncs[0]
        return PointStatus(False, f"{r['syscall']} of {r['path']} (pid {r['pid']}) to return")
    return None


def safe_point(ck: CheckpointFindings, inflight: List[dict]) -> PointStatus:
    """Ready when nothing a kill would damage is being written or synced."""
    return _busy(ck, inflight) or PointStatus(True, "")


def newest_completion_ns(ck: CheckpointFindings) -> Optional[int]:
    fam = ck.family
    return fam.newest.completed_ns if fam is not None and fam.newest is not None else None


def checkpoint_point(ck: CheckpointFindings, inflight: List[dict], since_ns: int, now_ns: int) -> PointStatus:
    """Ready once a checkpoint of the job's family completed after ``since_ns``
    and nothing is being written; else what it waits for and the ETA."""
    newest = newest_completion_ns(ck)
    if newest is not None and newest > since_ns:
        busy = _busy(ck, inflight)
        if busy is None:
            return PointStatus(True, "")
        busy.waiting_for = "the rest of the save: " + busy.waiting_for
        return busy
    busy = _busy(ck, inflight)
    if busy is not None:
        busy.waiting_for = "the checkpoint being written: " + busy.waiting_for
        return busy
    if ck.family is None:
        return PointStatus(False, "the first checkpoint of this job (none found yet)", None,
                           "no checkpoint seen: no cadence")
    name = os.path.basename(ck.family.key)
    if ck.cadence_s and newest is not None:
        eta = (newest + ck.cadence_s * 1e9 - now_ns) / 1e9
        basis = f"newest completion + cadence {ck.cadence_s:.1f} s"
        if eta < 0:
            basis = f"overdue by {-eta:.1f} s (cadence {ck.cadence_s:.1f} s): by steps, or slowed down?"
            eta = 0.0
        return PointStatus(False, f"the next checkpoint ({name})", round(eta, 2), basis)
    return PointStatus(False, f"the next checkpoint ({name})", None, ck.cadence_basis)


def prediction(ck: CheckpointFindings, now_ns: int, root_start_ns: int) -> dict:
    """What the preview says a stop at ``now_ns`` loses (before the signal)."""
    newest = ck.family.newest if ck.family is not None else None
    if newest is not None and newest.completed_ns >= root_start_ns - 1_000_000_000:
        since, anchor, path = "checkpoint", newest.completed_ns, newest.path
    else:
        since, anchor, path = "start", root_start_ns, None
    return {"since": since, "lost_s": round(max(0.0, (now_ns - anchor) / 1e9), 3), "last_checkpoint": path,
            "last_checkpoint_completed_ns": anchor if since == "checkpoint" else None,
            "partial_files": [p.path for p in ck.partial]}


def outcome(samples: List[dict], final_files: Dict[str, list], root_start_ns: int, signal_ns: int,
            exit_ns: int, killed_by_signal: bool = False) -> dict:
    """What the stop actually lost, from the samples up to the exit and the
    files found after it (``final_files``: path -> [size, mtime_ns, ctime_ns, ino, ...] as the sampler stats them).
    ``killed_by_signal``: the signal's default action ended the job, so its
    work stopped when the signal landed (tearing down a large process takes
    longer: that is not work); otherwise the work ends at the exit."""
    end_ns = min(signal_ns, exit_ns) if killed_by_signal else exit_ns
    live = findings(list(samples), root_start_ns, []) if samples else None
    partial = {p.path: p for p in (live.partial if live else [])}
    final = {"t_ns": exit_ns, "procs": {}, "wfds": [], "files": dict(final_files)}
    ck = findings(list(samples) + [final], root_start_ns, [])
    fam = ck.family
    left: List[dict] = []
    bad = set()
    since_ns = samples[0]["t_ns"] if samples else signal_ns
    for path, st in final_files.items():
        size, mtime = file_stat(st)[:2]
        name = os.path.basename(path)
        p = partial.get(path)
        if is_temp_name(name) and is_checkpoint_name(name) and mtime >= since_ns:
            left.append({"path": path, "size_bytes": size, "why": "temporary file left behind (its rename "
                         "never happened); the previous complete checkpoint is untouched"})
            bad.add(path)
        elif p is not None:
            if p.expected_size_bytes and size < p.expected_size_bytes:
                left.append({"path": path, "size_bytes": size, "why": f"being written when last seen, and "
                             f"smaller than the usual {p.expected_size_bytes} bytes: half-written"})
                bad.add(path)
            elif not p.expected_size_bytes:
                left.append({"path": path, "size_bytes": size, "why": "being written when last seen; no "
                             "earlier version to compare its size with: possibly incomplete"})
                bad.add(path)
    durable = [c for c in (fam.completions if fam else []) if c.path not in bad and c.path in final_files
               and final_files[c.path][3] == c.ino]
    newest = max(durable, key=lambda c: c.completed_ns) if durable else None
    # File times come from the kernel's coarse clock (one tick, up to 10 ms at HZ=100, behind the
    # clock that timed the signal): a save a millisecond after the signal can carry an earlier mtime.
    saved = newest is not None and newest.completed_ns >= signal_ns - FILE_CLOCK_TICK_NS
    if saved:
        lost = 0.0          # the job's own save on the signal: what follows it is shutdown, not work
        since = "checkpoint"
    elif newest is not None and newest.completed_ns >= root_start_ns - 1_000_000_000:
        lost = max(0.0, (end_ns - newest.completed_ns) / 1e9)
        since = "checkpoint"
    else:
        lost = max(0.0, (end_ns - root_start_ns) / 1e9)
        since = "start"
    return {
        "since": since,
        "lost_s": round(lost, 3),
        "newest_durable_checkpoint": None if newest is None else {
            "path": newest.path, "size_bytes": newest.size_bytes, "completed_ns": newest.completed_ns,
            "after_signal": newest.completed_ns >= signal_ns - FILE_CLOCK_TICK_NS,
            "before_exit_s": round((exit_ns - newest.completed_ns) / 1e9, 3)},
        "saved_on_signal": saved,
        "left_behind": left,
        "basis": "lost: 0 when the job saved a checkpoint after the signal (its handler), else the end of "
                 "its work (the signal, when its default action killed the job; else the main process's exit) minus the completion time (max of mtime, ctime) of the newest "
                 "complete checkpoint left at a final name; left behind: temporaries still present, and "
                 "files open for writing at the last sample that are smaller than their family's usual size",
    }
