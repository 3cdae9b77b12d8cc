"""`pyimpact diagnose` on managed runtimes with many threads: the JVM, Go, Node.js.

A HotSpot JVM runs a dozen threads of its own (GC, JIT compilers, periodic
tasks) in futex waits with and without timeouts; a Go program runs its
goroutines on a few threads parked in futexes beside a netpoller and sysmon;
Node.js runs libuv's event loop (epoll on a self-pipe, an eventfd and the
sockets) and a pool of workers asleep on a condition variable.  None of those
threads is evidence of a hang or of work by itself: the tests check that the
rules of DESIGN.md "The verdict model" see through them, on real programs
compiled and started here (javac / go build into a temporary directory, once
per module), each in its own process group, reaped at the end.  Every test
asserts the verdict class and the root cause's pid.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import TARGETS, proc_state, proc_syscall, wait_for_line, wait_state
from test_diagnose_real import IS_ROOT, diagnose as _diagnose, free_port, io_chars, servers, spawn_here, \
    wait_port  # noqa: F401  (fixtures)

WINDOW = 1.0     # the CLI's default window
SYS_FUTEX = "202"

pytestmark = [
    pytest.mark.skipif(not IS_ROOT, reason="diagnose tests start the kernel probes: run as root"),
    pytest.mark.filterwarnings("ignore:not a bytes object:DeprecationWarning"),
]


def diagnose(pid: int, **kw):
    kw.setdefault("window", WINDOW)
    return _diagnose(pid, **kw)


def _tids_named(pid: int, *names: str):
    """{comm: tid} of the threads named ``names``, once all of them are (a JVM
    thread names itself once it runs)."""
    wait_state(lambda: len(_named(pid, names)) == len(names), what=f"threads {names} of pid {pid}")
    return _named(pid, names)


def _named(pid: int, names):
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm in names:
            out[comm] = int(tid)
    return out


# --------------------------------------------------------------------------
# the programs, built once per module
# --------------------------------------------------------------------------

JAVA = {
    "HttpIdle": """
import com.sun.net.httpserver.*;
import java.io.OutputStream;
import java.net.InetSocketAddress;
public class HttpIdle {
  public static void main(String[] a) throws Exception {
    HttpServer s = HttpServer.create(new InetSocketAddress("127.0.0.1", Integer.parseInt(a[0])), 0);
    byte[] body = new byte[2000];
    s.createContext("/", ex -> { ex.sendResponseHeaders(200, body.length);
                                 try (OutputStream o = ex.getResponseBody()) { o.write(body); } });
    s.setExecutor(java.util.concurrent.Executors.newFixedThreadPool(4));
    s.start();
    System.out.println("ready");
  }
}""",
    # two threads taking two monitors in opposite orders
    "Deadlock": """
import java.util.concurrent.CountDownLatch;
public class Deadlock {
  static final Object A = new Object(), B = new Object();
  static final CountDownLatch both = new CountDownLatch(2);
  static void hold(Object first, Object second) {
    synchronized (first) {
      both.countDown();
      try { both.await(); } catch (InterruptedException e) { return; }
      synchronized (second) { System.out.println("never"); }
    }
  }
  public static void main(String[] a) throws Exception {
    Thread one = new Thread(() -> hold(A, B), "one"), two = new Thread(() -> hold(B, A), "two");
    one.start(); two.start();
    both.await();
    System.out.println("ready");
    one.join();
  }
}""",
    # the same with java.util.concurrent locks (LockSupport.park, owners in the Java heap)
    "LockDeadlock": """
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.locks.ReentrantLock;
public class LockDeadlock {
  static final ReentrantLock A = new ReentrantLock(), B = new ReentrantLock();
  static final CountDownLatch both = new CountDownLatch(2);
  static void hold(ReentrantLock first, ReentrantLock second) {
    first.lock();
    both.countDown();
    try { both.await(); } catch (InterruptedException e) { return; }
    second.lock();
    System.out.println("never");
  }
  public static void main(String[] a) throws Exception {
    Thread one = new Thread(() -> hold(A, B), "one"), two = new Thread(() -> hold(B, A), "two");
    one.start(); two.start();
    both.await();
    System.out.println("ready");
    one.join();
  }
}""",
    # a thread holding a monitor while it sleeps, another waiting to enter it
    "Holder": """
