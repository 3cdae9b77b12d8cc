"""Shared glue of the action commands (stop, suspend, resume): the prompt and the echo.

Why a prompt: DESIGN.md "Safety": an action command says what it will send
and asks, unless told not to (``--yes``).  An answer that is not "y" (or an
end of input) sends nothing and exits 8.
"""
from __future__ import annotations

import sys

import click

from ..errors import NotDone
from ..render.text import clean


def say(text: str = "") -> None:
    click.echo(clean(text) if text else "")
    sys.stdout.flush()


def warn(text: str) -> None:
    click.echo(clean(text), err=True)


def confirm_or_stop(question: str, yes: bool) -> None:
    """Ask ``question``; raise NotDone (exit 8, nothing sent) unless answered yes."""
    if yes:
        return
    try:
        ok = click.confirm(question, default=False)
    except click.exceptions.Abort:
        ok = False
    if not ok:
        raise NotDone("nothing was sent (not confirmed)", "answer y, or pass --yes")
