"""Writing and reading recordings, by file suffix.

  .json     Chrome/Perfetto trace-event JSON (opens in ui.perfetto.dev); also
            carries the rest of the recording, so `pyimpact report` reads it back
  .parquet  the timeline table; schema metadata holds everything else
  .csv      the timeline table alone (documented columns, see pyimpact.timeline)
  .html     a self-contained page: the wait-for chain and per-process CPU, RSS
            and GPU charts (inline SVG, no script, no network); write-only
  .pftrace  Perfetto's protobuf trace (slices, instants, flows, counters; compact); write-only
  -         the .json form, on standard output
"""
from __future__ import annotations

import os

from ..errors import InputError
from .atomic import STDOUT, atomic_file, check_output_path  # noqa: F401


def write_recording(rec, path: str) -> str:
    """Write ``rec`` by suffix; returns the absolute path ("-": standard output)."""
    from . import html, perfetto, pftrace, tables

    check_output_path(path)
    if path == STDOUT:
        import sys

        sys.stdout.flush()
        perfetto.write(rec, sys.stdout.buffer)
        sys.stdout.buffer.write(b"\n")
        sys.stdout.buffer.flush()
        return "standard output"
    suffix = os.path.splitext(path)[1].lower()
    writer = {".json": perfetto.write, ".parquet": tables.write_parquet, ".csv": tables.write_csv,
              ".html": html.write, ".pftrace": pftrace.write}
    with atomic_file(path) as f:    # writers get the file object, never a name
        writer[suffix](rec, f)
    return os.path.abspath(path)


def read_recording(path: str):
    from . import perfetto, tables

    suffix = os.path.splitext(path)[1].lower()
    readers = {".json": perfetto.read, ".parquet": tables.read_parquet, ".csv": tables.read_csv}
    if suffix not in readers:
        raise InputError(f"cannot read {path}: unknown format {suffix or '(no suffix)'}",
                         "pyimpact reads .json, .parquet and .csv recordings")
    if not os.path.isfile(path):
        raise InputError(f"cannot read {path}: no such file", "check the path")
    try:
        return readers[suffix](path)
    except InputError:
        raise
    except Exception as err:  # a corrupt or foreign file: one line, not a traceback
        first = (str(err).strip().splitlines() or [""])[0]
        raise InputError(f"cannot read {path}: damaged or not a pyimpact recording "
                         f"({err.__class__.__name__}: {first})",
                         "give a file written by pyimpact -o (.json, .parquet or .csv)") from None
