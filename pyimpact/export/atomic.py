"""Atomic output files, written only through the descriptor we created.

Why this shape: pyimpact runs as root and is often pointed at a directory that
other users can write (their home, a shared scratch, /tmp without the sticky
bit).  Anything that reopens, chmods or fsyncs a temporary file *by name* lets
such a user swap that name for a symlink in between, and root then writes the
recording over (or chmods) any file the symlink points at.  So:

- the output directory is opened once (``O_DIRECTORY | O_NOFOLLOW``) and every
  later step is relative to that descriptor;
- the data goes to an anonymous ``O_TMPFILE`` in that directory: it has no
  name until it is complete, so there is nothing to swap and a SIGKILL in the
  middle of a write leaves nothing behind.  Where the filesystem has no
  ``O_TMPFILE`` a named ``O_CREAT | O_EXCL | O_NOFOLLOW`` file is used
  instead (still written only through its descriptor);
- mode (0600, or stricter when the umask says so) and fsync are applied to the
  descriptor (``fchmod``, ``fsync``), never to a name;
- the finished file gets a unique temporary name (``linkat``), which is then
  renamed onto the output relative to the directory descriptor
  (``renameat``); afterwards the output name is checked to be the very inode
  we wrote, so a swap in that last microsecond is reported, not silently
  accepted.  A symlink planted at the output name itself is replaced, never
  followed.

Temporary names that a killed run of ours left behind (``.NAME.*.tmp``, owned
by us, older than a minute) are removed on the next write to the same output.
"""
from __future__ import annotations

import errno
import os
import secrets
import stat
import time
from contextlib import contextmanager
from typing import BinaryIO, Iterator, Optional, Tuple

from ..errors import OutputError, UsageError

SUFFIXES = (".json", ".parquet", ".csv", ".html", ".pftrace")
#: ``-o -``: the recording (pyimpact's Perfetto JSON) goes to standard output
STDOUT = "-"

#: Output files are readable by their owner only (recordings hold command
#: lines, paths, environment keys); a stricter umask makes them stricter still.
OUTPUT_MODE = 0o600

#: A temporary name older than this is a leftover of a killed run: the window
#: in which a live run has one is the microseconds between link and rename.
STALE_AFTER_S = 60.0

#: How often a swapped temporary name is re-linked from our descriptor.
PUBLISH_TRIES = 8

_O_TMPFILE = getattr(os, "O_TMPFILE", 0)


def check_output_path(path: str) -> str:
    """Fail early (before a long trace) if `path` cannot be written.
    An unknown suffix is a usage error (exit 2): the path may be fine, the
    request is not."""
    if path == STDOUT:
        return path
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        raise UsageError(f"cannot write {path}: unknown format {suffix or '(no suffix)'}",
                         "use .json or .pftrace (Perfetto), .parquet, .csv, .html, or - for JSON on stdout")
    full = os.path.abspath(path)
    directory = os.path.dirname(full)
    if os.path.isdir(full):
        raise OutputError(f"cannot write {path}: it is a directory", "give a file name")
    if not os.path.isdir(directory):
        raise OutputError(f"cannot write {path}: directory {directory} does not exist",
                          "create the directory, or choose another path")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: directory {directory} is not writable",
                          "choose a writable directory, or run as a user that can write there")
    return full


def current_umask() -> int:
    """The process umask, read without changing it (/proc/self/status), or by
    the set-and-restore dance where /proc does not say."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def output_mode() -> int:
    """0600 less whatever the umask removes (never more than 0600)."""
    return OUTPUT_MODE & ~current_umask()


def _temp_name(name: str) -> str:
    return f".{name}.{secrets.token_hex(6)}.tmp"


def _is_our_temp(entry: str, name: str) -> bool:
    prefix = f".{name}."
    if not (entry.startswith(prefix) and entry.endswith(".tmp")):
        return False
    middle = entry[len(prefix):-len(".tmp")]
    # ours: 12 hex digits; pyimpact before 0.2 used mkstemp's 8 characters [a-z0-9_]
    return len(middle) in (8, 12) and all(c.isalnum() or c == "_" for c in middle)


def clean_stale(dir_fd: int, name: str, *, now: Optional[float] = None) -> int:
    """Remove leftovers of killed runs for output `name`: entries with our
    temporary naming, owned by us, unchanged for STALE_AFTER_S (a private
    directory holding `keep`/`data`, or an old-style temporary file).
    Returns how many were removed.  Nothing is followed: a symlink of that
    name is left alone, and unlinking a name never touches a link's target."""
    now = time.time() if now is None else now
    removed = 0
    try:
        entries = os.listdir(dir_fd)
    except OSError:
        return 0
    for entry in entries:
        if not _is_our_temp(entry, name):
            continue
        try:
            st = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
            if st.st_uid != os.geteuid() or now - st.st_mtime <= STALE_AFTER_S:
                continue
            if stat.S_ISREG(st.st_mode):
                os.unlink(entry, dir_fd=dir_fd)
            elif stat.S_ISDIR(st.st_mode):
                sub = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
                try:
                    if os.fstat(sub).st_ino != st.st_ino:
                        continue
                    for inner in (KEEP, DATA):
                        _unlink_quietly(inner, sub)
                finally:
                    os.close(sub)
                os.rmdir(entry, dir_fd=dir_fd)
            else:
                continue
            removed += 1
        except OSError:
            continue
    return removed


