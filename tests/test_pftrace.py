"""`-o t.pftrace`: a real trace as Perfetto's protobuf, read back with the
official schema (the perfetto package's TracePacket): every timeline event is
there once, on the track of its thread, and the slices of each track nest;
names and categories are interned, flows link a futex wake to the wait it
ended and a signal sent to its delivery.
(Perfetto's trace_processor is not run: it downloads a binary, and this
machine reaches no network beyond the package registries.)"""
from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter, defaultdict

import pytest

from conftest import PYIMPACT, ROOT, wait_for_line
from pyimpact.export import read_recording
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

    rec = read_recording(str(rec_path))
    events = rec.events
    kinds = Counter(str(k) for k in events["kind"])
    assert kinds["fork"] >= 3 and kinds["signal_generate"] >= 3 and kinds["futex_wait"] > 0, kinds

    trace_pb = pb.Trace.FromString(out.read_bytes())
    TE = pb.TrackEvent
    tracks, seen = {}, Counter()
    cats, args = {}, {}
    for p in trace_pb.packet:
        if p.HasField("interned_data"):
            cats.update({c.iid: c.name for c in p.interned_data.event_categories})
            args.update({a.iid: a.name for a in p.interned_data.debug_annotation_names})
    stacks, begins, ends = defaultdict(list), Counter(), Counter()
    last_ts = defaultdict(int)
    for p in trace_pb.packet:
        assert p.trusted_packet_sequence_id
        if p.HasField("track_descriptor"):
            tracks[p.track_descriptor.uuid] = p.track_descriptor
            continue
        if not p.HasField("track_event"):
            continue                                      # the interned names
        e = p.track_event
        assert e.track_uuid in tracks, "event before its track's descriptor"
        assert p.timestamp >= last_ts[e.track_uuid], "events of a track out of time order"
        last_ts[e.track_uuid] = p.timestamp
        if e.type == TE.TYPE_SLICE_BEGIN:
            begins[e.track_uuid] += 1
            stacks[e.track_uuid].append(p.timestamp)
            seen[cats[e.category_iids[0]]] += 1
        elif e.type == TE.TYPE_SLICE_END:
            ends[e.track_uuid] += 1
            assert stacks[e.track_uuid], "a slice ends that never began"
            stacks[e.track_uuid].pop()
        elif e.type == TE.TYPE_INSTANT:
            seen[cats[e.category_iids[0]]] += 1
        elif e.type == TE.TYPE_COUNTER:
            assert tracks[e.track_uuid].HasField("counter")
    assert begins == ends and not any(stacks.values())
    assert seen == kinds                                  # every event, once
    threads = {(d.thread.pid, d.thread.tid) for d in tracks.values() if d.HasField("thread")}
    assert {(int(r.pid), int(r.tid)) for r in events.itertuples() if r.kind != "block_io"} <= threads
    procs = {d.process.pid: d.process.process_name for d in tracks.values() if d.HasField("process")}
    assert job.pid in procs and f"({job.pid})" in procs[job.pid]
    # a fork instant carries the child's pid, and a flow to the child's first event
    events_pb = [p.track_event for p in trace_pb.packet if p.HasField("track_event")
                 and p.track_event.type in (TE.TYPE_SLICE_BEGIN, TE.TYPE_INSTANT)]
    forks = [e for e in events_pb if e.category_iids and cats[e.category_iids[0]] == "fork"]
    assert all(args[a.name_iid] == "child_pid" and a.int_value > 0 for e in forks for a in e.debug_annotations)
    flows_out = {f for e in events_pb for f in e.flow_ids}
    flows_in = {f for e in events_pb for f in e.terminating_flow_ids}
    assert flows_out and flows_out == flows_in       # every flow that leaves arrives
    for kind in ("fork", "signal_generate", "futex_wake"):
        assert any(e.flow_ids for e in events_pb if cats[e.category_iids[0]] == kind), kind
    # counter tracks (CPU, RSS) under the target's process
    counters = [d for d in tracks.values() if d.HasField("counter")]
    assert {d.name for d in counters} >= {"CPU", "Resident memory (RSS)"}


