"""Output files under attack and after faults (issue 8, items 1 and 6).

The attacker is a real process running as `nobody` in a world-writable
directory without the sticky bit: it watches for our temporary files and
swaps them for symlinks to a root-owned victim file.  The recordings written
are real ones, from `pyimpact trace` of a real syscall storm.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import NOBODY, PYIMPACT, ROOT, start_trace, wait_for_line
from pyimpact.export import atomic
from pyimpact.export import read_recording, write_recording

NCALLS = 30011         # getppid calls of the storm, every one an event with --slow-ms 0

#: The attacker: as nobody, swap every temporary file of ours that appears in
#: the directory for a symlink to the victim (rename over it: the directory has
#: no sticky bit, so nobody may replace root's entries).  Prints each swap.
ATTACKER = r"""
import os, sys
d, victim, victim_dir = sys.argv[1], sys.argv[2], sys.argv[3]
n = 0
print("ready", flush=True)
while True:
    try:
        names = os.listdir(d)
    except OSError:
        continue
    for e in names:
        if not e.endswith(".tmp") or e.startswith(".evil"):
            continue
        path = os.path.join(d, e)
        ln = os.path.join(d, ".evil%d" % n)
        n += 1
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                # a directory of ours: move it aside, point its name at the victim's directory
                os.rename(path, ln + "-moved")
                os.symlink(victim_dir, ln)
                os.rename(ln, path)
                print("moved", e, flush=True)
            else:
                os.symlink(victim, ln)
                os.rename(ln, path)
                print("swapped", e, flush=True)
        except OSError:
            try:
                os.unlink(ln)
            except OSError:
                pass
"""


def _drop_to_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


@pytest.fixture(scope="module")
def storm_recording(c_build, tmp_path_factory):
    """A real recording with thousands of events and real losses: `trace
    --slow-ms 0 --buffer-pages 128 -o` of a storm of getppid calls.  Returns
    the private path of the .parquet."""
    from conftest import Spawner

    spawn = Spawner()
    out = str(tmp_path_factory.mktemp("storm") / "storm.parquet")
    try:
        target = spawn([c_build("storm"), str(NCALLS)], stdin=subprocess.PIPE)
        trace = start_trace(spawn, ["-p", str(target.pid), "--slow-ms", "0", "--buffer-pages", "128",
                                    "-o", out, "--json"])
        target.stdin.write(b"g")
        target.stdin.flush()
        target.wait(timeout=60)
        _, stderr = trace.communicate(timeout=60)
        assert trace.returncode == 0, stderr.decode()
    finally:
        spawn.cleanup()
    rec = read_recording(out)
    assert len(rec.events) > 1000 and rec.lost_total > 0
    return out


@pytest.fixture
def hostile_dir(spawn):
    """A world-writable, non-sticky directory with a `nobody` attacker racing in
    it, and root-owned victims elsewhere: a file, and a directory whose files
    carry the names the writer uses inside its private directory.  Yields
    (dir, victim directory, attacker)."""
    where = tempfile.mkdtemp(prefix="pyimpact-hostile-", dir="/tmp")
    private = tempfile.mkdtemp(prefix="pyimpact-victim-")
    try:
        os.chmod(where, 0o777)                       # no sticky bit
        for name in ("victim", "keep", "data"):   # the names used inside our private directory
            with open(os.path.join(private, name), "w") as f:
                f.write(f"precious root data: {name}\n")
            os.chmod(os.path.join(private, name), 0o640)
        attacker = spawn(["/usr/bin/python3", "-c", ATTACKER, where, os.path.join(private, "victim"), private],
                         stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, preexec_fn=_drop_to_nobody, cwd="/")
        wait_for_line(attacker.stdout, "ready", 10)
        yield where, private, attacker
    finally:
        shutil.rmtree(where, ignore_errors=True)
        shutil.rmtree(private, ignore_errors=True)


def _victim_state(victim_dir):
    """Names, bytes, modes, owners and mtimes of everything in the victim directory."""
    out = {}
    for name in sorted(os.listdir(victim_dir)):
        path = os.path.join(victim_dir, name)
        st = os.lstat(path)
        with open(path, "rb") as f:
            out[name] = (f.read(), st.st_mode, st.st_uid, st.st_mtime_ns)
    return out


def _stop(attacker) -> str:
    os.killpg(attacker.pid, signal.SIGKILL)
    out = attacker.stdout.read().decode()
    attacker.wait(timeout=10)
    return out


def _root_files_left(where):
    """Regular files owned by root under `where` other than our outputs (no link followed)."""
    left = []
    for top, dirs, files in os.walk(where):
        for f in files:
            path = os.path.join(top, f)
            st = os.lstat(path)
            if st.st_uid == 0 and os.path.isfile(path) and not os.path.islink(path) \
                    and not (top == where and f.startswith("rec.")):
                left.append(path)
    return left


@pytest.mark.parametrize("tmpfile", ["O_TMPFILE", "no O_TMPFILE"])
def test_symlink_swap_of_temp_file_never_writes_the_victim(storm_recording, hostile_dir, monkeypatch, tmpfile):
    """Item 1: many writes of all three formats into the attacked directory;
    the victims keep their bytes, modes and mtimes, and every output is ours.
    "no O_TMPFILE" forces the path for filesystems without it, where our
    private directory exists during the whole write and the attacker does
    move it and plant a symlink in its place."""
    where, victim_dir, attacker = hostile_dir
    if tmpfile == "no O_TMPFILE":
        monkeypatch.setattr(atomic, "_O_TMPFILE", 0)
    rec = read_recording(storm_recording)
    before = _victim_state(victim_dir)
    for _ in range(6):
        for suffix in (".json", ".parquet", ".csv"):
            out = os.path.join(where, "rec" + suffix)
            write_recording(rec, out)
            assert _victim_state(victim_dir) == before
            st = os.lstat(out)
            assert not os.path.islink(out) and st.st_uid == 0 and (st.st_mode & 0o777) == 0o600
            assert len(read_recording(out).events) == len(rec.events)
    assert attacker.poll() is None, "the attacker died: the test proved nothing"
    attacks = _stop(attacker)
    assert _victim_state(victim_dir) == before
    if tmpfile == "no O_TMPFILE":
        assert "moved" in attacks        # the attack really happened, and changed nothing
    assert _root_files_left(where) == [], "temporary files left behind"


# --- item 6: stray files, damaged Parquet, CSV losses ------------------------

#: Write part of a recording through the atomic writer, then SIGKILL ourselves
#: in the middle of the write (a real kill, not an exception).
KILLED_WRITER = r"""
import os, signal, sys
from pyimpact.export import atomic
if sys.argv[2] == "no O_TMPFILE":
    atomic._O_TMPFILE = 0
