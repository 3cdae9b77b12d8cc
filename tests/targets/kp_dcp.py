"""A job saving torch.distributed.checkpoint directories: two complete ones
by real ``dcp.save`` (step_10/, step_20/), then a third written slowly.

usage: kp_dcp.py DIR READY_FD

The third (step_30/) is produced by a real ``dcp.save`` into a staging
directory in /dev/shm, whose files are then copied into DIR/step_30 in the
order DCP writes them (the shards, then ``.metadata`` through
``.metadata.tmp`` and a rename) at 256 KiB/s (at full speed once the file
``finish`` exists in the working directory), so the half-written state
lasts until the test has looked.  Says "saved STEP" after each complete one, "writing" once the
first 256 KiB of step_30's shard is on disk, "saved 30" at the end.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import warnings

import torch
import torch.distributed.checkpoint as dcp

warnings.filterwarnings("ignore")
RATE = 256 << 10
CHUNK = 64 << 10
FINISH = "finish"        # in the working directory: once it exists, copy at full speed


def slow_copy(src: str, dst: str, fd: int, say: bool) -> None:
    with open(src, "rb") as f:
        data = f.read()
    out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    t0 = time.monotonic()
    written = 0
    while written < len(data):
        written += os.write(out, data[written:written + CHUNK])
        if say and (256 << 10) <= written < (256 << 10) + CHUNK:
            os.write(fd, b"writing\n")
        rate = float("inf") if os.path.exists(FINISH) else RATE     # the test has seen enough
        ahead = written / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
    os.close(out)


def main() -> int:
    d, fd = sys.argv[1], int(sys.argv[2])
    torch.manual_seed(0)
    model = torch.nn.Linear(1024, 1024, bias=False)        # 4 MiB of weights
    os.makedirs(d, exist_ok=True)
    for step in (10, 20):
        with torch.no_grad():
            model.weight.mul_(0.99)
        dcp.save({"model": model.state_dict()}, checkpoint_id=os.path.join(d, f"step_{step}"))
        os.write(fd, f"saved {step}\n".encode())
        time.sleep(1.0)
    stage = tempfile.mkdtemp(dir="/dev/shm")
    try:
        dcp.save({"model": model.state_dict()}, checkpoint_id=stage)
        final = os.path.join(d, "step_30")
        os.makedirs(final)
        shards = sorted(n for n in os.listdir(stage) if n.endswith(".distcp"))
        for i, name in enumerate(shards):
            slow_copy(os.path.join(stage, name), os.path.join(final, name), fd, i == 0)
        shutil.copyfile(os.path.join(stage, ".metadata"), os.path.join(final, ".metadata.tmp"))
        os.rename(os.path.join(final, ".metadata.tmp"), os.path.join(final, ".metadata"))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    os.write(fd, b"saved 30\n")
    while True:
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
