"""Tests of the procfs snapshot layer against real processes in real states.

Every target is a child Python process started by the ``spawn`` fixture; it
says "ready" over a pipe once set up (no sleeps for the handshake), and the
test then waits until the kernel's own files show the state the test is about
(blocked in read, stopped, ...), read here with plain open() as an independent
cross-check of what ``procfs`` parses.  Every child is killed by its pid and
reaped in the fixture teardown; grandchildren exit by themselves when their
parent dies (they block on a pipe whose write end only the parent holds).
"""
from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Callable, List, Optional, Tuple

import psutil
import pytest

from pyimpact.collect import procfs
from pyimpact.snapshot import ProcessSnapshot, SystemSnapshot
from pyimpact.syscall_table import SYSCALLS, syscall_name, syscall_number

ROOT = os.geteuid() == 0

PRELUDE = textwrap.dedent("""
    import os, sys, time, threading, socket, fcntl, signal
    READY = int(sys.argv[1])
    KIDS = []
    def ready(msg=""):
        os.write(READY, (str(msg) + "\\n").encode())
    def fork():
        c = os.fork()
        if c == 0:
            KIDS.clear()
        else:
            KIDS.append(c)
        return c
    def _term(*_):
        # pid 1 of a test VM may not reap orphans: end and reap our own children first
        for k in KIDS:
            try:
                os.kill(k, signal.SIGTERM)
            except OSError:
                pass
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
        os._exit(0)
    signal.signal(signal.SIGTERM, _term)
""")


# --------------------------------------------------------------------------
# helpers and fixtures
# --------------------------------------------------------------------------

def _read_line(fd: int, timeout: float = 10.0) -> str:
    """One line from ``fd`` within ``timeout`` seconds (fails the test otherwise)."""
    buf = b""
    end = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = end - time.monotonic()
        r, _, _ = select.select([fd], [], [], max(0.0, left))
        if not r:
            pytest.fail(f"child not ready within {timeout} s")
        chunk = os.read(fd, 4096)
        if not chunk:
            pytest.fail("child exited before saying ready")
        buf += chunk
    return buf.decode().strip()


