"""Why is this process stuck: from the wait-for graph to a verdict.

Pure: ``diagnose(rec, pid)`` reads a Recording (live or loaded from a file)
and returns a ``Diagnosis``; nothing here touches the system or the clock.

The verdict class comes from a fixed vocabulary (``CLASSES``), used by
``--json``, the tests and the docs, and so does the root-cause kind
(``KINDS``).  The order of the checks is the order of certainty:

1. the process itself is a zombie, or stopped;
2. a deadlock: a set of threads that wait only on each other (a greatest
   fixed point over the graph, see ``deadlocked``), which no one outside the
   set can release;
3. a thread on CPU: ``progressing`` when syscalls or I/O were seen, ``busy``
   when not;
4. a thread waiting without a timeout along a chain that ends elsewhere, or
   at something that will not come by itself: ``blocked``;
5. timed waits and periodic wake-ups: ``idle`` (not hung).

Every conclusion carries the observations it came from (``evidence``).
"""
from __future__ import annotations

import signal as _signal
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set, Tuple

import pandas as pd

from ...errors import NotInRecording
from ...recording import Recording
from .chains import ChainLink
from .rules import Engine
from .verdict import CLASSES, HEALTHY, HUNG, KINDS, RootCause
from .waitgraph import build
from .waitmodel import TIMED, STOPPED, WAITING, ProcessInfo, ThreadWait, WaitGraph

SCHEMA = "pyimpact.diagnose/1"

STOP_SIGNALS = {"SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU"}

__all__ = ["CLASSES", "KINDS", "HUNG", "HEALTHY", "RootCause", "ChainLink", "Diagnosis", "diagnose",
           "diagnose_many"]


@dataclass
class Diagnosis:
    pid: int
    name: str
    cmdline: List[str]
    verdict: str
    summary: str
    root_cause: RootCause
    confidence: str
    threads: List[ThreadWait]
    chain: List[ChainLink]
    cycle: List[ChainLink] = field(default_factory=list)
    evidence: List[str] = field(default_factory=list)
    advice: List[str] = field(default_factory=list)
    unavailable: List[str] = field(default_factory=list)
    lost_events: int = 0
    window_s: Optional[float] = None
    bpf: bool = False
    sigterm: str = ""
    process: Optional[ProcessInfo] = None
    gpu: List[Dict[str, Any]] = field(default_factory=list)
    graph: Optional[WaitGraph] = None
    rule: str = ""

    @property
    def hung(self) -> bool:
        return self.verdict in HUNG

    def to_json(self) -> Dict[str, Any]:
        """The stable ``--json`` document (schema ``pyimpact.diagnose/1``)."""
        return {
            "schema": SCHEMA,
            "pid": self.pid,
            "name": self.name,
            "cmdline": list(self.cmdline),
            "verdict": {"class": self.verdict, "summary": self.summary,
                        "root_cause": self.root_cause.to_dict(), "confidence": self.confidence,
                        "hung": self.hung},
            "threads": [thread_json(t) for t in self.threads],
            "chain": [c.to_dict() for c in self.chain],
            "cycle": [c.to_dict() for c in self.cycle],
            "evidence": list(self.evidence),
            "advice": list(self.advice),
            "sigterm": self.sigterm,
            "gpu": list(self.gpu),
            "window_s": self.window_s,
            "bpf": self.bpf,
            "unavailable": list(self.unavailable),
            "lost_events": self.lost_events,
        }


def thread_json(t: ThreadWait) -> Dict[str, Any]:
    holders = []
    for e in t.edges:
        kind, _, ident = e.target.partition(":")
        if kind == "t":
            holders.append({"tid": int(ident)})
        elif kind == "p":
            holders.append({"pid": int(ident)})
        else:
            holders.append({"remote" if kind == "r" else "other": ident})
    blocked_on = None
    if t.kind is not None and t.activity in (WAITING, TIMED, STOPPED):
        blocked_on = {"kind": t.kind, "resource": t.resource, "holders": holders,
                      "timeout_s": t.timeout_s, "has_timeout": t.has_timeout}
    return {
        "tid": t.tid, "pid": t.pid, "name": t.label, "comm": t.name, "state": t.state,
        "activity": t.activity, "syscall": t.syscall, "call": t.call,
        "blocked_on": blocked_on, "end": t.end_reason or None,
        "blocked_for_s": _round(t.blocked_for_s), "blocked_for_exact": t.blocked_exact,
        "cpu_s": _round(t.cpu_s), "wakeups": t.wakeups, "syscalls": t.syscalls,
        "wchan": t.wchan or None,
        "kernel_stack": list(t.kernel_stack) if t.state == "D" else [],
        "python_stack": [{"function": f.get("function"), "file": f.get("file"), "line": f.get("line")}
                         for f in t.python_stack],
        "evidence": list(t.evidence),
    }


