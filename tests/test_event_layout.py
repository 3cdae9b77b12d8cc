"""The event layout is written twice, in C (probes/pyimpact.h) and in numpy
(pyimpact/timeline.py), because the kernel side and the user side are
separate files. This test reads the header and fails, without root, when the
two sides drift apart: a field added, moved or resized on one side only, or
a kind number changed."""
from __future__ import annotations

import os
import re

import numpy as np

from pyimpact.timeline import EVENT_DTYPE, KINDS

HEADER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "probes", "pyimpact.h")
C_TYPES = {"u64": "<u8", "s64": "<i8", "u32": "<u4", "s32": "<i4", "u16": "<u2", "s16": "<i2",
           "u8": "<u1", "s8": "<i1"}


def _header() -> str:
    with open(HEADER) as f:
        return f.read()


def _defines(text: str) -> dict:
    return {name: int(value) for name, value in re.findall(r"^#define\s+(\w+)\s+(\d+)\b", text, re.M)}


def _struct_dtype(text: str, name: str) -> np.dtype:
    """A numpy dtype from a C struct of fixed-size integer and char-array fields."""
    body = re.search(r"struct\s+%s\s*\{(.*?)\};" % name, text, re.S).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    defines = _defines(text)
    fields = []
    for ctype, field, count in re.findall(r"(\w+)\s+(\w+)\s*(?:\[(\w+)\])?\s*;", body):
        n = int(defines.get(count, count)) if count else 0
        if ctype == "char":
            fields.append((field, f"S{n}"))
        elif n:
            fields.append((field, C_TYPES[ctype], (n,)))
        else:
            fields.append((field, C_TYPES[ctype]))
    return np.dtype(fields)


def test_event_struct_matches_header():
    c_side = _struct_dtype(_header(), "pyi_event")
    assert c_side.itemsize == EVENT_DTYPE.itemsize
    assert [(f, str(c_side[f])) for f in c_side.names] == [(f, str(EVENT_DTYPE[f])) for f in EVENT_DTYPE.names]
    assert [c_side.fields[f][1] for f in c_side.names] == [EVENT_DTYPE.fields[f][1] for f in EVENT_DTYPE.names]


def test_kind_numbers_match_header():
    kinds = {name[len("PYI_KIND_"):].lower(): nr for name, nr in _defines(_header()).items()
             if name.startswith("PYI_KIND_")}
    assert kinds == {name: nr for nr, name in KINDS.items()}


def test_parser_sees_a_drift():
    """The comparison above can fail: a header with one field resized differs."""
    drifted = _header().replace("s32 aux;", "s64 aux;")
    assert _struct_dtype(drifted, "pyi_event") != EVENT_DTYPE


def test_flight_slot_matches_header():
    """The in-flight slot (struct pyi_flight) is read through the map's mmap
    with pyimpact.collect.probes.FLIGHT_DTYPE: same fields, offsets and size."""
    from pyimpact.collect.probes import FLIGHT_DTYPE

    c_side = _struct_dtype(_header(), "pyi_flight")
    assert c_side.itemsize == FLIGHT_DTYPE.itemsize
    assert list(c_side.names) == list(FLIGHT_DTYPE.names)
    assert [c_side.fields[f][1] for f in c_side.names] == [FLIGHT_DTYPE.fields[f][1] for f in FLIGHT_DTYPE.names]
    assert [c_side[f].itemsize for f in c_side.names] == [FLIGHT_DTYPE[f].itemsize for f in FLIGHT_DTYPE.names]
