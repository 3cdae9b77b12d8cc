"""The cross-node merge and the launcher commands, without root: the node
documents are real answers of `pyimpact diagnose --node-job` captured on
two simulated nodes running a torch.distributed gloo job (rank 3 stalled,
and the same job healthy)."""
from __future__ import annotations

import json
import os

import pytest

from conftest import RECORDINGS
from pyimpact.analyse.job import NodeResult, kill_cascade, merge, normalise_addr, ranges
from pyimpact.collect.launchers import RemoteAnswer, _explain, launcher_argv, read_hosts
from pyimpact.errors import UsageError
from pyimpact.render.job_view import cascade_lines, lines

KEY = "MASTER=198.18.7.1:29541"


def _docs(tag: str):
    out = []
    for node in ("node-0", "node-1"):
        with open(os.path.join(RECORDINGS, f"job_{tag}_{node}.json")) as f:
            out.append(NodeResult(host=node, doc=json.load(f), elapsed_s=2.0))
    return out


def test_stalled_rank_is_the_root():
    jd = merge(KEY, _docs("stalled"))
    doc = jd.to_json()
    assert doc["verdict"]["hung"] and doc["verdict"]["class"] == "blocked"
    root = doc["verdict"]["root_cause"]
    stalled = next(r for r in doc["ranks"] if r["rank"] == 3)
    assert (root["node"], root["rank"], root["pid"]) == ("node-1", 3, stalled["pid"])
    assert doc["wavefront"] == {"ahead": [0, 1, 2], "behind": [3]}
    assert all("all_reduce" in r["in_collective"] for r in doc["ranks"] if r["rank"] != 3)
    cross = [e for e in doc["edges"] if e["cross_node"]]
    # a full mesh of 4 ranks over 2 nodes: 2 x 2 cross-node pairs, each matched once
    assert {frozenset((e["a"]["rank"], e["b"]["rank"])) for e in cross} == {
        frozenset(p) for p in ((0, 2), (0, 3), (1, 2), (1, 3))}
    text = "\n".join(lines(jd))
    assert f"Root cause: node node-1, rank 3, pid {stalled['pid']}" in text
    assert "Wavefront: ahead (waiting in a collective): 0–2; behind: 3" in text


def test_healthy_job_names_no_root():
    doc = merge(KEY, _docs("healthy")).to_json()
    assert doc["verdict"]["hung"] is False
    assert doc["verdict"]["root_cause"] is None
    assert len(doc["ranks"]) == 4 and not doc["missing_ranks"]
    assert "Root cause" not in "\n".join(lines(merge(KEY, _docs("healthy"))))


def test_unreachable_node_ranks_are_missing():
    node0, _ = _docs("stalled")
    jd = merge(KEY, [node0, NodeResult(host="node-1", error="unreachable through ssh: Connection refused")])
    doc = jd.to_json()
    assert doc["missing_ranks"] == [2, 3]
    assert doc["unreachable"] == [{"host": "node-1", "reason": "unreachable through ssh: Connection refused"}]
    assert doc["verdict"]["hung"] and "2–3" in doc["verdict"]["summary"]
    assert "node-1: NOT ANSWERED: unreachable through ssh" in "\n".join(lines(jd))


def test_no_answer_at_all():
    doc = merge(KEY, [NodeResult(host="a", error="x"), NodeResult(host="b", error="y")]).to_json()
    assert doc["verdict"]["class"] == "unknown" and not doc["ranks"]


def test_addresses_and_ranges():
    assert normalise_addr("[::ffff:10.1.2.3]:29500") == "10.1.2.3:29500"
    assert normalise_addr("[fe80::1]:22") == "[fe80::1]:22"
    assert ranges([0, 1, 2, 5, 7, 8]) == "0–2, 5, 7–8"


def test_launcher_commands():
    remote = ["pyimpact", "diagnose", "--node-job", "MASTER=a;rm -rf /:1", "--json"]
    ssh = launcher_argv("ssh", "node-1", remote, ssh_config="/etc/cfg")
    assert ssh[:3] == ["ssh", "-o", "BatchMode=yes"] and ["-F", "/etc/cfg"] == ssh[7:9]
    assert ssh[-2] == "node-1" and ssh[-1].endswith("'MASTER=a;rm -rf /:1' --json")   # quoted for the remote shell
    srun = launcher_argv("slurm", "gpu07", remote, slurm_job="4242")
    assert srun[:3] == ["srun", "--overlap", "--jobid=4242"] and "--nodelist=gpu07" in srun
    assert srun[-len(remote):] == remote
    assert launcher_argv("kubectl", "trainer-0", remote) == ["kubectl", "exec", "trainer-0", "--", *remote]
    for bad in ("-oProxyCommand=evil", "a b", ""):
        with pytest.raises(UsageError):
            launcher_argv("ssh", bad, remote)
    with pytest.raises(UsageError):
        launcher_argv("slurm", "n1", remote)


def test_hosts_file(tmp_path):
    p = tmp_path / "hosts"
    p.write_text("# nodes\nnode-a\n\nnode-b  # second\nnode-a\n")
    assert read_hosts(str(p)) == ["node-a", "node-b"]
    p.write_text("-oProxyCommand=x\n")
    with pytest.raises(UsageError):
        read_hosts(str(p))


def test_why_a_node_did_not_answer():
    def why(rc, err=""):
        return _explain(RemoteAnswer(host="h", argv=[], returncode=rc, stderr=err), "ssh")
    assert why(0) is None
    assert why(255, "ssh: connect to host 1.2.3.4 port 22: Connection refused").startswith("unreachable")
    assert "not installed" in why(127, "sh: 1: pyimpact: not found")
    assert "needs root" in why(4, "pyimpact: not permitted")
    assert "exit 3" in why(3, "pyimpact: no such process")


def test_kill_cascade_under_torchrun():
    jd = merge(KEY, _docs("stalled"))
    c = kill_cascade(jd, 3)
    assert c["target"]["node"] == "node-1" and c["target"]["rank"] == 3
    assert sorted(r["rank"] for r in c["stall"]) == [0, 1, 2]
    # torchrun's agent, max_restarts 0 (its default): the job fails, nothing waits for a timeout
    assert c["supervisor"] == "torchrun elastic agent" and c["restarts_left"] == 0
    assert "job fails" in c["effect"]
    assert c["gpus_stalled"] == 0 and c["gpu_seconds_wasted_per_minute"] == 0
    assert "NOT ANSWERED" not in "\n".join(cascade_lines(jd, c))


def test_kill_cascade_without_agent_waits_for_the_timeout():
    docs = _docs("stalled")
    for res in docs:
        for r in res.doc["ranks"]:
            r["elastic"] = {}
            r["gpus"] = [r["local_rank"]]     # as if each rank held one GPU
    c = kill_cascade(merge(KEY, docs), 0)
    assert c["supervisor"] is None and c["backend_guess"] == "nccl"
    assert c["stall_s"] == 600.0 and "default nccl timeout" in c["stall_basis"]
    assert c["gpus_stalled"] == 3 and c["gpu_seconds_wasted_per_minute"] == 180.0
    assert kill_cascade(merge(KEY, docs), 9)["target"] is None
