"""The one JSON writer: typed results (dataclasses) to the plain data of a ``--json`` document.

Why one writer: the analysis returns dataclasses (``Diagnosis``,
``ImpactReport`` and their parts), and each ``--json`` document is the same
tree written out.  Built by hand, every result had its own ``to_dict`` that
could drift from its fields (a field added and forgotten, a key spelt
differently in two places); here the document follows the fields, in their
order, as py-spy prints its typed traces.

Where a document's key is not the field's name, or a key appears only in some
documents, the field says so once, in its metadata (``json_field``):

  key="..."        the document's key for this field
  omit_none=True   the key is left out while the value is None (a key that
                   only some results carry: a namespace init's cascade, a
                   peer's state)
  omit_empty=True  the key is left out while the value is None or empty
                   ("" / [] / {}: a chain link's note, only the last has one)
  flatten=True     a nested dataclass whose keys are written inline into this
                   one (a part computed by another module, one level in the
                   document)
  skip=True        not written (an intermediate the analysis keeps)

A dataclass whose document also carries keys derived from its fields (a
figure's basis sentence, an alias a consumer reads) defines
``json_extra(self) -> dict``: those keys follow its fields.

Values: a dataclass becomes a dict (its fields in order), an ``Enum`` its
value, a dict keeps its keys, a list or tuple becomes a list; anything else
(str, int, float, bool, None) is written as it is.  ``to_json`` returns new
containers, so a caller may add keys to a document without touching the
result it came from.

Base layer: the standard library only.
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Any, Dict

_META = "pyimpact.json"


def json_field(*, key: str = "", omit_none: bool = False, omit_empty: bool = False, flatten: bool = False,
               skip: bool = False, **kw: Any) -> Any:
    """``dataclasses.field(**kw)`` that also says how the field is written (module docstring)."""
    meta: Dict[str, Any] = dict(kw.pop("metadata", None) or {})
    meta[_META] = {"key": key, "omit_none": omit_none, "omit_empty": omit_empty, "flatten": flatten,
                   "skip": skip}
    return dataclasses.field(metadata=meta, **kw)


def to_json(obj: Any) -> Any:
    """``obj`` (a dataclass tree, or plain data holding dataclasses) as plain JSON data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _dataclass(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return [to_json(v) for v in obj]
    return obj


def _dataclass(obj: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        how = f.metadata.get(_META)
        value = getattr(obj, f.name)
        if how is None:
            out[f.name] = to_json(value)
            continue
        if how["skip"] or (how["omit_none"] and value is None):
            continue
        if how["omit_empty"] and (value is None or (isinstance(value, (str, list, tuple, dict)) and not value)):
            continue
        if how["flatten"]:
            if value is not None:
                out.update(_dataclass(value))
            continue
        out[how["key"] or f.name] = to_json(value)
    extra = getattr(obj, "json_extra", None)
    if callable(extra):
        out.update(to_json(extra()))
    return out
