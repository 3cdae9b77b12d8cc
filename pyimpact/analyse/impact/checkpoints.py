"""Checkpoints and half-written files, from what was seen of the file system.

Why this works from outside the process: a checkpoint leaves traces the
kernel keeps for us.  A file the tree holds open for writing is in
/proc/PID/fd with its mode and position; a finished one has an mtime (last
write) and a ctime (last rename/metadata change), so ``max(mtime, ctime)`` is
when it was completed, to the kernel's timestamp granularity (unless the
ctime came minutes later: a copy or chmod, ckpt_history.completed_at); the
temp-file-and-rename pattern shows as a *new inode* at the final path each
time (an in-place writer keeps the inode); and earlier checkpoints beside the
newest one give the cadence.  The probes add what /proc cannot: how many
rename/fsync calls each process of the tree made (in-kernel counts) and which
fsync or write is in flight right now.

Input is the observation the kill-preview collector stores in the Recording
(``metadata.kill_preview``: samples of the tree's writable fds and of the
candidate files in the watched directories, taken every ~0.25 s over the
window).  Pure functions: no I/O, no clock.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from ...names import O_APPEND, O_WRONLY, final_name, is_checkpoint_name, is_log_name, is_temp_name
from ...recording import FileStat, WriteFd
from .ckpt_history import (SAVE_CLUSTER_NS, DirState, SeriesFigures, completed_at, dir_family_key, dir_states,
                           final_dir_name, series_figures, write_eta)
from .ckpt_layouts import file_layout, index_of, is_alias_name, name_numbers, tf_indexed, tf_prefix

LARGE_BYTES = 1 << 20          # a file this large being written makes a kill unsafe
GROWTH_BYTES = 64 << 10        # ... or one that grew this much during the window
SYSTEM_PREFIXES = ("/dev/", "/proc/", "/sys/", "/run/", "/dev/shm/")


_STEP_DIR = re.compile(r"(checkpoint|ckpt|step|epoch|iter)", re.IGNORECASE)
_CKPT_PLACE = re.compile(r"(checkpoint|ckpt)", re.IGNORECASE)     # a directory named for checkpoints
SAVE_GROUP_NS = 60_000_000_000     # files of one save (model, optimizer) completed this close together


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


# --------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------

def file_stat(row) -> FileStat:
    """A sample's file row, typed (a hand-built sample may hold a plain list of four or five)."""
    return row if isinstance(row, FileStat) else FileStat(*row)


def write_fds(sample: dict) -> List[WriteFd]:
    """The sample's writable fds, typed (a hand-built sample may hold plain lists)."""
    return [w if isinstance(w, WriteFd) else WriteFd(*w) for w in sample.get("wfds", [])]


@dataclass
class Completion:
    """One finished version of a checkpoint (a file, or a directory its framework marks complete)."""

    path: str
    ino: int
    size_bytes: int
    completed_ns: int              # max(mtime, ctime) of that version (newest entry for a directory)
    seen_in_window: bool           # it appeared or changed while we watched
    via_new_inode: bool = False    # replaced the previous version by a new inode (rename)
    kind: str = "file"             # file | directory
    layout: str = "file"           # hf-trainer, torch.distributed.checkpoint, deepspeed, orbax, lightning, ...
    complete_basis: str = ""       # why it counts as complete
    read_ns: Optional[int] = None  # atime, when it was read after it was completed (a resume reads it)
    numbers: Dict[str, Optional[int]] = field(default_factory=dict)   # step / epoch / number from the name
    time_basis: str = ""           # how completed_ns was read, when not the usual max(mtime, ctime)
    seen_at: int = -1              # index of the sample it first appeared in (-1: not sampled)
    tree_wrote: Optional[int] = None   # bytes the tree passed to write() around its appearance