def wait_until(pred: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``pred`` until true: for kernel states that follow the handshake."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if pred():
                return
        except OSError:
            pass
        time.sleep(0.005)
    pytest.fail(f"timed out waiting for {what}")


def raw(path: str) -> str:
    """A /proc file as text, read plainly (the independent view)."""
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def raw_state(pid: int, tid: Optional[int] = None) -> str:
    """State letter from /proc/PID[/task/TID]/stat."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    s = raw(path)
    return s[s.rindex(")") + 2]


def raw_syscall(pid: int, tid: Optional[int] = None) -> str:
    """First word of /proc/PID/task/TID/syscall ("running", "-1" or the number)."""
    return raw(f"/proc/{pid}/task/{tid or pid}/syscall").split()[0]


def blocked_in(pid: int, name: str, tid: Optional[int] = None) -> bool:
    """True when the thread sleeps inside syscall ``name`` (per the raw files)."""
    return raw_state(pid, tid) == "S" and raw_syscall(pid, tid) == str(syscall_number(name))


class Spawner:
    """Starts child Python processes and kills/reaps them by pid afterwards."""

    def __init__(self) -> None:
        self.procs: List[subprocess.Popen] = []

    def __call__(self, code: str, *, env: Optional[dict] = None,
                 pass_fds: Tuple[int, ...] = ()) -> Tuple[subprocess.Popen, str]:
        r, w = os.pipe()
        try:
            p = subprocess.Popen([sys.executable, "-c", PRELUDE + textwrap.dedent(code), str(w)],
                                 pass_fds=(w,) + tuple(pass_fds), env=env,
                                 stdin=subprocess.DEVNULL)
            self.procs.append(p)
            os.close(w)
            w = -1
            return p, _read_line(r)
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)

    def cleanup(self) -> None:
        """SIGTERM each child by pid (its handler ends and reaps its own
        children), SIGKILL if it does not end, and reap it."""
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                os.kill(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)


@pytest.fixture
def spawn():
    s = Spawner()
    try:
        yield s
    finally:
        s.cleanup()


def sock_inodes(p: ProcessSnapshot) -> List[int]:
    return [f.inode for f in p.fds if f.kind == "socket"]


# --------------------------------------------------------------------------
# syscall table
# --------------------------------------------------------------------------

# Debian's linux-libc-dev (tests/apt-packages.txt): installed by `make test`, so this never skips in CI.
HEADER = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"


def test_syscall_table_names_and_numbers():
    assert syscall_name(0) == "read"
    assert syscall_name(202) == "futex"
    assert syscall_name(455) == "futex_wait"
    assert syscall_name(99999) == "syscall_99999"
    assert syscall_number("clock_nanosleep") == 230
    assert syscall_number("no_such_call") is None
    for nr, name in SYSCALLS.items():
        assert syscall_number(name) == nr


@pytest.mark.skipif(not os.path.exists(HEADER), reason="6.1 uapi header not installed")
def test_syscall_table_matches_header():
    with open(HEADER) as f:
        pairs = re.findall(r"#define __NR_(\w+) (\d+)", f.read())
    pairs = [(int(n), name) for name, n in pairs if name != "syscalls"]
    assert len(pairs) > 300
    for nr, name in pairs:
        assert SYSCALLS[nr] == name


# --------------------------------------------------------------------------
# blocked in read on a pipe; who holds the write end
# --------------------------------------------------------------------------

def test_pipe_reader_blocked_and_writer_found(spawn):
    r, w = os.pipe()
    try:
        holder, _ = spawn("ready(); os.read(os.pipe()[0], 1)", pass_fds=(w,))
        reader, _ = spawn(f"""
            ready(); os.read({r}, 1)
        """, pass_fds=(r,))
    finally:
        os.close(w)  # from now on only ``holder`` holds the write end
        os.close(r)
    wait_until(lambda: blocked_in(reader.pid, "read"), what="reader blocked in read")

    snap = procfs.take_snapshot([reader.pid])
    p = snap.processes[reader.pid]
    assert p.state == "S"
    (t,) = p.threads
    assert t.tid == reader.pid
    assert t.state == "S"
    assert t.syscall_nr == 0 and t.syscall_name == "read"
    assert t.syscall_args[0] == r and t.syscall_args[2] == 1  # read(r, buf, 1)
    if ROOT:
        assert any("pipe_read" in fr for fr in t.kernel_stack), t.kernel_stack
        assert "pipe_read" in t.wchan
    fd = next(f for f in p.fds if f.fd == r)
    assert fd.kind == "pipe" and fd.mode == "r" and fd.target == f"pipe:[{fd.inode}]"
    holders = snap.inode_holders[fd.inode]
    assert [reader.pid, r, "r"] in holders
    assert [holder.pid, w, "w"] in holders
    assert not [h for h in holders if h[2] == "w" and h[0] != holder.pid]


def test_named_fifo_writer_found(spawn, tmp_path):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    reader, _ = spawn(f"""
        ready(); fd = os.open({fifo!r}, os.O_RDONLY); os.read(fd, 1)
    """)
    writer, _ = spawn(f"""
        fd = os.open({fifo!r}, os.O_WRONLY); ready(fd); os.read(os.pipe()[0], 1)
    """)
    wait_until(lambda: blocked_in(reader.pid, "read"), what="fifo reader blocked")
    snap = procfs.take_snapshot([reader.pid])
    fd = next(f for f in snap.processes[reader.pid].fds if f.target == fifo)
    assert fd.kind == "pipe" and fd.inode == os.stat(fifo).st_ino
    assert any(h[0] == writer.pid and h[2] == "w" for h in snap.inode_holders[fd.inode])


# --------------------------------------------------------------------------
# stopped, zombie, tree
# --------------------------------------------------------------------------

def test_sigstopped_process_is_T(spawn):
    p, _ = spawn("ready(); os.read(os.pipe()[0], 1)")
    wait_until(lambda: blocked_in(p.pid, "read"))
    os.kill(p.pid, signal.SIGSTOP)
    wait_until(lambda: raw_state(p.pid) == "T", what="state T")
    snap = procfs.take_snapshot([p.pid])
    ps = snap.processes[p.pid]
    assert ps.state == "T"
    assert ps.threads[0].state == "T"
    if ROOT:
        assert any("do_signal_stop" in fr for fr in ps.threads[0].kernel_stack)


def test_zombie_child_of_non_reaping_parent(spawn):
    parent, line = spawn("""
        c = fork()
        if c == 0:
            os._exit(7)
        os.waitid(os.P_PID, c, os.WEXITED | os.WNOWAIT)  # dead, but not reaped
        ready(c); os.read(os.pipe()[0], 1)
    """)
    zpid = int(line)
    assert raw_state(zpid) == "Z"
    snap = procfs.take_snapshot([parent.pid])
    assert snap.processes[parent.pid].children == [zpid]
    z = snap.processes[zpid]
    assert z.state == "Z" and z.ppid == parent.pid
    assert z.threads and z.threads[0].state == "Z"
    assert z.fds == [] and z.exe is None
    assert z.start_ticks > 0
    assert (zpid, z.start_ticks) == procfs.process_identity(zpid)


def test_tree_and_descendants(spawn):
    top, line = spawn("""
        for depth in (1, 2):
            if fork() == 0:
                if depth == 1 and fork() == 0:
                    os.read(os.pipe()[0], 1)  # grandchild
                os.read(os.pipe()[0], 1)
        ready(" ".join(map(str, KIDS))); os.read(os.pipe()[0], 1)
    """)
    kids = sorted(int(x) for x in line.split())
    assert procfs.children(top.pid) == kids
    wait_until(lambda: sum(len(procfs.children(k)) for k in kids) == 1, what="grandchild")
    (grand,) = [g for k in kids for g in procfs.children(k)]
    assert procfs.descendants(top.pid) == kids + [grand]  # breadth-first
    snap = procfs.take_snapshot([top.pid])
    assert set(snap.processes) == {top.pid, *kids, grand}
    assert snap.processes[top.pid].children == kids
    assert snap.processes[grand].ppid in kids
    assert procfs.take_snapshot([top.pid], tree=False).processes.keys() == {top.pid}


# --------------------------------------------------------------------------
# file locks
# --------------------------------------------------------------------------

@pytest.mark.parametrize("call,kind", [("fcntl.flock(fd, fcntl.LOCK_EX)", "FLOCK"),
                                       ("fcntl.lockf(fd, fcntl.LOCK_EX)", "POSIX")])
def test_lock_holder_and_waiter(spawn, tmp_path, call, kind):
    path = str(tmp_path / "lockfile")
    open(path, "w").close()
    holder, lfd = spawn(f"""
        fd = os.open({path!r}, os.O_RDWR)
        {call}
        ready(fd); os.read(os.pipe()[0], 1)
    """)
    waiter_code = f"""
        fd = os.open({path!r}, os.O_RDWR)
        ready(fd)
        {call}
        os.read(os.pipe()[0], 1)
    """
    nr = "73" if kind == "FLOCK" else "72"  # flock / fcntl

    def blocked(pid: int) -> bool:
        return raw_state(pid) == "S" and raw_syscall(pid) == nr

    waiter, _ = spawn(waiter_code)
    wait_until(lambda: blocked(waiter.pid), what="waiter blocked on the lock")
    waiter2, _ = spawn(waiter_code)
    wait_until(lambda: blocked(waiter2.pid), what="second waiter blocked on the lock")
    st = os.stat(path)
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"

    all_locks = procfs.read_locks()
    locks = [lk for lk in all_locks if lk.inode == st.st_ino and lk.dev == dev]
    held = [lk for lk in locks if not lk.waiting]
    waiting = {lk.pid: lk for lk in locks if lk.waiting}
    assert [(lk.pid, lk.kind, lk.access) for lk in held] == [(holder.pid, kind, "WRITE")]
    assert set(waiting) == {waiter.pid, waiter2.pid}
    for w in waiting.values():
        assert w.kind == kind and w.blocked_by_id == held[0].id
        # following the blocker chain ends at the holder, one level per step
        chain, cur = [], w
        while cur.waiting:
            cur = all_locks[cur.blocker_index]
            chain.append(cur)
        assert cur.pid == holder.pid and len(chain) == w.depth
    assert waiting[waiter.pid].depth == 1

    snap = procfs.take_snapshot([holder.pid, waiter.pid])
    fd = next(f for f in snap.processes[holder.pid].fds if f.fd == int(lfd))
    assert (fd.dev, fd.inode, fd.kind, fd.mode) == (dev, st.st_ino, "file", "rw")
    assert snap.processes[waiter.pid].threads[0].syscall_nr == int(nr)


# --------------------------------------------------------------------------
# threads
# --------------------------------------------------------------------------

def test_all_threads_listed_with_syscalls(spawn):
    p, line = spawn("""
        ev = threading.Event()
        ts = [threading.Thread(target=ev.wait, daemon=True) for _ in range(3)]
        ts.append(threading.Thread(target=time.sleep, args=(3600,), daemon=True))
        for t in ts: t.start()
        ready(" ".join(str(t.native_id) for t in ts))
        os.read(os.pipe()[0], 1)
    """)
    tids = [int(x) for x in line.split()]
    sleeper = tids[-1]
    wait_until(lambda: blocked_in(p.pid, "read")
               and blocked_in(p.pid, "clock_nanosleep", sleeper)
               and all(blocked_in(p.pid, "futex", t) for t in tids[:3]),
               what="all threads blocked")
    snap = procfs.take_snapshot([p.pid])
    threads = {t.tid: t for t in snap.processes[p.pid].threads}
    assert sorted(threads) == sorted([p.pid] + tids) == sorted(int(x) for x in os.listdir(f"/proc/{p.pid}/task"))
    assert snap.processes[p.pid].num_threads == 5
    assert threads[p.pid].syscall_name == "read"
    assert threads[sleeper].syscall_name == "clock_nanosleep"
    for t in tids[:3]:
        assert threads[t].syscall_name == "futex"
        assert len(threads[t].syscall_args) == 6
        assert threads[t].voluntary_ctxt_switches is not None
    # the wait state of all threads is read together, before the slow parts
    spread = max(t.read_mono_ns for t in threads.values()) - min(t.read_mono_ns for t in threads.values())
    assert spread < 50e6


def test_last_ran_ago_for_long_blocked_thread(spawn):
    started = time.monotonic()  # the child last runs after this
    p, _ = spawn("ready(); os.read(os.pipe()[0], 1)")
    wait_until(lambda: blocked_in(p.pid, "read"))
    time.sleep(1.2)  # the state under test is "blocked for > 1 s"
    snap = procfs.take_snapshot([p.pid])
    t = snap.processes[p.pid].threads[0]
    upper = time.monotonic() - started
    assert t.last_ran_ago_s is not None
    # lower bound 1.0, not 1.2: the scheduler clock omits time stolen by the hypervisor
    assert 1.0 <= t.last_ran_ago_s <= upper, (t.last_ran_ago_s, upper)
    # the monotonic timestamp agrees with the duration
    assert abs((t.read_mono_ns - t.last_ran_mono_ns) / 1e9 - t.last_ran_ago_s) < 1e-6
    # a thread that has just run shows a small figure (ours, now)
    me = procfs.read_thread(os.getpid(), threading.get_native_id())
    assert me.last_ran_ago_s is not None and me.last_ran_ago_s < 0.5


# --------------------------------------------------------------------------
# sockets
# --------------------------------------------------------------------------

def test_loopback_tcp_peers_matched(spawn):
    server, port = spawn("""
        s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4)
        ready(s.getsockname()[1])
        c, _ = s.accept(); c.recv(1)
    """)
    port = int(port)
    client, cport = spawn(f"""
        c = socket.create_connection(("127.0.0.1", {port}))
        ready(c.getsockname()[1]); c.recv(1)
    """)
    cport = int(cport)
    wait_until(lambda: blocked_in(server.pid, "recvfrom") and blocked_in(client.pid, "recvfrom"),
               what="both ends in recv")
    snap = procfs.take_snapshot([server.pid, client.pid])
    csocks = [snap.sockets[i] for i in sock_inodes(snap.processes[client.pid])]
    ssocks = [snap.sockets[i] for i in sock_inodes(snap.processes[server.pid])]
    (cs,) = csocks
    assert cs.proto == "tcp" and cs.state == "ESTABLISHED"
    assert cs.local == f"127.0.0.1:{cport}" and cs.remote == f"127.0.0.1:{port}"
    listening = [s for s in ssocks if s.state == "LISTEN"]
    accepted = [s for s in ssocks if s.state == "ESTABLISHED"]
    assert [s.local for s in listening] == [f"127.0.0.1:{port}"] and listening[0].remote == ""
    (acc,) = accepted
    assert acc.local == cs.remote and acc.remote == cs.local
    assert cs.peer_inode == acc.inode and acc.peer_inode == cs.inode
    # and the process holding the peer is found
    assert [h[0] for h in snap.inode_holders[cs.peer_inode]] == [server.pid]


def test_unix_socketpair_peer(spawn):
    p, line = spawn("""
        a, b = socket.socketpair()
        ready(f"{a.fileno()} {b.fileno()}"); a.recv(1)
    """)
    fa, fb = (int(x) for x in line.split())
    wait_until(lambda: blocked_in(p.pid, "recvfrom"))
    snap = procfs.take_snapshot([p.pid])
    fds = {f.fd: f for f in snap.processes[p.pid].fds}
    ia, ib = fds[fa].inode, fds[fb].inode
    assert snap.sockets[ia].proto == "unix" and snap.sockets[ia].sock_type == "stream"
    assert snap.sockets[ia].state == "CONNECTED"
    assert snap.sockets[ia].peer_inode == ib and snap.sockets[ib].peer_inode == ia


# --------------------------------------------------------------------------
# environment, identity, errors
# --------------------------------------------------------------------------

def test_environment_allow_list_only(spawn):
    env = {"PATH": os.environ.get("PATH", "/usr/bin"), "RANK": "3", "WORLD_SIZE": "8",
           "SLURM_JOB_ID": "4242", "TORCHELASTIC_RUN_ID": "r1",
           "SECRET_TOKEN": "hunter2-do-not-leak", "HOME": "/root"}
    p, _ = spawn("ready(); os.read(os.pipe()[0], 1)", env=env)
    snap = procfs.take_snapshot([p.pid])
    assert snap.processes[p.pid].env == {"RANK": "3", "WORLD_SIZE": "8", "SLURM_JOB_ID": "4242",
                                         "TORCHELASTIC_RUN_ID": "r1"}
    assert "hunter2-do-not-leak" not in json.dumps(snap.to_dict())
    assert snap.processes[p.pid].python is True


def test_process_fields(spawn, tmp_path):
    p, _ = spawn("""
        data = bytearray(os.urandom(1 << 20) * 8)
        ready(); os.read(os.pipe()[0], 1)
    """)
    snap = procfs.take_snapshot([p.pid])
    ps = snap.processes[p.pid]
    pp = psutil.Process(p.pid)
    assert ps.ppid == os.getpid() and ps.cmdline == pp.cmdline()
    assert ps.exe == pp.exe() and ps.cwd == pp.cwd() and ps.uid == os.getuid()
    assert abs(ps.create_time - pp.create_time()) < 0.02
    assert ps.rss_bytes >= 8 << 20 and ps.uss_bytes is not None and ps.uss_bytes <= ps.rss_bytes
    assert ps.vms_bytes >= ps.rss_bytes
    assert ps.io_read_chars is not None and ps.io_read_chars > 0
    assert ps.tracer_pid == 0 and ps.sig_ignored & (1 << (signal.SIGPIPE - 1))
    assert ps.netns is not None and not ps.kernel_thread
    assert snap.taken_at_ns > 0 and snap.boot_time > 0 and snap.duration_ns > 0


def test_json_round_trip_is_exact(spawn):
    parent, _ = spawn("""
        c = fork()
        if c == 0:
            os._exit(0)
        os.waitid(os.P_PID, c, os.WEXITED | os.WNOWAIT)
        a, b = socket.socketpair()
        ready(); a.recv(1)
    """)
    snap = procfs.take_snapshot([parent.pid, os.getpid()])
    assert snap.processes and snap.sockets and snap.inode_holders
    text = json.dumps(snap.to_dict())
    back = SystemSnapshot.from_dict(json.loads(text))
    assert back == snap
    assert all(isinstance(k, int) for k in back.processes)
    assert all(isinstance(k, int) for k in back.sockets)
    assert all(isinstance(k, int) for k in back.inode_holders)
    assert json.loads(text) == snap.to_dict()  # to_dict is already plain JSON


def test_missing_pid_raises_no_such_process(spawn):
    pid_max = int(raw("/proc/sys/kernel/pid_max"))
    with pytest.raises(psutil.NoSuchProcess):
        procfs.take_snapshot([pid_max + 1])
    with pytest.raises(psutil.NoSuchProcess):
        procfs.process_identity(pid_max + 1)
    with pytest.raises(psutil.NoSuchProcess):
        procfs.descendants(pid_max + 1)
    p, _ = spawn("ready()")
    p.wait()
    with pytest.raises(psutil.NoSuchProcess):
        procfs.take_snapshot([p.pid])
    with pytest.raises(psutil.NoSuchProcess):
        procfs.read_thread(p.pid, p.pid)


def test_read_memory_word(spawn):
    p, line = spawn("""
        import ctypes
        v = ctypes.c_uint32(0xC0FFEE11)
        ready(ctypes.addressof(v)); os.read(os.pipe()[0], 1)
    """)
    addr = int(line)
    assert procfs.read_memory_word(p.pid, addr) == 0xC0FFEE11
    assert procfs.read_memory_word(p.pid, addr, size=2) == 0xEE11
    with pytest.raises(OSError):
        procfs.read_memory_word(p.pid, 0)  # unmapped
    p.kill()
    p.wait()
    with pytest.raises(psutil.NoSuchProcess):
        procfs.read_memory_word(p.pid, addr)


def test_snapshot_of_self_is_fast_enough():
    """Not a benchmark: a sanity bound far above the measured few ms."""
    snap = procfs.take_snapshot([os.getpid()])
    assert snap.duration_ns < 1e9
    assert snap.processes[os.getpid()].python


# --------------------------------------------------------------------------
# degrading: vanished children, reads that never return
# (the failure is injected; the processes are real)
# --------------------------------------------------------------------------

def test_vanished_child_is_skipped_but_vanished_root_raises(spawn, monkeypatch):
    top, line = spawn("""
        if fork() == 0:
            os.read(os.pipe()[0], 1)
        ready(KIDS[0]); os.read(os.pipe()[0], 1)
    """)
    kid = int(line)
    real = procfs.process.read_process_details
    victim = {"pid": kid}

    def vanishing(p, errs, holder):
        if p.pid == victim["pid"]:
            raise psutil.NoSuchProcess(p.pid)
        return real(p, errs, holder)

    monkeypatch.setattr(procfs.process, "read_process_details", vanishing)
    snap = procfs.take_snapshot([top.pid])
    assert set(snap.processes) == {top.pid}
    assert f"pid {kid}: skipped (exited during the snapshot)" in snap.errors
    victim["pid"] = top.pid
    with pytest.raises(psutil.NoSuchProcess):
        procfs.take_snapshot([top.pid])


def stick_reads_of(monkeypatch, stuck: str) -> threading.Event:
    """Make every read of ``stuck`` hang until the returned event is set, as
    when the target holds the lock that file's read takes (its mmap lock)."""
    release = threading.Event()
    real = procfs.boundary._read_all

    def read_all(path):
        if path == stuck:
            release.wait(10)
        return real(path)

    monkeypatch.setattr(procfs.boundary, "_read_all", read_all)
    return release


