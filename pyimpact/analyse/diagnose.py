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

from ..recording import Recording
from .chains import ChainLink, best_path, chain_links, deadlocked, end_note, exact_cycles, pct as _pct
from .waitgraph import build
from .waitmodel import (RUNNING, STOPPED, TIMED, UNKNOWN, WAITING, WAKING, ZOMBIE, Edge, ProcessInfo,
                        ThreadWait, WaitGraph, process_words, python_location, secs as _secs)

CLASSES = ("deadlock", "blocked", "stopped", "zombie", "busy", "idle", "progressing")
KINDS = ("mutex", "futex", "pipe", "socket", "child", "vfork", "file-lock", "block-io",
         "signal-stop", "gpu", "unknown")
HUNG = ("deadlock", "blocked", "stopped", "zombie")
SCHEMA = "pyimpact.diagnose/1"

STOP_SIGNALS = {"SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU"}


@dataclass
class RootCause:
    pid: Optional[int]
    tid: Optional[int]
    kind: str
    resource: str

    def to_dict(self) -> Dict[str, Any]:
        return {"pid": self.pid, "tid": self.tid, "kind": self.kind, "resource": self.resource}


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


def _root_of(g: WaitGraph, path: List[Tuple[str, Optional[Edge]]], first: ThreadWait) -> RootCause:
    """Root cause from the chain's last node and the last real edge into it."""
    node = path[-1][0]
    kind_, _, ident = node.partition(":")
    last_edge = next((e for _, e in reversed(path) if e is not None and e.kind), None)
    kind = last_edge.kind if last_edge is not None else (first.kind or "unknown")
    resource = last_edge.resource if last_edge is not None else (first.resource or "")
    pid: Optional[int] = None
    tid: Optional[int] = None
    if kind_ == "t":
        t = g.threads[int(ident)]
        pid, tid = t.pid, t.tid
        if t.activity == STOPPED:
            kind = "signal-stop"
        elif t.end_kind:
            kind = t.end_kind
    elif kind_ == "p":
        pid = int(ident)
        p = g.processes.get(pid)
        tid = pid
        if p is not None:
            ths = [g.threads[x] for x in p.tids if x in g.threads]
            run = [t for t in ths if t.activity == RUNNING]
            if run:
                tid = max(run, key=lambda t: t.cpu_s or 0).tid
            if ths and all(t.activity == STOPPED for t in ths):
                kind = "signal-stop"
    elif kind_ == "x":
        kind = g.end_kinds.get(node, kind)
        prev = path[-2][0] if len(path) > 1 else None
        if prev and prev.startswith("t:"):
            t = g.threads[int(prev[2:])]
            pid, tid = t.pid, t.tid
    if kind not in KINDS:
        kind = "unknown"
    return RootCause(pid, tid, kind, resource)


def _thread_lines(g: WaitGraph, t: ThreadWait) -> List[str]:
    return [f"thread {t.tid} ({t.label}): {line}" for line in t.evidence]


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


def _tree_tids(g: WaitGraph, pid: int) -> Set[int]:
    p = g.processes.get(pid)
    return set(p.tids) if p else set()


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


def diagnose(rec: Recording, pid: int) -> Diagnosis:
    """The verdict on process ``pid`` from a recording that observed it."""
    g = build(rec)
    p = g.processes.get(pid)
    if p is None:
        raise KeyError(f"pid {pid} is not in the recording")
    threads = [g.threads[t] for t in p.tids if t in g.threads]
    main = g.threads.get(pid) or (threads[0] if threads else None)
    meta = rec.metadata
    unavailable = [f"{u.get('what')}: {u.get('why')}" for u in meta.get("unavailable", [])]
    unavailable += _compact_errors(rec)
    py_errors: Dict[str, List[str]] = {}
    for spid, dump in (meta.get("python_stacks") or {}).items():
        if isinstance(dump, dict) and dump.get("error") and int(spid) in g.processes:
            why = str(dump["error"]).split(":")[0].split(". ")[0]
            py_errors.setdefault(why, []).append(str(spid))
    for why, pids_ in py_errors.items():
        unavailable.append(f"Python stacks of pid {', '.join(pids_)}: {why}")
    lost = int(sum((meta.get("lost") or {}).values()))
    d = Diagnosis(pid=pid, name=p.name, cmdline=p.cmdline, verdict="idle", summary="",
                  root_cause=RootCause(pid, main.tid if main else None, "unknown", ""), confidence="medium",
                  threads=threads, chain=[], unavailable=unavailable, lost_events=lost,
                  window_s=g.window_s, bpf=g.bpf, sigterm=sigterm_words(p), process=p, graph=g)
    d.gpu = _gpu_for(rec, pid, g)
    if lost:
        d.evidence.append(f"probes: {lost} events lost (ring buffer or map full); the timeline is incomplete")
    _window_facts(d, g, p)
    if p.state in ("Z", "X") or (threads and all(t.activity == ZOMBIE for t in threads)):
        _zombie(d, g, p)
    elif threads and all(t.activity == STOPPED for t in threads):
        _stopped(d, rec, g, p, threads)
    else:
        dead = deadlocked(g)
        mine = [t for t in threads if t.node in dead]
        if mine:
            _deadlock(d, g, p, dead, mine)
        else:
            _live(d, g, p, threads, main)
    _advice(d, g, p)
    if d.gpu:
        _gpu_note(d)
    return d


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


