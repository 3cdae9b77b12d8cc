"""`pyimpact diagnose PID --job` across simulated nodes (network namespaces
with real OpenSSH servers, tests/cluster.py) and a real 2-node x 2-rank
torch.distributed gloo job started by torchrun on each node."""
from __future__ import annotations

import json
import os
import sys
import time

import pytest

from cluster import Cluster, rank_pids, wait_for_text
from conftest import ROOT, TARGETS

JOB = os.path.join(TARGETS, "dist_allreduce.py")
PORT = 29531


def _torchrun(cluster, node_rank: int, node: str, stall_file: str):
    env = dict(os.environ, GLOO_SOCKET_IFNAME="eth0", STALL_RANK="3", STALL_FILE=stall_file,
               OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    argv = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "2",
            "--node_rank", str(node_rank), "--master_addr", cluster.addr["node-0"], "--master_port", str(PORT),
            "--rdzv_backend", "static", JOB]
    log = open(os.path.join(cluster.workdir, f"job-{node}.log"), "w")
    return cluster.start(node, argv, env=env, stdout=log, stderr=log)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """Nodes 0 and 1 run the job; node-2's sshd is up but pyimpact is not installed
    there; node-3 has no sshd (unreachable)."""
    work = str(tmp_path_factory.mktemp("cluster"))
    with Cluster(work, 4, without_pyimpact=("node-2",), sshd_down=("node-3",)) as cluster:
        stall = os.path.join(work, "stall")
        _torchrun(cluster, 0, "node-0", stall)
        _torchrun(cluster, 1, "node-1", stall)
        for node in ("node-0", "node-1"):
            wait_for_text(os.path.join(work, f"job-{node}.log"), "step 40")
        ranks = rank_pids(PORT)
        assert sorted(ranks) == [0, 1, 2, 3], ranks
        yield cluster, ranks, stall


def _diagnose_job(cluster, pid: int, hosts: str, *extra):
    res = cluster.client_run([sys.executable, "-m", "pyimpact", "diagnose", str(pid), "--job", "--hosts", hosts,
                              "--ssh-config", cluster.ssh_config, *extra], timeout=120,
                             env=dict(os.environ, PYTHONPATH=ROOT))
    assert res.returncode == 0, res.stderr
    return res


def _two_nodes(cluster) -> str:
    path = os.path.join(cluster.workdir, "hosts-2")
    with open(path, "w") as f:
        f.write("node-0\nnode-1\n")
    return path


def test_healthy_job_progresses_everywhere(job):
    cluster, ranks, _ = job
    doc = json.loads(_diagnose_job(cluster, ranks[0], _two_nodes(cluster), "--json").stdout)
    assert doc["schema"] == "pyimpact.diagnose-job/1"
    assert doc["verdict"]["hung"] is False, [(r["rank"], r["class"], r["summary"]) for r in doc["ranks"]]
    assert doc["verdict"]["root_cause"] is None
    assert {r["rank"]: r["node"] for r in doc["ranks"]} == {0: "node-0", 1: "node-0", 2: "node-1", 3: "node-1"}
    assert all(r["class"] == "progressing" for r in doc["ranks"]), [(r["rank"], r["class"], r["summary"])
                                                                     for r in doc["ranks"]]
    assert not doc["unreachable"]
    assert any(e["cross_node"] for e in doc["edges"])


