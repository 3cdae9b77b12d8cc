"""A torch.distributed (gloo) job that all-reduces a small tensor in a loop,
started once per node by torchrun.

Every rank prints "rank R step S" now and then. When the file named by
STALL_FILE appears, rank STALL_RANK stops calling collectives (it sleeps, as
a rank stuck in its own work would) while the others go on into the next
all_reduce and wait there for it: the cross-node hang the tests diagnose.
"""
import os
import time

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank = dist.get_rank()
stall_rank = int(os.environ.get("STALL_RANK", "-1"))
stall_file = os.environ.get("STALL_FILE", "")
t = torch.ones(4096)
step = 0
while True:
    if rank == stall_rank and stall_file and os.path.exists(stall_file):
        print(f"rank {rank} stalls at step {step}", flush=True)
        time.sleep(3600)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    step += 1
    if step % 20 == 0:
        print(f"rank {rank} step {step}", flush=True)
    time.sleep(0.005)
