"""`trace -o t.parquet` streams the timeline to the file in row groups while it
traces (root, BPF, real probes on a real process).

A small batch ($PYIMPACT_STREAM_BATCH) makes a two-second trace span many row
groups; the file must read back with `report`, hold every event received
(counts balance with the summary and the metadata), carry exact counts of
what the target did across batches, and the trace must never import pandas
(the memory bound depends on it).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq

from conftest import PYIMPACT, wait_for_line
from pyimpact.analyse.timeline_summary import summarise
from pyimpact.export import read_recording

NFORK, NSLEEP = 7, 151

TARGET = f"""
import os, sys, time
print("ready", flush=True)
sys.stdin.read(1)
for i in range({NSLEEP}):
    time.sleep(0.012)               # a slow syscall (>= 1 ms) each: events all along the trace
    if i % 20 == 10 and i // 20 < {NFORK}:
        pid = os.fork()
        if pid == 0:
            os._exit(3)
        os.waitpid(pid, 0)
print("done", flush=True)
"""

# Runs the CLI as `python -m pyimpact` does, then says whether pandas was imported.
TRACE = ("import atexit, sys\n"
         "atexit.register(lambda: sys.stderr.write('PANDAS_IMPORTED=%s\\n' % ('pandas' in sys.modules)))\n"
         "from pyimpact.cli import main\n"
         "sys.argv = ['pyimpact'] + sys.argv[1:]\n"
         "main()\n")


def test_streamed_parquet_balances_and_reads_back(spawn, tmp_path):
    target = spawn([sys.executable, "-c", TARGET], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    wait_for_line(target.stdout, "ready")
    out = str(tmp_path / "t.parquet")
    env = {**os.environ, "PYIMPACT_STREAM_BATCH": "16"}
    trace = spawn([sys.executable, "-c", TRACE, "trace", "-p", str(target.pid), "-o", out, "--json"],
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    wait_for_line(trace.stderr, "probes attached", 30)
    target.stdin.write(b"g")
    target.stdin.flush()
    wait_for_line(target.stdout, "done", 30)
    target.wait(timeout=30)
    stdout, stderr = trace.communicate(timeout=60)      # it ends by itself: its target exited
    assert trace.returncode == 0, stderr.decode()
    assert "PANDAS_IMPORTED=False" in stderr.decode(), stderr.decode()[-2000:]
    summary = json.loads(stdout)

    # written while tracing: many row groups (a flush every 16 events), no temporary left
    meta = pq.ParquetFile(out).metadata
    assert meta.num_row_groups >= 5, meta.num_row_groups
    assert os.stat(out).st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path)) == ["t.parquet"]

    rec = read_recording(out)
    ev = rec.events
    # counts balance: every event received is in the file and in the summary
    assert meta.num_rows == len(ev) == summary["events"]["total"] == rec.metadata["events_received"] > 0
    assert sum(summary["events"]["by_kind"].values()) == len(ev)
    assert summary["events"]["by_kind"] == {k: int(v) for k, v in ev["kind"].value_counts().items() if v}
    assert set(rec.metadata["lost"]) >= {"ringbuf_full", "map_full", "kernel_skipped", "undrained"}
    assert summary["lost"] == rec.metadata["lost"] and summary["lost_total"] == rec.lost_total
    # the kernel may skip a run of our probes while another tracer's runs on that CPU (a shared
    # machine): such events are counted as lost (kernel_skipped), and only then may a count be short
    lost = rec.lost_total
    # back in time order, whatever the order the row groups arrived in
    assert ev["time_ns"].is_monotonic_increasing

    # exact counts of what the target did, spread over the batches
    pid = target.pid
    forks = ev[(ev.kind == "fork") & (ev.pid == pid) & (ev.is_thread == False)]  # noqa: E712
    assert NFORK - lost <= len(forks) <= NFORK
    children = set(forks.child_pid.astype(int))
    ends = ev[(ev.kind == "exit") & (ev.group_dead == True) & ev.pid.isin(children)]  # noqa: E712
    assert len(children) - lost <= len(ends) <= len(children) and set(ends.exit_code.astype(int)) == {3}
    sleeps = ev[(ev.kind == "syscall") & (ev.tid == pid) & (ev.syscall == "clock_nanosleep")]
    assert len(sleeps) == NSLEEP          # slow syscalls come from the raw syscall probes: never skipped
    assert summary["forks"]["processes"] >= len(forks)

    # the totals counted batch by batch are the totals of the whole timeline read back
    again = summarise(rec)
    for key in ("events", "processes", "forks", "execs", "exits", "signals", "futex", "slow_syscalls",
                "block_io", "syscalls"):
        assert again[key] == summary[key], key

    # `report` reads it back like any recording
    rep = subprocess.run(PYIMPACT + ["report", out, "--json"], capture_output=True, text=True, timeout=120)
    assert rep.returncode == 0, rep.stderr
    assert json.loads(rep.stdout)


def test_streamed_trace_of_nothing_leaves_a_valid_file(spawn, tmp_path):
    """A trace that ends before any batch was flushed still writes a file
    that reads back (the last batch and the footer come at the stop)."""
    target = spawn(["sleep", "30"])
    out = str(tmp_path / "idle.parquet")
    done = subprocess.run(PYIMPACT + ["trace", "-p", str(target.pid), "-d", "0.5", "-o", out, "--json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    rec = read_recording(out)
    assert len(rec.events) == summary["events"]["total"] == rec.metadata["events_received"]
    assert rec.snapshots["start"].processes[target.pid].name == "sleep"


def test_compiler_pages_are_given_back_and_the_compiler_still_works():
    """After a compile, the clean pages of LLVM/clang the process touched are
    dropped from its RSS (collect.memory); a later compile faults them back
    in and works (nothing that was written is lost)."""
    from bcc import BPF

    from pyimpact.collect.memory import compiler_mappings, release_compiler_pages

    first = BPF(text=b"int one(void *ctx) { return 0; }")
    before = sum(rss for _, _, rss in compiler_mappings())
    assert before > 10_000, before                  # kB of compiler code the compile touched
    freed = release_compiler_pages()
    after = sum(rss for _, _, rss in compiler_mappings())
    assert freed >= before * 0.9 and after < before / 10, (before, freed, after)
    again = BPF(text=b"int two(void *ctx) { return 1; }")
    fn = again.load_func(b"two", BPF.SOCKET_FILTER)
    assert fn.fd >= 0
    first.cleanup()
    again.cleanup()
