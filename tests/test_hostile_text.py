"""Strings from other processes are hostile: every view shows them as escaped
plain text, JSON stays valid Unicode, and -o is written before anything is
rendered (issue 8, items 2, 7 and 9).

Real processes set hostile names on themselves with prctl(PR_SET_NAME)
(tests/targets/hostile_names.py): rich markup (``[/oops]`` made a markup
render raise and lose the recording; ``[bold red]x`` was restyled), a
newline that printed a spoofed ``VERDICT SAFE`` line, terminal escapes, a
bidi override and bytes that are not UTF-8, in comm, argv, file names and a
Python source path (py-spy frames).  The real ``pyimpact trace`` (also
``--all``), ``diagnose``, ``kill-preview`` and ``report`` run against them.
"""
from __future__ import annotations

import json
import os
import pathlib
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pandas as pd
import pytest

from conftest import PYIMPACT, TARGETS, wait_for_line
from pyimpact.export import read_recording
from pyimpact.render.text import clean, json_dumps, json_text, no_surrogates_frame

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI is root)")

HOSTILE = os.path.join(TARGETS, "hostile_names.py")

#: comm (at most 15 bytes) -> how every view must show it
COMMS = {
    b"[/oops]": "[/oops]",                     # MarkupError in rich
    b"[bold red]x": "[bold red]x",             # restyled by rich markup
    b"a\nVERDICT SAFE": "a\\nVERDICT SAFE",    # a spoofed line
    b"\x1b[31mred": "\\x1b[31mred",            # a terminal escape
    b"bad\xff\xfe:smile:": "bad\\xff\\xfe:smile:",   # not UTF-8; a rich emoji code
    b"\xe2\x80\xaerev": "\\u202erev",          # right-to-left override
}
#: an argv and the file the target writes (see hostile_names.py)
ARGV_EXTRA = b"arg\nVERDICT SAFE \x1b[2J\xe2\x80\xae\xff"
ARGV_SHOWN = "arg\\nVERDICT SAFE \\x1b[2J\\u202e\\xff"
FILE_SHOWN = "ckpt\\nVERDICT SAFE\\x1b[31m\\u202e\\xff.pt"

#: what must never reach a terminal: controls (but the newline ending a
#: line), bidi/format characters, lone surrogates
_BAD = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")


