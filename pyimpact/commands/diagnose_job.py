"""`pyimpact diagnose PID --job`: diagnose a distributed job on every node.

Click glue: the hidden command ``pyimpact diagnose-node KEY`` that the
launcher runs on each node; the session is pyimpact.sessions.job
(``node_document`` here, ``diagnose_job`` on the node that asks).
"""
from __future__ import annotations

import sys

import click

from ..sessions.job import node_document
from ..text import json_dumps
from .params import Number


@click.command("diagnose-node", hidden=True)
@click.argument("key")
@click.option("-w", "--window", type=Number(0.05, 60.0), default=1.0, show_default=True,
              help="Seconds to observe with the probes.")
@click.option("--no-python", is_flag=True, help="Do not read Python stacks with py-spy.")
@click.option("--all-netns", is_flag=True,
              help="Ranks in other network namespaces (containers) are this node's too.")
def command(key, window, no_python, all_netns):
    """Internal, what `diagnose --job` runs on each node: the ranks of job KEY
    here, each with its local diagnosis and TCP peers, as one JSON document
    (schema pyimpact.diagnose-node/1)."""
    doc = node_document(key, window=window, all_netns=all_netns, python_stacks=not no_python)
    sys.stdout.write(json_dumps(doc) + "\n")
    sys.stdout.flush()
