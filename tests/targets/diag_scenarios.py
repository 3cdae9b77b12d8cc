"""Target processes for tests/test_diagnose.py: each puts itself in one real
state that `pyimpact diagnose` must explain.

    python diag_scenarios.py SCENARIO [ARGS...]

Every scenario prints one line "ready ..." on stdout once it is about to
enter its state (the test's handshake; the test then waits until /proc shows
the state itself).  On SIGTERM a scenario kills and reaps its own children
before exiting, so no zombie outlives a test.

Scenarios
  py-deadlock          two threads, AB-BA on threading.Lock; main joins the first
  pipe-parent          parent reads a pipe whose write end only its child holds;
                       the child sleeps in pause()
  tcp-server           listens on 127.0.0.1, accepts one client, never answers
  tcp-client PORT      connects to PORT, sends nothing, waits for an answer
  flock-holder PATH [lockf]  takes an exclusive flock (or lockf) on PATH, sleeps in pause()
  flock-waiter PATH [lockf]  asks for the same lock (blocks)
  chain-parent PATH    forks a child that waits for the flock on PATH; waits for the child
  fifo-writer PATH     makes the FIFO PATH, opens it for writing, writes nothing
  fifo-reader PATH     opens the FIFO PATH and reads from it (blocks)
  communicate          subprocess.communicate() with a child that never writes
                       nor exits (poll() on two pipes)
  sleeper              wakes every 50 ms (healthy, idle)
  long-sleep           one long time.sleep (healthy, idle)
  busy                 a pure CPU loop, no syscalls
  zombie-parent        forks a child that exits at once and never reaps it
  py-deadlock-heartbeat  py-deadlock, plus a thread that wakes every 50 ms
  reactive             wakes every 50 ms; on SIGUSR1 runs /bin/true as a child
  wait-busy-child      waits for a child that computes (a healthy job, not hung)
"""
from __future__ import annotations

import fcntl
import os
import signal
import socket
import sys
import threading
import time

KIDS = []


def ready(*parts) -> None:
    os.write(1, ("ready " + " ".join(str(p) for p in parts) + "\n").encode())


def _term(*_):
    for k in KIDS:
        try:
            os.kill(k, signal.SIGKILL)
        except OSError:
            pass
    for k in KIDS:
        try:
            os.waitpid(k, 0)
        except ChildProcessError:
            pass
    os._exit(0)


def fork() -> int:
    pid = os.fork()
    if pid == 0:
        KIDS.clear()
    else:
        KIDS.append(pid)
    return pid


def py_deadlock() -> None:
    a, b = threading.Lock(), threading.Lock()
    barrier = threading.Barrier(3)
    tids = {}

    def take(first, second, key):
        tids[key] = threading.get_native_id()
        with first:
            barrier.wait()
            with second:  # never acquired
                pass

    t1 = threading.Thread(target=take, args=(a, b, "ab"), name="take-a-b", daemon=True)
    t2 = threading.Thread(target=take, args=(b, a, "ba"), name="take-b-a", daemon=True)
    t1.start()
    t2.start()
    barrier.wait()
    ready(tids["ab"], tids["ba"])
    t1.join()


def py_deadlock_heartbeat() -> None:
    def beat():
        while True:
            time.sleep(0.05)

    threading.Thread(target=beat, name="heartbeat", daemon=True).start()
    py_deadlock()


def reactive() -> None:
    import subprocess

    def on_usr1(*_):
        subprocess.run(["/bin/true"], check=True)
        os.write(1, b"ran\n")

    signal.signal(signal.SIGUSR1, on_usr1)
    ready()
    while True:
        time.sleep(0.05)


def pipe_parent() -> None:
    r, w = os.pipe()
    if fork() == 0:
        os.close(r)
        signal.pause()
        os._exit(0)
    os.close(w)
    ready(KIDS[0])
    os.read(r, 1)


def tcp_server() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    ready(s.getsockname()[1])
    conn, _ = s.accept()
    os.write(1, b"accepted\n")
    time.sleep(3600)


def tcp_client(port: str) -> None:
    c = socket.create_connection(("127.0.0.1", int(port)))
    ready(c.getsockname()[1])
    c.recv(1)


def _lock(fd: int, how: str) -> None:
    """flock(LOCK_EX), or a POSIX record lock with lockf (fcntl F_SETLKW)."""
    if how == "lockf":
        fcntl.lockf(fd, fcntl.LOCK_EX)
    else:
        fcntl.flock(fd, fcntl.LOCK_EX)


def flock_holder(path: str, how: str = "flock") -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    _lock(fd, how)
    ready()
    signal.pause()


def flock_waiter(path: str, how: str = "flock") -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    ready()
    _lock(fd, how)


def chain_parent(path: str) -> None:
    child = fork()
    if child == 0:
        flock_waiter_quiet(path)
        os._exit(0)
    ready(child)
    os.waitpid(child, 0)


def flock_waiter_quiet(path: str) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)


def fifo_writer(path: str) -> None:
    os.mkfifo(path)
    os.write(1, b"made\n")
    fd = os.open(path, os.O_WRONLY)  # returns once a reader has opened it
    ready(fd)
    signal.pause()


def fifo_reader(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    ready(fd)
    os.read(fd, 1)


def communicate() -> None:
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    KIDS.append(child.pid)
    ready(child.pid)
    child.communicate()


def sleeper() -> None:
    ready()
    while True:
        time.sleep(0.05)


def long_sleep() -> None:
    ready()
    time.sleep(3600)


def busy() -> None:
    ready()
    x = 0
    while True:
        x += 1


def wait_busy_child() -> None:
    child = fork()
    if child == 0:
        x = 0
        while True:
            x += 1
    ready(child)
    os.waitpid(child, 0)


def zombie_parent() -> None:
    child = fork()
    if child == 0:
        os._exit(7)
    ready(child)
    signal.pause()


SCENARIOS = {
    "py-deadlock": py_deadlock, "pipe-parent": pipe_parent, "tcp-server": tcp_server,
    "tcp-client": tcp_client, "flock-holder": flock_holder, "flock-waiter": flock_waiter,
    "chain-parent": chain_parent, "sleeper": sleeper, "long-sleep": long_sleep, "busy": busy,
    "zombie-parent": zombie_parent, "py-deadlock-heartbeat": py_deadlock_heartbeat, "reactive": reactive,
    "wait-busy-child": wait_busy_child, "fifo-writer": fifo_writer, "fifo-reader": fifo_reader,
    "communicate": communicate,
}

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _term)
    SCENARIOS[sys.argv[1]](*sys.argv[2:])
