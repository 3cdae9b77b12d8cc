"""The error boundary of every /proc read, and the deadline-bounded workers.

Two promises of the procfs package live here:

* **One error boundary.**  Every system call on /proc goes through
  ``sys_call``, which maps ENOENT/ESRCH to ``psutil.NoSuchProcess`` and
  EACCES/EPERM to ``psutil.AccessDenied`` (psutil's own classes, so callers
  handle one set of exceptions).  Other errnos stay OSError.

* **A stuck target must not stick the tool.**  Some /proc files take locks of
  the process they describe (``cmdline``, ``environ``, ``smaps_rollup`` and
  ``mem`` take its mmap lock; ``stack`` and ``syscall`` its exec lock), and a
  process stuck holding one is exactly what ``diagnose`` is asked about (``ps``
  hangs on such processes).  Such reads run on daemon worker threads under a
  deadline (``run_bounded``, ``read_bounded``): what was read in time is kept,
  and a read that did not return is named (``ErrorNotes``, ``where_stuck``).
"""
from __future__ import annotations

import errno
import os
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import psutil

PROC = "/proc"


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


#: path each thread is reading right now (thread ident -> path), so a read
#: that never returns can be named in ``errors``.
_WHERE: Dict[int, str] = {}


def map_oserror(err: OSError, pid: int) -> BaseException:
    """The psutil exception for an OSError met while reading /proc/``pid``.

    Other errnos (EIO, EINVAL, ...) stay OSError: they mean something other
    than "gone" or "not allowed", and the caller reports them as they are.
    """
    if err.errno in (errno.ENOENT, errno.ESRCH):
        return psutil.NoSuchProcess(pid)
    if err.errno in (errno.EACCES, errno.EPERM):
        return psutil.AccessDenied(pid)
    return err


def sys_call(pid: int, fn: Callable[..., Any], path: str, *args: Any) -> Any:
    """Call ``fn(path, *args)`` for process ``pid``: THE error boundary of this module."""
    _WHERE[threading.get_ident()] = path
    try:
        return fn(path, *args)
    except OSError as err:
        raise map_oserror(err, pid) from None