def _zombie(d: Diagnosis, g: WaitGraph, p: ProcessInfo) -> None:
    parent = g.processes.get(p.ppid)
    d.verdict = "zombie"
    d.confidence = "high"
    how = ""
    if parent is not None:
        pt = g.threads.get(parent.pid)
        if pt is not None:
            how = f"; it {end_note(g, pt.node)}" if pt.activity == WAITING and pt.end_reason else \
                f"; it is {pt.activity}" + (f" in {pt.syscall}()" if pt.syscall else "")
        catches = _sig_bit(parent.sig_caught, _signal.SIGCHLD.value)
        d.evidence.append(f"parent pid {parent.pid} ({parent.name}) "
                          f"{'has a SIGCHLD handler' if catches else 'does not handle SIGCHLD'} (SigCgt)"
                          f"{how}")
    d.evidence.insert(0, f"/proc/{p.pid}/stat: state Z (exited, exit status not collected)")
    d.root_cause = RootCause(p.ppid, p.ppid, "child",
                             f"exit status of pid {p.pid}, not collected by its parent pid {p.ppid}")
    pname = f" ({parent.name})" if parent is not None else ""
    d.summary = (f"pid {p.pid} has exited and is a zombie: its parent pid {p.ppid}{pname} "
                 f"has not called wait() for it{how}")
    d.chain = [ChainLink(p.pid, p.pid, p.name, "Z", ZOMBIE, {"kind": "child",
                         "resource": "its parent to collect the exit status"})]
    if parent is not None:
        pt = g.threads.get(parent.pid)
        d.chain.append(ChainLink(parent.pid, parent.pid, parent.name, parent.state,
                                 pt.activity if pt else UNKNOWN, None,
                                 note=end_note(g, f"t:{parent.pid}") if pt else "",
                                 location=python_location(pt) if pt else ""))


def _stopped(d: Diagnosis, rec: Recording, g: WaitGraph, p: ProcessInfo, threads: List[ThreadWait]) -> None:
    d.verdict = "stopped"
    d.confidence = "high"
    traced = any(t.state == "t" for t in threads) or p.tracer_pid
    main = g.threads.get(p.pid) or threads[0]
    since = f" for at least {_secs(main.blocked_for_s)}" if main.blocked_for_s else ""
    sent = [s for s in _signals_to(rec, p.pid, STOP_SIGNALS) if s["target"] in _tree_tids(g, p.pid)]
    d.evidence.append(f"/proc/{p.pid}/stat: state {main.state} "
                      f"({'stopped by a tracer' if main.state == 't' else 'stopped by a signal'}){since}")
    if sent:
        s = sent[-1]
        who = f"{s['sig']} sent by pid {s['sender_pid']} ({s['comm']})"
        d.evidence.append(f"probes: {who} during the window")
        d.root_cause = RootCause(p.pid, main.tid, "signal-stop", who)
        d.summary = f"stopped by {who}"
    elif traced and p.tracer_pid:
        tracer = g.processes.get(p.tracer_pid)
        name = f" ({tracer.name})" if tracer else ""
        d.evidence.append(f"/proc/{p.pid}/status: TracerPid {p.tracer_pid}{name}")
        d.root_cause = RootCause(p.tracer_pid, p.tracer_pid, "signal-stop",
                                 f"stopped under the tracer pid {p.tracer_pid}{name}")
        d.summary = f"stopped under the tracer pid {p.tracer_pid}{name} (a debugger holds it)"
    else:
        why = ("the stop happened before tracing began, so its sender is unknown" if g.bpf
               else "without the probes the sender of the stop signal cannot be seen")
        d.evidence.append(why)
        d.root_cause = RootCause(p.pid, main.tid, "signal-stop", "a stop signal (SIGSTOP/SIGTSTP/SIGTTIN/SIGTTOU)")
        d.summary = f"stopped by a signal{since}; {why}"
    d.chain = [ChainLink(p.pid, main.tid, main.label, main.state, STOPPED, None,
                         note="stopped", location=python_location(main))]


