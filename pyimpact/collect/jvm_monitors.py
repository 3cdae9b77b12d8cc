"""Who owns the Java monitor a JVM thread waits to enter, read from its memory.

A HotSpot thread blocked in ``synchronized`` sleeps in a futex of its own
(its park event), which records no owner: from the kernel, a lock-order
deadlock between two Java threads looks like any idle thread.  The JVM
records the answer itself: each ``JavaThread`` has ``_current_pending_monitor``
(the ``ObjectMonitor`` it waits to enter) and each monitor has ``_owner`` (the
owning ``JavaThread``, or the address of a lock record on the owner's stack).
The offsets of those fields are published by the JVM for debuggers in the
``gHotSpotVMStructs`` table (what the Serviceability Agent and jstack's
deadlock check read), exported from ``libjvm.so``.  This module reads that
table and the thread list, read-only, through /proc/PID/mem: no signal, no
attach, nothing changes in the target.

``monitor_waits(pid)`` returns None for a process that maps no libjvm.so, else
``{"threads": {tid: {"monitor", "owner", "owner_tid"}}}`` for the threads that
wait to enter a monitor (``owner_tid`` None when no thread owns it any more),
or ``{"error": WHY}``.  TIDs are those the JVM saw (its PID namespace's).
"""
from __future__ import annotations

import os
import struct
import threading
from typing import Any, Dict, List, Optional, Tuple

#: one whole read of a JVM may take this long (the target's mmap lock can be held)
TIMEOUT_S = 0.5
#: a JVM with more threads than this is read no further (a corrupt length)
MAX_THREADS = 100_000
SHT_DYNSYM = 11
_ENTRY = ("TypeName", "FieldName", "TypeString", "IsStatic", "Offset", "Address")
_SYMS = ["gHotSpotVMStructs", "gHotSpotVMStructEntryArrayStride"] + \
    [f"gHotSpotVMStructEntry{x}Offset" for x in _ENTRY]
_WANT = {("ThreadsSMRSupport", "_java_thread_list"), ("ThreadsList", "_length"), ("ThreadsList", "_threads"),
         ("JavaThread", "_osthread"), ("JavaThread", "_current_pending_monitor"), ("JavaThread", "_stack_base"),
         ("JavaThread", "_stack_size"), ("OSThread", "_thread_id"), ("ObjectMonitor", "_owner")}
#: (path, inode, mtime) of a libjvm.so -> its exported symbols' offsets
_SYM_CACHE: Dict[Tuple[str, int, int], Dict[str, int]] = {}


