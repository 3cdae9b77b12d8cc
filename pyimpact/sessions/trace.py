"""The trace session: attach, run until the end of the request or a stop
signal, hand the Recording over while the probes are still attached, detach.

``StopFlag`` turns SIGINT/SIGTERM/SIGHUP into a reason to stop (every session
that runs a Tracer uses it); ``StatusLine`` is the live one-line status on a
terminal; ``run_trace`` is the loop `pyimpact trace` runs.  The Recording is
handed over (to be written, then rendered) before the probes are detached,
since detaching classic tracepoints waits for RCU grace periods.
``TimelineStream`` is where the events of `trace -o X.parquet` go while the
trace runs: the file and the summary's totals, batch by batch.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Callable, Optional

from ..formats import seconds


class StopFlag:
    """Turns SIGINT, SIGTERM and SIGHUP into a reason to stop, so the trace
    ends cleanly (summary, output file, probes detached) instead of dying
    mid-way: closing the terminal or the ssh session (SIGHUP) must not lose
    the recording.

    After SIGHUP the terminal is gone and writing to it fails (EIO), so the
    standard streams that were a terminal are pointed at /dev/null: the
    summary then goes nowhere, but the -o file is still written (a stream
    redirected to a file keeps getting the summary). A second SIGINT (Ctrl-C
    twice) aborts; a repeated SIGTERM or SIGHUP does not (a hangup often
    arrives twice: from the kernel and from the shell forwarding it)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.reason = ""
        self._old = {}
        self._ttys = []

    def __enter__(self):
        self._ttys = [fd for fd in (1, 2) if _isatty(fd)]
        for sig in self.SIGNALS:
            self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handler(self, signum, _frame):
        if signum == signal.SIGHUP:
            self._detach_terminal()
        if self.reason:
            if signum == signal.SIGINT and self.reason.endswith("SIGINT"):
                raise KeyboardInterrupt   # a second Ctrl-C: stop waiting for anything
            return
        self.reason = f"interrupted by {signal.Signals(signum).name}"

    def _detach_terminal(self) -> None:
        try:
            null = os.open(os.devnull, os.O_WRONLY)
        except OSError:
            return
        try:
            for fd in self._ttys:
                try:
                    os.dup2(null, fd)
                except OSError:
                    pass
        finally:
            os.close(null)
        self._ttys = []

    def __call__(self) -> str:
        return self.reason


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


class StatusLine:
    """A live status line on a terminal (elapsed, events, lost), rewritten in
    place: carriage return, the text, erase to the end of the line.  Written
    to the stream itself, not through rich, which strips the ``\r`` (each
    tick would append).  Off a terminal it prints nothing: a log gets no
    stream of half-lines."""

    def __init__(self, stream):
        self.stream = stream
        self.active = _isatty(stream.fileno()) if hasattr(stream, "fileno") else False
        self.shown = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except OSError:   # the terminal hung up (EIO) before SIGHUP was handled: the trace goes on
            self.active = False

    def __call__(self, tracer) -> None:
        if not self.active:
            return
        lost = sum(tracer.lost().values())
        self._write(f"\r{seconds(tracer.elapsed(), 1, 6)}  {tracer.event_count} events  {lost} lost\x1b[K")
        self.shown = True

    def clear(self) -> None:
        """Erase the line, so what follows starts at column 0 on a clean line."""
        if self.shown:
            self._write("\r\x1b[K")
            self.shown = False


