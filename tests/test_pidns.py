"""Targets in a PID namespace (issue 8, item 3): the pids they name are pids
of their namespace, not host pids.

Each target runs as pid 1 of a fresh namespace (`unshare --pid --fork
--mount-proc`, what a container runtime does), so `wait4(2)` there names its
own child while host pid 2 is kthreadd, and glibc's mutex owner TIDs are
namespace TIDs. The diagnosis must name the host pid of the real culprit
(translated through NSpid), say when a pid cannot be translated, and never
blame a process outside the namespace; kill-preview must know that killing
the namespace's init kills every process in it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import PYIMPACT, TARGETS, wait_for_line

PIDNS_TARGETS = os.path.join(TARGETS, "pidns_targets.py")


def _children(pid: int) -> list:
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def _nspid(pid: int, tid: int = None) -> list:
    path = f"/proc/{pid}/status" if tid is None else f"/proc/{pid}/task/{tid}/status"
    with open(path) as f:
        for line in f:
            if line.startswith("NSpid:"):
                return [int(x) for x in line.split()[1:]]
    return []


def _members(ns_init: int) -> set:
    """Host pids of the processes in the namespace of ``ns_init`` (ours, read plainly)."""
    ns = os.stat(f"/proc/{ns_init}/ns/pid").st_ino
    out = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}/ns/pid").st_ino == ns:
                    out.add(int(name))
            except OSError:
                pass
    return out


@pytest.fixture
def in_pidns(spawn):
    """Start ARGV as pid 1 of a new PID namespace; returns (init host pid, ready words)."""
    def start(argv):
        proc = spawn(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *argv],
                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        words = wait_for_line(proc.stdout, "ready", 20).split()[1:]
        deadline = time.monotonic() + 10
        while not _children(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        init = _children(proc.pid)[0]
        assert _nspid(init)[-1] == 1 and len(_nspid(init)) == 2, _nspid(init)
        return init, words
    return start


def _cli_json(args, timeout=90):
    res = subprocess.run(PYIMPACT + args, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr
    return json.loads(res.stdout)


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _chain_pids(doc) -> set:
    return {int(n["pid"]) for n in doc.get("chain", []) if n.get("pid") is not None}


def test_wait4_names_the_child_not_host_pid(in_pidns, tmp_path):
    """pid 1 of the namespace in wait4(2) on its stopped child: the root is
    that child's host pid, not host pid 2 (kthreadd). The saved recording
    gives the same answer."""
    init, words = in_pidns([sys.executable, PIDNS_TARGETS, "wait-stopped-child"])
    assert words == ["1", "2"], words              # the target itself sees namespace pids
    (child,) = _children(init)
    assert child != 2 and _state(child) == "T"
    out = str(tmp_path / "ns.parquet")
    doc = _cli_json(["diagnose", str(init), "--json", "--no-python", "--window", "0.3", "-o", out])
    root = doc["verdict"]["root_cause"]
    assert root["pid"] == child, doc["verdict"]
    assert doc["verdict"]["hung"] is True
    assert _chain_pids(doc) <= _members(init), doc["chain"]
    assert 2 not in _chain_pids(doc)
    assert any(f"is host pid {child}" in e for e in doc["evidence"]), doc["evidence"]
    # postmortem: the translation table travels in the recording
    rep = _cli_json(["report", out, "--json"])
    assert rep["diagnoses"][0]["verdict"]["root_cause"]["pid"] == child


def test_mutex_owner_tids_are_translated(in_pidns, c_build):
    """The AB-BA mutex deadlock as pid 1 of a namespace: glibc stores namespace
    TIDs (2 and 3 here) as the owners; the cycle must be the two host TIDs."""
    exe = c_build("diag_mutex_deadlock")
    init, words = in_pidns([exe])
    ns_tids = {int(words[0]), int(words[1])}
    host_tids = {int(t) for t in os.listdir(f"/proc/{init}/task")} - {init}
    assert len(host_tids) == 2 and {_nspid(init, t)[-1] for t in host_tids} == ns_tids
    assert not host_tids & ns_tids
    doc = _cli_json(["diagnose", str(init), "--json", "--no-python", "--window", "0.3"])
    v = doc["verdict"]
    assert v["class"] == "deadlock", v
    assert v["root_cause"]["kind"] == "mutex" and v["root_cause"]["pid"] == init, v
    assert {int(n["tid"]) for n in doc["cycle"]} == host_tids, doc["cycle"]
    for tid in host_tids:
        assert f"held by thread {tid}" in v["summary"], v["summary"]


def test_untranslatable_owner_blames_nobody_outside(in_pidns, c_build):
    """A mutex whose owner thread exited while holding it: its TID names no
    task of the namespace. Said so, and nothing outside the namespace is blamed."""
    exe = c_build("pidns_dead_owner")
    init, words = in_pidns([exe])
    dead = int(words[0])
    doc = _cli_json(["diagnose", str(init), "--json", "--no-python", "--window", "0.3"])
    v = doc["verdict"]
    assert v["hung"] is True and v["root_cause"]["pid"] == init, v
    assert _chain_pids(doc) <= _members(init), doc["chain"]
    assert any(f"pid {dead} is a pid of the PID namespace" in e and "not translated" in e
               for e in doc["evidence"]), doc["evidence"]


def test_kill_preview_of_namespace_init(in_pidns):
    """Killing pid 1 of a namespace kills every process in it: the children
    are not orphaned, and SIGTERM without a handler is discarded."""
    init, words = in_pidns([sys.executable, PIDNS_TARGETS, "workers"])
    kids = set(_children(init))
    assert len(kids) == 2
    doc = _cli_json(["kill-preview", str(init), "--json", "-d", "0.5"])
    c = doc["cascade"]
    fates = {int(ch["pid"]): ch["fate"] for ch in c["children"]}
    assert set(fates) == kids, c["children"]
    for fate in fates.values():
        assert "killed with its PID namespace" in fate and "orphan" not in fate, fate
    assert c["pid_namespace"]["init"] == init
    assert set(c["pid_namespace"]["members"]) == kids | {init}
    assert any(p["kind"] == "pid-ns" for p in c["peers"]), c["peers"]
    term = doc["signals"]["detail"]["SIGTERM"]
    assert "init of a PID namespace" in term["meaning"], term
    assert "PID namespace" in doc["signals"]["note"], doc["signals"]