def test_read_that_never_returns_is_bounded(spawn, monkeypatch):
    p, _ = spawn("ready(); os.read(os.pipe()[0], 1)")
    wait_until(lambda: blocked_in(p.pid, "read"))
    stuck = f"/proc/{p.pid}/cmdline"
    release = stick_reads_of(monkeypatch, stuck)
    try:
        t0 = time.monotonic()
        snap = procfs.take_snapshot([p.pid], timeout_s=0.4)
        took = time.monotonic() - t0
    finally:
        release.set()
    assert took < 1.0
    ps = snap.processes[p.pid]
    assert ps.threads and ps.threads[0].syscall_name == "read"  # phase 1 kept
    assert ps.cmdline == [] and ps.fds == []                      # not reached
    assert any(stuck in e and "did not return" in e for e in snap.errors), snap.errors


def test_argv_read_of_the_live_panel_is_bounded(spawn, monkeypatch):
    """jobs.read_cmdline (the live panel's argv read) goes through the procfs
    boundary under a deadline: a target holding its mmap lock costs at most
    the deadline, and the panel gets [] instead of sticking."""
    from pyimpact.collect import jobs

    p, _ = spawn("ready(); os.read(os.pipe()[0], 1)")
    assert jobs.read_cmdline(p.pid) == raw(f"/proc/{p.pid}/cmdline").rstrip("\0").split("\0")
    stuck = f"/proc/{p.pid}/cmdline"
    release = stick_reads_of(monkeypatch, stuck)
    try:
        t0 = time.monotonic()
        argv = jobs.read_cmdline(p.pid)
        took = time.monotonic() - t0
        with pytest.raises(TimeoutError):
            procfs.read_cmdline(p.pid, timeout_s=0.1)
    finally:
        release.set()
    assert argv == []
    assert took < procfs.CMDLINE_TIMEOUT_S + 0.5


