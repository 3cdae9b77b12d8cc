"""Checkpoints and half-written files, from what was seen of the file system.

Why this works from outside the process: a checkpoint leaves traces the
kernel keeps for us.  A file the tree holds open for writing is in
/proc/PID/fd with its mode and position; a finished one has an mtime (last
write) and a ctime (last rename/metadata change), so ``max(mtime, ctime)`` is
when it was completed, to the kernel's timestamp granularity; the
temp-file-and-rename pattern shows as a *new inode* at the final path each
time (an in-place writer keeps the inode); and earlier checkpoints beside the
newest one give the cadence.  The probes add what /proc cannot: how many
rename/fsync calls each process of the tree made (in-kernel counts) and which
fsync or write is in flight right now.

Input is the observation the kill-preview collector stores in the Recording
(``metadata["kill_preview"]``: samples of the tree's writable fds and of the
candidate files in the watched directories, taken every ~0.25 s over the
window).  Pure functions: no I/O, no clock.
"""
from __future__ import annotations

import os
import re
import statistics
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

#: Suffixes of checkpoint files (the issue's list, plus .hdf5).
CKPT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".bin", ".h5", ".hdf5", ".npz")
#: Decorations that make a temporary name out of a final one.
_TEMP_TAIL = re.compile(r"(\.(tmp|temp|part|partial|incomplete|swp)[\w.-]*|~)$", re.IGNORECASE)
_TEMP_HEAD = re.compile(r"^(\.|tmp[._-]?|\.tmp[._-]?)", re.IGNORECASE)
_LOG_NAME = re.compile(r"(\.(log|txt|out|err|jsonl|csv|tsv)(\.\d+)?$|^events\.out\.tfevents|^nohup\.out$)",
                       re.IGNORECASE)
O_ACCMODE, O_WRONLY, O_RDWR, O_APPEND = 0o3, 0o1, 0o2, 0o2000
LARGE_BYTES = 1 << 20          # a file this large being written makes a kill unsafe
GROWTH_BYTES = 64 << 10        # ... or one that grew this much during the window
SYSTEM_PREFIXES = ("/dev/", "/proc/", "/sys/", "/run/", "/dev/shm/")


def is_temp_name(name: str) -> bool:
    """``ckpt.pt.tmp``, ``ckpt.pt~``, ``.ckpt.pt.part``, ``tmpab12cd.pt``..."""
    return bool(_TEMP_TAIL.search(name)) or (bool(_TEMP_HEAD.match(name)) and name not in (".", ".."))


def final_name(name: str) -> str:
    """The final name a temporary name stands for (itself when not temporary)."""
    out = _TEMP_TAIL.sub("", name)
    if out == name and _TEMP_HEAD.match(name):
        stripped = _TEMP_HEAD.sub("", name, count=1)
        out = stripped or name
    return out


def is_checkpoint_name(name: str) -> bool:
    low = final_name(name).lower()
    return low.endswith(CKPT_SUFFIXES) or "checkpoint" in low or "ckpt" in low


def is_log_name(name: str) -> bool:
    return bool(_LOG_NAME.search(name))


_STEP_DIR = re.compile(r"(checkpoint|ckpt|step|epoch|iter)", re.IGNORECASE)


def family_key(path: str) -> str:
    """dir + final name with digit runs as '#': checkpoint_000120.pt(.tmp) ->
    dir/checkpoint_#.pt.  Files of one family are successive checkpoints.
    A per-checkpoint directory (checkpoint-500/model.safetensors) is
    numbered the same way: checkpoint-#/model.safetensors."""
    d, name = os.path.split(path)
    parent, sub = os.path.split(d)
    if _STEP_DIR.search(sub):
        d = os.path.join(parent, re.sub(r"\d+", "#", sub))
    return os.path.join(d, re.sub(r"\d+", "#", final_name(name)))


def writable(flags: Optional[int]) -> bool:
    return flags is not None and (flags & O_ACCMODE) in (O_WRONLY, O_RDWR)


# --------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------

@dataclass
class Completion:
    """One finished version of a checkpoint file."""

    path: str
    ino: int
    size_bytes: int
    completed_ns: int              # max(mtime, ctime) of that version
    seen_in_window: bool           # it appeared or changed while we watched
    via_new_inode: bool = False    # replaced the previous version by a new inode (rename)


@dataclass
class Family:
    key: str
    completions: List[Completion] = field(default_factory=list)
    open_by: List[Tuple[int, int, str]] = field(default_factory=list)   # (pid, fd, path) seen writing
    score: int = 0
    evidence: List[str] = field(default_factory=list)

    @property
    def newest(self) -> Optional[Completion]:
        return max(self.completions, key=lambda c: c.completed_ns) if self.completions else None


