"""Checkpoint history from the directory: directory checkpoints, the series
a job writes, its cadence in time and steps, and what the next file will be.

Why from the directory and not only from the window: real jobs checkpoint
every 10-60 minutes, so a look of a few seconds sees at most one save; but
the earlier saves are still on disk beside the newest (any age, any writer:
a resumed job's previous run wrote them), with their completion times
(max(mtime, ctime)), their sizes and the step/epoch numbers in their names.
A series of them gives the cadence (median interval, gaps across a restart
left out), the step interval, the expected size of the one being written and
its final name (``step-200`` -> ``step-300``).  Every figure lists the files
it came from.

These functions are the checkpoint API other commands reuse (``stop --when
checkpoint``): ``newest_durable``, ``series_figures``, ``write_eta``.

Pure: plain dicts and the dataclasses of pyimpact.analyse.impact.checkpoints.
"""
from __future__ import annotations

import os
import re
import statistics
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ...jsondoc import to_json
from ...names import is_checkpoint_name, is_numbered_ckpt_dir_name
from ...recording import DirStat
from .ckpt_layouts import dir_layout, index_of, name_numbers, render_name

SAVE_CLUSTER_NS = 1_000_000_000   # completions this close are one save (model + optimizer files)
LATE_CTIME_NS = 300_000_000_000   # a ctime this long after the last write is no rename into place
MAX_SOURCES = 6


def completed_at(mtime_ns: int, ctime_ns: int, changed_in_window: bool = False) -> int:
    """When a version of a checkpoint was completed: ``max(mtime, ctime)``,
    since a rename into place sets the ctime just after the last write.

    A ctime minutes after the last write of a version found on disk is a later
    metadata change instead: a copy that keeps the times (``cp -a``,
    ``shutil.copy2``, ``rsync -a``), a ``chmod``/``chown``, ``os.utime``.  Its
    mtime is then when it was written; the ctime would give every restored
    file of a series the same time (and the series a cadence of 0 s).  A
    change seen while watched is timed by what was seen."""
    if not changed_in_window and ctime_ns - mtime_ns > LATE_CTIME_NS:
        return mtime_ns
    return max(mtime_ns, ctime_ns)


def numbers_of_kind(kind: str) -> str:
    """How the numbers in a series' names are called in a basis: step/epoch numbers, or just numbers."""
    return {"step": "step numbers", "epoch": "epoch numbers"}.get(kind, "numbers in the names")


def dir_family_key(path: str) -> str:
    d, name = os.path.split(path)
    name = re.sub(r"\.orbax-checkpoint-tmp-\d+$", "", name)
    return os.path.join(d, re.sub(r"\d+", "#", name)) + "/"


def final_dir_name(path: str) -> str:
    """The name a directory checkpoint has once its framework finished it."""
    return re.sub(r"\.orbax-checkpoint-tmp-\d+$", "", path)


@dataclass
class DirState:
    """A directory checkpoint as last sampled."""
    path: str
    size_bytes: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    n_files: int
    names: List[str]
    layout: str
    complete: Optional[bool]
    complete_basis: str
    changed_in_window: bool
    grown: Tuple[int, float] = (0, 0.0)     # bytes, seconds of the last growth run
    first_size: int = 0


def dir_stat(row) -> DirStat:
    """A sample's directory row, typed (a hand-built sample may hold a plain list)."""
    return row if isinstance(row, DirStat) else DirStat(*row[:6])


def dir_states(samples: List[dict], meta: Dict[str, dict]) -> Dict[str, DirState]:
    """path -> the directory checkpoint's state at its last sighting."""
    out: Dict[str, DirState] = {}
    first_ns = samples[0]["t_ns"] if samples else 0
    series: Dict[str, List[Tuple[int, int]]] = {}
    for s in samples:
        for path, row in (s.get("dirs") or {}).items():
            series.setdefault(path, []).append((s["t_ns"], dir_stat(row).size))
    for s in samples:
        for path, row in (s.get("dirs") or {}).items():
            total, mt, ct, ino, n, names = dir_stat(row)
            parent = os.path.dirname(path)
            parent_meta = {os.path.basename(k): v for k, v in meta.items() if os.path.dirname(k) == parent}
            layout, complete, why = dir_layout(os.path.basename(path), list(names), parent_meta)
            if layout == "directory" and (not is_numbered_ckpt_dir_name(os.path.basename(path))
                                          or not any("/" not in n and is_checkpoint_name(n) for n in names)
                                          or _holds_a_series(names)):
                continue          # a place holding checkpoints (maybe deeper down), not one checkpoint
            prev = out.get(path)
            changed = (prev is not None and (prev.size_bytes != total or prev.mtime_ns != mt)) \
                or mt >= first_ns or ct >= first_ns or (prev.changed_in_window if prev else False)
            out[path] = DirState(path, int(total), int(mt), int(ct), int(ino), int(n), list(names), layout,
                                 complete, why, bool(changed), first_size=prev.first_size if prev else int(total))
    for path, pts in series.items():
        if path not in out:
            continue              # a place, skipped above
        start = 0
        for i in range(1, len(pts)):
            if pts[i][1] < pts[i - 1][1]:
                start = i
        run = pts[start:]
        if len(run) >= 2 and run[-1][1] > run[0][1]:
            # growth from the last sample where the size was still the first one seen
            base = max(i for i in range(len(run)) if run[i][1] == run[0][1])
            if base < len(run) - 1:
                out[path].grown = (run[-1][1] - run[base][1], (run[-1][0] - run[base][0]) / 1e9)
    return out


