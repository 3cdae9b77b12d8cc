"""The bundled demo target: a small pipeline that works for a while, then gets stuck.

  pipeline (main)  forks short-lived helpers, signals itself, two threads
                   contend on a lock, writes and fsyncs a "checkpoint" file;
                   then reads results from a pipe fed by its worker
  worker (child)   writes a few results, then waits for an flock on a file
  holder (child)   took that flock first and sleeps forever

So `pyimpact diagnose <pipeline>` should follow: pipeline -> pipe -> worker ->
file lock -> holder. Prints "ready <pid>" when started (with --wait-go it
then waits for a line on stdin before the busy phase) and "stuck" when the
chain is in place. Ends on SIGTERM/SIGINT, with its children.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import signal
import sys
import tempfile
import threading
import time


def busy_phase(workdir: str, seconds: float) -> None:
    """Real activity for the trace: forks, signals, futex contention, disk writes."""
    signal.signal(signal.SIGUSR1, lambda *_: None)
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def contend():
        while time.monotonic() < stop:
            with lock:
                time.sleep(0.002)

    threads = [threading.Thread(target=contend, name=f"contend-{i}") for i in range(2)]
    for t in threads:
        t.start()
    step = 0
    while time.monotonic() < stop:
        pid = os.fork()
        if pid == 0:
            os._exit(step % 3)
        os.waitpid(pid, 0)
        os.kill(os.getpid(), signal.SIGUSR1)
        path = os.path.join(workdir, "checkpoint.bin")
        with open(path + ".tmp", "wb") as f:
            f.write(os.urandom(256 * 1024))
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".tmp", path)
        step += 1
        time.sleep(0.1)
    for t in threads:
        t.join()


def holder(lockfile: str, ready_w: int) -> None:
    fd = os.open(lockfile, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(ready_w, b"h")
    while True:
        signal.pause()


def worker(lockfile: str, out_w: int) -> None:
    for i in range(3):
        os.write(out_w, f"result {i}\n".encode())
    fd = os.open(lockfile, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)     # blocks: the holder never lets go
    os.write(out_w, b"never\n")


def main() -> None:
    busy_s = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    workdir = tempfile.mkdtemp(prefix="pyimpact-demo-")
    lockfile = os.path.join(workdir, "queue.lock")
    children = []

    leader = os.getpid()

    def finish(*_):
        # The children inherit this handler and get the same SIGTERM (the demo
        # ends the whole process group): only the leader cleans up, or two
        # processes race to empty the work directory.
        if os.getpid() != leader:
            os._exit(0)
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        shutil.rmtree(workdir, ignore_errors=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    print(f"ready {os.getpid()}", flush=True)
    if "--wait-go" in sys.argv:
        # `pyimpact demo` says go once its trace is attached: however long the
        # probes take to compile on a loaded machine, the busy phase is traced.
        sys.stdin.readline()
    busy_phase(workdir, busy_s)

    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        holder(lockfile, ready_w)
    children.append(pid)
    os.read(ready_r, 1)
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(out_r)
        worker(lockfile, out_w)
        os._exit(0)
    children.append(pid)
    os.close(out_w)
    with os.fdopen(out_r, "rb", buffering=0) as results:
        for _ in range(3):
            results.readline()
        print("stuck", flush=True)
        results.readline()             # blocks forever: the worker is stuck
    finish()


if __name__ == "__main__":
    main()
