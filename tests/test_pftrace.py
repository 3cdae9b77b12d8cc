"""`-o t.pftrace`: a real trace as Perfetto's protobuf, read back with the
official schema (the perfetto package's TracePacket): every timeline event is
there once, on the track of its thread, and the slices of each track nest.
(Perfetto's trace_processor is not run: it downloads a binary, and this
machine reaches no network beyond the package registries.)"""
from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter, defaultdict

import pytest

from conftest import PYIMPACT, ROOT, wait_for_line
from pyimpact.recording import Recording

pb = pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2")

WORKLOAD = """
import os, signal, sys, threading, time
signal.signal(signal.SIGUSR1, lambda *a: None)
print('ready', flush=True)
sys.stdin.readline()
lock = threading.Lock()
def spin():
    end = time.monotonic() + 0.6
    while time.monotonic() < end:
        with lock:
            time.sleep(0.001)
ts = [threading.Thread(target=spin) for _ in range(2)]
[t.start() for t in ts]
for i in range(3):
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    os.waitpid(pid, 0)
    os.kill(os.getpid(), signal.SIGUSR1)
[t.join() for t in ts]
time.sleep(30)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="tracing needs root (CI is root)")
def test_trace_as_pftrace(spawn, tmp_path):
    job = spawn([sys.executable, "-c", WORKLOAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    wait_for_line(job.stdout, "ready")
    rec_path, out = tmp_path / "t.parquet", tmp_path / "t.pftrace"
    trace = spawn(PYIMPACT + ["trace", "-p", str(job.pid), "-d", "1.5", "-o", str(rec_path)],
                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=ROOT))
    wait_for_line(trace.stderr, "probes attached", 60)
    job.stdin.write(b"go\n")
    job.stdin.flush()
    assert trace.wait(60) == 0
    res = subprocess.run(PYIMPACT + ["report", str(rec_path), "-o", str(out)], capture_output=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert res.returncode == 0, res.stderr

    rec = Recording.load(str(rec_path))
    events = rec.events
    kinds = Counter(str(k) for k in events["kind"])
    assert kinds["fork"] >= 3 and kinds["signal_generate"] >= 3 and kinds["futex_wait"] > 0, kinds

    trace_pb = pb.Trace.FromString(out.read_bytes())
    TE = pb.TrackEvent
    tracks, seen = {}, Counter()
    stacks, begins, ends = defaultdict(list), Counter(), Counter()
    last_ts = defaultdict(int)
    for p in trace_pb.packet:
        assert p.trusted_packet_sequence_id
        if p.HasField("track_descriptor"):
            tracks[p.track_descriptor.uuid] = p.track_descriptor
            continue
        e = p.track_event
        assert e.track_uuid in tracks, "event before its track's descriptor"
        assert p.timestamp >= last_ts[e.track_uuid], "events of a track out of time order"
        last_ts[e.track_uuid] = p.timestamp
        if e.type == TE.TYPE_SLICE_BEGIN:
            begins[e.track_uuid] += 1
            stacks[e.track_uuid].append(p.timestamp)
            seen[e.categories[0]] += 1
        elif e.type == TE.TYPE_SLICE_END:
            ends[e.track_uuid] += 1
            assert stacks[e.track_uuid], "a slice ends that never began"
            stacks[e.track_uuid].pop()
        elif e.type == TE.TYPE_INSTANT:
            seen[e.categories[0]] += 1
        elif e.type == TE.TYPE_COUNTER:
            assert tracks[e.track_uuid].HasField("counter")
    assert begins == ends and not any(stacks.values())
    assert seen == kinds                                  # every event, once
    threads = {(d.thread.pid, d.thread.tid) for d in tracks.values() if d.HasField("thread")}
    assert {(int(r.pid), int(r.tid)) for r in events.itertuples() if r.kind != "block_io"} <= threads
    procs = {d.process.pid: d.process.process_name for d in tracks.values() if d.HasField("process")}
    assert job.pid in procs and f"({job.pid})" in procs[job.pid]
    # a fork instant carries its row as debug annotations
    forks = [p.track_event for p in trace_pb.packet if p.HasField("track_event")
             and list(p.track_event.categories) == ["fork"]]
    names = {a.name for a in forks[0].debug_annotations}
    assert {"kind", "pid", "tid", "child_pid"} <= names, names
