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
from test_diagnose_real import IS_ROOT, _comm, children_of, diagnose as _diagnose, free_port, remember, \
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


def _children_named(parent: int, *comms: str):
    """The children of ``parent`` running ``comms`` (once each has exec'd), in that order."""
    def found():
        by = {_comm(c): c for c in children_of(parent)}
        return all(n in by for n in comms) and [by[n] for n in comms]
    wait_state(found, what=f"children {comms} of pid {parent}")
    return found()


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
    head, comp, cat = _children_named(pipeline.pid, "head", "xz", "cat")
    remember(head, comp, cat)
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
    if sys.argv[2:] == ["timer"]:
        await asyncio.sleep(3600)      # never answered; the loop waits with a timeout
    else:
        await asyncio.Event().wait()   # never answered; the loop waits with none
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


def _asyncio_server(spawn_here, *mode: str):
    port = free_port()
    srv = spawn_here([sys.executable, "-c", ASYNC_SERVER, str(port), *mode], stdout=subprocess.PIPE, text=True)
    wait_for_line(srv.stdout, "ready")
    return srv.pid, port


@pytest.fixture
def asyncio_server(spawn_here):
    return _asyncio_server(spawn_here, "timer")


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


def test_clients_of_an_event_loop_holding_their_requests_are_blocked_not_in_a_conversation(spawn_here):
    """The server's loop waits without a timeout on its listener and on every
    connection, the client's among them: that it watches the client's
    connection is no sign it waits for the client's next request (it has not
    answered this one).  A plain client and curl are blocked on it."""
    server, port = _asyncio_server(spawn_here)
    plain = spawn_here([sys.executable, "-c",
                        "import socket, sys\ns = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
                        "s.sendall(b'hang\\n')\nprint('sent', flush=True)\ns.recv(100)\n", str(port)],
                       stdout=subprocess.PIPE, text=True)
    wait_for_line(plain.stdout, "sent")
    curl = spawn_here(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/"])
    for pid, call in ((plain.pid, "45"), (curl.pid, SYS_POLL)):
        wait_state(lambda: proc_syscall(pid) == call and proc_state(pid) == "S", what=f"pid {pid} waiting")
    time.sleep(0.3)
    wait_state(lambda: proc_syscall(server) == SYS_EPOLL_WAIT and
               open(f"/proc/{server}/syscall").read().split()[4] == "0xffffffff", what="the loop, no timeout")

    for pid in (plain.pid, curl.pid):
        d, text = diagnose(pid)
        assert d.verdict == "blocked" and d.hung, text
        assert (d.root_cause.pid, d.root_cause.kind) == (server, "socket"), text
        assert "conversation" not in d.summary, text


@pytest.mark.parametrize("client", ["curl", "urllib"])
def test_client_waiting_with_timeouts_for_a_reply_is_blocked_on_the_server(asyncio_server, spawn_here, client):
    """The same wait through a poll with a timeout: curl wakes every second
    (poll on its connection and its own socketpair, nothing ready), urllib with
    a socket timeout sleeps in one long poll.  Nothing arrives: blocked on the
    server that owes the reply, as a blocking read would be."""
    server, port = asyncio_server
    url = f"http://127.0.0.1:{port}/"
    argv = ["curl", "-s", "-o", "/dev/null", url] if client == "curl" else \
        [sys.executable, "-c", f"import urllib.request; urllib.request.urlopen({url!r}, timeout=600)"]
    proc = spawn_here(argv)
    waiting = lambda: proc_syscall(proc.pid) == SYS_POLL and proc_state(proc.pid) == "S"   # noqa: E731
    wait_state(waiting, what=f"{client} waiting in poll")
    time.sleep(0.3)     # past the connection and the request: waiting for the reply
    wait_state(waiting, what=f"{client} waiting in poll")

    d, text = diagnose(proc.pid)
    assert d.verdict == "blocked" and d.hung, text
    assert (d.root_cause.pid, d.root_cause.kind) == (server, "socket"), text


SLEEPY_SERVER = """import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print("port", s.getsockname()[1], flush=True)
c, _ = s.accept()
time.sleep(3600)                       # accepted, never reads
"""


def test_client_whose_send_buffer_is_full_is_blocked_on_the_server_that_does_not_read(spawn_here):
    srv = spawn_here([sys.executable, "-c", SLEEPY_SERVER], stdout=subprocess.PIPE, text=True)
    port = int(wait_for_line(srv.stdout, "port").split()[1])
    client = spawn_here([sys.executable, "-c", "import socket, sys\n"
                         "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
                         "s.sendall(b'x' * 200_000_000)\n", str(port)])
    wait_state(lambda: proc_syscall(client.pid) == "44" and proc_state(client.pid) == "S",
               what="the client blocked in sendto")

    d, text = diagnose(client.pid)
    assert d.verdict == "blocked" and d.hung, text
    assert (d.root_cause.pid, d.root_cause.kind) == (srv.pid, "socket"), text
    assert "does not read" in d.summary, text

    d, text = diagnose(srv.pid)
    assert d.verdict == "idle" and d.root_cause.pid == srv.pid, text


def test_clients_of_a_server_that_never_accepts_are_blocked_on_it(spawn_here):
    """listen(0) and no accept(): one client's connection completes into the
    backlog (it waits in recv), the next ones stay in connect() (SYN_SENT).
    All are blocked on the server, which is alive and idle."""
    srv = spawn_here([sys.executable, "-c", "import socket, time\ns = socket.socket()\n"
                      "s.bind(('127.0.0.1', 0))\ns.listen(0)\nprint('port', s.getsockname()[1], flush=True)\n"
                      "time.sleep(3600)\n"], stdout=subprocess.PIPE, text=True)
    port = int(wait_for_line(srv.stdout, "port").split()[1])
    clients = []
    for _ in range(3):
        c = spawn_here([sys.executable, "-c", "import socket, sys\n"
                        "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\ns.recv(1)\n", str(port)])
        wait_state(lambda: proc_syscall(c.pid) in ("42", "45") and proc_state(c.pid) == "S",
                   what="a client in connect or recvfrom")
        clients.append(c.pid)
    calls = {proc_syscall(c) for c in clients}
    assert "42" in calls, calls       # at least one still connecting

    for pid in clients:
        d, text = diagnose(pid)
        assert d.verdict == "blocked" and d.hung, text
        assert (d.root_cause.pid, d.root_cause.kind) == (srv.pid, "socket"), text
        assert "accept" in d.summary, text


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

    # a ProcessPoolExecutor whose worker waits for the same lock: the job's parent
    # waits in its management thread for a result the worker cannot produce
    job = spawn_here([sys.executable, "-c", "import concurrent.futures as cf, fcntl, sys\n"
                      "def work(path):\n    fcntl.flock(open(path, 'w'), fcntl.LOCK_EX)\n"
                      "if __name__ == '__main__':\n    with cf.ProcessPoolExecutor(1) as ex:\n"
                      "        ex.submit(work, sys.argv[1]).result()\n", lock])
    wait_state(lambda: any(proc_syscall(c) == SYS_FLOCK for c in children_of(job.pid)), what="the pool worker waiting")
    remember(*children_of(job.pid))

    for pid in (waiter, parent.pid, second.pid, job.pid):
        d, text = diagnose(pid)
        assert d.verdict == "blocked" and d.hung, text
        assert (d.root_cause.pid, d.root_cause.kind) == (holder.pid, "file-lock"), text


# --------------------------------------------------------------------------
# deadlocks, and the processes that wait on one
# --------------------------------------------------------------------------

#: two threads taking two threading.Locks in opposite orders (each takes its
#: first lock, then waits until the other has taken its own)
ABBA = """import threading
a, b = threading.Lock(), threading.Lock()
ha, hb = threading.Event(), threading.Event()
def one():
    with a:
        ha.set(); hb.wait()
        with b: pass
def two():
    with b:
        hb.set(); ha.wait()
        with a: pass
ts = [threading.Thread(target=one, name="one"), threading.Thread(target=two, name="two")]
for t in ts: t.start()
for t in ts: t.join()
"""


def _threads_in_futex(pid: int, n: int) -> bool:
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    return len(tids) == n and all(proc_syscall(pid, int(t)) == "202" and proc_state(pid, int(t)) == "S"
                                  for t in tids)


def test_reader_of_a_deadlocked_writer_is_blocked_on_the_deadlock_not_in_it(spawn_here):
    """`python abba.py | cat`: the Python process is the deadlock; cat (its
    pipe's reader) and the shell (waiting for both) are stuck because of it,
    but are in no cycle: blocked, with the deadlocked process as the root."""
    shell = spawn_here(["sh", "-c", f"{sys.executable} -c '{ABBA}' | cat"])
    py, cat = _children_named(shell.pid, os.path.basename(sys.executable)[:15], "cat")
    remember(py, cat)
    wait_state(lambda: _threads_in_futex(py, 3), what="the three Python threads in futex waits")
    wait_state(lambda: proc_state(cat) == "S", what="cat waiting")

    d, text = diagnose(py)
    assert d.verdict == "deadlock" and d.root_cause.pid == py, text
    assert {c.pid for c in d.cycle} == {py}, text

    for pid in (cat, shell.pid):
        d, text = diagnose(pid)
        assert d.verdict == "blocked" and d.hung, text
        assert d.root_cause.pid == py and d.root_cause.kind == "futex", text
        assert "DEADLOCK" in d.summary, text


def test_pipe_deadlock_between_a_parent_and_its_child_is_a_deadlock_across_both(spawn_here):
    """The subprocess pitfall: the parent writes more than a pipe holds to its
    child's stdin and reads nothing back; the child (cat) blocks writing its
    stdout, which only the parent reads.  Each waits for the other: a deadlock
    across the two processes, whichever of them is diagnosed."""
    parent = spawn_here([sys.executable, "-c", "import subprocess\n"
                         "p = subprocess.Popen(['cat'], stdin=subprocess.PIPE, stdout=subprocess.PIPE)\n"
                         "p.stdin.write(b'x' * 4_000_000)\n"])
    wait_state(lambda: children_of(parent.pid), what="cat started")
    child = children_of(parent.pid)[0]
    remember(child)
    wait_state(lambda: proc_syscall(parent.pid) == "1" and proc_syscall(child) == "1"
               and proc_state(parent.pid) == "S" and proc_state(child) == "S", what="both blocked in write()")

    for pid in (parent.pid, child):
        d, text = diagnose(pid)
        assert d.verdict == "deadlock" and d.hung, text
        assert d.root_cause.pid in (parent.pid, child) and d.root_cause.kind == "pipe", text
        assert {c.pid for c in d.cycle} == {parent.pid, child}, text


# --------------------------------------------------------------------------
# a multiprocessing.Lock (a semaphore in shared memory: no owner recorded)
# --------------------------------------------------------------------------

MP_LOCK = """import multiprocessing as mp, sys, time
def hold(lock, conn):
    lock.acquire()
    conn.send("held")
    time.sleep(3600)
if __name__ == "__main__":
    lock = mp.Lock()
    r, w = mp.Pipe(duplex=False)
    child = mp.Process(target=hold, args=(lock, w))
    child.start()
    print("child", child.pid, r.recv(), flush=True)
    lock.acquire()
"""


def test_mp_lock_waiter_is_blocked_on_the_process_that_holds_the_lock(spawn_here):
    """A multiprocessing.Lock is a POSIX semaphore in a shared mapping; it keeps
    no owner.  The child that took it sleeps; the parent waits for it without
    a timeout.  Of the processes mapping that memory, only the child does not
    wait on it: blocked, with the child as the root."""
    parent = spawn_here([sys.executable, "-c", MP_LOCK], stdout=subprocess.PIPE, text=True)
    line = wait_for_line(parent.stdout, "child")
    child = int(line.split()[1])
    remember(child)
    assert "held" in line
    wait_state(lambda: proc_syscall(parent.pid) == "202" and proc_state(parent.pid) == "S"
               and open(f"/proc/{parent.pid}/syscall").read().split()[4] == "0x0", what="the parent waiting, no timeout")

    d, text = diagnose(parent.pid)
    assert d.verdict == "blocked" and d.hung, text
    assert (d.root_cause.pid, d.root_cause.kind) == (child, "futex"), text


# --------------------------------------------------------------------------
# memcached: worker threads woken through pipes from the listener thread
# --------------------------------------------------------------------------

MC_LOAD = """import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
val = b"x" * 1000
print("ready", flush=True)
end = time.time() + 60
while time.time() < end:
    s.sendall(b"set k 0 0 1000\\r\\n" + val + b"\\r\\n")
    s.recv(100)
    s.sendall(b"get k\\r\\n")
    n = 0
    while n < 1000:
        n += len(s.recv(4096))
"""


@pytest.fixture(scope="module")
def memcached(servers):
    exe = shutil.which("memcached") or "/usr/bin/memcached"
    port = free_port()
    proc = servers([exe, "-u", "nobody", "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-t", "2"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc=proc)
    wait_state(lambda: all(proc_state(proc.pid, int(t)) == "S" for t in os.listdir(f"/proc/{proc.pid}/task")),
               what="memcached asleep")
    return proc.pid, port


def test_memcached_idle_then_under_load(memcached, spawn_here):
    """Idle: its listener thread waits for clients, its workers wait on the
    pipes the listener wakes them through (work from its own threads). Under a
    set/get loop: progressing, and so is the client."""
    mc, port = memcached
    d, text = diagnose(mc)
    assert d.verdict == "idle" and d.root_cause.pid == mc, text
    assert f"127.0.0.1:{port}" in d.summary, text

    load = spawn_here([sys.executable, "-c", MC_LOAD, str(port)], stdout=subprocess.PIPE, text=True)
    wait_for_line(load.stdout, "ready")
    d, text = diagnose(mc)
    assert d.verdict == "progressing" and d.root_cause.pid == mc, text
    d, text = diagnose(load.pid)
    assert d.verdict == "progressing" and d.root_cause.pid == load.pid, text


def test_memcached_client_awaiting_a_reply_from_a_stopped_server_is_blocked_on_it(memcached, spawn_here):
    mc, port = memcached
    os.kill(mc, signal.SIGSTOP)
    try:
        client = spawn_here([sys.executable, "-c", "import socket, sys\n"
                             "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
                             "s.sendall(b'get k\\r\\n')\nprint('sent', flush=True)\ns.recv(100)\n", str(port)],
                            stdout=subprocess.PIPE, text=True)
        wait_for_line(client.stdout, "sent")
        wait_state(lambda: proc_syscall(client.pid) == "45" and proc_state(client.pid) == "S",
                   what="the client in recvfrom")
        d, text = diagnose(client.pid)
        assert d.verdict == "blocked" and d.hung, text
        assert (d.root_cause.pid, d.root_cause.kind) == (mc, "signal-stop"), text
    finally:
        os.kill(mc, signal.SIGCONT)


def test_parent_waiting_for_a_child_that_reads_the_stdin_it_holds_open_is_a_deadlock(spawn_here):
    """subprocess.Popen(stdin=PIPE) then wait() without closing stdin: the
    child (cat) reads the pipe whose only writer is the parent, and the parent
    only waits for the child to exit.  No input and no EOF can come: each
    waits for the other -- a deadlock, from either side (cat's parent was
    taken for a feeder that hands work down: idle)."""
    parent = spawn_here([sys.executable, "-c", "import subprocess\n"
                         "p = subprocess.Popen(['cat'], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)\n"
                         "p.stdin.write(b'job 1\\n')\np.stdin.flush()\np.wait()\n"])
    wait_state(lambda: children_of(parent.pid) and _comm(children_of(parent.pid)[0]) == "cat", what="cat started")
    child = children_of(parent.pid)[0]
    remember(child)
    wait_state(lambda: proc_syscall(parent.pid) == "61" and proc_syscall(child) == "0"
               and proc_state(child) == "S", what="the parent in wait4, cat in read")

    for pid in (child, parent.pid):
        d, text = diagnose(pid)
        assert d.verdict == "deadlock" and d.hung, text
        assert d.root_cause.pid == parent.pid, text
        assert {c.pid for c in d.cycle} == {parent.pid, child}, text


def test_reader_opening_a_fifo_nobody_writes_is_idle(spawn_here, tmp_path):
    """`cat FIFO` before any writer opened it sleeps in open() (wait_for_partner):
    nobody owes it a writer -- idle, and said plainly."""
    fifo = str(tmp_path / "in.fifo")
    os.mkfifo(fifo)
    reader = spawn_here(["cat", fifo], stdout=subprocess.DEVNULL)
    wait_state(lambda: proc_syscall(reader.pid) == "257" and proc_state(reader.pid) == "S", what="cat in openat")

    d, text = diagnose(reader.pid)
    assert d.verdict == "idle" and not d.hung and d.root_cause.pid == reader.pid, text
    assert d.confidence == "high" and "FIFO" in d.summary, text


THREADED_SERVER = """import fcntl, socketserver, sys
class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        self.rfile.readline()
        with open(sys.argv[1], "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)          # the lock a request needs
            self.wfile.write(b"ok\\n")
srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
print("port", srv.server_address[1], flush=True)
srv.serve_forever()
"""


def test_client_of_a_threaded_server_whose_handler_waits_for_a_lock_is_blocked_on_the_holder(spawn_here, tmp_path):
    """curl -> a thread-per-request server (socketserver) whose handler waits
    for a flock held by `flock -x LOCK sleep`: the chain goes through the
    server's handler thread to the holder, for the client and the server."""
    lock = str(tmp_path / "res.lock")
    holder = spawn_here(["flock", "-x", lock, "sleep", "3600"])
    wait_state(lambda: children_of(holder.pid) and proc_syscall(children_of(holder.pid)[0]) == "230",
               what="the holder's command sleeping")
    remember(*children_of(holder.pid))
    srv = spawn_here([sys.executable, "-c", THREADED_SERVER, lock], stdout=subprocess.PIPE, text=True)
    port = int(wait_for_line(srv.stdout, "port").split()[1])
    curl = spawn_here(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/"])
    wait_state(lambda: any(proc_syscall(srv.pid, int(t)) == SYS_FLOCK for t in os.listdir(f"/proc/{srv.pid}/task")),
               what="the handler thread waiting for the lock")
    wait_state(lambda: proc_syscall(curl.pid) == SYS_POLL and proc_state(curl.pid) == "S", what="curl waiting")

    for pid in (curl.pid, srv.pid):
        d, text = diagnose(pid)
        assert d.verdict == "blocked" and d.hung, text
        assert (d.root_cause.pid, d.root_cause.kind) == (holder.pid, "file-lock"), text


MP_EVENT = """import multiprocessing as mp, signal, sys, time
def later(ev, conn):
    conn.send("started")
    if sys.argv[1] == "pause":
        signal.pause()                 # parked: nothing will set the event
    time.sleep(3600)                   # wakes by itself, then sets it
    ev.set()
if __name__ == "__main__":
    ev = mp.Event()
    r, w = mp.Pipe(duplex=False)
    child = mp.Process(target=later, args=(ev, w))
    child.start()
    print("child", child.pid, r.recv(), flush=True)
    ev.wait()
"""


@pytest.mark.parametrize("child_does", ["sleep", "pause"])
def test_mp_event_waiter_is_idle_on_a_child_that_wakes_blocked_on_a_parked_one(spawn_here, child_does):
    """multiprocessing.Event.wait() (a Condition on semaphores in shared memory):
    a wait to be notified, not a lock held.  With Python stacks, a child that
    sleeps with a timeout may still set it (idle); a child in pause() will not
    (blocked on the child)."""
    parent = spawn_here([sys.executable, "-c", MP_EVENT, child_does], stdout=subprocess.PIPE, text=True)
    child = int(wait_for_line(parent.stdout, "child").split()[1])
    remember(child)
    wait_state(lambda: proc_syscall(parent.pid) == "202" and proc_state(parent.pid) == "S"
               and proc_syscall(child) == ("34" if child_does == "pause" else "230"), what="both asleep")

    d, text = diagnose(parent.pid, python_stacks=True)
    if child_does == "sleep":
        assert d.verdict == "idle" and not d.hung and d.root_cause.pid == parent.pid, text
    else:
        assert d.verdict == "blocked" and d.hung, text
        assert (d.root_cause.pid, d.root_cause.kind) == (child, "futex"), text


def test_curl_awaiting_a_reply_without_probes_is_not_called_hung_nor_idle_with_confidence(asyncio_server, spawn_here):
    """Without the probes it cannot be seen whether curl's polls returned
    anything: idle, confidence low, and it says to run with the probes."""
    server, port = asyncio_server
    curl = spawn_here(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/"])
    waiting = lambda: proc_syscall(curl.pid) == SYS_POLL and proc_state(curl.pid) == "S"   # noqa: E731
    wait_state(waiting, what="curl waiting in poll")
    time.sleep(1.1)     # past a first wake-up of its 1 s poll
    wait_state(waiting, what="curl waiting in poll")

    d, text = diagnose(curl.pid, use_bpf=False, window=2.0)   # two of its 1 s wake-ups, whatever the phase
    assert d.verdict == "idle" and d.confidence == "low" and d.root_cause.pid == curl.pid, text
    assert "--no-bpf" in d.summary, text
