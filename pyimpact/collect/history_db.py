"""The recorder's history database: SQLite in WAL mode, one file, documented schema.

Why SQLite (and not DuckDB): it ships with Python (no dependency for a
service that must run for days), WAL mode makes each committed flush
durable and a kill -9 lose at most the uncommitted tail, a reader (another
pyimpact command, the sqlite3 shell, pandas, Grafana's SQLite plugin) reads
while the recorder writes without blocking it, and the workload is many small
appends plus narrow look-ups by pid and time, which a row store with indexes
does well. DuckDB is faster for big scans but allows one writing process and
no concurrent reader of a file another process has open for writing.

The schema (also in docs/history.md; bump SCHEMA_VERSION on any change):

  meta(key PRIMARY KEY, value)                 schema_version, created_ns, host, boot_id
  runs(id, started_ns, ended_ns, pid, boot_id, tool_version, lost, signals_coalesced)
                                               one row per recorder start; ended_ns NULL = still
                                               running or killed; lost = ring-buffer records lost;
                                               signals_coalesced = signals counted, not stored one by one
  jobs(id, key UNIQUE, kind, root_pid, root_start_ticks, sched_id, session, cgroup, uid,
       command, first_ns, last_ns, ended_ns)   kind: sched (scheduler job id) | tree (a process
                                               tree under a shell, init or a service manager)
  processes(id, boot_id, pid, start_ticks, ppid, parent_id, parent_known, fork_ns, exec_ns,
            exit_ns, exit_code, exit_signal, comm, exe, cmdline, uid, sid, pgid, cgroup,
            job_id, UNIQUE(boot_id, pid, start_ticks))
                                               ppid/parent_id: the ORIGINAL parent (from the fork
                                               event; parent_known = 0 when the process predates
                                               the recorder and its parent then was read instead)
  files(id, t_ns, kind, pid, proc_id, job_id, path, old_path, size)
                                               kind: rename | close | fsync (completions of large or
                                               checkpoint-like files)
  signals(id, t_ns, sig, sender_pid, sender_comm, sender_proc_id, target_pid, target_proc_id,
          result, code, repeats)            repeats: signals of the same sender, target and number
                                               before this one that were not stored one by one (the
                                               kernel side keeps the first 4 a second of each)
  job_samples(t_ns, job_id, nprocs, cpu_s, rss_bytes, gpu_mem_bytes, gpu_util_pct)
                                               every interval: cpu_s = CPU seconds used in it
  proc_samples(t_ns, proc_id, cpu_s, rss_bytes)  processes that used CPU in the interval
  gpu_devices(t_ns, device, name, uuid, util_pct, mem_util_pct, mem_used, mem_total)
  gpu_procs(t_ns, device, pid, proc_id, job_id, mem_bytes, sm_util_pct, mem_util_pct)
  gpu_status(t_ns, available, reason)          on each change of NVML availability

Times are wall-clock ns; start_ticks is field 22 of /proc/PID/stat (clock
ticks since boot), which with boot_id identifies a process across pid reuse.
The file is created 0600 (it names every command run on the machine), in a
directory that must belong to us (or root) and be writable by nobody else;
it and its -wal/-shm side files are opened O_NOFOLLOW relative to that
directory and checked (ours, regular, one name), and the files SQLite then
opens by name are checked to be those inodes (see ``_open_private``).
"""
from __future__ import annotations

import errno
import json
import os
import sqlite3
import stat
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import InputError, OutputError

