"""A tiny PyTorch CPU training job: an MLP on synthetic data, fed by a
DataLoader with worker processes. Used by benchmarks 3 (step time, traced vs
untraced) and 6 (pyimpact's memory while tracing it).

    train_job.py --warmup W --steps N [--workers 2]     then one JSON line of step times
    train_job.py --seconds S                            train for S seconds

Prints "ready PID" once the model and the loader exist, waits for one line on
stdin (the harness attaches its tracer in between), then creates the loader's
iterator (which forks the workers: a tracer must follow them) and trains.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


class Synthetic(Dataset):
    """Deterministic samples with a little CPU work each, like decoding."""

    def __init__(self, n: int = 10**8, dim: int = 128):
        self.n, self.dim = n, dim

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        x = torch.randn(self.dim, generator=g)
        x = torch.tanh(x @ torch.ones(self.dim, 8)).repeat(self.dim // 8) + x
        y = int(x.sum() > 0)
        return x, y


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(Synthetic(), batch_size=args.batch, num_workers=args.workers, shuffle=False)
    print("ready", os.getpid(), flush=True)
    sys.stdin.readline()

    it = iter(loader)
    times = []
    t_start = time.perf_counter()
    step = 0
    while True:
        t = time.perf_counter()
        x, y = next(it)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
        step += 1
        if args.seconds is not None:
            if time.perf_counter() - t_start >= args.seconds:
                break
        elif step >= args.warmup + args.steps:
            break
    measured = times[args.warmup:] if args.seconds is None else times
    print(json.dumps({"steps": len(measured), "step_s": measured, "mean_step_s": sum(measured) / len(measured),
                      "torch_threads": torch.get_num_threads(), "workers": args.workers,
                      "loss": loss.item()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
