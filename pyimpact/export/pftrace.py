"""Perfetto's native protobuf trace (``.pftrace``): TrackEvent packets with
interned names, integer nanoseconds, counter tracks and flows.

Why a second timeline format: the trace-event JSON (perfetto.py) spells every
event out as text with its whole row, which makes a large trace big and slow
to write and to load. Here each event is a few varints on its thread's track
(names interned once per trace), so a million events take a fraction of the
size and the time. It is write-only: `pyimpact report` reads the JSON and
Parquet forms, which keep the whole recording.

What goes in (proto schema: perfetto/trace/perfetto_trace.proto, the field
numbers below are checked against it by tests/test_pftrace.py):
  - one track per process and per thread (real pids/tids, named), plus one per
    block device under a "block I/O" process; slices that overlap on one track
    (block requests, a wait inside a wait) get extra lanes beneath it;
  - syscalls, futex waits and wakes, block requests as slices (begin/end);
    signals, forks, execs, exits as instants; one integer argument each (ret,
    uaddr, bytes, target tid, child pid, exit code);
  - flows: a futex wake to the wait it ended, a signal sent to its delivery, a
    fork to the child's first event;
  - counter tracks per process: CPU (% of one core), RSS, GPU memory and
    utilisation, from the best samples the recording holds (analyse.history.usage: the
    kill-preview samples, else the start and end snapshots; NVML for the GPU).

The event packets are built column-wise with numpy (a packet is a fixed
sequence of tags and varints), so the cost per event is a few array
operations, not a Python loop.
"""
from __future__ import annotations

from typing import BinaryIO, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd

from ..recording import Recording

# --- field numbers (TracePacket, TrackEvent, ...) -------------------------
TRACE_PACKET = 1                # Trace.packet
P_TIMESTAMP, P_SEQ_ID, P_TRACK_EVENT, P_INTERNED, P_SEQ_FLAGS, P_TRACK_DESCRIPTOR = 8, 10, 11, 12, 13, 60
TE_TYPE, TE_TRACK_UUID, TE_NAME_IID, TE_DEBUG, TE_COUNTER_VALUE, TE_DOUBLE_COUNTER = 9, 11, 10, 4, 30, 44
TE_FLOW_IDS, TE_TERMINATING_FLOW_IDS, TE_CATEGORY_IIDS = 47, 48, 3
TD_UUID, TD_NAME, TD_PARENT, TD_PROCESS, TD_THREAD, TD_COUNTER = 1, 2, 5, 3, 4, 8
PD_PID, PD_NAME = 1, 6
THD_PID, THD_TID, THD_NAME = 1, 2, 5
CD_UNIT, CD_UNIT_NAME = 3, 6
ID_EVENT_CATEGORIES, ID_EVENT_NAMES, ID_DEBUG_NAMES = 1, 2, 3
IID, IID_NAME = 1, 2
DA_NAME_IID, DA_INT = 1, 4
TYPE_SLICE_BEGIN, TYPE_SLICE_END, TYPE_INSTANT, TYPE_COUNTER = 1, 2, 3, 4
SEQ_INCREMENTAL_STATE_CLEARED, SEQ_NEEDS_INCREMENTAL_STATE = 1, 2
UNIT_COUNT, UNIT_SIZE_BYTES = 2, 3
SEQUENCE = 1

# --- track uuids: a kind in the top bits, the id below -------------------
_PROC, _THREAD, _LANE, _DEVICE, _COUNTER = 1, 2, 3, 4, 5
MAX_LANES = 256
CHUNK = 1 << 15          # events encoded at once


def _uuid(kind: int, ident: int, sub: int = 0) -> int:
    return (kind << 56) | (ident << 8) | sub


# --- scalar protobuf encoding (descriptors, interned data, counters) -----
def varint(value: int) -> bytes:
    value &= (1 << 64) - 1          # int64 negatives as two's complement, as protobuf does
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return varint((field << 3) | wire)


def f_int(field: int, value: int) -> bytes:
    return _key(field, 0) + varint(int(value))


def f_bytes(field: int, data: bytes) -> bytes:
    return _key(field, 2) + varint(len(data)) + data


def f_str(field: int, text: str) -> bytes:
    return f_bytes(field, text.encode("utf-8", "backslashreplace"))


def f_double(field: int, value: float) -> bytes:
    return _key(field, 1) + np.float64(value).tobytes()


