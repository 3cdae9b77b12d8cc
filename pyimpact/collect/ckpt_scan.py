"""Read-only readers for checkpoint directories, framework metadata and job logs.

Why it exists: the checkpoint history of a job is on disk, not only in what
the job does while watched: directory checkpoints (HF Trainer
``checkpoint-N/``, ``torch.distributed.checkpoint``, DeepSpeed, orbax) are
units of many files whose completeness their framework marks with one file;
small metadata files (``trainer_state.json``, DeepSpeed ``latest``, the TF
``checkpoint`` index) say the step and the save interval; and the files the
job appends to (its log, its redirected stdout) carry its step counters.

Collection only: stat(), scandir() and bounded reads; it records facts (entry
names, sizes, times, the text appended to a log) and never decides what they
mean (pyimpact.analyse.impact.ckpt_layouts and pyimpact.analyse.impact.progress do).
"""
from __future__ import annotations

import json
import os
import re
import stat as stat_mod
from typing import Dict, List, Optional

from ..names import is_checkpoint_name, is_dir_marker, is_log_name, is_numbered_ckpt_dir_name
from ..recording import DirStat, LogTail

MAX_DIR_ENTRIES = 256          # entries listed inside one checkpoint directory
MAX_DIR_DEPTH = 2              # orbax nests its items one or two levels down
MAX_NAMES = 64                 # entry names kept per directory (markers first)
META_LIMIT = 4 << 20           # trainer_state.json of a long run holds its whole log history
SMALL_LIMIT = 64 << 10         # DeepSpeed 'latest', TF 'checkpoint'
LOG_HEAD = 8 << 10             # the start of a log: when the job took its first step
LOG_TAIL = 32 << 10            # the end of a log when first seen
LOG_CHUNK = 4 << 10            # the newest part of what was appended between two samples
_HF_KEYS = ("global_step", "save_steps", "max_steps", "epoch", "num_train_epochs", "logging_steps",
            "train_batch_size", "best_model_checkpoint")


def list_checkpoint_dir(real: str) -> Optional[DirStat]:
    """DirStat(total_bytes, newest_mtime_ns, newest_ctime_ns, ino, n_files, names) of
    a directory (its files, MAX_DIR_DEPTH levels down); None if unreadable.
    ``names``: relative names, markers first (bounded)."""
    try:
        top = os.stat(real, follow_symlinks=False)
    except OSError:
        return None
    if not stat_mod.S_ISDIR(top.st_mode):
        return None
    total, mt, ct, n = 0, top.st_mtime_ns, top.st_ctime_ns, 0
    names: List[str] = []
    stack = [(real, "", 0)]
    budget = MAX_DIR_ENTRIES
    while stack and budget > 0:
        d, rel, level = stack.pop()
        try:
            with os.scandir(d) as it:
                entries = [e for _, e in zip(range(budget), it)]
        except OSError:
            continue
        budget -= len(entries)
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            name = rel + e.name
            if stat_mod.S_ISDIR(st.st_mode):
                if level < MAX_DIR_DEPTH:
                    stack.append((e.path, name + "/", level + 1))
                continue
            if not stat_mod.S_ISREG(st.st_mode):
                continue
            total += st.st_size
            mt, ct, n = max(mt, st.st_mtime_ns), max(ct, st.st_ctime_ns), n + 1
            names.append(name)
    names.sort(key=lambda x: (not is_dir_marker(x.rsplit("/", 1)[-1]), x))
    return DirStat(total, mt, ct, top.st_ino, n, names[:MAX_NAMES])


def _read_limited(real: str, limit: int) -> Optional[bytes]:
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat_mod.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_small_text(real: str) -> Optional[dict]:
    """{text, mtime_ns} of a small text file (DeepSpeed ``latest``, TF ``checkpoint``)."""
    try:
        mtime = os.stat(real, follow_symlinks=False).st_mtime_ns
    except OSError:
        return None
    data = _read_limited(real, SMALL_LIMIT)
    if data is None:
        return None
    return {"text": data.decode("utf-8", "replace"), "mtime_ns": mtime}


def read_trainer_state(real: str) -> Optional[dict]:
    """The run-describing scalars of an HF ``trainer_state.json`` (and the
    step of its last log-history entry), or None if unreadable."""
    data = _read_limited(real, META_LIMIT)
    if not data:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return {"error": "not complete JSON (being written, or larger than the read limit)"}
    if not isinstance(doc, dict):
        return None
    out = {k: doc.get(k) for k in _HF_KEYS if isinstance(doc.get(k), (int, float, str)) or doc.get(k) is None}
    hist = doc.get("log_history")
    if isinstance(hist, list) and hist and isinstance(hist[-1], dict):
        out["last_logged_step"] = hist[-1].get("step")
    return out