public class Holder {
  static final Object A = new Object();
  public static void main(String[] a) throws Exception {
    Thread h = new Thread(() -> { synchronized (A) {
        System.out.println("held");
        try { Thread.sleep(600000); } catch (InterruptedException e) {} } }, "holder");
    h.start();
    Thread w = new Thread(() -> { synchronized (A) { System.out.println("never"); } }, "waiter");
    Thread.sleep(100);
    w.start();
    System.out.println("ready");
    w.join();
  }
}""",
    # java.net.http: the caller parks on a future, a selector thread polls the socket
    "HClient": """
import java.net.URI;
import java.net.http.*;
public class HClient {
  public static void main(String[] a) throws Exception {
    HttpClient c = HttpClient.newHttpClient();
    HttpRequest r = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + a[0] + "/")).build();
    System.out.println("sent");
    System.out.println(c.send(r, HttpResponse.BodyHandlers.ofString()).statusCode());
  }
}""",
    "Spin": """
public class Spin {
  public static void main(String[] a) {
    long x = 0;
    System.out.println("ready");
    while (true) { x++; if (x == -1) System.out.println(x); }
  }
}""",
    "SleepLoop": """
public class SleepLoop {
  public static void main(String[] a) throws Exception {
    System.out.println("ready");
    while (true) Thread.sleep(100);
  }
}""",
    # a plain blocking client: sends a request, reads the reply
    "Client": """
import java.net.Socket;
public class Client {
  public static void main(String[] a) throws Exception {
    Socket s = new Socket(a.length > 1 ? a[1] : "127.0.0.1", Integer.parseInt(a[0]));
    s.getOutputStream().write("GET / HTTP/1.0\\r\\n\\r\\n".getBytes());
    System.out.println("sent");
    System.out.println("got " + s.getInputStream().read());
  }
}""",
}

GO = """package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
)

