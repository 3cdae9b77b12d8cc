"""A compiled probe program as plain data: its maps' definitions and its
programs' bytecode, independent of the process that compiled it.

Why: compiling the probes with bcc (clang and LLVM, in process) takes
0.5-0.7 s on an idle machine of this kind, most of `diagnose`'s start-up
and the peak of `trace`'s memory. The bytecode depends only on the source,
the -D flags and the kernel it was built against, so it can be compiled
once and kept (probe_cache.py); bpf_loaded.py loads an image with a few
bpf(2) calls (about 30 ms).

``compile_image`` runs bcc's compiler without loading anything (bcc's
``BPF()`` would also load and attach every program), reads the maps and the
functions out of the module, and destroys it. In the bytecode each map
reference (a 64-bit immediate load with src_reg BPF_PSEUDO_MAP_FD, or
BPF_PSEUDO_MAP_VALUE) holds the compiling process's map fd; the image holds
the map's index instead, and the loader writes the new fd back.

Which functions are programs, and where they attach, follows bcc's own
naming convention (``tracepoint__CAT__EVENT``, ``raw_tracepoint__NAME``),
plus the functions the caller names as tp_btf programs (tp_btf.py). A
module with any other kind of program bcc would attach by name (kprobes,
kfuncs, LSM) is refused: the loader does not know how to attach it.
"""
from __future__ import annotations

import base64
import ctypes
import json
import struct
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

from ..errors import BPFUnavailable

FORMAT = 2          # 2: kernel_facts holds "offsets" (tp_btf.KERNEL_FIELDS), not "block_offsets"
BPF_LD_IMM64 = 0x18
PSEUDO_MAP_FD, PSEUDO_MAP_VALUE = 1, 2
_UNSUPPORTED_PREFIXES = (b"kprobe__", b"kretprobe__", b"kfunc__", b"kretfunc__", b"lsm__")


class ImageError(ValueError):
    """The compiled module cannot be kept as an image (or an image is malformed)."""


@dataclass(frozen=True)
class MapSpec:
    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    key_desc: str       # bcc's JSON description of the key type (for ctypes)
    leaf_desc: str


@dataclass(frozen=True)
class ProgSpec:
    name: str
    kind: str           # "tracepoint", "raw_tracepoint" or "tp_btf"
    target: str         # "cat:event" for a tracepoint, the tracepoint's name otherwise
    insns: bytes        # map references hold the map's index in ProbeImage.maps


@dataclass(frozen=True)
class ProbeImage:
    license: str
    maps: tuple
    progs: tuple
    # What loading the tp_btf programs needs from the kernel's BTF (tp_btf.kernel_facts:
    # tracepoint BTF ids, structure offsets), kept so that a later start skips libbpf's
    # parse of it (50-400 ms). None until the compiling process has them.
    kernel_facts: Optional[dict] = None

    def to_bytes(self, key: str) -> bytes:
        doc = {"format": FORMAT, "key": key, "license": self.license, "kernel_facts": self.kernel_facts,
               "maps": [asdict(m) for m in self.maps],
               "progs": [{"name": p.name, "kind": p.kind, "target": p.target,
                          "insns": base64.b64encode(p.insns).decode()} for p in self.progs]}
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes, key: str) -> "ProbeImage":
        """Parse and check an image written by to_bytes for the same key."""
        try:
            doc = json.loads(data)
            if doc.get("format") != FORMAT or doc.get("key") != key:
                raise ImageError("written for another format or key")
            maps = tuple(MapSpec(**m) for m in doc["maps"])
            progs = tuple(ProgSpec(name=str(p["name"]), kind=str(p["kind"]), target=str(p["target"]),
                                   insns=base64.b64decode(p["insns"], validate=True)) for p in doc["progs"])
            facts = doc.get("kernel_facts")
            if facts is not None:
                facts = {"ids": {str(k): int(v) for k, v in facts["ids"].items()},
                         "offsets": [int(x) for x in facts["offsets"]]}
            image = cls(license=str(doc["license"]), maps=maps, progs=progs, kernel_facts=facts)
        except ImageError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ImageError(f"malformed image: {type(err).__name__}") from None
        image.check()
        return image

    def check(self) -> None:
        """Every map reference in the bytecode names a map of the image."""
        for prog in self.progs:
            if prog.kind not in ("tracepoint", "raw_tracepoint", "tp_btf") or len(prog.insns) % 8:
                raise ImageError(f"program {prog.name}: bad kind or length")
            for _, index in map_references(prog.insns):
                if not 0 <= index < len(self.maps):
                    raise ImageError(f"program {prog.name} references map {index}, not in the image")


