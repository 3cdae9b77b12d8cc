"""The machine-wide recorder: rare kernel events and periodic samples into the history DB.

What it keeps (schema in pyimpact/collect/history_db.py):
- every process's ORIGINAL parent (from the fork event, never updated when
  the process is re-parented), its program, command line, session, process
  group, cgroup, and the job it belongs to;
- file completions of large or checkpoint-like files (rename into place, close
  after writing, fsync) and signals with their senders; closes and renames
  come from fanotify (collect/fanotify_files.py), fsyncs from the
  filesystems' own tracepoints, and only where fanotify is unavailable from
  the syscall tracepoints (which cost every syscall on the machine);
- every ``interval_s``: per job CPU seconds, RSS, and per-process GPU memory
  and utilisation from NVML (or one status row saying NVML is unavailable).

Jobs. A job is a scheduler job when a process's allow-listed environment
names one (SLURM_JOB_ID, PBS_JOBID, LSB_JOBID); otherwise a process tree
whose root is a process-group leader: a shell puts each command line in its
own group, a service manager and `setsid` start one, and forked or spawned
workers (multiprocessing, loky, DataLoader) stay in their parent's group. A
process inherits its original parent's job unless it leads a new group when
it execs.

Crash safety: rows are written in one transaction per interval; a kill -9
loses at most the events since the last commit; a restart re-reads /proc,
finds the processes it already knows (by pid and start time) and goes on in
the same database.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import psutil

from .. import __version__
from ..names import is_checkpoint_name
from . import procfs
from .history_db import HistoryWriter, boot_id
from .recorder_probes import RecEvent, RecorderConfig, RecorderProbes

CLK_TCK = procfs.CLOCK_TICKS
PAGE = procfs.PAGE_SIZE
SCHED_ENV_KEYS = ("SLURM_JOB_ID", "SLURM_JOBID", "PBS_JOBID", "LSB_JOBID")
CMDLINE_MAX = 4096
_PF_KTHREAD = procfs.PF_KTHREAD
_GONE = (psutil.Error, OSError)      # what a read through procfs raises (TimeoutError included)


@dataclass
class RecorderSettings:
    db_path: str
    interval_s: float = 10.0
    max_age_s: float = 7 * 86400
    max_bytes: int = 1 << 30
    min_file_bytes: int = 1 << 20
    files: bool = True
    gpu: bool = True
    retention_every_s: float = 3600.0
    file_source: str = "auto"         # auto (fanotify, else syscall tracepoints) | fanotify | syscalls


@dataclass
class _Live:
    """A process the recorder knows is alive."""
    proc_id: int
    start_ticks: int
    job_id: Optional[int]
    cpu_ticks: int = 0
    is_root: bool = False
    ids_known: bool = False     # uid, session, group written (a fork's row gets them at exec or first sample)


def _read(path: str, pid: int, timeout_s: Optional[float] = None) -> Optional[bytes]:
    """A /proc file of ``pid`` through the procfs boundary (None: unreadable);
    under a deadline when ``timeout_s`` (files that take the target's locks)."""
    try:
        if timeout_s is not None:
            return procfs.read_bounded(path, pid, timeout_s)
        return procfs.read(path, pid)
    except _GONE:
        return None


def read_stat(pid: int) -> Optional[dict]:
    try:
        comm, f = procfs.read_stat(pid)
    except _GONE:
        return None
    field = procfs.stat_field
    try:
        return {"comm": comm, "state": f[0].decode(),
                "ppid": field(f, 4), "pgid": field(f, 5), "sid": field(f, 6), "flags": field(f, 9),
                "ticks": field(f, 14) + field(f, 15), "start_ticks": field(f, 22), "rss": field(f, 24) * PAGE}
    except (IndexError, ValueError):
        return None


def _uid(pid: int) -> Optional[int]:
    try:
        return procfs.sys_call(pid, os.stat, f"/proc/{pid}").st_uid
    except _GONE:
        return None


def _cmdline(pid: int) -> List[str]:
    raw = _read(f"/proc/{pid}/cmdline", pid, procfs.CMDLINE_TIMEOUT_S) or b""
    return procfs.parse_argv(raw[:CMDLINE_MAX])


def _cgroup(pid: int) -> str:
    raw = _read(f"/proc/{pid}/cgroup", pid) or b""
    for line in raw.decode("utf-8", "backslashreplace").splitlines():
        if line.startswith("0::"):
            return line[3:]
    return ""


def _sched_id(pid: int) -> Optional[str]:
    """A scheduler job id from the allow-listed environment keys (nothing else is kept)."""
    raw = _read(f"/proc/{pid}/environ", pid, procfs.CMDLINE_TIMEOUT_S)   # takes the mmap lock
    if not raw:
        return None
    for item in raw.split(b"\0"):
        key, _, value = item.partition(b"=")
        k = key.decode("ascii", "replace")
        if k in SCHED_ENV_KEYS and value:
            return f"{k.split('_')[0].lower()}:{value.decode('utf-8', 'backslashreplace')[:64]}"
    return None


class MountTable:
    """dev (kernel major << 20 | minor) -> the mount point of that
    filesystem's root, from /proc/self/mountinfo (re-read when a dev is new)."""

    def __init__(self):
        self._map: Dict[int, str] = {}
        self._read = 0.0

    def _load(self) -> None:
        self._read = time.monotonic()
        out: Dict[int, str] = {}
        for line in (_read("/proc/self/mountinfo", os.getpid()) or b"").decode("utf-8", "backslashreplace").splitlines():
            f = line.split()
            if len(f) < 5:
                continue
            try:
                major, minor = (int(x) for x in f[2].split(":"))
            except ValueError:
                continue
            dev = (major << 20) | minor
            if f[3] == "/" and dev not in out:
                out[dev] = f[4].replace("\\040", " ")
        self._map = out

    def mount_point(self, dev: int) -> Optional[str]:
        if dev not in self._map and time.monotonic() - self._read > 5:
            self._load()
        return self._map.get(dev)


def path_of(ev: RecEvent, mounts: MountTable) -> str:
    parts = [n for n in reversed(ev.names) if n and n != "/"]
    rel = "/".join(parts)
    if ev.truncated:
        return ".../" + rel
    base = mounts.mount_point(ev.a[2])
    if base is None:
        return f"[dev {ev.a[2] >> 20}:{ev.a[2] & 0xFFFFF}]/{rel}"
    return os.path.join(base, rel) if rel else base


def _signed(v: int) -> int:
    """A kernel s64 that travelled as u64 (signal codes such as SI_TKILL are negative)."""
    v = int(v)
    return v - (1 << 64) if v >= 1 << 63 else v


def _resolve(pid: int, dfd: int, name: str) -> str:
    """A rename's path as the process meant it: relative names against its
    cwd or the directory fd (read right after the event; a process that
    changed directory in between is the one case this gets wrong)."""
    if not name or name.startswith("/"):
        return name
    base = f"/proc/{pid}/cwd" if dfd == -100 else f"/proc/{pid}/fd/{dfd}"
    try:
        return os.path.normpath(os.path.join(procfs.sys_call(pid, os.readlink, base), name))
    except _GONE:
        return name


class Recorder:
    """One recorder run. ``run()`` returns when ``should_stop()`` is true."""

    def __init__(self, settings: RecorderSettings, probes: Optional[RecorderProbes] = None, gpu_reader=None,
                 log: Callable[[str], None] = lambda s: None, file_watch=None):
        self.s = settings
        self.log = log
        self.db = HistoryWriter(settings.db_path)
        self.boot = boot_id()
        self.probes = probes
        self.gpu = gpu_reader
        self.file_watch = file_watch      # a FileWatch (fanotify): closes and renames, or None
        self.file_source = "off"          # said in the start line and kept in meta
        self.gone: Dict[int, tuple] = {}  # pid -> (_Live, exit t_ns): file events are read after the exit
        self.mounts = MountTable()
        self.live: Dict[int, _Live] = {}
        self.jobs: Dict[str, int] = {}
        self._gpu_status = None
        self.run_id = None
        self.counts = {"events": 0, "files": 0, "signals": 0, "samples": 0}
        self.own_pid = os.getpid()

    # -- identity -------------------------------------------------------------
    def _job(self, key: str, kind: str, root_pid: int, root_ticks: Optional[int], now_ns: int,
             sched_id=None, session=None, cgroup="", uid=None, command="") -> int:
        jid = self.jobs.get(key)
        if jid is not None:
            return jid
        row = self.db.execute("SELECT id FROM jobs WHERE key = ?", (key,)).fetchone()
        if row:
            jid = row[0]
        else:
            jid = self.db.execute("INSERT INTO jobs(key, kind, root_pid, root_start_ticks, sched_id, session, cgroup,"
                                  " uid, command, first_ns, last_ns) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                                  (key, kind, root_pid, root_ticks, sched_id, session, cgroup, uid, command,
                                   now_ns, now_ns)).lastrowid
        self.jobs[key] = jid
        return jid

    def _tree_job(self, pid: int, ticks: int, st: Optional[dict], now_ns: int, command: str = "",
                  uid: Optional[int] = None) -> int:
        key = f"tree:{self.boot[:8]}:{pid}:{ticks}"
        return self._job(key, "tree", pid, ticks, now_ns, session=st and st["sid"], cgroup=_cgroup(pid),
                         uid=uid if uid is not None else _uid(pid), command=command)

    def _insert_proc(self, pid: int, ticks: int, ppid: Optional[int], parent: Optional[_Live], parent_known: bool,
                     fork_ns: Optional[int], comm: str, st: Optional[dict], cmd: List[str], job_id: Optional[int],
                     is_root: bool) -> _Live:
        row = self.db.execute("SELECT id, job_id FROM processes WHERE boot_id = ? AND pid = ? AND start_ticks "
                              "BETWEEN ? AND ?", (self.boot, pid, ticks - 2, ticks + 2)).fetchone()
        if row:   # known from an earlier run of the recorder: go on with it
            live = _Live(proc_id=row[0], start_ticks=ticks, job_id=row[1] or job_id, is_root=is_root)
        else:
            pid_row = self.db.execute(
                "INSERT INTO processes(boot_id, pid, start_ticks, ppid, parent_id, parent_known, fork_ns, comm, "
                "cmdline, uid, sid, pgid, cgroup, job_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (self.boot, pid, ticks, ppid, parent.proc_id if parent else None, int(parent_known), fork_ns, comm,
                 json.dumps(cmd) if cmd else None, _uid(pid) if st else None, st and st["sid"], st and st["pgid"],
                 _cgroup(pid) if st else None, job_id)).lastrowid
            live = _Live(proc_id=pid_row, start_ticks=ticks, job_id=job_id, is_root=is_root)
        if st:
            live.cpu_ticks = st["ticks"]
            live.ids_known = True
        self.live[pid] = live
        return live

    def _adopt(self, pid: int, st: dict, now_ns: int, depth: int = 0) -> Optional[_Live]:
        """A process found in /proc that no fork event told of (it predates the
        recorder, or its event was lost): its parent now stands for its original one."""
        if st["flags"] & _PF_KTHREAD or pid == 2 or st["ppid"] == 2:
            return None
        known = self.live.get(pid)
        if known and abs(known.start_ticks - st["start_ticks"]) <= 2:
            return known
        parent = None
        if st["ppid"] > 1 and depth < 64:
            pst = read_stat(st["ppid"])
            if pst:
                parent = self._adopt(st["ppid"], pst, now_ns, depth + 1)
        cmd = _cmdline(pid)
        sched = _sched_id(pid)
        leads = pid == st["pgid"] or parent is None or st["ppid"] <= 1
        if sched:
            job = self._job(sched, "sched", pid, st["start_ticks"], now_ns, sched_id=sched, session=st["sid"],
                            cgroup=_cgroup(pid), uid=_uid(pid), command=" ".join(cmd))
        elif leads or parent.job_id is None:
            job = self._tree_job(pid, st["start_ticks"], st, now_ns, " ".join(cmd))
        else:
            job = parent.job_id
        return self._insert_proc(pid, st["start_ticks"], st["ppid"], parent, False, None, st["comm"], st, cmd, job,
                                 leads and not sched)

    # -- events -----------------------------------------------------------------
    def on_event(self, ev: RecEvent) -> None:
        self.counts["events"] += 1
        handler = getattr(self, "_on_" + ev.kind, None)
        if handler is None:
            return
        try:
            handler(ev)
        except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
            # A recorder runs for days: one event it cannot make sense of (a process
            # that vanished mid-read, an odd path) is counted and told, never fatal.
            self._event_error(ev, err)

    def _event_error(self, ev: RecEvent, err: BaseException) -> None:
        self.counts["errors"] = self.counts.get("errors", 0) + 1
        if self.counts["errors"] <= 10:
            self.log(f"pyimpact: recorder: {ev.kind} event of pid {ev.pid} skipped ({type(err).__name__}: {err})")

    def _on_fork(self, ev: RecEvent) -> None:
        child = ev.other
        parent = self.live.get(ev.pid)
        if parent is None:
            pst = read_stat(ev.pid)
            parent = self._adopt(ev.pid, pst, ev.t_ns) if pst else None
        # No /proc read here (forks come in storms): the start time is the event's
        # (same clock as /proc's, within a tick); the rest is read at exec or sample.
        ticks = ev.boot_ns * CLK_TCK // 1_000_000_000
        job = parent.job_id if parent else None
        self._insert_proc(child, ticks, ev.pid, parent, True, ev.t_ns, ev.comm, None, [], job, False)

    def _on_exec(self, ev: RecEvent) -> None:
        pid = ev.pid
        real = read_stat(pid)
        live = self.live.get(pid)
        if live is None:
            if real is None:
                return
            live = self._adopt(pid, real, ev.t_ns)
            if live is None:
                return
        st = real
        if ev.pgid:
            # what the kernel said at exec wins over /proc read later (the process may be gone by now)
            st = dict(real or {"comm": ev.comm})
            st["pgid"], st["sid"] = ev.pgid, ev.sid
        cmd = ev.argv or _cmdline(pid)
        sched = _sched_id(pid)
        job = live.job_id
        if sched:
            job = self._job(sched, "sched", pid, live.start_ticks, ev.t_ns, sched_id=sched,
                            session=st and st["sid"], cgroup=_cgroup(pid), uid=_uid(pid), command=" ".join(cmd))
        elif st and st["pgid"] == pid and not live.is_root:
            job = self._tree_job(pid, live.start_ticks, st, ev.t_ns, " ".join(cmd), ev.uid)
            live.is_root = True
        elif live.is_root and live.job_id is not None:
            self.db.add("UPDATE jobs SET command = ? WHERE id = ? AND root_pid = ?", (" ".join(cmd), live.job_id, pid))
        live.job_id = job
        live.ids_known = True
        self.db.add("UPDATE processes SET exec_ns = ?, exe = ?, comm = ?, cmdline = ?, sid = ?, pgid = ?, "
                    "cgroup = ?, uid = ?, job_id = ? WHERE id = ?",
                    (ev.t_ns, ev.filename, st["comm"] if st else ev.comm, json.dumps(cmd),
                     st and st["sid"], st and st["pgid"], _cgroup(pid), ev.uid if ev.uid is not None else _uid(pid),
                     job, live.proc_id))

    def _on_exit(self, ev: RecEvent) -> None:
        status = ev.aux
        sig = status & 0x7F
        code = (status >> 8) & 0xFF if sig == 0 else None
        live = self.live.pop(ev.pid, None)
        if live is None:
            # Not seen alive by this run (it exited before the first scan reached it, e.g.
            # right after a restart): the newest open record of that pid, if any.
            self.db.add("UPDATE processes SET exit_ns = ?, exit_code = ?, exit_signal = ? WHERE id = (SELECT id "
                        "FROM processes WHERE boot_id = ? AND pid = ? AND exit_ns IS NULL AND start_ticks <= ? "
                        "ORDER BY start_ticks DESC LIMIT 1)",
                        (ev.t_ns, code, sig or None, self.boot, ev.pid, ev.boot_ns * CLK_TCK // 1_000_000_000 + 2))
            return
        self.db.add("UPDATE processes SET exit_ns = ?, exit_code = ?, exit_signal = ? WHERE id = ?",
                    (ev.t_ns, code, sig or None, live.proc_id))
        self.gone[ev.pid] = (live, ev.t_ns)
        if live.is_root and live.job_id is not None:
            self.db.add("UPDATE jobs SET ended_ns = ?, last_ns = ? WHERE id = ? AND root_pid = ?",
                        (ev.t_ns, ev.t_ns, live.job_id, ev.pid))

    def _on_signal(self, ev: RecEvent) -> None:
        sender = self.live.get(ev.pid)
        target = self.live.get(ev.other)
        self.counts["signals"] += 1
        self.db.add("INSERT INTO signals(t_ns, sig, sender_pid, sender_comm, sender_proc_id, target_pid, "
                    "target_proc_id, result, code, repeats) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (ev.t_ns, ev.aux, ev.pid, ev.comm, sender and sender.proc_id, ev.other,
                     target and target.proc_id, ev.ret, _signed(ev.a[0]), int(ev.a[1]) >> 32))

    def _file(self, ev: RecEvent, kind: str, path: str, size: Optional[int], old: Optional[str]) -> None:
        self._file_at(ev.pid, ev.t_ns, kind, path, size, old)

    def _file_at(self, pid: int, t_ns: int, kind: str, path: str, size: Optional[int], old: Optional[str]) -> None:
        live = self.live.get(pid)
        if live is None and pid in self.gone:
            live = self.gone[pid][0]      # it wrote, then exited before the event was read
        self.counts["files"] += 1
        self.db.add("INSERT INTO files(t_ns, kind, pid, proc_id, job_id, path, old_path, size) VALUES "
                    "(?,?,?,?,?,?,?,?)", (t_ns, kind, pid, live and live.proc_id, live and live.job_id,
                                          path, old, size))

    def wanted_file(self, kind: str, name: str, size: Optional[int], is_dir: bool) -> bool:
        """Which completions are kept: checkpoint-like names, and files of at
        least --min-file-size (fanotify cannot filter in the kernel: this is
        asked before a path is resolved)."""
        if is_checkpoint_name(name):
            return True
        return not is_dir and (size or 0) >= self.s.min_file_bytes

    def on_file_event(self, fe) -> None:
        """A close or rename from the FileWatch (fanotify), already filtered."""
        try:
            self._file_at(fe.pid, fe.t_ns, fe.kind, fe.path, fe.size, fe.old_path)
        except (OSError, ValueError, KeyError, TypeError) as err:
            self.counts["errors"] = self.counts.get("errors", 0) + 1
            if self.counts["errors"] <= 10:
                self.log(f"pyimpact: recorder: {fe.kind} event of pid {fe.pid} skipped ({type(err).__name__}: {err})")

    def _on_close(self, ev: RecEvent) -> None:
        if not ev.truncated and self.mounts.mount_point(ev.a[2]) is None:
            return      # a kernel-internal mount (memfd, shm segments): not a file anyone finds by path
        self._file(ev, ev.kind, path_of(ev, self.mounts), int(ev.a[0]), None)

    _on_fsync = _on_close

    def _on_rename(self, ev: RecEvent) -> None:
        new = _resolve(ev.pid, _signed(ev.a[0]), ev.newname)
        old = _resolve(ev.pid, ev.aux, ev.oldname)
        try:
            st = os.stat(new, follow_symlinks=False)
            size = st.st_size if not os.path.isdir(new) else None
        except OSError:
            size = None
        if not (is_checkpoint_name(os.path.basename(new)) or (size or 0) >= self.s.min_file_bytes
                or os.path.isdir(new) and is_checkpoint_name(os.path.basename(new.rstrip("/")))):
            return
        self._file(ev, "rename", new, size, old)

    # -- samples ------------------------------------------------------------------
    def sample(self, now_ns: Optional[int] = None) -> None:
        now_ns = now_ns or time.time_ns()
        per_job: Dict[int, List[float]] = {}
        seen = set()
        span_s = self.s.interval_s
        for pid in procfs.all_pids():
            st = read_stat(pid)
            if st is None or st["flags"] & _PF_KTHREAD or st["ppid"] == 2 or pid == 2:
                continue
            live = self.live.get(pid)
            if live is None or abs(live.start_ticks - st["start_ticks"]) > 2:
                live = self._adopt(pid, st, now_ns)
                if live is None:
                    continue
                delta = 0
            else:
                delta = st["ticks"] - live.cpu_ticks
                if not live.ids_known:
                    live.ids_known = True
                    self.db.add("UPDATE processes SET uid = ?, sid = ?, pgid = ? WHERE id = ? AND uid IS NULL",
                                (_uid(pid), st["sid"], st["pgid"], live.proc_id))
            live.cpu_ticks = st["ticks"]
            seen.add(pid)
            cpu_s = max(0, delta) / CLK_TCK
            if cpu_s > 0:
                self.db.add("INSERT INTO proc_samples VALUES (?,?,?,?)", (now_ns, live.proc_id, cpu_s, st["rss"]))
            if live.job_id is not None:
                agg = per_job.setdefault(live.job_id, [0, 0.0, 0, 0, 0.0])
                agg[0] += 1
                agg[1] += cpu_s
                agg[2] += st["rss"]
        gpu_by_job = self._sample_gpu(now_ns)
        for jid, (g_mem, g_util) in gpu_by_job.items():
            agg = per_job.setdefault(jid, [0, 0.0, 0, 0, 0.0])
            agg[3], agg[4] = g_mem, g_util
        for jid, (n, cpu, rss, gmem, gutil) in per_job.items():
            self.db.add("INSERT INTO job_samples VALUES (?,?,?,?,?,?,?)", (now_ns, jid, n, cpu, rss, gmem, gutil))
            self.db.add("UPDATE jobs SET last_ns = ? WHERE id = ?", (now_ns, jid))
        for pid in [p for p in self.live if p not in seen]:
            if not procfs.exists(pid):
                self.live.pop(pid, None)     # gone without an exit event we saw (lost): keep memory bounded
        keep_ns = int((2 * self.s.interval_s + 2) * 1e9)
        for pid in [p for p, (_l, t) in self.gone.items() if now_ns - t > keep_ns]:
            del self.gone[pid]
        if self.file_watch is not None:
            self.file_watch.refresh()        # filesystems mounted since: marked
        self.counts["samples"] += 1
        del span_s

    def _sample_gpu(self, now_ns: int) -> Dict[int, List[float]]:
        if self.gpu is None:
            return {}
        s = self.gpu.sample(now_ns)
        status = (bool(s.available), s.reason)
        if status != self._gpu_status:
            self._gpu_status = status
            self.db.add("INSERT INTO gpu_status VALUES (?,?,?)", (now_ns, int(s.available), s.reason))
        if not s.available:
            return {}
        for d in s.devices:
            self.db.add("INSERT INTO gpu_devices VALUES (?,?,?,?,?,?,?,?)",
                        (now_ns, d.index, d.name, d.uuid, d.util_gpu_pct, d.util_mem_pct, d.mem_used_bytes,
                         d.mem_total_bytes))
        out: Dict[int, List[float]] = {}
        for p in s.processes:
            live = self.live.get(p.pid)
            if live is None:
                st = read_stat(p.pid)
                live = self._adopt(p.pid, st, now_ns) if st else None
            jid = live.job_id if live else None
            self.db.add("INSERT INTO gpu_procs VALUES (?,?,?,?,?,?,?,?)",
                        (now_ns, p.device, p.pid, live and live.proc_id, jid, p.used_memory_bytes, p.sm_util_pct,
                         p.mem_util_pct))
            if jid is not None:
                agg = out.setdefault(jid, [0, 0.0])
                agg[0] += p.used_memory_bytes or 0
                agg[1] += p.sm_util_pct or 0.0
        return out

    # -- the loop -------------------------------------------------------------------
    def start(self) -> None:
        now = time.time_ns()
        self.run_id = self.db.execute("INSERT INTO runs(started_ns, pid, boot_id, tool_version) VALUES (?,?,?,?)",
                                      (now, self.own_pid, self.boot, __version__)).lastrowid
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('file_source', ?)", (self.file_source,))
        self.sample(now)          # every process alive now, before the first event is applied
        self.flush()

    def flush(self) -> None:
        lost = self.probes.lost() if self.probes is not None and self.probes.is_open else 0
        lost += self.file_watch.lost if self.file_watch is not None else 0
        coalesced = self.probes.signals_coalesced() if self.probes is not None and self.probes.is_open else 0
        self.db.add("UPDATE runs SET lost = ?, signals_coalesced = ? WHERE id = ?", (lost, coalesced, self.run_id))
        self.db.flush()

    def run(self, should_stop: Callable[[], bool], on_flush: Optional[Callable[[], None]] = None,
            on_started: Optional[Callable[[], None]] = None) -> None:
        self.start()
        if on_started is not None:
            on_started()
        next_sample = time.monotonic() + self.s.interval_s
        next_retain = time.monotonic()
        while not should_stop():
            wait_ms = max(0, min(1000, int((next_sample - time.monotonic()) * 1000)))
            if self.file_watch is not None:
                self.file_watch.wait(wait_ms / 1000)
                self.take_events()
            elif self.probes is not None:
                self.probes.poll(self.on_event, wait_ms)
            else:
                time.sleep(wait_ms / 1000)
            now = time.monotonic()
            if now >= next_sample:
                next_sample = now + self.s.interval_s
                self.sample()
                self.flush()
                if on_flush is not None:
                    on_flush()
            if now >= next_retain:
                next_retain = now + self.s.retention_every_s
                self.db.retain(self.s.max_age_s, self.s.max_bytes)

    def take_events(self) -> None:
        """The fanotify events queued and the ring buffer's, in time order as
        far as it is known: fanotify events carry no time and are stamped when
        read, so kernel events from before that come first (a fork before its
        child's save), those after it last."""
        files = self.file_watch.read() if self.file_watch is not None else []
        ring: List[RecEvent] = []
        if self.probes is not None and self.probes.is_open:
            self.probes.drain(ring.append)
        t_read = files[0].t_ns if files else None
        later = []
        for ev in ring:
            if t_read is not None and ev.t_ns > t_read:
                later.append(ev)
            else:
                self.on_event(ev)
        for fe in files:
            self.on_file_event(fe)
        for ev in later:
            self.on_event(ev)

    def stop(self) -> None:
        """Take what is left in the ring buffer and the fanotify queue, write it, mark the run ended."""
        try:
            if self.file_watch is not None and self.file_watch.fd >= 0:
                self.take_events()
            elif self.probes is not None and self.probes.is_open:
                self.probes.drain(self.on_event)
            if self.run_id is not None:
                self.flush()
                self.db.execute("UPDATE runs SET ended_ns = ? WHERE id = ?", (time.time_ns(), self.run_id))
                self.db.flush()
        finally:
            self.db.close()


def recorder_config(settings: RecorderSettings, file_source: str = "fanotify") -> RecorderConfig:
    return RecorderConfig(min_bytes=settings.min_file_bytes, files=settings.files, file_source=file_source)