@dataclass
class Family:
    key: str
    completions: List[Completion] = field(default_factory=list)
    open_by: List[Tuple[int, int, str]] = field(default_factory=list)   # (pid, fd, path) seen writing
    score: int = 0
    evidence: List[str] = field(default_factory=list)
    earlier_run: bool = False      # every complete version predates the process (a resumed job's history)
    read_since_start: bool = False  # a version was read after the process started (atime): it resumed from it
    weak_history: bool = False     # an earlier run's, but not seen read by the job nor a framework's layout
    writing: List[str] = field(default_factory=list)   # paths the tree writes into this series now

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
    kind: str = "file"                       # file | directory (a directory checkpoint not yet complete)
    layout: str = "file"
    complete_when: str = ""                  # what its framework writes last
    final_name: Optional[str] = None         # the name it will have once complete
    final_name_basis: str = ""
    series: Optional[str] = None             # the checkpoint series it belongs to
    expected_sources: List[str] = field(default_factory=list)

    def json_extra(self) -> dict:
        """The document's keys derived from the fields (pyimpact.jsondoc): an
        alias, the flag, and how each figure was obtained."""
        d: dict = {}
        d["expected_bytes"] = self.expected_size_bytes      # the name the issue tracker uses
        d["unsafe"] = True
        d["basis"] = {
            "bytes_written": "measured: the file's size when last sampled (stat)",
            "expected_size_bytes": (f"estimated: {self.expected_basis}" if self.expected_size_bytes
                                    else "unavailable: no complete earlier checkpoint of this name beside it"),
            "write_rate_bps": ("measured: growth of the file between samples" if self.write_rate_bps
                               else "unavailable: it did not grow while watched"),
            "eta_s": ("estimated: bytes still to write at the measured rate" if self.eta_s is not None
                      else "unavailable: " + ("no complete earlier checkpoint gives the expected size"
                                              if not self.expected_size_bytes else
                                              "it did not grow while watched: watch longer (--watch 30)")),
            "final_name": (f"estimated: {self.final_name_basis}" if self.final_name
                           else "unavailable: no series to follow"),
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
    figures: Optional[SeriesFigures] = None      # the series' cadence in steps, expected size, next name
    dirs: Dict[str, DirState] = field(default_factory=dict)
    companions: List[str] = field(default_factory=list)   # other files of the newest save (optimizer.pt ...)


# --------------------------------------------------------------------------
# From samples to file histories
# --------------------------------------------------------------------------

def _versions(samples: List[dict]) -> Dict[str, List[dict]]:
    """path -> its distinct versions in order, each {ino, size, mtime, ctime,
    atime, first_ns, last_ns, open_w (seen open for writing at its last sighting)}."""
    open_at: List[set] = [{w.path for w in write_fds(s)} for s in samples]
    out: Dict[str, List[dict]] = {}
    for i, s in enumerate(samples):
        for path, row in s.get("files", {}).items():
            size, mtime, ctime, ino, atime = file_stat(row)
            vs = out.setdefault(path, [])
            if vs and vs[-1]["ino"] == ino and vs[-1]["mtime"] == mtime and vs[-1]["size"] == size:
                v = vs[-1]
                v["ctime"] = max(v["ctime"], ctime)
            else:
                v = {"ino": ino, "size": size, "mtime": mtime, "ctime": ctime, "first_ns": s["t_ns"],
                     "first_index": i}
                vs.append(v)
            v["atime"] = atime
            v["last_ns"] = s["t_ns"]
            v["open_w"] = path in open_at[i]
    return out


def _inside(path: str, dirs) -> Optional[str]:
    for d in dirs:
        if path.startswith(d.rstrip("/") + "/"):
            return d
    return None


def find_checkpoints(samples: List[dict], root_start_ns: int, rename_calls: Dict[int, int],
                     fsync_calls: Dict[int, int], inflight: Iterable[dict] = (),
                     wrote_bytes: Optional[int] = None, meta: Optional[Dict[str, dict]] = None,
                     recorded: Iterable[dict] = ()) -> CheckpointFindings:
    """Checkpoint series (files and directory checkpoints) beside the job,
    the one this job writes or resumed from, its cadence, and what a kill now
    would leave half-written.

    ``rename_calls``/``fsync_calls``: per pid of the tree, counts from the
    probes' in-kernel aggregate (empty without probes).  ``inflight``: rows
    {pid, fd, path, syscall, for_ns} of write/fsync calls in progress at the
    end of the window, already mapped to paths.  ``wrote_bytes``: what the
    tree passed to write() over the window (wchar growth; None if unknown):
    a file that appeared while the tree wrote less than its size is someone
    else's.  ``meta``: framework metadata files the collector read
    (trainer_state.json, DeepSpeed ``latest``, TF ``checkpoint``).
    ``recorded``: completions the recorder kept ({t_ns, kind, pid, path,
    size}): versions of files that no longer exist (``latest.pt`` replaced
    by rename, deleted older saves) still count for the cadence.
    """
    notes: List[str] = []
    meta = meta or {}
    if not samples:
        return CheckpointFindings(None, None, "no file samples", [], [], ["no file samples were taken"])
    first_ns, last_ns = samples[0]["t_ns"], samples[-1]["t_ns"]
    as_of_ns = last_ns
    versions = _versions(samples)
    dirs = dir_states(samples, meta)
    families: Dict[str, Family] = {}
    tf_index = _tf_indexed(meta)
    late: List[str] = []
    for path, vs in versions.items():
        name = os.path.basename(path)
        if not is_checkpoint_name(name) or is_log_name(name) or _inside(path, dirs):
            continue          # files inside a directory checkpoint belong to that unit
        fam = families.setdefault(family_key(path), Family(key=family_key(path)))
        if is_temp_name(name):
            continue    # temp files complete nothing by themselves; their rename does
        layout = file_layout(name)
        for j, v in enumerate(vs):
            if v["open_w"]:
                continue    # still being written when last seen: not complete
            basis = "not open for writing by the tree when last seen"
            if layout == "tf-checkpoint":
                prefix = tf_prefix(name)
                idx = tf_index.get(os.path.dirname(path))
                if idx is not None and prefix not in idx:
                    continue    # TF names a save in its 'checkpoint' index once it is complete
                if idx is not None:
                    basis = "named in the TF 'checkpoint' index file"
            # a version seen first in a later sample but stamped before the window was
            # there already, in a directory watched only since (named in the log)
            changed = j > 0 or v["mtime"] >= first_ns or v["ctime"] >= first_ns
            done_ns = completed_at(v["mtime"], v["ctime"], changed)
            if done_ns > last_ns and v["first_index"] == len(samples) - 1:
                # renamed into place while the last sample was being read, after
                # its as-of moment: not complete *as of* then (the next look has it)
                late.append(path)
                continue
            atime = v.get("atime")
            fam.completions.append(Completion(
                path=path, ino=v["ino"], size_bytes=v["size"],
                completed_ns=done_ns, seen_in_window=changed,
                via_new_inode=j > 0 and vs[j - 1]["ino"] != v["ino"], layout=layout, complete_basis=basis,
                read_ns=atime if atime and atime > done_ns else None, numbers=name_numbers(name),
                time_basis=_late_ctime_basis(v["mtime"], v["ctime"], done_ns),
                seen_at=v["first_index"] if changed else -1,
                # the counters are read just before the files: the next sample's cover a save
                # completed in between
                tree_wrote=_tree_wrote(samples, v["first_index"] - 2, min(v["first_index"] + 1, len(samples) - 1))
                if changed and v["first_index"] > 0 else None))
    _add_recorded(families, recorded, dirs, first_ns, last_ns,
                  open_now={w.path for w in write_fds(samples[-1])})
    dir_partial: List[PartialFile] = []
    for path, st in dirs.items():
        key = dir_family_key(path)
        fam = families.setdefault(key, Family(key=key))
        writers = [w for w in write_fds(samples[-1]) if w.path.startswith(path + "/")
                   and not _is_output(w)]      # a log written in a run directory writes no checkpoint
        being_written = bool(writers) or (st.complete is not True and st.changed_in_window)
        if st.complete is False or (st.complete is None and being_written):
            if being_written:
                dir_partial.append(_dir_partial(st, writers, key))
                for w in writers:
                    if (w.pid, w.fd, w.path) not in fam.open_by:
                        fam.open_by.append((w.pid, w.fd, w.path))
            elif st.complete is False:
                notes.append(f"{path} is an incomplete {st.layout} checkpoint not written while watched "
                             f"(an interrupted save?): {st.complete_basis}")
            continue
        done_ns = completed_at(st.mtime_ns, st.ctime_ns, st.changed_in_window)
        fam.completions.append(Completion(
            path=path + "/", ino=st.ino, size_bytes=st.size_bytes, completed_ns=done_ns,
            seen_in_window=st.changed_in_window, kind="directory", layout=st.layout,
            complete_basis=st.complete_basis, numbers=name_numbers(os.path.basename(final_dir_name(path))),
            time_basis=_late_ctime_basis(st.mtime_ns, st.ctime_ns, done_ns)))
    # Writers seen in the fd samples.
    for s in samples:
        for pid, fd, path, _pos, _flags, _size in write_fds(s):
            key = family_key(path)
            if key in families and (pid, fd, path) not in families[key].open_by:
                families[key].open_by.append((pid, fd, path))
    renames = sum(rename_calls.values())
    # The tree had a file open for writing in that directory (a temporary it renames
    # later, mkstemp's tmpXXXX): a save may have been written long before it appeared,
    # so the bytes written just before say nothing there.
    written_in = {os.path.dirname(w.path) for s in samples for w in write_fds(s) if not _is_output(w)}
    for fam in families.values():
        for c in fam.completions:
            if c.tree_wrote is not None and os.path.dirname(c.path.rstrip("/")) in written_in:
                c.tree_wrote = None
    for fam in families.values():
        _score(fam, root_start_ns, renames, first_ns, wrote_bytes)
    _saved_together(families)
    _adopt_writes(families)
    # The job's series first; else an earlier run's series it would resume from.
    ranked = sorted((f for f in families.values() if f.score > 0 or (f.earlier_run and f.completions)),
                    key=lambda f: (f.score > 0, bool(f.completions), f.score,
                                   f.newest.completed_ns if f.newest else 0),
                    reverse=True)
    best = ranked[0] if ranked else None
    if best is not None and is_alias_name(os.path.basename(best.key.rstrip("/"))):
        # last.ckpt / latest.pt is a copy of the newest save: the numbered series beside it has the history
        series = [f for f in ranked[1:] if f.completions and (f.score > 0) == (best.score > 0)
                  and os.path.dirname(f.key.rstrip("/")) == os.path.dirname(best.key.rstrip("/"))
                  and "#" in os.path.basename(f.key.rstrip("/"))]
        if series:
            ranked.remove(series[0])
            ranked.insert(0, series[0])
            best = series[0]
            best.evidence.append("a numbered series beside the alias name (last/latest), which copies its newest")
    figures = series_figures(best, root_start_ns, as_of_ns, meta) if best is not None else None
    cadence, cadence_basis = _cadence(best, figures)
    partial = _partial_files(samples, versions, families, rename_calls, inflight, dirs, root_start_ns,
                             as_of_ns, meta)
    partial += [p for p in dir_partial if p.path not in {q.path for q in partial}]
    for p in dir_partial:
        _fill_from_series(p, families.get(p.series or ""), root_start_ns, as_of_ns, meta)
    if renames and best is not None:
        best.evidence.append(f"the tree called rename {renames}x during the window (probes)")
    fsyncs = sum(fsync_calls.values())
    if fsyncs:
        notes.append(f"the tree called fsync/fdatasync {fsyncs}x during the window (probes)")
    stale = sorted(p for p, vs in versions.items()
                   if is_temp_name(os.path.basename(p)) and is_checkpoint_name(os.path.basename(p))
                   and not any(v["open_w"] for v in vs)
                   and vs[-1]["last_ns"] == last_ns and vs[-1]["mtime"] < first_ns)
    if late:
        notes.append(f"{os.path.basename(late[0])} completed while the last sample was read, just after the "
                     "as-of moment: not counted as complete yet (a look a moment later counts it)")
    if stale:
        notes.append(f"{len(stale)} stale temporary file(s) beside the checkpoints (left by an earlier "
                     f"interrupted write?): {stale[0]}" + (" ..." if len(stale) > 1 else ""))
    return CheckpointFindings(best, cadence, cadence_basis, partial, ranked[1:], notes, figures, dirs,
                              _companions(best, ranked[1:]))


def _companions(best: Optional[Family], others: List[Family]) -> List[str]:
    """The other files of the newest save (``model.pt`` is saved with
    ``optimizer.pt``; ``model_0500.pt`` with ``optim_0500.pt``): the newest
    version of each series beside it, of the same owner, completed within
    SAVE_GROUP_NS of it and carrying the same number."""
    if best is None or best.newest is None:
        return []
    top = best.newest
    where = os.path.dirname(best.key.rstrip("/"))
    out = []
    for f in others:
        c = f.newest
        if c is None or os.path.dirname(f.key.rstrip("/")) != where or (f.score > 0) != (best.score > 0) \
                or abs(c.completed_ns - top.completed_ns) > SAVE_GROUP_NS \
                or index_of(c.numbers)[0] != index_of(top.numbers)[0]:
            continue
        out.append(c.path)
    return out[:8]


def _add_recorded(families: Dict[str, Family], recorded: Iterable[dict], dirs, first_ns: int,
                  last_ns: int, open_now: Iterable[str] = ()) -> None:
    """Versions the recorder saw complete (rename into place, close, fsync),
    unless a sampled version of the same path already stands for them.

    An fsync of a file the tree still has open for writing completes nothing:
    a writer that syncs as it goes (every MiB, say) is in the middle of the
    version being written, and its size then is no checkpoint's size."""
    open_now = set(open_now)
    for r in recorded or ():
        path, t = r.get("path") or "", int(r.get("t_ns") or 0)
        name = os.path.basename(path)
        if not t or not path.startswith("/") or not is_checkpoint_name(name) or is_temp_name(name) \
                or is_log_name(name) or _inside(path, dirs):
            continue
        if r.get("kind") == "fsync" and path in open_now:
            continue
        fam = families.setdefault(family_key(path), Family(key=family_key(path)))
        if any(c.path == path and abs(c.completed_ns - t) < SAVE_CLUSTER_NS for c in fam.completions):
            continue
        how = {"rename": "renamed into place", "close": "closed after writing", "fsync": "fsync()ed"}.get(
            r.get("kind"), r.get("kind") or "completed")
        fam.completions.append(Completion(
            path=path, ino=0, size_bytes=int(r.get("size") or 0), completed_ns=t,
            seen_in_window=first_ns <= t <= last_ns, layout=file_layout(name),
            complete_basis=f"recorded by `pyimpact record`: {how} by pid {r.get('pid')}",
            numbers=name_numbers(name)))


def _tf_indexed(meta: Dict[str, dict]) -> Dict[str, set]:
    """directory -> the TF checkpoint prefixes its 'checkpoint' index names."""
    out: Dict[str, set] = {}
    for path, m in meta.items():
        if os.path.basename(path) == "checkpoint" and "text" in m:
            out[os.path.dirname(path)] = set(os.path.basename(x) for x in tf_indexed(m["text"]))
    return out


def _is_output(w: WriteFd) -> bool:
    """The job's output (a log, an append-only file, its redirected stdout/stderr), not a save."""
    name = os.path.basename(w.path)
    return is_log_name(name) or bool((w.flags or 0) & O_APPEND) or (w.fd in (1, 2) and not is_checkpoint_name(name))


def _dir_partial(st: DirState, writers: List[WriteFd], key: str) -> PartialFile:
    pid, fd = (writers[0].pid, writers[0].fd) if writers else (0, -1)
    p = PartialFile(path=st.path + "/", pid=pid, fd=fd, bytes_written=st.size_bytes, is_checkpoint=True,
                    kind="directory", layout=st.layout, complete_when=st.complete_basis, series=key,
                    temp_and_rename=False)
    if st.grown[1] > 0 and st.grown[0] > 0:
        p.write_rate_bps = st.grown[0] / st.grown[1]
    fin = final_dir_name(st.path)
    p.final_name = fin + "/"
    p.final_name_basis = ("the directory is renamed to this when its framework finishes it" if fin != st.path
                          else "a directory checkpoint is written under its final name")
    if fin != st.path:
        p.temp_and_rename = True
        p.temp_basis = "orbax writes a temporary directory and renames it"
    else:
        p.temp_basis = (f"{st.layout} directory written in place: a kill leaves it incomplete "
                        f"({st.complete_basis})")
    if writers:
        p.in_flight = f"pid {pid} writes {os.path.basename(writers[0].path)}"
    return p


def _adopt_writes(families: Dict[str, Family]) -> None:
    """A file being written under a temporary or odd name (``ckpt.tmp``,
    ``tmpab12.pt``) beside a series of complete checkpoints is the next one of
    that series: the series is the job's, and the write is its next save."""
    by_dir: Dict[str, List[Family]] = {}
    for f in families.values():
        by_dir.setdefault(os.path.dirname(f.key.rstrip("/")), []).append(f)
    for fam in families.values():
        if fam.completions or not fam.open_by:
            continue
        peers = [f for f in by_dir.get(os.path.dirname(fam.key.rstrip("/")), []) if f.completions
                 and f is not fam and not f.open_by and (f.score > 0 or f.earlier_run)]
        if not peers:
            continue
        target = max(peers, key=lambda f: (len(f.completions), f.newest.completed_ns))
        pids = sorted({p for p, _, _ in fam.open_by})
        target.writing += [p for _, _, p in fam.open_by]
        target.score = max(target.score, 1) + 4
        target.evidence.append(f"pid {', '.join(map(str, pids))} is writing "
                               f"{os.path.basename(fam.open_by[0][2])} beside it (the next save of this series)")


def _score(fam: Family, root_start_ns: int, renames: int, first_ns: int, wrote_bytes: Optional[int]) -> None:
    """How sure we are that the job wrote this family (0: not this process's).

    Seen open for writing by the tree: certain.  Completed while watched:
    the tree's, if it passed at least that many bytes to write() meanwhile
    (every way of writing a file but mmap goes through write()); if it did
    not, another process writes these files and the family is not the job's.
    Written since the process started, in a directory the job works in:
    likely, by location only, and said so.  Only older than the process: an
    earlier run's history (a resumed job) when it is a numbered series, a
    framework layout, or was read since the process started; else unrelated
    files (pretrained weights, another job's)."""
    ev = fam.evidence
    if fam.open_by:
        pids = sorted({p for p, _, _ in fam.open_by})
        fam.score += 4
        ev.append("open for writing by pid " + ", ".join(map(str, pids)))
    in_window = [c for c in fam.completions if c.seen_in_window]
    if in_window and not fam.open_by:
        # each save that appeared between two samples needs that many bytes through the
        # tree's write() calls around then; a neighbour job saving into the same place
        # at another moment does not get them from this tree
        theirs = [c for c in in_window if c.tree_wrote is not None and c.tree_wrote < c.size_bytes]
        if theirs and len(theirs) == len(in_window):
            fam.score = 0
            c = theirs[-1]
            ev.append(f"{len(theirs)} completed while watched, but the tree wrote only {c.tree_wrote} bytes in the "
                      f"samples around the moment {os.path.basename(c.path.rstrip('/'))} ({c.size_bytes} bytes) "
                      "appeared: another process writes these")
            return
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
    elif fam.completions and not fam.open_by and _data_shards(fam):
        fam.score = 0
        ev.append("data shards, not checkpoints (their names say data and nothing of a model or a step): "
                  "the job's input")
    elif fam.completions and not fam.open_by:
        fam.score = 0   # every version predates the process: an earlier run's files, or unrelated ones
        read = [c for c in fam.completions if c.read_ns and c.read_ns >= root_start_ns]
        numbered = [c for c in fam.completions if index_of(c.numbers)[0] is not None]
        framework = [c for c in fam.completions if c.layout not in ("file", "directory", "keras")]
        why = []
        if len(numbered) >= 2:
            why.append(f"a numbered series of {len(numbered)}")
        if framework:
            why.append(f"the {framework[0].layout} layout")
        if read:
            fam.read_since_start = True
            why.append(f"{os.path.basename(read[-1].path.rstrip('/'))} was read after this process started "
                       "(its atime): the job resumed from it")
        if not why and _CKPT_PLACE.search(os.path.basename(os.path.dirname(fam.key.rstrip("/")))):
            fam.weak_history = True
            why.append(f"it lies in {os.path.basename(os.path.dirname(fam.key.rstrip('/')))}/, "
                       "a directory named for checkpoints")
        if why:
            fam.earlier_run = True
            fam.weak_history = fam.weak_history or not (read or framework)   # a series the job may not resume
            ev.append("written before this process started ("
                      + ("an earlier run's, not seen read by this one" if fam.weak_history
                         else "a resumed job's earlier run") + "): " + "; ".join(why))
        else:
            ev.append("all files predate the process (an earlier run's?)")


def _tree_wrote(samples: List[dict], a: int, b: int) -> Optional[int]:
    """Bytes the tree's processes passed to write() (wchar) from sample ``a`` to
    sample ``b`` (a process new since ``a``: all it wrote); None when not sampled."""
    a = max(0, a)
    if b <= a or b >= len(samples):
        return None
    before = {(k, p.get("start_ticks")): p.get("wc") for k, p in (samples[a].get("procs") or {}).items()}
    total, seen = 0, False
    for k, p in (samples[b].get("procs") or {}).items():
        wc = p.get("wc")
        if wc is None:
            continue
        seen = True
        w0 = before.get((k, p.get("start_ticks")))
        total += wc - w0 if w0 is not None and w0 <= wc else wc
    return total if seen else None


def _late_ctime_basis(mtime_ns: int, ctime_ns: int, done_ns: int) -> str:
    if done_ns == mtime_ns and ctime_ns > mtime_ns:
        return (f"its mtime: its ctime is {(ctime_ns - mtime_ns) / 1e9:.0f} s later, a later metadata change "
                "(a copy keeping the times, chmod, utime), not the save")
    return ""


_DATA_WORD = re.compile(r"(?<![a-z])(shard|part|chunk|train|val|valid|test|data|dataset|tokens?)(?![a-z])",
                        re.IGNORECASE)
_MODEL_WORD = re.compile(r"(ckpt|checkpoint|model|weight|state|step|epoch|iter|optim|snapshot|save)", re.IGNORECASE)


def _data_shards(fam: Family) -> bool:
    """A series like ``shard_000012.bin``, ``train-00003.npz``, ``part-0001.bin``
    (files named for data and for nothing of a model): the job's input, which it
    reads, not an earlier run's checkpoints."""
    names = [os.path.basename(c.path.rstrip("/")) for c in fam.completions]
    return bool(names) and all(_DATA_WORD.search(n) and not _MODEL_WORD.search(n) for n in names)


def _saved_together(families: Dict[str, Family]) -> None:
    """Checkpoint files older than the process that one save wrote together
    (``model.pt`` + ``optimizer.pt``, completed within SAVE_GROUP_NS of each
    other in one directory) are an earlier run's checkpoint: pretrained
    weights come as one file, a training save carries its optimizer state
    beside the model."""
    old: Dict[str, List[Family]] = {}
    for f in families.values():
        if f.completions and not f.open_by and f.score == 0 and not any(c.seen_in_window for c in f.completions):
            old.setdefault(os.path.dirname(f.key.rstrip("/")), []).append(f)
    for group in old.values():
        for f in group:
            if f.earlier_run:
                continue
            mates = [g for g in group if g is not f
                     and abs(g.newest.completed_ns - f.newest.completed_ns) <= SAVE_GROUP_NS]
            if mates:
                f.earlier_run = f.weak_history = True
                names = ", ".join(os.path.basename(g.newest.path.rstrip("/")) for g in mates[:3])
                f.evidence.append(f"written before this process started (an earlier run's checkpoint): saved "
                                  f"together with {names} (within {SAVE_GROUP_NS // 10**9} s), as one training "
                                  "save writes its model and optimizer state")


def _cadence(fam: Optional[Family], figures: Optional[SeriesFigures]) -> Tuple[Optional[float], str]:
    if fam is None:
        return None, "no checkpoint found"
    if figures is not None and figures.cadence_s is not None:
        return figures.cadence_s, figures.cadence_basis
    if not fam.completions:
        return None, "no complete checkpoint of this series yet"
    floor = figures.cadence_floor_s if figures else None
    return None, ("only one save of this series on disk or seen: no interval yet"
                  + (f"; the interval is at least {floor:.0f} s (the newest is that old)" if floor else ""))


def _series_for(path: str, families: Dict[str, Family]) -> Optional[Family]:
    """The series a file being written belongs to: its own family, the family of
    its final name, or the series in the same directory it was adopted by."""
    name = os.path.basename(path)
    for key in (family_key(path), family_key(os.path.join(os.path.dirname(path), final_name(name)))):
        fam = families.get(key)
        if fam is not None and fam.completions:
            return fam
    for fam in families.values():
        if path in fam.writing and fam.completions:
            return fam
    # A write under an unrelated name (mkstemp's tmpXXXX) beside a series: the
    # series in its directory that is the job's, or that it resumed from.
    here = [f for f in families.values() if f.completions and (f.score > 0 or f.earlier_run)
            and os.path.dirname(f.key.rstrip("/")) == os.path.dirname(path)]
    if here:
        return max(here, key=lambda f: (f.score, len(f.completions), f.newest.completed_ns))
    return families.get(family_key(path))


def _fill_from_series(p: PartialFile, fam: Optional[Family], root_start_ns: int, as_of_ns: int,
                      meta: Dict[str, dict]) -> None:
    """Expected size, ETA and final name of a write, from the series it belongs to."""
    if fam is None or not fam.completions:
        return
    fig = series_figures(fam, root_start_ns, as_of_ns, meta)
    p.series = fam.key
    done = [c for c in fam.completions if c.path.rstrip("/") != p.path.rstrip("/")]
    if fig.expected_size_bytes:
        p.expected_size_bytes = fig.expected_size_bytes
        p.expected_basis = fig.expected_basis
        p.expected_sources = fig.expected_sources
        p.progress_pct = min(100.0, 100.0 * p.bytes_written / p.expected_size_bytes)
        p.eta_s = write_eta(p.bytes_written, p.expected_size_bytes, p.write_rate_bps)
    if done:
        p.survives = max(done, key=lambda c: c.completed_ns).path
    own = p.final_name or p.path
    fits = family_key(own.rstrip("/")) == fam.key.rstrip("/") or dir_family_key(own.rstrip("/")) == fam.key
    if not fits and fig.next_name:
        if p.temp_and_rename and p.kind == "file":
            p.temp_basis = "temporary name: the file is renamed into place once complete"
        p.final_name = fig.next_name
        p.final_name_basis = ("the series' pattern: " + fig.next_name_basis
                              + (f" (its own name {os.path.basename(own.rstrip('/'))} is temporary)"
                                 if own != p.path or is_temp_name(os.path.basename(p.path)) else ""))


def _partial_files(samples: List[dict], versions: Dict[str, List[dict]], families: Dict[str, Family],
                   rename_calls: Dict[int, int], inflight: Iterable[dict], dirs: Dict[str, DirState],
                   root_start_ns: int, as_of_ns: int, meta: Dict[str, dict]) -> List[PartialFile]:
    """Files open for writing at the last sample that a kill would leave half-written."""
    last = samples[-1]
    inflight_by_path = {r["path"]: r for r in inflight if r.get("path")}
    out: List[PartialFile] = []
    seen = set()
    rows = write_fds(last)
    # An fsync/write in flight on a file that the fd sample did not list (closed fd race).
    for r in inflight_by_path.values():
        if not any(w.path == r["path"] for w in rows):
            rows.append(WriteFd(r["pid"], r.get("fd", -1), r["path"], None, r.get("flags") or O_WRONLY,
                                r.get("size")))
    for pid, fd, path, pos, flags, size in rows:
        name = os.path.basename(path)
        if path in seen or not path.startswith("/") or path.startswith(SYSTEM_PREFIXES) \
                or path.endswith(" (deleted)") or is_log_name(name) or (flags or 0) & O_APPEND:
            continue
        if fd in (1, 2) and not is_checkpoint_name(name):
            continue        # stdout/stderr redirected to a file: the job's output, not a save
        if _inside(path, dirs):
            continue        # reported as its directory checkpoint
        size = size if size is not None else pos
        if size is None:
            continue
        grown = _growth(samples, path)
        ckpt = is_checkpoint_name(name)
        if not (ckpt or is_temp_name(name) or size >= LARGE_BYTES or grown[0] >= GROWTH_BYTES
                or path in inflight_by_path):
            continue
        seen.add(path)
        p = PartialFile(path=path, pid=pid, fd=fd, bytes_written=int(size), is_checkpoint=ckpt,
                        layout=file_layout(final_name(name)))
        if path in inflight_by_path:
            r = inflight_by_path[path]
            p.in_flight = f"{r['syscall']} in progress for {r['for_ns'] / 1e6:.0f} ms"
        if grown[1] > 0 and grown[0] > 0:
            p.write_rate_bps = grown[0] / grown[1]
        fam = _series_for(path, families)
        same_path_done = [c for c in fam.completions if c.path == path] if fam else []
        if is_temp_name(name):
            p.temp_and_rename = True
            p.temp_basis = f"temporary name; the final name would be {final_name(name)}"
            p.final_name = os.path.join(os.path.dirname(path), final_name(name))
            p.final_name_basis = "its temporary name without the temporary decoration"
        elif any(c.via_new_inode for c in (fam.completions if fam else [])):
            p.temp_and_rename = True
            p.temp_basis = "earlier versions appeared by rename (new inode at the final path)"
        else:
            p.temp_and_rename = False
            renames = rename_calls.get(pid, 0)
            p.temp_basis = ("written under its final name" +
                            (f" (pid {pid} made {renames} rename call(s), not for this file)" if renames else ""))
            p.final_name = path
            p.final_name_basis = "written under its final name"
        _fill_from_series(p, fam, root_start_ns, as_of_ns, meta)
        # Rewriting a path that held a complete checkpoint: that one is gone already.
        p.overwrites_previous = bool(same_path_done) and not p.temp_and_rename
        if p.overwrites_previous:
            p.survives = None if not [c for c in fam.completions if c.path != path] else p.survives
        out.append(p)
    return out


def _growth(samples: List[dict], path: str) -> Tuple[int, float]:
    """(bytes grown, seconds) of ``path`` over the samples where it was seen."""
    pts = [(s["t_ns"], file_stat(s["files"][path]).size) for s in samples if path in s.get("files", {})]
    if len(pts) < 2:
        pts = [(s["t_ns"], w.size) for s in samples for w in write_fds(s)
               if w.path == path and w.size is not None]
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
