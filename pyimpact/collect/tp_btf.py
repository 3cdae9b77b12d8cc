"""Load and attach BTF-typed raw tracepoint programs (tp_btf), which bcc 0.26
cannot do itself.

Why: a plain raw tracepoint program gets its arguments as untyped words and
must copy kernel memory with bpf_probe_read_kernel (about 30 ns a call on a
machine of this kind); the same program loaded as BPF_PROG_TYPE_TRACING with
expected attach type BPF_TRACE_RAW_TP gets them typed from the kernel's BTF,
and the verifier turns plain loads through them into fault-safe ones (about
1 ns). The syscall probes run on every syscall of the machine: that is the
difference between reading pt_regs for free and paying a helper call at
each entry and exit (probes/syscalls.bpf.c).

bcc compiles the C and creates the maps (the bytecode it returns already
holds the maps' fds); this module finds the tracepoint's BTF id with libbpf
(``libbpf_find_vmlinux_btf_id``, which bcc itself links against), loads the
bytecode with the bpf() syscall and attaches it with BPF_RAW_TRACEPOINT_OPEN.
Detaching is closing the link's fd (well under a millisecond, like any raw
tracepoint). Anything missing (no libbpf, no vmlinux BTF, an older kernel's
verifier refusing) raises ``TpBtfUnavailable`` and the caller falls back to
plain raw tracepoints.
"""
from __future__ import annotations

import ctypes
import os
from typing import Dict, List

from ..syscall_table import syscall_number

BPF_PROG_LOAD = 5
BPF_RAW_TRACEPOINT_OPEN = 17
BPF_PROG_TYPE_TRACING = 26
BPF_TRACE_RAW_TP = 23
VMLINUX_BTF = "/sys/kernel/btf/vmlinux"


class TpBtfUnavailable(Exception):
    """tp_btf programs cannot be used here; the message says why."""


class _ProgLoadAttr(ctypes.Structure):
    """The BPF_PROG_LOAD part of union bpf_attr (include/uapi/linux/bpf.h),
    up to attach_prog_fd; the kernel requires the rest to be zero."""

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


class _RawTpOpenAttr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_uint64), ("prog_fd", ctypes.c_uint32), ("_pad", ctypes.c_uint32),
                ("cookie", ctypes.c_uint64), ("_zero", ctypes.c_uint8 * 32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def btf_ids(tracepoints) -> Dict[str, int]:
    """The vmlinux BTF id of each raw tracepoint (its btf_trace_<name>
    typedef), by name. About 50 ms: libbpf parses the kernel's BTF."""
    if not os.path.exists(VMLINUX_BTF):
        raise TpBtfUnavailable(f"{VMLINUX_BTF} is missing (kernel built without BTF)")
    try:
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
        find = lib.libbpf_find_vmlinux_btf_id
    except (OSError, AttributeError) as err:
        raise TpBtfUnavailable(f"libbpf.so.1 is not usable: {err}") from None
    find.argtypes = [ctypes.c_char_p, ctypes.c_int]
    find.restype = ctypes.c_int
    out = {}
    for tp in tracepoints:
        tid = find(tp.encode(), BPF_TRACE_RAW_TP)
        if tid <= 0:
            raise TpBtfUnavailable(f"no BTF type for raw tracepoint {tp} ({os.strerror(-tid) if tid < 0 else tid})")
        out[tp] = tid
    return out


def _bpf(cmd: int, attr) -> int:
    nr = syscall_number("bpf")
    if nr is None:
        raise TpBtfUnavailable("no bpf() syscall number for this architecture")
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    ret = libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr)))
    if ret < 0:
        return -ctypes.get_errno()
    return int(ret)


def load(name: str, insns: bytes, btf_id: int) -> int:
    """Load bytecode as a tp_btf program for the tracepoint with ``btf_id``;
    returns its fd. On a verifier refusal the message carries the log's last
    line."""
    buf = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b"GPL")
    attr = _ProgLoadAttr(prog_type=BPF_PROG_TYPE_TRACING, insn_cnt=len(insns) // 8, insns=ctypes.addressof(buf),
                         license=ctypes.addressof(lic), prog_name=name.encode()[:15],
                         expected_attach_type=BPF_TRACE_RAW_TP, attach_btf_id=btf_id)
    fd = _bpf(BPF_PROG_LOAD, attr)
    if fd >= 0:
        return fd
    log = ctypes.create_string_buffer(1 << 20)
    attr.log_level, attr.log_size, attr.log_buf = 1, len(log), ctypes.addressof(log)
    fd = _bpf(BPF_PROG_LOAD, attr)
    if fd >= 0:
        return fd
    lines = [x for x in log.value.decode("utf-8", "replace").splitlines() if x.strip()]
    raise TpBtfUnavailable(f"the verifier refused {name} as tp_btf: {os.strerror(-fd)}"
                           + (f" ({lines[-1][:200]})" if lines else ""))


def attach(prog_fd: int) -> int:
    """Attach a loaded tp_btf program (its tracepoint was fixed at load);
    returns the link fd: closing it detaches."""
    attr = _RawTpOpenAttr(name=0, prog_fd=prog_fd)
    fd = _bpf(BPF_RAW_TRACEPOINT_OPEN, attr)
    if fd < 0:
        raise TpBtfUnavailable(f"could not attach a tp_btf program: {os.strerror(-fd)}")
    return fd


class TpBtfPrograms:
    """The tp_btf programs of one bcc module: ``open`` loads and attaches
    each (function name -> tracepoint), ``detach`` closes the links,
    ``close`` the programs too. ``prog_fds`` for run counters."""

    def __init__(self) -> None:
        self.prog_fds: List[int] = []
        self.link_fds: List[int] = []

    def open(self, bpf, funcs: Dict[str, str], ids: Dict[str, int]) -> "TpBtfPrograms":
        try:
            for fn, tp in funcs.items():
                # named after the tracepoint, as bcc names its raw tracepoint programs
                fd = load(tp, bpf.dump_func(fn.encode()), ids[tp])
                self.prog_fds.append(fd)
            for fd in self.prog_fds:
                self.link_fds.append(attach(fd))
        except BaseException:
            self.close()
            raise
        return self

    def detach(self) -> None:
        links, self.link_fds = self.link_fds, []
        for fd in links:
            try:
                os.close(fd)
            except OSError:
                pass

    def close(self) -> None:
        self.detach()
        progs, self.prog_fds = self.prog_fds, []
        for fd in progs:
            try:
                os.close(fd)
            except OSError:
                pass
