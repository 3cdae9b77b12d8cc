"""A plain PyTorch training loop of the most common hand-written shape.

usage: kp_loop.py earlier DIR
           an earlier run's last save: ``torch.save`` of the model to
           DIR/model.pt and of the optimizer to DIR/optimizer.pt (one save,
           two unnumbered files), read back once to check it, then exit.
       kp_loop.py train [--ckpt-dir D] [--every-s S] [--name N] [--max-saves K] [--log FILE] READY_FD
           trains a Linear layer (20 ms a step) from scratch; every S seconds
           (the first K times only, if given) ``torch.save``s {step, model,
           optimizer} directly (no temporary) to D/N (default
           ``ckpt-{step}.pt``), with D from --ckpt-dir or else $KP_CKPT_DIR
           (a job configured through its environment); appends
           "step N/10000 loss X" every 10 steps and "saved checkpoint PATH"
           after each save to FILE; says "training" on READY_FD after 20
           steps and "saved PATH MTIME" after each save.
           --epoch-steps K: epochs of K steps instead, logged as
           "Epoch E/50 | batch I/K | loss X" (a counter that restarts every
           epoch), a save at the end of each epoch (``{epoch}`` in --name).

Never reads anything of an earlier run: a fresh start beside old files.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch import nn


def model_and_opt():
    torch.manual_seed(0)
    m = nn.Linear(512, 512)
    return m, torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9)


def earlier(d: str) -> int:
    os.makedirs(d, exist_ok=True)
    m, opt = model_and_opt()
    m(torch.randn(4, 512)).sum().backward()
    opt.step()
    torch.save(m.state_dict(), os.path.join(d, "model.pt"))
    torch.save(opt.state_dict(), os.path.join(d, "optimizer.pt"))
    torch.load(os.path.join(d, "model.pt"))
    torch.load(os.path.join(d, "optimizer.pt"))
    return 0


def train(argv) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt-dir")
    ap.add_argument("--every-s", type=float, default=1.5)
    ap.add_argument("--name", default="ckpt-{step}.pt")
    ap.add_argument("--max-saves", type=int, default=0)
    ap.add_argument("--epoch-steps", type=int, default=0)
    ap.add_argument("--log")
    ap.add_argument("fd", type=int)
    a = ap.parse_args(argv)
    d = a.ckpt_dir or os.environ["KP_CKPT_DIR"]
    os.makedirs(d, exist_ok=True)
    torch.set_num_threads(1)
    m, opt = model_and_opt()
    x = torch.randn(16, 512)
    log = open(a.log, "a", buffering=1) if a.log else None
    step, last, saves = 0, time.monotonic(), 0
    while True:
        opt.zero_grad()
        loss = m(x).pow(2).mean()
        loss.backward()
        opt.step()
        step += 1
        time.sleep(0.02)
        k = a.epoch_steps
        if log and step % 10 == 0:
            log.write(f"Epoch {1 + (step - 1) // k}/50 | batch {(step - 1) % k + 1}/{k} | loss {loss.item():.4f}\n"
                      if k else f"step {step}/10000 loss {loss.item():.4f}\n")
        if step == 20:
            os.write(a.fd, b"training\n")
        due = step % k == 0 if k else time.monotonic() - last >= a.every_s
        if due and not (a.max_saves and saves >= a.max_saves):
            saves += 1
            path = os.path.join(d, a.name.format(step=step, epoch=step // k if k else 0))
            torch.save({"step": step, "model": m.state_dict(), "optimizer": opt.state_dict()}, path)
            last = time.monotonic()
            if log:
                log.write(f"saved checkpoint {path}\n")
            os.write(a.fd, f"saved {path} {os.stat(path).st_mtime:.6f}\n".encode())


if __name__ == "__main__":
    if sys.argv[1] == "earlier":
        sys.exit(earlier(sys.argv[2]))
    sys.exit(train(sys.argv[2:]))