def _open_dir(path: str, directory: str) -> int:
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        raise OutputError(f"cannot write {path}: directory {directory}: {err.strerror}",
                          "choose another path") from None


def _unlink_quietly(entry: str, dir_fd: int) -> None:
    """Remove one of our names.  If someone swapped it, this removes their
    directory entry, never the file a symlink points at."""
    try:
        os.unlink(entry, dir_fd=dir_fd)
    except OSError:
        pass


class _Private:
    """A 0700 directory of ours inside the output directory, held by its
    descriptor.  Nobody else can add, swap or remove names inside it, so the
    finished file keeps a name there (`keep`) that no one can take away."""

    def __init__(self, dir_fd: int, name: str) -> None:
        self.dir_fd = dir_fd
        parent = os.fstat(dir_fd)
        for _ in range(16):
            entry = _temp_name(name)
            try:
                os.mkdir(entry, 0o700, dir_fd=dir_fd)
            except FileExistsError:
                continue
            try:
                fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            except OSError:
                continue                     # swapped for a symlink or a file before we opened it
            st = os.fstat(fd)
            if st.st_uid == os.geteuid() and not st.st_mode & 0o077 and st.st_dev == parent.st_dev:
                os.fchmod(fd, 0o700)         # a strict umask (0277) must not lock us out of it
                self.entry, self.fd, self.ino = entry, fd, st.st_ino
                return
            os.close(fd)                     # someone else's directory under our name: not ours to touch
        raise OSError(errno.EEXIST, "could not create a private temporary directory")

    def close(self) -> None:
        for inner in (KEEP, DATA):
            _unlink_quietly(inner, self.fd)
        try:
            st = os.stat(self.entry, dir_fd=self.dir_fd, follow_symlinks=False)
            if st.st_ino == self.ino:
                os.rmdir(self.entry, dir_fd=self.dir_fd)
        except OSError:
            pass
        os.close(self.fd)


#: names inside the private directory
KEEP, DATA = "keep", "data"


def _create(dir_fd: int, name: str, mode: int) -> Tuple[int, Optional[_Private]]:
    """(fd, private dir or None): an anonymous O_TMPFILE (nothing on disk to
    leave behind if we are killed) where the filesystem has it and /proc can
    link it later; else a file `keep` in a new private directory."""
    if _O_TMPFILE and os.path.isdir("/proc/self/fd"):
        try:
            return os.open(".", _O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, mode, dir_fd=dir_fd), None
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
                raise
    private = _Private(dir_fd, name)
    try:
        fd = os.open(KEEP, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                     dir_fd=private.fd)
    except OSError:
        private.close()
        raise
    return fd, private


def _publish(fd: int, dir_fd: int, name: str, private: _Private, path: str, directory: str,
             tries: int = PUBLISH_TRIES) -> None:
    """Rename the finished file onto `name`, then check that `name` is our
    inode.  The rename moves a second link (`data`) of the file we keep in
    our private directory; if someone who can write the directory replaces
    `name` just after the rename, `data` is linked again from `keep` and
    renamed again.  A persistent swapper gets an error, never a write
    through their link."""
    mine = os.fstat(fd)
    for _ in range(tries):
        _unlink_quietly(DATA, private.fd)
        os.link(KEEP, DATA, src_dir_fd=private.fd, dst_dir_fd=private.fd, follow_symlinks=False)
        os.replace(DATA, name, src_dir_fd=private.fd, dst_dir_fd=dir_fd)
        try:
            there = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino):
            return
    raise OutputError(f"cannot write {path}: someone else keeps replacing the file while it is written",
                      f"write to a directory only you can change, not {directory}")


@contextmanager
def atomic_file(path: str) -> Iterator[BinaryIO]:
    """Yield a binary file object to write; on success it becomes `path`.

    The file object wraps the descriptor created here and is the only way
    the data reaches the disk; writers must not open anything by name.
    """
    full = check_output_path(path)
    directory, name = os.path.split(full)
    directory = os.path.realpath(directory)     # the user's own symlinks, resolved once
    dir_fd = _open_dir(path, directory)
    fd, private = -1, None
    try:
        try:
            clean_stale(dir_fd, name)
            fd, private = _create(dir_fd, name, output_mode())
        except OSError as err:
            raise OutputError(f"cannot write {path}: {err.strerror or err}",
                              "choose another path, or free space") from None
        with os.fdopen(fd, "wb", closefd=False) as f:
            yield f
            f.flush()
        try:
            os.fchmod(fd, output_mode())     # a default ACL may have widened it
            os.fsync(fd)
            if private is None:              # give the anonymous file its first name, in our directory
                private = _Private(dir_fd, name)
                os.link(f"/proc/self/fd/{fd}", KEEP, dst_dir_fd=private.fd, follow_symlinks=True)
            _publish(fd, dir_fd, name, private, path, directory)
            os.fsync(dir_fd)
        except OSError as err:
            raise OutputError(f"cannot write {path}: {err.strerror or err}",
                              "choose another path, or free space") from None
    finally:
        if fd >= 0:
            os.close(fd)
        if private is not None:
            private.close()
        os.close(dir_fd)