@dataclass
class PartialFile:
    path: str
    pid: int
    fd: int
    bytes_written: int
    expected_size_bytes: Optional[int] = None
    expected_basis: str = ""
    progress_pct: Optional[float] = None
    write_rate_bps: Optional[float] = None
    eta_s: Optional[float] = None
    temp_and_rename: Optional[bool] = None
    temp_basis: str = ""
    survives: Optional[str] = None          # the complete checkpoint a kill leaves in place
    overwrites_previous: bool = False       # an in-place rewrite of the last complete version
    in_flight: str = ""                      # "fsync for 120 ms" when the probes saw it
    is_checkpoint: bool = False

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["basis"] = {
            "bytes_written": "measured: the file's size when last sampled (stat)",
            "expected_size_bytes": (f"estimated: {self.expected_basis}" if self.expected_size_bytes
                                    else "unavailable: no complete earlier checkpoint of this name beside it"),
            "write_rate_bps": ("measured: growth of the file between samples" if self.write_rate_bps
                               else "unavailable: it did not grow while watched"),
            "eta_s": ("estimated: bytes still to write at the measured rate" if self.eta_s is not None
                      else "unavailable: needs the expected size and a write rate"),
        }
        return d


@dataclass
class CheckpointFindings:
    family: Optional[Family]
    cadence_s: Optional[float]
    cadence_basis: str
    partial: List[PartialFile]
    other_families: List[Family]
    notes: List[str] = field(default_factory=list)


# --------------------------------------------------------------------------
# From samples to file histories
# --------------------------------------------------------------------------

def _versions(samples: List[dict]) -> Dict[str, List[dict]]:
    """path -> its distinct versions in order, each {ino, size, mtime, ctime,
    first_ns, last_ns, open_w (seen open for writing at its last sighting)}."""
    open_at: List[set] = [{w[2] for w in s.get("wfds", [])} for s in samples]
    out: Dict[str, List[dict]] = {}
    for i, s in enumerate(samples):
        for path, (size, mtime, ctime, ino) in s.get("files", {}).items():
            vs = out.setdefault(path, [])
            if vs and vs[-1]["ino"] == ino and vs[-1]["mtime"] == mtime and vs[-1]["size"] == size:
                v = vs[-1]
                v["ctime"] = max(v["ctime"], ctime)
            else:
                v = {"ino": ino, "size": size, "mtime": mtime, "ctime": ctime, "first_ns": s["t_ns"],
                     "first_index": i}
                vs.append(v)
            v["last_ns"] = s["t_ns"]
            v["open_w"] = path in open_at[i]
    return out


def find_checkpoints(samples: List[dict], root_start_ns: int, rename_calls: Dict[int, int],
                     fsync_calls: Dict[int, int], inflight: Iterable[dict] = (),
                     wrote_bytes: Optional[int] = None) -> CheckpointFindings:
    """Families of checkpoint files, the one this job writes, its cadence,
    and the files a kill now would leave half-written.

    ``rename_calls``/``fsync_calls``: per pid of the tree, counts from the
    probes' in-kernel aggregate (empty without probes).  ``inflight``: rows
    {pid, fd, path, syscall, for_ns} of write/fsync calls in progress at the
    end of the window, already mapped to paths.  ``wrote_bytes``: what the
    tree passed to write() over the window (wchar growth; None if unknown):
    a file that appeared while the tree wrote less than its size is someone
    else's.
    """
    notes: List[str] = []
    if not samples:
        return CheckpointFindings(None, None, "no file samples", [], [], ["no file samples were taken"])
    first_ns, last_ns = samples[0]["t_ns"], samples[-1]["t_ns"]
    versions = _versions(samples)
    families: Dict[str, Family] = {}
    for path, vs in versions.items():
        name = os.path.basename(path)
        if not is_checkpoint_name(name) or is_log_name(name):
            continue
        fam = families.setdefault(family_key(path), Family(key=family_key(path)))
        if is_temp_name(name):
            continue    # temp files complete nothing by themselves; their rename does
        for j, v in enumerate(vs):
            if v["open_w"]:
                continue    # still being written when last seen: not complete
            changed = v["first_index"] > 0 or v["mtime"] >= first_ns or v["ctime"] >= first_ns
            fam.completions.append(Completion(
                path=path, ino=v["ino"], size_bytes=v["size"],
                completed_ns=max(v["mtime"], v["ctime"]), seen_in_window=changed,
                via_new_inode=j > 0 and vs[j - 1]["ino"] != v["ino"]))
    # Writers seen in the fd samples.
    for s in samples:
        for pid, fd, path, _pos, _flags, _size in s.get("wfds", []):
            key = family_key(path)
            if key in families and (pid, fd, path) not in families[key].open_by:
                families[key].open_by.append((pid, fd, path))
    renames = sum(rename_calls.values())
    for fam in families.values():
        _score(fam, root_start_ns, renames, first_ns, wrote_bytes)
    ranked = sorted((f for f in families.values() if f.score > 0),
                    key=lambda f: (f.score, f.newest.completed_ns if f.newest else 0), reverse=True)
    best = ranked[0] if ranked else None
    cadence, cadence_basis = _cadence(best, first_ns)
    partial = _partial_files(samples, versions, families, rename_calls, inflight)
    if renames and best is not None:
        best.evidence.append(f"the tree called rename {renames}x during the window (probes)")
    fsyncs = sum(fsync_calls.values())
    if fsyncs:
        notes.append(f"the tree called fsync/fdatasync {fsyncs}x during the window (probes)")
    stale = sorted(p for p, vs in versions.items()
                   if is_temp_name(os.path.basename(p)) and is_checkpoint_name(os.path.basename(p))
                   and not any(v["open_w"] for v in vs)
                   and vs[-1]["last_ns"] == last_ns and vs[-1]["mtime"] < first_ns)
    if stale:
        notes.append(f"{len(stale)} stale temporary file(s) beside the checkpoints (left by an earlier "
                     f"interrupted write?): {stale[0]}" + (" ..." if len(stale) > 1 else ""))
    return CheckpointFindings(best, cadence, cadence_basis, partial, ranked[1:], notes)


