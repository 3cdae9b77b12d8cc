"""A signal the kernel raises in an interrupt is not "sent" by the task the
interrupt landed on (probes/signals.bpf.c, pyi_sent_by_current).

A busy traced process and an untraced one taking a 2 ms itimer share one
CPU: each SIGALRM is raised in the timer interrupt, mostly on top of the busy
loop. None of them may be recorded as a signal the traced process sent.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import start_trace, wait_for_line
from pyimpact.export import read_recording

ALARM = r"""
import signal, sys, time
n = 0
def on_alarm(sig, frame):
    global n
    n += 1
signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
print("ready", flush=True)
sys.stdin.readline()
print("alarms", n, flush=True)
"""


def test_timer_signals_to_others_are_not_sent_by_the_interrupted_task(spawn, tmp_path):
    busy = spawn([sys.executable, "-c", "while True: pass"])
    alarm = spawn([sys.executable, "-c", ALARM], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    wait_for_line(alarm.stdout, "ready")
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(busy.pid, {cpu})
    os.sched_setaffinity(alarm.pid, {cpu})
    out = str(tmp_path / "busy.parquet")
    trace = start_trace(spawn, ["-p", str(busy.pid), "-d", "1.5", "-o", out, "--json"])
    stdout, stderr = trace.communicate(timeout=60)
    assert trace.returncode == 0, stderr.decode()
    alarm.stdin.write(b"\n")
    alarm.stdin.flush()
    alarms = int(wait_for_line(alarm.stdout, "alarms").split()[1])
    assert alarms > 100      # the timer ran all along (500 a second)
    ev = read_recording(out).events
    sent = ev[(ev.kind == "signal_generate") & (ev.target_tid == alarm.pid)]
    assert len(sent) == 0, sent[["pid", "target_tid", "signame", "sig_code"]].head()
    assert json.loads(stdout)["events"]["by_kind"].get("signal_generate", 0) == 0