func main() {
	switch os.Args[1] {
	case "http": // an idle net/http server
		body := make([]byte, 2000)
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write(body) })
		ln, err := net.Listen("tcp", "127.0.0.1:"+os.Args[2])
		if err != nil {
			panic(err)
		}
		fmt.Println("ready")
		http.Serve(ln, nil)
	case "lines": // a goroutine reads stdin into a channel; main prints what comes
		ch := make(chan string)
		go func() {
			s := bufio.NewScanner(os.Stdin)
			for s.Scan() {
				ch <- s.Text()
			}
			close(ch)
		}()
		for line := range ch {
			fmt.Println("got", line)
		}
	case "get": // sends a request and awaits the reply
		c, err := net.Dial("tcp", "127.0.0.1:"+os.Args[2])
		if err != nil {
			panic(err)
		}
		c.Write([]byte("GET / HTTP/1.0\\r\\n\\r\\n"))
		fmt.Println("sent")
		buf := make([]byte, 1)
		n, err := c.Read(buf)
		fmt.Println("got", n, err)
	}
}
"""

NODE = """
const http = require('http');
const [mode, port] = process.argv.slice(2);
if (mode === 'http' || mode === 'mute') {   // mute: accepts, reads the request, never answers
  const body = Buffer.alloc(2000, 'x');
  http.createServer((req, res) => { if (mode === 'http') res.end(body); })
    .listen(+port, '127.0.0.1', () => console.log('ready'));
} else if (mode === 'spin') {
  console.log('ready');
  while (true) {}
} else if (mode === 'spawn') {   // runs a child, collecting its output (libuv: socketpairs for its stdio)
  const c = require('child_process').execFile('sleep', ['600'], () => console.log('done'));
  console.log('child', c.pid);
} else if (mode === 'get') {
  http.get({host: '127.0.0.1', port: +port, path: '/'}, res => { res.resume(); });
  console.log('sent');
}
"""


@pytest.fixture(scope="module")
def progs(tmp_path_factory):
    """Paths of the compiled programs: {"java": classpath, "go": binary, "node": script}."""
    d = tmp_path_factory.mktemp("runtimes")
    for name, src in JAVA.items():
        (d / f"{name}.java").write_text(src)
    javac = shutil.which("javac")
    go = shutil.which("go") or "/usr/lib/go/bin/go"
    assert javac and os.path.exists(go) and shutil.which("node"), \
        "the runtimes (javac, go, node) come with scripts/setup.sh --with-test-deps (tests/apt-packages.txt)"
    jc = subprocess.Popen([javac, "-d", str(d), *[str(d / f"{n}.java") for n in JAVA]])
    (d / "go").mkdir()
    (d / "go" / "main.go").write_text(GO)
    (d / "go" / "go.mod").write_text("module rt\n\ngo 1.18\n")
    env = dict(os.environ, GOCACHE=str(d / "gocache"), GOPATH=str(d / "gopath"), GOFLAGS="-mod=mod",
               CGO_ENABLED="0")
    subprocess.run([go, "build", "-o", str(d / "rt"), "."], cwd=str(d / "go"), env=env, check=True)
    assert jc.wait(120) == 0
    (d / "rt.js").write_text(NODE)
    return {"java": str(d), "go": str(d / "rt"), "node": str(d / "rt.js")}


def _start(spawn, argv, needle="ready"):
    proc = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait_for_line(proc.stdout, needle, timeout=60)
    return proc


def _quiet(pid: int, span: float = 0.5) -> None:
    """Until the process has read and written nothing for ``span`` s (a JVM
    loads classes lazily, from its modules file, for a while after start)."""
    def still():
        a = io_chars(pid)
        time.sleep(span)
        return io_chars(pid) == a
    wait_state(still, timeout=20, what=f"pid {pid} quiet")


def _asleep(pid: int) -> None:
    wait_state(lambda: proc_state(pid) == "S", what=f"pid {pid} asleep")


@pytest.fixture(scope="module")
def mute(servers, progs):
    """A Node.js server that accepts and reads requests and never answers."""
    port = free_port()
    srv = _start(servers, ["node", progs["node"], "mute", str(port)])
    return srv.pid, port


def _load(spawn, port: int):
    load = spawn([sys.executable, os.path.join(TARGETS, "http_load.py"), str(port), "60"], stdout=subprocess.PIPE)
    wait_for_line(load.stdout, "ready")
    return load


def _idle_then_loaded(spawn, pid: int, port: int) -> None:
    _asleep(pid)
    _quiet(pid)
    d, text = diagnose(pid)
    assert d.verdict == "idle" and not d.hung, text
    assert d.root_cause.pid == pid, text
    assert f"127.0.0.1]:{port}" in d.summary or f"127.0.0.1:{port}" in d.summary, text   # its listener

    load = _load(spawn, port)
    d, text = diagnose(pid)
    assert d.verdict == "progressing" and d.root_cause.pid == pid, text
    os.killpg(load.pid, signal.SIGKILL)


def _blocked_on(pid: int, server: int, kind: str = "socket"):
    d, text = diagnose(pid)
    assert d.verdict == "blocked" and d.hung, text
    assert (d.root_cause.pid, d.root_cause.kind) == (server, kind), text
    return d, text


# --------------------------------------------------------------------------
# JVM
# --------------------------------------------------------------------------

def test_jvm_http_server_idle_then_under_load(progs, spawn_here):
    """HttpServer: a dispatcher in epoll, pool workers parked, GC/JIT/periodic
    threads in timed waits: idle; serving a load: progressing."""
    port = free_port()
    srv = _start(spawn_here, ["java", "-Xmx64m", "-cp", progs["java"], "HttpIdle", str(port)])
    _idle_then_loaded(spawn_here, srv.pid, port)


@pytest.mark.parametrize("prog, flags", [
    ("Deadlock", ["-Xmx64m"]),
    ("LockDeadlock", ["-Xmx64m"]),
    # wide pointers: no compressed oops or class pointers in the heap
    ("LockDeadlock", ["-Xmx64m", "-XX:-UseCompressedOops", "-XX:-UseCompressedClassPointers"]),
])
def test_jvm_lock_order_deadlock_is_the_cycle(progs, spawn_here, prog, flags):
    """Two threads each holding the lock the other wants (`synchronized`, or
    ReentrantLock): their futexes record no owner, the JVM's monitors and the
    locks' exclusiveOwnerThread do: a deadlock, the exact cycle of the two
    threads (the JVM re-checks a contended monitor with timed sleeps)."""
    jvm = _start(spawn_here, ["java", *flags, "-cp", progs["java"], prog])
    tids = _tids_named(jvm.pid, "one", "two")
    assert len(tids) == 2
    wait_state(lambda: all(proc_syscall(jvm.pid, t) == SYS_FUTEX for t in tids.values()),
               what="both threads asleep")
    time.sleep(0.3)

    d, text = diagnose(jvm.pid)
    assert d.verdict == "deadlock" and d.hung, text
    assert d.root_cause.pid == jvm.pid and d.root_cause.kind == "mutex", text
    assert {c.tid for c in d.cycle} == set(tids.values()), text
    assert ("Java monitor" if prog == "Deadlock" else "ReentrantLock") in d.summary, text


def test_jvm_thread_waiting_for_a_monitor_held_across_a_sleep_is_blocked_on_the_holder(progs, spawn_here):
    """The monitor's owner (from the JVM) sleeps while it holds it: the waiter is
    blocked, the holder thread of the same process is the root."""
    jvm = _start(spawn_here, ["java", "-Xmx64m", "-cp", progs["java"], "Holder"])
    tids = _tids_named(jvm.pid, "holder", "waiter")
    assert len(tids) == 2
    wait_state(lambda: all(proc_syscall(jvm.pid, t) == SYS_FUTEX for t in tids.values()),
               what="both threads asleep")
    _quiet(jvm.pid)

    d, text = diagnose(jvm.pid)
    assert d.verdict == "blocked" and d.hung, text
    assert (d.root_cause.pid, d.root_cause.tid, d.root_cause.kind) == (jvm.pid, tids["holder"], "mutex"), text


def test_jvm_http_client_awaiting_a_reply_is_blocked_on_the_server(progs, mute, spawn_here):
    """java.net.http: the caller parks on a future, the selector thread polls
    the connection with timeouts, GC/JIT/pool threads keep time: the server
    owes the reply."""
    server, port = mute
    client = _start(spawn_here, ["java", "-Xmx64m", "-cp", progs["java"], "HClient", str(port)], "sent")
    _quiet(client.pid)
    d, text = _blocked_on(client.pid, server)
    assert "possibly by design" in d.summary, text


def test_jvm_sleep_loop_is_idle_and_a_client_of_a_stopped_server_is_blocked_on_it(progs, spawn_here):
    jvm = _start(spawn_here, ["java", "-Xmx64m", "-cp", progs["java"], "SleepLoop"])
    _quiet(jvm.pid)
    d, text = diagnose(jvm.pid)
    assert d.verdict == "idle" and d.root_cause.pid == jvm.pid, text

    port = free_port()
    srv = _start(spawn_here, ["node", progs["node"], "mute", str(port)])
    os.kill(srv.pid, signal.SIGSTOP)
    wait_state(lambda: proc_state(srv.pid) == "T", what="the server stopped")
    client = _start(spawn_here, ["java", "-Xmx64m", "-cp", progs["java"], "Client", str(port)], "sent")
    try:
        _blocked_on(client.pid, srv.pid, "signal-stop")
    finally:
        os.kill(srv.pid, signal.SIGCONT)


#: a server in another network namespace: accepts connections and never answers
MUTE_PY = """import socket, sys
srv = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
held = []
while True:
    held.append(srv.accept())
