"""The kill-preview sampler: one job's process tree and the files it works on, every ~0.25 s.

Why it exists: what a kill loses is measured against the job's checkpoints,
and a checkpoint is only visible over time (a temporary growing, then renamed
into place; a file's size and ctime changing; the cadence between saves).
The start/end snapshots cannot show that, and the kernel probes do not follow
file names, so this sampler records, per tick, each process's CPU/RSS/IO
counters (/proc/PID/stat and io), the regular files the tree holds open for
writing (fd + fdinfo), and the checkpoint-like and temporary files in the
directories the job works in (stat only).

Collection only: it reads /proc and stat()s local files, never prints and
never decides.  Its samples are plain dicts because they go into the
Recording as they are (``metadata.kill_preview["observations"]``, see
``TreeObserver.to_dict``), so a saved recording is analysed again exactly by
pyimpact.analyse.impact.report.
"""
from __future__ import annotations

import os
import stat as stat_mod
import threading
import time
from collections import deque
from typing import Dict, List, Optional, Tuple

import psutil

from ..names import (O_APPEND, is_checkpoint_name, is_dir_marker, is_log_name, is_numbered_ckpt_dir_name,
                     is_temp_name, looks_like_ckpt_dir_name, writable)
from ..recording import DirStat, FileStat, WriteFd
from .ckpt_scan import LogTails, checkpoint_paths, list_checkpoint_dir, read_small_text, read_trainer_state
from . import procfs
from .procfs import REMOTE_FS_TYPES

SAMPLE_INTERVAL_S = 0.25
MAX_DIRS = 64                 # directories scanned per sample
MAX_ENTRIES_PER_DIR = 5000    # entries looked at per directory
MAX_FILES_PER_DIR = 200       # candidate files kept per directory (newest first)
MAX_FILES_TOTAL = 1000        # candidate files kept per sample
DISCOVER_EVERY = 8            # samples between walks that look for new checkpoint directories
MAX_CKPT_DIRS = 200           # checkpoint directories listed per sample (newest first)
CWD_DEPTH = 4                 # frameworks nest their saves: lightning_logs/version_0/checkpoints/,
                              # runs/detect/train/weights/ (Ultralytics)
RELIST_NEWEST = 3             # the newest checkpoint directories of a parent are listed every sample
MAX_LOGS = 8                  # files the job appends to whose text is read
MAX_SAMPLES = 1200            # per job; older samples are thinned beyond this (live panel)
KEEP_RECENT = 400             # newest samples always kept at full rate
_SKIP_DIRS = {".git", "__pycache__", "node_modules", "site-packages", ".venv", "venv", ".tox",
              ".mypy_cache", ".pytest_cache", "dist-packages"}
_SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/sys", "/dev", "/run", "/boot")
CLK = procfs.CLOCK_TICKS
PAGE = procfs.PAGE_SIZE
_GONE = (psutil.Error, OSError)   # what a /proc read through procfs raises


def stat_fields(pid: int) -> Optional[dict]:
    """The fields of /proc/PID/stat the impact analysis needs (None: gone)."""
    try:
        comm, f = procfs.read_stat(pid)
    except _GONE:
        return None
    field = procfs.stat_field
    return {"comm": comm, "state": f[0].decode(),
            "ppid": field(f, 4), "start_ticks": field(f, 22),
            "cpu_s": (field(f, 14) + field(f, 15)) / CLK, "reaped_cpu_s": (field(f, 16) + field(f, 17)) / CLK,
            "rss": field(f, 24) * PAGE}


def _io(pid: int) -> Tuple[Optional[int], Optional[int], Optional[int]]:
    """(read_bytes, write_bytes, wchar): storage-level bytes, and bytes passed to write()."""
    try:
        kv = procfs.parse_kv(procfs.read(f"/proc/{pid}/io", pid))
        return int(kv[b"read_bytes"]), int(kv[b"write_bytes"]), int(kv[b"wchar"])
    except (psutil.Error, OSError, KeyError, ValueError):
        return None, None, None


