"""The event timeline: its column schema, and decoding raw probe records into it.

One row per event. Every row has the common columns; the per-kind columns are
filled for their kind and null (<NA>) elsewhere.

Common columns
  time_ns      int64     wall-clock ns (UTC epoch) when what is described began
  dur_ns       int64     duration in ns; 0 for instants
  kind         category  one of KINDS below
  pid, tid     int64     process (tgid) and thread that did it
  comm         category  that thread's name

Text the kernel holds as bytes (comm, exec filename) is decoded as UTF-8 with
each undecodable byte written as the text \\xNN (backslashreplace): what a view
shows for it anyway, and valid Unicode, which pandas' string columns and
Parquet require.  It may hold newlines or escapes: views escape them
(pyimpact.render.text.clean).

kind = syscall         a syscall that blocked >= the slow threshold (--slow-ms)
  syscall (name), nr, ret, arg0..arg3
kind = futex_wait      a futex wait (every one by a followed thread)
  syscall, uaddr, futex_op, futex_val, timeout_ns (<NA> = no timeout),
  timeout_absolute, ret (0 woken, -110 timed out, -11 value changed, ...)
kind = futex_wake      a futex wake that woke at least one waiter (wakes that woke
                       nobody are only counted: metadata futex_wakes_woke_nobody)
  syscall, uaddr, futex_op, futex_val (how many it asked to wake), woken, ret
kind = fork            a new thread or process; pid/tid are the parent's
  child_pid, is_thread, vfork, clone_flags
kind = exec            a successful exec; pid/tid are the process after exec
  filename, old_pid
kind = exit            a thread exits; group_dead marks the process's end
  exit_code (<NA> unknown), exit_signal (<NA> none), group_dead
kind = signal_generate a signal sent; pid/tid/comm are the SENDER
  sig, signame, target_tid, sig_group, sig_result, sig_code, ret (errno)
kind = signal_deliver  a signal taken by its target (pid/tid/comm)
  sig, signame, handler ('default', 'ignore', 'handler'), sig_code
kind = block_io        a block request, queue to completion; pid/tid/comm submitted it
  dev ('major:minor'), sector, bytes, rwbs, io_error, device_latency_ns
"""
from __future__ import annotations

import signal as _signal
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from .syscall_table import syscall_name, syscall_number

#: this machine's futex syscall number (202 on x86_64, 98 on arm64)
FUTEX_NR = syscall_number("futex") or -1

# struct pyi_event (pyimpact.event_layout) and the PYI_KIND_* numbers of
# probes/pyimpact.h, field for field (tests/test_event_layout.py compares them without root).
from .event_layout import EVENT_DTYPE  # noqa: E402

KINDS = {1: "syscall", 2: "futex_wait", 3: "futex_wake", 4: "fork", 5: "exec", 6: "exit",
         7: "signal_generate", 8: "signal_deliver", 9: "block_io"}

INT_COLUMNS = ["nr", "ret", "arg0", "arg1", "arg2", "arg3", "uaddr", "futex_val", "timeout_ns", "woken",
               "child_pid", "clone_flags", "old_pid", "exit_code", "exit_signal", "sig", "target_tid",
               "sig_group", "sig_code", "sector", "bytes", "io_error", "device_latency_ns"]
BOOL_COLUMNS = ["timeout_absolute", "is_thread", "vfork", "group_dead"]
STR_COLUMNS = ["syscall", "futex_op", "filename", "signame", "sig_result", "handler", "dev", "rwbs"]
COLUMNS = ["time_ns", "dur_ns", "kind", "pid", "tid", "comm"] + sorted(INT_COLUMNS + BOOL_COLUMNS + STR_COLUMNS)
#: the common columns that are never null (plain int64)
PLAIN_INT_COLUMNS = ["time_ns", "dur_ns", "pid", "tid"]

# The per-kind columns, as documented above (exports write these, and only these, per row).
KIND_FIELDS = {
    "syscall": ["syscall", "nr", "ret", "arg0", "arg1", "arg2", "arg3"],
    "futex_wait": ["syscall", "uaddr", "futex_op", "futex_val", "timeout_ns", "timeout_absolute", "ret"],
    "futex_wake": ["syscall", "uaddr", "futex_op", "futex_val", "woken", "ret"],
    "fork": ["child_pid", "is_thread", "vfork", "clone_flags"],
    "exec": ["filename", "old_pid"],
    "exit": ["exit_code", "exit_signal", "group_dead"],
    "signal_generate": ["sig", "signame", "target_tid", "sig_group", "sig_result", "sig_code", "ret"],
    "signal_deliver": ["sig", "signame", "handler", "sig_code", "ret"],
    "block_io": ["dev", "sector", "bytes", "rwbs", "io_error", "device_latency_ns"],
}

