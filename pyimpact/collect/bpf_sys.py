"""The few bpf(2) commands pyimpact issues itself, through ctypes.

Why not bcc: bcc loads programs only from a module it compiled in the same
process. pyimpact also loads bytecode it compiled earlier (probe_cache.py)
and programs bcc 0.26 cannot load at all (tp_btf.py), so it needs the
syscalls themselves: create a map and read or write its elements, load a
program, attach it to a raw tracepoint or (through a perf event) to a classic
one. Importing bcc maps libbcc, LLVM included (about 60 MB resident): a
start that loads its probes from the cache does without it. The wrappers
return a file descriptor, or raise ``BpfSysError`` carrying the errno and,
for a refused program, the verifier's last line.
"""
from __future__ import annotations

import ctypes
import os

from ..syscall_table import syscall_number

BPF_MAP_CREATE = 0
BPF_PROG_LOAD = 5
BPF_RAW_TRACEPOINT_OPEN = 17

BPF_PROG_TYPE_TRACEPOINT = 5
BPF_PROG_TYPE_RAW_TRACEPOINT = 17
BPF_PROG_TYPE_TRACING = 26
BPF_TRACE_RAW_TP = 23


class BpfSysError(OSError):
    """A bpf(2) command failed; ``errno`` is set, the message says what failed."""


class MapCreateAttr(ctypes.Structure):
    """The BPF_MAP_CREATE part of union bpf_attr (include/uapi/linux/bpf.h),
    up to btf_value_type_id; the kernel requires the rest to be zero."""

    _fields_ = [("map_type", ctypes.c_uint32), ("key_size", ctypes.c_uint32), ("value_size", ctypes.c_uint32),
                ("max_entries", ctypes.c_uint32), ("map_flags", ctypes.c_uint32), ("inner_map_fd", ctypes.c_uint32),
                ("numa_node", ctypes.c_uint32), ("map_name", ctypes.c_char * 16), ("map_ifindex", ctypes.c_uint32),
                ("btf_fd", ctypes.c_uint32), ("btf_key_type_id", ctypes.c_uint32),
                ("btf_value_type_id", ctypes.c_uint32), ("_zero", ctypes.c_uint8 * 64)]


class ProgLoadAttr(ctypes.Structure):
    """The BPF_PROG_LOAD part of union bpf_attr, up to attach_prog_fd; the
    kernel requires the rest to be zero."""

    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32), ("insns", ctypes.c_uint64),
                ("license", ctypes.c_uint64), ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32), ("prog_flags", ctypes.c_uint32),
                ("prog_name", ctypes.c_char * 16), ("prog_ifindex", ctypes.c_uint32),
                ("expected_attach_type", ctypes.c_uint32), ("prog_btf_fd", ctypes.c_uint32),
                ("func_info_rec_size", ctypes.c_uint32), ("func_info", ctypes.c_uint64),
                ("func_info_cnt", ctypes.c_uint32), ("line_info_rec_size", ctypes.c_uint32),
                ("line_info", ctypes.c_uint64), ("line_info_cnt", ctypes.c_uint32),
                ("attach_btf_id", ctypes.c_uint32), ("attach_prog_fd", ctypes.c_uint32),
                ("_zero", ctypes.c_uint8 * 64)]


class RawTpOpenAttr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_uint64), ("prog_fd", ctypes.c_uint32), ("_pad", ctypes.c_uint32),
                ("cookie", ctypes.c_uint64), ("_zero", ctypes.c_uint8 * 32)]


_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
        _LIBC.syscall.restype = ctypes.c_long
    return _LIBC


def bpf(cmd: int, attr) -> int:
    """bpf(cmd, &attr, sizeof attr): the result, or -errno."""
    nr = syscall_number("bpf")
    if nr is None:
        return -38      # ENOSYS: no bpf() number known for this architecture
    ret = _libc().syscall(ctypes.c_long(nr), ctypes.c_int(cmd), ctypes.byref(attr),
                        ctypes.c_uint(ctypes.sizeof(attr)))
    if ret < 0:
        return -ctypes.get_errno()
    return int(ret)


def _fail(what: str, err: int) -> BpfSysError:
    return BpfSysError(err, f"{what}: {os.strerror(err)}")


def map_create(map_type: int, name: str, key_size: int, value_size: int, max_entries: int, flags: int) -> int:
    attr = MapCreateAttr(map_type=map_type, key_size=key_size, value_size=value_size, max_entries=max_entries,
                         map_flags=flags, map_name=name.encode()[:15])
    fd = bpf(BPF_MAP_CREATE, attr)
    if fd < 0:
        raise _fail(f"could not create map {name}", -fd)
    return fd


def prog_load(prog_type: int, name: str, insns: bytes, license: bytes = b"GPL", *,
              expected_attach_type: int = 0, attach_btf_id: int = 0) -> int:
    """Load bytecode; returns the program's fd. A refusal is retried once with
    the verifier's log on, so that the error can say why."""
    buf = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license)
    attr = ProgLoadAttr(prog_type=prog_type, insn_cnt=len(insns) // 8, insns=ctypes.addressof(buf),
                        license=ctypes.addressof(lic), prog_name=name.encode()[:15],
                        expected_attach_type=expected_attach_type, attach_btf_id=attach_btf_id)
    fd = bpf(BPF_PROG_LOAD, attr)
    if fd >= 0:
        return fd
    log = ctypes.create_string_buffer(1 << 20)
    attr.log_level, attr.log_size, attr.log_buf = 1, len(log), ctypes.addressof(log)
    fd = bpf(BPF_PROG_LOAD, attr)
    if fd >= 0:
        return fd
    lines = [x for x in log.value.decode("utf-8", "replace").splitlines() if x.strip()]
    err = _fail(f"the kernel refused program {name}", -fd)
    err.verifier_line = lines[-1][:200] if lines else ""
    raise err


