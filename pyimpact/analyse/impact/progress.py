"""The job's progress from its own output: step, rate, epoch N of M, ETA, warm-up.

Why from the output: a training job says where it is in the files it
appends to (its log, its stdout redirected to a file): tqdm bars
(``45/100 [00:12<00:15, 3.60it/s]``, also Lightning's and the HF Trainer's),
the HF Trainer's log dicts (``{'loss': .., 'epoch': 0.37}``), and plain
lines (``step 120``, ``Step [120/1000]``, ``epoch 3/40``, ``iter=120``),
often with a timestamp at the start of the line.  The collector stores the
text appended between samples with the sample's time, so the step counter's
advance over the window is measured, and timestamped lines give the rate
and the time of the first step (what a restart costs again) even when the
window is short.

Pure: text and times in, figures with their basis out.
"""
from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ...jsondoc import json_field
from ...recording import LogTail

_TQDM = re.compile(r"(?:(?P<desc>[^\r\n|]*?):?\s*(?P<pct>\d{1,3})%\|[^|\r\n]*\|\s*)?(?P<n>\d+)(?:/(?P<total>\d+))?"
                   r"\s*(?:it|[A-Za-z]+)?\s*\[(?P<elapsed>(?:\d+:)?\d+:\d+)(?:<(?P<remaining>(?:\d+:)?\d+:\d+|\?))?"
                   r",\s*(?P<rate>[\d.]+|\?)\s*(?P<unit>[A-Za-z]+/s|s/[A-Za-z]+)")
_STEP = re.compile(r"(?<![A-Za-z])(?:global[_ ]?step|step|iteration|iter|batch)s?\s*(?:[:=#]\s*|\s+|\[)"
                   r"(?P<n>\d+)(?:\s*(?:/|of)\s*(?P<total>\d+))?", re.IGNORECASE)
_EPOCH = re.compile(r"(?<![A-Za-z])epoch\s*(?:[:=#]\s*|\s+|\[)?(?P<n>\d+(?:\.\d+)?)(?:\s*(?:/|of)\s*(?P<total>\d+))?",
                    re.IGNORECASE)
_HF_EPOCH = re.compile(r"['\"]epoch['\"]\s*:\s*['\"]?(?P<n>\d+(?:\.\d+)?)")
_SAVE = re.compile(r"\bsav(?:e|ed|ing)\b.*\b(?:checkpoints?|ckpt|model|weights|state)\b"
                   r"|\bcheckpoint\b.*\b(?:saved|written)\b", re.IGNORECASE)
# file names and paths in a line (run7_epoch3/ckpt-760.pt, model_epoch7.pt), not counters (epoch 7/50)
_PATHS = re.compile(r"\S*(?:[^\s\d]/|/[^\s\d])\S*|\S+\.(?:pt|pth|ckpt|bin|safetensors|h5|npz|pkl|keras)\b\S*",
                    re.IGNORECASE)
_TS_EPOCH = re.compile(r"^\[?(?P<t>1\d{9}(?:\.\d+)?)\b")
_TS_ISO = re.compile(r"^\[?(?P<d>\d{4}-\d{2}-\d{2})[ T](?P<h>\d{2}:\d{2}:\d{2})(?P<f>[.,]\d+)?"
                     r"(?P<z>Z|[+-]\d{2}:?\d{2})?")


@dataclass
class Reading:
    """One progress counter read from a log line."""
    t_ns: Optional[int]         # when it was seen (sample time), the line's own timestamp, or None
                                # (an older line of the log's tail: written before the first sample)
    stamped: bool               # t_ns is the line's own timestamp
    step: Optional[int] = None
    total: Optional[int] = None
    epoch: Optional[float] = None
    epochs: Optional[int] = None
    rate: Optional[float] = None          # steps per second, as the line reports it
    elapsed_s: Optional[float] = None     # tqdm's elapsed counter
    remaining_s: Optional[float] = None
    fmt: str = ""
    desc: str = ""
    line: str = ""
    save: bool = False                    # the line says a checkpoint was (being) saved


def _clock(text: str) -> Optional[float]:
    if not text or text == "?":
        return None
    parts = [int(x) for x in text.split(":")]
    s = 0
    for p in parts:
        s = s * 60 + p
    return float(s)


