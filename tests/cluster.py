"""Simulated nodes on this machine, for the cross-node tests.

Each node is a network namespace joined to a "switch" namespace (a bridge)
by a veth pair, and runs a real OpenSSH server started by the test with a
test-only key. The client (``pyimpact diagnose --job``) runs in the switch
namespace, whose only route is the bridge: no namespace here has a default
route, so no packet can leave the machine, and every address is checked with
``ip route get`` before it is used. The addresses are from 198.18.0.0/15, the
range set aside for benchmarking networks, and exist only inside these
namespaces.

Everything started here is stopped by the process group it was started in,
then by the namespace (``ip netns pids``) the test created, and the
namespaces are deleted.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

from conftest import kill_group_and_reap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBNET = "198.18.7"


def wait_for_text(path: str, needle: str, timeout: float = 90.0) -> None:
    """Wait until the file at ``path`` (a job's log) contains ``needle``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path) as f:
            if needle in f.read():
                return
        time.sleep(0.2)
    with open(path) as f:
        raise AssertionError(f"never saw {needle!r} in {path}: {f.read()[-2000:]}")


def rank_pids(port: int) -> Dict[int, int]:
    """{RANK: pid} of the ranks of the job whose MASTER_PORT is ``port``, from
    their environment (torchrun's agents have no LOCAL_RANK)."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = dict(x.split(b"=", 1) for x in f.read().split(b"\0") if b"=" in x)
        except OSError:
            continue
        if env.get(b"MASTER_PORT") == str(port).encode() and b"RANK" in env and b"LOCAL_RANK" in env:
            out[int(env[b"RANK"])] = int(name)
    return out


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class Cluster:
    """``nodes`` simulated nodes named node-0 .. node-N-1, plus the client."""

    def __init__(self, workdir: str, nodes: int, *, without_pyimpact: tuple = (), sshd_down: tuple = ()):
        self.workdir = workdir
        self.prefix = f"pyi{os.getpid() % 100000}"
        self.client = f"{self.prefix}-sw"
        self.names = [f"node-{i}" for i in range(nodes)]
        self.netns = {n: f"{self.prefix}-{i}" for i, n in enumerate(self.names)}
        self.addr = {n: f"{SUBNET}.{i + 1}" for i, n in enumerate(self.names)}
        self.without_pyimpact = set(without_pyimpact)
        self.sshd_down = set(sshd_down)
        self.procs: List[subprocess.Popen] = []
        self.key = os.path.join(workdir, "id_test")
        self.ssh_config = os.path.join(workdir, "ssh_config")
        self.hosts_file = os.path.join(workdir, "hosts")

    # -- network --------------------------------------------------------------
    def _network(self) -> None:
        for ns in [self.client, *self.netns.values()]:
            # A run killed before its teardown (SIGKILL, a SIGTERM'd pytest) leaves its
            # namespaces; ours are named after our pid, so one of that name is stale.
            ip("netns", "del", ns, check=False)
        ip("netns", "add", self.client)
        ip("-n", self.client, "link", "set", "lo", "up")
        ip("-n", self.client, "link", "add", "br0", "type", "bridge")
        ip("-n", self.client, "addr", "add", f"{SUBNET}.254/24", "dev", "br0")
        ip("-n", self.client, "link", "set", "br0", "up")
        for i, name in enumerate(self.names):
            ns, inside, outside = self.netns[name], f"{self.prefix}v{i}a", f"{self.prefix}v{i}b"
            ip("netns", "add", ns)
            ip("link", "add", inside, "type", "veth", "peer", "name", outside)
            ip("link", "set", inside, "netns", ns)
            ip("link", "set", outside, "netns", self.client)
            ip("-n", ns, "link", "set", inside, "name", "eth0")
            ip("-n", ns, "addr", "add", f"{self.addr[name]}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", self.client, "link", "set", outside, "master", "br0", "up")
        for name in self.names:   # every address is reached through the test's own bridge
            route = subprocess.run([*self.enter(), "ip", "route", "get", self.addr[name]], capture_output=True,
                                   text=True, check=True).stdout
            assert " dev br0 " in route, route

    # -- ssh ------------------------------------------------------------------
    def _ssh(self) -> None:
        os.makedirs("/run/sshd", exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.key], check=True)
        hostkey = os.path.join(self.workdir, "host_key")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostkey], check=True)
        auth = os.path.join(self.workdir, "authorized_keys")
        with open(self.key + ".pub") as src, open(auth, "w") as dst:
            dst.write(src.read())
        os.chmod(auth, 0o600)
        bindir = os.path.join(self.workdir, "bin")
        os.makedirs(bindir, exist_ok=True)
        wrapper = os.path.join(bindir, "pyimpact")
        with open(wrapper, "w") as f:   # what an installed pyimpact is on a node
            f.write(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m pyimpact \"$@\"\n")
        os.chmod(wrapper, 0o755)
        for name in self.names:
            path = f"{bindir}:/usr/bin:/bin" if name not in self.without_pyimpact else "/usr/bin:/bin"
            cfg = os.path.join(self.workdir, f"sshd_{name}")
            with open(cfg, "w") as f:
                f.write(f"ListenAddress {self.addr[name]}\nPort 22\nHostKey {hostkey}\n"
                        f"AuthorizedKeysFile {auth}\nPermitRootLogin prohibit-password\n"
                        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                        f"StrictModes no\nPidFile none\nLogLevel ERROR\nSetEnv PATH={path}\n")
            if name in self.sshd_down:
                continue
            self.procs.append(subprocess.Popen(
                [*self.enter(name), "/usr/sbin/sshd", "-D", "-e", "-f", cfg],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                start_new_session=True))
        with open(self.ssh_config, "w") as f:
            for name in self.names:
                f.write(f"Host {name}\n  HostName {self.addr[name]}\n  User root\n  IdentityFile {self.key}\n"
                        "  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
                        "  BindInterface br0\n  LogLevel ERROR\n  ConnectTimeout 3\n")
        with open(self.hosts_file, "w") as f:
            f.write("# simulated nodes\n" + "".join(f"{n}\n" for n in self.names))
        deadline = time.monotonic() + 20
        for name in self.names:
            if name in self.sshd_down:
                continue
            while True:
                r = self.client_run(["ssh", "-F", self.ssh_config, name, "true"], timeout=10)
                if r.returncode == 0:
                    break
                assert time.monotonic() < deadline, f"sshd on {name} never answered: {r.stderr}"
                time.sleep(0.2)

    def __enter__(self) -> "Cluster":
        try:
            self._network()
            self._ssh()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- running things -------------------------------------------------------
    def enter(self, node: Optional[str] = None) -> List[str]:
        """The command prefix that runs in a node's (or the client's) network
        namespace. nsenter switches only the network namespace: ``ip netns exec``
        would also remount /sys, hiding tracefs, which a real node has."""
        ns = self.netns[node] if node is not None else self.client
        return ["nsenter", f"--net=/run/netns/{ns}"]

    def client_run(self, argv: List[str], timeout: float = 60, env: Optional[Dict[str, str]] = None):
        """Run ``argv`` in the client namespace and wait for it."""
        return subprocess.run([*self.enter(), *argv], capture_output=True, text=True,
                              timeout=timeout, env=env)

    def start(self, node: str, argv: List[str], *, env: Optional[Dict[str, str]] = None, **kw) -> subprocess.Popen:
        """Start ``argv`` on ``node`` in a process group of its own."""
        proc = subprocess.Popen([*self.enter(node), *argv], env=env,
                                start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            kill_group_and_reap(proc)
        for ns in list(self.netns.values()) + [self.client]:
            pids = ip("netns", "pids", ns, check=False).stdout.split()
            for pid in pids:    # anything still in a namespace this test created
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            ip("netns", "del", ns, check=False)
