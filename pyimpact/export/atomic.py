"""Atomic output files: write a temporary file beside the target, then rename.

A reader never sees a half-written recording, and a crash leaves the old file
(or none). The temporary file is created with O_EXCL (mkstemp), so a symlink
planted at a predictable name is never followed, and rename() replaces a
symlink at the destination rather than writing through it.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager

from ..errors import OutputError

SUFFIXES = (".json", ".parquet", ".csv")


def check_output_path(path: str) -> str:
    """Fail early (before a long trace) if `path` cannot be written."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        raise OutputError(f"cannot write {path}: unknown format {suffix or '(no suffix)'}",
                          "use .json (Perfetto), .parquet or .csv")
    full = os.path.abspath(path)
    directory = os.path.dirname(full)
    if os.path.isdir(full):
        raise OutputError(f"cannot write {path}: it is a directory")
    if not os.path.isdir(directory):
        raise OutputError(f"cannot write {path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: directory {directory} is not writable")
    return full


@contextmanager
def atomic_path(path: str):
    """Yield a temporary path to write; on success it is renamed onto `path`."""
    full = check_output_path(path)
    directory, name = os.path.split(full)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror}") from None
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, full)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
