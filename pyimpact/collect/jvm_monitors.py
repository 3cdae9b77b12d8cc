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

A thread parked in a ``java.util.concurrent`` lock (``ReentrantLock.lock``,
a write lock) has the lock in its ``Thread.parkBlocker`` field, and the lock
its owner in ``AbstractOwnableSynchronizer.exclusiveOwnerThread``: both are
read from the heap, their offsets from the classes' field tables (found
through the same VMStructs), compressed pointers decoded as the JVM does.
Blockers that record no owner (conditions, latches, futures, semaphores) give
nothing: those waits are for work, not for a holder.

``monitor_waits(pid)`` returns None for a process that maps no libjvm.so, else
``{"threads": {tid: {"monitor", "owner", "owner_tid", "what"}}}`` for the threads
that wait to enter a monitor or take a lock (``owner_tid`` None when no thread
owns it any more; ``what`` "Java monitor" or the lock's class),
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
#: the tables of type sizes and integer constants (for the java.util.concurrent locks)
_SYMS_MORE = ["gHotSpotVMTypes", "gHotSpotVMTypeEntryArrayStride", "gHotSpotVMTypeEntryTypeNameOffset",
              "gHotSpotVMTypeEntrySizeOffset", "gHotSpotVMIntConstants", "gHotSpotVMIntConstantEntryArrayStride",
              "gHotSpotVMIntConstantEntryNameOffset", "gHotSpotVMIntConstantEntryValueOffset"]
_WANT = {("ThreadsSMRSupport", "_java_thread_list"), ("ThreadsList", "_length"), ("ThreadsList", "_threads"),
         ("JavaThread", "_osthread"), ("JavaThread", "_current_pending_monitor"), ("JavaThread", "_stack_base"),
         ("JavaThread", "_stack_size"), ("OSThread", "_thread_id"), ("ObjectMonitor", "_owner")}
#: what reading a java.util.concurrent lock's owner takes: the thread's java.lang.Thread
#: object, class metadata (to find the fields parkBlocker and exclusiveOwnerThread) and
#: how the heap compresses its pointers
_WANT_JUC = {("JavaThread", "_threadObj"), ("OopHandle", "_obj"), ("oopDesc", "_metadata._compressed_klass"),
             ("Klass", "_super"), ("Klass", "_name"), ("InstanceKlass", "_fields"),
             ("InstanceKlass", "_java_fields_count"), ("InstanceKlass", "_constants"), ("Symbol", "_length"),
             ("Symbol", "_body"), ("CompressedOops", "_narrow_oop._base"), ("CompressedOops", "_narrow_oop._shift"),
             ("CompressedKlassPointers", "_narrow_klass._base"), ("CompressedKlassPointers", "_narrow_klass._shift"),
             ("JVMFlag", "flags"), ("JVMFlag", "numFlags"), ("JVMFlag", "_name"), ("JVMFlag", "_addr")}
_TYPES = ("ThreadsSMRSupport", "ThreadsList", "JavaThread", "OSThread", "ObjectMonitor", "OopHandle", "oopDesc",
          "Klass", "InstanceKlass", "Symbol", "CompressedOops", "CompressedKlassPointers", "JVMFlag")
_AOS = "java/util/concurrent/locks/AbstractOwnableSynchronizer"
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
        if t not in _TYPES:
            continue
        fn = m.cstr(struct.unpack_from("<Q", e, off["FieldName"])[0])
        if (t, fn) in _WANT or (t, fn) in _WANT_JUC:
            out[(t, fn)] = (struct.unpack_from("<Q", e, off["Offset"])[0],
                            struct.unpack_from("<Q", e, off["Address"])[0])
    missing = _WANT - set(out)
    if missing:
        raise ValueError("this JVM publishes no " + ", ".join(f"{a}::{b}" for a, b in sorted(missing)))
    return out


def _table(m: _Mem, base: int, syms: Dict[str, int], kind: str, name: str, value: str,
           fmt: str) -> Dict[str, int]:
    """name -> value from one of the JVM's (name, value) tables: ``kind`` "Type"
    (type sizes: name TypeName, value Size) or "IntConstant" (Name, Value)."""
    g = f"gHotSpotVM{kind}Entry"
    stride = m.u64(base + syms[g + "ArrayStride"])
    name_off, val_off = m.u64(base + syms[f"{g}{name}Offset"]), m.u64(base + syms[f"{g}{value}Offset"])
    table = m.u64(base + syms[f"gHotSpotVM{kind}s"])
    out: Dict[str, int] = {}
    for i in range(20_000):
        e = m.read(table + i * stride, stride)
        n = struct.unpack_from("<Q", e, name_off)[0]
        if not n:
            break
        out[m.cstr(n)] = struct.unpack_from(fmt, e, val_off)[0]
    return out


class _Heap:
    """Objects of the Java heap: their classes, their fields (by name, from the
    class metadata) and compressed pointers."""

    def __init__(self, m: _Mem, base: int, syms: Dict[str, int], F: Dict[Tuple[str, str], Tuple[int, int]]) -> None:
        self.m, self.F = m, F
        sizes = _table(m, base, syms, "Type", "TypeName", "Size", "<Q")
        ints = _table(m, base, syms, "IntConstant", "Name", "Value", "<i")
        self.cp_size = sizes["ConstantPool"]
        self.slots, self.tag = ints["FieldInfo::field_slots"], ints["FIELDINFO_TAG_SIZE"]
        self.internal = ints["JVM_ACC_FIELD_INTERNAL"]
        self.fi = {k: ints[f"FieldInfo::{k}_offset"] for k in ("access_flags", "name_index", "low_packed",
                                                                  "high_packed")}
        flags = {}
        arr, n = m.u64(self.a("JVMFlag", "flags")), m.u64(self.a("JVMFlag", "numFlags"))
        for k in range(min(n, 5000)):
            e = arr + k * sizes["JVMFlag"]
            name = m.cstr(m.u64(e + self.o("JVMFlag", "_name")))
            if name in ("UseCompressedOops", "UseCompressedClassPointers"):
                flags[name] = m.read(m.u64(e + self.o("JVMFlag", "_addr")), 1)[0]
        self.narrow_oops = bool(flags.get("UseCompressedOops"))
        self.narrow_klass = bool(flags.get("UseCompressedClassPointers"))
        self.oop_base = m.u64(self.a("CompressedOops", "_narrow_oop._base"))
        self.oop_shift = m.u32(self.a("CompressedOops", "_narrow_oop._shift"))
        self.k_base = m.u64(self.a("CompressedKlassPointers", "_narrow_klass._base"))
        self.k_shift = m.u32(self.a("CompressedKlassPointers", "_narrow_klass._shift"))
        self.offsets: Dict[Tuple[int, str], Optional[int]] = {}

    def o(self, t: str, f: str) -> int:
        return self.F[(t, f)][0]

    def a(self, t: str, f: str) -> int:
        return self.F[(t, f)][1]

    def symbol(self, addr: int) -> str:
        n = struct.unpack("<H", self.m.read(addr + self.o("Symbol", "_length"), 2))[0]
        return self.m.read(addr + self.o("Symbol", "_body"), n).decode("utf-8", "replace") if n else ""

    def klass(self, oop: int) -> int:
        at = oop + self.o("oopDesc", "_metadata._compressed_klass")
        return self.k_base + (self.m.u32(at) << self.k_shift) if self.narrow_klass else self.m.u64(at)

    def ref(self, oop: int, off: int) -> int:
        """The object a reference field points to (0: null)."""
        if not self.narrow_oops:
            return self.m.u64(oop + off)
        n = self.m.u32(oop + off)
        return self.oop_base + (n << self.oop_shift) if n else 0

    def names(self, k: int) -> List[Tuple[int, str]]:
        """(klass, name) of ``k`` and its superclasses."""
        out = []
        while k and len(out) < 32:
            out.append((k, self.symbol(self.m.u64(k + self.o("Klass", "_name")))))
            k = self.m.u64(k + self.o("Klass", "_super"))
        return out

    def field(self, k: int, name: str) -> Optional[int]:
        """Offset of the instance field ``name`` declared by class ``k``."""
        key = (k, name)
        if key not in self.offsets:
            self.offsets[key] = None
            m = self.m
            fields = m.u64(k + self.o("InstanceKlass", "_fields"))
            count = struct.unpack("<H", m.read(k + self.o("InstanceKlass", "_java_fields_count"), 2))[0]
            cp = m.u64(k + self.o("InstanceKlass", "_constants"))
            raw = m.read(fields + 4, 2 * self.slots * count) if count else b""
            for i in range(count):
                sl = struct.unpack_from(f"<{self.slots}H", raw, 2 * self.slots * i)
                if sl[self.fi["access_flags"]] & self.internal:
                    continue
                sym = m.u64(cp + self.cp_size + 8 * sl[self.fi["name_index"]])
                if self.symbol(sym) == name:
                    packed = sl[self.fi["low_packed"]] | sl[self.fi["high_packed"]] << 16
                    self.offsets[key] = packed >> self.tag
                    break
        return self.offsets[key]

    def declared(self, oop: int, cls: str, name: str) -> Optional[int]:
        """Offset of field ``name`` of class ``cls`` in ``oop`` (None: not an instance of it)."""
        k = next((k for k, n in self.names(self.klass(oop)) if n == cls), None)
        return self.field(k, name) if k else None


def _juc_waits(m: _Mem, base: int, syms: Dict[str, int], F: Dict[Tuple[str, str], Tuple[int, int]],
               threads: List[Tuple[int, int, int]]) -> Dict[str, Dict[str, Any]]:
    """tid -> the java.util.concurrent lock it is parked on (LockSupport.park with
    a blocker) and the owner the lock records (AbstractOwnableSynchronizer.
    exclusiveOwnerThread: a ReentrantLock, a write lock), for ``threads``
    [(JavaThread, tid, java.lang.Thread object)]."""
    h = _Heap(m, base, syms, F)
    by_obj = {obj: tid for _, tid, obj in threads if obj}
    out: Dict[str, Dict[str, Any]] = {}
    for _, tid, obj in threads:
        if not obj:
            continue
        off = h.declared(obj, "java/lang/Thread", "parkBlocker")
        blocker = h.ref(obj, off) if off else 0
        if not blocker:
            continue
        names = h.names(h.klass(blocker))
        aos = next((k for k, n in names if n == _AOS), None)
        own = h.field(aos, "exclusiveOwnerThread") if aos else None
        if own is None:
            continue        # a condition, a latch, a future: no owner to wait for
        owner = h.ref(blocker, own)
        out[str(tid)] = {"monitor": blocker, "owner": owner, "owner_tid": by_obj.get(owner) if owner else None,
                         "what": names[0][1].replace("/", ".") if names else "a lock"}
    return out


def _read(pid: int, path: str, base: int) -> Dict[str, Any]:
    root = f"/proc/{pid}/root"
    syms = _dynsyms(root + path if os.path.exists(root + path) else path, _SYMS + _SYMS_MORE)
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
        juc: Dict[str, Dict[str, Any]] = {}
        juc_error = ""
        if _WANT_JUC <= set(F) and not set(_SYMS_MORE) - set(syms):
            try:
                objs = []
                for jt, tid, *_ in threads:
                    handle = m.u64(jt + o("JavaThread", "_threadObj"))
                    objs.append((jt, tid, m.u64(handle + o("OopHandle", "_obj")) if handle else 0))
                juc = _juc_waits(m, base, syms, F, objs)
            except (OSError, ValueError, KeyError, struct.error) as err:
                juc_error = f"java.util.concurrent locks not read: {type(err).__name__}: {err}"
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
        out[str(tid)] = {"monitor": pending, "owner": owner, "owner_tid": who, "what": "Java monitor"}
    for tid, w in juc.items():
        out.setdefault(tid, w)
    return {"threads": out, **({"error": juc_error} if juc_error else {})}


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
