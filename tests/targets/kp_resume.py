"""A real PyTorch job resumed from an earlier run's checkpoints, which then
writes its next, large checkpoint slowly under a temporary name.

usage: kp_resume.py first DIR              the earlier run: saves step-100.pt and
                                           step-200.pt (torch.save) and exits
       kp_resume.py resume DIR GO RATE FD  this run: torch.load()s the newest,
                                           trains with a tqdm bar (on stderr),
                                           says "training STEP FIRST_STEP_TIME"
                                           on FD after 20
                                           steps; once the file GO exists it
                                           serialises step-300 and writes it to
                                           a mkstemp() temporary in DIR at RATE
                                           bytes/s (fsync every MiB), says
                                           "writing PATH SIZE T0" after the
                                           first MiB (at full speed once the
                                           file GO.finish exists), then
                                           os.replace()s it into step-300.pt
                                           and says "saved".

The model is one Linear layer of 1024x2048 (8 MiB of weights), so every
checkpoint of the series has the same size.
"""
from __future__ import annotations

import glob
import io
import os
import sys
import tempfile
import time

import torch
from torch import nn

CHUNK = 64 << 10


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(1024, 2048, bias=False)


def first(d: str) -> int:
    os.makedirs(d, exist_ok=True)
    m = model()
    for step in (100, 200):
        with torch.no_grad():
            m.weight.mul_(0.999)
        torch.save({"step": step, "model": m.state_dict()}, os.path.join(d, f"step-{step}.pt"))
        time.sleep(1.0)
    return 0


def resume(d: str, go: str, rate: float, fd: int) -> int:
    from tqdm import tqdm

    torch.set_num_threads(1)
    newest = max(glob.glob(os.path.join(d, "step-*.pt")), key=lambda p: int(p.rsplit("-", 1)[1][:-3]))
    state = torch.load(newest)
    m = model()
    m.load_state_dict(state["model"])
    opt = torch.optim.SGD(m.parameters(), lr=1e-4)
    step = state["step"]
    x = torch.randn(8, 1024)
    bar = tqdm(total=1000, initial=step, mininterval=0.1, file=sys.stderr)
    said = False
    first_step_t = None
    while not os.path.exists(go):
        opt.zero_grad()
        m(x).pow(2).mean().backward()
        opt.step()
        step += 1
        bar.update(1)
        if first_step_t is None:
            first_step_t = time.time()
        time.sleep(0.02)
        if step == state["step"] + 20 and not said:
            os.write(fd, f"training {step} {first_step_t:.6f}\n".encode())
            said = True
    buf = io.BytesIO()
    torch.save({"step": 300, "model": m.state_dict()}, buf)
    data = buf.getvalue()
    wfd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
    t0 = time.monotonic()
    written = 0
    while written < len(data):
        written += os.write(wfd, data[written:written + CHUNK])
        if written % (1 << 20) < CHUNK:
            os.fsync(wfd)
            if (1 << 20) <= written < (1 << 20) + CHUNK:
                os.write(fd, f"writing {tmp} {len(data)} {time.time():.6f}\n".encode())
        if os.path.exists(go + ".finish"):
            rate = float("inf")           # the test has seen enough: finish at full speed
        ahead = written / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
    os.fsync(wfd)
    os.close(wfd)
    os.replace(tmp, os.path.join(d, "step-300.pt"))
    os.write(fd, b"saved\n")
    while True:
        time.sleep(1)


if __name__ == "__main__":
    if sys.argv[1] == "first":
        sys.exit(first(sys.argv[2]))
    sys.exit(resume(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])))