def _deadlock(d: Diagnosis, g: WaitGraph, p: ProcessInfo, dead: Set[str], mine: List[ThreadWait]) -> None:
    d.verdict = "deadlock"
    cycles = exact_cycles(g, dead)
    mine_nodes = {t.node for t in mine}
    cycle = next((c for c in cycles if set(c) & mine_nodes), None)
    if cycle is None:
        # follow a member's exact edges into a cycle elsewhere (e.g. a join waiting on a deadlock)
        for t in mine:
            path = best_path(g, t.node)
            nodes = {n for n, _ in path}
            cycle = next((c for c in cycles if set(c) & nodes), None)
            if cycle:
                break
    if cycle is not None:
        core = [g.threads[int(n[2:])] for n in cycle]
        d.confidence = "high"
    else:
        core = sorted((g.threads[int(n[2:])] for n in dead if n.startswith("t:")
                       and not g.threads[int(n[2:])].join), key=lambda t: t.tid)
        if not core:
            core = sorted((g.threads[int(n[2:])] for n in dead if n.startswith("t:")), key=lambda t: t.tid)
        d.confidence = "medium"
    start = min(core, key=lambda t: t.tid)
    if cycle is not None:  # rotate so the lowest tid comes first
        i = [t.tid for t in core].index(start.tid)
        core = core[i:] + core[:i]
    kinds = [t.kind or "unknown" for t in core]
    kind = "mutex" if "mutex" in kinds else kinds[0]
    if kind not in KINDS:
        kind = "unknown"
    resources = "; ".join(t.resource for t in core)
    d.root_cause = RootCause(start.pid, start.tid, kind, resources)
    procs = sorted({t.pid for t in core})
    where = "in this process" if procs == [p.pid] else "across pids " + ", ".join(str(x) for x in procs)
    names = ", ".join(f"{t.tid} ({t.label})" for t in core)
    if cycle is not None:
        d.summary = (f"threads {names} {where} wait on each other in a cycle: "
                     + "; ".join(f"{t.tid} needs {t.resource}" for t in core))
    else:
        d.summary = (f"threads {names} {where} wait forever on locks that no thread left can release "
                     "(no owner is recorded, so the exact cycle is not known)")
    d.cycle = [ChainLink(t.pid, t.tid, t.label, t.state, t.activity,
                         {"kind": t.kind or "unknown", "resource": t.resource}, location=python_location(t))
               for t in core]
    # the chain from the diagnosed process's first stuck thread into the deadlock
    first = next((t for t in mine if t.tid == p.pid), mine[0])
    path = best_path(g, first.node)
    core_nodes = {t.node for t in core}
    cut = next((i for i, (n, _) in enumerate(path) if n in core_nodes), None)
    if cut is not None:
        path = path[:cut] + [(path[cut][0], None)]
    d.chain = chain_links(g, path)
    if cut is not None and d.chain:
        d.chain[-1].note = "in the deadlock"
    for t in core:
        d.evidence.extend(_thread_lines(g, t))
    others = [t for t in mine if t not in core]
    for t in others:
        d.evidence.append(f"thread {t.tid} ({t.label}) waits on {t.resource}, itself stuck in the deadlock")
    if cycle is None:
        d.evidence.append("every thread of the set waits without a timeout on a private futex or on "
                          "another member: only a thread of the process could wake it, and none can")
    if g.bpf:
        d.evidence.append(f"probes: none of these threads was woken during the {g.window_s or 0:.2f} s window")


