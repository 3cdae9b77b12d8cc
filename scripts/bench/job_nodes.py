"""Issue 16: time of `pyimpact diagnose PID --job` across 2 and 4 simulated
nodes (network namespaces with real sshd, tests/cluster.py), each running one
rank of a torch.distributed gloo job started by torchrun, one rank stalled.

The figure is the wall time of the whole command as the user runs it (ssh
fan-out, each node's probes, window and snapshots, the merge), beside the
slowest node's own time: with a parallel fan-out the total follows the
slowest node, not the node count.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from cluster import Cluster, rank_pids, wait_for_text  # noqa: E402

JOB = os.path.join(ROOT, "tests", "targets", "dist_allreduce.py")


def one_size(nodes: int, runs: int, port: int) -> dict:
    work = tempfile.mkdtemp(prefix=f"pyimpact-bench-nodes{nodes}-")
    with Cluster(work, nodes) as cluster:
        stall = os.path.join(work, "stall")
        for i, node in enumerate(cluster.names):
            env = dict(os.environ, GLOO_SOCKET_IFNAME="eth0", STALL_RANK=str(nodes - 1), STALL_FILE=stall,
                       OMP_NUM_THREADS="1")
            log = open(os.path.join(work, f"job-{node}.log"), "w")
            cluster.start(node, [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nodes),
                                 "--nproc_per_node", "1", "--node_rank", str(i), "--master_addr",
                                 cluster.addr["node-0"], "--master_port", str(port), "--rdzv_backend", "static",
                                 JOB], env=env, stdout=log, stderr=log)
        wait_for_text(os.path.join(work, "job-node-0.log"), "step 40", 120)
        open(stall, "w").close()
        wait_for_text(os.path.join(work, f"job-node-{nodes - 1}.log"), "stalls", 120)
        time.sleep(1.0)
        pid = rank_pids(port)[0]
        walls, slowest, roots = [], [], []
        for _ in range(runs):
            t0 = time.monotonic()
            res = cluster.client_run([sys.executable, "-m", "pyimpact", "diagnose", str(pid), "--job", "--hosts",
                                      cluster.hosts_file, "--ssh-config", cluster.ssh_config, "--json"],
                                     timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
            walls.append(time.monotonic() - t0)
            doc = json.loads(res.stdout)
            slowest.append(max(n["elapsed_s"] for n in doc["nodes"]))
            root = doc["verdict"]["root_cause"] or {}
            roots.append((root.get("node"), root.get("rank")))
    return {"nodes": nodes, "runs": runs, "wall_s": [round(w, 3) for w in walls],
            "median_wall_s": round(statistics.median(walls), 3),
            "median_slowest_node_s": round(statistics.median(slowest), 3),
            "roots": sorted(set(map(str, roots))), "target_s": 5.0}


def run(cfg: dict) -> dict:
    runs = int(cfg.get("runs", 3))
    return {"sizes": [one_size(n, runs, 29600 + n) for n in cfg.get("nodes", (2, 4))]}


if __name__ == "__main__":
    print(json.dumps(run({"runs": int(sys.argv[1]) if len(sys.argv) > 1 else 3}), indent=2))