FUTEX_OPS = {0: "WAIT", 1: "WAKE", 2: "FD", 3: "REQUEUE", 4: "CMP_REQUEUE", 5: "WAKE_OP", 6: "LOCK_PI",
             7: "UNLOCK_PI", 8: "TRYLOCK_PI", 9: "WAIT_BITSET", 10: "WAKE_BITSET", 11: "WAIT_REQUEUE_PI",
             12: "CMP_REQUEUE_PI", 13: "LOCK_PI2"}
SIG_RESULTS = {0: "delivered", 1: "ignored", 2: "already_pending", 3: "overflow", 4: "lose_info"}


def futex_op_name(op: int) -> str:
    """FUTEX_WAIT_PRIVATE and friends, as strace prints them."""
    name = "FUTEX_" + FUTEX_OPS.get(op & ~(128 | 256), str(op & ~(128 | 256)))
    if op & 128:
        name += "_PRIVATE"
    if op & 256:
        name += "|FUTEX_CLOCK_REALTIME"
    return name


def signal_name(sig: int) -> str:
    try:
        return _signal.Signals(sig).name
    except ValueError:
        return f"SIG{sig}" if sig < 34 else f"SIGRTMIN+{sig - 34}"


# --------------------------------------------------------------------------
# Decoded columns, before any DataFrame
# --------------------------------------------------------------------------
# Decoding is plain numpy, so that a trace streamed to Parquet (pyimpact.export
# .parquet_stream) never imports pandas (about 75 MB of RSS here); the
# DataFrame is one wrapping step on top (`decode_events`, `columns_to_frame`).
# The same columns feed the end-of-trace totals (pyimpact.analyse.timeline_totals).

@dataclass
class Column:
    """One decoded timeline column.

    ``kind``: "int" (int64, never null), "mint" (int64 with ``valid``),
    "mbool" (bool with ``valid``), "cat" (int32 ``values`` = codes into
    ``labels``, -1 = null), "str" (object array, None = null)."""

    kind: str
    values: np.ndarray
    valid: Optional[np.ndarray] = None
    labels: Optional[List[str]] = None

    def __len__(self) -> int:
        return len(self.values)

    def eq(self, label: str) -> np.ndarray:
        """Rows whose categorical value is ``label``."""
        try:
            code = self.labels.index(label)
        except ValueError:
            return np.zeros(len(self.values), dtype=bool)
        return self.values == code

    def objects(self, rows: np.ndarray) -> list:
        """Python values (None for null) at ``rows`` (a bool mask or indices)."""
        vals = self.values[rows]
        if self.kind == "cat":
            return [self.labels[c] if c >= 0 else None for c in vals.tolist()]
        if self.kind == "str":
            return list(vals)
        out = vals.tolist()
        if self.valid is not None:
            ok = self.valid[rows].tolist()
            out = [v if k else None for v, k in zip(out, ok)]
        return out


#: name -> Column, in COLUMNS order
Columns = Dict[str, Column]


def _masked_int(values, mask) -> Column:
    mask = np.asarray(mask, dtype=bool)
    data = np.zeros(len(mask), dtype=np.int64)
    np.copyto(data, values, casting="unsafe", where=mask)
    return Column("mint", data, mask)


def _masked_bool(values, mask) -> Column:
    mask = np.asarray(mask, dtype=bool)
    data = np.zeros(len(mask), dtype=bool)
    np.copyto(data, values, casting="unsafe", where=mask)
    return Column("mbool", data, mask)


