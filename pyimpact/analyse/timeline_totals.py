"""The totals of the end-of-trace summary (`trace`, `trace --json`), counted batch by batch.

Why batches: `trace -o t.parquet` streams its timeline to disk while it traces
and never holds the whole of it (pyimpact.export.parquet_stream), so the
totals it prints at the end are added up from each batch of decoded columns
as it goes by (``TimelineTotals.add``); analyse.timeline_summary turns them
into the typed summary.  A Recording whose timeline is in memory goes through
the same code as one batch, so there is one way to count.

Works on decoded columns (pyimpact.timeline.Column), numpy only: no pandas,
which the streamed trace never imports.  Pure: no I/O, no clock.
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional

import numpy as np

from ..timeline import Columns

#: the columns the totals read (a DataFrame is converted for these only)
NEEDED = ["time_ns", "dur_ns", "kind", "pid", "tid", "comm", "is_thread", "group_dead", "exit_code",
          "exit_signal", "filename", "signame", "target_tid", "sig_result", "uaddr", "woken", "syscall",
          "bytes", "rwbs", "device_latency_ns"]

#: kind names in the order the probes number them (ties in the per-kind counts)
_KIND_ORDER = ["syscall", "futex_wait", "futex_wake", "fork", "exec", "exit", "signal_generate",
               "signal_deliver", "block_io"]


class TimelineTotals:
    """Counts and sums over a timeline, added one batch of columns at a time.

    Memory: per process and per futex address a few integers, the rare kinds
    (exec, process exit, signals) one small record each, block requests two
    integers each (their latency percentiles need every value)."""

    def __init__(self) -> None:
        self.total = 0
        self.first_ns: Optional[int] = None           # the earliest event's time
        self.by_kind: Counter = Counter()
        self.batches = 0
        self.first_comm: Dict[int, tuple] = {}        # pid -> ((time, batch, row), comm)
        self.pid_events: Counter = Counter()
        self.pid_tids: Dict[int, set] = {}
        self.forks = {"processes": 0, "threads": 0}
        self.execs: List[tuple] = []                  # ((time, batch, row), pid, filename)
        self.exits: List[tuple] = []                  # ((time, batch, row), pid, comm, code, signal)
        self.signals: Counter = Counter()             # (signame, pid, comm, target, result) -> count
        self.signal_deliveries = 0
        self.futex: Dict[tuple, list] = {}            # (pid, uaddr) -> [waits, wait_ns, max_ns, wakes, woken]
        self.futex_waits = self.futex_wakes = self.futex_wait_ns = 0
        self.slow: Dict[str, list] = {}               # syscall -> [count, sum_ns, max_ns]
        self.block = {"requests": 0, "bytes": 0, "read_requests": 0, "write_requests": 0}
        self._block_dur: List[np.ndarray] = []
        self._block_dev: List[np.ndarray] = []

    @classmethod
    def of_frame(cls, events) -> "TimelineTotals":
        """The totals of a whole timeline DataFrame."""
        from ..timeline import frame_to_columns

        t = cls()
        if events is not None and len(events):
            t.add(frame_to_columns(events, NEEDED))
        return t

    # -- one batch ------------------------------------------------------
    def add(self, cols: Columns) -> None:
        """Add one batch of decoded columns (in time order, batches in the
        order the events arrived)."""
        n = len(cols["time_ns"])
        b = self.batches
        self.batches += 1
        if not n:
            return
        self.total += n
        t0 = int(cols["time_ns"].values.min())
        self.first_ns = t0 if self.first_ns is None else min(self.first_ns, t0)
        kind = cols["kind"]
        counts = np.bincount(kind.values[kind.values >= 0], minlength=len(kind.labels))
        for code, c in enumerate(counts.tolist()):
            if c:
                self.by_kind[kind.labels[code]] += c
        time_ns, dur = cols["time_ns"].values, cols["dur_ns"].values
        pid, tid = cols["pid"].values, cols["tid"].values
        self._processes(b, time_ns, pid, tid, cols["comm"])

        def key(i: int) -> tuple:
            return (int(time_ns[i]), b, i)

        fork = kind.eq("fork")
        if fork.any():
            it = cols["is_thread"]
            self.forks["threads"] += int((fork & it.valid & it.values).sum())
            self.forks["processes"] += int((fork & it.valid & ~it.values).sum())
        exe = np.flatnonzero(kind.eq("exec"))
        for i, name in zip(exe.tolist(), cols["filename"].objects(exe)):
            self.execs.append((key(i), int(pid[i]), name))
        gd = cols["group_dead"]
        ext = np.flatnonzero(kind.eq("exit") & gd.valid & gd.values)
        if len(ext):
            comms = cols["comm"].objects(ext)
            codes, sigs = cols["exit_code"].objects(ext), cols["exit_signal"].objects(ext)
            for i, comm, code, sig in zip(ext.tolist(), comms, codes, sigs):
                self.exits.append((key(i), int(pid[i]), str(comm), code, sig))
        sg = np.flatnonzero(kind.eq("signal_generate"))
        if len(sg):
            keys = zip(cols["signame"].objects(sg), pid[sg].tolist(), cols["comm"].objects(sg),
                       cols["target_tid"].objects(sg), cols["sig_result"].objects(sg))
            for k in keys:
                if None not in k:          # as a groupby drops rows with a null key
                    self.signals[(str(k[0]), int(k[1]), str(k[2]), int(k[3]), str(k[4]))] += 1
        self.signal_deliveries += int(kind.eq("signal_deliver").sum())
        self._futex(kind, pid, dur, cols["uaddr"], cols["woken"])
        self._slow(kind, dur, cols["syscall"])
        self._block(kind, dur, cols["bytes"], cols["rwbs"], cols["device_latency_ns"])

    def _processes(self, b: int, time_ns, pid, tid, comm) -> None:
        uniq, first, counts = np.unique(pid, return_index=True, return_counts=True)
        for p, i, c in zip(uniq.tolist(), first.tolist(), counts.tolist()):
            self.pid_events[p] += c
            k = (int(time_ns[i]), b, i)
            if p not in self.first_comm or k < self.first_comm[p][0]:
                code = int(comm.values[i])
                self.first_comm[p] = (k, comm.labels[code] if code >= 0 else None)
        # (pid, tid) pairs: a batch holds few distinct ones, found by one sort of both
        for p, t in _groups(pid, tid)[0]:
            self.pid_tids.setdefault(p, set()).add(t)

    def _futex(self, kind, pid, dur, uaddr, woken) -> None:
        for name in ("futex_wait", "futex_wake"):
            rows = kind.eq(name)
            if not rows.any():
                continue
            if name == "futex_wait":
                self.futex_waits += int(rows.sum())
                self.futex_wait_ns += int(dur[rows].sum())
            else:
                self.futex_wakes += int(rows.sum())
            rows &= uaddr.valid
            if not rows.any():
                continue
            values = dur[rows] if name == "futex_wait" else np.where(woken.valid[rows], woken.values[rows], 0)
            keys, starts, order = _groups(pid[rows], uaddr.values[rows])
            v = values[order]
            counts = np.diff(np.append(starts, len(v))).tolist()
            sums = np.add.reduceat(v, starts).tolist()
            maxes = np.maximum.reduceat(v, starts).tolist() if name == "futex_wait" else None
            for j, key in enumerate(keys):
                e = self.futex.setdefault(key, [0, 0, 0, 0, 0])
                if name == "futex_wait":
                    e[0] += counts[j]
                    e[1] += sums[j]
                    e[2] = max(e[2], maxes[j])
                else:
                    e[3] += counts[j]
                    e[4] += sums[j]

    def _slow(self, kind, dur, syscall) -> None:
        rows = kind.eq("syscall") & (syscall.values >= 0)
        if not rows.any():
            return
        codes = syscall.values[rows]
        d = dur[rows]
        for code in np.unique(codes).tolist():
            sel = d[codes == code]
            e = self.slow.setdefault(syscall.labels[code], [0, 0, 0])
            e[0] += len(sel)
            e[1] += int(sel.sum())
            e[2] = max(e[2], int(sel.max()))

    def _block(self, kind, dur, nbytes, rwbs, dev_lat) -> None:
        rows = kind.eq("block_io")
        if not rows.any():
            return
        self.block["requests"] += int(rows.sum())
        self.block["bytes"] += int(nbytes.values[rows & nbytes.valid].sum())
        codes = rwbs.values[rows]
        for code, c in zip(*np.unique(codes[codes >= 0], return_counts=True)):
            label = rwbs.labels[int(code)]
            if "R" in label:
                self.block["read_requests"] += int(c)
            if "W" in label:
                self.block["write_requests"] += int(c)
        self._block_dur.append(dur[rows].copy())
        self._block_dev.append(dev_lat.values[rows & dev_lat.valid].copy())

    # -- what the summary reads ------------------------------------------
    def block_durations(self) -> np.ndarray:
        return np.concatenate(self._block_dur) if self._block_dur else np.zeros(0, np.int64)

    def block_device_latencies(self) -> np.ndarray:
        return np.concatenate(self._block_dev) if self._block_dev else np.zeros(0, np.int64)

    def counts(self) -> Dict[str, int]:
        """Events per kind, most frequent first."""
        order = {k: i for i, k in enumerate(_KIND_ORDER)}
        items = sorted(self.by_kind.items(), key=lambda kv: (-kv[1], order.get(kv[0], len(order)), kv[0]))
        return {k: int(v) for k, v in items if v}


def _groups(a: np.ndarray, b: np.ndarray):
    """The distinct (a, b) pairs, in sorted order: ([(a, b), ...], the start
    of each group in the sorted order, that order)."""
    order = np.lexsort((b, a))
    sa, sb = a[order], b[order]
    if not len(sa):
        return [], np.zeros(0, np.int64), order
    change = np.flatnonzero((sa[1:] != sa[:-1]) | (sb[1:] != sb[:-1])) + 1
    starts = np.concatenate(([0], change))
    return list(zip(sa[starts].tolist(), sb[starts].tolist())), starts, order


def signal_key_order(key: tuple) -> tuple:
    """Sort key of a (signame, pid, comm, target, result) count: as the
    timeline's categories order them (signal number, result code)."""
    import signal as _signal

    from ..timeline import SIG_RESULTS

    name, pid, comm, target, result = key
    try:
        num = _signal.Signals[name].value
    except KeyError:
        digits = "".join(ch for ch in name if ch.isdigit())
        num = (34 if "RTMIN" in name else 0) + (int(digits) if digits else 999)
    codes = {v: k for k, v in SIG_RESULTS.items()}
    return (num, pid, comm.encode("utf-8", "surrogateescape"), target, codes.get(result, 99), result)


def latency_ms(ns: np.ndarray) -> dict:
    """count, p50/p95/p99 and max of nanosecond latencies, in ms (None: no value)."""
    v = np.asarray(ns).astype(np.float64) / 1e6

    def pct(q: float) -> Optional[float]:
        return float(np.percentile(v, q)) if len(v) else None

    return {"count": int(len(v)), "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
            "max_ms": float(v.max()) if len(v) else None}


def stat_rows(rec) -> List[dict]:
    """The in-kernel syscall aggregates as dicts, without pandas while they
    are still the probes' rows (a Deferred table)."""
    d = rec.deferred("syscall_stats") if hasattr(rec, "deferred") else None
    got = d.records() if d is not None else None
    if got is not None:
        return got
    if "_syscall_stats" in rec.__dict__ and rec.__dict__["_syscall_stats"] is None:
        return []
    return rec.syscall_stats.to_dict(orient="records")