def tree_of(root: int) -> List[int]:
    """root and its descendants, now (root first): the procfs tree walk."""
    return procfs.tree_of(root)


def _mounts(who: str = "self") -> List[Tuple[str, str]]:
    """(mount point, fs type), longest first, in the mount namespace of ``who``."""
    out = []
    try:
        owner = os.getpid() if who == "self" else int(who)
        for line in procfs.read(f"/proc/{who}/mountinfo", owner).decode("utf-8", "replace").splitlines():
            left, sep, right = line.partition(" - ")
            if sep:
                mp = left.split(" ")[4].replace("\\040", " ")
                out.append((mp, right.split(" ", 1)[0]))
    except _GONE:
        pass
    return sorted(out, key=lambda m: len(m[0]), reverse=True)


def _is_system_dir(path: str) -> bool:
    return any(path == d or path.startswith(d + "/") for d in _SYSTEM_DIRS)


class TreeObserver:
    """Samples one job (root pid and its descendants): per process CPU/RSS/IO
    counters, the regular files the tree holds open for writing, and the
    checkpoint-like and temporary files in the directories the job works in
    (its cwd, directories named on its command line, directories of files it
    writes, and their subdirectories holding checkpoints).

    Only local file systems are scanned: a stat() on a dead NFS server or a
    FUSE daemon would hang the tool (the FUSE daemon may be the job)."""

    def __init__(self, root: int, start_ticks: Optional[int] = None, interval_s: float = SAMPLE_INTERVAL_S):
        self.root = root
        self.start_ticks = start_ticks
        self.interval_s = interval_s
        self.samples: List[dict] = []
        self.notes: List[str] = []
        self.watch: Dict[str, str] = {}          # directory -> why it is watched
        self._roots: Dict[str, int] = {}         # directory -> depth to walk for checkpoint dirs
        self._prefix = self._root_prefix()
        self._mounts = _mounts(str(root) if self._prefix else "self")
        self._n = 0
        self.gone = False
        self._dir_cache: Dict[str, Tuple[int, int, DirStat]] = {}   # dir -> (mtime, ctime, listing)
        self.meta: Dict[str, dict] = {}          # small framework metadata files, by path
        self._logs = LogTails()
        self.recorded: Optional[dict] = None     # the recorder's checkpoint completions (ckpt_scan)
        self.cwds: Dict[int, str] = {}           # pid -> working directory (a job never runs inside its checkpoint)

    # -- where to look ---------------------------------------------------
    def _root_prefix(self) -> str:
        """'' when the job sees our file system; else /proc/PID/root (a container)."""
        try:
            theirs = procfs.sys_call(self.root, os.readlink, f"/proc/{self.root}/ns/mnt")
            if theirs != procfs.sys_call(os.getpid(), os.readlink, "/proc/self/ns/mnt"):
                self.notes.append("the job runs in another mount namespace: its files are read "
                                  f"through /proc/{self.root}/root")
                return f"/proc/{self.root}/root"
        except _GONE:
            pass
        return ""

    def _fs_type(self, path: str) -> str:
        for mp, fs in self._mounts:
            if path == mp or path.startswith(mp.rstrip("/") + "/"):
                return fs
        return ""

    def _local(self, path: str) -> bool:
        fs = self._fs_type(path)
        return not (fs in REMOTE_FS_TYPES or fs.startswith("fuse."))

    def add_dir(self, path: str, why: str, depth: int = 0) -> None:
        path = os.path.normpath(path)
        if not path.startswith("/") or path == "/" or _is_system_dir(path):
            return
        if not self._local(path):
            note = f"{path} not scanned: it is on {self._fs_type(path)} (a stat could hang)"
            if note not in self.notes:
                self.notes.append(note)
            return
        if depth > self._roots.get(path, -1):
            self._roots[path] = depth
        self.watch.setdefault(path, why)

    def seed(self, cwd_by_pid: Dict[int, str], argv_by_pid: Dict[int, List[str]]) -> None:
        """Initial directories from the start snapshot: cwd (walked CWD_DEPTH
        deep for checkpoint directories) and paths on the command line (1 deep)."""
        for pid, cwd in cwd_by_pid.items():
            if cwd:
                self.cwds[pid] = os.path.normpath(cwd)
                self.add_dir(cwd, f"working directory of pid {pid}", depth=CWD_DEPTH)
        for pid, argv in argv_by_pid.items():
            cwd = cwd_by_pid.get(pid) or "/"
            for arg in argv[1:]:
                for cand in {arg, arg.split("=", 1)[-1]}:
                    if not cand or cand.startswith("-") or len(cand) > 4096:
                        continue
                    path = os.path.normpath(os.path.join(cwd, cand))
                    real = self._prefix + path
                    if _is_system_dir(path) or not self._local(path):
                        continue       # never stat() on a network file system
                    if os.path.isdir(real):
                        self.add_dir(path, f"named on the command line of pid {pid}", depth=1)
                    elif os.path.isfile(real) or (("/" in cand or is_checkpoint_name(cand))
                                                  and os.path.isdir(os.path.dirname(real) or "/")):
                        self.add_dir(os.path.dirname(path), f"holds {os.path.basename(path)} "
                                     f"(command line of pid {pid})", depth=1)

    def _discover(self) -> None:
        """Walk the seeded roots (bounded) for directories holding checkpoint-like files."""
        budget = MAX_DIRS * 4
        for top, depth in list(self._roots.items()):
            queue = deque([(top, 0)])        # breadth first: the budget goes to the shallow levels first
            while queue and budget > 0:
                d, level = queue.popleft()
                if level > 0 and not self._local(d):
                    continue                  # a network or FUSE mount below the cwd: a scandir could hang
                budget -= 1
                try:
                    with os.scandir(self._prefix + d) as it:
                        entries = [e for _, e in zip(range(MAX_ENTRIES_PER_DIR), it)]
                except OSError:
                    continue
                if level > 0 and (any(is_dir_marker(e.name) for e in entries) or (
                        is_numbered_ckpt_dir_name(os.path.basename(d))
                        and any(is_checkpoint_name(e.name) for e in entries))):
                    # d is itself a directory checkpoint (.metadata, trainer_state.json,
                    # checkpoint-N/ of checkpoint files): its parent holds the series
                    self.watch.setdefault(os.path.dirname(d), f"holds checkpoint directories (under {top})")
                    continue
                for e in entries:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            if level < depth and e.name not in _SKIP_DIRS and not e.name.startswith(".") \
                                    and not e.name.endswith(".egg-info"):
                                queue.append((os.path.join(d, e.name), level + 1))
                        elif level > 0 and e.is_file(follow_symlinks=False) and is_checkpoint_name(e.name):
                            self.watch.setdefault(d, f"holds checkpoint-like files (under {top})")
                    except OSError:
                        continue

    # -- one sample ------------------------------------------------------
    def sample(self) -> Optional[dict]:
        """Take one sample now; None once the root has gone."""
        if self.gone:
            return None
        root_stat = stat_fields(self.root)
        if root_stat is None or (self.start_ticks is not None and root_stat["start_ticks"] != self.start_ticks) \
                or root_stat["state"] in ("Z", "X"):
            self.gone = True
            return None
        if self._n % DISCOVER_EVERY == 0:
            self._discover()
        self._n += 1
        procs: Dict[str, dict] = {}
        wfds: List[WriteFd] = []
        for pid in tree_of(self.root):
            st = root_stat if pid == self.root else stat_fields(pid)
            if st is None:
                continue
            st["rb"], st["wb"], st["wc"] = _io(pid)
            procs[str(pid)] = st
            wfds.extend(self._writable_fds(pid))
        # The time the files below are "as of": taken before they are read, so a
        # checkpoint completing during the scan is never credited too early.
        t_ns = time.time_ns()
        files: Dict[str, list] = {}
        for w in wfds:
            st = self._stat(w.path)
            if st is not None:
                files[w.path] = st
        dirs: Dict[str, list] = {}
        open_dirs = {os.path.dirname(w.path) for w in wfds}
        for d in list(self.watch)[:MAX_DIRS]:
            self._scan_dir(d, files)
            self._scan_ckpt_dirs(d, dirs, open_dirs)
        logs = self._read_logs(wfds)
        if len(files) > MAX_FILES_TOTAL:   # keep what the tree writes, then the newest
            keep = {w.path for w in wfds}
            ranked = sorted(files.items(), key=lambda kv: (kv[0] in keep, kv[1].mtime_ns), reverse=True)
            files = dict(ranked[:MAX_FILES_TOTAL])
        sample = {"t_ns": t_ns, "procs": procs, "wfds": wfds, "files": files, "dirs": dirs, "logs": logs}
        self.samples.append(sample)
        if len(self.samples) > MAX_SAMPLES:
            self._thin()
        return sample

    def scan_files(self) -> Dict[str, list]:
        """The candidate files now, without sampling the tree (which may have
        exited): the files the last sample saw open for writing, and the
        checkpoint-like and temporary files in the watched directories.  What
        a stop left on disk is read with this."""
        files: Dict[str, list] = {}
        for w in (self.samples[-1].get("wfds", []) if self.samples else []):
            st = self._stat(w.path)
            if st is not None:
                files[w.path] = st
        for d in list(self.watch)[:MAX_DIRS]:
            self._scan_dir(d, files)
        return files

    def read_memory(self, timeout_s: float = 0.5) -> None:
        """Add PSS and USS (from smaps_rollup) to the latest sample's processes.

        Why PSS too: USS leaves out pages the job's processes share among
        themselves (fork copy-on-write pages of DataLoader workers, shared
        tensors), which a kill of the whole job frees as well; the PSS sum
        counts them, so the RAM freed lies between the two sums.  smaps_rollup
        takes the target's mmap lock, so it is read in a worker thread under a
        deadline: a process stuck holding that lock cannot stick the tool."""
        if not self.samples:
            return
        procs = self.samples[-1]["procs"]
        result: Dict[str, Tuple[int, int]] = {}

        def work() -> None:
            for pid in list(procs):
                try:
                    pss = uss = 0
                    for line in procfs.read(f"/proc/{pid}/smaps_rollup", pid).splitlines():
                        if line.startswith(b"Pss:"):
                            pss = int(line.split()[1]) * 1024
                        elif line.startswith(b"Private_"):
                            uss += int(line.split()[1]) * 1024
                    result[pid] = (pss, uss)
                except (psutil.Error, OSError, ValueError, IndexError):
                    continue

        t = threading.Thread(target=work, daemon=True)
        t.start()
        t.join(timeout_s)
        for pid, (pss, uss) in list(result.items()):
            procs[pid]["pss"], procs[pid]["uss"] = pss, uss
        if t.is_alive():
            self.notes.append("memory maps of some processes could not be read in time (a process holds "
                              "its mmap lock): PSS is incomplete")

    def _thin(self) -> None:
        """Bound memory in long live sessions: keep the first sample and the
        newest KEEP_RECENT at full rate, every other one of those between."""
        s = self.samples
        middle = s[1:-KEEP_RECENT]
        self.samples = s[:1] + middle[::2] + s[-KEEP_RECENT:]

    def _writable_fds(self, pid: int) -> List[list]:
        out = []
        base = f"/proc/{pid}/fd"
        try:
            names = procfs.sys_call(pid, os.listdir, base)
        except _GONE:
            return out
        for name in names:
            try:
                target = procfs.sys_call(pid, os.readlink, f"{base}/{name}")
            except _GONE:
                continue
            if not target.startswith("/") or target.startswith(("/dev/", "/proc/", "/sys/")):
                continue
            try:
                kv = procfs.parse_kv(procfs.read(f"/proc/{pid}/fdinfo/{name}", pid))
                flags, pos = int(kv[b"flags"], 8), int(kv[b"pos"])
            except (psutil.Error, OSError, KeyError, ValueError):
                continue
            if not writable(flags):
                continue
            size = None
            if not target.endswith(" (deleted)") and self._local(target):
                try:
                    st = procfs.sys_call(pid, os.stat, f"{base}/{name}")
                    size = st.st_size if stat_mod.S_ISREG(st.st_mode) else None
                    if size is None:
                        continue
                except _GONE:
                    continue
                d = os.path.dirname(target)
                name_only = os.path.basename(target)
                if d not in self.watch and not is_log_name(name_only) and int(name) > 2:
                    self.add_dir(d, f"a file in it is open for writing by pid {pid}")
                    if is_numbered_ckpt_dir_name(os.path.basename(d)):
                        self.add_dir(os.path.dirname(d), f"holds {os.path.basename(d)}, in which pid {pid} "
                                     "writes")
            out.append(WriteFd(pid, int(name), target, pos, flags, size))
        return out

    def _stat(self, path: str) -> Optional[list]:
        if path.endswith(" (deleted)") or not self._local(path):
            return None
        try:
            st = os.stat(self._prefix + path, follow_symlinks=False)
        except OSError:
            return None
        if not stat_mod.S_ISREG(st.st_mode):
            return None
        return FileStat(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_atime_ns)

    def _scan_dir(self, d: str, files: Dict[str, list]) -> None:
        found = []
        try:
            with os.scandir(self._prefix + d) as it:
                for _, e in zip(range(MAX_ENTRIES_PER_DIR), it):
                    if not (is_checkpoint_name(e.name) or is_temp_name(e.name)) or is_log_name(e.name):
                        continue
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if stat_mod.S_ISREG(st.st_mode):
                        found.append((os.path.join(d, e.name),
                                      FileStat(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_atime_ns)))
        except OSError:
            return
        found.sort(key=lambda x: x[1].mtime_ns, reverse=True)
        for path, st in found[:MAX_FILES_PER_DIR]:
            files[path] = st

    def _scan_ckpt_dirs(self, d: str, dirs: Dict[str, list], open_dirs: set) -> None:
        """Directory checkpoints in ``d`` (checkpoint-N/, global_stepN/, step
        directories...) with their size, times and entry names; and the small
        metadata files beside them (DeepSpeed ``latest``, TF ``checkpoint``).
        A directory is listed again when it changed, when the tree writes in it,
        or when it is among the newest; older ones come from the cache."""
        cands = []
        try:
            with os.scandir(self._prefix + d) as it:
                for _, e in zip(range(MAX_ENTRIES_PER_DIR), it):
                    try:
                        if e.is_dir(follow_symlinks=False) and looks_like_ckpt_dir_name(e.name):
                            st = e.stat(follow_symlinks=False)
                            cands.append((st.st_mtime_ns, st.st_ctime_ns, os.path.join(d, e.name)))
                        elif e.name in ("latest", "checkpoint") and e.is_file(follow_symlinks=False):
                            self._meta_text(os.path.join(d, e.name))
                    except OSError:
                        continue
        except OSError:
            return
        cands.sort(reverse=True)
        for i, (mt, ct, path) in enumerate(cands[:MAX_CKPT_DIRS]):
            cached = self._dir_cache.get(path)
            fresh = (cached is None or cached[0] != mt or cached[1] != ct or i < RELIST_NEWEST
                     or any(o == path or o.startswith(path + "/") for o in open_dirs))
            if fresh:
                listing = list_checkpoint_dir(self._prefix + path)
                if listing is None:
                    continue
                self._dir_cache[path] = (mt, ct, listing)
            else:
                listing = cached[2]
            names = listing.names
            marked = any(is_dir_marker(n.rsplit("/", 1)[-1]) for n in names)
            if not (marked or (is_numbered_ckpt_dir_name(os.path.basename(path))
                               and any(is_checkpoint_name(n) for n in names if "/" not in n))):
                continue    # a plain directory checkpoint holds its checkpoint files itself
            if any(c == path or c.startswith(path + "/") for c in self.cwds.values()):
                continue    # the job works in it (run7_epoch/): a place, not one checkpoint
            dirs[path] = listing
            if "trainer_state.json" in names:
                key = os.path.join(path, "trainer_state.json")
                if key not in self.meta or fresh:
                    got = read_trainer_state(self._prefix + key)
                    if got is not None:
                        self.meta[key] = got

    def _meta_text(self, path: str) -> None:
        got = read_small_text(self._prefix + path)
        if got is not None:
            self.meta[path] = got

    def _read_logs(self, wfds: List[WriteFd]) -> Dict[str, list]:
        """The text the tree appended to its logs since the last sample:
        regular files it writes through stdout/stderr, opened for append, or
        named like logs (checkpoints and temporaries excluded)."""
        out: Dict[str, list] = {}
        for pid, fd, path, pos, flags, size in wfds:
            if len(out) >= MAX_LOGS or path in out or size is None or path.endswith(" (deleted)"):
                continue
            name = os.path.basename(path)
            if is_checkpoint_name(name) and not is_log_name(name):
                continue
            if not (fd in (1, 2) or (flags or 0) & O_APPEND or is_log_name(name)):
                continue
            first = path not in self._logs.heads
            got = self._logs.read(path, self._prefix + path)
            if got is not None:
                out[path] = got
                self._dirs_named_in_log(pid, path, (self._logs.heads.get(path, "") if first else "") + got.text)
        return out

    def _dirs_named_in_log(self, pid: int, log: str, text: str) -> None:
        """Watch the directories of the checkpoints the job names in its output
        ("saved checkpoint to /data/run7/ckpt-1200.pt"): a job that saves
        outside its working directory, to a path taken from a config file or
        the environment, says where in its log.  A relative path is the job's,
        to the writer's working directory."""
        named = checkpoint_paths(text)
        if not named:
            return
        cwd = self.cwds.get(pid)
        if cwd is None:
            try:
                cwd = self.cwds[pid] = os.path.normpath(procfs.sys_call(pid, os.readlink, f"/proc/{pid}/cwd"))
            except _GONE:
                cwd = None
        for p in named:
            if not p.startswith("/"):
                if cwd is None or p.startswith("~"):
                    continue
                p = os.path.join(cwd, p)
            d = os.path.dirname(os.path.normpath(p))
            if is_numbered_ckpt_dir_name(os.path.basename(d)):
                d = os.path.dirname(d)       # a file of checkpoint-500/: the series is beside it
            if d not in self.watch and len(self.watch) < MAX_DIRS:
                self.add_dir(d, f"named in the job's output ({os.path.basename(log)}): "
                             f"{os.path.basename(os.path.normpath(p))}")

    def to_dict(self) -> dict:
        return {"root": self.root, "start_ticks": self.start_ticks, "interval_s": self.interval_s,
                "samples": self.samples, "watched": sorted(self.watch),
                "watch_reasons": dict(self.watch), "notes": list(self.notes),
                "meta": dict(self.meta), "log_heads": dict(self._logs.heads),
                "utc_offset_s": time.localtime().tm_gmtoff, "recorded": self.recorded}


def seed_from_snapshot(obs: TreeObserver, snap) -> None:
    """Give the observer the cwd and argv of every process of the tree."""
    if snap is None:
        return
    cwd = {pid: p.cwd for pid, p in snap.processes.items() if p.cwd}
    argv = {pid: p.cmdline for pid, p in snap.processes.items() if p.cmdline}
    obs.seed(cwd, argv)