_TOKEN_SPLIT = re.compile(r"[\s'\"`,;()\[\]{}<>|]+")
MAX_LOG_PATHS = 16             # checkpoint paths taken from one piece of log text


def checkpoint_paths(text: str) -> List[str]:
    """Paths of checkpoints a job names in its output ("saving model checkpoint
    to out/checkpoint-500", "saved /ckpt/step_1200.pt", "Restoring states from
    the checkpoint path at last.ckpt"): the tokens whose last component is a
    checkpoint name or a numbered checkpoint directory, as written (relative
    ones are the job's, to its working directory).  Strings only: nothing is
    opened or stat()ed here."""
    out: List[str] = []
    for tok in _TOKEN_SPLIT.split(text or ""):
        tok = tok.rstrip(".:!").lstrip("=:")
        if "/" not in tok or len(tok) > 1024 or "://" in tok or "\x00" in tok:
            continue
        base = tok.rstrip("/").rsplit("/", 1)[-1]
        if not base or base in (".", ".."):
            continue
        if not (is_checkpoint_name(base) or is_numbered_ckpt_dir_name(base)) or is_log_name(base):
            continue
        if tok not in out:
            out.append(tok)
        if len(out) >= MAX_LOG_PATHS:
            break
    return out


class LogTails:
    """What the job appended to its logs, sample by sample: the head once,
    then the newest bytes appended since the previous sample (bounded), so a
    long watch stores little and every counter update is seen."""

    def __init__(self) -> None:
        self.size: Dict[str, int] = {}
        self.heads: Dict[str, str] = {}

    def read(self, path: str, real: str) -> Optional[LogTail]:
        """LogTail(size, mtime_ns, text appended since the last read (its newest part))."""
        try:
            st = os.stat(real)
        except OSError:
            return None
        if not stat_mod.S_ISREG(st.st_mode):
            return None
        prev = self.size.get(path)
        size = st.st_size
        if prev is not None and size == prev:
            return LogTail(size, st.st_mtime_ns, "")
        if prev is None or size < prev:       # first sight, or truncated and rewritten
            start = max(0, size - LOG_TAIL)
        else:
            start = max(prev, size - LOG_CHUNK)
        text = ""
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                if path not in self.heads:
                    self.heads[path] = os.pread(fd, LOG_HEAD, 0).decode("utf-8", "replace")
                text = os.pread(fd, size - start, start).decode("utf-8", "replace")
            finally:
                os.close(fd)
        except OSError:
            return None
        self.size[path] = size
        return LogTail(size, st.st_mtime_ns, text)


def recorder_history(pid: int, start_ticks: Optional[int], dirs: List[str], limit: int = 200,
                     db: Optional[str] = None) -> dict:
    """Checkpoint completions the recorder (``pyimpact record``) kept: those
    of this process's job, and any in the directories it works in (an earlier
    run's, or a single ``latest.pt`` replaced by rename, which leaves no
    history on disk).  {"available": bool, "reason"/"db", "completions": [...]}."""
    from .history_db import HistoryReader, find_default_db

    try:
        path = find_default_db(db)
    except Exception as exc:  # noqa: BLE001 - any failure only means "no history"
        return {"available": False, "reason": f"history database not readable: {exc}"}
    if not path:
        return {"available": False, "reason": "no recorder history (run `pyimpact record` to keep checkpoint "
                                              "completions and process starts)"}
    out: dict = {"available": True, "db": path, "completions": []}
    try:
        with HistoryReader(path) as r:
            seen = set()
            rows: List[tuple] = []
            me = r.process(pid, start_ticks)
            if me is not None:
                out["process"] = {"fork_ns": me.fork_ns, "job_id": me.job_id}
                if me.job_id is not None:
                    rows += [(c["t_ns"], c["kind"], c["pid"], c["path"], c["old_path"], c["size"])
                             for c in r.completions(me.job_id, limit)]
            for d in dirs[:16]:
                like = d.rstrip("/").replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"
                rows += r.query("SELECT t_ns, kind, pid, path, old_path, size FROM files WHERE path LIKE ? "
                                "ESCAPE '\\' ORDER BY t_ns DESC LIMIT ?", (like, limit))
            for row in rows:
                if row in seen:
                    continue
                seen.add(row)
                out["completions"].append(dict(zip(("t_ns", "kind", "pid", "path", "old_path", "size"), row)))
    except Exception as exc:  # noqa: BLE001 - a locked, old or foreign database: say so, go on
        return {"available": False, "reason": f"history database {path} not readable: {exc}"}
    out["completions"].sort(key=lambda c: c["t_ns"] or 0)
    return out
