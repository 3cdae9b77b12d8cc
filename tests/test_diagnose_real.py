"""`pyimpact diagnose` on real third-party software, hung and healthy.

Servers from Debian (nginx, redis-server, PostgreSQL), command-line tools
(tar, gzip, sqlite3, redis-cli, redis-benchmark, psql) and a torch.distributed
gloo job, each started by a fixture on 127.0.0.1 with its own data directory
and port, in its own process group, and reaped at the end.  Servers are
shared per module (they take a while to start); the states (a blocked
client, a load) are made per test.  Every test asserts the verdict class
and the root cause's pid: the rules of DESIGN.md "The verdict model" are
what is tested, on programs we did not write.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import ROOT as REPO, TARGETS, Spawner, kill_group_and_reap, proc_state, proc_syscall, wait_for_line, \
    wait_state
from pyimpact.analyse.diagnose import CLASSES, KINDS
from pyimpact.commands.diagnose import observe
from pyimpact.render.diagnose_view import lines

IS_ROOT = os.geteuid() == 0
WINDOW = 0.5

pytestmark = [
    pytest.mark.skipif(not IS_ROOT, reason="diagnose tests start the kernel probes: run as root"),
    pytest.mark.filterwarnings("ignore:not a bytes object:DeprecationWarning"),
]


def diagnose(pid: int, **kw):
    kw.setdefault("window", WINDOW)
    kw.setdefault("python_stacks", False)
    d, rec = observe(pid, **kw)
    text = "\n".join(lines(d))
    assert d.verdict in CLASSES and d.root_cause.kind in KINDS, text
    if d.verdict in ("idle", "progressing"):
        assert "Root cause" not in text, text    # healthy verdicts name no root cause
    return d, text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def children_of(pid: int):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def io_chars(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        kv = dict(line.split(": ") for line in f.read().splitlines())
    return int(kv["rchar"]) + int(kv["wchar"])


@pytest.fixture(scope="module")
def servers():
    s = Spawner()
    try:
        yield s
    finally:
        s.cleanup()


@pytest.fixture
def spawn_here():
    s = Spawner()
    try:
        yield s
    finally:
        s.cleanup()


# --------------------------------------------------------------------------
# nginx: a master in rt_sigsuspend, a worker in epoll_wait on its listener
# --------------------------------------------------------------------------

NGINX_CONF = """daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "{body}"; }} }}
}}
"""


@pytest.fixture(scope="module")
def nginx(servers, tmp_path_factory):
    d = str(tmp_path_factory.mktemp("nginx"))
    port = free_port()
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF.format(d=d, port=port, body="x" * 2000))
    master = servers([shutil.which("nginx") or "/usr/sbin/nginx", "-p", d, "-c", os.path.join(d, "nginx.conf"),
                      "-e", os.path.join(d, "error.log")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_port(port, proc=master)
    wait_state(lambda: children_of(master.pid), what="an nginx worker")
    worker = children_of(master.pid)[0]
    wait_state(lambda: proc_state(master.pid) == "S" and proc_state(worker) == "S", what="nginx asleep")
    return master.pid, worker, port


def test_nginx_idle_master_and_worker_are_idle(nginx):
    master, worker, port = nginx

    d, text = diagnose(master)
    assert d.verdict == "idle" and not d.hung, text
    assert d.root_cause.pid == master, text
    assert "signals" in d.summary, text

    d, text = diagnose(worker)
    assert d.verdict == "idle" and not d.hung, text
    assert d.root_cause.pid == worker, text
    assert f"127.0.0.1:{port}" in d.summary, text    # the listener it waits on


def test_nginx_under_load_is_progressing(nginx, spawn_here):
    master, worker, port = nginx
    load = spawn_here([sys.executable, os.path.join(TARGETS, "http_load.py"), str(port), "60"],
                      stdout=subprocess.PIPE)
    wait_for_line(load.stdout, "ready")

    d, text = diagnose(worker)
    assert d.verdict == "progressing", text
    assert d.root_cause.pid == worker, text

    d, text = diagnose(master)      # a supervisor whose worker works
    assert d.verdict == "progressing", text
    assert d.root_cause.pid == worker, text

    d, text = diagnose(load.pid)    # the client moves data too
    assert d.verdict == "progressing" and d.root_cause.pid == load.pid, text


# --------------------------------------------------------------------------
# redis: idle, a client in BLPOP, under redis-benchmark
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def redis(servers, tmp_path_factory):
    d = str(tmp_path_factory.mktemp("redis"))
    port = free_port()
    srv = servers(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", d, "--daemonize", "no", "--protected-mode", "yes"],
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc=srv)
    return srv.pid, port


def redis_cli(port: int, *args: str) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), *args], stdout=subprocess.PIPE, text=True,
                          timeout=10, check=True).stdout


def test_redis_idle_server_is_idle(redis):
    srv, port = redis

    d, text = diagnose(srv)

    assert d.verdict == "idle" and not d.hung, text
    assert d.root_cause.pid == srv, text
    assert f"127.0.0.1:{port}" in text, text


def test_redis_client_in_blpop_is_blocked_on_the_idle_server(redis, spawn_here):
    srv, port = redis
    cli = spawn_here(["redis-cli", "-p", str(port), "BLPOP", f"jobs-{os.getpid()}", "0"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_state(lambda: "cmd=blpop" in redis_cli(port, "CLIENT", "LIST"), what="a client in BLPOP")
    wait_state(lambda: proc_state(cli.pid) == "S", what="redis-cli asleep")

    d, text = diagnose(cli.pid)

    assert d.verdict == "blocked" and d.hung, text
    assert (d.root_cause.pid, d.root_cause.kind) == (srv, "socket"), text
    assert "nothing to send" in d.summary, text
    assert any("BLPOP" in e.upper() and "redis" in e for e in d.evidence), d.evidence   # asked the server


def test_redis_under_benchmark_is_progressing(redis, spawn_here):
    srv, port = redis
    bench = spawn_here(["redis-benchmark", "-p", str(port), "-n", "50000000", "-c", "2", "-q", "-t", "get"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_state(lambda: "cmd=get" in redis_cli(port, "CLIENT", "LIST"), what="benchmark connected")

    d, text = diagnose(srv)
    assert d.verdict == "progressing", text
    assert d.root_cause.pid == srv, text

    d, text = diagnose(bench.pid)
    assert d.verdict == "progressing" and d.root_cause.pid == bench.pid, text


# --------------------------------------------------------------------------
# tar | gzip on real data
# --------------------------------------------------------------------------

def test_tar_gzip_pipeline_is_progressing(spawn_here):
    data = "/usr/lib/x86_64-linux-gnu" if os.path.isdir("/usr/lib/x86_64-linux-gnu") else "/usr/lib"
    sh = spawn_here(["sh", "-c", f"tar cf - {data} 2>/dev/null | gzip -1 > /dev/null"])
    wait_state(lambda: len(children_of(sh.pid)) == 2, what="tar and gzip started")
    tar, gz = sorted(children_of(sh.pid))
    time.sleep(0.2)

    for pid in (tar, gz):
        d, text = diagnose(pid)
        assert d.verdict == "progressing", text
        assert d.root_cause.pid == pid, text

    d, text = diagnose(sh.pid)          # waits for its children, which work
    assert d.verdict == "progressing", text
    assert d.root_cause.pid in (tar, gz), text


# --------------------------------------------------------------------------
# sqlite3: a busy handler polling for a lock another sqlite3 holds
# --------------------------------------------------------------------------

def test_sqlite_busy_handler_is_blocked_on_the_lock_holder(spawn_here, tmp_path):
    db = str(tmp_path / "t.db")
    subprocess.run(["sqlite3", db, "CREATE TABLE t(x)"], check=True)
    holder = spawn_here(["sqlite3", db], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    holder.stdin.write("BEGIN EXCLUSIVE;\nINSERT INTO t VALUES(1);\nSELECT 'held';\n")
    holder.stdin.flush()
    wait_for_line(holder.stdout, "held")
    waiter = spawn_here(["sqlite3", "-cmd", ".timeout 600000", db, "INSERT INTO t VALUES(2);"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_state(lambda: proc_syscall(waiter.pid) in ("230", "35", "72"), what="the waiter retrying")
    time.sleep(0.3)

    d, text = diagnose(waiter.pid)

    assert d.verdict == "blocked" and d.hung, text
    assert (d.root_cause.pid, d.root_cause.kind) == (holder.pid, "file-lock"), text
    assert "fcntl" in d.summary and "polls" in d.summary, text

    d, text = diagnose(holder.pid)      # holds the lock, waits for its next command from us (its parent)
    assert d.verdict == "idle" and d.root_cause.pid == holder.pid, text
