"""A 2-rank torch.distributed job on the gloo backend, on 127.0.0.1.

    gloo_job.py PORT healthy   both ranks all_reduce in a loop, for ever
    gloo_job.py PORT stall     after a few rounds rank 1 stops calling
                               collectives (it sleeps); rank 0 blocks in all_reduce

The launcher starts both ranks as its children with RANK/WORLD_SIZE/
MASTER_ADDR/MASTER_PORT in their environment (as torchrun does) and prints
"rank R pid P" for each, then each rank prints "ready R" once it has done its
first all_reduce, and in stall mode rank 1 prints "stalled" when it stops.
"""
import os
import subprocess
import sys
import time


def rank_main(mode: str) -> None:
    import datetime

    import torch
    import torch.distributed as dist

    rank = int(os.environ["RANK"])
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=900))
    t = torch.ones(64 * 1024)
    n = 0
    while True:
        if mode == "stall" and rank == 1 and n == 3:
            print("stalled", flush=True)
            time.sleep(3600)          # stops calling collectives; rank 0 waits in all_reduce
        dist.all_reduce(t)
        n += 1
        if n == 1:
            print(f"ready {rank}", flush=True)
        time.sleep(0.005)


def launcher(port: str, mode: str) -> None:
    procs = []
    for rank in (0, 1):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        procs.append(subprocess.Popen([sys.executable, __file__, "--rank", mode], env=env))
        print(f"rank {rank} pid {procs[-1].pid}", flush=True)
    for p in procs:
        p.wait()


if __name__ == "__main__":
    if sys.argv[1] == "--rank":
        rank_main(sys.argv[2])
    else:
        launcher(sys.argv[1], sys.argv[2])
