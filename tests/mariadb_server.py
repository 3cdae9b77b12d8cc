"""A private MariaDB server, and an InnoDB row-lock wait between two sessions.

Used by the verdict tests (tests/test_diagnose_real.py) and the time-to-verdict
bench (scripts/bench/real_targets.py): the same real state in both, started one
way.  The server is our own ``mariadbd`` with a fresh datadir from
``mariadb-install-db``, a private unix socket and 127.0.0.1 on a free port
(root by unix_socket authentication, an ``app`` user for TCP), in a session of
its own started through the caller's ``spawn`` (tests/conftest.Spawner or
scripts/bench/common.Procs), which stops and reaps it.

Why the waits look as they do: under load (a full suite beside other jobs on
two cores) every step takes seconds, so the server is ready when it answers a
query on both its socket and its port, not when a port accepts; the row-lock
wait is there when InnoDB itself reports the waiter's transaction in LOCK WAIT
on the holder's (INNODB_LOCK_WAITS joined with INNODB_TRX, by connection id);
each wait has a generous deadline, fails at once when a session it waits on
has exited (with that session's own error), and says what it last saw.

No pytest here: the bench imports this module too.
"""
from __future__ import annotations

import os
import pwd
import select
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

LOCK_WAIT_TIMEOUT_S = 3600         # the blocked UPDATE waits for as long as anyone looks at it
WAITER_SQL = "UPDATE t.acct SET v = v + 10 WHERE id = 1"
TOOLS = ("mariadb-install-db", "mariadbd", "mariadb")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path is None:
        raise RuntimeError(f"{name} is not installed (tests/apt-packages.txt lists mariadb-server, mariadb-client)")
    return path


@dataclass
class MariaDB:
    """A running server of ours: its process, directory, socket and port."""

    proc: subprocess.Popen
    base: str
    sock: str
    port: int

    @property
    def pid(self) -> int:
        return self.proc.pid

    def root_argv(self) -> List[str]:
        return [_tool("mariadb"), "--no-defaults", "-S", self.sock, "-u", "root"]

    def app_argv(self) -> List[str]:
        return [_tool("mariadb"), "--no-defaults", "-h", "127.0.0.1", "-P", str(self.port), "-u", "app"]

    def sql(self, query: str, timeout: float = 60.0) -> str:
        """One batch as root over the socket; its output without column names."""
        return subprocess.run(self.root_argv() + ["-N", "-B", "-e", query], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout, check=True).stdout.strip()

    def err_log(self, n: int = 1500) -> str:
        try:
            with open(os.path.join(self.base, "err.log"), errors="replace") as f:
                return f.read()[-n:]
        except OSError as e:
            return f"(no error log: {e})"

    def remove(self) -> None:
        """The directory (call after the caller's cleanup stopped the server)."""
        shutil.rmtree(self.base, ignore_errors=True)


def _until(pred: Callable[[], Optional[str]], timeout: float, what: str, interval: float = 0.1,
           detail: Callable[[], str] = lambda: "") -> None:
    """Poll ``pred`` (None: done; else what it saw) until ``timeout``; raise with
    the last sighting and ``detail()`` (the server's own view)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = pred()
        if seen is None:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {seen}"
                                 + (f"; {detail()}" if detail else ""))
        time.sleep(interval)


def start_mariadb(spawn, prefix: str = "pyimpact-mariadb-", timeout: float = 120.0) -> MariaDB:
    """Our own server with database ``t`` (table ``acct``: rows 1 and 2) and the ``app`` user."""
    for tool in TOOLS:
        _tool(tool)
    pw = pwd.getpwnam("mysql")
    base = tempfile.mkdtemp(prefix=prefix)
    os.chown(base, pw.pw_uid, pw.pw_gid)
    data, sock = os.path.join(base, "data"), os.path.join(base, "sock")
    subprocess.run([_tool("mariadb-install-db"), "--no-defaults", "--user=mysql", f"--datadir={data}",
                    "--auth-root-authentication-method=socket", "--skip-test-db"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=base, timeout=300)
    port = _free_port()
    proc = spawn([_tool("mariadbd"), "--no-defaults", "--user=mysql", f"--datadir={data}", f"--socket={sock}",
                  "--bind-address=127.0.0.1", f"--port={port}", f"--pid-file={base}/pid",
                  f"--log-error={base}/err.log", "--skip-log-bin", "--innodb-buffer-pool-size=16M",
                  f"--innodb-lock-wait-timeout={LOCK_WAIT_TIMEOUT_S}", "--max-connections=50",
                  "--skip-name-resolve"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=base)
    db = MariaDB(proc, base, sock, port)
    try:
        return _prepare(db, timeout)
    except BaseException:
        db.remove()             # the caller's cleanup stops the server
        raise


def _prepare(db: MariaDB, timeout: float = 120.0) -> MariaDB:
    """Wait until the server answers on its socket, create the schema, and
    check that its TCP port reaches this server."""
    proc, sock, port = db.proc, db.sock, db.port

    def alive() -> None:
        if proc.poll() is not None:
            raise AssertionError(f"mariadbd exited with {proc.returncode}: {db.err_log()}")

    def ready() -> Optional[str]:
        alive()
        try:
            db.sql("SELECT 1", timeout=30)
            return None
        except (OSError, subprocess.SubprocessError) as e:
            return f"{type(e).__name__}: {(getattr(e, 'stderr', None) or str(e)).strip()}"
    _until(ready, timeout, "mariadbd to answer on its socket", detail=db.err_log)
    db.sql("CREATE DATABASE t; CREATE TABLE t.acct (id INT PRIMARY KEY, v INT) ENGINE=InnoDB; "
           "INSERT INTO t.acct VALUES (1, 0), (2, 0); "
           "CREATE USER 'app'@'127.0.0.1'; GRANT ALL ON t.* TO 'app'@'127.0.0.1';")

    def tcp() -> Optional[str]:
        # the port is ours only if the server behind it is this one (its socket is ours)
        alive()
        try:
            got = subprocess.run(db.app_argv() + ["-N", "-B", "-e", "SELECT @@socket"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, timeout=30, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError) as e:
            return f"{type(e).__name__}: {(getattr(e, 'stderr', None) or str(e)).strip()}"
        if got != sock:
            raise AssertionError(f"127.0.0.1:{port} is another server's (its socket: {got})")
        return None
    _until(tcp, timeout, f"mariadbd to answer as app on 127.0.0.1:{port}", detail=db.err_log)
    return db


@dataclass
class RowLockWait:
    """Session A (``holder``, over TCP as ``app``) holds row 1 idle in its open
    transaction; session B (``waiter``, over the socket as root) waits in its
    UPDATE of that row.  The connection ids are the server's."""

    holder: subprocess.Popen
    waiter: subprocess.Popen
    holder_conn: int
    waiter_conn: int


