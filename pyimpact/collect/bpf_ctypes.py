"""bcc's JSON descriptions of map keys and values, as ctypes types.

When bcc compiles a map declaration it describes the key and value types
in JSON (``bpf_table_key_desc``): a C scalar as its name (``"unsigned
int"``); a struct or union as ``[name, [field, ...], "struct" |
"struct_packed" | "union"]``; a field as ``[name, type]``, ``[name, type,
[n, ...]]`` for an array, or ``[name, type, bits]`` for a bit field. The
compiled-probe image keeps those strings (bpf_image.py), so that a process
loading it reads its maps with the same ctypes layout bcc's tables would
use, without importing bcc.
"""
from __future__ import annotations

import ctypes
from typing import Any

_SCALARS = {
    "char": ctypes.c_char, "signed char": ctypes.c_byte, "unsigned char": ctypes.c_ubyte, "_Bool": ctypes.c_bool,
    "short": ctypes.c_short, "unsigned short": ctypes.c_ushort, "int": ctypes.c_int, "unsigned int": ctypes.c_uint,
    "long": ctypes.c_long, "unsigned long": ctypes.c_ulong, "long long": ctypes.c_longlong,
    "unsigned long long": ctypes.c_ulonglong, "float": ctypes.c_float, "double": ctypes.c_double,
    "__int128": ctypes.c_ulonglong * 2, "unsigned __int128": ctypes.c_ulonglong * 2,
}
_KINDS = {"struct": (ctypes.Structure, 0), "struct_packed": (ctypes.Structure, 1), "union": (ctypes.Union, 0)}


class DescError(TypeError):
    """A description this decoder does not know."""


def ctype_of(desc: Any):
    """The ctypes type for one description (parsed JSON)."""
    if isinstance(desc, str):
        if desc in _SCALARS:
            return _SCALARS[desc]
        raise DescError(f"unknown C type {desc!r}")
    if isinstance(desc, list) and len(desc) == 3 and isinstance(desc[1], list) and desc[2] in _KINDS:
        return _record(str(desc[0]) or "anon", desc[1], desc[2])
    raise DescError(f"unknown type description {desc!r}")


def _record(name: str, fields: list, kind: str):
    base, pack = _KINDS[kind]
    out, anonymous = [], []
    for i, field in enumerate(fields):
        if not isinstance(field, list) or len(field) not in (2, 3):
            raise DescError(f"bad field {field!r} in {name}")
        fname = str(field[0]) or f"__anon{i}"
        if not field[0]:
            anonymous.append(fname)
        ftype = ctype_of(field[1])
        if len(field) == 2:
            out.append((fname, ftype))
        elif isinstance(field[2], list):
            for n in reversed(field[2]):
                ftype = ftype * int(n)
            out.append((fname, ftype))
        else:
            out.append((fname, ftype, int(field[2])))
    attrs = {}
    if pack:
        attrs["_pack_"] = 1
    if anonymous:
        attrs["_anonymous_"] = anonymous
    attrs["_fields_"] = out        # last: ctypes lays the fields out as _pack_ says
    return type(name, (base,), attrs)
