"""Record the diagnose scenarios once, as fixtures for tests/test_report_saved.py.

    sudo .venv/bin/python tests/targets/diag_record.py     (writes tests/recordings/diag_rec_*.parquet)

Each scenario of tests/targets/diag_scenarios.py (and the C deadlock) is
started for real, observed by the live diagnose path (snapshots, probes,
memory details, py-spy) and the Recording is saved.  What the diagnosis must
find is written beside it in ``metadata["fixture"]["expect"]``, from what the
scenario is (which process holds what), never from the diagnosis itself, so
the saved files test the pure analysis without root, BPF or processes.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))            # tests/ (conftest helpers)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from conftest import DiagProcs, proc_state, proc_syscall, wait_for_line, wait_state  # noqa: E402
from pyimpact.sessions.observe import observe  # noqa: E402
from pyimpact.export import write_recording  # noqa: E402


def expect(cls, pid, tid, kind, **more):
    return dict(more, **{"class": cls, "root_pid": pid, "root_tid": tid, "kind": kind})


def c_deadlock(P, tmp):
    exe = os.path.join(tmp, "diag_mutex_deadlock")
    subprocess.run(["gcc", "-O2", "-pthread", "-o", exe, os.path.join(HERE, "diag_mutex_deadlock.c")], check=True)
    proc = P.start([exe])
    _, t1, t2, _, _ = wait_for_line(proc.stdout, "ready").split()
    t1, t2 = int(t1), int(t2)
    wait_state(lambda: all(proc_syscall(proc.pid, t) == "202" for t in (t1, t2)))
    return proc.pid, expect("deadlock", proc.pid, min(t1, t2), "mutex", cycle=sorted([t1, t2]))


def py_deadlock(P, tmp):
    proc, (t1, t2) = P.scenario("py-deadlock")
    t1, t2 = int(t1), int(t2)
    wait_state(lambda: all(proc_syscall(proc.pid, t) == "202" for t in (proc.pid, t1, t2)))
    return proc.pid, expect("deadlock", proc.pid, min(t1, t2), "futex", cycle=sorted([t1, t2]))


def chain(P, tmp):
    path = os.path.join(tmp, "lock")
    c, _ = P.scenario("flock-holder", path)
    a, (b,) = P.scenario("chain-parent", path)
    wait_state(lambda: proc_syscall(a.pid) == "61" and proc_syscall(int(b)) == "73")
    return a.pid, expect("blocked", c.pid, c.pid, "file-lock", chain=[a.pid, int(b), c.pid])


def tcp(P, tmp):
    server, (port,) = P.scenario("tcp-server")
    client, _ = P.scenario("tcp-client", port)
    wait_for_line(server.stdout, "accepted")
    wait_state(lambda: proc_syscall(client.pid) == "45")
    return client.pid, expect("blocked", server.pid, server.pid, "socket", chain=[client.pid, server.pid])


def busy(P, tmp):
    proc, _ = P.scenario("busy")
    wait_state(lambda: proc_state(proc.pid) == "R")
    return proc.pid, expect("busy", proc.pid, proc.pid, "unknown")


def sleeper(P, tmp):
    proc, _ = P.scenario("sleeper")
    wait_state(lambda: proc_syscall(proc.pid) == "230")
    return proc.pid, expect("idle", proc.pid, proc.pid, "unknown")


def stopped(P, tmp):
    proc, _ = P.scenario("sleeper")
    os.kill(proc.pid, signal.SIGSTOP)
    wait_state(lambda: proc_state(proc.pid) == "T")
    return proc.pid, expect("stopped", proc.pid, proc.pid, "signal-stop")


def zombie(P, tmp):
    parent, (child,) = P.scenario("zombie-parent")
    wait_state(lambda: proc_state(int(child)) == "Z")
    return int(child), expect("zombie", parent.pid, parent.pid, "child")


#: a harness in bash with a coprocess shell waiting for its next command: each
#: reads a pipe the other writes (tests/test_diagnose_real.py HARNESS)
HARNESS = """coproc SH { exec bash; }
echo "$SH_PID"
while read -r line <&"${SH[0]}"; do echo "$line"; done
"""


def harness(P, tmp):
    proc = P.start(["bash", "-c", HARNESS])
    shell = int(proc.stdout.readline())
    wait_state(lambda: proc_syscall(proc.pid) == "0" and proc_syscall(shell) == "0")
    return proc.pid, expect("idle", proc.pid, proc.pid, "pipe", shell=shell)


SCENARIOS = {"c-deadlock": c_deadlock, "py-deadlock": py_deadlock, "chain": chain, "tcp": tcp,
             "busy": busy, "sleeper": sleeper, "stopped": stopped, "zombie": zombie,
             "harness": harness}


def main(names) -> None:
    for name in names or SCENARIOS:
        procs = DiagProcs()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                pid, exp = SCENARIOS[name](procs, tmp)
                _, rec = observe(pid, window=0.5)
                rec.metadata["fixture"] = {"scenario": name, "pid": pid, "expect": exp}
                out = os.path.join(HERE, "..", "recordings", f"diag_rec_{name}.parquet")
                write_recording(rec, out)
                print(f"{name}: {out} ({os.path.getsize(out)} bytes)")
        finally:
            procs.cleanup()


if __name__ == "__main__":
    main(sys.argv[1:])
