"""`pyimpact demo`: the main job, on a bundled target, end to end.

Click glue: the session (pyimpact.sessions.demo) starts the bundled stuck
pipeline, runs `trace`, `diagnose`, `kill-preview` and `report` on it (each
command printed first) and ends the target by its process group on every path.
"""
from __future__ import annotations

import click


@click.command("demo")
@click.option("--output-dir", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Where to write the demo's timeline files.")
def command(output_dir):
    """Run trace, diagnose, kill-preview and report on a bundled demo target."""
    from ..sessions.demo import run_demo

    def echo(text: str = "", bold: bool = False) -> None:
        if bold:
            click.secho(text, bold=True)
        else:
            click.echo(text)

    timeline = run_demo(output_dir, echo)
    click.echo(f"\ndemo done; timeline: {timeline}")