def _holds_a_series(names: List[str]) -> bool:
    """Checkpoint files of one name pattern with different numbers side by side
    (ckpt-100.pt, ckpt-200.pt): successive saves, so the directory holding them
    (run7_epoch3/) is their place, not one checkpoint of its own."""
    seen: Dict[str, set] = {}
    for n in names:
        if "/" in n or not is_checkpoint_name(n):
            continue
        i = index_of(name_numbers(n))[0]
        if i is not None:
            seen.setdefault(re.sub(r"\d+", "#", n), set()).add(i)
    return any(len(v) >= 2 for v in seen.values())


@dataclass
class SeriesFigures:
    """What a checkpoint series says, each figure with its basis and sources."""
    cadence_s: Optional[float] = None
    cadence_basis: str = ""
    cadence_sources: List[str] = field(default_factory=list)
    cadence_floor_s: Optional[float] = None     # no second save yet: the interval is at least this
    cadence_gaps_s: List[float] = field(default_factory=list)   # the intervals the cadence is the median of
    cadence_steps: Optional[int] = None
    cadence_steps_kind: str = ""                # step | epoch | number
    cadence_steps_basis: str = ""
    expected_size_bytes: Optional[int] = None
    expected_basis: str = ""
    expected_sources: List[str] = field(default_factory=list)
    newest_index: Optional[int] = None
    newest_index_kind: str = ""
    save_points: List[List[int]] = field(default_factory=list)  # [completed_ns, step] of the numbered saves
    next_index: Optional[int] = None
    next_name: Optional[str] = None
    next_name_basis: str = ""
    run_info: dict = field(default_factory=dict)   # trainer_state.json scalars etc.

    def to_dict(self) -> dict:
        return to_json(self)


def _cluster(completions) -> List[Tuple[int, object]]:
    """Completions grouped into save events (time, newest completion of the save):
    files completed within a second of each other are one save (model +
    optimizer files), unless their names carry different step numbers."""
    out: List[Tuple[int, object]] = []
    for c in sorted(completions, key=lambda c: c.completed_ns):
        a, b = (index_of(out[-1][1].numbers)[0] if out else None), index_of(c.numbers)[0]
        same = a is None or b is None or a == b      # different step numbers: different saves
        if out and same and c.completed_ns - out[-1][0] < SAVE_CLUSTER_NS:
            out[-1] = (c.completed_ns, c)
        else:
            out.append((c.completed_ns, c))
    return out


def _short_list(paths: List[str]) -> str:
    names = [os.path.basename(p.rstrip("/")) for p in paths]
    if len(names) > MAX_SOURCES:
        names = names[:2] + ["..."] + names[-(MAX_SOURCES - 3):]
    return ", ".join(names)


