"""Bad numbers, special processes and unreadable inputs, through the real CLI
(issue 8, item 8): one line on stderr, the documented exit code, never a
traceback.

Exit codes used here (README, "Exit codes"): 2 for a bad option value and for
a PID that is a kernel thread or init (diagnose and kill-preview do not apply
to them); 7 for a `report` input that cannot be read; 4 for not root.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import PYIMPACT, run_cli_as_nobody

PF_KTHREAD = 0x00200000


def _cli(args, timeout=60):
    return subprocess.run(PYIMPACT + list(args), capture_output=True, text=True, errors="replace", timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _one_line(res, code, *needles):
    err = res.stderr.strip()
    assert res.returncode == code, (res.returncode, res.stdout[-500:], err[-2000:])
    assert "Traceback" not in err and "Traceback" not in res.stdout, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("pyimpact: "), err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture
def sleeper(spawn):
    return spawn([sys.executable, "-c", "import time; time.sleep(120)"])


BAD_NUMBERS = [
    # (command and option, value)
    (["trace", "-p", "{pid}", "-d"], "inf"),
    (["trace", "-p", "{pid}", "-d"], "nan"),
    (["trace", "-p", "{pid}", "-d"], "-1"),
    (["trace", "-p", "{pid}", "-d"], "0"),
    (["trace", "-p", "{pid}", "-d"], "1e300"),
    (["trace", "-p", "{pid}", "-d", "1", "--slow-ms"], "nan"),
    (["trace", "-p", "{pid}", "-d", "1", "--slow-ms"], "-5"),
    (["trace", "-p", "{pid}", "-d", "1", "--slow-ms"], "1e300"),
    (["trace", "-p", "{pid}", "-d", "1", "--buffer-pages"], "0"),
    (["trace", "-p"], "nan"),
    (["trace", "-p"], "0"),
    (["trace", "-p"], "99999999999999999999"),
    (["diagnose", "{pid}", "--window"], "nan"),
    (["diagnose", "{pid}", "--window"], "inf"),
    (["diagnose", "{pid}", "--window"], "-inf"),
    (["diagnose", "{pid}", "--window"], "0"),
    (["diagnose"], "0"),
    (["diagnose"], "2147483648"),
    (["kill-preview", "{pid}", "-d"], "nan"),
    (["kill-preview", "{pid}", "-d"], "inf"),
    (["kill-preview", "{pid}", "--costly-after"], "nan"),
    (["kill-preview", "{pid}", "--costly-after"], "-1"),
    (["kill-preview"], "0"),
    (["report", "x.parquet", "-p"], "nan"),
    # the action and other commands share the same types (click rejects before anything is signalled)
    (["stop", "{pid}", "--grace"], "nan"),
    (["stop", "{pid}", "--max-wait"], "inf"),
    (["stop"], "0"),
    (["suspend"], "nan"),
    (["orphans", "-p"], "nan"),
    (["gpu-report", "--hog-pct"], "nan"),
]


@pytest.mark.parametrize("args,value", BAD_NUMBERS, ids=[" ".join(a[:1] + a[-1:] + [v]) for a, v in BAD_NUMBERS])
def test_bad_number_is_one_line_usage_error(args, value, sleeper):
    argv = [a.replace("{pid}", str(sleeper.pid)) for a in args] + [value]
    err = _one_line(_cli(argv), 2)
    assert repr(value) in err or value in err, err   # names the value it refused


def test_pid_that_names_no_process_is_exit_3():
    """Above pid_max no process can exist, but the number is a well-formed pid_t:
    "no such process" (3), one line, for every command that takes a PID."""
    for cmd in (["diagnose", "4194305"], ["kill-preview", "4194305"], ["trace", "-p", "4194305", "-d", "1"]):
        _one_line(_cli(cmd), 3, "no such process")


def test_kernel_threads_get_one_line(sleeper):
    """pid 2 (kthreadd) and another kernel thread found by its PF_KTHREAD flag."""
    kthreads = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or name == "2":
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[6]) & PF_KTHREAD:
            kthreads.append(int(name))
            break
    assert kthreads, "no kernel thread besides kthreadd found"
    for pid in [2] + kthreads:
        for cmd in ("diagnose", "kill-preview"):
            err = _one_line(_cli([cmd, str(pid)]), 2, "kernel thread", f"pid {pid}")
            assert "read(" not in err and "SIG" not in err, err


def test_init_gets_one_line():
    for cmd in (["kill-preview", "1"], ["diagnose", "1"], ["trace", "--kill-preview", "-p", "1", "-d", "1"]):
        err = _one_line(_cli(cmd), 2, "pid 1", "init")
        assert "SIGSTOP" not in err and "SIGTERM" not in err, err


def test_ordinary_process_is_not_special(sleeper):
    """The guard must not catch ordinary processes: a sleeper gets a diagnosis."""
    res = _cli(["diagnose", str(sleeper.pid), "--no-bpf", "--no-python", "--window", "0.1"])
    assert res.returncode == 0, res.stderr
    assert "kernel thread" not in res.stderr and "is init" not in res.stderr


def test_report_of_a_directory(tmp_path):
    _one_line(_cli(["report", str(tmp_path)]), 7, "directory")
    d = tmp_path / "looks.parquet"
    d.mkdir()
    _one_line(_cli(["report", str(d)]), 7, "directory")


def test_report_of_an_unreadable_file(tmp_path):
    """A real recording with mode 0600, read by nobody: exit 7, one line."""
    import shutil

    from conftest import RECORDINGS

    import tempfile

    where = tempfile.mkdtemp(prefix="pyimpact-unreadable-")   # nobody may enter it, not read the file
    try:
        os.chmod(where, 0o755)
        path = os.path.join(where, "secret.parquet")
        shutil.copy(os.path.join(RECORDINGS, "diag_rec_sleeper.parquet"), path)
        os.chmod(path, 0o600)
        assert _cli(["report", path]).returncode == 0     # the file itself is a good recording
        res = run_cli_as_nobody(["report", path])
        _one_line(res, 7, "cannot read", "ermission denied")
    finally:
        shutil.rmtree(where, ignore_errors=True)
    _one_line(_cli(["report", str(tmp_path / "missing.parquet")]), 7, "cannot read")


def test_trace_not_root_hint_names_only_real_options(sleeper):
    res = run_cli_as_nobody(["trace", "-p", str(sleeper.pid), "-d", "1"])
    err = _one_line(res, 4, "root")
    helptext = _cli(["trace", "--help"]).stdout
    for option in re.findall(r"--[a-z][a-z-]*", err):
        assert option in helptext, f"the hint suggests {option}, which trace does not have: {err}"