def jvm_library(pid: int) -> Optional[Tuple[str, int]]:
    """(path, load address) of libjvm.so in ``pid``; None when it maps none."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[2] == "00000000" and parts[5].rstrip("\n").endswith("/libjvm.so"):
                    return parts[5].rstrip("\n"), int(parts[0].split("-")[0], 16)
    except OSError:
        return None
    return None


def _dynsyms(path: str, names: List[str]) -> Dict[str, int]:
    """Values of the named symbols in an ELF64 file's dynamic symbol table."""
    st = os.stat(path)
    key = (path, st.st_ino, int(st.st_mtime))
    if key in _SYM_CACHE:
        return _SYM_CACHE[key]
    want = set(names)
    out: Dict[str, int] = {}
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            raise ValueError("not a little-endian ELF64 file")
        shoff, = struct.unpack_from("<Q", head, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", head, 0x3A)
        f.seek(shoff)
        raw = f.read(shentsize * shnum)
        secs = [struct.unpack_from("<IIQQQQIIQQ", raw, i * shentsize) for i in range(shnum)]
        for s in secs:
            if s[1] != SHT_DYNSYM or s[6] >= len(secs):
                continue
            strs = secs[s[6]]
            f.seek(strs[4])
            strtab = f.read(strs[5])
            f.seek(s[4])
            syms = f.read(s[5])
            for i in range(len(syms) // 24):
                st_name, _, _, _, st_value, _ = struct.unpack_from("<IBBHQQ", syms, i * 24)
                end = strtab.find(b"\0", st_name)
                name = strtab[st_name:end].decode("ascii", "replace")
                if name in want:
                    out[name] = st_value
    _SYM_CACHE[key] = out
    return out


class _Mem:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read(self, addr: int, n: int) -> bytes:
        if not addr:
            raise ValueError("NULL pointer")
        b = os.pread(self.fd, n, addr)
        if len(b) != n:
            raise OSError(f"short read at {addr:#x}")
        return b

    def u64(self, addr: int) -> int:
        return struct.unpack("<Q", self.read(addr, 8))[0]

    def u32(self, addr: int) -> int:
        return struct.unpack("<I", self.read(addr, 4))[0]

    def cstr(self, addr: int) -> str:
        if not addr:
            return ""
        b = self.read(addr, 64)
        return b.split(b"\0", 1)[0].decode("ascii", "replace")


def _fields(m: _Mem, base: int, syms: Dict[str, int]) -> Dict[Tuple[str, str], Tuple[int, int]]:
    """(type, field) -> (offset, static address) for the fields this module needs."""
    off = {x: m.u64(base + syms[f"gHotSpotVMStructEntry{x}Offset"]) for x in _ENTRY}
    stride = m.u64(base + syms["gHotSpotVMStructEntryArrayStride"])
    table = m.u64(base + syms["gHotSpotVMStructs"])
    if not stride or stride > 256:
        raise ValueError(f"odd VMStructs stride {stride}")
    out: Dict[Tuple[str, str], Tuple[int, int]] = {}
    for i in range(10_000):
        e = m.read(table + i * stride, stride)
        tn = struct.unpack_from("<Q", e, off["TypeName"])[0]
        if not tn:
            break
        t = m.cstr(tn)
        if t not in ("ThreadsSMRSupport", "ThreadsList", "JavaThread", "OSThread", "ObjectMonitor"):
            continue
        fn = m.cstr(struct.unpack_from("<Q", e, off["FieldName"])[0])
        if (t, fn) in _WANT:
            out[(t, fn)] = (struct.unpack_from("<Q", e, off["Offset"])[0],
                            struct.unpack_from("<Q", e, off["Address"])[0])
    missing = _WANT - set(out)
    if missing:
        raise ValueError("this JVM publishes no " + ", ".join(f"{a}::{b}" for a, b in sorted(missing)))
    return out


def _read(pid: int, path: str, base: int) -> Dict[str, Any]:
    root = f"/proc/{pid}/root"
    syms = _dynsyms(root + path if os.path.exists(root + path) else path, _SYMS)
    if set(_SYMS) - set(syms):
        return {"error": f"{path} exports no gHotSpotVMStructs table"}
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    try:
        m = _Mem(fd)
        F = _fields(m, base, syms)

        def o(t: str, f: str) -> int:
            return F[(t, f)][0]
        tl = m.u64(F[("ThreadsSMRSupport", "_java_thread_list")][1])
        n = m.u32(tl + o("ThreadsList", "_length"))
        if n > MAX_THREADS:
            raise ValueError(f"odd thread count {n}")
        arr = m.u64(tl + o("ThreadsList", "_threads"))
        raw = m.read(arr, 8 * n) if n else b""
        threads = []
        for k in range(n):
            jt = struct.unpack_from("<Q", raw, 8 * k)[0]
            tid = struct.unpack("<i", m.read(m.u64(jt + o("JavaThread", "_osthread")) + o("OSThread", "_thread_id"),
                                             4))[0]
            pending = m.u64(jt + o("JavaThread", "_current_pending_monitor"))
            top = m.u64(jt + o("JavaThread", "_stack_base"))
            size = m.u64(jt + o("JavaThread", "_stack_size"))
            owner = m.u64(pending + o("ObjectMonitor", "_owner")) if pending else 0
            threads.append((jt, tid, pending, top, size, owner))
    finally:
        os.close(fd)
    out: Dict[str, Any] = {}
    for jt, tid, pending, top, size, owner in threads:
        if not pending:
            continue
        # the owner is a JavaThread, or a lock record on its stack (a lock taken
        # before it was inflated to a monitor)
        who = next((t2 for jt2, t2, _, top2, size2, _ in threads
                    if owner and (owner == jt2 or top2 - size2 <= owner < top2)), None)
        out[str(tid)] = {"monitor": pending, "owner": owner, "owner_tid": who}
    return {"threads": out}


def monitor_waits(pid: int, timeout_s: float = TIMEOUT_S) -> Optional[Dict[str, Any]]:
    """The monitors ``pid``'s Java threads wait to enter, and their owners
    (see the module docstring); None when ``pid`` is no HotSpot JVM."""
    result: Dict[str, Any] = {}

    def work() -> None:
        try:
            lib = jvm_library(pid)
            result["lib"] = lib
            if lib is not None:
                result["out"] = _read(pid, *lib)
        except (OSError, ValueError, struct.error, UnicodeError) as err:
            result["out"] = {"error": f"{type(err).__name__}: {err}"}

    t = threading.Thread(target=work, name="pyimpact-jvm", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        return {"error": f"reading the JVM's memory did not return within {timeout_s:g} s"}
    if result.get("lib") is None and "out" not in result:
        return None
    return result.get("out")
