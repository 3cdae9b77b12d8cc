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

bcc compiles the C (bpf_image.py); this module finds the tracepoint's BTF
id with libbpf (``btf__find_by_name_kind`` on the kernel's BTF), loads the
bytecode with the bpf() syscall (bpf_sys.py) and attaches it with
BPF_RAW_TRACEPOINT_OPEN.
Detaching is closing the link's fd (well under a millisecond, like any raw
tracepoint). Anything missing (no libbpf, no vmlinux BTF, an older kernel's
verifier refusing) raises ``TpBtfUnavailable`` and the caller falls back to
plain raw tracepoints.
"""
from __future__ import annotations

import ctypes
import os
from typing import Dict

from . import bpf_sys

VMLINUX_BTF = "/sys/kernel/btf/vmlinux"


class TpBtfUnavailable(Exception):
    """tp_btf programs cannot be used here; the message says why."""


def btf_ids(tracepoints, btf: "_Btf | None" = None) -> Dict[str, int]:
    """The vmlinux BTF id of each raw tracepoint (its btf_trace_<name>
    typedef), by name. About 50 ms on an idle machine of this kind: libbpf
    parses the kernel's BTF (pass ``btf`` to parse it once for several
    lookups)."""
    if not os.path.exists(VMLINUX_BTF):
        raise TpBtfUnavailable(f"{VMLINUX_BTF} is missing (kernel built without BTF)")
    own = btf is None
    btf = btf or _Btf()
    try:
        out = {}
        for tp in tracepoints:
            tid = btf.lib.btf__find_by_name_kind(btf.btf, f"btf_trace_{tp}".encode(), BTF_KIND_TYPEDEF)
            if tid <= 0:
                raise TpBtfUnavailable(f"no BTF type for raw tracepoint {tp}")
            out[tp] = tid
        return out
    finally:
        if own:
            btf.close()


BTF_KIND_PTR, BTF_KIND_STRUCT, BTF_KIND_UNION, BTF_KIND_ENUM, BTF_KIND_ENUM64 = 2, 4, 5, 6, 19
BTF_KIND_TYPEDEF, BTF_KIND_VOLATILE, BTF_KIND_CONST, BTF_KIND_RESTRICT = 8, 9, 10, 11
BTF_KIND_FUNC_PROTO, BTF_KIND_TYPE_TAG = 13, 18
_MODIFIERS = (BTF_KIND_TYPEDEF, BTF_KIND_VOLATILE, BTF_KIND_CONST, BTF_KIND_RESTRICT, BTF_KIND_TYPE_TAG)


class _Btf:
    """The kernel's BTF through libbpf (btf__load_vmlinux_btf): struct member
    offsets and raw tracepoint prototypes, for programs that read kernel
    structures the kernel's headers would describe (no #include: each costs
    ~1 s of compile time, DESIGN.md)."""

    def __init__(self) -> None:
        try:
            lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
            lib.btf__load_vmlinux_btf.restype = ctypes.c_void_p
            lib.btf__find_by_name_kind.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32]
            lib.btf__find_by_name_kind.restype = ctypes.c_int32
            lib.btf__type_by_id.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
            lib.btf__type_by_id.restype = ctypes.POINTER(ctypes.c_uint32)
            lib.btf__name_by_offset.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
            lib.btf__name_by_offset.restype = ctypes.c_char_p
            lib.btf__free.argtypes = [ctypes.c_void_p]
        except (OSError, AttributeError) as err:
            raise TpBtfUnavailable(f"libbpf.so.1 is not usable: {err}") from None
        self.lib = lib
        self.btf = lib.btf__load_vmlinux_btf()
        if not self.btf:
            raise TpBtfUnavailable("the kernel's BTF could not be loaded")

    def close(self) -> None:
        if self.btf:
            self.lib.btf__free(self.btf)
            self.btf = None

    def _type(self, tid: int):
        t = self.lib.btf__type_by_id(self.btf, tid)
        if not t:
            raise TpBtfUnavailable(f"BTF type {tid} missing")
        info = t[1]
        return t, (info >> 24) & 0x1F, info & 0xFFFF, bool(info >> 31)

    def _strip(self, tid: int) -> int:
        for _ in range(16):
            t, kind, _, _ = self._type(tid)
            if kind not in _MODIFIERS:
                return tid
            tid = t[2]
        return tid

    def _name(self, off: int) -> str:
        return (self.lib.btf__name_by_offset(self.btf, off) or b"").decode()

    def struct_id(self, name: str) -> int:
        tid = self.lib.btf__find_by_name_kind(self.btf, name.encode(), BTF_KIND_STRUCT)
        if tid <= 0:
            raise TpBtfUnavailable(f"no struct {name} in the kernel's BTF")
        return tid

    def member(self, struct_tid: int, field: str, depth: int = 0):
        """(byte offset, member type id) of ``field``, looking through
        anonymous struct and union members."""
        t, kind, vlen, kflag = self._type(struct_tid)
        if kind not in (BTF_KIND_STRUCT, BTF_KIND_UNION) or depth > 4:
            raise TpBtfUnavailable(f"BTF type {struct_tid} is not a struct")
        for i in range(vlen):
            name_off, mtype, moff = t[3 + 3 * i], t[4 + 3 * i], t[5 + 3 * i]
            bits = moff & 0xFFFFFF if kflag else moff
            if bits % 8:
                continue
            if name_off and self._name(name_off) == field:
                return bits // 8, mtype
            if not name_off:
                inner = self._strip(mtype)
                if self._type(inner)[1] in (BTF_KIND_STRUCT, BTF_KIND_UNION):
                    try:
                        off, tt = self.member(inner, field, depth + 1)
                        return bits // 8 + off, tt
                    except TpBtfUnavailable:
                        pass
        raise TpBtfUnavailable(f"no member {field} in BTF type {self._name(t[0]) or struct_tid}")

    def path(self, struct: str, fields: str) -> int:
        """Byte offset of ``fields`` ("bi_iter.bi_sector": members of
        embedded structures, not through pointers) in struct ``struct``."""
        tid, total = self.struct_id(struct), 0
        for i, field in enumerate(fields.split(".")):
            if i:
                tid = self._strip(tid)
            off, tid = self.member(tid, field)
            total += off
        return total

    def enum_value(self, enum: str, name: str) -> int:
        """The value of enumerator ``name`` of ``enum req_op`` and the like."""
        for kind in (BTF_KIND_ENUM, BTF_KIND_ENUM64):
            tid = self.lib.btf__find_by_name_kind(self.btf, enum.encode(), kind)
            if tid <= 0:
                continue
            t, _, vlen, _ = self._type(tid)
            step = 2 if kind == BTF_KIND_ENUM else 3
            for i in range(vlen):
                if self._name(t[3 + step * i]) == name:
                    return t[4 + step * i]      # the low 32 bits: these enumerators are small
            raise TpBtfUnavailable(f"enum {enum} has no {name}")
        raise TpBtfUnavailable(f"no enum {enum} in the kernel's BTF")

    def pointee_struct(self, tid: int) -> str:
        """The struct name a (possibly qualified) pointer type points to, '' if none."""
        t, kind, _, _ = self._type(self._strip(tid))
        if kind != BTF_KIND_PTR:
            return ""
        t2, kind2, _, _ = self._type(self._strip(t[2]))
        return self._name(t2[0]) if kind2 == BTF_KIND_STRUCT else ""

    def tracepoint_args(self, tp: str) -> list:
        """Per argument of raw tracepoint ``tp`` (after its __data), the
        struct it points to ('' for a non-struct-pointer argument)."""
        tid = self.lib.btf__find_by_name_kind(self.btf, f"btf_trace_{tp}".encode(), BTF_KIND_TYPEDEF)
        if tid <= 0:
            raise TpBtfUnavailable(f"no raw tracepoint {tp} in the kernel's BTF")
        t, kind, _, _ = self._type(self._strip(tid))
        if kind != BTF_KIND_PTR:
            raise TpBtfUnavailable(f"btf_trace_{tp} is not a function pointer")
        proto, kind, vlen, _ = self._type(self._strip(t[2]))
        if kind != BTF_KIND_FUNC_PROTO:
            raise TpBtfUnavailable(f"btf_trace_{tp} is not a function pointer")
        return [self.pointee_struct(proto[4 + 2 * i]) for i in range(1, vlen)]


#: What the raw tracepoint programs read (probes/pyimpact.h, PYI_OFF_*,
#: PYI_BIT_*, PYI_OP_*), in the order of their pyi_offsets array: a member's
#: byte offset ("off", struct, "member.member"), or an enumerator's value
#: ("enum", enum, name).
KERNEL_FIELDS = (
    ("off", "request", "q"), ("off", "request", "__sector"), ("off", "request_queue", "disk"),
    ("off", "gendisk", "major"), ("off", "gendisk", "first_minor"), ("off", "request", "__data_len"),
    ("off", "bio", "bi_bdev"), ("off", "block_device", "bd_disk"), ("off", "bio", "bi_iter.bi_sector"),
    ("off", "bio", "bi_iter.bi_size"), ("off", "bio", "bi_opf"), ("off", "bio", "bi_status"),
    ("off", "task_struct", "pid"), ("off", "linux_binprm", "filename"),
    ("off", "kernel_siginfo", "si_errno"), ("off", "kernel_siginfo", "si_code"),
    ("off", "k_sigaction", "sa.sa_handler"), ("off", "k_sigaction", "sa.sa_flags"),
    ("enum", "req_flag_bits", "__REQ_FAILFAST_DEV"), ("enum", "req_flag_bits", "__REQ_SYNC"),
    ("enum", "req_flag_bits", "__REQ_META"), ("enum", "req_flag_bits", "__REQ_FUA"),
    ("enum", "req_flag_bits", "__REQ_PREFLUSH"), ("enum", "req_flag_bits", "__REQ_RAHEAD"),
    ("enum", "req_op", "REQ_OP_READ"), ("enum", "req_op", "REQ_OP_WRITE"), ("enum", "req_op", "REQ_OP_FLUSH"),
    ("enum", "req_op", "REQ_OP_DISCARD"), ("enum", "req_op", "REQ_OP_SECURE_ERASE"),
)

#: The raw tracepoints those programs attach to, and the structure each of
#: their arguments must point to ('' for a plain value): a kernel whose
#: tracepoint takes something else is not read with these offsets (the
#: probes are then classic tracepoints, which are formatted by the kernel).
RAW_TRACEPOINT_ARGS = {
    "sched_process_fork": ("task_struct", "task_struct"),
    "sched_process_exec": ("task_struct", "", "linux_binprm"),
    "sched_process_exit": ("task_struct", ""),
    "signal_generate": ("", "kernel_siginfo", "task_struct", "", ""),
    "signal_deliver": ("", "kernel_siginfo", "k_sigaction"),
    "block_bio_queue": ("bio",),
    "block_bio_remap": ("bio", "", ""),
    "block_bio_backmerge": ("bio",),
    "block_rq_merge": ("request",),
    "block_bio_frontmerge": ("bio",),
    "block_rq_issue": ("request",),
    "block_bio_complete": ("request_queue", "bio"),
    "block_rq_complete": ("request", "", ""),
}

#: The first five of KERNEL_FIELDS: what block_rq_complete reads
#: (scripts/bench/unseen_completions.py uses them alone).
BLOCK_FIELDS = tuple((struct, field) for _, struct, field in KERNEL_FIELDS[:5])


def _check_tracepoints(btf: "_Btf", tracepoints) -> None:
    for tp in tracepoints:
        want = RAW_TRACEPOINT_ARGS[tp]
        args = btf.tracepoint_args(tp)
        if tuple(args) != want:
            raise TpBtfUnavailable(f"{tp} takes ({', '.join(a or '?' for a in args)}), "
                                   f"not ({', '.join(a or '?' for a in want)})")


def kernel_offsets(btf: "_Btf | None" = None) -> list:
    """The values of KERNEL_FIELDS in this kernel, after checking that each
    raw tracepoint of RAW_TRACEPOINT_ARGS still takes what the programs read."""
    own = btf is None
    btf = btf or _Btf()
    try:
        _check_tracepoints(btf, RAW_TRACEPOINT_ARGS)
        return [btf.path(a, b) if kind == "off" else btf.enum_value(a, b) for kind, a, b in KERNEL_FIELDS]
    finally:
        if own:
            btf.close()


def block_offsets(btf: "_Btf | None" = None) -> list:
    """Byte offsets of BLOCK_FIELDS in this kernel, after checking that the
    raw tracepoint block_rq_complete still takes a struct request * first."""
    own = btf is None
    btf = btf or _Btf()
    try:
        _check_tracepoints(btf, ["block_rq_complete"])
        return [btf.path(struct, field) for struct, field in BLOCK_FIELDS]
    finally:
        if own:
            btf.close()


def kernel_facts(tracepoints) -> dict:
    """What the BTF-based programs need, from one parse of the kernel's BTF:
    {"ids": btf_ids(tracepoints), "offsets": kernel_offsets()}."""
    if not os.path.exists(VMLINUX_BTF):
        raise TpBtfUnavailable(f"{VMLINUX_BTF} is missing (kernel built without BTF)")
    btf = _Btf()
    try:
        return {"ids": btf_ids(tracepoints, btf), "offsets": kernel_offsets(btf)}
    finally:
        btf.close()


def load(name: str, insns: bytes, btf_id: int) -> int:
    """Load bytecode as a tp_btf program for the tracepoint with ``btf_id``;
    returns its fd. On a verifier refusal the message carries the log's last
    line."""
    try:
        return bpf_sys.prog_load(bpf_sys.BPF_PROG_TYPE_TRACING, name, insns,
                                 expected_attach_type=bpf_sys.BPF_TRACE_RAW_TP, attach_btf_id=btf_id)
    except bpf_sys.BpfSysError as err:
        line = getattr(err, "verifier_line", "")
        raise TpBtfUnavailable(f"the verifier refused {name} as tp_btf: {os.strerror(err.errno)}"
                               + (f" ({line})" if line else "")) from None


def attach(prog_fd: int) -> int:
    """Attach a loaded tp_btf program (its tracepoint was fixed at load);
    returns the link fd: closing it detaches."""
    try:
        return bpf_sys.raw_tracepoint_open(prog_fd)
    except bpf_sys.BpfSysError as err:
        raise TpBtfUnavailable(f"could not attach a tp_btf program: {os.strerror(err.errno)}") from None
