"""Kernel structure offsets from the running kernel's BTF (/sys/kernel/btf/vmlinux).

Why: the recorder's probes read a few kernel structures (a task's open file
for an fd, the file's name, size and mode; a new task's tgid). The kernel
headers this machine has may belong to another kernel version (setup links
the newest header tree when none matches), and their layouts then lie: read
through them, `fdtable.max_fds` came back 0 on this VM. BTF describes the
structures of the kernel that is running, so the offsets computed here are
right by construction; they reach the BPF C as -D flags, like every other
setting (DESIGN.md: no text pasted into C).

Only what is needed is decoded: struct and union members (named or
anonymous), through typedefs and qualifiers. Format: Documentation/bpf/btf.rst.
"""
from __future__ import annotations

import struct
from typing import Dict, Iterable, List, Optional, Tuple

from ..errors import BPFUnavailable

VMLINUX_BTF = "/sys/kernel/btf/vmlinux"

_INT, _PTR, _ARRAY, _STRUCT, _UNION, _ENUM, _FWD, _TYPEDEF, _VOLATILE, _CONST, _RESTRICT = range(1, 12)
_FUNC, _FUNC_PROTO, _VAR, _DATASEC, _FLOAT, _DECL_TAG, _TYPE_TAG, _ENUM64 = range(12, 20)
_QUALIFIERS = (_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG)


class BTF:
    """The types of one BTF blob, indexed by id, with names resolved lazily."""

    def __init__(self, data: bytes):
        magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII", data, 0)
        if magic != 0xEB9F:
            raise ValueError("not a BTF blob")
        self._data = data
        self._strings = hdr_len + str_off
        self._str_end = self._strings + str_len
        # types[id] = (kind, name_off, vlen, kind_flag, size_or_type, offset of the trailing data)
        self.types: List[Optional[Tuple[int, int, int, int, int, int]]] = [None]
        self._by_name: Dict[Tuple[int, str], int] = {}
        pos, end = hdr_len + type_off, hdr_len + type_off + type_len
        unpack = struct.Struct("<III").unpack_from
        want = (_STRUCT, _UNION)
        while pos < end:
            name_off, info, size_type = unpack(data, pos)
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            extra = pos + 12
            self.types.append((kind, name_off, vlen, info >> 31, size_type, extra))
            if kind in want and name_off and vlen:
                key = (kind, self.name(name_off))
                self._by_name.setdefault(key, len(self.types) - 1)
            if kind == _INT or kind in (_VAR, _DECL_TAG):
                extra += 4
            elif kind == _ARRAY:
                extra += 12
            elif kind in (_STRUCT, _UNION, _DATASEC, _ENUM64):
                extra += 12 * vlen
            elif kind in (_ENUM, _FUNC_PROTO):
                extra += 8 * vlen
            pos = extra

    def name(self, off: int) -> str:
        start = self._strings + off
        return self._data[start:self._data.index(b"\0", start)].decode()

    def _resolve(self, tid: int) -> int:
        """Skip typedefs and qualifiers."""
        for _ in range(32):
            t = self.types[tid]
            if t is None or t[0] not in _QUALIFIERS:
                return tid
            tid = t[4]
        return tid

    def struct_id(self, name: str) -> int:
        for kind in (_STRUCT, _UNION):
            tid = self._by_name.get((kind, name))
            if tid:
                return tid
        raise KeyError(f"struct {name} not in BTF")

    def members(self, tid: int) -> Iterable[Tuple[str, int, int]]:
        """(name, type id, bit offset) of each member of a struct or union."""
        kind, _n, vlen, kflag, _s, extra = self.types[tid]
        for i in range(vlen):
            name_off, mtype, moff = struct.unpack_from("<III", self._data, extra + 12 * i)
            yield (self.name(name_off) if name_off else ""), mtype, (moff & 0xFFFFFF) if kflag else moff

    def member_offset(self, tid: int, member: str) -> Tuple[int, int]:
        """(byte offset, type id) of ``member`` in struct ``tid``, looking
        through anonymous structs and unions."""
        found = self._find(self._resolve(tid), member, 0)
        if found is None:
            raise KeyError(f"no member {member}")
        bits, mtype = found
        return bits // 8, mtype

    def _find(self, tid: int, member: str, base: int, depth: int = 0):
        t = self.types[tid]
        if t is None or t[0] not in (_STRUCT, _UNION) or depth > 8:
            return None
        for name, mtype, bits in self.members(tid):
            if name == member:
                return base + bits, mtype
            if not name:
                inner = self._find(self._resolve(mtype), member, base + bits, depth + 1)
                if inner is not None:
                    return inner
        return None

    def offset(self, struct_name: str, path: str) -> int:
        """Byte offset of a dotted member path inside ``struct struct_name``
        (``offset("file", "f_path.dentry")``); the path crosses embedded
        structs only, never pointers."""
        tid = self.struct_id(struct_name)
        total = 0
        for part in path.split("."):
            off, mtype = self.member_offset(tid, part)
            total += off
            tid = self._resolve(mtype)
        return total