def _live(d: Diagnosis, g: WaitGraph, p: ProcessInfo, threads: List[ThreadWait],
          main: Optional[ThreadWait]) -> None:
    running = [t for t in threads if t.activity == RUNNING]
    if running:
        _on_cpu(d, g, p, running, root_pid=p.pid)
        return
    waiting = [t for t in threads if t.activity == WAITING]
    chains = []
    held: List[ThreadWait] = []
    for t in waiting:
        path = best_path(g, t.node)
        root_node = path[-1][0]
        root_pid = g.pid_of(root_node)
        outside = root_pid != p.pid
        alive_self = root_node == p.node and "alive" in g.process_end_reason(p.pid)
        root_t = g.threads.get(int(root_node[2:])) if root_node.startswith("t:") else None
        input_self = root_t is not None and root_t.input_wait and root_pid == p.pid
        if input_self:
            continue
        if alive_self:
            if _lock_acquire(t):
                held.append(t)
            continue
        chains.append((outside, t.tid == p.pid, len(path), t, path))
    if chains:
        chains.sort(key=lambda c: (c[0], c[1], c[2], -c[3].tid), reverse=True)
        _, _, _, first, path = chains[0]
        _blocked(d, g, p, first, path, threads)
        return
    if held:
        _held_lock(d, g, p, held)
        return
    alive = [t for t in threads if t.activity in (WAKING, TIMED)]
    inputs = [t for t in waiting if t.input_wait]
    d.verdict = "idle"
    d.confidence = "high" if (alive and g.window_s) else "medium"
    lead = main if main in alive else (alive[0] if alive else (inputs[0] if inputs else main))
    wake = sum(t.wakeups or 0 for t in threads)
    if lead is not None:
        d.root_cause = RootCause(p.pid, lead.tid, "unknown",
                                 lead.resource or f"{lead.syscall or '?'}()")
        d.chain = [ChainLink(p.pid, lead.tid, lead.label, lead.state, lead.activity, None,
                             note=end_note(g, lead.node), location=python_location(lead))]
    bits = []
    if any(t.activity == TIMED for t in threads):
        bits.append("sleeps with timeouts")
    if wake:
        span = next((t.window_s for t in threads if t.window_s), None)
        bits.append(f"woke up {wake} times in {span or 0:.2f} s")
    if inputs and not alive:
        bits.append("waits for input (" + inputs[0].end_reason + ")")
    internal = [t for t in waiting if not t.input_wait]
    if internal:
        bits.append(f"{len(internal)} thread(s) wait on work from its own threads")
    d.summary = "not hung: " + (", ".join(bits) if bits else "no thread is stuck")
    for t in alive[:3]:
        d.evidence.append(f"thread {t.tid} ({t.label}): {end_note(g, t.node)}")
    for t in inputs[:2]:
        d.evidence.extend(_thread_lines(g, t))


#: Python files whose frames mean "waits for work or an event", not "acquires a lock"
_WAIT_MACHINERY = ("threading.py", "queue.py", "thread.py", "selectors.py", "events.py", "base_events.py",
                   "process.py", "connection.py", "synchronize.py", "pool.py")


def _lock_acquire(t: ThreadWait) -> bool:
    """A thread waiting forever on an unowned futex from its own code (a
    ``with lock:`` or ``lock.acquire()`` at its innermost Python frame), not
    from Condition/Event/Queue waits, which wait for work."""
    if t.kind != "futex" or t.join or not t.python_stack:
        return False
    top = str(t.python_stack[0].get("file") or "")
    return not top.endswith(_WAIT_MACHINERY)


def _held_lock(d: Diagnosis, g: WaitGraph, p: ProcessInfo, held: List[ThreadWait]) -> None:
    """Threads stuck acquiring locks while other threads of the process still
    run: blocked on a lock whose holder is not recorded (Python locks keep no
    owner), so the holder can only be guessed from the other stacks."""
    first = min(held, key=lambda t: t.tid)
    d.verdict = "blocked"
    d.confidence = "low"
    names = ", ".join(f"{t.tid} ({t.label}) {python_location(t)}" for t in held)
    since = f" for ≥ {_secs(first.blocked_for_s)}" if first.blocked_for_s else ""
    d.summary = (f"thread(s) {names} wait{since} to acquire a lock that another thread of this "
                 "process holds; the lock records no owner, and other threads are still active, "
                 "so this is either a lock held for long or a deadlock among these threads")
    d.root_cause = RootCause(p.pid, None, "futex", "; ".join(t.resource for t in held))
    d.chain = [ChainLink(t.pid, t.tid, t.label, t.state, t.activity, {"kind": "futex", "resource": t.resource},
                         location=python_location(t)) for t in held[:1]]
    d.chain.append(ChainLink(p.pid, None, p.name, p.state, "process", None,
                             note=g.process_end_reason(p.pid)))
    for t in held:
        d.evidence.extend(_thread_lines(g, t))


