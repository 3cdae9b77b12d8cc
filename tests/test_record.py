"""`pyimpact record` against a real job: workers, checkpoints, a signal, and a
kill -9 of the recorder in the middle (restart continues the same database).

Real BPF (root, as in CI), real processes, the history read back with the
same reader the other commands use.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time

import pytest

from conftest import PYIMPACT, TARGETS, all_prog_ids, wait_for_line
from pyimpact.collect.history_db import HistoryReader

JOB = os.path.join(TARGETS, "history_job.py")


def start_recorder(spawn, db, *extra):
    proc = spawn(PYIMPACT + ["record", "--db", str(db), "-i", "0.3s", "--no-gpu", *extra],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_line(proc.stderr, "recorder running", 60)
    return proc


def wait_rows(db, sql, args, n, timeout=15.0):
    deadline = time.monotonic() + timeout
    rows = []
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                rows = conn.execute(sql, args).fetchall()
        except sqlite3.Error:
            rows = []
        if len(rows) >= n:
            return rows
        time.sleep(0.1)
    raise AssertionError(f"{sql} {args}: only {rows}")


def cue(job, line, answer):
    job.stdin.write(line + "\n")
    job.stdin.flush()
    wait_for_line(job.stdout, answer)


@pytest.mark.timeout(180)
def test_recorder_keeps_history_across_kill9_and_restart(spawn, tmp_path):
    db = tmp_path / "h.db"
    out = tmp_path / "ckpts"
    out.mkdir()
    rec1 = start_recorder(spawn, db)
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600

    job = spawn([sys.executable, JOB, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    root, w1, w2 = (int(x) for x in wait_for_line(job.stdout, "ready").split()[1:])
    cue(job, "ckpt 0", "ckpt 0")
    cue(job, "ckpt 1", "ckpt 1")
    wait_rows(db, "SELECT path FROM files WHERE kind = 'rename' AND pid = ?", (root,), 2)

    os.kill(rec1.pid, signal.SIGKILL)          # mid-run: nothing cleanly closed
    rec1.wait(10)
    cue(job, "ckpt 2", "ckpt 2")               # while no recorder runs: not in the history

    rec2 = start_recorder(spawn, db)
    cue(job, "ckpt 3", "ckpt 3")
    cue(job, "signal", "signalled")
    job.stdin.write("exit\n")
    job.stdin.flush()
    assert job.wait(20) == 0
    wait_rows(db, "SELECT exit_ns FROM processes WHERE pid = ? AND exit_ns IS NOT NULL", (root,), 1)
    rec2.send_signal(signal.SIGTERM)
    _, err = rec2.communicate(timeout=30)
    assert rec2.returncode == 0, err
    assert b"recorder stopped" in err

    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    runs = conn.execute("SELECT started_ns, ended_ns FROM runs ORDER BY id").fetchall()
    assert len(runs) == 2
    assert runs[0][1] is None and runs[1][1] is not None      # the killed run never ended cleanly
    conn.close()

    with HistoryReader(str(db)) as h:
        root_rec = h.process(root)
        assert root_rec is not None and root_rec.exit_ns is not None and root_rec.exit_code == 0
        assert any("history_job.py" in a for a in root_rec.cmdline)
        job_row = h.job(root_rec.job_id)
        assert job_row["root_pid"] == root and job_row["ended_ns"] is not None
        for w in (w1, w2):
            wr = h.process(w)
            assert wr is not None, w
            assert wr.ppid == root and wr.parent_known and wr.parent_id == root_rec.id   # original parent
            assert wr.job_id == root_rec.job_id
            assert wr.exit_ns is not None and wr.exit_signal == signal.SIGTERM
        # exactly one row per process across the two recorder runs
        assert len(h.query("SELECT id FROM processes WHERE pid = ? AND exit_ns IS NOT NULL", (root,))) == 1

        done = h.completions(root_rec.job_id, limit=50)
        renames = [os.path.basename(c["path"]) for c in done if c["kind"] == "rename"]
        assert renames == ["ckpt-0.pt", "ckpt-1.pt", "ckpt-3.pt"], done
        assert all(c["old_path"] == str(out / "ckpt.pt.tmp") for c in done if c["kind"] == "rename")
        assert all(c["size"] == 2 << 20 for c in done if c["kind"] == "rename")
        closes = [c for c in done if c["kind"] in ("close", "fsync")]
        assert {c["path"] for c in closes} == {str(out / "ckpt.pt.tmp")}
        assert {c["kind"] for c in closes} == {"close", "fsync"}

        sigs = h.signals_to([w1], before_ns=time.time_ns())
        usr1 = [s for s in sigs if s["sig"] == signal.SIGUSR1]
        assert len(usr1) == 1 and usr1[0]["sender_pid"] == root
        samples = h.query("SELECT nprocs, rss_bytes FROM job_samples WHERE job_id = ?", (root_rec.job_id,))
        assert samples and max(n for n, _ in samples) == 3 and all(r > 0 for _, r in samples)


WRITER = r"""
import os, sys
d = sys.argv[1]
tmp = os.path.join(d, "ckpt.pt.tmp")
with open(tmp, "wb") as f:
    f.write(os.urandom(2 << 20)); f.flush(); os.fsync(f.fileno())