def load_btf(path: str = VMLINUX_BTF) -> BTF:
    try:
        with open(path, "rb") as f:
            return BTF(f.read())
    except OSError as err:
        raise BPFUnavailable(f"kernel BTF is not readable at {path} ({err.strerror})",
                             "the recorder needs a kernel built with CONFIG_DEBUG_INFO_BTF") from None
    except (ValueError, struct.error) as err:
        raise BPFUnavailable(f"kernel BTF at {path} could not be parsed ({err})",
                             "run with --no-bpf (/proc only), or on a kernel with readable BTF") from None


#: The offsets the recorder's probes need: -D name -> (struct, member path).
RECORDER_OFFSETS = {
    "PYI_OFF_TASK_PID": ("task_struct", "pid"),
    "PYI_OFF_TASK_TGID": ("task_struct", "tgid"),
    "PYI_OFF_TASK_FILES": ("task_struct", "files"),
    "PYI_OFF_TASK_EXIT_CODE": ("task_struct", "exit_code"),
    "PYI_OFF_TASK_MM": ("task_struct", "mm"),
    "PYI_OFF_TASK_SIGNAL": ("task_struct", "signal"),
    "PYI_OFF_MM_ARG_START": ("mm_struct", "arg_start"),
    "PYI_OFF_MM_ARG_END": ("mm_struct", "arg_end"),
    "PYI_OFF_SIGNAL_PIDS": ("signal_struct", "pids"),
    "PYI_OFF_PID_NUMBERS": ("pid", "numbers"),
    "PYI_OFF_FILES_FDT": ("files_struct", "fdt"),
    "PYI_OFF_FDT_MAX_FDS": ("fdtable", "max_fds"),
    "PYI_OFF_FDT_FD": ("fdtable", "fd"),
    "PYI_OFF_FILE_MODE": ("file", "f_mode"),
    "PYI_OFF_FILE_INODE": ("file", "f_inode"),
    "PYI_OFF_FILE_POS": ("file", "f_pos"),
    "PYI_OFF_FILE_DENTRY": ("file", "f_path.dentry"),
    "PYI_OFF_DENTRY_PARENT": ("dentry", "d_parent"),
    "PYI_OFF_DENTRY_NAME": ("dentry", "d_name.name"),
    "PYI_OFF_DENTRY_NAME_LEN": ("dentry", "d_name.len"),
    "PYI_OFF_INODE_MODE": ("inode", "i_mode"),
    "PYI_OFF_INODE_SIZE": ("inode", "i_size"),
    "PYI_OFF_INODE_INO": ("inode", "i_ino"),
    "PYI_OFF_INODE_SB": ("inode", "i_sb"),
    "PYI_OFF_SB_DEV": ("super_block", "s_dev"),
}


#: Offsets only the xfs fsync probe needs (xfs hands its own inode; the file's
#: name is that of the inode's first dentry). Absent from BTF: no xfs probe.
XFS_OFFSETS = {
    "PYI_OFF_XFS_I_VNODE": ("xfs_inode", "i_vnode"),
    "PYI_OFF_INODE_DENTRY": ("inode", "i_dentry"),
    "PYI_OFF_DENTRY_ALIAS": ("dentry", "d_u.d_alias"),
}


def optional_offsets(table: Dict[str, Tuple[str, str]], btf: BTF) -> Optional[Dict[str, int]]:
    """The offsets of ``table``, or None when the running kernel's BTF lacks any."""
    try:
        return {flag: btf.offset(sname, path) for flag, (sname, path) in table.items()}
    except KeyError:
        return None


def recorder_offsets(btf: Optional[BTF] = None) -> Dict[str, int]:
    btf = btf or load_btf()
    out = {}
    for flag, (sname, path) in RECORDER_OFFSETS.items():
        try:
            out[flag] = btf.offset(sname, path)
        except KeyError as err:
            raise BPFUnavailable(f"kernel BTF lacks {sname}.{path} ({err})",
                                 "this kernel's structures differ from what the recorder reads") from None
    return out
