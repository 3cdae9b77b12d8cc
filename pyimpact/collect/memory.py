"""This process's own memory, after the BPF compile: give back what only the
compiler needed, and keep a long trace's heap from creeping.

Why: bcc compiles the probes with LLVM and clang inside the process.  The
compile touches about 85 MB of their code (libLLVM, libclang-cpp), which
then stays counted in the process's RSS for as long as it runs, though
nothing calls it again (a long `trace` reads the ring buffer through its own
mmap).  Those pages are clean and backed by the library files: dropping our
mapping of them (MADV_DONTNEED) loses nothing (the page cache keeps them, so
the next pyimpact's compile is not slowed; a call into LLVM would fault them
back in) and leaves RSS to what the trace really holds.

Only read-only mappings of those two libraries with no private dirty page
are touched (a relocated, copy-on-written page would lose its contents).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import List, Tuple

#: the compiler's libraries (base names start with these)
COMPILER_LIBS = ("libLLVM", "libclang")
MADV_DONTNEED = 4


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def compiler_mappings(smaps_path: str = "/proc/self/smaps") -> List[Tuple[int, int, int]]:
    """(start, end, rss kB) of the compiler's read-only, clean mappings."""
    out = []
    cur = None
    try:
        with open(smaps_path) as f:
            for line in f:
                head = line.split(None, 5)
                if "-" in head[0] and len(head) >= 5 and ":" in head[3]:   # a mapping's first line
                    if cur is not None and cur[3] and not cur[4]:
                        out.append((cur[0], cur[1], cur[2]))
                    lo, hi = (int(x, 16) for x in head[0].split("-"))
                    path = head[5].strip() if len(head) == 6 else ""
                    ours = os.path.basename(path).startswith(COMPILER_LIBS) and "w" not in head[1]
                    cur = [lo, hi, 0, ours, False]
                elif cur is not None and head[0] == "Rss:":
                    cur[2] = int(head[1])
                elif cur is not None and head[0] == "Private_Dirty:" and int(head[1]) > 0:
                    cur[4] = True
        if cur is not None and cur[3] and not cur[4]:
            out.append((cur[0], cur[1], cur[2]))
    except (OSError, ValueError, IndexError):
        return []
    return out


def release_compiler_pages() -> int:
    """Drop this process's mapping of the compiler's clean code pages (see
    the module docstring).  Returns the kB of RSS it covered (0 when there
    was nothing to drop or madvise is refused)."""
    maps = [m for m in compiler_mappings() if m[2]]
    if not maps:
        return 0
    try:
        libc = _libc()
        madvise = libc.madvise
    except (OSError, AttributeError):
        return 0
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    madvise.restype = ctypes.c_int
    freed = 0
    for lo, hi, rss in maps:
        if madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), MADV_DONTNEED) == 0:
            freed += rss
    return freed


def trim_heap() -> None:
    """Give the compiler's freed heap back to the system (glibc keeps it
    otherwise: about 25 MB of RSS after the probes are compiled)."""
    try:
        _libc().malloc_trim(0)
    except (OSError, AttributeError):   # not glibc: nothing to give back this way
        pass


def fixed_mmap_threshold() -> None:
    """Make glibc serve every allocation over 128 KiB with its own mapping,
    given back to the system when freed.  By default the threshold rises
    after such a block is freed, so a long trace's batch arrays would come
    from the heap, and a fragmented heap keeps its pages: RSS would creep up
    batch by batch instead of staying flat."""
    try:
        _libc().mallopt(-3, 128 * 1024)       # M_MMAP_THRESHOLD
    except (OSError, AttributeError):         # not glibc: its own policy applies
        pass