def _sorted_factorize(values: np.ndarray):
    """(codes, uniques) with uniques sorted, as np.unique(return_inverse=True)
    gives them.  With pandas already imported (a whole trace decoded at once),
    O(n) hashing plus a sort of the few distinct values; else np.unique (a
    sort of n values: the batches of a streamed trace are small)."""
    pd = sys.modules.get("pandas")
    if pd is None or len(values) < 65536:
        uniques, codes = np.unique(values, return_inverse=True)
        return codes.reshape(-1), uniques
    codes, uniques = pd.factorize(values, sort=False)
    uniques = np.asarray(uniques)
    order = np.argsort(uniques, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    return rank[codes], uniques[order]


def _dedupe(labels: list):
    """(distinct labels in first-seen order, position of each label among them)."""
    seen: Dict[str, int] = {}
    remap = np.array([seen.setdefault(lbl, len(seen)) for lbl in labels], dtype=np.int32)
    return list(seen), remap


def _categorical(codes_values: np.ndarray, mask: np.ndarray, label) -> Column:
    """Map integer codes to labels through a small lookup, nulls where mask is False."""
    n = len(codes_values)
    codes = np.full(n, -1, dtype=np.int32)
    if not mask.any():
        return Column("cat", codes, labels=[])
    dense = bool(mask.all())
    inverse, uniq = _sorted_factorize(codes_values if dense else codes_values[mask])
    labels, remap = _dedupe([label(v) for v in uniq.tolist()])
    if dense:
        codes = remap[inverse]
    else:
        codes[mask] = remap[inverse]
    return Column("cat", codes, labels=labels)


def _comm_categorical(comm: np.ndarray) -> Column:
    """The 16-byte comm field as a categorical of its decoded names (few
    distinct values), in byte order."""
    n = len(comm)
    if n == 0:
        return Column("cat", np.zeros(0, np.int32), labels=[])
    pd = sys.modules.get("pandas")
    if pd is None or n < 65536:
        raw_names, inverse = np.unique(np.ascontiguousarray(comm), return_inverse=True)
        inverse = inverse.reshape(-1)
    else:   # factorized as two 64-bit halves, exactly, then the few names sorted
        halves = np.ascontiguousarray(comm).view(np.uint64).reshape(n, 2)
        lo_codes, lo_uniq = pd.factorize(halves[:, 0], sort=False)
        hi_codes, hi_uniq = pd.factorize(halves[:, 1], sort=False)
        pair_codes, pair_uniq = pd.factorize(lo_codes.astype(np.int64) * len(hi_uniq) + hi_codes, sort=False)
        pairs = np.asarray(pair_uniq)
        names = np.empty(len(pairs), dtype="S16")
        as_u64 = names.view(np.uint64).reshape(len(pairs), 2)
        as_u64[:, 0] = np.asarray(lo_uniq)[pairs // len(hi_uniq)]
        as_u64[:, 1] = np.asarray(hi_uniq)[pairs % len(hi_uniq)]
        order = np.argsort(names, kind="stable")          # byte order, as np.unique sorts them
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order), dtype=np.int64)
        raw_names, inverse = names[order], rank[pair_codes]
    labels, remap = _dedupe([c.decode("utf-8", "backslashreplace") for c in raw_names.tolist()])
    return Column("cat", remap[inverse], labels=labels)


