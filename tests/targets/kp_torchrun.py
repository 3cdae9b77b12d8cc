"""One rank of a real ``torchrun`` job (gloo, CPU): a Linear layer trained
with its gradients all-reduced across the ranks, rank 0 saving
``ckpt/model_stepN.pt`` (temporary + ``os.replace``) every 2 s.

usage: python -m torch.distributed.run --nproc_per_node 2 --max-restarts 0 kp_torchrun.py [IGNORED]

Each rank writes ``ready.RANK`` (its pid) in the working directory after its
first 20 steps: torchrun closes the launcher's other file descriptors, so a
file is the handshake.
"""
from __future__ import annotations

import os
import time

import torch
import torch.distributed as dist
from torch import nn


def main() -> int:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    m = nn.Linear(256, 256)
    opt = torch.optim.SGD(m.parameters(), lr=1e-3)
    x = torch.randn(8, 256)
    os.makedirs("ckpt", exist_ok=True)
    step, last = 0, time.monotonic()
    while True:
        opt.zero_grad()
        m(x).pow(2).mean().backward()
        for p in m.parameters():
            dist.all_reduce(p.grad)
        opt.step()
        step += 1
        time.sleep(0.02)
        if step == 20:
            with open(f"ready.{rank}.tmp", "w") as f:
                f.write(str(os.getpid()))
            os.replace(f"ready.{rank}.tmp", f"ready.{rank}")
        if rank == 0 and time.monotonic() - last >= 2.0:
            final = f"ckpt/model_step{step}.pt"
            torch.save(m.state_dict(), final + ".tmp")
            os.replace(final + ".tmp", final)
            last = time.monotonic()


if __name__ == "__main__":
    raise SystemExit(main())
