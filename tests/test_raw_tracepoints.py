"""The rare tracepoints as raw tracepoints (probes/pyimpact.h, PYI_TP_BTF).

Why they are: closing a classic tracepoint's perf event waits for RCU grace
periods under a kernel-wide mutex (about 36 ms each here, one after another),
so twelve of them kept every command alive 0.4-0.6 s after its answer; a raw
tracepoint's link closes in well under a millisecond. Raw tracepoint
programs read the kernel's own arguments at offsets from its BTF
(tp_btf.KERNEL_FIELDS), so what they record must be checked against what the
kernel itself formats: both sets of probes follow the same real process at
the same time and must record the same events. And a real `pyimpact trace`
must hold no perf event at all, and leave no program or link behind.
"""
from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import all_prog_ids, prog_ids_of, start_trace, wait_for_line
from pyimpact.collect import tp_btf
from pyimpact.collect.probes import KernelProbes, ProbeConfig
from pyimpact.event_layout import EVENT_DTYPE

pytestmark = pytest.mark.skipif(not os.path.exists(tp_btf.VMLINUX_BTF), reason="kernel without BTF")

KIND_FORK, KIND_EXEC, KIND_EXIT, KIND_SIG_GEN, KIND_SIG_DEL, KIND_BLOCK = 4, 5, 6, 7, 8, 9

#: A process that, once told to go, does one of each thing the rare probes see:
#: a thread, a fork whose child exits with a code, a fork that execs a real
#: program, a child killed by a default-fatal signal, signals to itself (kill:
#: SI_USER, to a thread: SI_TKILL) with a handler, and O_DIRECT writes with a
#: final fdatasync to a real disk (block requests, with their rwbs flags).
WORKLOAD = r'''
import mmap, os, signal, sys, threading, time
data = sys.argv[1]
print("ready", flush=True)
sys.stdin.read(1)
signal.signal(signal.SIGUSR1, lambda *a: None)
signal.signal(signal.SIGUSR2, lambda *a: None)
t = threading.Thread(target=time.sleep, args=(0.05,)); t.start(); t.join()
pid = os.fork()
if pid == 0:
    os._exit(3)
os.waitpid(pid, 0)
pid = os.fork()
if pid == 0:
    os.execv("/bin/true", ["true"])
os.waitpid(pid, 0)
pid = os.fork()
if pid == 0:
    time.sleep(30)
    os._exit(0)
os.kill(pid, signal.SIGTERM)
os.waitpid(pid, 0)
os.kill(os.getpid(), signal.SIGUSR1)
signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)
fd = os.open(data, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
buf = mmap.mmap(-1, 4096)
buf.write(b"x" * 4096)
for i in range(8):
    os.pwrite(fd, buf, i * 4096)
os.fdatasync(fd)
os.close(fd)
print("done", flush=True)
'''


def _events(kp: KernelProbes) -> tuple:
    kp.drain(deadline_s=1.0)
    raw, paths = kp.raw_events()
    return np.frombuffer(raw, dtype=EVENT_DTYPE), [p for _, p in paths]


def _key(e) -> tuple:
    return (int(e["kind"]), int(e["tgid"]), int(e["tid"]), int(e["aux"]), int(e["ret"]),
            tuple(int(x) for x in e["a"]), bytes(e["comm"]))