def decode_columns(raw: bytes, exec_paths: list, clock_offset_ns: int) -> Columns:
    """Raw 88-byte probe records to the timeline's columns (numpy only), in
    time order, in one vectorised pass."""
    arr = np.frombuffer(raw, dtype=EVENT_DTYPE)
    n = len(arr)
    # Sort the raw records once (one 88-byte take) rather than every column
    # afterwards: the ring buffer is in reservation order, nearly but not
    # exactly time order. Exec paths follow their records.
    ts = arr["ts"]
    if n > 1 and bool((ts[1:] < ts[:-1]).any()):
        order = np.argsort(ts, kind="stable")
        arr = arr[order]
        if exec_paths:
            where = np.empty(n, dtype=np.int64)
            where[order] = np.arange(n, dtype=np.int64)
            exec_paths = [(int(where[i]), path) for i, path in exec_paths]
    kind = arr["kind"].astype(np.int64)
    aux = arr["aux"].astype(np.int64)
    ret = arr["ret"].astype(np.int64)
    a = arr["a"].view(np.int64).reshape(n, 4) if n else np.zeros((0, 4), np.int64)
    is_ = {name: kind == code for code, name in KINDS.items()}

    cols: Columns = {
        "time_ns": Column("int", arr["ts"].astype(np.int64) + clock_offset_ns),
        "dur_ns": Column("int", arr["dur"].astype(np.int64)),
        "kind": _categorical(kind, np.ones(n, bool), lambda k: KINDS.get(k, f"kind{k}")),
        "pid": Column("int", arr["tgid"].astype(np.int64)),
        "tid": Column("int", arr["tid"].astype(np.int64)),
    }
    cols["comm"] = _comm_categorical(arr["comm"])

    sc = is_["syscall"]
    fw, fk = is_["futex_wait"], is_["futex_wake"]
    fut = fw | fk
    fork, exe, ext = is_["fork"], is_["exec"], is_["exit"]
    sg, sd = is_["signal_generate"], is_["signal_deliver"]
    sig = sg | sd
    blk = is_["block_io"]

    nr = np.where(sc, aux, 0)
    futex_nr = np.full(n, FUTEX_NR, np.int64)     # futex events name the call futex (any variant)
    cols["nr"] = _masked_int(np.where(sc, aux, futex_nr), sc | fut)
    cols["syscall"] = _categorical(np.where(sc, nr, futex_nr), sc | fut, syscall_name)
    cols["ret"] = _masked_int(ret, sc | fut | sg | sd)
    for i in range(4):
        cols[f"arg{i}"] = _masked_int(a[:, i], sc)

    cols["uaddr"] = _masked_int(a[:, 0], fut)
    cols["futex_op"] = _categorical(aux, fut, futex_op_name)
    cols["futex_val"] = _masked_int(a[:, 1], fut)
    has_timeout = fw & (a[:, 3] != 0)
    cols["timeout_ns"] = _masked_int(a[:, 2], has_timeout)
    cols["timeout_absolute"] = _masked_bool(a[:, 3] == 2, has_timeout)
    cols["woken"] = _masked_int(np.maximum(ret, 0), fk)

    cols["child_pid"] = _masked_int(a[:, 0], fork)
    cols["is_thread"] = _masked_bool(aux != 0, fork)
    cols["vfork"] = _masked_bool(a[:, 2] != 0, fork)
    cols["clone_flags"] = _masked_int(a[:, 1], fork)

    filenames = np.full(n, None, dtype=object)
    for index, path in exec_paths:
        filenames[index] = path
    cols["filename"] = Column("str", filenames)
    cols["old_pid"] = _masked_int(a[:, 0], exe)

    code = a[:, 0]
    cols["exit_code"] = _masked_int(code, ext & (code >= 0))
    cols["exit_signal"] = _masked_int(a[:, 1], ext & (a[:, 1] > 0))
    cols["group_dead"] = _masked_bool(aux != 0, ext)

    cols["sig"] = _masked_int(aux, sig)
    cols["signame"] = _categorical(aux, sig, signal_name)
    cols["target_tid"] = _masked_int(a[:, 0], sg)
    cols["sig_group"] = _masked_int(a[:, 1], sg)
    cols["sig_result"] = _categorical(a[:, 2], sg, lambda r: SIG_RESULTS.get(r, str(r)))
    cols["sig_code"] = _masked_int(np.where(sg, a[:, 3], a[:, 2]), sig)
    cols["handler"] = _categorical(a[:, 0], sd, lambda h: {0: "default", 1: "ignore"}.get(h, "handler"))

    cols["dev"] = _categorical(a[:, 0], blk, lambda d: f"{d >> 20}:{d & 0xFFFFF}")
    cols["sector"] = _masked_int(a[:, 1], blk)
    cols["bytes"] = _masked_int(a[:, 2], blk)
    cols["rwbs"] = _categorical(a[:, 3], blk,
                                lambda r: int(r).to_bytes(8, "little", signed=True).split(b"\0", 1)[0].decode("ascii", "replace"))
    cols["io_error"] = _masked_int(aux, blk)
    cols["device_latency_ns"] = _masked_int(ret, blk & (ret >= 0))
    return {c: cols[c] for c in COLUMNS}


def columns_to_frame(cols: Columns):
    """The timeline DataFrame over decoded columns (no copy of the data)."""
    import pandas as pd

    out = {}
    for name in COLUMNS:
        c = cols[name]
        if c.kind == "int":
            out[name] = c.values
        elif c.kind == "mint":
            out[name] = pd.arrays.IntegerArray(c.values, ~c.valid)
        elif c.kind == "mbool":
            out[name] = pd.arrays.BooleanArray(c.values, ~c.valid)
        elif c.kind == "cat":
            out[name] = pd.Categorical.from_codes(c.values, categories=pd.Index(c.labels, dtype=object))
        else:
            out[name] = pd.array(c.values, dtype=object)
    # Every column is a fresh array: no second copy (a DataFrame built from a
    # dict copies by default, a full pass over a large trace).
    return pd.DataFrame(out, columns=COLUMNS, copy=False)


