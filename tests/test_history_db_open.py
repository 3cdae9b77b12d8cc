"""The history database is opened safely (issue 12): never through a symlink,
never someone else's file, never in a directory others can write; a bad
--db is one line and exit code 6, before any probe is compiled.

Real files, real ownership (the suite runs as root in CI: files are given to
uid 65534 with chown), the real CLI for the exit code.
"""
from __future__ import annotations

import os
import stat
import subprocess

import pytest

from conftest import PYIMPACT
from pyimpact.collect.history_db import HistoryWriter, connect
from pyimpact.errors import OutputError

NOBODY = 65534


def private_dir(tmp_path, name="d"):
    d = tmp_path / name
    d.mkdir(mode=0o700)
    return d


def test_creates_private_files_and_reopens(tmp_path):
    d = private_dir(tmp_path)
    db = d / "h.db"
    w = HistoryWriter(str(db))
    w.add("INSERT INTO signals(t_ns, sig) VALUES (?, ?)", (1, 15))
    w.flush()
    for name in ("h.db", "h.db-wal", "h.db-shm"):
        st = os.stat(d / name)
        assert stat.S_IMODE(st.st_mode) == 0o600, name
    w.close()
    w.close()                                       # idempotent
    os.chmod(db, 0o644)                             # our own file, too open: made 0600 again through the fd
    w = HistoryWriter(str(db))
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    assert w.conn.execute("SELECT sig FROM signals").fetchall() == [(15,)]
    w.close()


def test_symlink_swapped_in_is_refused_and_its_target_untouched(tmp_path):
    d = private_dir(tmp_path)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    os.symlink(victim, d / "h.db")
    with pytest.raises(OutputError, match="is a symlink"):
        HistoryWriter(str(d / "h.db"))
    assert victim.read_bytes() == b"precious"


@pytest.mark.parametrize("side", ["-wal", "-shm"])
def test_symlinked_side_file_is_refused(tmp_path, side):
    d = private_dir(tmp_path)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    os.symlink(victim, d / f"h.db{side}")
    with pytest.raises(OutputError, match="is a symlink"):
        HistoryWriter(str(d / "h.db"))
    assert victim.read_bytes() == b"precious"


def test_directory_that_is_a_symlink_is_refused(tmp_path):
    real = private_dir(tmp_path, "real")
    os.symlink(real, tmp_path / "link")
    with pytest.raises(OutputError, match="symlink or not a directory"):
        HistoryWriter(str(tmp_path / "link" / "h.db"))
    assert os.listdir(real) == []


def test_other_owners_file_is_refused(tmp_path):
    d = private_dir(tmp_path)
    db = d / "h.db"
    db.write_bytes(b"")
    os.chown(db, NOBODY, NOBODY)
    with pytest.raises(OutputError, match=f"belongs to uid {NOBODY}"):
        HistoryWriter(str(db))
    assert db.stat().st_size == 0


def test_hard_link_to_another_file_is_refused(tmp_path):
    d = private_dir(tmp_path)
    other = d / "other"
    other.write_bytes(b"x")
    os.link(other, d / "h.db")
    with pytest.raises(OutputError, match="hard link"):
        HistoryWriter(str(d / "h.db"))
    assert other.read_bytes() == b"x"


@pytest.mark.parametrize("mode", [0o1777, 0o777, 0o770])
def test_directory_writable_by_others_is_refused(tmp_path, mode):
    d = private_dir(tmp_path)
    os.chmod(d, mode)
    with pytest.raises(OutputError, match="writable by others"):
        HistoryWriter(str(d / "h.db"))
    assert os.listdir(d) == []


def test_directory_of_another_owner_is_refused(tmp_path):
    d = private_dir(tmp_path)
    os.chown(d, NOBODY, NOBODY)
    with pytest.raises(OutputError, match=f"belongs to uid {NOBODY}"):
        HistoryWriter(str(d / "h.db"))


def test_missing_directory_is_created_private(tmp_path):
    db = tmp_path / "new" / "sub" / "h.db"
    HistoryWriter(str(db)).close()
    assert stat.S_IMODE(os.stat(db.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600


def test_reader_still_opens_read_only(tmp_path):
    d = private_dir(tmp_path)
    HistoryWriter(str(d / "h.db")).close()
    conn = connect(str(d / "h.db"), write=False)
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    conn.close()


def test_record_with_a_bad_db_is_one_line_and_exit_6(tmp_path):
    d = private_dir(tmp_path)
    os.chmod(d, 0o777)
    res = subprocess.run(PYIMPACT + ["record", "--db", str(d / "h.db"), "--no-gpu", "-d", "1s"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 6, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyimpact: refusing to write the history database"), lines
    assert "writable by others" in lines[0] and "Traceback" not in res.stderr
