"""The ``-o`` option's checks, shared by the commands that save a recording.

``-o -`` writes the recording (pyimpact's Perfetto JSON) to standard output,
so the human view moves to standard error; ``--json`` wants standard output
too, hence the usage error. Checked before anything is observed, so a long
trace never ends in "cannot write".
"""
from __future__ import annotations

from typing import Optional

from ..errors import UsageError


def check_output(output: Optional[str], as_json: bool = False) -> bool:
    """Validate ``-o`` early; True when the recording goes to standard output."""
    if not output:
        return False
    from ..export import STDOUT, check_output_path

    check_output_path(output)
    if output == STDOUT and as_json:
        raise UsageError("-o - and --json both write to standard output", "give -o a file name, or drop --json")
    return output == STDOUT