def _round(v: Optional[float]) -> Optional[float]:
    return None if v is None else round(float(v), 4)


# --------------------------------------------------------------------------
# Diagnosis
# --------------------------------------------------------------------------

def _sig_bit(mask: int, sig: int) -> bool:
    return bool(mask >> (sig - 1) & 1)


def sigterm_words(p: ProcessInfo) -> str:
    """What SIGTERM would do, from the SigCgt/SigIgn/SigBlk masks."""
    term = _signal.SIGTERM.value
    if _sig_bit(p.sig_ignored, term):
        return "SIGTERM is ignored by this process (SigIgn): only SIGKILL ends it"
    if _sig_bit(p.sig_blocked, term):
        return "SIGTERM is blocked (SigBlk): it stays pending; only SIGKILL ends it now"
    if _sig_bit(p.sig_caught, term):
        return "SIGTERM is handled (SigCgt): a handler runs first; it may need the same locks"
    if p.python:
        return ("SIGTERM is not handled: default action, the process ends at once "
                "(no finally blocks, no atexit); SIGINT raises KeyboardInterrupt in the main thread")
    return "SIGTERM is not handled: default action, the process ends at once"


def _signals_to(rec: Recording, pid: int, names: Set[str]) -> List[Dict[str, Any]]:
    ev = rec.events
    if ev is None or not len(ev):
        return []
    sel = ev[(ev["kind"] == "signal_generate")]
    if not len(sel):
        return []
    out = []
    for _, r in sel.iterrows():
        if str(r["signame"]) not in names or pd.isna(r["target_tid"]):
            continue
        target = int(r["target_tid"])
        out.append({"sender_pid": int(r["pid"]), "sender_tid": int(r["tid"]), "comm": str(r["comm"]),
                    "sig": str(r["signame"]), "target": target, "time_ns": int(r["time_ns"])})
    return out


def _gpu_for(rec: Recording, pid: int, g: WaitGraph) -> List[Dict[str, Any]]:
    """NVML facts for the process and its children (when a GPU sample exists)."""
    pids = {pid} | {c for c in (g.processes[pid].children if pid in g.processes else [])}
    out = []
    for sample in rec.gpu or []:
        if not isinstance(sample, dict) or not sample.get("available"):
            continue
        devices = {d.get("index"): d for d in sample.get("devices", [])}
        for gp in sample.get("processes", []):
            if gp.get("pid") in pids:
                dev = devices.get(gp.get("device"), {})
                out.append({"pid": gp.get("pid"), "device": gp.get("device"), "name": dev.get("name"),
                            "used_memory_bytes": gp.get("used_memory_bytes"),
                            "sm_util_pct": gp.get("sm_util_pct"), "util_gpu_pct": dev.get("util_gpu_pct"),
                            "mem_used_bytes": dev.get("mem_used_bytes"),
                            "mem_total_bytes": dev.get("mem_total_bytes")})
    return out


