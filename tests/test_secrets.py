"""Secrets never reach an output (issue 8, item 5), against a real job.

The job (tests/targets/secret_job.py) carries canaries in its argv, its
script's path, its working directory, a file it holds open, its environment
(credentials under allowed prefixes: SLURM_DB_PASSWORD, TORCHELASTIC_TOKEN)
and a Python local variable.  The real commands run against it; every
output -- terminal, --json, and the -o files, read back in full -- is
searched for the canaries.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import PYIMPACT, TARGETS, wait_for_line
from pyimpact.export import read_recording

ENV_CANARIES = {"SLURM_DB_PASSWORD": "canaryenvpw7781", "TORCHELASTIC_TOKEN": "canaryenvtok4471",
                "SLURM_MUNGE_KEY": "canaryenvkey9001", "AWS_SECRET_ACCESS_KEY": "canaryenvaws3307"}
LOCAL_CANARY = "canarylocal5519AKIA"
ARG_CANARIES = ["canaryargkey1187", "canaryargpw2293"]
DIR_CANARY = "canarydir6601"
FILE_CANARY = "canaryfile8803"
PATH_CANARIES = [DIR_CANARY, FILE_CANARY]
ALLOWED = {"SLURM_JOB_ID": "4242", "LOCAL_RANK": "3", "RANK": "3", "WORLD_SIZE": "8",
           "TORCHELASTIC_RUN_ID": "run77"}


@pytest.fixture(scope="module")
def secret_job():
    """The job, started in a directory whose name is a canary, from a copy of
    the script whose name is a canary.  Yields (pid, directory)."""
    from conftest import Spawner

    where = tempfile.mkdtemp(prefix=f"pyimpact-{DIR_CANARY}-")
    script = os.path.join(where, f"job_{FILE_CANARY}.py")
    shutil.copy(os.path.join(TARGETS, "secret_job.py"), script)
    env = dict(os.environ, **ENV_CANARIES, **ALLOWED)
    spawn = Spawner()
    try:
        proc = spawn([sys.executable, script, f"--api-key={ARG_CANARIES[0]}", "--password",
                      ARG_CANARIES[1], "--steps", "100"], cwd=where, env=env, stdout=subprocess.PIPE,
                     stdin=subprocess.PIPE)
        proc.stdin.write(LOCAL_CANARY.encode() + b"\n")
        proc.stdin.flush()
        wait_for_line(proc.stdout, "ready", 20)
        yield proc.pid, where
    finally:
        spawn.cleanup()
        shutil.rmtree(where, ignore_errors=True)


def _cli(*args, ok=(0,)):
    res = subprocess.run(PYIMPACT + list(args), capture_output=True, text=True, timeout=120)
    assert res.returncode in ok, f"{args}: rc {res.returncode}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    assert "Traceback" not in res.stderr, res.stderr
    return res


def _file_text(path: str) -> str:
    """Everything a saved file holds: its bytes, and for a recording every
    value of it loaded back (Parquet pages are compressed)."""
    with open(path, "rb") as f:
        raw = f.read().decode("utf-8", "replace")
    if path.endswith((".json", ".parquet", ".csv")):
        rec = read_recording(path)
        raw += json.dumps(rec.sidecar(), default=str) + rec.events.to_csv()
    return raw


def _assert_none(texts: dict, canaries) -> None:
    for where, text in texts.items():
        for c in canaries:
            assert c not in text, f"canary {c!r} found in {where}"


@pytest.fixture(scope="module")
def plain_outputs(secret_job, tmp_path_factory):
    """diagnose and kill-preview without --redact: (diagnose, kill-preview, dir)."""
    pid, _ = secret_job
    out = tmp_path_factory.mktemp("plain")
    d = _cli("diagnose", str(pid), "-w", "0.3", "--json", "-o", str(out / "d.parquet"))
    k = _cli("kill-preview", str(pid), "-d", "0.5", "--json", "-o", str(out / "k.json"))
    return d, k, out


def test_environment_credentials_and_local_values_dropped(secret_job, plain_outputs):
    """No --redact: credentials under allowed prefixes and the values of locals
    never reach diagnose or kill-preview outputs; the allowed keys and the
    names/addresses of locals (the Thread.join analysis needs them) remain."""
    pid, _ = secret_job
    d_json, k_json, out = plain_outputs
    texts = {"diagnose --json": d_json.stdout + d_json.stderr, "kill-preview --json": k_json.stdout + k_json.stderr}
    for f in ("d.parquet", "k.json"):
        texts[f] = _file_text(str(out / f))
    _assert_none(texts, list(ENV_CANARIES.values()) + [LOCAL_CANARY])
    rec = read_recording(str(out / "d.parquet"))
    env = rec.snapshots["start"].processes[pid].env
    assert {k: env.get(k) for k in ALLOWED} == ALLOWED
    assert not set(ENV_CANARIES) & set(env)
    frames = [fr for th in rec.metadata["python_stacks"][str(pid)]["threads"].values() for fr in th["frames"]]
    names = {v["name"]: v for fr in frames for v in fr.get("locals") or []}
    assert "aws_secret_access_key" in names and "repr" not in names["aws_secret_access_key"]
    assert names["aws_secret_access_key"].get("addr") is not None


def test_locals_flag_keeps_values(secret_job, tmp_path):
    """`diagnose --locals` is the one way values of locals are kept (and it
    shows the search above would have found the canary)."""
    pid, _ = secret_job
    _cli("diagnose", str(pid), "-w", "0.3", "--locals", "--json", "-o", str(tmp_path / "d.json"))
    assert LOCAL_CANARY in _file_text(str(tmp_path / "d.json"))


def test_redact_replaces_command_lines_and_paths_everywhere(secret_job, plain_outputs, tmp_path):
    """--redact: no argv word, script path, cwd or open file path in any output
    of trace, diagnose, kill-preview and report; the verdict is unchanged."""
    pid, where = secret_job
    plain, _, plain_dir = plain_outputs
    canaries = ARG_CANARIES + PATH_CANARIES
    assert all(c in plain.stdout for c in canaries)          # the canaries are there to find
    plain_rec = str(plain_dir / "d.parquet")
    runs = {
        "trace --json": _cli("trace", "-p", str(pid), "-d", "0.5", "--redact", "--json",
                             "-o", str(tmp_path / "t.json")),
        "diagnose": _cli("diagnose", str(pid), "-w", "0.3", "--redact", "-o", str(tmp_path / "d.parquet")),
        "diagnose --json": _cli("diagnose", str(pid), "-w", "0.3", "--redact", "--json",
                                "-o", str(tmp_path / "d.csv")),
        "kill-preview": _cli("kill-preview", str(pid), "-d", "0.5", "--redact", "-o", str(tmp_path / "k.parquet")),
        "kill-preview --json": _cli("kill-preview", str(pid), "-d", "0.5", "--redact", "--json"),
        # report --redact of a recording written without it
        "report": _cli("report", plain_rec, "--redact"),
        "report --json": _cli("report", plain_rec, "--redact", "--json"),
        "report -o html": _cli("report", plain_rec, "--redact", "-o", str(tmp_path / "r.html")),
        "report -o json": _cli("report", plain_rec, "--redact", "-o", str(tmp_path / "r.json")),
    }
    texts = {k: v.stdout + v.stderr for k, v in runs.items()}
    for f in ("t.json", "d.parquet", "d.csv", "k.parquet", "r.html", "r.json"):
        texts[f] = _file_text(str(tmp_path / f))
    _assert_none(texts, canaries + [where])
    assert "<path-" in texts["diagnose"] and "<arg-" in texts["diagnose --json"]
    assert json.loads(runs["diagnose --json"].stdout)["verdict"]["class"] == \
        json.loads(plain.stdout)["verdict"]["class"]
    # the placeholders of one recording are the same in each of its outputs
    doc = json.loads(runs["report --json"].stdout)
    cmd = " ".join(doc["diagnoses"][0]["cmdline"])
    assert "<arg-" in cmd and cmd in " ".join(texts["report"].split())     # the view wraps lines
    saved = read_recording(str(tmp_path / "r.json")).snapshots["start"].processes[pid].cmdline
    assert saved == doc["diagnoses"][0]["cmdline"]


def test_redactor_keeps_what_is_not_a_command_or_path():
    """Pure: on a real saved recording, the redactor replaces its learned
    argv words and paths (and any other user path) but keeps numbers, units,
    flags, system paths and process names."""
    from conftest import RECORDINGS
    from pyimpact.export.redact import Redactor

    rec = read_recording(os.path.join(RECORDINGS, "diag_rec_chain.parquet"))
    red = Redactor.for_recording(rec)
    proc = next(p for p in rec.snapshots["start"].processes.values() if len(p.cmdline) > 1)
    line = " ".join(proc.cmdline)
    assert red.text(line) != line and all(a not in red.text(line) for a in proc.cmdline if "/" in a)
    kept = "thread 12 (python3) read 4096 B, I/O 3 MB/s read/write --steps 100 /dev/null /proc/1/fd pipe:[77]"
    assert red.text(kept) == kept
    assert red.text("saved /home/someone/ckpt/step_9.pt.") == "saved <path-x%d.pt>." % len(red._table)
    assert red.text("saved /home/someone/ckpt/step_9.pt.") == red.text("saved /home/someone/ckpt/step_9.pt.")