def test_bounded_reads_reuse_readers_but_never_a_stuck_one(spawn, monkeypatch):
    """read_bounded hands reads to kept reader threads (a thread per read cost
    the recorder most of its CPU); a reader whose read did not return in time
    is never handed another, so later reads get their own file's bytes and are
    not stuck behind it."""
    p, _ = spawn("ready(); os.read(os.pipe()[0], 1)")
    comm = f"/proc/{p.pid}/comm"
    first = procfs.boundary.read_bounded(comm, p.pid, 2.0)
    before = threading.active_count()
    for _ in range(50):
        assert procfs.boundary.read_bounded(comm, p.pid, 2.0) == first
    assert threading.active_count() <= before + 1  # reused, not one per read
    stuck = f"/proc/{p.pid}/cmdline"
    release = stick_reads_of(monkeypatch, stuck)
    try:
        with pytest.raises(TimeoutError):
            procfs.boundary.read_bounded(stuck, p.pid, 0.1)
        t0 = time.monotonic()
        for _ in range(5):
            assert procfs.boundary.read_bounded(comm, p.pid, 2.0) == first
        assert time.monotonic() - t0 < 1.0
    finally:
        release.set()
    assert procfs.boundary.read_bounded(stuck, p.pid, 2.0) == raw(stuck).encode("latin-1")


def test_one_walk_gives_order_and_children(spawn):
    """procfs.walk: roots first, breadth-first, each pid once, with the
    children of every pid; a root that is gone is skipped unless strict."""
    top, line = spawn("""
        if fork() == 0:
            if fork() == 0:
                os.read(os.pipe()[0], 1)
            os.read(os.pipe()[0], 1)
        ready(KIDS[0]); os.read(os.pipe()[0], 1)
    """)
    kid = int(line)
    wait_until(lambda: procfs.children(kid), what="grandchild")
    (grand,) = procfs.children(kid)
    order, kids = procfs.walk([top.pid, kid])
    assert order == [top.pid, kid, grand]
    assert kids == {top.pid: [kid], kid: [grand], grand: []}
    assert procfs.walk([top.pid], deep=False) == ([top.pid], {top.pid: [kid]})
    assert procfs.tree_of(top.pid) == [top.pid, kid, grand]
    gone = int(open("/proc/sys/kernel/pid_max").read()) + 1
    assert procfs.walk([gone]) == ([gone], {gone: []})
    with pytest.raises(psutil.NoSuchProcess):
        procfs.walk([gone], strict=True)