"""


@pytest.fixture
def other_netns(spawn_here):
    """A network namespace joined to this one by a veth pair: (name, its address)."""
    name, a, b = f"pyi{os.getpid() % 100000}", f"pyv{os.getpid() % 100000}a", f"pyv{os.getpid() % 100000}b"
    ip = shutil.which("ip") or "/usr/sbin/ip"
    cmds = [["netns", "add", name], ["link", "add", a, "type", "veth", "peer", "name", b],
            ["link", "set", b, "netns", name], ["addr", "add", "10.233.7.1/24", "dev", a], ["link", "set", a, "up"],
            ["-n", name, "addr", "add", "10.233.7.2/24", "dev", b], ["-n", name, "link", "set", b, "up"]]
    try:
        for c in cmds:
            subprocess.run([ip, *c], check=True)
        yield name, "10.233.7.2"
    finally:
        spawn_here.cleanup()
        subprocess.run([ip, "link", "del", a], stderr=subprocess.DEVNULL)
        subprocess.run([ip, "netns", "del", name], stderr=subprocess.DEVNULL)


def test_jvm_client_of_a_server_in_another_network_namespace_is_blocked_on_that_address(progs, spawn_here,
                                                                                       other_netns):
    """The reply is owed by a peer this machine's tables do not show (a container,
    another host): blocked on its address, no pid blamed."""
    ns, addr = other_netns
    port = free_port()
    _start(spawn_here, ["ip", "netns", "exec", ns, sys.executable, "-c", MUTE_PY, str(port)])
    client = _start(spawn_here, ["java", "-Xmx64m", "-cp", progs["java"], "Client", str(port), addr], "sent")
    d, text = _blocked_on(client.pid, None)
    assert f"{addr}]:{port}" in d.root_cause.resource and "outside this machine" in d.summary, text


def test_jvm_spinning_thread_is_busy_beside_its_housekeeping(progs, spawn_here):
    """A Java thread in an endless loop: on CPU, no syscalls, no I/O of its own;
    the JVM's periodic threads time out in futex waits all along (syscalls that
    are not its progress): busy."""
    jvm = _start(spawn_here, ["java", "-Xmx64m", "-cp", progs["java"], "Spin"])
    _quiet(jvm.pid)

    def compiled():     # the JIT compilers are done with the loop: only it runs
        for _ in range(5):
            if sum(proc_state(jvm.pid, int(t)) == "R" for t in os.listdir(f"/proc/{jvm.pid}/task")) > 1:
                return False
            time.sleep(0.1)
        return True
    wait_state(compiled, timeout=20, what="only the spinning thread on CPU")
    d, text = diagnose(jvm.pid)
    assert d.verdict == "busy" and d.root_cause.pid == jvm.pid, text
    assert d.root_cause.tid != jvm.pid, text      # the Java main thread, not the launcher's


# --------------------------------------------------------------------------
# Go
# --------------------------------------------------------------------------

def test_go_http_server_idle_then_under_load(progs, spawn_here):
    port = free_port()
    srv = _start(spawn_here, [progs["go"], "http", str(port)])
    _idle_then_loaded(spawn_here, srv.pid, port)


def test_go_client_awaiting_a_reply_is_blocked_on_the_server(progs, mute, spawn_here):
    """The netpoller waits on the socket and the runtime's wake-up pipe while
    sysmon sleeps with a timeout: nothing of its own will come; the server owes
    the reply."""
    server, port = mute
    client = _start(spawn_here, [progs["go"], "get", str(port)], "sent")
    _asleep(client.pid)
    d, text = _blocked_on(client.pid, server)
    assert "possibly by design" in d.summary, text     # the server is alive and idle


def test_go_reader_of_a_pipe_is_judged_by_its_writer(progs, spawn_here):
    """A goroutine reading stdin into a channel: idle while the writer sleeps
    (it wakes by itself), blocked on the writer once it is stopped."""
    writer = spawn_here(["sh", "-c", "echo hi; exec sleep 600"], stdout=subprocess.PIPE)
    reader = spawn_here([progs["go"], "lines"], stdin=writer.stdout, stdout=subprocess.PIPE)
    writer.stdout.close()
    wait_for_line(reader.stdout, "got hi")
    _asleep(reader.pid)
    d, text = diagnose(reader.pid)
    assert d.verdict == "idle" and d.root_cause.pid == reader.pid, text

    os.kill(writer.pid, signal.SIGSTOP)
    wait_state(lambda: proc_state(writer.pid) == "T", what="the writer stopped")
    _blocked_on(reader.pid, writer.pid, "signal-stop")


# --------------------------------------------------------------------------
# Node.js
# --------------------------------------------------------------------------

def test_node_http_server_idle_then_under_load(progs, spawn_here):
    port = free_port()
    srv = _start(spawn_here, ["node", progs["node"], "http", str(port)])
    _idle_then_loaded(spawn_here, srv.pid, port)


def test_node_client_awaiting_a_reply_is_blocked_on_the_server(progs, mute, spawn_here):
    """libuv's loop polls a self-pipe, an eventfd (its own wake-up channel) and
    the socket, its workers asleep: the server owes the reply."""
    server, port = mute
    client = _start(spawn_here, ["node", progs["node"], "get", str(port)], "sent")
    _asleep(client.pid)
    d, text = _blocked_on(client.pid, server)
    assert "possibly by design" in d.summary, text

    d, text = diagnose(server)        # the server that does not answer waits for clients
    assert d.verdict == "idle" and d.root_cause.pid == server, text


def test_node_stuck_event_loop_is_busy(progs, spawn_here):
    """`while (true) {}`: on CPU, no syscalls, no I/O: busy, not idle, not progressing."""
    spin = _start(spawn_here, ["node", progs["node"], "spin"])
    d, text = diagnose(spin.pid)
    assert d.verdict == "busy" and d.root_cause.pid == spin.pid, text


def test_node_parent_collecting_a_childs_output_is_judged_by_the_child(progs, spawn_here):
    """execFile: the loop polls socketpairs whose other ends are the child's
    stdout and stderr: idle while the child sleeps (as a parent in wait4 on it),
    blocked on it once it is stopped."""
    parent = spawn_here(["node", progs["node"], "spawn"], stdout=subprocess.PIPE, text=True)
    child = int(wait_for_line(parent.stdout, "child").split()[1])
    _asleep(parent.pid)
    wait_state(lambda: proc_state(child) == "S", what="the child asleep")
    d, text = diagnose(parent.pid)
    assert d.verdict == "idle" and d.root_cause.pid == parent.pid, text

    os.kill(child, signal.SIGSTOP)
    wait_state(lambda: proc_state(child) == "T", what="the child stopped")
    _blocked_on(parent.pid, child, "signal-stop")