def _score(fam: Family, root_start_ns: int, renames: int, first_ns: int, wrote_bytes: Optional[int]) -> None:
    """How sure we are that the job wrote this family (0: not this process's).

    Seen open for writing by the tree: certain.  Completed while watched:
    the tree's, if it passed at least that many bytes to write() meanwhile
    (every way of writing a file but mmap goes through write()); if it did
    not, another process writes these files and the family is not the job's.
    Written since the process started, in a directory the job works in:
    likely, by location only, and said so."""
    ev = fam.evidence
    if fam.open_by:
        pids = sorted({p for p, _, _ in fam.open_by})
        fam.score += 4
        ev.append("open for writing by pid " + ", ".join(map(str, pids)))
    in_window = [c for c in fam.completions if c.seen_in_window]
    if in_window:
        smallest = min(c.size_bytes for c in in_window)
        if not fam.open_by and wrote_bytes is not None and wrote_bytes < smallest:
            fam.score = 0
            ev.append(f"{len(in_window)} completed while watched, but the tree wrote only {wrote_bytes} "
                      f"bytes meanwhile: another process writes these")
            return
        fam.score += 3
        how = " by rename (a new inode each time)" if any(c.via_new_inode for c in in_window) else ""
        ev.append(f"{len(in_window)} completed while watched{how}")
    mine = [c for c in fam.completions if c.completed_ns >= root_start_ns]
    if mine:
        fam.score += 1
        if not in_window and not fam.open_by:
            ev.append(f"{len(mine)} written since the process started, in a directory it works in "
                      "(attributed by location; not seen being written)")
    elif fam.completions and not fam.open_by:
        fam.score = 0   # every version predates the process: an earlier run's files
        ev.append("all files predate the process (an earlier run's?)")


SAVE_CLUSTER_NS = 1_000_000_000   # completions this close are one save (model + optimizer files)


def save_events(fam: Family) -> List[int]:
    """Completion times grouped into save events: a checkpoint often is several
    files written together, which must not read as a sub-second cadence."""
    out: List[int] = []
    for t in sorted({c.completed_ns for c in fam.completions}):
        if out and t - out[-1] < SAVE_CLUSTER_NS:
            out[-1] = t
        else:
            out.append(t)
    return out


def _cadence(fam: Optional[Family], first_ns: int) -> Tuple[Optional[float], str]:
    if fam is None:
        return None, "no checkpoint found"
    times = save_events(fam)
    if len(times) < 2:
        return None, "only one checkpoint seen: no cadence yet"
    gaps = [(b - a) / 1e9 for a, b in zip(times, times[1:])][-10:]
    earlier = sum(1 for c in fam.completions if not c.seen_in_window)
    seen = len(fam.completions) - earlier
    parts = []
    if earlier:
        parts.append(f"{earlier} earlier file(s) in {os.path.dirname(fam.key) or '.'}")
    if seen:
        parts.append(f"{seen} completed while watched")
    return statistics.median(gaps), (f"median of {len(gaps)} interval(s) between checkpoint "
                                     f"completion times ({'; '.join(parts)})")