def test_raw_and_classic_tracepoints_record_the_same(spawn, tmp_path):
    data = f"/var/tmp/pyimpact-test-rawtp-{os.getpid()}.dat"    # O_DIRECT: a real disk, not tmpfs
    script = tmp_path / "workload.py"
    script.write_text(WORKLOAD)
    target = spawn([sys.executable, str(script), data], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    wait_for_line(target.stdout, "ready")
    raw = KernelProbes(ProbeConfig(pids=(target.pid,))).open()
    try:
        classic = KernelProbes(ProbeConfig(pids=(target.pid,), tp_btf=False)).open()
        try:
            assert raw.syscall_probe_kind == "tp_btf", raw.syscall_probe_note
            assert not raw._probes.perf_events, "with BTF no classic tracepoint should be attached"
            assert len(classic._probes.perf_events) >= 12, "the fallback attaches the classic tracepoints"
            target.stdin.write(b"g")
            target.stdin.flush()
            wait_for_line(target.stdout, "done")
            target.wait(timeout=30)
            time.sleep(0.2)         # the last block completions
            got_raw, paths_raw = _events(raw)
            got_classic, paths_classic = _events(classic)
        finally:
            classic.close()
    finally:
        raw.close()
        if os.path.exists(data):
            os.unlink(data)

    rare = (KIND_FORK, KIND_EXEC, KIND_EXIT, KIND_SIG_GEN, KIND_SIG_DEL)
    a = collections.Counter(_key(e) for e in got_raw if e["kind"] in rare)
    b = collections.Counter(_key(e) for e in got_classic if e["kind"] in rare)
    assert a == b, (a - b, b - a)
    kinds = collections.Counter(k[0] for k in a.elements())
    assert kinds[KIND_FORK] >= 4 and kinds[KIND_EXEC] >= 1 and kinds[KIND_EXIT] >= 5, kinds
    assert kinds[KIND_SIG_GEN] >= 3 and kinds[KIND_SIG_DEL] >= 2, kinds
    assert paths_raw == paths_classic and "/bin/true" in paths_raw
    # the child killed by SIGTERM: its exit names a signal (from the deliver probe: the
    # kernel may deliver the group exit it starts as SIGKILL)
    assert any(k[0] == KIND_EXIT and k[5][1] in (9, 15) for k in a), [k for k in a if k[0] == KIND_EXIT]
    # the signals sent with kill() and to a thread: SI_USER (0) and SI_TKILL (-6) codes
    codes = {(k[3], np.int64(np.uint64(k[5][3]))) for k in a if k[0] == KIND_SIG_GEN}
    assert {(10, 0), (12, -6)} <= codes, codes

    # Block: the classic block_rq_complete is skipped when it lands inside
    # another classic program (bpf_prog_active), the raw one is not: every
    # request the classic probes saw, the raw ones saw the same way.
    # The classic record's rwbs is a NUL-terminated string in 8 bytes (what
    # follows the NUL is whatever was there): compared up to the NUL, as read.
    def block(got):
        return collections.Counter((int(e["tgid"]), int(e["aux"]), int(e["a"][0]), int(e["a"][1]), int(e["a"][2]),
                                    int(e["a"][3]).to_bytes(8, "little").split(b"\0", 1)[0].decode())
                                   for e in got if e["kind"] == KIND_BLOCK)
    braw, bclassic = block(got_raw), block(got_classic)
    assert not bclassic - braw, (bclassic - braw, braw)
    writes = [k for k in braw if "W" in k[5] and k[4] == 4096]
    assert len(writes) >= 4, braw


def _fd_kinds(pid: int) -> collections.Counter:
    out = collections.Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[os.readlink(f"/proc/{pid}/fd/{fd}")] += 1
        except OSError:
            continue
    return out


def _link_prog_ids() -> set:
    res = subprocess.run(["bpftool", "-j", "link", "show"], capture_output=True, text=True, check=True)
    return {int(link["prog_id"]) for link in json.loads(res.stdout or "[]") if "prog_id" in link}


def test_trace_holds_no_perf_event_and_leaves_nothing(spawn):
    sleeper = spawn([sys.executable, "-c", "import time; time.sleep(120)"])
    trace = start_trace(spawn, ["-p", str(sleeper.pid), "-d", "1", "--json"])
    ours = prog_ids_of(trace.pid)
    fds = _fd_kinds(trace.pid)
    assert len(ours) >= 15, ours
    # every probe hangs off a BPF link (raw tracepoint or tp_btf), none off a perf event
    assert fds["anon_inode:[perf_event]"] == 0, fds
    assert fds["anon_inode:bpf_link"] >= 15, fds
    assert len(ours & _link_prog_ids()) >= 15
    stdout, stderr = trace.communicate(timeout=30)
    assert trace.returncode == 0, stderr.decode()
    deadline = time.monotonic() + 5     # the kernel frees a program after its last reference, asynchronously
    while ours & (all_prog_ids() | _link_prog_ids()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not ours & all_prog_ids(), "BPF programs still loaded after the trace ended"
    assert not ours & _link_prog_ids(), "BPF links still attached after the trace ended"


def test_offsets_match_the_tracepoints():
    """Every field the raw programs read is found in this kernel's BTF, and
    the kernel's own tracepoints take the arguments the programs expect."""
    facts = tp_btf.kernel_facts(["sys_enter", "sys_exit"])
    assert len(facts["offsets"]) == len(tp_btf.KERNEL_FIELDS)
    assert set(tp_btf.RAW_TRACEPOINT_ARGS) >= {"sched_process_fork", "signal_generate", "block_bio_queue"}
    off = dict(zip((f"{a}.{b}" for _, a, b in tp_btf.KERNEL_FIELDS), facts["offsets"]))
    # fixed by the ABI, as a cross-check of the BTF walk (si_signo, si_errno, si_code)
    assert (off["kernel_siginfo.si_errno"], off["kernel_siginfo.si_code"]) == (4, 8)
    assert off["req_op.REQ_OP_WRITE"] == 1 and off["req_op.REQ_OP_READ"] == 0
