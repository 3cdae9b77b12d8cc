"""Output files under attack and after faults (issue 8, items 1 and 6).

The attacker is a real process running as `nobody` in a world-writable
directory without the sticky bit: it watches for our temporary files and
swaps them for symlinks to a root-owned victim file.  The recordings written
are real ones, from `pyimpact trace` of a real syscall storm.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import NOBODY, PYIMPACT, start_trace, wait_for_line
from pyimpact.export import atomic
from pyimpact.recording import Recording

NCALLS = 4099          # getppid calls of the storm, every one an event with --slow-ms 0

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
    """A real recording with thousands of events: `trace --slow-ms 0 -o` of a
    storm of getppid calls.  Returns the private path of the .parquet."""
    from conftest import Spawner

    spawn = Spawner()
    out = str(tmp_path_factory.mktemp("storm") / "storm.parquet")
    try:
        target = spawn([c_build("storm"), str(NCALLS)], stdin=subprocess.PIPE)
        trace = start_trace(spawn, ["-p", str(target.pid), "--slow-ms", "0", "-o", out, "--json"])
        target.stdin.write(b"g")
        target.stdin.flush()
        target.wait(timeout=60)
        _, stderr = trace.communicate(timeout=60)
        assert trace.returncode == 0, stderr.decode()
    finally:
        spawn.cleanup()
    rec = Recording.load(out)
    assert len(rec.events) >= NCALLS
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
    rec = Recording.load(storm_recording)
    before = _victim_state(victim_dir)
    for _ in range(12):
        for suffix in (".json", ".parquet", ".csv"):
            out = os.path.join(where, "rec" + suffix)
            rec.save(out)
            assert _victim_state(victim_dir) == before
            st = os.lstat(out)
            assert not os.path.islink(out) and st.st_uid == 0 and (st.st_mode & 0o777) == 0o600
            assert len(Recording.load(out).events) == len(rec.events)
    assert attacker.poll() is None, "the attacker died: the test proved nothing"
    attacks = _stop(attacker)
    assert _victim_state(victim_dir) == before
    if tmpfile == "no O_TMPFILE":
        assert "moved" in attacks        # the attack really happened, and changed nothing
    assert _root_files_left(where) == [], "temporary files left behind"