def _partial_files(samples: List[dict], versions: Dict[str, List[dict]], families: Dict[str, Family],
                   rename_calls: Dict[int, int], inflight: Iterable[dict]) -> List[PartialFile]:
    """Files open for writing at the last sample that a kill would leave half-written."""
    last = samples[-1]
    inflight_by_path = {r["path"]: r for r in inflight if r.get("path")}
    out: List[PartialFile] = []
    seen = set()
    rows = [tuple(w) for w in last.get("wfds", [])]
    # An fsync/write in flight on a file that the fd sample did not list (closed fd race).
    for r in inflight_by_path.values():
        if not any(w[2] == r["path"] for w in rows):
            rows.append((r["pid"], r.get("fd", -1), r["path"], None, r.get("flags") or O_WRONLY,
                         r.get("size")))
    for pid, fd, path, pos, flags, size in rows:
        name = os.path.basename(path)
        if path in seen or not path.startswith("/") or path.startswith(SYSTEM_PREFIXES) \
                or path.endswith(" (deleted)") or is_log_name(name) or (flags or 0) & O_APPEND:
            continue
        size = size if size is not None else pos
        if size is None:
            continue
        grown = _growth(samples, path)
        ckpt = is_checkpoint_name(name)
        if not (ckpt or is_temp_name(name) or size >= LARGE_BYTES or grown[0] >= GROWTH_BYTES
                or path in inflight_by_path):
            continue
        seen.add(path)
        p = PartialFile(path=path, pid=pid, fd=fd, bytes_written=int(size), is_checkpoint=ckpt)
        if path in inflight_by_path:
            r = inflight_by_path[path]
            p.in_flight = f"{r['syscall']} in progress for {r['for_ns'] / 1e6:.0f} ms"
        if grown[1] > 0 and grown[0] > 0:
            p.write_rate_bps = grown[0] / grown[1]
        fam = families.get(family_key(path))
        done = [c for c in fam.completions if c.path != path] if fam else []
        same_path_done = [c for c in fam.completions if c.path == path] if fam else []
        sizes = [c.size_bytes for c in (fam.completions if fam else []) if c.size_bytes > 0]
        if sizes:
            p.expected_size_bytes = int(statistics.median(sizes))
            p.expected_basis = (f"median size of {len(sizes)} earlier checkpoint(s) of "
                                f"{os.path.basename(fam.key)}")
            p.progress_pct = min(100.0, 100.0 * p.bytes_written / p.expected_size_bytes)
            if p.write_rate_bps:
                p.eta_s = max(0.0, (p.expected_size_bytes - p.bytes_written) / p.write_rate_bps)
        if is_temp_name(name):
            p.temp_and_rename = True
            p.temp_basis = f"temporary name; the final name would be {final_name(name)}"
        elif any(c.via_new_inode for c in (fam.completions if fam else [])):
            p.temp_and_rename = True
            p.temp_basis = "earlier versions appeared by rename (new inode at the final path)"
        else:
            p.temp_and_rename = False
            renames = rename_calls.get(pid, 0)
            p.temp_basis = ("written under its final name" +
                            (f" (pid {pid} made {renames} rename call(s), not for this file)" if renames else ""))
        if done:
            p.survives = max(done, key=lambda c: c.completed_ns).path
        # Rewriting a path that held a complete checkpoint: that one is gone already.
        p.overwrites_previous = bool(same_path_done) and not p.temp_and_rename
        out.append(p)
    return out


def _growth(samples: List[dict], path: str) -> Tuple[int, float]:
    """(bytes grown, seconds) of ``path`` over the samples where it was seen."""
    pts = [(s["t_ns"], s["files"][path][0]) for s in samples if path in s.get("files", {})]
    if len(pts) < 2:
        pts = [(s["t_ns"], w[5]) for s in samples for w in s.get("wfds", [])
               if w[2] == path and w[5] is not None]
    if len(pts) < 2:
        return 0, 0.0
    # the last monotonic run (a truncate restarts it)
    start = 0
    for i in range(1, len(pts)):
        if pts[i][1] < pts[i - 1][1]:
            start = i
    run = pts[start:]
    if len(run) < 2:
        return 0, 0.0
    return run[-1][1] - run[0][1], (run[-1][0] - run[0][0]) / 1e9
