"""Small real jobs for the act tests (tests/test_act.py).

usage: act_jobs.py MODE READY_FD [ARGS]

  stubborn   catches SIGTERM, writes "term" to READY_FD, keeps running
             (only SIGKILL stops it)
  graceful   catches SIGTERM, writes "term", exits 0 after 0.2 s
  tree N     forks N children (each forks one grandchild); everyone sleeps;
             SIGTERM has its default action everywhere
  spin       one thread burning CPU (a busy job for suspend/resume)

Each writes "ready" to READY_FD once set up.
"""
from __future__ import annotations

import os
import signal
import sys
import time


def main() -> int:
    mode, ready = sys.argv[1], int(sys.argv[2])
    if mode in ("stubborn", "graceful"):
        def on_term(*_):
            os.write(ready, b"term\n")
            if mode == "graceful":
                time.sleep(0.2)
                os._exit(0)
        signal.signal(signal.SIGTERM, on_term)
        os.write(ready, b"ready\n")
        while True:
            time.sleep(0.05)
    if mode == "tree":
        for _ in range(int(sys.argv[3])):
            if os.fork() == 0:
                if os.fork() == 0:
                    while True:
                        time.sleep(1)
                while True:
                    time.sleep(1)
        time.sleep(0.2)
        os.write(ready, b"ready\n")
        while True:
            time.sleep(1)
    if mode == "spin":
        os.write(ready, b"ready\n")
        x = 0
        while True:
            x += 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
