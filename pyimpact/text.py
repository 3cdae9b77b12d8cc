"""Text hygiene shared by every renderer, exporter and JSON writer (base layer).

Every string that came from another process (comm, argv, paths, environment
values, socket addresses, py-spy frames, file names) is hostile: it can carry
newlines that print a spoofed line, terminal escapes, Unicode bidi controls
that reorder what is shown, rich markup (``[/x]`` makes a markup render raise)
and bytes that are not UTF-8 (kept by the collectors as lone surrogates,
Python's ``surrogateescape``, so the original byte is not lost).

One function makes such a string safe to show: ``clean``.  It escapes what is
not printable visibly and on one line (``\\n``, ``\\x1b``, ``\\u202e``, and
``\\xff`` for an undecodable byte), so what is shown is what the kernel holds,
never an effect.  Views put its result into ``rich.text.Text`` (``plain``, in
pyimpact.render.text),
never into a markup string.  JSON writers use ``json_dumps`` / ``json_text``:
JSON escapes control characters itself, but a lone surrogate is not Unicode
(strict decoders refuse it), so it becomes the visible text ``\\xNN`` there too.
"""
from __future__ import annotations

import json
import re

#: a lone surrogate: an undecodable byte (U+DC80..U+DCFF, from surrogateescape)
#: or any other half of a pair that lost its partner
_SURROGATE = re.compile("[\ud800-\udfff]")

#: JSON escapes written by json.dumps(ensure_ascii=True), one at a time: a
#: valid surrogate pair (kept), a lone surrogate (group 3, fixed), or any other
#: escape (kept; consuming ``\\\\`` here stops an escaped backslash followed by
#: "udcff" from being mistaken for a surrogate)
_JSON_ESCAPE = re.compile(r"\\(?:u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})|u(d[89a-f][0-9a-f]{2})|.)",
                          re.S | re.I)

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(ch: str) -> str:
    cp = ord(ch)
    if ch in _NAMED:
        return _NAMED[ch]
    if 0xDC80 <= cp <= 0xDCFF:          # surrogateescape: the original byte
        return f"\\x{cp - 0xDC00:02x}"
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def clean(text) -> str:
    """Printable, one-line form of a string that came from another process.

    Everything Unicode does not call printable (controls C0/DEL/C1, format
    characters such as the bidi overrides U+202A..U+202E and U+2066..U+2069,
    line/paragraph separators, lone surrogates, unassigned code points, and
    spaces other than U+0020) is written as a visible escape; the rest is
    kept as it is.  ``clean(clean(x)) == clean(x)``.
    """
    s = text if isinstance(text, str) else ("" if text is None else str(text))
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() else _escape_char(ch) for ch in s)


def no_surrogates(text: str) -> str:
    """``text`` with each lone surrogate replaced by its visible escape
    (``\\xff`` for an undecodable byte); everything else kept.  For data
    written to files, where newlines and the like are legitimate but text
    must be valid Unicode."""
    if not isinstance(text, str):
        return text
    return _SURROGATE.sub(lambda m: _escape_char(m.group(0)), text)


def no_surrogates_frame(df):
    """``df`` with ``no_surrogates`` applied to its text columns (object and
    category dtypes), for Parquet and CSV, whose UTF-8 encoders refuse a lone
    surrogate.  ``df`` itself is returned untouched when it holds none."""
    if df is None or not len(df):
        return df
    import pandas as pd

    out = None
    for col in df.columns:
        series = df[col]
        if isinstance(series.dtype, pd.CategoricalDtype):
            cats = series.cat.categories
            if cats.dtype != object or not any(isinstance(c, str) and _SURROGATE.search(c) for c in cats):
                continue
            fixed = series.astype(object).map(no_surrogates).astype("category")
        elif series.dtype == object:
            if not any(isinstance(v, str) and _SURROGATE.search(v) for v in series):
                continue
            fixed = series.map(no_surrogates)
        else:
            continue
        if out is None:
            out = df.copy()
        out[col] = fixed
    return df if out is None else out


def _fix_json_escape(m: "re.Match") -> str:
    lone = m.group(3)
    if lone is None:
        return m.group(0)
    # the escape as text: a backslash (written \\ in JSON) and the hex code
    return "\\" + _escape_char(chr(int(lone, 16)))


def json_text(doc: str) -> str:
    """Fix a document written by ``json.dumps(..., ensure_ascii=True)``: each
    lone surrogate escape (``\\udcff``) becomes the JSON string text
    ``\\\\xff``, so strict decoders accept it and readers see the byte."""
    if "\\u" not in doc:
        return doc
    return _JSON_ESCAPE.sub(_fix_json_escape, doc)


def json_dumps(obj, **kw) -> str:
    """``json.dumps`` for every JSON pyimpact writes (``--json`` output and
    recordings): ASCII only (no raw bidi controls or escapes reach a
    terminal that shows it), values json cannot encode written as ``str``,
    lone surrogates made visible (``json_text``)."""
    kw.setdefault("default", str)
    kw["ensure_ascii"] = True
    return json_text(json.dumps(obj, **kw))