def map_references(insns: bytes):
    """(byte offset of the instruction, its immediate) for each map reference."""
    i = 0
    while i + 16 <= len(insns):
        code, regs = insns[i], insns[i + 1]
        if code == BPF_LD_IMM64:
            if regs >> 4 in (PSEUDO_MAP_FD, PSEUDO_MAP_VALUE):
                yield i, struct.unpack_from("<i", insns, i + 4)[0]
            i += 16          # a 64-bit immediate takes two instruction slots
        else:
            i += 8


def with_map_refs(insns: bytes, new_value) -> bytes:
    """The bytecode with each map reference's immediate replaced by new_value(old)."""
    out = bytearray(insns)
    for off, old in map_references(insns):
        struct.pack_into("<i", out, off + 4, new_value(old))
    return bytes(out)


def _lib():
    from .bpf_env import BCC_HINT

    try:
        from bcc.libbcc import lib   # declares the types of most of libbcc's functions
    except Exception as exc:  # ImportError, or libbcc.so missing under an installed bcc
        raise BPFUnavailable(f"bcc is not importable ({exc.__class__.__name__}: {exc})", BCC_HINT) from None

    u64, vp = ctypes.c_ulonglong, ctypes.c_void_p
    for name, res in (("bpf_num_tables", u64), ("bpf_table_name", ctypes.c_char_p), ("bpf_table_fd_id", ctypes.c_int),
                      ("bpf_table_key_size_id", ctypes.c_size_t), ("bpf_table_leaf_size_id", ctypes.c_size_t),
                      ("bpf_table_key_desc_id", ctypes.c_char_p), ("bpf_table_leaf_desc_id", ctypes.c_char_p)):
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = [vp] if name == "bpf_num_tables" else [vp, u64]
    return lib


def compile_image(source: bytes, cflags: List[str], tp_btf_funcs: Dict[str, str]) -> ProbeImage:
    """Compile ``source`` with bcc and return it as an image; nothing is loaded."""
    lib = _lib()
    flags = (ctypes.c_char_p * len(cflags))(*[f.encode() for f in cflags])
    module = lib.bpf_module_create_c_from_string(source, 0, flags, len(cflags), True, None)
    if not module:
        raise BPFUnavailable("could not compile the BPF probes (clang's messages are above)",
                             "is BPF permitted here (root, no lockdown, kernel >= 5.8)?")
    try:
        return _capture(lib, module, tp_btf_funcs)
    finally:
        lib.bpf_module_destroy(module)


def _text(raw) -> str:
    return raw.decode() if raw else ""


def _capture(lib, module, tp_btf_funcs: Dict[str, str]) -> ProbeImage:
    maps, index_of_fd = [], {}
    for i in range(lib.bpf_num_tables(module)):
        fd = lib.bpf_table_fd_id(module, i)
        if fd < 0:
            continue
        index_of_fd[fd] = len(maps)
        maps.append(MapSpec(name=_text(lib.bpf_table_name(module, i)), type=lib.bpf_table_type_id(module, i),
                            key_size=int(lib.bpf_table_key_size_id(module, i)),
                            value_size=int(lib.bpf_table_leaf_size_id(module, i)),
                            max_entries=int(lib.bpf_table_max_entries_id(module, i)),
                            flags=int(lib.bpf_table_flags_id(module, i)),
                            key_desc=_text(lib.bpf_table_key_desc_id(module, i)),
                            leaf_desc=_text(lib.bpf_table_leaf_desc_id(module, i))))

    def index(fd: int) -> int:
        if fd not in index_of_fd:
            raise ImageError(f"the bytecode references fd {fd}, which is no map of the module")
        return index_of_fd[fd]

    progs = []
    for i in range(lib.bpf_num_functions(module)):
        name = lib.bpf_function_name(module, i)
        if name.startswith(b"tracepoint__"):
            kind, target = "tracepoint", name[len(b"tracepoint__"):].replace(b"__", b":").decode()
        elif name.startswith(b"raw_tracepoint__"):
            kind, target = "raw_tracepoint", name[len(b"raw_tracepoint__"):].decode()
        elif name.decode() in tp_btf_funcs:
            kind, target = "tp_btf", tp_btf_funcs[name.decode()]
        elif name.startswith(_UNSUPPORTED_PREFIXES):
            raise ImageError(f"program {name.decode()}: this kind of attachment is not supported")
        else:
            continue        # not a program bcc would load by itself
        raw = ctypes.string_at(lib.bpf_function_start(module, name), lib.bpf_function_size(module, name))
        progs.append(ProgSpec(name=name.decode(), kind=kind, target=target, insns=with_map_refs(raw, index)))
    image = ProbeImage(license=_text(lib.bpf_module_license(module)) or "GPL", maps=tuple(maps), progs=tuple(progs))
    image.check()
    return image
