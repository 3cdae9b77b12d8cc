"""`pyimpact diagnose` on more real programs, hung and healthy (see test_diagnose_real).

Shapes the first file did not cover: a compressor that polls its output pipe
beside a self-pipe of its own (xz), an asyncio client awaiting a reply
(its event loop also polls a self-pipe), a lock holder that runs a command
while it holds the lock (util-linux flock), a threaded server whose threads
wait on pipes among themselves (memcached), idle and under load.  Each test
starts the programs itself, in their own process groups, reaps them, and
asserts the verdict class and the root cause's pid.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import proc_state, proc_syscall, wait_for_line, wait_state
from test_diagnose_real import IS_ROOT, children_of, diagnose as _diagnose, free_port, remember, \
    servers, spawn_here, wait_port  # noqa: F401  (fixtures)

WINDOW = 1.0     # the CLI's default window

pytestmark = [
    pytest.mark.skipif(not IS_ROOT, reason="diagnose tests start the kernel probes: run as root"),
    pytest.mark.filterwarnings("ignore:not a bytes object:DeprecationWarning"),
]

SYS_POLL, SYS_FLOCK, SYS_EPOLL_WAIT = "7", "73", "232"


def diagnose(pid: int, **kw):
    kw.setdefault("window", WINDOW)
    return _diagnose(pid, **kw)


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _child_named(parent: int, comm: str) -> int:
    kids = [c for c in children_of(parent) if _comm(c) == comm]
    assert kids, f"no child {comm} of pid {parent}: {children_of(parent)}"
    return kids[0]


# --------------------------------------------------------------------------
# xz: its output pipe polled for room, beside its own self-pipe
# --------------------------------------------------------------------------

def test_xz_writing_to_a_stopped_reader_is_blocked_on_that_reader(spawn_here):
    """xz waits in poll() on its stdout (the write end of a full pipe) and on
    a self-pipe its signal handler writes.  The write end is drained by the
    reader, which is stopped: xz, the writer before it and the shell are
    blocked on the stopped reader; the self-pipe brings nothing."""
    xz = shutil.which("xz")
    assert xz, "xz-utils is in tests/apt-packages.txt"
    pipeline = spawn_here(["sh", "-c", f"head -c 2000000000 /dev/urandom | {xz} -T1 -0 | cat > /dev/null"])
    wait_state(lambda: len(children_of(pipeline.pid)) == 3, what="head, xz and cat started")
    remember(*children_of(pipeline.pid))
    head, comp, cat = (_child_named(pipeline.pid, n) for n in ("head", "xz", "cat"))
    time.sleep(0.2)     # data flows
    os.kill(cat, signal.SIGSTOP)
    wait_state(lambda: proc_state(cat) == "T", what="cat stopped")
    wait_state(lambda: proc_syscall(comp) == SYS_POLL and proc_state(comp) == "S", what="xz waiting in poll")
    wait_state(lambda: proc_state(head) == "S", what="head waiting on its full pipe")

    d, text = diagnose(comp)
    assert d.verdict == "blocked" and d.hung, text
    assert (d.root_cause.pid, d.root_cause.kind) == (cat, "signal-stop"), text

    for pid in (head, pipeline.pid):
        d, text = diagnose(pid)
        assert d.verdict == "blocked" and d.root_cause.pid == cat, text


# --------------------------------------------------------------------------
# asyncio: a client awaiting a reply; its loop also polls its own self-pipe
# --------------------------------------------------------------------------

ASYNC_SERVER = """
import asyncio, sys
async def handle(r, w):
    line = await r.readline()
    if line.startswith(b"ping"):
        w.write(b"pong\\n")
        await w.drain()
    await asyncio.sleep(3600)          # any other request: never answered
async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
"""

ASYNC_CLIENT = """
import asyncio, sys
async def main():
    r, w = await asyncio.open_connection(sys.argv[2], int(sys.argv[1]))
    w.write(sys.argv[3].encode() + b"\\n")
    await w.drain()
    print("sent", await r.readline() if sys.argv[3] == "ping" else "", flush=True)
    print(await r.read(100), flush=True)
asyncio.run(main())
"""


@pytest.fixture
def asyncio_server(spawn_here):
    port = free_port()
    srv = spawn_here([sys.executable, "-c", ASYNC_SERVER, str(port)], stdout=subprocess.PIPE, text=True)
    wait_for_line(srv.stdout, "ready")
    return srv.pid, port


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])   # localhost: a resolver thread waits too
def test_asyncio_client_awaiting_a_reply_is_blocked_on_the_server(asyncio_server, spawn_here, host):
    server, port = asyncio_server
    client = spawn_here([sys.executable, "-c", ASYNC_CLIENT, str(port), host, "hang"],
                        stdout=subprocess.PIPE, text=True)
    wait_for_line(client.stdout, "sent")
    wait_state(lambda: proc_syscall(client.pid) == SYS_EPOLL_WAIT and proc_state(client.pid) == "S",
               what="the client's loop waiting")

    d, text = diagnose(client.pid)
    assert d.verdict == "blocked" and d.hung, text
    assert (d.root_cause.pid, d.root_cause.kind) == (server, "socket"), text
    assert "possibly by design" in d.summary, text   # the server is alive and idle

    d, text = diagnose(server)
    assert d.verdict == "idle" and d.root_cause.pid == server, text


# --------------------------------------------------------------------------
# flock(1) holding a lock while its command runs
# --------------------------------------------------------------------------

def test_flock_waiter_is_blocked_on_the_holder_not_on_the_holders_command(spawn_here, tmp_path):
    """`flock -x LOCK sleep` holds the lock (it is the pid /proc/locks names)
    and waits for its command.  A waiter -- flock itself, or a Python parent
    in subprocess.run() of it -- is blocked on the holder: what the holder
    waits for (its idle child) is not what the waiter needs, the release is.
    So is a waiter the kernel queued behind another waiter."""
    lock = str(tmp_path / "job.lock")
    holder = spawn_here(["flock", "-x", lock, "sleep", "3600"])
    wait_state(lambda: children_of(holder.pid) and proc_syscall(children_of(holder.pid)[0]) == "230",
               what="the holder's command sleeping")
    remember(*children_of(holder.pid))
    parent = spawn_here([sys.executable, "-c", "import subprocess, sys; "
                         "subprocess.run(['flock', '-x', sys.argv[1], 'true'])", lock])
    wait_state(lambda: children_of(parent.pid) and proc_syscall(children_of(parent.pid)[0]) == SYS_FLOCK,
               what="flock waiting for the lock")
    waiter = children_of(parent.pid)[0]
    remember(waiter)

    # a second waiter: the kernel queues its request behind the first waiter's
    # (/proc/locks "1:  -> FLOCK ..." under "1: -> FLOCK ..."); the lock is still the holder's
    second = spawn_here(["flock", "-x", lock, "true"])
    wait_state(lambda: proc_syscall(second.pid) == SYS_FLOCK, what="a second flock waiting")
    with open("/proc/locks") as f:
        assert f" -> FLOCK  ADVISORY  WRITE {second.pid} " in f.read()

    for pid in (waiter, parent.pid, second.pid):
        d, text = diagnose(pid)
        assert d.verdict == "blocked" and d.hung, text
        assert (d.root_cause.pid, d.root_cause.kind) == (holder.pid, "file-lock"), text
