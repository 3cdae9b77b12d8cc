"""Block requests still in the in-flight map when a trace ends: which may
still be in flight, and which completed where no probe saw them.

Every block request a followed process queues must end as a block_io event
or in a lost count (probes/blockio.bpf.c). A completion the kernel ran without
running our program (on the sandboxed VMs this project is measured on: no BPF
tracing program runs while the VM's agent threads are the current task, and a
completion softirq landing on top of one is lost to every probe) leaves its
entry in the map. In the kernel, the next bio queued at the same sector
counts it; what is left at the end is settled here, against the device's
own count of requests in the driver (/sys/dev/block/M:m/inflight), read
while the probes still run: of our issued entries on a device, at most that
many can still be in flight, the most recently queued ones; every older one
completed unseen. The count is a lower bound (the device's figure includes
other processes' requests), so nothing is called lost that may still come.
Entries queued after the read, or not yet issued, stay in flight.
"""
from __future__ import annotations

import os
from typing import Iterable, NamedTuple


class Entry(NamedTuple):
    dev: int            # kernel-internal dev_t (major << 20 | minor)
    queued_ns: int      # CLOCK_MONOTONIC, as the probes record it
    issued_ns: int      # 0: not yet issued to the driver
    item: object        # what the caller keeps for an entry still in flight


def device_inflight(devs: Iterable[int], sysfs: str = "/sys/dev/block") -> dict:
    """{dev: requests in the driver now (reads + writes)} for the devices
    whose count can be read; a device missing from the answer is unknown."""
    out = {}
    for dev in set(devs):
        try:
            with open(os.path.join(sysfs, f"{dev >> 20}:{dev & 0xFFFFF}", "inflight")) as f:
                out[dev] = sum(int(x) for x in f.read().split()[:2])
        except (OSError, ValueError):
            continue
    return out


def settle(entries: Iterable[Entry], inflight: dict, read_at_ns: int) -> tuple:
    """(entries that may still be in flight, number that completed unseen).

    inflight: device_inflight() read at read_at_ns (CLOCK_MONOTONIC), before
    the probes stopped. An entry counts as unseen only if it was issued and
    queued before that read, its device's count is known, and more of our
    issued entries were queued on that device before the read than the
    device had in flight then (the oldest are the unseen ones)."""
    kept, unseen = [], 0
    by_dev = {}
    for e in entries:
        if e.issued_ns and e.queued_ns <= read_at_ns and e.dev in inflight:
            by_dev.setdefault(e.dev, []).append(e)
        else:
            kept.append(e)
    for dev, group in by_dev.items():
        group.sort(key=lambda e: e.queued_ns)
        extra = max(0, len(group) - inflight[dev])
        unseen += extra
        kept.extend(group[extra:])
    return kept, unseen