def raw_tracepoint_open(prog_fd: int, name: str | None = None) -> int:
    """Attach a raw tracepoint program to ``name`` (or a tp_btf program to the
    tracepoint fixed at its load, ``name`` None); returns the link's fd:
    closing it detaches, well under a millisecond."""
    buf = ctypes.create_string_buffer(name.encode()) if name else None
    attr = RawTpOpenAttr(name=ctypes.addressof(buf) if buf is not None else 0, prog_fd=prog_fd)
    fd = bpf(BPF_RAW_TRACEPOINT_OPEN, attr)
    if fd < 0:
        raise _fail(f"could not attach to raw tracepoint {name or '(tp_btf)'}", -fd)
    return fd


BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM, BPF_MAP_GET_NEXT_KEY = 1, 2, 4


class MapElemAttr(ctypes.Structure):
    """The map-element part of union bpf_attr (value and next_key share a slot)."""

    _fields_ = [("map_fd", ctypes.c_uint32), ("_pad", ctypes.c_uint32), ("key", ctypes.c_uint64),
                ("value", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


def _addr(obj) -> int:
    return ctypes.addressof(obj) if obj is not None else 0


def map_lookup(fd: int, key, value) -> bool:
    """Fill ``value`` (a ctypes object) with the element at ``key``; False when there is none."""
    return bpf(BPF_MAP_LOOKUP_ELEM, MapElemAttr(map_fd=fd, key=_addr(key), value=_addr(value))) >= 0


def map_update(fd: int, key, value, flags: int = 0) -> None:
    ret = bpf(BPF_MAP_UPDATE_ELEM, MapElemAttr(map_fd=fd, key=_addr(key), value=_addr(value), flags=flags))
    if ret < 0:
        raise _fail("could not update a map element", -ret)


def map_next_key(fd: int, key, next_key) -> bool:
    """Fill ``next_key`` with the key after ``key`` (the first with ``key`` None); False at the end."""
    return bpf(BPF_MAP_GET_NEXT_KEY, MapElemAttr(map_fd=fd, key=_addr(key), value=_addr(next_key))) >= 0


def possible_cpus() -> int:
    """CPUs a per-CPU map holds a value for (/sys/devices/system/cpu/possible, e.g. "0-1")."""
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            text = f.read().strip()
        count = 0
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            count += (int(hi) if hi else int(lo)) - int(lo) + 1
        return max(1, count)
    except (OSError, ValueError):
        return os.cpu_count() or 1


# -- classic tracepoints: a perf event of type PERF_TYPE_TRACEPOINT carries the program
PERF_TYPE_TRACEPOINT = 2
PERF_SAMPLE_RAW = 1 << 10
PERF_FLAG_FD_CLOEXEC = 1 << 3
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_SET_BPF = 0x40042408


class PerfEventAttr(ctypes.Structure):
    """struct perf_event_attr up to wakeup_events (include/uapi/linux/perf_event.h), zero-padded to
    PERF_ATTR_SIZE_VER8 (136 bytes): the kernel reads the size given and requires the rest zero."""

    _fields_ = [("type", ctypes.c_uint32), ("size", ctypes.c_uint32), ("config", ctypes.c_uint64),
                ("sample_period", ctypes.c_uint64), ("sample_type", ctypes.c_uint64),
                ("read_format", ctypes.c_uint64), ("flags", ctypes.c_uint64), ("wakeup_events", ctypes.c_uint32),
                ("_zero", ctypes.c_uint8 * 84)]


def tracepoint_attach(prog_fd: int, tracefs: str, category: str, event: str) -> int:
    """Attach a tracepoint program to CATEGORY:EVENT; returns the perf event's
    fd (one event, on CPU 0, for every process: the program hangs off the
    tracepoint itself). Closing the fd detaches (perf_event_close)."""
    import fcntl

    if "/" in category or "/" in event or category.startswith(".") or event.startswith("."):
        raise BpfSysError(22, f"bad tracepoint name {category}:{event}")
    try:
        with open(os.path.join(tracefs, "events", category, event, "id")) as f:
            tp_id = int(f.read().strip())
    except (OSError, ValueError) as err:
        raise BpfSysError(2, f"no tracepoint {category}:{event}: {err}") from None
    nr = syscall_number("perf_event_open")
    if nr is None:
        raise BpfSysError(38, "no perf_event_open() number known for this architecture")
    attr = PerfEventAttr(type=PERF_TYPE_TRACEPOINT, size=ctypes.sizeof(PerfEventAttr), config=tp_id,
                         sample_period=1, sample_type=PERF_SAMPLE_RAW, wakeup_events=1)
    fd = _libc().syscall(ctypes.c_long(nr), ctypes.byref(attr), ctypes.c_int(-1), ctypes.c_int(0), ctypes.c_int(-1),
                       ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC))
    if fd < 0:
        raise _fail(f"could not open a perf event for {category}:{event}", ctypes.get_errno())
    try:
        fcntl.ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog_fd)
        fcntl.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
    except OSError as err:
        os.close(fd)
        raise _fail(f"could not attach to tracepoint {category}:{event}", err.errno) from None
    return fd


def perf_event_close(fd: int) -> None:
    """Disable, then close (the close waits for an RCU grace period: tens of milliseconds)."""
    import fcntl

    try:
        fcntl.ioctl(fd, PERF_EVENT_IOC_DISABLE, 0)
    except OSError:
        pass
    try:
        os.close(fd)
    except OSError:
        pass
