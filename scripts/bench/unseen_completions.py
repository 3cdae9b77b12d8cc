"""Which block completions no BPF program is run for, and on top of which task.

The evidence behind lost["block_unseen"] (BENCHMARKS.md, notes, "Loss"):
writes 4 KiB O_DIRECT blocks to a file in /var/tmp for SECONDS (200 a
second), records every block_rq_complete of that file's disk twice, by
ftrace (an own tracefs instance, CLOCK_MONOTONIC) and by a raw-tracepoint BPF
program (its time, sector and device), and lists the completions ftrace saw
and the program did not, with the task each ran on top of, then the count by
task name and the program's recursion misses (0: not the recursion guard).
On the sandboxed VMs this project is measured on, every one of them lands on
a thread of the VM's agent. Run as root.

    unseen_completions.py [SECONDS]        (default 10)
"""
from __future__ import annotations

import bisect
import collections
import ctypes
import mmap
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

PROGRAM = r"""
struct rec { u64 ts; u64 sector; u32 dev; u32 pad; };
BPF_ARRAY(recs, struct rec, 65536);
BPF_ARRAY(nrec, u64, 1);
RAW_TRACEPOINT_PROBE(block_rq_complete)
{
    char *rq = (char *)ctx->args[0];
    char *q = 0, *disk = 0;
    u64 sector = 0;
    s32 major = 0, minor = 0;
    bpf_probe_read_kernel(&q, sizeof(q), rq + OFF_RQ_Q);
    bpf_probe_read_kernel(&sector, sizeof(sector), rq + OFF_RQ_SECTOR);
    if (q)
        bpf_probe_read_kernel(&disk, sizeof(disk), q + OFF_Q_DISK);
    if (disk) {
        bpf_probe_read_kernel(&major, sizeof(major), disk + OFF_DISK_MAJOR);
        bpf_probe_read_kernel(&minor, sizeof(minor), disk + OFF_DISK_MINOR);
    }
    int z = 0;
    u64 *n = nrec.lookup(&z);
    if (!n)
        return 0;
    u32 i = __sync_fetch_and_add(n, 1) & 65535;
    struct rec *r = recs.lookup(&i);
    if (r) {
        r->ts = bpf_ktime_get_ns();
        r->sector = sector;
        r->dev = ((u32)major << 20) | ((u32)minor & 0xFFFFF);
    }
    return 0;
}
"""
LINE = re.compile(r"^\s*(.+)-(\d+)\s+\[(\d+)\]\s+\S+\s+([\d.]+): block_rq_complete: \S+ \S+ \(\S*\) (\d+) \+")


def fail(msg: str) -> int:
    print(f"unseen_completions: {msg}", file=sys.stderr)
    return 2


def disk_of(path: str) -> tuple:
    """(major, minor) of the whole disk holding path (a partition's parent)."""
    st = os.stat(path)
    sysdir = f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    if not os.path.isdir(sysdir):
        raise OSError(f"{path} is not on a block device")
    real = os.path.realpath(sysdir)
    if os.path.exists(os.path.join(real, "partition")):
        real = os.path.dirname(real)
    with open(os.path.join(real, "dev")) as f:
        major, minor = f.read().split(":")
    return int(major), int(minor)


def writer(path: str, stop: threading.Event, counts: list) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o600)
    try:
        buf = mmap.mmap(-1, 4096)          # page-aligned, as O_DIRECT needs
        buf.write(b"\x5a" * 4096)
        for i in range(64):
            os.pwrite(fd, buf, i * 4096)
        os.fdatasync(fd)
        i = 0
        while not stop.is_set():
            os.pwrite(fd, buf, (i % 64) * 4096)
            counts[0] += 1
            i += 1
            time.sleep(0.005)
    finally:
        os.close(fd)


