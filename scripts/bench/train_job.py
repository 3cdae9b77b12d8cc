"""A tiny PyTorch CPU training job: an MLP on synthetic data, fed by a
DataLoader with worker processes. Used by benchmarks 3 (step time, traced vs
untraced) and 6 (pyimpact's memory while tracing it).

    train_job.py --warmup W --steps N [--workers 2]     then one JSON line of step times
    train_job.py --seconds S                            train for S seconds
    train_job.py --until-signal                         train until SIGUSR1, then step times with end times

--until-signal is for traced and untraced blocks inside one job (benchmark 3c):
the harness attaches and detaches the tracer while the job trains, and splits
the steps by their end times (CLOCK_MONOTONIC, as time.monotonic() reads it).

Prints "ready PID" once the model and the loader exist, waits for one line on
stdin (the harness attaches its tracer in between), then creates the loader's
iterator (which forks the workers: a tracer must follow them) and trains.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
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
    ap.add_argument("--until-signal", action="store_true")
    args = ap.parse_args()
    stop = []
    if args.until_signal:
        signal.signal(signal.SIGUSR1, lambda *_: stop.append(1))

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(Synthetic(), batch_size=args.batch, num_workers=args.workers, shuffle=False)
    print("ready", os.getpid(), flush=True)
    sys.stdin.readline()

    it = iter(loader)
    times, ends = [], []
    t_start = time.perf_counter()
    step = 0
    while True:
        t = time.perf_counter()
        x, y = next(it)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        end = time.perf_counter()
        times.append(end - t)
        step += 1
        if args.until_signal:
            ends.append(end)
            if stop:
                break
        elif args.seconds is not None:
            if time.perf_counter() - t_start >= args.seconds:
                break
        elif step >= args.warmup + args.steps:
            break
    measured = times if args.seconds is not None or args.until_signal else times[args.warmup:]
    doc = {"steps": len(measured), "step_s": measured, "mean_step_s": sum(measured) / len(measured),
           "torch_threads": torch.get_num_threads(), "workers": args.workers, "loss": loss.item()}
    if args.until_signal:
        doc["end_s"] = ends
    print(json.dumps(doc), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
