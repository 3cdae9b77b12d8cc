"""Compiled probe images kept on disk, so that a command compiles its probes
once per kernel and source instead of at every start.

What is kept is code the kernel will run with root's rights, so the cache
is trusted only as much as root's own files: its directory
(/var/cache/pyimpact/probes, or $PYIMPACT_CACHE_DIR/probes) and every
directory above it must be root's and writable by no one else (a sticky,
world-writable one such as /tmp is accepted above it: no one else can
rename or replace what root made in it). Entries are files of mode 0600
owned by root, written through a descriptor created here (O_EXCL,
O_NOFOLLOW) and renamed into place, read with O_NOFOLLOW and checked again
with fstat. Anything else is not used: the probes are compiled as before,
and ``note`` says why the cache was off.

The key covers everything the bytecode depends on: the source, the -D
flags, the kernel (release, build, BTF size), the headers bcc compiled
against, bcc's version, and the formats of the classic tracepoints the
source names (bcc lays out their arguments from tracefs). An entry that
fails to load anyway is dropped and compiled again (probes.py).
"""
from __future__ import annotations

import hashlib
import os
import platform
import re
import stat
from typing import Optional

from .bpf_image import FORMAT, ImageError, ProbeImage

DEFAULT_DIR = "/var/cache/pyimpact"
MAX_ENTRIES = 32
MAX_BYTES = 32 << 20
_TRACEPOINT = re.compile(rb"TRACEPOINT_PROBE\(\s*(\w+)\s*,\s*(\w+)\s*\)")


def _stat_text(path: str, mtime: bool = True) -> str:
    """Size (and mtime) of a file. Not the mtime of a sysfs file: sysfs makes
    its inodes afresh once the kernel dropped them (drop_caches, memory
    pressure), stamped with the time of that moment."""
    try:
        st = os.stat(path)
        return f"{st.st_size}:{st.st_mtime_ns}" if mtime else str(st.st_size)
    except OSError:
        return "-"


def cache_key(source: bytes, cflags, bcc_version: str, tracefs: str = "/sys/kernel/tracing") -> str:
    """sha256 over everything the compiled bytecode depends on."""
    h = hashlib.sha256()
    uname = platform.uname()
    build = f"/lib/modules/{uname.release}/build"
    for part in (f"format {FORMAT}", uname.release, uname.version, uname.machine, bcc_version,
                 _stat_text("/sys/kernel/btf/vmlinux", mtime=False), os.path.realpath(build),
                 _stat_text(os.path.join(build, "include/generated/autoconf.h")), "\0".join(cflags)):
        h.update(part.encode() + b"\0")
    h.update(source)
    for cat, event in sorted(set(_TRACEPOINT.findall(source))):
        try:
            with open(os.path.join(tracefs, "events", cat.decode(), event.decode(), "format"), "rb") as f:
                h.update(f.read(1 << 16))
        except OSError:
            h.update(b"-")
    return h.hexdigest()


def _trusted_dir(st: os.stat_result, final: bool) -> bool:
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
        return False
    if final:
        return not st.st_mode & 0o077
    return not st.st_mode & 0o022 or bool(st.st_mode & stat.S_ISVTX)


class ProbeCache:
    """get(key) -> ProbeImage or None; put(key, image); drop(key)."""

    def __init__(self, base: Optional[str] = None) -> None:
        base = base or os.environ.get("PYIMPACT_CACHE_DIR") or DEFAULT_DIR
        self.path = os.path.join(os.path.abspath(base), "probes")
        self.note = ""          # why the cache is off, when it is
        self._dir_fd = None

    def _open_dir(self) -> Optional[int]:
        """The cache directory's fd, made (0700) where missing; None, with
        ``note`` set, when it is missing and cannot be made, or not trusted."""
        if self._dir_fd is not None:
            return self._dir_fd
        if os.geteuid() != 0:
            self.note = "not root"
            return None
        parts = [p for p in self.path.split("/") if p]
        fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if not _trusted_dir(os.fstat(fd), final=False):
                self.note = "/ is not root's"
                return None
            for i, name in enumerate(parts):
                final = i == len(parts) - 1
                try:
                    os.mkdir(name, 0o700 if final or i >= len(parts) - 2 else 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = nxt
                if not _trusted_dir(os.fstat(fd), final):
                    self.note = f"{'/' + '/'.join(parts[:i + 1])} is not root's alone"
                    return None
            self._dir_fd, fd = fd, None
            return self._dir_fd
        except OSError as err:
            self.note = f"{self.path}: {err.strerror}"
            return None
        finally:
            if fd is not None:
                os.close(fd)

    def get(self, key: str) -> Optional[ProbeImage]:
        dfd = self._open_dir()
        if dfd is None:
            return None
        try:
            fd = os.open(key + ".json", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077 or st.st_size > MAX_BYTES:
                self.note = f"entry {key[:12]} is not root's alone: ignored"
                return None
            data = b""
            while len(data) < st.st_size:
                chunk = os.read(fd, st.st_size - len(data))
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(fd)
        try:
            return ProbeImage.from_bytes(data, key)
        except ImageError:
            self.drop(key)
            return None

    def put(self, key: str, image: ProbeImage) -> None:
        """Store an image (best effort: a full disk or a read-only /var only
        means the next start compiles again)."""
        dfd = self._open_dir()
        if dfd is None:
            return
        tmp = f".{key}.{os.getpid()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
        except OSError as err:
            self.note = f"could not write an entry: {err.strerror}"
            return
        try:
            data = memoryview(image.to_bytes(key))
            while data:
                data = data[os.write(fd, data):]
            os.fchmod(fd, 0o600)
        except OSError as err:
            self.note = f"could not write an entry: {err.strerror}"
            os.close(fd)
            _unlink(tmp, dfd)
            return
        os.close(fd)
        try:
            os.rename(tmp, key + ".json", src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError:
            _unlink(tmp, dfd)
            return
        self._trim(dfd)

    def drop(self, key: str) -> None:
        dfd = self._open_dir()
        if dfd is not None:
            _unlink(key + ".json", dfd)

    def _trim(self, dfd: int) -> None:
        """Keep the newest MAX_ENTRIES entries (one per kernel and set of flags)."""
        try:
            names = [n for n in os.listdir(dfd) if n.endswith(".json")]
            if len(names) <= MAX_ENTRIES:
                return
            aged = sorted(names, key=lambda n: os.stat(n, dir_fd=dfd, follow_symlinks=False).st_mtime_ns)
            for name in aged[:len(names) - MAX_ENTRIES]:
                _unlink(name, dfd)
        except OSError:
            pass

    def close(self) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None


def _unlink(name: str, dfd: int) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass
