"""Every block request a traced process causes is accounted for: a block_io
event, or a count in lost["block_unseen"] (probes/blockio.bpf.c,
pyimpact/collect/blockacct.py). Real O_DIRECT writes from a real traced
process (tests/targets/direct_writes.c), and the end-of-trace settlement's
rules on their own.
"""
from __future__ import annotations

import json
import os
import subprocess

from conftest import start_trace, wait_for_line
from pyimpact.collect import blockacct
from pyimpact.export import read_recording


def _trace_writes(spawn, c_build, tmp_path, nblk: int, nthreads: int, per_thread: int) -> dict:
    exe = c_build("direct_writes")
    data = f"/var/tmp/pyimpact-test-dw-{os.getpid()}-{nblk}-{nthreads}.dat"   # O_DIRECT: a real disk, not tmpfs
    try:
        target = spawn([exe, data, str(nblk), str(nthreads), str(per_thread)],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        wait_for_line(target.stdout, "ready")
        out = str(tmp_path / "dw.parquet")
        trace = start_trace(spawn, ["-p", str(target.pid), "-o", out, "--json"])
        target.stdin.write(b"g")
        target.stdin.flush()
        done = int(wait_for_line(target.stdout, "done").split()[1])
        target.wait(timeout=30)
        stdout, stderr = trace.communicate(timeout=60)
        assert trace.returncode == 0, stderr.decode()
    finally:
        if os.path.exists(data):
            os.unlink(data)
    rec = read_recording(out)
    ev = rec.events
    writes = ev[(ev.kind == "block_io") & (ev.pid == target.pid) & ev.rwbs.astype(str).str.contains("W")]
    return {"done": done, "writes": writes, "summary": json.loads(stdout), "rec": rec}


def test_every_direct_write_is_an_event_or_counted(spawn, c_build, tmp_path):
    r = _trace_writes(spawn, c_build, tmp_path, nblk=8, nthreads=1, per_thread=97)
    lost = r["summary"]["lost"]
    assert r["done"] == 97
    # the writes go one after another over 8 blocks: every one is an event,
    # or a completion no probe saw, counted (never silently missing)
    assert len(r["writes"]) + lost["block_unseen"] == 97, (len(r["writes"]), lost)
    assert not any(v for k, v in lost.items() if k != "block_unseen"), lost
    assert (r["writes"].bytes == 4096).all()
    # all completed before the trace ended: nothing is left "in flight"
    assert len(r["rec"].block_inflight) == 0, r["rec"].block_inflight


def test_two_requests_at_one_sector_in_flight_together(spawn, c_build, tmp_path):
    # Two threads overwrite the same block: their requests overlap at one
    # sector, and the second one queued finds the first one's entry. Either
    # both complete as events, or one is counted: the sum stays exact.
    r = _trace_writes(spawn, c_build, tmp_path, nblk=1, nthreads=2, per_thread=60)
    lost = r["summary"]["lost"]
    assert r["done"] == 120
    assert len(r["writes"]) + lost["block_unseen"] == 120, (len(r["writes"]), lost)
    assert len(r["rec"].block_inflight) == 0, r["rec"].block_inflight


def _e(dev, queued, issued, name):
    return blockacct.Entry(dev, queued, issued, name)


def test_settle_keeps_what_the_device_may_still_hold():
    vda, vdb = 254 << 20, (254 << 20) | 16
    entries = [_e(vda, 10, 11, "old"), _e(vda, 20, 21, "mid"), _e(vda, 30, 31, "new"),
               _e(vda, 40, 0, "not issued"), _e(vda, 900, 901, "after the read"),
               _e(vdb, 10, 11, "unknown device")]
    kept, unseen = blockacct.settle(entries, {vda: 1}, read_at_ns=500)
    # vda had 1 request in its driver: of the 3 issued before the read, the
    # newest may be it, the 2 older ones completed unseen
    assert unseen == 2
    assert sorted(e.item for e in kept) == sorted(["new", "not issued", "after the read", "unknown device"])
    kept, unseen = blockacct.settle(entries, {vda: 5, vdb: 0}, read_at_ns=500)
    assert unseen == 1 and "unknown device" not in [e.item for e in kept]


def test_device_inflight_reads_sysfs_counts(tmp_path):
    (tmp_path / "254:0").mkdir()
    (tmp_path / "254:0" / "inflight").write_text("       2        3\n")
    (tmp_path / "8:0").mkdir()
    (tmp_path / "8:0" / "inflight").write_text("garbage\n")
    counts = blockacct.device_inflight([254 << 20, 8 << 20, 7 << 20], sysfs=str(tmp_path))
    assert counts == {254 << 20: 5}