os.rename(tmp, os.path.join(d, "ckpt-7.pt"))
with open(os.path.join(d, "notes.txt"), "w") as f:          # small, not checkpoint-like: not kept
    f.write("x")
with open(os.path.join(d, "big.dat"), "wb") as f:           # large: kept
    f.write(b"\0" * (3 << 20))
os.mkdir(os.path.join(d, "tmp-checkpoint-5"))
os.rename(os.path.join(d, "tmp-checkpoint-5"), os.path.join(d, "checkpoint-5"))
"""


def attachments(pid: int) -> dict:
    """tracepoint -> BPF program id, of what process ``pid`` holds attached (bpftool perf)."""
    import json

    out = subprocess.run(["bpftool", "-j", "perf"], capture_output=True, text=True, check=True).stdout
    return {e.get("tracepoint"): e.get("prog_id") for e in json.loads(out or "[]") if e.get("pid") == pid}


def attached_tracepoints(pid: int) -> set:
    return set(attachments(pid))


def start_recorder_line(spawn, db, *extra):
    proc = spawn(PYIMPACT + ["record", "--db", str(db), "-i", "0.3s", "--no-gpu", *extra],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = wait_for_line(proc.stderr, "recorder running", 60)
    return proc, line.decode() if isinstance(line, bytes) else line


def stop_recorder(rec):
    rec.send_signal(signal.SIGTERM)
    _, err = rec.communicate(timeout=30)
    assert rec.returncode == 0, err


def run_writer(spawn, out):
    w = spawn([sys.executable, "-c", WRITER, str(out)])
    assert w.wait(30) == 0
    return w.pid


@pytest.mark.timeout(120)
def test_default_recorder_uses_no_syscall_tracepoint_and_keeps_files(spawn, tmp_path):
    """The default: closes and renames from fanotify, fsync from the filesystem's
    tracepoint; not one syscall tracepoint attached (they would slow every
    syscall on the machine). A writer that exits right after saving still
    gets its saves attributed."""
    out = tmp_path / "out"
    out.mkdir()
    rec, line = start_recorder_line(spawn, tmp_path / "h.db")
    assert "file completions: fanotify on" in line and "no syscall tracepoint" in line, line
    held = attachments(rec.pid)
    tps = set(held)
    assert {"sched_process_fork", "sched_process_exec", "sched_process_exit", "signal_generate"} <= tps, tps
    assert not {t for t in tps if t.startswith(("sys_enter", "sys_exit"))}, tps
    with open(f"/proc/{rec.pid}/maps") as f:
        maps = f.read()
    assert "libbcc" not in maps and "LLVM" not in maps        # compiled by a loader process that has exited
    with open(f"/proc/{rec.pid}/status") as f:
        hwm_kb = next(int(x.split()[1]) for x in f if x.startswith("VmHWM:"))
    assert hwm_kb < 100 * 1024, hwm_kb                          # the target: <= 100 MB, at the peak too
    wpid = run_writer(spawn, out)
    rows = wait_rows(tmp_path / "h.db", "SELECT kind, path, old_path, size, proc_id, job_id FROM files WHERE pid = ? "
                     "ORDER BY id", (wpid,), 5)
    stop_recorder(rec)
    end = time.monotonic() + 3.0                        # the kernel frees a closed program in deferred work
    while set(held.values()) & all_prog_ids() and time.monotonic() < end:
        time.sleep(0.05)
    assert not set(held.values()) & all_prog_ids()      # detached: the programs are gone with the recorder
    got = {(k, os.path.basename(p)): (o and os.path.basename(o), sz) for k, p, o, sz, _pi, _j in rows}
    assert got == {("fsync", "ckpt.pt.tmp"): (None, 2 << 20), ("close", "ckpt.pt.tmp"): (None, 2 << 20),
                   ("rename", "ckpt-7.pt"): ("ckpt.pt.tmp", 2 << 20), ("close", "big.dat"): (None, 3 << 20),
                   ("rename", "checkpoint-5"): ("tmp-checkpoint-5", None)}, rows
    assert all(p.startswith(str(out) + "/") for _k, p, *_ in rows)
    assert all(pi is not None and j is not None for *_x, pi, j in rows), rows
    with HistoryReader(str(tmp_path / "h.db")) as h:
        assert h.query("SELECT value FROM meta WHERE key = 'file_source'")[0][0].startswith("fanotify on")


@pytest.mark.timeout(120)
def test_fallback_syscall_tracepoints_keep_the_same_files(spawn, tmp_path):
    """--file-source syscalls (what runs where fanotify is unavailable): the
    rename tracepoints this kernel has, close, fsync; the same completions."""
    out = tmp_path / "out"
    out.mkdir()
    rec, line = start_recorder_line(spawn, tmp_path / "h.db", "--file-source", "syscalls")
    assert "file completions: syscall tracepoints" in line, line
    tps = attached_tracepoints(rec.pid)
    assert {"sys_enter_close", "sys_enter_fsync", "sys_enter_renameat2", "sys_exit_renameat2"} <= tps, tps
    wpid = run_writer(spawn, out)
    rows = wait_rows(tmp_path / "h.db", "SELECT kind, path, old_path, size FROM files WHERE pid = ? ORDER BY id",
                     (wpid,), 5)
    stop_recorder(rec)
    got = {(k, os.path.basename(p)): (o and os.path.basename(o), sz) for k, p, o, sz in rows}
    assert got == {("fsync", "ckpt.pt.tmp"): (None, 2 << 20), ("close", "ckpt.pt.tmp"): (None, 2 << 20),
                   ("rename", "ckpt-7.pt"): ("ckpt.pt.tmp", 2 << 20), ("close", "big.dat"): (None, 3 << 20),
                   ("rename", "checkpoint-5"): ("tmp-checkpoint-5", None)}, rows


def test_no_files_attaches_lifecycle_and_signals_only(spawn, tmp_path):
    rec, line = start_recorder_line(spawn, tmp_path / "h.db", "--no-files")
    assert "file completions: off" in line, line
    tps = attached_tracepoints(rec.pid)
    stop_recorder(rec)
    assert tps == {"sched_process_fork", "sched_process_exec", "sched_process_exit", "signal_generate"}, tps


def test_record_rejects_bad_options(tmp_path):
    res = subprocess.run(PYIMPACT + ["record", "--db", str(tmp_path / "x.db"), "-i", "soon"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.startswith("pyimpact: invalid interval")
    assert "Traceback" not in res.stderr


def test_install_service_without_systemd_prints_the_unit(tmp_path):
    from pyimpact.sessions import record

    lines = []
    record.install_service(["--db", str(tmp_path / "h.db")], echo=lines.append, systemd=False)
    assert lines[0].startswith("systemd is not running here")
    assert "ExecStart=" in lines[1] and '"record" "--db"' in lines[1]


HOSTILE_DB = '/data/50% full/$HOME "q" back\\slash/h.db'


def _verify_unit(tmp_path, text):
    unit = tmp_path / "pyimpact-record.service"
    unit.write_text(text)
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})


def test_install_service_unit_passes_systemd_analyze_verify(tmp_path):
    """The unit `record --install-service` writes is one systemd accepts, with a
    --db path full of what systemd would otherwise expand (%, $, quotes)."""
    from pyimpact.sessions import record

    lines = []
    record.install_service(["--db", HOSTILE_DB, "--interval", "30s"], echo=lines.append, systemd=False)
    text = lines[1]
    assert "[Service]" in text and "WantedBy=multi-user.target" in text
    res = _verify_unit(tmp_path, text)
    assert res.returncode == 0 and res.stdout.strip() == "" and res.stderr.strip() == "", res


def test_unit_quoting_reads_back_unchanged_in_systemd(tmp_path):
    """systemd's own parse of an ExecStart word made by systemd_quote: a
    command that does not exist makes `verify` print the path it parsed."""
    from pyimpact.sessions import record

    exe = '/nonexistent/50% full/$HOME'      # systemd refuses quotes and backslashes in an executable's name
    words = [record.systemd_quote(exe, executable=True), record.systemd_quote("record")]
    text = record.UNIT.format(exec_start=" ".join(words), doc="/x")
    res = _verify_unit(tmp_path, text)
    assert res.returncode != 0
    assert f"Command {exe} is not executable" in res.stderr, res.stderr
    with pytest.raises(Exception, match="newline"):
        record.systemd_quote("a\nb")


def test_signal_with_a_negative_code_is_stored(spawn, tmp_path):
    """tgkill/raise send with code SI_TKILL (-6): stored as the signed number."""
    db = tmp_path / "h.db"
    rec = start_recorder(spawn, db)
    victim = spawn([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGUSR2, lambda *a: None); "
                    "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    wait_for_line(victim.stdout, "ready")
    os.kill(victim.pid, signal.SIGUSR2)                           # SI_USER (0)
    subprocess.run([sys.executable, "-c", f"import os, signal; os.kill({victim.pid}, signal.SIGUSR2); "
                    f"import ctypes; ctypes.CDLL(None).syscall(234, {victim.pid}, {victim.pid}, 12)"])  # tgkill
    rows = wait_rows(db, "SELECT code FROM signals WHERE target_pid = ? AND sig = ?", (victim.pid, signal.SIGUSR2), 3)
    assert sorted(r[0] for r in rows)[0] == -6
    rec.send_signal(signal.SIGTERM)
    _, err = rec.communicate(timeout=30)
    assert rec.returncode == 0, err


def test_retention_by_age_and_size(tmp_path):
    """Rows older than max_age go; then the oldest slices until the file fits."""
    from pyimpact.collect.history_db import HistoryWriter

    db = tmp_path / "r.db"
    w = HistoryWriter(str(db))
    now = time.time_ns()
    day = 86400 * 10**9
    for i in range(20000):      # 20 days of samples, 1000 a day
        w.add("INSERT INTO job_samples VALUES (?,?,?,?,?,?,?)", (now - (20 * day) + i * day // 1000, 1, 1,
                                                                 0.5, 1 << 20, 0, 0.0))
    w.add("INSERT INTO files(t_ns, kind, pid, path, size) VALUES (?,?,?,?,?)", (now - 10 * day, "rename", 1,
                                                                                 "/old.pt", 1))
    w.add("INSERT INTO files(t_ns, kind, pid, path, size) VALUES (?,?,?,?,?)", (now, "rename", 1, "/new.pt", 1))
    w.flush()
    w.retain(max_age_s=7 * 86400, max_bytes=1 << 40, now_ns=now)
    oldest = w.conn.execute("SELECT MIN(t_ns) FROM job_samples").fetchone()[0]
    assert oldest >= now - 7 * day
    assert [r[0] for r in w.conn.execute("SELECT path FROM files")] == ["/new.pt"]
    n_age = w.conn.execute("SELECT COUNT(*) FROM job_samples").fetchone()[0]
    assert 6900 <= n_age <= 7100
    w.retain(max_age_s=7 * 86400, max_bytes=256 << 10, now_ns=now)    # below: trimmed until it fits
    assert w.size_bytes() <= 256 << 10
    n_size = w.conn.execute("SELECT COUNT(*) FROM job_samples").fetchone()[0]
    assert 0 < n_size < n_age
    newest = w.conn.execute("SELECT MAX(t_ns) FROM job_samples").fetchone()[0]
    assert newest == now - 20 * day + 19999 * day // 1000     # the newest rows stay
    w.close()


def test_fanotify_marks_data_filesystems_only():
    """Which mounts the fanotify watch marks, from a real mountinfo's shapes:
    one per filesystem, at its root, no kernel interfaces, not /dev/shm or
    /run (busy with shared memory, never a checkpoint's place)."""
    from pyimpact.collect.fanotify_files import data_mounts

    info = "\n".join([
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
        "23 22 0:21 / /proc rw,nosuid - proc proc rw",
        "24 22 0:5 / /dev rw - devtmpfs udev rw",
        "25 24 0:23 / /dev/shm rw - tmpfs tmpfs rw",
        "26 22 0:24 / /run rw - tmpfs tmpfs rw",
        "27 26 0:25 / /run/user/1000 rw - tmpfs tmpfs rw",
        "28 22 8:1 /home /srv/bind rw - ext4 /dev/sda1 rw",          # a bind mount of / : same filesystem
        "29 22 0:26 / /data\\040disk rw - xfs /dev/sdb rw",
        "30 22 0:27 / /tmp rw - tmpfs tmpfs rw",
        "31 22 0:28 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw",
    ])
    assert [(m.point, m.fstype) for m in data_mounts(info)] == [("/", "ext4"), ("/data disk", "xfs"),
                                                                 ("/tmp", "tmpfs")]


def test_ring_buffer_overflow_is_counted_never_silent(spawn):
    """A one-page ring buffer not read during a burst of 400 forks: what did
    not fit is counted in the kernel (read through the lost map the loader
    handed over), and what fit arrives intact."""
    from pyimpact.collect.recorder_probes import RecorderConfig, RecorderProbes

    n = 400
    with RecorderProbes(RecorderConfig(ringbuf_pages=1, files=False)) as probes:
        burst = spawn([sys.executable, "-c", f"import os\nfor _ in range({n}):\n    pid = os.fork()\n"
                       "    if pid == 0: os._exit(0)\n    os.waitpid(pid, 0)\n"])
        assert burst.wait(60) == 0
        got = []
        probes.drain(got.append)
        forks = [e for e in got if e.kind == "fork" and e.pid == burst.pid]
        lost = probes.lost()
    assert lost > 0 and len(forks) < n, (lost, len(forks))
    assert len(forks) + lost >= n                 # every fork of the burst either arrived or was counted
    assert all(e.other > 0 for e in forks)


def test_fallback_attaches_only_the_rename_syscalls_the_kernel_has(tmp_path, monkeypatch):
    """arm64 has renameat and renameat2 but no rename(2), riscv64 only
    renameat2: the fallback's switches follow the tracefs events there are
    (a tracefs tree laid out like those kernels')."""
    from pyimpact.collect import recorder_probes as rp

    for arch, calls in (("arm64", ("renameat", "renameat2")), ("riscv64", ("renameat2",))):
        root = tmp_path / arch
        for call in calls + ("close", "fsync", "fdatasync"):
            (root / "syscalls" / f"sys_enter_{call}").mkdir(parents=True)
        monkeypatch.setattr(rp, "TRACEFS_EVENTS", (str(root),))
        flags, names = rp.RecorderConfig(file_source="syscalls").file_probes(None)
        assert flags["PYI_REC_FILES_SYSCALLS"] == 1 and flags["PYI_REC_HAVE_RENAME"] == 0, arch
        assert flags["PYI_REC_HAVE_RENAMEAT"] == int("renameat" in calls), arch
        assert flags["PYI_REC_HAVE_RENAMEAT2"] == 1, arch
        assert not any(n.endswith("_rename") for n in names), names
        flags, names = rp.RecorderConfig(file_source="fanotify").file_probes(None)
        assert flags["PYI_REC_FILES_SYSCALLS"] == 0 and not any(n.startswith("sys_") for n in names), arch


@pytest.mark.timeout(120)
def test_signal_storm_is_coalesced_in_the_kernel_and_counted(spawn, tmp_path):
    """3001 SIGUSR1 from one sender to one target in well under a second: a few
    rows, the rest counted (carried as repeats by the next row, and in
    runs.signals_coalesced): every signal is accounted for, none stored twice."""
    db = tmp_path / "h.db"
    rec, _line = start_recorder_line(spawn, db, "--no-files")
    victim = spawn([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGUSR1, lambda *a: None); "
                    "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    wait_for_line(victim.stdout, "ready")
    n = 3001
    storm = spawn([sys.executable, "-c", f"import os, signal, time\nfor _ in range({n}): os.kill({victim.pid}, "
                   "signal.SIGUSR1)\ntime.sleep(1.2)\nos.kill(" + str(victim.pid) + ", signal.SIGUSR1)\n"])
    assert storm.wait(60) == 0
    rows = wait_rows(db, "SELECT repeats FROM signals WHERE target_pid = ? AND sig = ? AND sender_pid = ?",
                     (victim.pid, signal.SIGUSR1, storm.pid), 2)
    stop_recorder(rec)
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT repeats FROM signals WHERE target_pid = ? AND sig = ? AND sender_pid = ? ORDER BY id",
                        (victim.pid, signal.SIGUSR1, storm.pid)).fetchall()
    coalesced = conn.execute("SELECT signals_coalesced FROM runs").fetchone()[0]
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "2"
    conn.close()
    assert len(rows) <= 4 * 3 + 1, len(rows)                  # a few a second, not thousands
    assert len(rows) + sum(r[0] for r in rows) == n + 1, rows  # the last one, a second later, carried the count
    assert coalesced >= n + 1 - len(rows)


def test_schema_1_database_is_migrated(tmp_path):
    """A database an earlier recorder wrote (schema 1) is continued: the two
    new columns are added, the rows kept."""
    from pyimpact.collect.history_db import HistoryReader, HistoryWriter

    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)
    conn.executescript("""
        CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE runs(id INTEGER PRIMARY KEY, started_ns INTEGER, ended_ns INTEGER, pid INTEGER,
            boot_id TEXT, tool_version TEXT, lost INTEGER DEFAULT 0);
        CREATE TABLE signals(id INTEGER PRIMARY KEY, t_ns INTEGER, sig INTEGER, sender_pid INTEGER,
            sender_comm TEXT, sender_proc_id INTEGER, target_pid INTEGER, target_proc_id INTEGER, result INTEGER,
            code INTEGER);
        INSERT INTO signals(t_ns, sig, sender_pid, target_pid) VALUES (5, 15, 10, 11);
    """)
    conn.close()
    os.chmod(db, 0o600)
    with HistoryReader(str(db)) as h:                        # an old file read as it is
        assert h.signals_to([11], before_ns=10) == [{"t_ns": 5, "sig": 15, "sender_pid": 10, "sender_comm": None,
                                                     "target_pid": 11, "result": None, "code": None, "repeats": 0}]
    HistoryWriter(str(db)).close()
    with HistoryReader(str(db)) as h:
        assert h.query("SELECT value FROM meta WHERE key = 'schema_version'") == [("2",)]
        assert h.query("SELECT sig, repeats FROM signals") == [(15, 0)]
        assert h.query("SELECT COUNT(signals_coalesced) FROM runs") == [(0,)]
