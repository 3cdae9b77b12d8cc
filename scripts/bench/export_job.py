"""Time to write a large recording: N synthetic raw probe records (a mix of
kinds like a real trace) -> pyimpact.timeline.decode_events -> Recording ->
Parquet and Perfetto JSON through Recording.save (the writers `trace -o`
uses). Runs in its own process so that its peak RSS (VmHWM) is its own; prints
one JSON line.

    export_job.py N OUTDIR
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from pyimpact.export import write_recording  # noqa: E402
from pyimpact.recording import Recording  # noqa: E402
from pyimpact.timeline import EVENT_DTYPE, decode_events  # noqa: E402

# kind code -> share of the events (futex-heavy, as a training job's trace is)
MIX = {3: 0.50, 2: 0.25, 1: 0.12, 7: 0.04, 8: 0.04, 4: 0.02, 6: 0.02, 9: 0.01}


def synthetic(n: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    a = np.zeros(n, dtype=EVENT_DTYPE)
    kinds = np.array(list(MIX))
    kind = rng.choice(kinds, size=n, p=np.array(list(MIX.values())) / sum(MIX.values()))
    a["kind"] = kind
    t0 = 1_000_000_000_000
    a["ts"] = t0 + np.sort(rng.integers(0, 600 * 10**9, size=n))          # 10 minutes
    a["dur"] = np.where(np.isin(kind, [1, 2, 3, 9]), rng.integers(1_000, 5_000_000, size=n), 0)
    pids = np.array([4242, 4300, 4301])
    tgid = rng.choice(pids, size=n, p=[0.8, 0.1, 0.1])
    a["tgid"] = tgid
    a["tid"] = tgid + rng.integers(0, 4, size=n) * (tgid == 4242)
    a["comm"] = np.where(tgid == 4242, b"python", b"pt_data_worker")
    aux = np.zeros(n, dtype=np.int64)
    aux[kind == 1] = rng.choice([0, 7, 23, 232, 281], size=(kind == 1).sum())       # read, poll, select, epoll...
    aux[kind == 2] = 128 | 9                                                   # FUTEX_WAIT_BITSET_PRIVATE
    aux[kind == 3] = 128 | 1                                                   # FUTEX_WAKE_PRIVATE
    aux[(kind == 7) | (kind == 8)] = rng.choice([10, 17], size=((kind == 7) | (kind == 8)).sum())
    aux[kind == 4] = rng.integers(0, 2, size=(kind == 4).sum())
    aux[kind == 6] = 1
    a["aux"] = aux
    a["ret"] = np.where(kind == 3, rng.integers(0, 2, size=n), 0)
    addr = 0x7F0000000000 + rng.integers(0, 64, size=n) * 64
    cols = np.zeros((n, 4), dtype=np.uint64)
    cols[:, 0] = np.where(np.isin(kind, [2, 3]), addr, rng.integers(0, 1 << 20, size=n)).astype(np.uint64)
    cols[:, 1] = rng.integers(0, 4, size=n).astype(np.uint64)
    blk = kind == 9
    cols[blk, 0] = (253 << 20) | 0
    cols[blk, 1] = rng.integers(0, 1 << 30, size=blk.sum()).astype(np.uint64)
    cols[blk, 2] = 4096
    cols[blk, 3] = int.from_bytes(b"WS", "little")
    a["a"] = cols
    return a.tobytes()


def hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    n = int(sys.argv[1])
    outdir = sys.argv[2]
    out = {"events": n, "rss_mb_at_start": hwm_mb()}
    raw = synthetic(n)
    out["raw_mb"] = len(raw) / 2**20
    t = time.perf_counter()
    events = decode_events(raw, [], 0)
    out["decode_s"] = time.perf_counter() - t
    del raw
    rec = Recording(events=events)
    rec.metadata.started_at_ns, rec.metadata.ended_at_ns = int(events["time_ns"].min()), int(events["time_ns"].max())
    out["timeline_mb"] = float(events.memory_usage(deep=True).sum()) / 2**20
    out["hwm_mb_after_decode"] = hwm_mb()
    for fmt in ("parquet", "json", "pftrace"):
        path = os.path.join(outdir, f"export-{n}.{fmt}")
        t = time.perf_counter()
        write_recording(rec, path)
        out[f"{fmt}_write_s"] = time.perf_counter() - t
        out[f"{fmt}_mb"] = os.path.getsize(path) / 2**20
        out[f"hwm_mb_after_{fmt}"] = hwm_mb()
        os.unlink(path)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