def test_field_numbers_are_perfettos():
    """The encoder writes protobuf by hand (column-wise, for speed): every field
    number and enum value it uses is the one in Perfetto's schema."""
    from pyimpact.export import pftrace as pf

    def num(msg, field):
        return msg.DESCRIPTOR.fields_by_name[field].number

    assert num(pb.Trace, "packet") == pf.TRACE_PACKET
    P = pb.TracePacket
    assert [num(P, f) for f in ("timestamp", "trusted_packet_sequence_id", "track_event", "interned_data",
                                "sequence_flags", "track_descriptor")] == [
        pf.P_TIMESTAMP, pf.P_SEQ_ID, pf.P_TRACK_EVENT, pf.P_INTERNED, pf.P_SEQ_FLAGS, pf.P_TRACK_DESCRIPTOR]
    T = pb.TrackEvent
    assert [num(T, f) for f in ("type", "track_uuid", "name_iid", "debug_annotations", "counter_value",
                                "double_counter_value", "flow_ids", "terminating_flow_ids", "category_iids")] == [
        pf.TE_TYPE, pf.TE_TRACK_UUID, pf.TE_NAME_IID, pf.TE_DEBUG, pf.TE_COUNTER_VALUE, pf.TE_DOUBLE_COUNTER,
        pf.TE_FLOW_IDS, pf.TE_TERMINATING_FLOW_IDS, pf.TE_CATEGORY_IIDS]
    D = pb.TrackDescriptor
    assert [num(D, f) for f in ("uuid", "name", "parent_uuid", "process", "thread", "counter")] == [
        pf.TD_UUID, pf.TD_NAME, pf.TD_PARENT, pf.TD_PROCESS, pf.TD_THREAD, pf.TD_COUNTER]
    assert [num(pb.ProcessDescriptor, f) for f in ("pid", "process_name")] == [pf.PD_PID, pf.PD_NAME]
    assert [num(pb.ThreadDescriptor, f) for f in ("pid", "tid", "thread_name")] == [pf.THD_PID, pf.THD_TID,
                                                                                     pf.THD_NAME]
    assert [num(pb.CounterDescriptor, f) for f in ("unit", "unit_name")] == [pf.CD_UNIT, pf.CD_UNIT_NAME]
    assert [num(pb.InternedData, f) for f in ("event_categories", "event_names", "debug_annotation_names")] == [
        pf.ID_EVENT_CATEGORIES, pf.ID_EVENT_NAMES, pf.ID_DEBUG_NAMES]
    assert [num(pb.EventName, f) for f in ("iid", "name")] == [pf.IID, pf.IID_NAME]
    assert [num(pb.DebugAnnotation, f) for f in ("name_iid", "int_value")] == [pf.DA_NAME_IID, pf.DA_INT]
    assert (T.TYPE_SLICE_BEGIN, T.TYPE_SLICE_END, T.TYPE_INSTANT, T.TYPE_COUNTER) == (
        pf.TYPE_SLICE_BEGIN, pf.TYPE_SLICE_END, pf.TYPE_INSTANT, pf.TYPE_COUNTER)
    assert (P.SEQ_INCREMENTAL_STATE_CLEARED, P.SEQ_NEEDS_INCREMENTAL_STATE) == (
        pf.SEQ_INCREMENTAL_STATE_CLEARED, pf.SEQ_NEEDS_INCREMENTAL_STATE)


def test_overlapping_slices_get_lanes_and_varints_round_trip():
    """Block requests overlap on one device; slices on one track must nest:
    the encoder moves overlapping ones to lanes. Values of every size (negative
    int64 too) survive the column-wise varints."""
    import pandas as pd

    from pyimpact.export.pftrace import encode
    from pyimpact.timeline import coerce_timeline

    base = 1_700_000_000_000_000_000
    rows = [dict(time_ns=base + s, dur_ns=d, kind="block_io", pid=7, tid=7, comm="dd", dev="8:0", rwbs="W",
                 bytes=4096 * (i + 1)) for i, (s, d) in enumerate([(0, 100), (10, 100), (20, 5), (150, 10)])]
    rows += [dict(time_ns=base + 5, dur_ns=50, kind="syscall", pid=7, tid=8, comm="x", syscall="read", nr=0,
                  ret=-11), dict(time_ns=base + 5, dur_ns=0, kind="syscall", pid=7, tid=8, comm="x",
                                 syscall="read", nr=0, ret=2**40)]
    rec = Recording(events=coerce_timeline(pd.DataFrame(rows)))
    trace_pb = pb.Trace.FromString(encode(rec))
    open_on = defaultdict(list)
    values = []
    for p in trace_pb.packet:
        if not p.HasField("track_event"):
            continue
        e = p.track_event
        if e.type == pb.TrackEvent.TYPE_SLICE_BEGIN:
            open_on[e.track_uuid].append(p.timestamp)
            values += [a.int_value for a in e.debug_annotations]
            assert p.timestamp >= base
        elif e.type == pb.TrackEvent.TYPE_SLICE_END:
            assert open_on[e.track_uuid], "an end with nothing open on its track"
            open_on[e.track_uuid].pop()
    assert not any(open_on.values())
    assert sorted(values) == sorted([4096, 8192, 12288, 16384, -11, 2**40])
    lanes = [d for d in (p.track_descriptor for p in trace_pb.packet if p.HasField("track_descriptor"))
             if d.name.startswith("device 8:0")]
    assert len(lanes) == 3     # three requests overlap at t=20
