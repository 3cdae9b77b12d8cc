"""Text for the terminal views: ``plain`` (the one way a view shows a hostile
string) on top of the base text hygiene in ``pyimpact.text`` and the
formatters in ``pyimpact.formats``, both re-exported here for the views.
"""
from __future__ import annotations

from ..formats import human_bytes, human_duration
from ..text import clean, json_dumps, json_text, no_surrogates, no_surrogates_frame

__all__ = ["clean", "human_bytes", "human_duration", "json_dumps", "json_text", "no_surrogates",
           "no_surrogates_frame", "plain"]


def plain(value, style: str = ""):
    """``value`` as a rich Text: escaped by ``clean`` and never parsed as
    markup or emoji codes (the one way a view shows a hostile string)."""
    from rich.text import Text

    return Text(clean(value), style=style)
