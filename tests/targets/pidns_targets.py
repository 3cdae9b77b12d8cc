"""Targets run as the init of a PID namespace (`unshare --pid --fork
--mount-proc`), for tests/test_pidns.py. Every pid they name is a pid of
that namespace; the host sees other numbers.

  wait-stopped-child   pid 1 forks a child that stops itself (SIGSTOP), then
                       waits for it: wait4(2) in the namespace
  workers              pid 1 forks two sleeping children and waits for any

Prints "ready <own ns pid> <child ns pids...>" once in place.
"""
import os
import signal
import sys
import time


def wait_stopped_child() -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.close(w)
        os.kill(os.getpid(), signal.SIGSTOP)
        os._exit(0)
    os.close(w)
    os.close(r)
    while True:    # until the child is really stopped: its state says so in /proc
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                break
        time.sleep(0.01)
    print("ready", os.getpid(), pid, flush=True)
    os.waitpid(pid, 0)       # no WUNTRACED: blocks while the child stays stopped


def workers() -> None:
    kids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            time.sleep(3600)
            os._exit(0)
        kids.append(pid)
    print("ready", os.getpid(), *kids, flush=True)
    os.wait()


if __name__ == "__main__":
    {"wait-stopped-child": wait_stopped_child, "workers": workers}[sys.argv[1]]()