def packet(body: bytes) -> bytes:
    return f_bytes(TRACE_PACKET, body)


# --- vectorised varints ---------------------------------------------------
def _varint_columns(values: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(bytes as an (n, 10) uint8 matrix, length of each) for uint64 values."""
    v = values.astype(np.uint64, copy=True)
    n = len(v)
    out = np.zeros((n, 10), dtype=np.uint8)
    lens = np.ones(n, dtype=np.int64)
    width = 10
    for i in range(10):
        low = (v & np.uint64(0x7F)).astype(np.uint8)
        v >>= np.uint64(7)
        more = v != 0
        out[:, i] = low | (more.astype(np.uint8) << 7)
        lens += more
        if not more.any():
            width = i + 1
            break
    return out[:, :width], lens


class _Columns:
    """Rows of bytes assembled segment by segment, each segment a matrix with a
    per-row length; ``bytes()`` joins every row's segments in row order."""

    def __init__(self, n: int):
        self.n = n
        self.parts: List[Tuple[np.ndarray, np.ndarray]] = []

    def const(self, data: bytes, where: Optional[np.ndarray] = None) -> None:
        m = np.broadcast_to(np.frombuffer(data, dtype=np.uint8)[None, :], (self.n, len(data)))
        lens = np.full(self.n, len(data), dtype=np.int64)
        if where is not None:
            lens = np.where(where, lens, 0)
        self.parts.append((m, lens))

    def varint(self, values: np.ndarray, where: Optional[np.ndarray] = None) -> None:
        m, lens = _varint_columns(values)
        if where is not None:
            lens = np.where(where, lens, 0)
        self.parts.append((m, lens))

    def fixed64(self, values: np.ndarray, where: Optional[np.ndarray] = None) -> None:
        m = values.astype("<u8").view(np.uint8).reshape(self.n, 8)
        lens = np.full(self.n, 8, dtype=np.int64)
        if where is not None:
            lens = np.where(where, lens, 0)
        self.parts.append((m, lens))

    def lengths(self) -> np.ndarray:
        return sum((lens for _, lens in self.parts), np.zeros(self.n, dtype=np.int64))

    def _merged(self) -> List[Tuple[np.ndarray, np.ndarray]]:
        """Runs of segments that every row has whole (constants, fixed-width
        fields, one-byte varints) joined into one matrix: fewer, wider scatters."""
        out: List[Tuple[np.ndarray, np.ndarray]] = []
        run: List[np.ndarray] = []

        def flush() -> None:
            if run:
                m = np.concatenate(run, axis=1) if len(run) > 1 else run[0]
                out.append((m, np.full(self.n, m.shape[1], dtype=np.int64)))
                run.clear()

        for m, lens in self.parts:
            if (lens == m.shape[1]).all():
                run.append(m)
            else:
                flush()
                out.append((m, lens))
        flush()
        return out

    def tobytes(self) -> bytes:
        """Scatter each segment's bytes to their place in one output buffer:
        row r starts at the sum of the lengths before it, segment p at the sum
        of the row's earlier segments."""
        self.parts = self._merged()
        total = self.lengths()
        out = np.empty(int(total.sum()), dtype=np.uint8)
        pos = np.zeros(self.n, dtype=np.int64)
        pos[1:] = np.cumsum(total)[:-1]
        for m, lens in self.parts:
            width = m.shape[1]
            if width == 1 or (lens == width).all():
                full = lens == width
                if full.all():
                    idx = pos[:, None] + np.arange(width)[None, :]
                    out[idx.ravel()] = np.ascontiguousarray(m).ravel()
                    pos += width
                    continue
            for j in range(width):
                sel = lens > j
                if not sel.any():
                    break
                out[pos[sel] + j] = m[sel, j]
            pos += lens
        return out.tobytes()


def _one_byte_len(lens: np.ndarray, what: str) -> np.ndarray:
    if len(lens) and lens.max() > 127:
        raise ValueError(f"{what} longer than a one-byte length")
    return lens


def event_packets(ts: np.ndarray, etype: np.ndarray, track: np.ndarray, name_iid: np.ndarray,
                  cat_iid: np.ndarray, ann_iid: np.ndarray, ann_value: np.ndarray, flow_out: np.ndarray,
                  flow_in: np.ndarray) -> bytes:
    """The TrackEvent packets for n events at once (0 in name_iid, cat_iid,
    ann_iid, flow_out, flow_in means absent). Every length fits one byte by
    construction."""
    n = len(ts)
    if n == 0:
        return b""
    # DebugAnnotation { name_iid, int_value }
    ann = _Columns(n)
    has_ann = ann_iid != 0
    ann.const(_key(DA_NAME_IID, 0))
    ann.varint(ann_iid)
    ann.const(_key(DA_INT, 0))
    ann.varint(ann_value.astype(np.int64).view(np.uint64))
    ann_len = _one_byte_len(np.where(has_ann, ann.lengths(), 0), "annotation")
    # TrackEvent
    te = _Columns(n)
    te.const(_key(TE_TYPE, 0))
    te.varint(etype.astype(np.uint64))
    te.const(_key(TE_TRACK_UUID, 0))
    te.varint(track)
    has_cat = cat_iid != 0
    te.const(_key(TE_CATEGORY_IIDS, 0), has_cat)
    te.varint(cat_iid, has_cat)
    has_name = name_iid != 0
    te.const(_key(TE_NAME_IID, 0), has_name)
    te.varint(name_iid, has_name)
    te.const(_key(TE_DEBUG, 2), has_ann)
    te.varint(ann_len.astype(np.uint64), has_ann)
    for m, lens in ann.parts:
        te.parts.append((m, np.where(has_ann, lens, 0)))
    has_out, has_in = flow_out != 0, flow_in != 0
    te.const(_key(TE_FLOW_IDS, 1), has_out)
    te.fixed64(flow_out, has_out)
    te.const(_key(TE_TERMINATING_FLOW_IDS, 1), has_in)
    te.fixed64(flow_in, has_in)
    te_len = _one_byte_len(te.lengths(), "track event")
    # TracePacket
    body = _Columns(n)
    body.const(_key(P_TIMESTAMP, 0))
    body.varint(ts)
    body.const(_key(P_TRACK_EVENT, 2))
    body.varint(te_len.astype(np.uint64))
    body.parts.extend(te.parts)
    body.const(f_int(P_SEQ_ID, SEQUENCE) + f_int(P_SEQ_FLAGS, SEQ_NEEDS_INCREMENTAL_STATE))
    body_len = _one_byte_len(body.lengths(), "packet")
    pkt = _Columns(n)
    pkt.const(_key(TRACE_PACKET, 2))
    pkt.varint(body_len.astype(np.uint64))
    pkt.parts.extend(body.parts)
    return pkt.tobytes()


# --- from the timeline ----------------------------------------------------
SLICE_KINDS = ("syscall", "futex_wait", "futex_wake", "block_io")
ANNOTATION = {"syscall": "ret", "futex_wait": "uaddr", "futex_wake": "uaddr", "block_io": "bytes",
              "signal_generate": "target_tid", "signal_deliver": "sig", "fork": "child_pid",
              "exec": "old_pid", "exit": "exit_code"}


NAME_COLUMNS = ("kind", "syscall", "futex_op", "signame", "filename", "rwbs", "is_thread", "vfork", "group_dead")


def _name_of(row: Dict[str, object]) -> str:
    """The interned event name: low-cardinality text (the numbers go into the
    event's argument)."""
    kind = str(row["kind"])
    if kind == "syscall":
        return str(row.get("syscall"))
    if kind in ("futex_wait", "futex_wake"):
        return f"futex {row.get('futex_op')}"
    if kind == "fork":
        return "new thread" if row.get("is_thread") is True else ("vfork" if row.get("vfork") is True else "fork")
    if kind == "exec":
        return f"exec {row.get('filename')}"
    if kind == "exit":
        return "process exit" if row.get("group_dead") is True else "thread exit"
    if kind == "signal_generate":
        return f"send {row.get('signame')}"
    if kind == "signal_deliver":
        return f"deliver {row.get('signame')}"
    if kind == "block_io":
        return str(row.get("rwbs"))
    return kind


def _name_iids(table: Tuple[List[str], np.ndarray], iids: Dict[str, int], n: int) -> np.ndarray:
    """The interned name id of every row, from ``_name_table``."""
    text, inverse = table
    return np.array([iids[t] for t in text], dtype=np.uint64)[inverse] if len(text) else \
        np.zeros(n, dtype=np.uint64)


def _names(ev: pd.DataFrame) -> pd.Series:
    """The name of every row."""
    text, inverse = _name_table(ev)
    return pd.Series(np.asarray(text, dtype=object)[inverse], index=ev.index)


def _name_table(ev: pd.DataFrame) -> Tuple[List[str], np.ndarray]:
    """(the distinct names, each row's index into them), computed once per
    distinct combination of the columns a name depends on (a few hundred in a
    million events)."""
    cols = [c for c in NAME_COLUMNS if c in ev]
    codes = np.zeros(len(ev), dtype=np.int64)
    uniques = {}
    for c in cols:
        code, uniq = pd.factorize(ev[c], use_na_sentinel=True)
        uniques[c] = uniq
        codes = codes * (len(uniq) + 1) + (code + 1)
    combo, first = np.unique(codes, return_index=True)
    inverse = np.searchsorted(combo, codes)
    text = []
    for row in first:
        r = {}
        for c in cols:
            v = ev[c].iat[int(row)]
            r[c] = None if v is pd.NA or (isinstance(v, float) and np.isnan(v)) else v
        text.append(_name_of(r))
    return text, inverse


def _kinds(ev: pd.DataFrame) -> np.ndarray:
    """The kind of every row as an object array of interned strings (from the
    category's codes: no per-row string conversion)."""
    cat = pd.Categorical(ev["kind"])
    return np.asarray(cat.categories, dtype=object).take(cat.codes) if len(cat.categories) else \
        np.full(len(ev), "", dtype=object)


def _int_col(ev: pd.DataFrame, col: str) -> np.ndarray:
    if col not in ev:
        return np.zeros(len(ev), dtype=np.int64)
    return pd.to_numeric(ev[col], errors="coerce").fillna(0).astype(np.int64).to_numpy()


def _group_cummax_before(group: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For rows sorted by group: the maximum of ``values`` over the earlier rows
    of the same group (int64 min for a group's first row). Integers throughout:
    nanoseconds since 1970 do not fit a float's 53 bits."""
    low = np.iinfo(np.int64).min
    series = pd.Series(values.astype(np.int64))
    running = series.groupby(group, sort=False).cummax()
    return running.groupby(group, sort=False).shift(1, fill_value=low).to_numpy(dtype=np.int64)


def _lanes(track: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """A lane per slice so that slices on one (track, lane) never overlap:
    pass after pass, a slice that starts before an earlier one on its track
    ended moves down a lane."""
    n = len(track)
    lane = np.zeros(n, dtype=np.int64)
    todo = np.arange(n)
    for level in range(MAX_LANES):
        if len(todo) == 0:
            break
        order = todo[np.lexsort((end[todo], start[todo], track[todo]))]
        t, s, e = track[order], start[order], end[order]
        # the latest end among the earlier slices of the same track (int64: ns since 1970 do not fit a float)
        prev_end = _group_cummax_before(t, e)
        clash = (prev_end > s) if level < MAX_LANES - 1 else np.zeros(len(order), dtype=bool)
        lane[order[~clash]] = level
        todo = order[clash]
    return lane


def _match_flows(ev: pd.DataFrame, is_wait_end_woken: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(flow id leaving each row, flow id ending at each row), 0 = none:
    futex wake -> the wait it ended, signal sent -> delivered, fork -> child.
    A row starts at most one flow and ends at most one (the first match wins)."""
    n = len(ev)
    kind = _kinds(ev)
    t = ev["time_ns"].to_numpy(dtype=np.int64)
    end = t + ev["dur_ns"].to_numpy(dtype=np.int64)
    tid = ev["tid"].to_numpy(dtype=np.int64)
    src_all, dst_all = [], []
    # futex: each woken wait links from the latest wake on its word before it ended
    uaddr = _int_col(ev, "uaddr")
    wakes = np.flatnonzero(kind == "futex_wake")
    waits = np.flatnonzero(is_wait_end_woken)
    if len(wakes) and len(waits):
        wframe = pd.DataFrame({"u": uaddr[waits], "end": end[waits], "row": waits}).sort_values("end")
        kframe = pd.DataFrame({"u": uaddr[wakes], "t": t[wakes], "row": wakes}).sort_values("t")
        pairs = pd.merge_asof(wframe, kframe, left_on="end", right_on="t", by="u", direction="backward",
                              tolerance=5_000_000, suffixes=("_wait", "_wake")).dropna(subset=["row_wake"])
        src_all.append(pairs["row_wake"].to_numpy(dtype=np.int64))
        dst_all.append(pairs["row_wait"].to_numpy(dtype=np.int64))
    # signals: sent -> the next delivery of that signal to its target thread
    sig = _int_col(ev, "sig")
    target = _int_col(ev, "target_tid")
    gens = np.flatnonzero(kind == "signal_generate")
    dlvs = np.flatnonzero(kind == "signal_deliver")
    if len(gens) and len(dlvs):
        dframe = pd.DataFrame({"key": sig[dlvs] * (1 << 32) + tid[dlvs], "t": t[dlvs], "row": dlvs}).sort_values("t")
        gframe = pd.DataFrame({"key": sig[gens] * (1 << 32) + target[gens], "t": t[gens], "row": gens}).sort_values("t")
        pairs = pd.merge_asof(gframe, dframe, on="t", by="key", direction="forward",
                              suffixes=("_gen", "_dlv")).dropna(subset=["row_dlv"])
        src_all.append(pairs["row_gen"].to_numpy(dtype=np.int64))
        dst_all.append(pairs["row_dlv"].to_numpy(dtype=np.int64))
    # fork -> the child's first event (rows are in time order)
    forks = np.flatnonzero(kind == "fork")
    if len(forks):
        child = _int_col(ev, "child_pid")[forks]
        tids, first = np.unique(tid, return_index=True)
        at = np.clip(np.searchsorted(tids, child), 0, len(tids) - 1)
        found = (tids[at] == child) & (first[at] > forks)
        src_all.append(forks[found])
        dst_all.append(first[at][found])
    out = np.zeros(n, dtype=np.uint64)
    into = np.zeros(n, dtype=np.uint64)
    if src_all:
        src, dst = np.concatenate(src_all), np.concatenate(dst_all)
        keep = np.zeros(len(src), dtype=bool)
        keep[np.unique(src, return_index=True)[1]] = True        # one flow out per row
        dst_first = np.zeros(len(src), dtype=bool)
        dst_first[np.unique(dst, return_index=True)[1]] = True   # one flow in per row
        keep &= dst_first
        ids = np.arange(1, keep.sum() + 1, dtype=np.uint64)
        out[src[keep]] = ids
        into[dst[keep]] = ids
    return out, into


def _timeline_packets(ev: pd.DataFrame, names: Tuple[List[str], np.ndarray], iids: Dict[str, int],
                      arg_iids: Dict[str, int], categories: Dict[str, int],
                      dev_index: Dict[str, int]) -> Tuple[bytes, set, set]:
    """Every event of the timeline (in time order) as TrackEvent packets;
    returns (bytes, (tid, lane) thread tracks used, (device, lane) tracks used)."""
    n = len(ev)
    kind = _kinds(ev)
    t = ev["time_ns"].to_numpy(dtype=np.int64)
    dur = ev["dur_ns"].to_numpy(dtype=np.int64)
    tid = ev["tid"].to_numpy(dtype=np.int64)
    is_slice = np.isin(kind, SLICE_KINDS) & (dur > 0) | np.isin(kind, ("syscall", "futex_wait"))
    is_block = kind == "block_io"
    # tracks: the thread's, or the device's for block requests
    dev_id = np.zeros(n, dtype=np.int64)
    if is_block.any():
        code, uniq = pd.factorize(ev["dev"][is_block].astype("string").fillna("?"))
        for d in uniq:
            dev_index.setdefault(str(d), len(dev_index))
        dev_id[is_block] = np.array([dev_index[str(d)] for d in uniq], dtype=np.int64)[code]
    base = np.where(is_block, (np.int64(_DEVICE) << 56) | (dev_id << 8), (np.int64(_THREAD) << 56) | (tid << 8))
    lane = np.zeros(n, dtype=np.int64)
    sl = np.flatnonzero(is_slice)
    if len(sl):
        lane[sl] = _lanes(base[sl], t[sl], t[sl] + np.maximum(dur[sl], 0))
    track = np.where(lane > 0, base | lane, base).astype(np.uint64)
    # a lane below a thread is its own track kind (the thread track keeps lane 0)
    track = np.where((lane > 0) & ~is_block, (track & ~np.uint64(0xFF << 56)) | np.uint64(_LANE << 56), track)
    name_iid = _name_iids(names, iids, n)
    ann_iid = np.zeros(n, dtype=np.uint64)
    ann_value = np.zeros(n, dtype=np.int64)
    for k, col in ANNOTATION.items():
        rows = kind == k
        if rows.any():
            ann_iid[rows] = arg_iids[col]
            ann_value[rows] = _int_col(ev, col)[rows]
    cat_iid = np.zeros(n, dtype=np.uint64)
    for k, iid in categories.items():
        cat_iid[kind == k] = iid
    woken = np.isin(kind, ("futex_wait",)) & (_int_col(ev, "ret") == 0)
    flow_out, flow_in = _match_flows(ev, woken)
    # begin (or instant) packets, then the end packets of the slices
    etype = np.where(is_slice, TYPE_SLICE_BEGIN, TYPE_INSTANT).astype(np.uint64)
    zeros = np.zeros(len(sl), dtype=np.uint64)
    ts_all = np.concatenate([t, t[sl] + dur[sl]]).astype(np.uint64)
    # At one instant: first the ends of slices that began earlier, then begins
    # and instants, then the ends of zero-length slices (so slices nest on a track).
    phase = np.concatenate([np.ones(n, dtype=np.int8), np.where(dur[sl] > 0, 0, 2).astype(np.int8)])
    order = np.lexsort((phase, ts_all))
    cat = lambda a, b: np.concatenate([a, b])[order]  # noqa: E731
    cols = dict(ts=ts_all[order], etype=cat(etype, np.full(len(sl), TYPE_SLICE_END, dtype=np.uint64)),
                track=cat(track, track[sl]), name_iid=cat(name_iid, zeros), cat_iid=cat(cat_iid, zeros),
                ann_iid=cat(ann_iid, zeros), ann_value=cat(ann_value, zeros.astype(np.int64)),
                flow_out=cat(flow_out, zeros), flow_in=cat(flow_in, zeros))
    # In chunks: the per-segment matrices of a chunk stay in the CPU's caches.
    data = b"".join(event_packets(**{k: v[i:i + CHUNK] for k, v in cols.items()})
                    for i in range(0, len(ts_all), CHUNK))
    threads = {tuple(x) for x in np.unique(np.stack([tid[~is_block], lane[~is_block]], axis=1), axis=0).tolist()}
    devices = {tuple(x) for x in np.unique(np.stack([dev_id[is_block], lane[is_block]], axis=1), axis=0).tolist()}
    return data, threads, devices


# --- descriptors, interned data, counters --------------------------------
def _track(uuid: int, *, name: Optional[str] = None, parent: Optional[int] = None, process=None, thread=None,
           counter: Optional[bytes] = None) -> bytes:
    body = f_int(TD_UUID, uuid)
    if name is not None:
        body += f_str(TD_NAME, name)
    if parent is not None:
        body += f_int(TD_PARENT, parent)
    if process is not None:
        body += f_bytes(TD_PROCESS, f_int(PD_PID, process[0]) + f_str(PD_NAME, process[1]))
    if thread is not None:
        body += f_bytes(TD_THREAD, f_int(THD_PID, thread[0]) + f_int(THD_TID, thread[1])
                        + f_str(THD_NAME, thread[2]))
    if counter is not None:
        body += f_bytes(TD_COUNTER, counter)
    return packet(f_bytes(P_TRACK_DESCRIPTOR, body) + f_int(P_SEQ_ID, SEQUENCE))


def _counter_packet(ts: int, track: int, value: float) -> bytes:
    te = f_int(TE_TYPE, TYPE_COUNTER) + f_int(TE_TRACK_UUID, track)
    if float(value).is_integer():
        te += f_int(TE_COUNTER_VALUE, int(value))
    else:
        te += f_double(TE_DOUBLE_COUNTER, float(value))
    return packet(f_int(P_TIMESTAMP, ts) + f_bytes(P_TRACK_EVENT, te) + f_int(P_SEQ_ID, SEQUENCE))


def _counter_tracks(rec: Recording, charts) -> bytes:
    """Counter tracks from analyse.history.usage (the recording's best samples: the
    kill-preview samples, else the snapshots; NVML for the GPU): CPU and RSS
    under each process, GPU memory and utilisation per process too."""
    from ..analyse.history.usage import origin_ns

    t0 = origin_ns(rec)
    out = bytearray()
    for k, chart in enumerate(charts):
        for series in chart.series:
            if not series.points:
                continue
            uuid = _uuid(_COUNTER, series.pid, k)
            unit = f_int(CD_UNIT, UNIT_SIZE_BYTES) if chart.unit == "bytes" else f_str(CD_UNIT_NAME, chart.unit)
            out += _track(uuid, name=chart.title, parent=_uuid(_PROC, series.pid), counter=unit)
            for t_s, value in series.points:
                out += _counter_packet(t0 + int(t_s * 1e9), uuid, value)
    return bytes(out)


def _process_names(rec: Recording, ev: pd.DataFrame) -> Dict[int, str]:
    names: Dict[int, str] = {}
    if len(ev):
        for pid, comm in ev.groupby("pid", observed=True)["comm"].last().items():
            names[int(pid)] = str(comm)
    for snap in rec.snapshots.values():
        for pid, p in (snap.processes.items() if snap is not None else ()):
            names[int(pid)] = p.name or names.get(int(pid), "?")
    return names


def encode(rec: Recording) -> bytes:
    """The whole .pftrace document of a recording."""
    from ..text import clean

    ev = rec.events if rec.events is not None else pd.DataFrame(columns=["time_ns", "dur_ns", "kind", "pid", "tid"])
    if not ev["time_ns"].is_monotonic_increasing:
        ev = ev.sort_values("time_ns", kind="stable")
    ev = ev.reset_index(drop=True)
    table = _name_table(ev) if len(ev) else ([], np.zeros(0, dtype=np.int64))
    iids = {name: i + 1 for i, name in enumerate(dict.fromkeys(table[0]))}              # event names
    arg_iids = {name: i + 1 for i, name in enumerate(dict.fromkeys(ANNOTATION.values()))}  # argument names
    categories = {k: i + 1 for i, k in enumerate(ANNOTATION)}                             # the event kinds
    dev_index: Dict[str, int] = {}
    events, threads, devices = _timeline_packets(ev, table, iids, arg_iids, categories, dev_index) \
        if len(ev) else (b"", set(), set())
    out = bytearray()
    # interned names, first packet of the sequence: it clears the incremental state
    interned = b"".join(f_bytes(ID_EVENT_NAMES, f_int(IID, i) + f_str(IID_NAME, clean(n))) for n, i in iids.items())
    interned += b"".join(f_bytes(ID_DEBUG_NAMES, f_int(IID, i) + f_str(IID_NAME, n)) for n, i in arg_iids.items())
    interned += b"".join(f_bytes(ID_EVENT_CATEGORIES, f_int(IID, i) + f_str(IID_NAME, k))
                         for k, i in categories.items())
    out += packet(f_bytes(P_INTERNED, interned) + f_int(P_SEQ_ID, SEQUENCE)
                  + f_int(P_SEQ_FLAGS, SEQ_INCREMENTAL_STATE_CLEARED))
    pnames = _process_names(rec, ev)
    thread_pid = dict(zip(ev["tid"].astype(np.int64), ev["pid"].astype(np.int64))) if len(ev) else {}
    thread_name = ev.groupby("tid", observed=True)["comm"].last().to_dict() if len(ev) else {}
    from ..analyse.history.usage import usage_charts

    charts = usage_charts(rec)
    pids = sorted(set(pnames) | {int(p) for p in thread_pid.values()}
                  | {s.pid for c in charts for s in c.series if s.points})
    for pid in pids:
        out += _track(_uuid(_PROC, pid), process=(pid, clean(f"{pnames.get(pid, '?')} ({pid})")))
    for tid, lane in sorted(threads):
        pid = int(thread_pid.get(tid, tid))
        if lane == 0:
            out += _track(_uuid(_THREAD, tid), thread=(pid, tid, clean(str(thread_name.get(tid, "?")))))
        else:
            out += _track(_uuid(_LANE, tid, lane), name=f"overlapping #{lane}", parent=_uuid(_THREAD, tid))
    if devices:
        block_proc = _uuid(_DEVICE, 0xFFFFFF, 0xFF)
        out += _track(block_proc, name="block I/O")
        for dev, idx in dev_index.items():
            for d, lane in sorted(devices):
                if d == idx:
                    out += _track(_uuid(_DEVICE, idx, lane), parent=block_proc,
                                  name=clean(f"device {dev}" + (f" #{lane}" if lane else "")))
    counters = _counter_tracks(rec, charts)
    out += counters
    out += events
    return bytes(out)


def write(rec: Recording, out: BinaryIO) -> None:
    """Write to the binary file object ``out`` (the atomic writer's descriptor)."""
    out.write(encode(rec))
