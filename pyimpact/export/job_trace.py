"""One Perfetto timeline for a distributed job, from one recording per node.

Each node's recording (pyimpact's trace-event JSON) keeps its events; the
merge moves every node's processes into a pid range of their own (pids repeat
across machines), names each process after its node, labels and sorts the
processes node by node (one group per node in the Perfetto UI), and shifts
each node's timestamps by its clock offset from the coordinator, so one
instant is one place on the time axis. Pure: documents in, document out.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

PID_STRIDE = 10_000_000     # above Linux's PID_MAX_LIMIT (4,194,304)


def merge_traces(nodes: Sequence[Tuple[str, Dict[str, Any], int]],
                 unreachable: Sequence[Dict[str, str]] = ()) -> Dict[str, Any]:
    """``nodes``: (host, trace document, clock offset in ns = node clock minus ours)."""
    events: List[Dict[str, Any]] = []
    summary = []
    for index, (host, doc, offset_ns) in enumerate(nodes):
        base = (index + 1) * PID_STRIDE
        shift_us = offset_ns / 1000.0
        pids = set()
        count = 0
        for e in doc.get("traceEvents") or []:
            e = dict(e)
            if "pid" in e:
                pids.add(e["pid"])
                e["pid"] = base + int(e["pid"])
            if e.get("ph") == "M" and e.get("name") == "process_name":
                e["args"] = {"name": f"{host}: {(e.get('args') or {}).get('name', '')}"}
            if "ts" in e:
                e["ts"] = float(e["ts"]) - shift_us
                count += 1
            if isinstance(e.get("args"), dict) and "pid" in e["args"] and e.get("ph") != "M":
                e["args"] = dict(e["args"], node=host)
            events.append(e)
        for pid in sorted(pids):
            events.append({"ph": "M", "name": "process_labels", "pid": base + int(pid), "tid": 0,
                           "args": {"labels": host}})
            events.append({"ph": "M", "name": "process_sort_index", "pid": base + int(pid), "tid": 0,
                           "args": {"sort_index": base + int(pid)}})
        side = doc.get("pyimpact") or {}
        meta = side.get("metadata") or {}
        summary.append({"host": host, "events": count, "clock_offset_ns": offset_ns, "pid_base": base,
                        "lost_events": meta.get("lost_events") if isinstance(meta, dict) else None})
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "pyimpact_job": {"schema": "pyimpact.trace-job/1", "nodes": summary,
                             "unreachable": list(unreachable)}}


def clock_offset(samples: Sequence[Tuple[int, int, int]]) -> Optional[Tuple[int, int]]:
    """(offset_ns, uncertainty_ns) from (sent_ns, remote_ns, received_ns)
    round trips: the one with the shortest round trip, the remote reading
    taken as the midpoint (NTP's estimate; the error is at most half the
    round trip)."""
    good = [(r1 - s0, s0, rem, r1) for s0, rem, r1 in samples if r1 >= s0]
    if not good:
        return None
    rtt, s0, rem, r1 = min(good)
    return rem - (s0 + r1) // 2, rtt // 2