with atomic.atomic_file(sys.argv[1]) as f:
    f.write(b"x" * 1000000)
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("tmpfile", ["O_TMPFILE", "no O_TMPFILE"])
def test_sigkill_during_write_leaves_nothing_for_long(storm_recording, tmp_path, tmpfile):
    out = tmp_path / "rec.json"
    env = dict(os.environ, PYTHONPATH=ROOT)      # the checkout under test
    res = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(out), tmpfile], env=env, timeout=60)
    assert res.returncode == -signal.SIGKILL
    left = sorted(os.listdir(tmp_path))
    if tmpfile == "O_TMPFILE":
        assert left == []            # an anonymous file: nothing was ever named
        return
    # without O_TMPFILE the killed run leaves its private directory; the next
    # write to the same output removes it once it is stale
    assert len(left) == 1 and left[0].startswith(".rec.json.") and (tmp_path / left[0]).is_dir()
    write_recording(read_recording(storm_recording), str(out))
    assert sorted(os.listdir(tmp_path)) == sorted(left + ["rec.json"])       # fresh: maybe still being written
    old = time.time() - 2 * atomic.STALE_AFTER_S
    os.utime(tmp_path / left[0], (old, old))
    write_recording(read_recording(storm_recording), str(out))
    assert os.listdir(tmp_path) == ["rec.json"]


