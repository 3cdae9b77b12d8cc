"""A CPU-bound PyTorch training job on two busy threads: the job `kill-preview --if` is checked on.

The main loop trains an MLP (one intra-op thread); one DataLoader worker
builds the batches with real tensor work (one thread too: torch's default in
workers).  Two busy threads in two processes, a pipeline: on one CPU they
take turns, on two they overlap.  One line "s" per step goes to READY_FD, so
the test counts steps per second from outside.

usage: act_cpu_train.py READY_FD [OMP_THREADS]
  OMP_THREADS > 1 makes the main loop use that many intra-op threads instead
  (an OpenMP pool).
"""
from __future__ import annotations

import os
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset


class Batches(IterableDataset):
    """Endless batches, each the product of a few real matmuls."""

    def __iter__(self):
        g = torch.Generator().manual_seed(0)
        w = torch.randn(512, 512, generator=g)
        while True:
            x = torch.randn(256, 512, generator=g)
            for _ in range(6):
                x = torch.tanh(x @ w)
            yield x, x.sum(dim=1, keepdim=True)


def main() -> int:
    ready = int(sys.argv[1])
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 768), nn.ReLU(), nn.Linear(768, 768), nn.ReLU(), nn.Linear(768, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    loader = DataLoader(Batches(), batch_size=None, num_workers=1, prefetch_factor=2)
    first = True
    for x, y in loader:
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        if first:
            os.write(ready, b"ready\n")
            first = False
        os.write(ready, b"s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