def _read_all(path: str) -> bytes:
    """Whole content of a /proc file (seq files may need several reads)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                return b"".join(chunks)
            chunks.append(b)
    finally:
        os.close(fd)


def read(path: str, pid: int) -> bytes:
    """Read a /proc file of ``pid`` through the boundary."""
    return sys_call(pid, _read_all, path)


def where_stuck(thread_ident: Optional[int]) -> str:
    """The path the worker thread ``thread_ident`` was reading last ("?" if none)."""
    return _WHERE.get(thread_ident or 0, "?")


def reason_of(err: BaseException) -> str:
    """Short reason for ``errors`` lines."""
    if isinstance(err, psutil.AccessDenied):
        return "permission denied"
    if isinstance(err, psutil.NoSuchProcess):
        return "gone"
    if isinstance(err, OSError) and err.errno:
        return os.strerror(err.errno)
    return f"{type(err).__name__}: {err}"


class ErrorNotes:
    """Collects "what could not be read and why", merging repeats per process
    (20 threads with unreadable stacks make one line, not 20)."""

    def __init__(self) -> None:
        self.counts: Dict[Tuple[str, str, str], int] = {}

    def add(self, who: str, what: str, err: Any) -> None:
        """Note that ``what`` of ``who`` ("pid 12") could not be read because of ``err``."""
        reason = err if isinstance(err, str) else reason_of(err)
        key = (who, what, reason)
        self.counts[key] = self.counts.get(key, 0) + 1

    def merge(self, other: "ErrorNotes") -> None:
        """Add the notes of another collector."""
        for k, n in other.counts.items():
            self.counts[k] = self.counts.get(k, 0) + n

    def lines(self) -> List[str]:
        """One line per distinct (who, what, why)."""
        out = []
        for (who, what, reason), n in self.counts.items():
            times = f" ({n} times)" if n > 1 else ""
            out.append(f"{who}: {what} ({reason}){times}")
        return out


class Slot:
    """What one worker did for one item: its result or error, its error notes,
    and the partly filled record if it did not finish."""

    def __init__(self, item: Any) -> None:
        self.item = item
        self.done = False
        self.started = False
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.errs = ErrorNotes()
        self.holder: Dict[str, Any] = {}
        self.thread_ident: Optional[int] = None


def run_bounded(fn: Callable[[Any, ErrorNotes, Dict[str, Any]], Any], items: Sequence[Any],
                 deadline_ns: int, workers: int = 4) -> List[Slot]:
    """Run ``fn(item, errs, holder)`` for each item on up to ``workers`` daemon
    threads, waiting until ``deadline_ns`` (monotonic) at most.

    Daemon threads, because a read may never return (see the module
    docstring); such a thread is abandoned and ends with the interpreter.
    """
    slots = [Slot(it) for it in items]
    lock = threading.Lock()
    pending = list(reversed(slots))

    def loop() -> None:
        while True:
            with lock:
                if not pending or time.monotonic_ns() > deadline_ns:
                    return
                s = pending.pop()
                s.started, s.thread_ident = True, threading.get_ident()
            try:
                s.result = fn(s.item, s.errs, s.holder)
            except BaseException as e:  # handed to the caller, which decides
                s.error = e
            s.done = True
        _WHERE.pop(threading.get_ident(), None)

    threads = [threading.Thread(target=loop, name="pyimpact-procfs", daemon=True)
               for _ in range(min(workers, len(slots)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, (deadline_ns - time.monotonic_ns()) / 1e9))
    with lock:
        pending.clear()  # nothing starts after the deadline
    return slots


class _Reader:
    """One long-lived daemon thread that performs bounded reads, one at a time.

    Why: a thread per read cost about 75 µs of CPU (the recorder reads the
    environment of every exec'd process), while handing a read to a waiting
    thread costs a few µs.  A reader whose read did not return in time is
    abandoned: it is never handed another read, and ends when that read
    returns (or with the interpreter), so a stuck target still sticks no
    caller.
    """

    def __init__(self) -> None:
        self._job: Optional[Tuple[str, int]] = None
        self._box: Dict[str, Any] = {}
        self._wake = threading.Event()
        self._done = threading.Event()
        self._abandoned = False
        threading.Thread(target=self._run, name="pyimpact-procfs-read", daemon=True).start()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._job is None:  # released after an abandoned read finished late
                return
            path, pid = self._job
            box: Dict[str, Any] = {}
            try:
                box["data"] = read(path, pid)
            except BaseException as e:  # handed to the caller
                box["error"] = e
            finally:
                _WHERE.pop(threading.get_ident(), None)
            self._box = box
            self._done.set()
            if self._abandoned:
                return

    def read(self, path: str, pid: int, timeout_s: float) -> Optional[Dict[str, Any]]:
        """The read's result box, or None when it did not return in time (this
        reader is then abandoned)."""
        self._job = (path, pid)
        self._done.clear()
        self._wake.set()
        if not self._done.wait(timeout_s):
            self._abandoned = True
            if not self._done.is_set():
                return None
            self._job = None  # it finished just late: let its thread end
            self._wake.set()
        return self._box


_IDLE_READERS: List[_Reader] = []
_READERS_LOCK = threading.Lock()


def read_bounded(path: str, pid: int, timeout_s: float) -> bytes:
    """Read one /proc file of ``pid`` that may take one of its locks
    (cmdline, environ, stack, syscall, smaps, ...), waiting ``timeout_s`` at most.

    Raises what ``read`` raises, or TimeoutError when the read did not return
    in time (the target holds the lock: the reading thread is abandoned, a
    daemon that ends with the interpreter).  Readers that finished in time
    are kept for the next read (``_Reader``).
    """
    with _READERS_LOCK:
        reader = _IDLE_READERS.pop() if _IDLE_READERS else None
    if reader is None:
        reader = _Reader()
    box = reader.read(path, pid, timeout_s)
    if box is None:
        raise TimeoutError(f"reading {path} did not return within {timeout_s:g} s")
    if not reader._abandoned:
        with _READERS_LOCK:
            if len(_IDLE_READERS) < 8:
                _IDLE_READERS.append(reader)
    if "error" in box:
        raise box["error"]
    return box["data"]