def _on_cpu(d: Diagnosis, g: WaitGraph, p: ProcessInfo, running: List[ThreadWait], root_pid: int) -> None:
    hot = max(running, key=lambda t: t.cpu_s or 0)
    syscalls = p.syscalls
    io = (p.io_bytes or 0) + (p.disk_bytes or 0)
    wakeups = sum(t.wakeups or 0 for t in running)
    if syscalls is not None:
        progressing = syscalls > 0 or io > 0
    else:
        progressing = io > 0 or wakeups > 0
    share = _pct(hot.cpu_s, hot.window_s)
    if progressing:
        d.verdict = "progressing"
        d.confidence = "high"
        what = []
        if syscalls:
            what.append(f"{syscalls} syscalls")
        if io:
            what.append(f"{io} B of I/O")
        if not what and wakeups:
            what.append(f"{wakeups} wake-ups")
        d.summary = (f"working: thread {hot.tid} ({hot.label}) on CPU {share} of the window, "
                     + ", ".join(what))
    else:
        d.verdict = "busy"
        d.confidence = "high" if syscalls is not None else "medium"
        seen = "no syscalls, no I/O" if syscalls is not None else \
            "no I/O and no voluntary sleeps (syscalls not visible without the probes)"
        d.summary = (f"spinning: thread {hot.tid} ({hot.label}) on CPU {share} of the window "
                     f"with {seen}: an endless loop or a long computation")
    d.root_cause = RootCause(p.pid, hot.tid, "unknown", f"CPU ({share} of the window on thread {hot.tid})")
    d.chain = [ChainLink(p.pid, hot.tid, hot.label, hot.state, RUNNING, None,
                         note=end_note(g, hot.node), location=python_location(hot))]
    for t in running:
        d.evidence.append(f"thread {t.tid} ({t.label}): CPU {t.cpu_s or 0:.2f} s of "
                          f"{t.window_s or 0:.2f} s, {t.wakeups or 0} voluntary sleeps"
                          + (f", {t.syscalls} syscalls (probes)" if t.syscalls is not None else ""))


def _blocked(d: Diagnosis, g: WaitGraph, p: ProcessInfo, first: ThreadWait,
             path: List[Tuple[str, Optional[Edge]]], threads: List[ThreadWait]) -> None:
    d.chain = chain_links(g, path)
    root = _root_of(g, path, first)
    d.root_cause = root
    root_node = path[-1][0]
    root_t = g.threads.get(int(root_node[2:])) if root_node.startswith("t:") else None
    root_p = g.processes.get(root.pid) if root.pid is not None else None
    if root_t is None and root_node.startswith("p:") and root.tid is not None:
        root_t = g.threads.get(root.tid)
    # waiting on someone who is working is not "hung": on CPU, or moving data
    if root_p is not None and root.pid != p.pid and root_t is not None:
        io = (root_p.io_bytes or 0) + (root_p.disk_bytes or 0)
        if root_t.activity == RUNNING or (root_t.activity in (WAKING, TIMED) and io > 0):
            if root_t.activity == RUNNING:
                _on_cpu(d, g, root_p, [root_t], root_pid=root_p.pid)
                d.summary = f"waits for {process_words(root_p)}, which is " + d.summary
            else:
                d.verdict, d.confidence = "progressing", "medium"
                d.summary = (f"waits for {process_words(root_p)}, which is working: "
                             f"{io} B of I/O during the window")
            d.chain = chain_links(g, path)
            d.root_cause = RootCause(root.pid, root.tid, root.kind, root.resource)
            for node, _ in path:
                if node.startswith("t:"):
                    d.evidence.extend(_thread_lines(g, g.threads[int(node[2:])]))
            return
    d.verdict = "blocked"
    for node, _ in path:
        if node.startswith("t:"):
            d.evidence.extend(_thread_lines(g, g.threads[int(node[2:])]))
    blocked_for = f" for {'' if first.blocked_exact else '≥ '}{_secs(first.blocked_for_s)}" \
        if first.blocked_for_s is not None else ""
    end = end_note(g, root_node)
    if root.pid is None:
        who = g.node_label(root_node)
    elif root_p is not None:
        who = process_words(root_p) if root.pid != p.pid else f"thread {root.tid} of this process"
    else:
        who = f"pid {root.pid}"
    if first.syscall is None and first.kind == "unknown":
        d.summary = (f"thread {first.tid} ({first.label}) sleeps{blocked_for} with no wake-up seen; "
                     "what it waits on could not be read")
    else:
        d.summary = (f"thread {first.tid} ({first.label}) blocked{blocked_for} on {first.resource}"
                     + (f"; at the end of the chain, {who}: {end}" if len(path) > 1 else f": {end}"))
    one_snapshot = any(g.threads[int(n[2:])].window_s is None for n, _ in path if n.startswith("t:")
                       and int(n[2:]) in g.threads)
    unresolved = root.kind == "unknown"
    d.confidence = "high" if (not one_snapshot and not unresolved) else "medium"
    if first.kind == "unknown" and not first.edges:
        d.confidence = "low" if first.syscall is None else "medium"


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