def test_stalled_rank_is_the_root_across_nodes(job):
    cluster, ranks, stall = job
    open(stall, "w").close()
    wait_for_text(os.path.join(cluster.workdir, "job-node-1.log"), "rank 3 stalls")
    time.sleep(1.0)   # the others reach the next all_reduce and wait there
    res = _diagnose_job(cluster, ranks[0], cluster.hosts_file, "--json")
    doc = json.loads(res.stdout)
    v = doc["verdict"]
    assert v["hung"] is True and v["class"] == "blocked", v
    root = v["root_cause"]
    assert (root["node"], root["rank"], root["pid"]) == ("node-1", 3, ranks[3]), root
    assert "all_reduce" in v["summary"]
    assert sorted(doc["wavefront"]["ahead"]) == [0, 1, 2]
    assert doc["wavefront"]["behind"] == [3]
    cross = [e for e in doc["edges"] if e["cross_node"]]
    assert cross and all({e["a"]["node"], e["b"]["node"]} == {"node-0", "node-1"} for e in cross)
    assert any({e["a"]["rank"], e["b"]["rank"]} == {0, 3} for e in cross)
    why = {u["host"]: u["reason"] for u in doc["unreachable"]}
    assert set(why) == {"node-2", "node-3"}, why
    assert "not installed" in why["node-2"]
    assert "unreachable" in why["node-3"]
    # The human view names the root with its node, rank and pid, one line per node that did not answer.
    human = _diagnose_job(cluster, ranks[0], cluster.hosts_file).stdout
    assert f"Root cause: node node-1, rank 3, pid {ranks[3]}" in human
    assert "node-2: NOT ANSWERED" in human and "node-3: NOT ANSWERED" in human


def test_kill_preview_job_cascade(job):
    cluster, ranks, _ = job
    res = cluster.client_run([sys.executable, "-m", "pyimpact", "kill-preview", str(ranks[1]), "--job", "--hosts",
                              _two_nodes(cluster), "--ssh-config", cluster.ssh_config, "--json"], timeout=120,
                             env=dict(os.environ, PYTHONPATH=ROOT))
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    c = doc["cascade"]
    assert c["target"] is not None, (c, doc["diagnosis"]["unreachable"], doc["diagnosis"]["nodes"])
    assert (c["target"]["node"], c["target"]["rank"], c["target"]["pid"]) == ("node-0", 1, ranks[1])
    assert sorted((r["node"], r["rank"]) for r in c["stall"]) == [("node-0", 0), ("node-1", 2), ("node-1", 3)]
    assert c["supervisor"] == "torchrun elastic agent" and c["restarts_left"] == 0
    assert c["gpu_seconds_wasted_per_minute"] == 0


def test_trace_job_merges_every_node(job):
    cluster, ranks, _ = job
    out = os.path.join(cluster.workdir, "job.json")
    hosts = os.path.join(cluster.workdir, "hosts-3")
    with open(hosts, "w") as f:
        f.write("node-0\nnode-1\nnode-3\n")          # node-3: no sshd
    res = cluster.client_run([sys.executable, "-m", "pyimpact", "trace", "-p", str(ranks[0]), "--job", "--hosts",
                              hosts, "--ssh-config", cluster.ssh_config, "-d", "1", "-o", out], timeout=120,
                             env=dict(os.environ, PYTHONPATH=ROOT))
    assert res.returncode == 0, res.stderr
    assert "node-3: NOT RECORDED" in res.stderr
    assert "node-0: NOT RECORDED" not in res.stderr, res.stderr
    assert os.stat(out).st_mode & 0o777 == 0o600
    with open(out) as f:
        doc = json.load(f)
    nodes = {n["host"]: n for n in doc["pyimpact_job"]["nodes"]}
    assert set(nodes) == {"node-0", "node-1"} and all(n["events"] > 0 for n in nodes.values())
    names = [e["args"]["name"] for e in doc["traceEvents"] if e.get("ph") == "M" and e["name"] == "process_name"]
    for node in ("node-0", "node-1"):
        assert any(n.startswith(f"{node}: ") for n in names), names
    # every node's processes live in a pid range of their own, labelled with the node
    by_node = {}
    for e in doc["traceEvents"]:
        if e.get("ph") == "M" and e["name"] == "process_labels":
            by_node.setdefault(e["args"]["labels"], set()).add(e["pid"] // 10_000_000)
    assert by_node == {"node-0": {1}, "node-1": {2}}
    rank_pids = {e["pid"] % 10_000_000 for e in doc["traceEvents"] if e.get("ph") in ("X", "i")}
    assert set(ranks.values()) <= rank_pids