def line_time(line: str, utc_offset_s: int) -> Optional[int]:
    """ns of a timestamp at the start of a line (epoch seconds or ISO date-time)."""
    m = _TS_EPOCH.match(line)
    if m:
        return int(float(m.group("t")) * 1e9)
    m = _TS_ISO.match(line)
    if not m:
        return None
    try:
        t = _dt.datetime.fromisoformat(f"{m.group('d')}T{m.group('h')}")
    except ValueError:
        return None
    frac = float(m.group("f").replace(",", ".")) if m.group("f") else 0.0
    z = m.group("z")
    if z:
        off = 0 if z == "Z" else (1 if z[0] == "+" else -1) * (int(z[1:3]) * 3600 + int(z[-2:]) * 60)
    else:
        off = utc_offset_s          # a naive time is the machine's local time
    secs = t.replace(tzinfo=_dt.timezone.utc).timestamp() - off + frac
    return int(secs * 1e9)


def parse_line(line: str) -> Optional[Reading]:
    """The progress counter a line carries, if any (tqdm first: it is the most specific)."""
    r = Reading(t_ns=0, stamped=False, line=line.strip()[-160:])
    m = None
    for m in _TQDM.finditer(line):
        pass
    if m is not None:
        r.fmt = "tqdm"
        r.step = int(m.group("n"))
        r.total = int(m.group("total")) if m.group("total") else None
        r.elapsed_s = _clock(m.group("elapsed"))
        r.remaining_s = _clock(m.group("remaining") or "")
        if m.group("rate") not in (None, "?"):
            v = float(m.group("rate"))
            r.rate = v if m.group("unit").endswith("/s") else (1.0 / v if v > 0 else None)
        r.desc = (m.group("desc") or "").strip()
        e = _EPOCH.search(r.desc)
        if e:
            r.epoch = float(e.group("n"))
            r.epochs = int(e.group("total")) if e.group("total") else None
        return r
    s = None
    for s in _STEP.finditer(line):
        pass
    h = _HF_EPOCH.search(line)
    e = _EPOCH.search(_PATHS.sub(" ", line)) if h is None else None   # not the epoch in a file's name
    r.save = bool(_SAVE.search(line))
    if s is None and h is None and e is None and not r.save:
        return None
    if s is not None:
        r.step = int(s.group("n"))
        r.total = int(s.group("total")) if s.group("total") else None
        r.fmt = "step"
    if h is not None:
        r.epoch, r.fmt = float(h.group("n")), r.fmt or "hf-log"
    elif e is not None:
        r.epoch = float(e.group("n"))
        r.epochs = int(e.group("total")) if e.group("total") else None
        r.fmt = r.fmt or "epoch"
    return r


def readings(text: str, t_ns: int, utc_offset_s: int) -> List[Reading]:
    """Every counter in a chunk of output (tqdm redraws split on \\r)."""
    out = []
    for line in re.split(r"[\r\n]+", text):
        if not line.strip():
            continue
        r = parse_line(line)
        if r is None:
            continue
        ts = line_time(line, utc_offset_s)
        r.t_ns, r.stamped = (ts, True) if ts else (t_ns, False)
        out.append(r)
    return out


@dataclass
class Progress:
    """The job's progress read from its own output (``loss.progress``): step,
    epoch, rate and ETA, each with how it was read."""

    log: Optional[str] = None
    step: Optional[int] = None
    total_steps: Optional[int] = None
    epoch: Optional[float] = None
    epochs: Optional[int] = None
    pct_complete: Optional[float] = None
    step_rate: Optional[float] = None        # steps per second
    step_rate_kind: str = "unavailable"
    step_rate_basis: str = ""
    eta_s: Optional[float] = None
    eta_basis: str = ""
    first_step_ns: Optional[int] = None
    first_step_basis: str = ""
    line: str = ""
    fmt: str = ""
    saves: List[list] = field(default_factory=list)    # [t_ns, step, stamped] of the log's save lines
    step_per_epoch: bool = False             # the counter restarts every epoch ("batch 90/100" of epoch 7/50)
    notes: List[str] = json_field(default_factory=list, skip=True)   # shown by the caller, not in the document


def _stream_readings(logs_by_path: Dict[str, List[Tuple[int, str]]], utc_offset_s: int) -> Dict[str, List[Reading]]:
    """Readings of each log, in order.  The first chunk is the log's tail as
    found: only its last counter is current at that sample's time; the older
    ones have no time unless their line carries one."""
    out: Dict[str, List[Reading]] = {}
    for path, chunks in logs_by_path.items():
        rs: List[Reading] = []
        for i, (t_ns, text) in enumerate(chunks):
            got = readings(text, t_ns, utc_offset_s)
            if i == 0:
                for r in got[:-1]:
                    if not r.stamped:
                        r.t_ns = None
            rs += got
        if rs:
            out[path] = rs
    return out