SCHEMA_VERSION = 2
DEFAULT_DB = "/var/lib/pyimpact/history.db"
PIDFILE_NAME = "recorder.pid"       # beside the database: "PID DBPATH", for finding a running recorder
RUNTIME_POINTER = "/run/pyimpact/recorder"   # the running recorder's database path

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs(id INTEGER PRIMARY KEY, started_ns INTEGER, ended_ns INTEGER, pid INTEGER,
    boot_id TEXT, tool_version TEXT, lost INTEGER DEFAULT 0, signals_coalesced INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS jobs(id INTEGER PRIMARY KEY, key TEXT UNIQUE, kind TEXT, root_pid INTEGER,
    root_start_ticks INTEGER, sched_id TEXT, session INTEGER, cgroup TEXT, uid INTEGER, command TEXT,
    first_ns INTEGER, last_ns INTEGER, ended_ns INTEGER);
CREATE TABLE IF NOT EXISTS processes(id INTEGER PRIMARY KEY, boot_id TEXT, pid INTEGER, start_ticks INTEGER,
    ppid INTEGER, parent_id INTEGER, parent_known INTEGER, fork_ns INTEGER, exec_ns INTEGER, exit_ns INTEGER,
    exit_code INTEGER, exit_signal INTEGER, comm TEXT, exe TEXT, cmdline TEXT, uid INTEGER, sid INTEGER,
    pgid INTEGER, cgroup TEXT, job_id INTEGER, UNIQUE(boot_id, pid, start_ticks));
CREATE INDEX IF NOT EXISTS processes_pid ON processes(pid);
CREATE INDEX IF NOT EXISTS processes_job ON processes(job_id);
CREATE INDEX IF NOT EXISTS processes_parent ON processes(parent_id);
CREATE TABLE IF NOT EXISTS files(id INTEGER PRIMARY KEY, t_ns INTEGER, kind TEXT, pid INTEGER, proc_id INTEGER,
    job_id INTEGER, path TEXT, old_path TEXT, size INTEGER);
CREATE INDEX IF NOT EXISTS files_job ON files(job_id, t_ns);
CREATE INDEX IF NOT EXISTS files_t ON files(t_ns);
CREATE TABLE IF NOT EXISTS signals(id INTEGER PRIMARY KEY, t_ns INTEGER, sig INTEGER, sender_pid INTEGER,
    sender_comm TEXT, sender_proc_id INTEGER, target_pid INTEGER, target_proc_id INTEGER, result INTEGER,
    code INTEGER, repeats INTEGER DEFAULT 0);
CREATE INDEX IF NOT EXISTS signals_target ON signals(target_pid, t_ns);
CREATE INDEX IF NOT EXISTS signals_t ON signals(t_ns);
CREATE TABLE IF NOT EXISTS job_samples(t_ns INTEGER, job_id INTEGER, nprocs INTEGER, cpu_s REAL,
    rss_bytes INTEGER, gpu_mem_bytes INTEGER, gpu_util_pct REAL);
CREATE INDEX IF NOT EXISTS job_samples_t ON job_samples(t_ns);
CREATE TABLE IF NOT EXISTS proc_samples(t_ns INTEGER, proc_id INTEGER, cpu_s REAL, rss_bytes INTEGER);
CREATE INDEX IF NOT EXISTS proc_samples_t ON proc_samples(t_ns);
CREATE INDEX IF NOT EXISTS proc_samples_proc ON proc_samples(proc_id);
CREATE TABLE IF NOT EXISTS gpu_devices(t_ns INTEGER, device INTEGER, name TEXT, uuid TEXT, util_pct REAL,
    mem_util_pct REAL, mem_used INTEGER, mem_total INTEGER);
CREATE INDEX IF NOT EXISTS gpu_devices_t ON gpu_devices(t_ns);
CREATE TABLE IF NOT EXISTS gpu_procs(t_ns INTEGER, device INTEGER, pid INTEGER, proc_id INTEGER, job_id INTEGER,
    mem_bytes INTEGER, sm_util_pct REAL, mem_util_pct REAL);
CREATE INDEX IF NOT EXISTS gpu_procs_t ON gpu_procs(t_ns);
CREATE TABLE IF NOT EXISTS gpu_status(t_ns INTEGER, available INTEGER, reason TEXT);
"""

#: tables trimmed by age, with their time column
TIMED_TABLES = {"files": "t_ns", "signals": "t_ns", "job_samples": "t_ns", "proc_samples": "t_ns",
                "gpu_devices": "t_ns", "gpu_procs": "t_ns", "gpu_status": "t_ns"}


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


SIDE_SUFFIXES = ("-wal", "-shm")      # SQLite's WAL-mode side files, opened by SQLite by name


def _refuse(path: str, why: str, hint: str = "give --db a path in a directory only you can write") -> OutputError:
    return OutputError(f"refusing to write the history database {path}: {why}", hint)


def _open_directory(path: str, directory: str) -> int:
    """The database's directory, opened without following a symlink in its last
    component (created 0700 when missing) and checked: owned by us or root and
    writable by nobody else. SQLite opens the side files by name; in a
    directory only we can write, nobody can swap a name between our check and
    its open."""
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _refuse(path, f"its directory {directory} is a symlink or not a directory") from None
        raise
    st = os.fstat(dfd)
    if st.st_uid not in (os.geteuid(), 0):
        os.close(dfd)
        raise _refuse(path, f"its directory {directory} belongs to uid {st.st_uid}")
    if st.st_mode & 0o022:
        os.close(dfd)
        raise _refuse(path, f"its directory {directory} is writable by others (mode {stat.S_IMODE(st.st_mode):o})")
    return dfd


def _check_file(path: str, fd: int) -> os.stat_result:
    """A file we opened (never through a symlink): a regular file of ours, with
    no other name (a hard link to someone else's file), made 0600 through the fd."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(path, "it is not a regular file")
    if st.st_uid != os.geteuid():
        raise _refuse(path, f"it belongs to uid {st.st_uid}", "remove it, or give --db another path")
    if st.st_nlink != 1:
        raise _refuse(path, f"it has {st.st_nlink} names (a hard link)", "remove it, or give --db another path")
    if stat.S_IMODE(st.st_mode) != 0o600:
        os.fchmod(fd, 0o600)
    return st


def _open_private(path: str) -> Tuple[str, Dict[str, os.stat_result]]:
    """Create or open the database file and its side files relative to the
    checked directory (O_NOFOLLOW: a planted symlink is refused, never
    followed), each checked by ``_check_file``. Returns the database's real
    path and the stat of each file opened, by real path, for
    ``_verify_sqlite_files``. Files are created 0600 (SQLite gives
    the side files it creates the database file's mode)."""
    directory, name = os.path.split(os.path.abspath(path))
    if not name or name in (".", ".."):
        raise _refuse(path, "it names a directory")
    dfd = _open_directory(path, directory)
    real_dir = os.path.realpath(directory)
    checked: Dict[str, os.stat_result] = {}
    try:
        for suffix in ("",) + SIDE_SUFFIXES:
            flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if not suffix else 0)
            try:
                fd = os.open(name + suffix, flags, 0o600, dir_fd=dfd)
            except FileNotFoundError:
                continue            # a side file SQLite will create (0600, like the database)
            except OSError as err:
                if err.errno == errno.ELOOP:
                    raise _refuse(path + suffix, "it is a symlink", "remove it") from None
                raise
            try:
                checked[os.path.join(real_dir, name + suffix)] = _check_file(path + suffix, fd)
            finally:
                os.close(fd)
    finally:
        os.close(dfd)
    return os.path.join(real_dir, name), checked


def _verify_sqlite_files(base: str, checked: Dict[str, os.stat_result]) -> None:
    """What SQLite opened by name is what we checked: every descriptor of this
    process on the database or a side file is the same inode as ours, and a
    side file SQLite created is a regular file of ours, 0600, with one name."""
    wanted = set(checked) | {base + s for s in SIDE_SUFFIXES}
    for entry in os.listdir("/proc/self/fd"):
        link = f"/proc/self/fd/{entry}"
        try:
            target = os.readlink(link)
            if target not in wanted:
                continue
            st = os.stat(link)          # the open file itself (the magic link), not a name
        except OSError:
            continue
        mine = checked.get(target)
        if mine is not None and (st.st_dev, st.st_ino) != (mine.st_dev, mine.st_ino):
            raise _refuse(target, "it was replaced while being opened", "look at who writes that directory")
        if mine is None and (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_nlink != 1
                             or stat.S_IMODE(st.st_mode) & 0o077):
            raise _refuse(target, "SQLite's side file is not a private regular file of ours")


def connect(path: str, *, write: bool) -> sqlite3.Connection:
    """A connection to the history at ``path``: the writer creates it (0600, WAL);
    a reader opens it read-only and fails with InputError when it is missing."""
    try:
        if write:
            base, checked = _open_private(path)
            conn = sqlite3.connect(base, timeout=10.0, isolation_level=None, check_same_thread=False)
            try:
                _verify_sqlite_files(base, checked)        # before SQLite writes anything
                conn.execute("PRAGMA journal_mode=WAL")
                _verify_sqlite_files(base, checked)        # the side files WAL mode opened
                conn.execute("PRAGMA synchronous=NORMAL")   # WAL + NORMAL: a commit survives a process crash
                conn.executescript(SCHEMA)
            except BaseException:
                conn.close()
                raise
            return conn
        if not os.path.isfile(path):
            raise InputError(f"no history database at {path}", "start one with: sudo pyimpact record")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0, check_same_thread=False)
        conn.execute("SELECT 1 FROM meta LIMIT 1")
        return conn
    except sqlite3.Error as err:
        cls = OutputError if write else InputError
        raise cls(f"cannot open the history database {path}: {err}") from None
    except OSError as err:
        cls = OutputError if write else InputError
        raise cls(f"cannot open the history database {path}: {err.strerror or err}") from None


