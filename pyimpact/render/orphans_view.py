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

from ..analyse.history.orphans import iso
from .text import clean


def _short(text: str, n: int) -> str:
    text = clean(text)
    return text if len(text) <= n else text[:n - 1] + "…"


def _command(cmd: str) -> str:
    """'/usr/bin/python3 -m x ...' -> 'python3 -m x ...': the program's path says little here."""
    head, _, rest = clean(cmd).partition(" ")
    return head.rsplit("/", 1)[-1] + (" " + rest if rest else "")


def write(orphans: List[object], stream, history_note: str = "") -> None:
    console = Console(file=stream, width=max(140, Console(file=stream).width), highlight=False, markup=False,
                      soft_wrap=False)
    if history_note:
        console.print(Text(history_note))
    if not orphans:
        console.print(Text("no orphaned workers found"))
        return
    table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    for col in ("PID", "JOB", "COMMAND", "ORPHANED SINCE", "HOLDS", "CLEAN?"):
        table.add_column(col, overflow="fold")
    for o in orphans:
        table.add_row(Text(str(o.pid)), Text(_short(o.job, 48)), Text(_short(_command(o.command), 48)),
                      Text(iso(o.orphaned_since_ns) or "? (no history)"), Text(", ".join(o.holds)),
                      Text(("yes: " if o.safe_to_clean else "no: ") + clean(o.reason)))
    console.print(table)
