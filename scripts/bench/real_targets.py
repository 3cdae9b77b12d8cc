"""Real third-party programs in real states, for the time-to-verdict bench.

Each ``start_*`` starts what it needs in sessions of its own (Procs), on
127.0.0.1 with its own data directory and port, waits until the state is
reached, and returns the pid to diagnose; ``Procs`` cleanup reaps them.
The same states the verdict tests use (tests/test_diagnose_real.py).
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from .common import PY, ROOT, Procs

TARGETS = ROOT / "tests" / "targets"
sys.path.insert(0, str(ROOT / "tests"))      # the helpers the tests share with the bench, as job_nodes does
from mariadb_server import row_lock_wait, start_mariadb  # noqa: E402
NGINX_CONF = """daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  server {{ listen 127.0.0.1:{port}; location / {{ return 200 "ok"; }} }}
}}
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _until(pred, what: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if pred():
                return
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def _listening(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    return s[s.rindex(")") + 2]


def _children(pid: int) -> list:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def start_nginx_idle(procs: Procs, tmp: str) -> int:
    d = tempfile.mkdtemp(dir=tmp, prefix="nginx-")
    port = _port()
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF.format(d=d, port=port))
    m = procs.spawn([shutil.which("nginx") or "/usr/sbin/nginx", "-p", d, "-c", os.path.join(d, "nginx.conf"),
                     "-e", os.path.join(d, "error.log")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _until(lambda: _listening(port), "nginx")
    _until(lambda: _children(m.pid) and _state(m.pid) == "S", "nginx asleep")
    return m.pid


def _redis(procs: Procs, tmp: str):
    d = tempfile.mkdtemp(dir=tmp, prefix="redis-")
    port = _port()
    srv = procs.spawn(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                       "no", "--dir", d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _until(lambda: _listening(port), "redis")
    return srv, port


def _clients(port: int) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), "CLIENT", "LIST"], stdout=subprocess.PIPE, text=True,
                          timeout=10).stdout


def start_redis_blpop(procs: Procs, tmp: str) -> int:
    _, port = _redis(procs, tmp)
    cli = procs.spawn(["redis-cli", "-p", str(port), "BLPOP", "jobs", "0"], stdout=subprocess.DEVNULL)
    _until(lambda: "cmd=blpop" in _clients(port), "a client in BLPOP")
    return cli.pid


def start_redis_benchmark(procs: Procs, tmp: str) -> int:
    srv, port = _redis(procs, tmp)
    procs.spawn(["redis-benchmark", "-p", str(port), "-n", "100000000", "-c", "2", "-q", "-t", "get"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _until(lambda: "cmd=get" in _clients(port), "the benchmark")
    return srv.pid


PSQL = ["psql", "-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"]


def _postgres(procs: Procs, tmp: str):
    bindir = os.path.dirname(sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))[-1])
    pw = pwd.getpwnam("postgres")
    base = tempfile.mkdtemp(prefix="pyimpact-bench-pg-")
    os.chown(base, pw.pw_uid, pw.pw_gid)
    data, sock = os.path.join(base, "data"), os.path.join(base, "sock")
    as_pg = dict(user=pw.pw_uid, group=pw.pw_gid, cwd=base)
    subprocess.run([os.path.join(bindir, "initdb"), "-D", data, "-U", "postgres", "-A", "peer", "--auth-host=trust",
                    "-N"], check=True, stdout=subprocess.DEVNULL, **as_pg)
    os.mkdir(sock)
    os.chown(sock, pw.pw_uid, pw.pw_gid)
    port = _port()
    procs.spawn([os.path.join(bindir, "postgres"), "-D", data, "-k", sock, "-p", str(port), "-c",
                 "listen_addresses=127.0.0.1", "-c", "fsync=off"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, **as_pg)
    _until(lambda: _listening(port), "postgres")
    sql = lambda q: subprocess.run(PSQL + ["-p", str(port), "-c", q], stdout=subprocess.PIPE, text=True,  # noqa
                                   timeout=20, check=True).stdout.strip()
    _until(lambda: sql("SELECT 1") == "1", "postgres ready")
    return port, sql


def start_pg_rowlock(procs: Procs, tmp: str) -> int:
    port, sql = _postgres(procs, tmp)
    sql("CREATE TABLE acct(id int PRIMARY KEY, v int); INSERT INTO acct VALUES (1, 0)")
    holder = procs.spawn(PSQL + ["-p", str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    holder.stdin.write("BEGIN;\nUPDATE acct SET v = v + 1 WHERE id = 1;\nSELECT 'locked';\n")
    holder.stdin.flush()
    while "locked" not in holder.stdout.readline():
        pass
    waiter = procs.spawn(PSQL + ["-p", str(port), "-c", "UPDATE acct SET v = 2 WHERE id = 1"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _until(lambda: sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'") == "1", "lock wait")
    return waiter.pid


def start_pg_sleep(procs: Procs, tmp: str) -> int:
    port, sql = _postgres(procs, tmp)
    cli = procs.spawn(PSQL + ["-p", str(port), "-c", "SELECT pg_sleep(3600)"], stdout=subprocess.DEVNULL)
    _until(lambda: sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'") == "1", "pg_sleep")
    return cli.pid


def start_tar_gzip(procs: Procs, tmp: str) -> int:
    data = "/usr/lib/x86_64-linux-gnu" if os.path.isdir("/usr/lib/x86_64-linux-gnu") else "/usr/lib"
    sh = procs.spawn(["sh", "-c", f"while :; do tar cf - {data} 2>/dev/null | gzip -1 > /dev/null; done"])
    _until(lambda: any(len(_children(c)) == 0 for c in _children(sh.pid)) and len(_children(sh.pid)) == 2,
           "tar and gzip")
    return sorted(_children(sh.pid))[0]


def start_sqlite_busy(procs: Procs, tmp: str) -> int:
    db = os.path.join(tmp, f"bench-{time.monotonic_ns()}.db")
    subprocess.run(["sqlite3", db, "CREATE TABLE t(x)"], check=True)
    holder = procs.spawn(["sqlite3", db], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    holder.stdin.write("BEGIN EXCLUSIVE;\nINSERT INTO t VALUES(1);\nSELECT 'held';\n")
    holder.stdin.flush()
    while "held" not in holder.stdout.readline():
        pass
    waiter = procs.spawn(["sqlite3", "-cmd", ".timeout 3600000", db, "INSERT INTO t VALUES(2);"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return waiter.pid


def start_gloo_stall(procs: Procs, tmp: str) -> int:
    job = procs.spawn([PY, str(TARGETS / "gloo_job.py"), str(_port()), "stall"], stdout=subprocess.PIPE, text=True)
    ranks = {}
    for line in job.stdout:
        if line.startswith("rank "):
            ranks[int(line.split()[1])] = int(line.split()[3])
        if "stalled" in line:
            break
    time.sleep(1.0)
    return ranks[0]


def start_mariadb_rowlock(procs: Procs, tmp: str) -> int:
    """Our own mariadbd; session A holds a row lock idle in its transaction,
    session B's UPDATE waits for it (tests/mariadb_server.py, as the verdict test)."""
    db = start_mariadb(procs.spawn, prefix="pyimpact-bench-mariadb-")
    return row_lock_wait(procs.spawn, db).waiter.pid


REAL = {
    "nginx-idle": start_nginx_idle,
    "redis-blpop": start_redis_blpop,
    "redis-benchmark": start_redis_benchmark,
    "pg-rowlock": start_pg_rowlock,
    "pg-sleep": start_pg_sleep,
    "tar-gzip": start_tar_gzip,
    "sqlite-busy": start_sqlite_busy,
    "mariadb-rowlock": start_mariadb_rowlock,
    "gloo-stall": start_gloo_stall,
}


def cleanup_pg_dirs() -> None:
    for pat in ("pyimpact-bench-pg-*", "pyimpact-bench-mariadb-*"):
        for d in glob.glob(os.path.join(tempfile.gettempdir(), pat)):
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":   # a quick look: start one, print its pid, wait
    p = Procs()
    try:
        print(REAL[sys.argv[1]](p, tempfile.mkdtemp()), flush=True)
        time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 30)
    finally:
        p.cleanup() if hasattr(p, "cleanup") else None
