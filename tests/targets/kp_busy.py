"""A job that computes and never checkpoints: a kill loses everything.

Burns one CPU in pure Python, keeps its state in memory only, and writes
"ready" on READY_FD once running.  It handles no signal.

usage: kp_busy.py READY_FD
"""
from __future__ import annotations

import os
import sys


def main() -> int:
    ready = int(sys.argv[1])
    state = 0
    os.write(ready, b"ready\n")
    while True:
        for i in range(100000):
            state = (state * 31 + i) % 1000003


if __name__ == "__main__":
    sys.exit(main())
