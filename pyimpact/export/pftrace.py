"""A recording as a Perfetto protobuf trace (``-o t.pftrace``), write-only.

Why besides the JSON: the protobuf is Perfetto's native format (smaller, and
ui.perfetto.dev loads it without the JSON importer's limits), and it has
counter tracks, so the per-process CPU and RSS samples become curves under
each process. Packets are built with the official schema (the ``perfetto``
package's generated TracePacket classes) and streamed one by one, so a long
recording is never held twice in memory.

Layout (the TrackEvent model, https://perfetto.dev/docs/reference/synthetic-track-event):
  - one track per process (pid, name) and, under it, one per thread
    (pid, tid, name);
  - syscalls, futex waits and wakes: slices on their thread's track;
  - signals, forks, execs, exits: instants on the thread's track;
  - block requests: slices under a "block I/O" track per device, on as many
    lanes as requests overlap (slices on one track must nest);
  - CPU (% of one core) and RSS (bytes): counter tracks under each process,
    from pyimpact.analyse.usage.
Every slice and instant carries its timeline row as debug annotations.
Timestamps are the timeline's wall-clock nanoseconds, on the trace's default
clock (no clock snapshot is written: the UI shows them relative to the start).
"""
from __future__ import annotations

import heapq
from typing import BinaryIO, Dict, List, Tuple

from ..analyse.usage import origin_ns, usage_charts
from .perfetto import _event_name, _process_name, _rows

SEQUENCE_ID = 0x70696D70          # "pimp": one writer, one sequence
DURATION_KINDS = ("syscall", "futex_wait", "futex_wake", "block_io")


def _schema():
    try:
        from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb
    except ImportError as err:   # a dependency: only a broken install lacks it
        from ..errors import OutputError

        raise OutputError(f"cannot write .pftrace: the perfetto package is missing ({err})",
                          "pip install perfetto, or use -o FILE.json") from None
    return pb


class _Writer:
    def __init__(self, out: BinaryIO, pb):
        self.out, self.pb = out, pb
        self.next_uuid = 1

    def uuid(self) -> int:
        self.next_uuid += 1
        return self.next_uuid

    def packet(self):
        p = self.pb.TracePacket()
        p.trusted_packet_sequence_id = SEQUENCE_ID
        return p

    def write(self, packet) -> None:
        # A Trace is `repeated TracePacket packet = 1`: each packet is one
        # length-delimited field 1, so packets can be appended one at a time.
        body = packet.SerializeToString()
        self.out.write(b"\x0a" + _varint(len(body)) + body)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _annotate(event, row: dict) -> None:
    for key, value in row.items():
        if key in ("time_ns", "dur_ns"):
            continue
        a = event.debug_annotations.add()
        a.name = str(key)
        if isinstance(value, bool):
            a.bool_value = value
        elif isinstance(value, int) and -(2 ** 63) <= value < 2 ** 63:
            a.int_value = value
        elif isinstance(value, float):
            a.double_value = value
        else:
            a.string_value = str(value)


def write(rec, out: BinaryIO) -> None:
    """Write ``rec`` to the binary file object ``out``."""
    pb = _schema()
    w = _Writer(out, pb)
    TE = pb.TrackEvent
    process_track: Dict[int, int] = {}
    thread_track: Dict[Tuple[int, int], int] = {}

    def proc_track(pid: int, comm: str) -> int:
        if pid not in process_track:
            uuid = process_track[pid] = w.uuid()
            p = w.packet()
            p.track_descriptor.uuid = uuid
            p.track_descriptor.process.pid = pid
            p.track_descriptor.process.process_name = _process_name(rec, pid, comm)
            w.write(p)
        return process_track[pid]

    def thr_track(pid: int, tid: int, comm: str) -> int:
        key = (pid, tid)
        if key not in thread_track:
            parent = proc_track(pid, comm)
            uuid = thread_track[key] = w.uuid()
            p = w.packet()
            p.track_descriptor.uuid = uuid
            p.track_descriptor.parent_uuid = parent
            p.track_descriptor.thread.pid = pid
            p.track_descriptor.thread.tid = tid
            p.track_descriptor.thread.thread_name = comm
            w.write(p)
        return thread_track[key]

    block_root = None
    lanes: Dict[str, List[Tuple[int, int]]] = {}      # device -> [(track uuid, busy until ns)]

    def block_track(dev: str, start: int, end: int) -> int:
        nonlocal block_root
        if block_root is None:
            block_root = w.uuid()
            p = w.packet()
            p.track_descriptor.uuid = block_root
            p.track_descriptor.name = "block I/O"
            w.write(p)
        dev_lanes = lanes.setdefault(dev, [])
        for i, (uuid, busy_until) in enumerate(dev_lanes):
            if busy_until <= start:
                dev_lanes[i] = (uuid, end)
                return uuid
        uuid = w.uuid()
        p = w.packet()
        p.track_descriptor.uuid = uuid
        p.track_descriptor.parent_uuid = block_root
        p.track_descriptor.name = f"device {dev}" + (f" #{len(dev_lanes) + 1}" if dev_lanes else "")
        w.write(p)
        dev_lanes.append((uuid, end))
        return uuid

    rows = sorted(_rows(rec.events), key=lambda kr: int(kr[1]["time_ns"]))
    pending_ends: List[Tuple[int, int]] = []          # (end ns, track) of open slices, flushed in time order

    def flush(until: int) -> None:
        while pending_ends and pending_ends[0][0] <= until:
            end, track = heapq.heappop(pending_ends)
            p = w.packet()
            p.timestamp = end
            p.track_event.type = TE.TYPE_SLICE_END
            p.track_event.track_uuid = track
            w.write(p)

    for kind, row in rows:
        ts = int(row["time_ns"])
        dur = int(row.get("dur_ns") or 0)
        flush(ts)
        pid, tid, comm = int(row["pid"]), int(row["tid"]), str(row.get("comm", ""))
        if kind == "block_io":
            track = block_track(str(row.get("dev", "?")), ts, ts + dur)
        else:
            track = thr_track(pid, tid, comm)
        p = w.packet()
        p.timestamp = ts
        p.track_event.track_uuid = track
        p.track_event.name = _event_name(kind, row)
        p.track_event.categories.append(kind)
        _annotate(p.track_event, row)
        if kind in DURATION_KINDS or dur > 0:
            p.track_event.type = TE.TYPE_SLICE_BEGIN
            heapq.heappush(pending_ends, (ts + dur, track))
        else:
            p.track_event.type = TE.TYPE_INSTANT
        w.write(p)
    flush(2 ** 63)

    origin = origin_ns(rec)
    for chart, unit_name in zip(usage_charts(rec)[:2], ("CPU %", "RSS bytes")):
        for series in chart.series:
            if not series.points:
                continue
            uuid = w.uuid()
            p = w.packet()
            p.track_descriptor.uuid = uuid
            p.track_descriptor.parent_uuid = proc_track(series.pid, series.label)
            p.track_descriptor.name = unit_name
            p.track_descriptor.counter.SetInParent()
            w.write(p)
            for t, value in series.points:
                p = w.packet()
                p.timestamp = origin + int(t * 1e9)
                p.track_event.type = TE.TYPE_COUNTER
                p.track_event.track_uuid = uuid
                p.track_event.double_counter_value = float(value)
                w.write(p)