def run_cli(args, timeout=90, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.run(PYIMPACT + list(args), timeout=timeout, start_new_session=True, **kw)


def check_terminal_text(raw: bytes, what: str) -> str:
    """Valid UTF-8, no control/bidi character, no spoofed line, no traceback."""
    text = raw.decode("utf-8")     # strict: a raw invalid byte fails here
    bad = sorted({repr(c) for c in _BAD.findall(text)})
    assert not bad, f"{what}: control characters in the output: {bad}\n{text[-3000:]}"
    spoofed = [ln for ln in text.splitlines() if ln.lstrip().startswith("VERDICT SAFE")]
    assert not spoofed, f"{what}: spoofed line(s) {spoofed}\n{text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    return text


def check_json(raw: bytes, what: str):
    """A strict document: UTF-8, and no lone surrogate in any string."""
    doc = json.loads(raw.decode("utf-8"))
    json.dumps(doc, ensure_ascii=False).encode("utf-8")     # raises on a lone surrogate
    assert not _BAD.search(raw.decode("utf-8")), f"{what}: raw control character in JSON"
    return doc


def ok(res: subprocess.CompletedProcess, what: str) -> None:
    err = res.stderr.decode("utf-8", "backslashreplace")
    assert res.returncode == 0, f"{what}: rc {res.returncode}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    check_terminal_text(res.stderr, what + " (stderr)")


class Hostile:
    """Starts hostile_names.py processes, each in its own process group,
    and kills and reaps them all."""

    def __init__(self):
        # a short base, so that views which cut long paths still show the
        # hostile part
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="pyi-", dir="/tmp"))
        self.procs = []
        self.n = 0
        # the script itself lives under a hostile directory: its path is in
        # argv and in every py-spy frame
        src = self.tmp / "s\nVERDICT SAFE\x1b[31m"
        src.mkdir()
        self.script = str(src / "hostile_names.py")
        shutil.copy(HOSTILE, self.script)

    def start(self, comm: bytes, *extra) -> subprocess.Popen:
        self.n += 1
        work = self.tmp / f"w{self.n}"
        work.mkdir()
        argv = [sys.executable.encode(), os.fsencode(self.script), comm, os.fsencode(str(work)),
                *[a if isinstance(a, bytes) else str(a).encode() for a in extra]]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        wait_for_line(proc.stdout, "ready")
        return proc

    def cleanup(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
            proc.stdout.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture
def hostile():
    h = Hostile()
    try:
        yield h
    finally:
        h.cleanup()


# --------------------------------------------------------------------------
# The escaping function and the JSON/Parquet writers' helpers (pure)
# --------------------------------------------------------------------------

def test_clean_escapes_visibly_and_once():
    s = "a\nb\r\t\x1b[31m\x7f\x85\u202e\u2066\u2028\udcff\ud800 é 😀 [/x]"
    out = clean(s)
    assert out == "a\\nb\\r\\t\\x1b[31m\\x7f\\x85\\u202e\\u2066\\u2028\\xff\\ud800 é 😀 [/x]"
    assert out.isprintable() and clean(out) == out
    assert clean(None) == "" and clean(42) == "42"


def test_json_dumps_makes_lone_surrogates_visible_and_keeps_pairs():
    doc = {"name": "bad\udcff\udcfe", "pair": "\U00010080 😀", "bs": "C:\\udcff", "k\udc80": 1,
           "ctl": "a\nb\x1b"}
    text = json_dumps(doc)
    back = json.loads(text)
    json.dumps(back, ensure_ascii=False).encode("utf-8")
    assert back["name"] == "bad\\xff\\xfe" and back["pair"] == "\U00010080 😀"
    assert back["bs"] == "C:\\udcff"          # an escaped backslash is not a surrogate
    assert back["k\\x80"] == 1 and back["ctl"] == "a\nb\x1b"   # JSON escapes controls itself
    assert text.isascii()
    assert json_text('"\\ud800"') == '"\\\\ud800"'


def test_no_surrogates_frame_for_parquet_and_csv(tmp_path):
    # as the timeline holds them (pyimpact.timeline): object categories and values
    comm = pd.Categorical.from_codes([0, 1, 0], categories=pd.Index(["ok", "bad\udcff"], dtype=object))
    df = pd.DataFrame({"comm": comm, "filename": pd.Series(["a\udcfe", None, "b"], dtype=object),
                       "n": [1, 2, 3]})
    out = no_surrogates_frame(df)
    assert list(out["comm"].astype(object)) == ["ok", "bad\\xff", "ok"]
    assert [None if pd.isna(v) else v for v in out["filename"]] == ["a\\xfe", None, "b"]
    assert df["comm"][1] == "bad\udcff"      # the recording in memory is untouched
    out.to_parquet(tmp_path / "t.parquet")
    clean_df = pd.DataFrame({"comm": ["x"]})
    assert no_surrogates_frame(clean_df) is clean_df


# --------------------------------------------------------------------------
# trace: hostile comms on the targets and on a signal sender
# --------------------------------------------------------------------------

def test_trace_hostile_comms_text_and_recording(hostile, tmp_path):
    procs = {comm: hostile.start(comm) for comm in COMMS}
    victim = procs[b"[bold red]x"].pid
    hostile.start(b"[/sender]", "--signal", victim)
    out = tmp_path / "t.parquet"
    pids = [a for p in procs.values() for a in ("-p", str(p.pid))]
    res = run_cli(["trace", *pids, "-d", "1", "-o", str(out)])
    ok(res, "trace")
    # off a terminal, no live status line (and no carriage return) at all
    assert b" events  " not in res.stderr and b"\r" not in res.stderr, res.stderr
    text = check_terminal_text(res.stdout, "trace")
    for shown in COMMS.values():
        assert shown in text, f"{shown!r} not shown:\n{text}"
    assert "[/sender]" in text and "SIGUSR1" in text, text     # the sender, in the signal table
    assert out.exists()
    rec = read_recording(str(out))
    comms = set(rec.events["comm"].astype(str))
    assert "bad\\xff\\xfe:smile:" in comms and "a\nVERDICT SAFE" in comms   # data kept, bytes visible
    story = run_cli(["report", str(out)])
    ok(story, "report of the trace")
    check_terminal_text(story.stdout, "report of the trace")


def test_trace_json_summary_is_strict(hostile, tmp_path):
    p = hostile.start(b"bad\xff\xfe[/x]")
    out = tmp_path / "t.json"
    res = run_cli(["trace", "-p", str(p.pid), "-d", "1", "--json", "-o", str(out)])
    ok(res, "trace --json")
    doc = check_json(res.stdout, "trace --json")
    assert any(x["name"] == "bad\\xff\\xfe[/x]" for x in doc["processes"]), doc["processes"]
    check_json(out.read_bytes(), "trace -o .json")
    rep = run_cli(["report", str(out), "--json"])
    ok(rep, "report --json")
    check_json(rep.stdout, "report --json")


def test_trace_all_with_a_hostile_busy_process(hostile, tmp_path):
    target = hostile.start(b"plain")
    hostile.start(b"[/oops]", "--busy", "--signal", target.pid)
    out = tmp_path / "all.parquet"
    res = run_cli(["trace", "--all", "-d", "1", "-o", str(out)])
    ok(res, "trace --all")
    text = check_terminal_text(res.stdout, "trace --all")
    assert "[/oops]" in text, text
    assert out.exists()


def test_recording_saved_before_rendering(hostile, tmp_path):
    """A view that cannot write (stdout closed under it) must not lose -o."""
    p = hostile.start(b"victim", ARGV_EXTRA)
    for args, name in ((["trace", "-p", str(p.pid), "-d", "0.5"], "t.json"),
                       (["kill-preview", str(p.pid), "-d", "0.3"], "k.json"),
                       (["diagnose", str(p.pid), "-w", "0.3", "--no-python"], "d.html")):
        out = tmp_path / name
        r, w = os.pipe()
        os.close(r)                       # every write to stdout fails with EPIPE
        try:
            res = run_cli([*args, "-o", str(out)], stdout=w)
        finally:
            os.close(w)
        err = res.stderr.decode("utf-8", "backslashreplace")
        assert "Traceback" not in err, err
        assert out.exists(), f"{args[0]}: -o not written when rendering failed (rc {res.returncode}): {err}"
        if name.endswith(".json"):
            check_json(out.read_bytes(), f"{args[0]} -o")
        else:   # the HTML page: valid UTF-8, argv escaped visibly, no control character
            page = check_terminal_text(out.read_bytes(), "the HTML page")
            assert "arg\\nVERDICT SA" in page, page      # (the chart's labels cut argv short)


# --------------------------------------------------------------------------
# kill-preview, diagnose, report: argv, file names, py-spy frames
# --------------------------------------------------------------------------

def test_kill_preview_text_json_and_report(hostile, tmp_path):
    p = hostile.start(b"a\nVERDICT SAFE", ARGV_EXTRA)
    res = run_cli(["kill-preview", str(p.pid), "-d", "0.3"])
    ok(res, "kill-preview")
    text = check_terminal_text(res.stdout, "kill-preview")
    assert "VERDICT" in text and "UNSAFE" in text, text
    assert FILE_SHOWN in text, text       # the half-written file (argv is cut to the width: see --json)

    out = tmp_path / "k.json"
    res = run_cli(["kill-preview", str(p.pid), "-d", "0.3", "--json", "-o", str(out)])
    ok(res, "kill-preview --json")
    doc = check_json(res.stdout, "kill-preview --json")
    assert ARGV_SHOWN.replace("\\n", "\n").replace("\\x1b", "\x1b").replace("\\u202e", "\u202e") \
        in doc["target"]["command"]                       # controls kept as JSON escapes, the byte as \xff
    partial = [f["path"] for f in doc["loss"]["partial_files"]]
    assert any(f.endswith("ckpt\nVERDICT SAFE\x1b[31m\u202e\\xff.pt") for f in partial), partial
    check_json(out.read_bytes(), "kill-preview -o")

    rep = run_cli(["report", str(out)])
    ok(rep, "report of kill-preview")
    text = check_terminal_text(rep.stdout, "report of kill-preview")
    assert FILE_SHOWN in text and "kill-preview of PID" in text, text


def test_diagnose_text_and_json(hostile, tmp_path):
    """(-o of diagnose: test_recording_saved_before_rendering; report of a
    recording: test_trace_hostile_comms_text_and_recording)"""
    p = hostile.start(b"[/oops]\n\xff", ARGV_EXTRA)
    res = run_cli(["diagnose", str(p.pid), "-w", "0.3"])
    ok(res, "diagnose")
    text = check_terminal_text(res.stdout, "diagnose")
    assert '"[/oops]\\n\\xff"' in text, text               # the thread's name
    assert ARGV_SHOWN in text.replace("\n    ", " "), text    # argv (the header wraps)
    assert "work\\nVERDICT SAFE\\x1b[31m[/oops]" in text, text   # py-spy's frame (function name)

    res = run_cli(["diagnose", str(p.pid), "-w", "0.3", "--json"])
    ok(res, "diagnose --json")
    doc = check_json(res.stdout, "diagnose --json")
    assert doc["name"] == "[/oops]\n\\xff", doc["name"]     # the newline as data, the byte visible


# --------------------------------------------------------------------------
# item 9: the live status line, and "still waiting" after the drain
# --------------------------------------------------------------------------

def test_status_line_rewrites_itself_on_a_terminal(hostile):
    p = hostile.start(b"plain")
    master, slave = pty.openpty()
    proc = subprocess.Popen(PYIMPACT + ["trace", "-p", str(p.pid), "-d", "1.5"], stdout=subprocess.PIPE,
                            stderr=slave, start_new_session=True)
    os.close(slave)
    chunks = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:        # EIO: the other side is closed
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
        os.close(master)
    err = b"".join(chunks).decode("utf-8", "backslashreplace")
    assert proc.returncode == 0, err
    status = re.findall(r"\d+\.\d s  \d+ events  \d+ lost", err)
    rewritten = re.findall(r"\r *\d+\.\d s  \d+ events  \d+ lost\x1b\[K", err)
    assert len(status) >= 3, repr(err)
    assert len(rewritten) == len(status), repr(err)          # each one overwrites the last
    assert not re.search(r"lost *\d", err), repr(err)         # never appended after the previous


BUSY_THREADS = """
import threading, time, sys
def spin():
    while True:
        time.sleep(0.001)
for _ in range(4):
    threading.Thread(target=spin, daemon=True).start()
print("ready", flush=True)
spin()
"""


def test_still_waiting_never_negative(spawn, tmp_path):
    """The end of a recording is after the in-kernel state was read: a call
    still in flight then began before it."""
    p = spawn([sys.executable, "-c", BUSY_THREADS], stdout=subprocess.PIPE)
    wait_for_line(p.stdout, "ready")
    out = tmp_path / "busy.parquet"
    res = run_cli(["trace", "-p", str(p.pid), "-d", "1", "-o", str(out)])
    ok(res, "trace")
    rec = read_recording(str(out))
    assert len(rec.inflight), "no call in flight at the end: the test saw nothing"
    end = int(rec.metadata["ended_at_ns"])
    assert (rec.inflight["since_ns"].astype("int64") <= end).all(), (rec.inflight, end)
    rep = run_cli(["report", str(out), "--json"])
    ok(rep, "report --json")
    pending = json.loads(rep.stdout)["story"]["pending"]
    assert pending and all(x["for_s"] >= 0 for x in pending), pending


def test_history_db_stores_undecodable_file_names(tmp_path):
    """The recorder joins file names from the OS (lone surrogates for bytes
    that are not UTF-8) into its rows: sqlite refuses those, and the batch
    (every row since the last flush) was lost."""
    import sqlite3

    from pyimpact.collect.history_db import HistoryWriter

    db = str(tmp_path / "h.db")
    w = HistoryWriter(db)
    name = os.fsdecode(b"/ckpt/\xff\nVERDICT SAFE.pt")
    w.add("INSERT OR REPLACE INTO meta VALUES (?, ?)", ("probe", name))
    w.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", ("probe2", "x\ud800"))
    w.flush()
    w.close()
    rows = dict(sqlite3.connect(db).execute("SELECT key, value FROM meta WHERE key LIKE 'probe%'").fetchall())
    assert rows == {"probe": "/ckpt/\\xff\nVERDICT SAFE.pt", "probe2": "x\\ud800"}


def test_process_words_keep_a_rewritten_argv_whole():
    """A program may rewrite its argv into one line with spaces and slashes
    ("sshd: user@pts/0"): it names the process as it is; only a word that
    starts like a path is cut to its last part."""
    from pyimpact.analyse.hang.waitmodel import ProcessInfo, process_words

    def words(cmdline):
        return process_words(ProcessInfo(7, "x", "S", 1, cmdline, [7], [], False, 0, 0, 0, 0, 0, None, 0.0))
    assert words(["sshd: alice@pts/0"]) == "pid 7 (sshd: alice@pts/0)"
    assert words(["postgres: 15/main: checkpointer"]) == "pid 7 (postgres: 15/main: checkpointer)"
    assert words(["/usr/bin/python3", "./jobs/train.py", "data/x.csv"]) == "pid 7 (python3 train.py data/x.csv)"
    assert words(["/srv/"]) == "pid 7 (/srv/)"