class TimelineStream:
    """The Tracer's sink for `trace -o X.parquet`: each batch of raw events is
    decoded once, appended to the file as a row group
    (export.parquet_stream) and added to the end-of-trace totals
    (analyse.timeline_totals), then let go.  pandas is not imported.

    The decoding and writing run on a thread of their own, so that the loop
    reading the ring buffer is not held up by them (numpy and Arrow do most
    of their work without the GIL): batches wait in a queue of at most
    QUEUE_BATCHES, and a full queue holds the reader back (the ring buffer
    then fills, and what it refuses is counted as lost), so memory stays
    bounded.  A failure there (a full disk) is raised by the next ``add`` or
    by ``finish``; batches are written in the order they came."""

    QUEUE_BATCHES = 4

    def __init__(self, path: str) -> None:
        import queue
        import threading

        from ..collect.memory import fixed_mmap_threshold, release_compiler_pages

        # made once the probes are compiled: the compiler's pages go before
        # pyarrow comes, so the compile stays the peak of the whole trace
        release_compiler_pages()
        fixed_mmap_threshold()
        from ..analyse.timeline_totals import TimelineTotals
        from ..export.parquet_stream import ParquetStream, batch_events

        self.batch_events = batch_events()
        self.file = ParquetStream(path)
        self._totals = TimelineTotals()
        self._queue: "queue.Queue" = queue.Queue(maxsize=self.QUEUE_BATCHES)
        self._error: Optional[BaseException] = None
        self._worker = threading.Thread(target=self._work, name="pyimpact-stream", daemon=True)
        self._worker.start()

    @property
    def rows(self) -> int:
        return self.file.rows

    def _work(self) -> None:
        from ..timeline import decode_columns

        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    cols = decode_columns(*item)
                    self.file.write(cols)
                    self._totals.add(cols)
            except BaseException as err:   # kept for the tracing thread to raise
                self._error = err
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def add(self, raw: bytes, exec_paths: list, clock_offset_ns: int) -> None:
        self._raise()
        self._queue.put((raw, exec_paths, clock_offset_ns))

    def wait(self) -> None:
        """Until every batch given is written (and raise what failed)."""
        if self._worker.is_alive():
            self._queue.put(None)
            self._worker.join()
        self._raise()

    @property
    def totals(self):
        """The end-of-trace totals of every batch given (waits for the writer)."""
        self.wait()
        return self._totals

    def finish(self, rec) -> str:
        """Write the rest of ``rec`` and publish the file; returns its path."""
        self.wait()
        return self.file.finish(rec)

    def load(self):
        """The whole timeline as a DataFrame, read back from the finished file
        (through its descriptor): for whoever needs more than the totals."""
        from ..export.tables import read_parquet

        with self.file.reader() as f:
            return read_parquet(f, self.file.path).events

    def close(self) -> None:
        if self._worker.is_alive():
            try:
                self._queue.put(None, timeout=60)
            except Exception:   # a wedged writer: the file is dropped below
                pass
            self._worker.join(timeout=60)
        self.file.close()


def run_trace(request, *, on_ready: Optional[Callable] = None, status: Optional[StatusLine] = None,
              on_recording: Optional[Callable] = None, stream_to: Optional[str] = None) -> float:
    """Trace ``request`` (a collect.tracer.TraceRequest) until its duration
    passes, every target has exited, or a stop signal.  ``on_ready(tracer)``
    once the probes are attached; ``status(tracer)`` on every tick (cleared
    at the end); ``on_recording(rec, stream)`` with the Recording while the
    probes are still attached.  ``stream_to``: a .parquet path the timeline
    is streamed to while tracing (``stream`` is then its TimelineStream, to
    finish; else None).  Returns the seconds the detach took; an exception
    from ``on_recording`` still detaches, then propagates (an unfinished
    stream leaves no file)."""
    from ..collect.tracer import Tracer

    with StopFlag() as stop:
        with Tracer(request) as tracer:
            stream = None
            try:
                if stream_to and tracer.bpf_active:
                    stream = tracer.sink = TimelineStream(stream_to)
                if on_ready is not None:
                    on_ready(tracer)
                try:
                    tracer.run(should_stop=stop, on_tick=status)
                finally:
                    if status is not None:
                        status.clear()
                rec = tracer.recording()
                if on_recording is not None:
                    on_recording(rec, stream)
            finally:
                if stream is not None:
                    stream.close()
            t0 = time.monotonic()
        return time.monotonic() - t0
