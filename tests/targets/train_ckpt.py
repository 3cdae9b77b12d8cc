"""A real, tiny PyTorch CPU training job: the workload kill-preview is about.

Two persistent DataLoader workers feed a small MLP; every ``--interval``
seconds the loop saves a ``torch.save`` checkpoint the careful way (write
``<final>.tmp``, then ``os.replace``), keeps the newest ``--keep`` files, and
logs each step and each checkpoint with a wall-clock timestamp to ``--log``.
The log is the ground truth the tests compare kill-preview's figures with.

Handshake: each completed checkpoint writes one line "ckpt STEP TIME PATH" to
the file descriptor ``--ready-fd`` (a pipe from the test), so a test waits
for N checkpoints without sleeping.

``--sigterm`` installs a SIGTERM handler that saves a checkpoint and exits 0
(a graceful stop); without it SIGTERM has its default action.
``--resume`` restarts from the newest checkpoint in ``--ckpt-dir``;
``--stop-at-step N`` ends the run once step N is done (the redo measurement).

Log lines (one per event, flushed at once):
  <t> start pid=<pid>
  <t> resume step=<S> path=<P>
  <t> step <N> loss <L>
  <t> ckpt step=<N> path=<P>          (after os.replace returned)
  <t> stop step=<N> reason=<why>
"""
from __future__ import annotations

import argparse
import glob
import os
import signal
import sys
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


class Synthetic(Dataset):
    """Deterministic regression samples, computed in the DataLoader workers."""

    def __len__(self) -> int:
        return 1 << 30

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(i)
        x = torch.randn(32, generator=g)
        return x, x.sum(dim=0, keepdim=True) * 0.1


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt-dir", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--keep", type=int, default=3)
    ap.add_argument("--ready-fd", type=int, default=-1)
    ap.add_argument("--sigterm", action="store_true")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--stop-at-step", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    os.makedirs(args.ckpt_dir, exist_ok=True)
    log = open(args.log, "a", buffering=1)

    def say(text: str) -> None:
        log.write(f"{time.time():.6f} {text}\n")

    say(f"start pid={os.getpid()}")
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    step = 0
    if args.resume:
        found = sorted(glob.glob(os.path.join(args.ckpt_dir, "checkpoint_*.pt")))
        if found:
            state = torch.load(found[-1])
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            step = state["step"]
            say(f"resume step={step} path={found[-1]}")

    def save() -> None:
        final = os.path.join(args.ckpt_dir, f"checkpoint_{step:07d}.pt")
        tmp = final + ".tmp"
        torch.save({"step": step, "model": model.state_dict(), "opt": opt.state_dict()}, tmp)
        os.replace(tmp, final)
        say(f"ckpt step={step} path={final}")
        for old in sorted(glob.glob(os.path.join(args.ckpt_dir, "checkpoint_*.pt")))[:-args.keep]:
            os.unlink(old)
        if args.ready_fd >= 0:
            try:
                os.write(args.ready_fd, f"ckpt {step} {time.time():.6f} {final}\n".encode())
            except OSError:
                pass  # the test stopped listening

    stop = {"why": ""}
    if args.sigterm:
        signal.signal(signal.SIGTERM, lambda *_: stop.update(why="sigterm"))

    loader = DataLoader(Synthetic(), batch_size=64, num_workers=2, persistent_workers=True,
                        worker_init_fn=_one_thread)
    last_ckpt = time.monotonic()
    for x, y in loader:
        step += 1
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        say(f"step {step} loss {loss.item():.5f}")
        if args.stop_at_step and step >= args.stop_at_step:
            say(f"stop step={step} reason=stop-at-step")
            return 0
        if stop["why"]:
            save()
            say(f"stop step={step} reason={stop['why']}")
            return 0
        if time.monotonic() - last_ckpt >= args.interval:
            save()
            last_ckpt = time.monotonic()
    return 0


if __name__ == "__main__":
    sys.exit(main())
