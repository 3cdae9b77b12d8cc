"""The `pyimpact orphans` table: one row per orphaned process.

Every string here comes from other processes (command lines, job commands):
cells are rich Text objects, never markup, after control characters are
escaped, so a command line cannot forge a row or break the render.
"""
from __future__ import annotations

from typing import List

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..analyse.orphans import iso
from .text import clean


def write(orphans: List[object], stream, history_note: str = "") -> None:
    console = Console(file=stream, width=max(100, Console(file=stream).width), highlight=False, markup=False)
    if history_note:
        console.print(Text(history_note))
    if not orphans:
        console.print(Text("no orphaned workers found"))
        return
    table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    for col in ("PID", "JOB", "COMMAND", "ORPHANED SINCE", "HOLDS", "CLEAN?"):
        table.add_column(col, overflow="fold")
    for o in orphans:
        table.add_row(Text(str(o.pid)), Text(clean(o.job)[:60]), Text(clean(o.command)[:60]),
                      Text(iso(o.orphaned_since_ns) or "unknown (no history)"), Text(", ".join(o.holds)),
                      Text(("yes: " if o.safe_to_clean else "no: ") + clean(o.reason)))
    console.print(table)