def series_figures(fam, root_start_ns: int, as_of_ns: int, meta: Dict[str, dict]) -> SeriesFigures:
    """Cadence (time, steps), expected size and next name of one checkpoint series.

    ``fam``: a pyimpact.analyse.impact.checkpoints.Family (its completions carry
    step/epoch/number and size).  Intervals that straddle the process start
    (an earlier run's last save -> this run's first) include the downtime
    and are left out of the cadence."""
    f = SeriesFigures()
    done = [c for c in fam.completions if c.size_bytes > 0]
    if not done:
        return f
    saves = _cluster(done)
    gaps, srcs, used = [], [], set()
    for (t0, c0), (t1, c1) in zip(saves, saves[1:]):
        if t0 < root_start_ns <= t1:
            continue          # across a restart
        gaps.append((t1 - t0) / 1e9)
        srcs += [c0.path, c1.path]
        used |= {t0, t1}
    srcs = list(dict.fromkeys(srcs))
    if gaps:
        gaps = gaps[-10:]
        f.cadence_s = statistics.median(gaps)
        f.cadence_gaps_s = [round(g, 3) for g in gaps]
        earlier = sum(1 for p in srcs if _pred(done, p, root_start_ns))
        f.cadence_basis = (f"median of {len(gaps)} interval(s) between the completion times (mtime/ctime) "
                           + (f"of {len(srcs)} checkpoint(s)" if len(srcs) == len(used) else
                              f"of {len(used)} saves to {len(srcs)} file name(s), saved over again")
                           + f" in {os.path.dirname(saves[-1][1].path.rstrip('/')) or '.'}"
                           + (f", {earlier} of them written before this process started" if earlier else ""))
        f.cadence_sources = srcs[-MAX_SOURCES:]
    newest_t, newest = saves[-1]
    if f.cadence_s is None:
        f.cadence_floor_s = max(0.0, (as_of_ns - newest_t) / 1e9)
    # Steps between saves, from the numbers in the names.
    idx = [(index_of(c.numbers), c) for _, c in saves if index_of(c.numbers)[0] is not None]
    if idx:
        (n, kind), c = idx[-1]
        f.newest_index, f.newest_index_kind = n, kind
        f.save_points = [[c.completed_ns, i] for (i, k), c in idx[-11:] if k == kind]
        diffs = [b[0][0] - a[0][0] for a, b in zip(idx, idx[1:]) if b[0][0] > a[0][0] and a[0][1] == b[0][1]]
        if diffs:
            f.cadence_steps = int(statistics.median(diffs[-10:]))
            f.cadence_steps_kind = kind
            f.cadence_steps_basis = (f"median difference of the {numbers_of_kind(kind)} of "
                                     f"{_short_list([x[1].path for x in idx[-(len(diffs) + 1):]])}")
    # HF Trainer: save_steps and the run's own figures.
    ts = _trainer_state(fam, meta)
    if ts:
        f.run_info = dict(ts[1], source=ts[0])
        if ts[1].get("save_steps") and isinstance(ts[1]["save_steps"], (int, float)) \
                and ts[1]["save_steps"] >= 1:
            f.cadence_steps = int(ts[1]["save_steps"])
            f.cadence_steps_kind = "step"
            f.cadence_steps_basis = f"save_steps in {ts[0]}"
        if f.newest_index is None and isinstance(ts[1].get("global_step"), int):
            f.newest_index, f.newest_index_kind = ts[1]["global_step"], "step"
    if f.newest_index is not None:
        step = f.cadence_steps
        if step:
            f.next_index = f.newest_index + step
            template = newest.path.rstrip("/")
            f.next_name = render_name(template, f.next_index) + ("/" if newest.kind == "directory" else "")
            f.next_name_basis = f"{os.path.basename(template)} + {step} ({f.cadence_steps_basis})"
    # Expected size: what the complete saves of this series weigh.
    sizes = [(c.size_bytes, c.path) for _, c in saves[-10:]]
    if sizes:
        f.expected_size_bytes = int(statistics.median(s for s, _ in sizes))
        spread = max(s for s, _ in sizes) - min(s for s, _ in sizes)
        f.expected_basis = (f"median size of {len(sizes)} complete checkpoint(s) of this series: "
                            f"{_short_list([p for _, p in sizes])}"
                            + (" (all the same size)" if spread == 0 and len(sizes) > 1 else ""))
        f.expected_sources = [p for _, p in sizes][-MAX_SOURCES:]
    return f


def _pred(done, path: str, root_start_ns: int) -> bool:
    return any(c.path == path and c.completed_ns < root_start_ns for c in done)


def _trainer_state(fam, meta: Dict[str, dict]) -> Optional[Tuple[str, dict]]:
    """The newest trainer_state.json among the series' directories."""
    best = None
    for c in sorted(fam.completions, key=lambda c: c.completed_ns):
        key = os.path.join(c.path.rstrip("/"), "trainer_state.json")
        if key in meta and "error" not in meta[key]:
            best = (key, meta[key])
    return best


def newest_durable(fam) -> Optional[object]:
    """The newest complete checkpoint of a series (a Completion), any age."""
    done = [c for c in fam.completions] if fam else []
    return max(done, key=lambda c: c.completed_ns) if done else None


def write_eta(bytes_written: int, expected: Optional[int], rate_bps: Optional[float]) -> Optional[float]:
    """Seconds until a write reaches its expected size at the measured rate."""
    if not expected or not rate_bps or rate_bps <= 0:
        return None
    return max(0.0, (expected - bytes_written) / rate_bps)


def numbers_of(path: str) -> Dict[str, Optional[int]]:
    return name_numbers(os.path.basename(path.rstrip("/")))