def log_chunks(samples: List[dict]) -> Dict[str, List[Tuple[int, str]]]:
    """path -> [(time, text appended since the previous sample)].  The time is
    the log's mtime when read (its last append), not later than the sample:
    a job that stopped printing (busy saving) is not credited with fresh output."""
    out: Dict[str, List[Tuple[int, str]]] = {}
    for s in samples:
        for path, raw in (s.get("logs") or {}).items():
            if len(raw) < 3:
                continue
            row = raw if isinstance(raw, LogTail) else LogTail(*raw[:3])
            if row.text:
                t = min(s["t_ns"], int(row.mtime_ns)) if row.mtime_ns else s["t_ns"]
                out.setdefault(path, []).append((t, row.text))
    return out


def job_progress(samples: List[dict], heads: Dict[str, str], root_start_ns: int, as_of_ns: int,
                 utc_offset_s: int = 0) -> Progress:
    """The job's progress from the logs it appends to (the most informative one)."""
    per = _stream_readings(log_chunks(samples), utc_offset_s)
    if not per:
        p = Progress()
        p.notes.append("no step counter in the files the job appends to" if log_chunks(samples)
                       else "the job appends to no log file (its stdout/stderr is not a file)")
        return p

    def score(item):
        rs = item[1]
        steps = [r for r in rs if r.step is not None]
        return (bool(steps), len({r.step for r in steps}), len(rs))
    path, rs = max(per.items(), key=score)
    p = Progress(log=path)
    p.saves = [[r.t_ns, r.step, r.stamped] for r in rs if r.save and r.t_ns is not None]
    stepped = _main_stream([r for r in rs if r.step is not None and not r.save])
    last = (stepped or rs)[-1]
    p.line, p.fmt = last.line, last.fmt
    p.step, p.total_steps = last.step, last.total
    # the epoch of a progress line, before that of a save line ("Saved model_epoch7.pt" names a file)
    ep = next((r for r in reversed(rs) if r.epoch is not None and not r.save), None) \
        or next((r for r in reversed(rs) if r.epoch is not None), None)
    if ep is not None:
        p.epoch, p.epochs = ep.epoch, ep.epochs
    p.step_per_epoch = _per_epoch(stepped, last)
    if p.step_per_epoch and p.step is not None and p.total_steps and p.epoch is not None and p.epochs:
        # "Epoch 7/50 | batch 90/100": 6 epochs done and 90 % of the 7th, not 90 % of the run
        p.pct_complete = round(100.0 * (max(0.0, p.epoch - 1) + p.step / p.total_steps) / p.epochs, 1)
    elif p.step is not None and p.total_steps:
        p.pct_complete = round(100.0 * p.step / p.total_steps, 1)
    elif p.epoch is not None and p.epochs:
        p.pct_complete = round(100.0 * p.epoch / p.epochs, 1)
    _rate(p, stepped, as_of_ns)
    if p.step is not None and p.total_steps and p.step_rate and not p.step_per_epoch:
        p.eta_s = max(0.0, (p.total_steps - p.step) / p.step_rate)
        p.eta_basis = f"estimated: {p.total_steps - p.step} steps left at {p.step_rate:.3g} steps/s"
    elif last.remaining_s is not None:
        p.eta_s, p.eta_basis = last.remaining_s, "as the job reports it (tqdm's remaining time of this bar)"
    _first_step(p, rs, heads.get(path, ""), root_start_ns, as_of_ns, utc_offset_s)
    return p


def _per_epoch(stepped: List[Reading], last: Reading) -> bool:
    """The step counter counts the batches of the current epoch, not of the
    run: it went down while the epoch went up, or its fraction of its total is
    ahead of the epoch's fraction of the epochs ("Epoch 7/50 batch 90/100")."""
    prev = None
    for r in stepped:
        if r.epoch is None or r.step is None:
            continue
        if prev is not None and r.epoch > prev.epoch and r.step < prev.step:
            return True
        prev = r
    if last.step is not None and last.total and last.epoch is not None and last.epochs:
        return last.step / last.total > last.epoch / last.epochs + 0.05
    return False