def frame_to_columns(df, names=None) -> Columns:
    """Decoded columns over a timeline DataFrame (``names``: only these), so
    code written for columns (the end-of-trace totals) runs on any Recording."""
    import pandas as pd

    out: Columns = {}
    for name in names or COLUMNS:
        if name not in df.columns:
            n = len(df)
            if name in PLAIN_INT_COLUMNS:
                out[name] = Column("int", np.zeros(n, np.int64))
            elif name in INT_COLUMNS or name in BOOL_COLUMNS:
                dt = bool if name in BOOL_COLUMNS else np.int64
                out[name] = Column("mbool" if name in BOOL_COLUMNS else "mint", np.zeros(n, dt), np.zeros(n, bool))
            elif name == "filename":
                out[name] = Column("str", np.full(n, None, dtype=object))
            else:
                out[name] = Column("cat", np.full(n, -1, np.int32), labels=[])
            continue
        s = df[name]
        if isinstance(s.dtype, pd.CategoricalDtype):
            labels = [str(c) for c in s.cat.categories]
            labels, remap = _dedupe(labels)
            codes = s.cat.codes.to_numpy().astype(np.int64)
            mapped = np.where(codes >= 0, remap[np.maximum(codes, 0)] if len(remap) else -1, -1)
            out[name] = Column("cat", mapped.astype(np.int32), labels=labels)
        elif name in PLAIN_INT_COLUMNS:
            out[name] = Column("int", s.to_numpy(dtype=np.int64, na_value=0))
        elif name in INT_COLUMNS or name in BOOL_COLUMNS:
            valid = s.notna().to_numpy()
            if name in BOOL_COLUMNS:
                vals = s.fillna(False).to_numpy(dtype=bool)
                out[name] = Column("mbool", vals, valid)
            else:
                vals = s.to_numpy(dtype=np.int64, na_value=0)
                out[name] = Column("mint", vals, valid)
        elif name == "filename":
            out[name] = Column("str", np.array([None if pd.isna(v) else str(v) for v in s], dtype=object))
        else:   # a text column that is not categorical (a foreign frame)
            vals = [None if pd.isna(v) else str(v) for v in s]
            labels, remap = _dedupe(sorted({v for v in vals if v is not None}))
            index = {lbl: i for i, lbl in enumerate(labels)}
            out[name] = Column("cat", np.array([index[v] if v is not None else -1 for v in vals], np.int32),
                               labels=labels)
    return out


def empty_timeline():
    """A timeline with no rows and the full schema."""
    return decode_events(b"", [], 0)


def decode_events(raw: bytes, exec_paths: list, clock_offset_ns: int):
    """Raw 88-byte probe records to the timeline DataFrame, in one vectorised pass."""
    return columns_to_frame(decode_columns(raw, exec_paths, clock_offset_ns))


CATEGORY_COLUMNS = ["kind", "comm"] + [c for c in STR_COLUMNS if c != "filename"]


def coerce_timeline(df):
    """Give a timeline read from CSV or JSON the schema's columns and dtypes."""
    import pandas as pd

    out = {}
    n = len(df)
    for col in COLUMNS:
        values = df[col] if col in df.columns else pd.Series([None] * n, dtype=object)
        if col in ("time_ns", "dur_ns", "pid", "tid"):
            out[col] = pd.to_numeric(values).fillna(0).astype(np.int64).to_numpy()
        elif col in INT_COLUMNS:
            out[col] = pd.array(pd.to_numeric(values), dtype="Int64")
        elif col in BOOL_COLUMNS:
            out[col] = pd.array([None if pd.isna(v) else (str(v).lower() in ("true", "1")) for v in values],
                                dtype="boolean")
        elif col in CATEGORY_COLUMNS:
            out[col] = pd.Categorical([None if pd.isna(v) else str(v) for v in values])
        else:
            out[col] = pd.array([None if pd.isna(v) else str(v) for v in values], dtype=object)
    return pd.DataFrame(out, columns=COLUMNS).reset_index(drop=True)