def lock_waits(db: MariaDB) -> List[Tuple[int, int, str]]:
    """(waiting connection, blocking connection, the waiting statement) of every InnoDB row-lock wait."""
    out = db.sql("SELECT r.trx_mysql_thread_id, b.trx_mysql_thread_id, r.trx_query "
                 "FROM information_schema.INNODB_LOCK_WAITS w "
                 "JOIN information_schema.INNODB_TRX r ON r.trx_id = w.requesting_trx_id "
                 "JOIN information_schema.INNODB_TRX b ON b.trx_id = w.blocking_trx_id "
                 "WHERE r.trx_state = 'LOCK WAIT'", timeout=30)
    rows = []
    for line in out.splitlines():
        a, b, q = (line.split("\t", 2) + ["", ""])[:3]
        rows.append((int(a), int(b), q))
    return rows


def _exited(p: subprocess.Popen, who: str) -> str:
    err = p.stderr.read() if p.stderr else ""
    return f"{who} exited with {p.returncode}: {err.strip()[-500:] or '(no message)'}"


def _line(p: subprocess.Popen, timeout: float) -> str:
    """The next line of ``p``'s stdout ('' at EOF), within ``timeout``."""
    r, _, _ = select.select([p.stdout], [], [], timeout)
    if not r:
        raise AssertionError(f"pid {p.pid} said nothing in {timeout:.0f} s")
    return p.stdout.readline()


def row_lock_wait(spawn, db: MariaDB, timeout: float = 120.0) -> RowLockWait:
    """Start A and B and return once InnoDB reports B's UPDATE waiting for A's lock."""
    holder = spawn(db.app_argv() + ["-N", "--unbuffered", "t"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE, text=True)
    holder.stdin.write("BEGIN;\nUPDATE acct SET v = v + 1 WHERE id = 1;\nSELECT 'locked', CONNECTION_ID();\n")
    holder.stdin.flush()
    line = _line(holder, timeout)            # the client answers, or exits (EOF) on an error
    if "locked" not in line:
        holder.wait(timeout=30)
        raise AssertionError(_exited(holder, "session A (the lock holder)"))
    holder_conn = int(line.split()[1])
    waiter = spawn(db.root_argv() + ["-e", WAITER_SQL], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, text=True)
    found: List[int] = []

    def waiting() -> Optional[str]:
        if waiter.poll() is not None:
            raise AssertionError(_exited(waiter, "session B (the UPDATE that should wait)"))
        if holder.poll() is not None:
            raise AssertionError(_exited(holder, "session A (the lock holder)"))
        try:
            rows = lock_waits(db)
        except (OSError, subprocess.SubprocessError) as e:
            return f"the lock-wait query failed: {getattr(e, 'stderr', None) or e}"
        mine = [r for r in rows if r[1] == holder_conn and r[2] == WAITER_SQL]
        if len(mine) == 1:
            found.append(mine[0][0])
            return None
        return f"lock waits {rows} (want B's UPDATE waiting on connection {holder_conn})"
    def sessions() -> str:
        try:
            return "sessions (id, user, command, state, statement): " + db.sql(
                "SELECT ID, USER, COMMAND, STATE, INFO FROM information_schema.PROCESSLIST", timeout=30)
        except (OSError, subprocess.SubprocessError) as e:
            return f"the process list could not be read: {e}"
    _until(waiting, timeout, "session B's UPDATE to wait for session A's row lock", interval=0.2, detail=sessions)
    return RowLockWait(holder, waiter, holder_conn, found[0])