def _main_stream(stepped: List[Reading]) -> List[Reading]:
    """The readings of the job's main counter: a log may interleave several
    bars (HF's "Writing model shards 1/1", evaluation bars); the main one is
    the stream (format, description, total) with the most distinct steps."""
    groups: Dict[tuple, List[Reading]] = {}
    for r in stepped:
        key = (r.fmt, re.sub(r"\d+", "#", r.desc), r.total if r.fmt == "tqdm" else None)
        groups.setdefault(key, []).append(r)
    if not groups:
        return []
    return max(groups.values(), key=lambda g: (len({r.step for r in g}), max(r.step for r in g), len(g)))


def _rate(p: Progress, stepped: List[Reading], as_of_ns: int) -> None:
    # 1. the counter's advance while watched
    seen = [r for r in stepped if not r.stamped and r.t_ns is not None]
    if p.step_per_epoch and seen:
        seen = [r for r in seen if r.epoch == seen[-1].epoch]     # within the epoch: the counter restarts
    if len(seen) >= 2:
        a = next(r for r in seen if r.step == seen[0].step)
        b = seen[-1]
        # the first sighting of each value, so the span is between two updates
        b_first = next(r for r in seen if r.step == b.step)
        span = (b_first.t_ns - a.t_ns) / 1e9
        if b.step > a.step and span >= 0.5:
            p.step_rate = (b.step - a.step) / span
            p.step_rate_kind = "measured"
            p.step_rate_basis = (f"the step counter in {p.log} went from {a.step} to {b.step} "
                                 f"in {span:.1f} s while watched")
            return
    # 2. the lines' own timestamps
    stamped = [r for r in stepped if r.stamped]
    if len(stamped) >= 2 and stamped[-1].step > stamped[0].step and stamped[-1].t_ns > stamped[0].t_ns:
        a, b = stamped[max(0, len(stamped) - 200)], stamped[-1]
        span = (b.t_ns - a.t_ns) / 1e9
        if span > 0 and b.step > a.step:
            p.step_rate = (b.step - a.step) / span
            p.step_rate_kind = "measured"
            p.step_rate_basis = (f"timestamps of the log lines: step {a.step} to {b.step} in {span:.1f} s "
                                 f"({p.log})")
            return
    # 3. what the bar itself says
    rep = next((r for r in reversed(stepped) if r.rate), None)
    if rep is not None:
        p.step_rate = rep.rate
        p.step_rate_kind = "estimated"
        p.step_rate_basis = f"as the job reports it ({rep.fmt}: {rep.rate:.3g} it/s, its own smoothing)"
        return
    p.step_rate_basis = ("the step counter did not advance while watched: watch longer (--watch 30)"
                         if stepped else "no step counter found")


def _first_step(p: Progress, rs: List[Reading], head: str, root_start_ns: int, as_of_ns: int,
                utc_offset_s: int) -> None:
    """When this process took its first step: from timestamped lines, or from
    tqdm's elapsed counter of a bar covering the whole run."""
    stamped = [r for r in readings(head, 0, utc_offset_s) if r.stamped and r.step is not None]
    stamped += [r for r in rs if r.stamped and r.step is not None]
    mine = [r for r in stamped if r.t_ns >= root_start_ns]
    # the log reaches back to this process's start: its head starts then, or it
    # holds lines of an earlier run before this one's
    covers = _head_covers_start(head, root_start_ns, utc_offset_s) or any(r.t_ns < root_start_ns for r in stamped)
    if mine and covers:
        first = min(mine, key=lambda r: r.t_ns)
        p.first_step_ns = first.t_ns
        p.first_step_basis = (f"measured: the first step line after the process started, by its own "
                              f"timestamp ({p.log})")
        return
    bars = [r for r in rs if r.fmt == "tqdm" and r.elapsed_s is not None and r.step and r.t_ns is not None]
    if bars:
        b = bars[-1]
        epoch_bar = b.epoch is not None and b.epoch > 0
        if not epoch_bar:
            start = b.t_ns - int(b.elapsed_s * 1e9)
            if start >= root_start_ns - 1_000_000_000:
                p.first_step_ns = max(root_start_ns, start)
                p.first_step_basis = ("measured: tqdm's elapsed counter puts the start of the progress bar "
                                      f"{b.elapsed_s:.0f} s before it was read ({p.log}), 1 s resolution")


def _head_covers_start(head: str, root_start_ns: int, utc_offset_s: int) -> bool:
    """The log's head starts at (or before) this process's start: its first
    timestamped line is from before the start or within two minutes of it."""
    for line in head.splitlines()[:20]:
        t = line_time(line, utc_offset_s)
        if t is not None:
            # the log's first line came soon after the start (a log rotated
            # later would misplace the first step)
            return t <= root_start_ns + 120_000_000_000
    return False
