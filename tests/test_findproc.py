"""Finding the process by name (pyimpact.collect.findproc), on real processes.

Each test starts its own uniquely named processes (a script under tmp_path
whose name holds a random token), so no other process on the machine can
match, and reaps them through the spawn fixture.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time

import psutil
import pytest

from conftest import PYIMPACT, ROOT, wait_for_line
from pyimpact.collect import findproc
from pyimpact.errors import ProcessGone, UsageError

SLEEPER = "import sys, time\nprint('ready', flush=True)\ntime.sleep(120)\n"


def _script(tmp_path, body: str = SLEEPER) -> str:
    path = tmp_path / f"eco_job_{secrets.token_hex(4)}.py"
    path.write_text(body)
    return str(path)


def _start(spawn, argv):
    proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    wait_for_line(proc.stdout, "ready")
    return proc


def _cli(args, timeout=60, **kw):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(PYIMPACT + list(args), capture_output=True, timeout=timeout, env=env, **kw)


def test_names_of_interpreters_and_programs():
    names = findproc.names_of("python3", "/usr/bin/python3.11", ["python3", "-u", "/srv/train.py", "--lr", "1"])
    assert {"train.py", "train", "/srv/train.py", "python3", "python3.11"} <= names
    assert "--lr" not in names and "1" not in names and "trai" not in names
    assert "tools.serve" in findproc.names_of("python", "/usr/bin/python3", ["python", "-m", "tools.serve"])
    # python -c has no script: the code is not a name
    assert findproc.names_of("python", "", ["python", "-c", "import x"]) == {"python"}
    # a non-interpreter's arguments never name it (sudo pyimpact diagnose train.py)
    assert "train.py" not in findproc.names_of("sudo", "/usr/bin/sudo", ["sudo", "pyimpact", "diagnose", "train.py"])
    assert "worker.sh" in findproc.names_of("bash", "/usr/bin/bash", ["bash", "-e", "./worker.sh"])
    assert "train.py" in findproc.names_of("torchrun", "/usr/bin/python3",
                                           ["/venv/bin/python3", "/venv/bin/torchrun", "--nproc-per-node", "2",
                                            "train.py"])


def test_unique_name_resolves_to_its_pid(spawn, tmp_path):
    script = _script(tmp_path)
    proc = _start(spawn, [sys.executable, script])
    base = os.path.basename(script)
    for spec in (base, base[:-3], script):
        assert findproc.resolve(spec) == proc.pid, spec
    assert findproc.resolve(str(proc.pid)) == proc.pid


def test_several_matches_are_listed_and_none_is_gone(spawn, tmp_path):
    script = _script(tmp_path)
    a = _start(spawn, [sys.executable, script])
    b = _start(spawn, [sys.executable, script])
    with pytest.raises(UsageError) as err:
        findproc.resolve(os.path.basename(script))
    assert err.value.exit_code == 2
    assert str(a.pid) in err.value.message and str(b.pid) in err.value.message
    with pytest.raises(ProcessGone) as gone:
        findproc.resolve(f"eco_nothing_{secrets.token_hex(4)}")
    assert gone.value.exit_code == 3


def test_invoking_chain_stops_at_the_shell(spawn):
    """The chain of a command is itself up to its shell; without a shell, itself and its parent."""
    sh = spawn(["bash", "-c", "sleep 120; true"])
    deadline = time.monotonic() + 10
    while not psutil.Process(sh.pid).children() and time.monotonic() < deadline:
        time.sleep(0.02)
    sleeper = psutil.Process(sh.pid).children()[0].pid
    assert findproc.invoking_chain(sleeper) == {sleeper, sh.pid}
    # pytest -> this process: no shell in the first levels that matter here
    assert {os.getpid(), os.getppid()} <= findproc.invoking_chain()


def test_cli_never_matches_itself(tmp_path):
    """A CLI started as a script named like the target it looks for finds nothing: exit 3."""
    cli = tmp_path / f"eco_cli_{secrets.token_hex(4)}.py"
    cli.write_text("from pyimpact.cli import entry\nentry()\n")
    env = dict(os.environ, PYTHONPATH=ROOT)
    res = subprocess.run([sys.executable, str(cli), "diagnose", "--no-bpf", "-w", "0.05", cli.name],
                         capture_output=True, timeout=60, env=env)
    assert res.returncode == 3, res.stderr
    assert b"no process is called" in res.stderr


def test_cli_by_name_pid_option_and_errors(spawn, tmp_path):
    script = _script(tmp_path)
    proc = _start(spawn, [sys.executable, script])
    name = os.path.basename(script)
    res = _cli(["diagnose", "--no-bpf", "--no-python", "-w", "0.05", "--json", name])
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["pid"] == proc.pid
    res = _cli(["diagnose", "--no-bpf", "--no-python", "-w", "0.05", "--json", "-n", name[:-3]])
    assert res.returncode == 0 and json.loads(res.stdout)["pid"] == proc.pid, res.stderr
    res = _cli(["kill-preview", "--no-bpf", "-d", "0.2", "--json", "--pid", str(proc.pid)])
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["tree"][0]["pid"] == proc.pid
    # two ways at once, none at all: usage errors
    for args in (["diagnose", "--no-bpf", name, "--pid", str(proc.pid)], ["diagnose", "--no-bpf"]):
        res = _cli(args)
        assert res.returncode == 2 and len(res.stderr.decode().strip().splitlines()) == 1, res.stderr
    twin = _start(spawn, [sys.executable, script])
    res = _cli(["kill-preview", "--no-bpf", "-d", "0.2", name])
    err = res.stderr.decode().strip()
    assert res.returncode == 2 and str(proc.pid) in err and str(twin.pid) in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.skipif(os.geteuid() != 0, reason="trace needs root (CI is root)")
def test_trace_by_name(spawn, tmp_path):
    script = _script(tmp_path)
    proc = _start(spawn, [sys.executable, script])
    res = _cli(["trace", "-n", os.path.basename(script), "-d", "0.3", "--json"], timeout=90)
    assert res.returncode == 0, res.stderr
    assert f"tracing {proc.pid} " in res.stderr.decode()
    res = _cli(["trace", "-p", os.path.basename(script), "-p", str(proc.pid), "-d", "0.3", "--json"], timeout=90)
    assert res.returncode == 0 and f"tracing {proc.pid} " in res.stderr.decode(), res.stderr