def main() -> int:
    try:
        seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    except ValueError:
        return fail(f"SECONDS must be a number, not {sys.argv[1]!r}")
    if not 0 < seconds <= 600:
        return fail("SECONDS must be in (0, 600]")
    if os.geteuid() != 0:
        return fail("run as root (BPF and tracefs)")
    from bcc import BPF

    from pyimpact.collect import tp_btf

    tracefs = next((d for d in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
                    if os.path.isdir(os.path.join(d, "instances"))), None)
    if tracefs is None:
        return fail("no tracefs with instances")
    try:
        major, minor = disk_of("/var/tmp")
    except (OSError, ValueError) as err:
        return fail(str(err))
    dev = (major << 20) | minor
    offs = tp_btf.block_offsets()
    src = PROGRAM
    for name, off in zip(("OFF_RQ_Q", "OFF_RQ_SECTOR", "OFF_Q_DISK", "OFF_DISK_MAJOR", "OFF_DISK_MINOR"), offs):
        src = src.replace(name, str(off))
    inst = os.path.join(tracefs, "instances", f"pyimpact-unseen-{os.getpid()}")
    data = f"/var/tmp/pyimpact-unseen-{os.getpid()}.dat"

    def put(rel: str, value: str) -> None:
        with open(os.path.join(inst, rel), "w") as f:
            f.write(value)

    os.mkdir(inst)
    stop = threading.Event()
    counts = [0]
    try:
        put("trace_clock", "mono")
        put("buffer_size_kb", "8192")
        put("events/block/block_rq_complete/filter", f"dev == {dev}")
        put("events/block/block_rq_complete/enable", "1")
        b = BPF(text=src)
        put("tracing_on", "1")
        t = threading.Thread(target=writer, args=(data, stop, counts), daemon=True)
        t.start()
        time.sleep(seconds)
        stop.set()
        t.join(5)
        time.sleep(0.2)
        put("tracing_on", "0")
        n = b["nrec"][ctypes.c_int(0)].value
        table = b["recs"]
        recs = [(table[ctypes.c_int(i)].ts / 1e9, table[ctypes.c_int(i)].sector)
                for i in range(min(n, 65536)) if table[ctypes.c_int(i)].dev == dev]
        misses = 0
        for fn in b.funcs.values():
            with open(f"/proc/self/fdinfo/{fn.fd}") as f:
                misses += sum(int(x.split()[1]) for x in f if x.startswith("recursion_misses:"))
        with open(os.path.join(inst, "trace"), errors="replace") as f:
            seen_ftrace = [(float(m.group(4)), int(m.group(5)), m.group(1).strip(), int(m.group(2)))
                           for m in map(LINE.match, f) if m]
    finally:
        stop.set()
        try:
            put("events/block/block_rq_complete/enable", "0")
        except OSError:
            pass
        os.rmdir(inst)
        if os.path.exists(data):
            os.unlink(data)
    if not recs:
        return fail("the BPF program saw no completion")
    by_sector = collections.defaultdict(list)
    for ts, sector in recs:
        by_sector[sector].append(ts)
    for v in by_sector.values():
        v.sort()
    lo, hi = min(ts for ts, _ in recs), max(ts for ts, _ in recs)
    unseen = []
    compared = 0
    for ts, sector, comm, pid in seen_ftrace:
        if not lo + 0.01 < ts < hi - 0.01:
            continue
        compared += 1
        times = by_sector.get(sector, [])
        i = bisect.bisect_left(times, ts - 0.002)
        if not (i < len(times) and times[i] < ts + 0.002):
            unseen.append((ts, sector, comm, pid))
    print(f"{counts[0]} writes; {compared} completions on {major}:{minor} in ftrace, "
          f"{len(unseen)} of them never seen by the BPF program (its recursion misses: {misses})")
    for ts, sector, comm, pid in unseen:
        print(f"  {ts:.6f} sector {sector} on top of {comm!r} (pid {pid})")
    tasks = collections.Counter(comm for _, _, comm, _ in unseen)
    if tasks:
        print("by task:", ", ".join(f"{k} {v}" for k, v in tasks.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
