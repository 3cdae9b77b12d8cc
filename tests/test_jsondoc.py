"""The one JSON writer (pyimpact.jsondoc): a dataclass tree to a --json document (no root)."""
from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from pyimpact.jsondoc import json_field, to_json


class Colour(str, enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Inner:
    a: int
    b: Optional[str] = None


@dataclass(frozen=True)
class Part:
    x: int
    y: Tuple[int, int]


@dataclass(frozen=True)
class Outer:
    first: str
    colour: Colour
    inner: Inner
    renamed: int = json_field(default=0, key="in-document")
    maybe: Optional[int] = json_field(default=None, omit_none=True)
    kept_none: Optional[int] = None
    part: Optional[Part] = json_field(default=None, flatten=True)
    hidden: str = json_field(default="internal", skip=True)
    note: str = json_field(default="", key="end", omit_empty=True)
    by_name: Dict[str, Inner] = field(default_factory=dict)
    items: List[Colour] = field(default_factory=list)


def test_fields_in_order_with_their_metadata():
    o = Outer("f", Colour.BLUE, Inner(1), renamed=7, part=Part(3, (4, 5)),
              by_name={"k": Inner(2, "two")}, items=[Colour.RED])
    doc = to_json(o)
    assert list(doc) == ["first", "colour", "inner", "in-document", "kept_none", "x", "y", "by_name", "items"]
    assert doc == {"first": "f", "colour": "blue", "inner": {"a": 1, "b": None}, "in-document": 7,
                   "kept_none": None, "x": 3, "y": [4, 5], "by_name": {"k": {"a": 2, "b": "two"}},
                   "items": ["red"]}
    # plain JSON data: json needs no default= to write it, and reads back the same
    assert json.loads(json.dumps(doc)) == doc


def test_omitted_key_appears_once_it_has_a_value_and_enums_are_values():
    doc = to_json(Outer("f", Colour.RED, Inner(1), maybe=0, note="why"))
    assert doc["maybe"] == 0 and type(doc["colour"]) is str and "x" not in doc and doc["end"] == "why"


def test_documents_are_new_containers():
    o = Outer("f", Colour.RED, Inner(1), by_name={"k": Inner(2)}, items=[Colour.RED])
    doc = to_json(o)
    doc["by_name"]["extra"] = 1
    doc["items"].append("blue")
    assert set(o.by_name) == {"k"} and o.items == [Colour.RED]