def diagnose(rec: Recording, pid: int, *, graph: Optional[WaitGraph] = None,
             engine: Optional[Engine] = None) -> Diagnosis:
    """The verdict on process ``pid`` from a recording that observed it.

    ``graph``/``engine``: reuse the wait-for graph and the verdicts already
    worked out (``diagnose --all`` judges every process of one recording)."""
    g = graph if graph is not None else (engine.g if engine is not None else build(rec))
    p = g.processes.get(pid)
    if p is None:
        raise NotInRecording(f"pid {pid} is not in the recording")
    if engine is None:
        engine = Engine(g, signals=lambda target: _signals_to(rec, target, STOP_SIGNALS))
    threads = [g.threads[t] for t in p.tids if t in g.threads]
    meta = rec.metadata
    unavailable = [f"{u.get('what')}: {u.get('why')}" for u in (meta.unavailable or [])]
    unavailable += _compact_errors(rec)
    py_errors: Dict[str, List[str]] = {}
    for spid, dump in (meta.python_stacks or {}).items():
        if isinstance(dump, dict) and dump.get("error") and int(spid) in g.processes:
            why = str(dump["error"]).split(":")[0].split(". ")[0]
            py_errors.setdefault(why, []).append(str(spid))
    for why, pids_ in py_errors.items():
        unavailable.append(f"Python stacks of pid {', '.join(pids_)}: {why}")
    for note in (meta.server_waits or {}).get("notes") or []:
        unavailable.append(str(note))
    lost = int(sum((meta.lost or {}).values()))
    v = engine.verdict(pid)
    assert v is not None
    d = Diagnosis(pid=pid, name=p.name, cmdline=p.cmdline, verdict=v.verdict, summary=v.summary,
                  root_cause=v.root_cause, confidence=v.confidence, threads=threads, chain=list(v.chain),
                  cycle=list(v.cycle), unavailable=unavailable, lost_events=lost, window_s=g.window_s,
                  bpf=g.bpf, sigterm=sigterm_words(p), process=p, graph=g, rule=v.rule)
    d.gpu = _gpu_for(rec, pid, g)
    if lost:
        d.evidence.append(f"probes: {lost} events lost (ring buffer or map full); the timeline is incomplete")
    _window_facts(d, g, p)
    d.evidence.extend(x for x in v.evidence if x not in d.evidence)
    _advice(d, g, p)
    if d.gpu:
        _gpu_note(d)
    return d


def diagnose_many(rec: Recording, pids: List[int]) -> List[Diagnosis]:
    """Diagnoses of several processes of one recording, sharing one graph."""
    g = build(rec)
    engine = Engine(g, signals=lambda target: _signals_to(rec, target, STOP_SIGNALS))
    return [diagnose(rec, pid, engine=engine) for pid in pids if pid in g.processes]


def _compact_errors(rec: Recording) -> List[str]:
    """The snapshots' "pid N: WHAT unreadable (WHY)" lines, merged: one line
    per reason listing what could not be read, and for which pids."""
    import re

    pat = re.compile(r"^pid (\d+): (.+?) unreadable \((.+?)\)(?: \(\d+ times\))?$")
    by: Dict[Tuple[str, str], List[str]] = {}
    other: List[str] = []
    for key in ("start", "end", "related_start", "related"):
        snap = rec.snapshots.get(key)
        for line in (snap.errors if snap is not None else []):
            m = pat.match(line)
            if m:
                what = by.setdefault((m.group(3), m.group(1)), [])
                if m.group(2) not in what:
                    what.append(m.group(2))
            elif ("permission" in line or "did not return" in line) and line.split(":")[0] not in \
                    [o.split(":")[0] for o in other]:
                other.append(line)
    merged: Dict[Tuple[str, str], List[str]] = {}
    for (why, pid), whats in by.items():
        merged.setdefault((why, ", ".join(whats)), []).append(pid)
    out = [f"pid {', '.join(pids)}: {whats} unreadable ({why})" for (why, whats), pids in merged.items()]
    return out + other


def _window_facts(d: Diagnosis, g: WaitGraph, p: ProcessInfo) -> None:
    """CPU and I/O between the two snapshots; syscalls during the probe window."""
    span = next((g.threads[t].window_s for t in p.tids if t in g.threads and g.threads[t].window_s), None)
    parts = []
    if p.cpu_s is not None:
        parts.append(f"CPU {p.cpu_s:.2f} s")
    if p.io_bytes is not None:
        parts.append(f"{p.io_bytes} B read+written")
    wakeups = [g.threads[t].wakeups for t in p.tids if t in g.threads and g.threads[t].wakeups is not None]
    if wakeups:
        parts.append(f"{sum(wakeups)} voluntary sleeps")
    if parts and span:
        d.evidence.append(f"/proc, between the snapshots {span:.2f} s apart: " + ", ".join(parts))
    if p.syscalls is not None and g.window_s:
        d.evidence.append(f"probes, during the {g.window_s:.2f} s window: {p.syscalls} syscalls completed")