def test_stale_cleanup_removes_only_our_own(storm_recording, tmp_path):
    """Leftovers of our naming owned by us go; someone else's file, a symlink of
    our naming (and its target) and other names stay."""
    out = tmp_path / "rec.parquet"
    old = time.time() - 2 * atomic.STALE_AFTER_S
    ours = tmp_path / ".rec.parquet.k3j_x9q2.tmp"          # the old writer's mkstemp naming
    ours.write_bytes(b"partial")
    theirs = tmp_path / ".rec.parquet.aaaabbbb.tmp"
    theirs.write_bytes(b"not ours")
    os.chown(theirs, NOBODY, NOBODY)
    target = tmp_path / "target"
    target.write_bytes(b"keep me")
    link = tmp_path / ".rec.parquet.0123456789ab.tmp"
    link.symlink_to(target)
    other = tmp_path / ".other.parquet.ccccdddd.tmp"
    other.write_bytes(b"another output's")
    for p in (ours, theirs, target, other):
        os.utime(p, (old, old))
    os.utime(link, (old, old), follow_symlinks=False)
    write_recording(read_recording(storm_recording), str(out))
    assert sorted(os.listdir(tmp_path)) == sorted([theirs.name, "target", link.name, other.name, "rec.parquet"])
    assert target.read_bytes() == b"keep me"


@pytest.mark.parametrize("umask,mode", [(0o022, 0o600), (0o000, 0o600), (0o077, 0o600), (0o277, 0o400)])
def test_output_mode_0600_or_stricter(storm_recording, tmp_path, umask, mode):
    """Item 5: outputs are 0600 whatever the umask allows, stricter when it says
    so, and an existing 0600 file stays 0600 (written by the real CLI path)."""
    out = tmp_path / "rec.csv"
    out.write_text("old")
    os.chmod(out, 0o600)
    rec = read_recording(storm_recording)
    prev = os.umask(umask)
    try:
        for suffix in (".json", ".parquet", ".csv"):
            write_recording(rec, str(tmp_path / ("rec" + suffix)))
    finally:
        os.umask(prev)
    for suffix in (".json", ".parquet", ".csv"):
        assert (os.stat(tmp_path / ("rec" + suffix)).st_mode & 0o777) == mode


def _silent_corruption(path: str, damaged: str) -> int:
    """Copy `path` to `damaged` with one byte of one data page flipped such that
    a reader that does not verify page checksums reads wrong data without any
    error: the damage this is about.  Returns the offset."""
    import pyarrow.parquet as pq

    data = open(path, "rb").read()
    good = pq.read_table(path)
    rg = pq.ParquetFile(path).metadata.row_group(0)
    for ci in range(rg.num_columns):
        col = rg.column(ci)
        start, size = col.data_page_offset, col.total_compressed_size
        for off in range(start + size // 3, start + size):
            b = bytearray(data)
            b[off] ^= 0x5A
            with open(damaged, "wb") as f:
                f.write(b)
            try:
                if not pq.read_table(damaged).equals(good):
                    return off
            except Exception:
                continue
    raise AssertionError("no silent corruption found")


def test_damaged_parquet_page_is_refused(storm_recording, tmp_path):
    """A flipped byte in a page of a real recording: `report` exits 7 with one
    line, instead of analysing wrong data."""
    damaged = str(tmp_path / "damaged.parquet")
    _silent_corruption(storm_recording, damaged)
    for args in ([damaged], [damaged, "--json"]):
        res = subprocess.run(PYIMPACT + ["report", *args], capture_output=True, text=True, timeout=60)
        assert res.returncode == 7, res.stdout[-500:] + res.stderr
        assert res.stdout == "" and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "damaged" in res.stderr and "Traceback" not in res.stderr
    ok = subprocess.run(PYIMPACT + ["report", storm_recording], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr


def test_report_of_csv_says_losses_unknown(storm_recording, tmp_path):
    """The storm lost events; its CSV cannot say how many, so report must not say "none"."""
    rec = read_recording(storm_recording)
    assert rec.lost_total > 0
    csv = str(tmp_path / "storm.csv")
    write_recording(rec, csv)
    res = subprocess.run(PYIMPACT + ["report", csv], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "losses: unknown (CSV holds the timeline only)" in res.stdout
    assert "losses: none" not in res.stdout
    doc = json.loads(subprocess.run(PYIMPACT + ["report", csv, "--json"], capture_output=True, text=True,
                                    timeout=60, check=True).stdout)
    assert doc["story"]["lost_unknown"] == "CSV holds the timeline only" and doc["story"]["lost"] == {}
    # the Parquet of the same recording does carry the counters
    res = subprocess.run(PYIMPACT + ["report", storm_recording], capture_output=True, text=True, timeout=60)
    assert f"{rec.metadata['lost']['ringbuf_full']} (ringbuf_full)" in res.stdout
