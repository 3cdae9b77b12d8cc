"""A job in the middle of writing a large checkpoint slowly, in place.

It first writes two complete checkpoints of SIZE bytes (ckpt_0001.bin,
ckpt_0002.bin) in DIR, then writes ckpt_0003.bin under its final name at
RATE bytes/s in 64 KiB chunks, fsync()ing every MiB.  Once the first MiB of
the third file is written it says "ready" on READY_FD; when the file is
complete it says "done" and waits to be killed.

usage: kp_slow_writer.py DIR SIZE RATE READY_FD
"""
from __future__ import annotations

import os
import signal
import sys
import time

CHUNK = 64 << 10


def main() -> int:
    d, size, rate, ready = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    os.makedirs(d, exist_ok=True)
    block = os.urandom(CHUNK)
    for n in (1, 2):
        with open(os.path.join(d, f"ckpt_{n:04d}.bin"), "wb") as f:
            for _ in range(size // CHUNK):
                f.write(block)
    fd = os.open(os.path.join(d, "ckpt_0003.bin"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    written = 0
    t0 = time.monotonic()
    while written < size:
        os.write(fd, block)
        written += CHUNK
        if written % (1 << 20) == 0:
            os.fsync(fd)
            if written == 1 << 20:
                os.write(ready, b"ready\n")
        # pace the writes: RATE bytes per second
        ahead = written / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
    os.close(fd)
    os.write(ready, b"done\n")
    signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