def find_default_db(explicit: Optional[str] = None) -> Optional[str]:
    """The database to read: ``explicit``; else the one a running recorder
    announced in RUNTIME_POINTER (if that recorder is alive); else DEFAULT_DB
    if it exists; else None."""
    if explicit:
        return explicit
    try:
        with open(RUNTIME_POINTER) as f:
            pid_text, path = f.read().split("\n", 1)[0].split(" ", 1)
        from . import procfs
        if procfs.exists(int(pid_text)) and os.path.isfile(path):
            return path
    except (OSError, ValueError):
        pass
    return DEFAULT_DB if os.path.isfile(DEFAULT_DB) else None


def _sql_args(args: Sequence[Any]) -> tuple:
    """``args`` with each string made valid UTF-8: a file name from the OS
    keeps an undecodable byte as a lone surrogate (surrogateescape), which
    sqlite refuses (UnicodeEncodeError, and the whole batch is lost); it is
    stored as the visible text ``\\xNN``, as every view shows it."""
    return tuple(_sql_text(a) if isinstance(a, str) and not a.isascii() else a for a in args)


def _sql_text(text: str) -> str:
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:       # a lone surrogate that is no escaped byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


class HistoryWriter:
    """Buffered writes; ``flush()`` commits them in one transaction (the unit
    a crash can lose)."""

    def __init__(self, path: str):
        self.path = path
        self.conn = connect(path, write=True)
        self._pending: List[tuple] = []
        self.rejected = 0
        meta = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("schema_version") == "1":
            # 1 -> 2: signals.repeats and runs.signals_coalesced (signals coalesced in the kernel)
            self.conn.executescript("BEGIN; ALTER TABLE signals ADD COLUMN repeats INTEGER DEFAULT 0; "
                                    "ALTER TABLE runs ADD COLUMN signals_coalesced INTEGER DEFAULT 0; "
                                    "UPDATE meta SET value = '2' WHERE key = 'schema_version'; COMMIT;")
            meta["schema_version"] = "2"
        if "schema_version" in meta and int(meta["schema_version"]) != SCHEMA_VERSION:
            raise OutputError(f"{path} has history schema {meta['schema_version']}, this pyimpact writes "
                              f"{SCHEMA_VERSION}", "give another --db")
        if not meta:
            import socket

            self.conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
                ("schema_version", str(SCHEMA_VERSION)), ("created_ns", str(time.time_ns())),
                ("host", socket.gethostname())])
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('boot_id', ?)", (boot_id(),))

    def execute(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Run now (inside the open transaction if any): for rows whose id is needed."""
        self._begin()
        return self.conn.execute(sql, _sql_args(args))

    def add(self, sql: str, args: Sequence[Any]) -> None:
        """Queue a row; written at the next flush."""
        self._pending.append((sql, _sql_args(args)))

    def _begin(self) -> None:
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN")

    def flush(self) -> None:
        """Commit the queued rows. A row SQLite refuses (a value out of range) is
        dropped and counted in ``rejected``: one bad value never loses the others."""
        self._begin()
        for sql, args in self._pending:
            try:
                self.conn.execute(sql, args)
            except (OverflowError, sqlite3.IntegrityError, sqlite3.InterfaceError):
                self.rejected += 1
        self._pending.clear()
        self.conn.execute("COMMIT")

    def retain(self, max_age_s: float, max_bytes: int, now_ns: Optional[int] = None) -> Dict[str, int]:
        """Delete rows older than ``max_age_s``; then, while the file is over
        ``max_bytes``, the oldest tenth of the time range again. Returns rows
        deleted per table."""
        now_ns = now_ns or time.time_ns()
        deleted: Dict[str, int] = {}
        cutoff = now_ns - int(max_age_s * 1e9)
        for _ in range(20):
            self._begin()
            for table, col in TIMED_TABLES.items():
                n = self.conn.execute(f"DELETE FROM {table} WHERE {col} < ?", (cutoff,)).rowcount
                deleted[table] = deleted.get(table, 0) + max(n, 0)
            # processes and jobs that ended before the cutoff and nothing refers to any more
            self.conn.execute("DELETE FROM processes WHERE exit_ns IS NOT NULL AND exit_ns < ? AND id NOT IN "
                              "(SELECT parent_id FROM processes WHERE parent_id IS NOT NULL AND exit_ns IS NULL)",
                              (cutoff,))
            self.conn.execute("DELETE FROM jobs WHERE ended_ns IS NOT NULL AND ended_ns < ? AND id NOT IN "
                              "(SELECT job_id FROM processes WHERE job_id IS NOT NULL)", (cutoff,))
            self.conn.execute("COMMIT")
            if self.size_bytes() <= max_bytes:
                break
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.conn.execute("VACUUM")
            if self.size_bytes() <= max_bytes:
                break
            oldest = self.conn.execute("SELECT MIN(t_ns) FROM job_samples").fetchone()[0] or cutoff
            # cut the oldest part in proportion to the excess (at least a tenth of what is left)
            excess = 1 - max_bytes / max(1, self.size_bytes())
            frac = min(0.5, max(0.1, excess))
            cutoff = max(cutoff, oldest + max(1, int((now_ns - oldest) * frac)))
        return deleted

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(self.path + suffix)
            except OSError:
                pass
        return total

    def close(self) -> None:
        """Commit what is queued and close; a second call does nothing."""
        if self.conn is None:
            return
        try:
            if self._pending:
                self.flush()
            if self.conn.in_transaction:
                self.conn.execute("COMMIT")
        finally:
            self.conn.close()
            self.conn = None


# ---------------------------------------------------------------------------
# Reading (for diagnose, kill-preview, report, orphans, gpu-report)
# ---------------------------------------------------------------------------

@dataclass
class ProcRecord:
    id: int
    pid: int
    start_ticks: int
    ppid: Optional[int]
    parent_id: Optional[int]
    parent_known: bool
    fork_ns: Optional[int]
    exit_ns: Optional[int]
    exit_code: Optional[int]
    exit_signal: Optional[int]
    comm: str
    cmdline: List[str]
    uid: Optional[int]
    job_id: Optional[int]


_PROC_COLS = ("id, pid, start_ticks, ppid, parent_id, parent_known, fork_ns, exit_ns, exit_code, exit_signal, "
              "comm, cmdline, uid, job_id")


def _proc(row) -> ProcRecord:
    try:
        argv = json.loads(row[11]) if row[11] else []
    except ValueError:
        argv = []
    return ProcRecord(id=row[0], pid=row[1], start_ticks=row[2], ppid=row[3], parent_id=row[4],
                      parent_known=bool(row[5]), fork_ns=row[6], exit_ns=row[7], exit_code=row[8],
                      exit_signal=row[9], comm=row[10] or "", cmdline=argv, uid=row[12], job_id=row[13])


class HistoryReader:
    """Read-only queries over a history database."""

    TICK_SLACK = 2      # fork-event start ticks may differ from /proc's by a tick

    def __init__(self, path: str):
        self.path = path
        self.conn = connect(path, write=False)
        self.boot_id = boot_id()
        self._has_repeats: Optional[bool] = None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "HistoryReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def process(self, pid: int, start_ticks: Optional[int] = None) -> Optional[ProcRecord]:
        """The record of this process (this boot), matched by pid and start time."""
        rows = self.conn.execute(f"SELECT {_PROC_COLS} FROM processes WHERE pid = ? AND boot_id = ? "
                                 "ORDER BY start_ticks DESC", (pid, self.boot_id)).fetchall()
        for row in rows:
            if start_ticks is None or abs(int(row[2] or 0) - int(start_ticks)) <= self.TICK_SLACK:
                return _proc(row)
        return None

    def process_by_id(self, proc_id: Optional[int]) -> Optional[ProcRecord]:
        if proc_id is None:
            return None
        row = self.conn.execute(f"SELECT {_PROC_COLS} FROM processes WHERE id = ?", (proc_id,)).fetchone()
        return _proc(row) if row else None

    def job(self, job_id: Optional[int]) -> Optional[Dict[str, Any]]:
        if job_id is None:
            return None
        row = self.conn.execute("SELECT id, key, kind, root_pid, root_start_ticks, sched_id, session, cgroup, uid, "
                                "command, first_ns, last_ns, ended_ns FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        keys = ("id", "key", "kind", "root_pid", "root_start_ticks", "sched_id", "session", "cgroup", "uid",
                "command", "first_ns", "last_ns", "ended_ns")
        return dict(zip(keys, row))

    def job_members(self, job_id: int) -> List[ProcRecord]:
        rows = self.conn.execute(f"SELECT {_PROC_COLS} FROM processes WHERE job_id = ?", (job_id,)).fetchall()
        return [_proc(r) for r in rows]

    def completions(self, job_id: int, limit: int = 10) -> List[Dict[str, Any]]:
        """The last ``limit`` file completions of a job, newest last."""
        rows = self.conn.execute("SELECT t_ns, kind, pid, path, old_path, size FROM files WHERE job_id = ? "
                                 "ORDER BY t_ns DESC LIMIT ?", (job_id, limit)).fetchall()
        return [dict(zip(("t_ns", "kind", "pid", "path", "old_path", "size"), r)) for r in reversed(rows)]

    def signals_to(self, pids: Sequence[int], before_ns: int, since_ns: int = 0,
                   limit: int = 20) -> List[Dict[str, Any]]:
        if not pids:
            return []
        marks = ",".join("?" * len(pids))
        if self._has_repeats is None:      # schema 1 (an older recorder's file) has no repeats column
            cols = {r[1] for r in self.conn.execute("PRAGMA table_info(signals)").fetchall()}
            self._has_repeats = "repeats" in cols
        rep = "repeats" if self._has_repeats else "0"
        rows = self.conn.execute(f"SELECT t_ns, sig, sender_pid, sender_comm, target_pid, result, code, {rep} FROM "
                                 f"signals WHERE target_pid IN ({marks}) AND t_ns < ? AND t_ns >= ? ORDER BY t_ns "
                                 f"DESC LIMIT ?", (*pids, before_ns, since_ns, limit)).fetchall()
        keys = ("t_ns", "sig", "sender_pid", "sender_comm", "target_pid", "result", "code", "repeats")
        return [dict(zip(keys, r)) for r in reversed(rows)]

    def query(self, sql: str, args: Sequence[Any] = ()) -> List[tuple]:
        return self.conn.execute(sql, args).fetchall()

    def recorder_runs(self) -> List[Dict[str, Any]]:
        rows = self.conn.execute("SELECT id, started_ns, ended_ns, pid, lost FROM runs ORDER BY id").fetchall()
        return [dict(zip(("id", "started_ns", "ended_ns", "pid", "lost"), r)) for r in rows]