def _advice(d: Diagnosis, g: WaitGraph, p: ProcessInfo) -> None:
    rc = d.root_cause
    a = d.advice
    if d.verdict == "deadlock":
        a.append("The threads on the cycle can never proceed by themselves: the process must be restarted.")
        a.append("Fix: take the locks in one global order (or use a timeout and back off).")
        if any(c.location for c in d.cycle):
            a.append("Where each thread waits: " + "; ".join(
                f"{c.tid} {c.location}" for c in d.cycle if c.location))
    elif d.verdict == "blocked":
        if rc.pid is not None and rc.pid != p.pid:
            a.append(f"Look at pid {rc.pid}: it holds what this process waits for "
                     f"(sudo pyimpact diagnose {rc.pid}).")
        elif rc.pid is None and rc.resource.startswith("nothing listening on "):
            a.append(f"Start the server it connects to ({rc.resource.split(' (')[0]}), or point it at "
                     "the right address.")
        elif rc.pid is None:
            a.append("The other end is outside this machine: check that peer and the network.")
        if rc.kind == "signal-stop":
            a.append(f"pid {rc.pid} is stopped: resume it with kill -CONT {rc.pid}.")
        if rc.kind == "file-lock":
            a.append("The lock is released when its holder unlocks it, closes the file or exits.")
        if rc.kind == "pipe":
            a.append("A pipe reader sees EOF only when every holder of the write end has closed it.")
    elif d.verdict == "stopped":
        a.append(f"Resume it with: kill -CONT {p.pid}")
        a.append("A stopped process acts on no signal but SIGKILL and SIGCONT until it is continued.")
    elif d.verdict == "zombie":
        a.append("A zombie cannot be killed: it has already exited. Its parent must reap it with wait().")
        a.append(f"Ask the parent to reap it (kill -CHLD {rc.pid}); if the parent exits, its reaper adopts "
                 "and collects the zombie.")
    elif d.verdict == "busy":
        a.append("It runs without syscalls or I/O: look at where it spins"
                 + (f" (py-spy dump --pid {p.pid})" if p.python else " (perf top -p PID, or a debugger)") + ".")
    elif d.verdict in ("idle", "progressing"):
        a.append("Not hung: nothing to do." if d.verdict == "idle" else "Not hung: it is working.")
    if any("permission denied" in u for u in d.unavailable):
        a.append("Some of it could not be read (permission denied): run as root to see what each "
                 "thread waits on and who holds it.")
    if d.verdict == "zombie":
        return
    if d.verdict in HUNG or d.verdict == "busy":
        a.append(f"Before killing: sudo pyimpact kill-preview {p.pid} (what a kill would lose).")
    a.append(d.sigterm)


def _gpu_note(d: Diagnosis) -> None:
    """GPU facts as evidence; a process whose host threads only wait inside
    itself while its GPU computes is progressing on the GPU, not hung."""
    busy = []
    for gp in d.gpu:
        util = gp.get("sm_util_pct") if gp.get("sm_util_pct") is not None else gp.get("util_gpu_pct")
        d.evidence.append(f"NVML: GPU {gp.get('device')} ({gp.get('name')}): pid {gp.get('pid')} holds "
                          f"{gp.get('used_memory_bytes')} B, utilisation {util}%")
        if util:
            busy.append((gp, util))
    waits_inside = d.verdict in ("idle",) or (d.verdict == "blocked" and d.root_cause.pid == d.pid)
    if busy and waits_inside:
        gp, util = max(busy, key=lambda x: x[1])
        d.verdict, d.confidence = "progressing", "medium"
        d.root_cause = RootCause(gp.get("pid"), None, "gpu", f"GPU {gp.get('device')} ({gp.get('name')}) "
                                 f"at {util}% utilisation")
        d.summary = (f"the host threads wait while GPU {gp.get('device')} computes ({util}% utilisation): "
                     "working on the GPU")
        d.evidence.append("the host threads wait while the GPU is busy: the work is on the GPU")
    elif d.gpu and not busy and d.verdict == "blocked":
        d.evidence.append("NVML: the GPU is idle while the host threads wait: the host side is stuck")
