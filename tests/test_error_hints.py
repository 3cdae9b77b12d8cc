"""Errors carry their fix: every raise of a PyimpactError (or a subclass) in
pyimpact/ gives a hint, read from the source with ``ast`` (no root).

The CLI prints ``pyimpact: MESSAGE (HINT)``; a raise without a hint leaves
the user with a problem and no next step.  A raise that re-raises a caught
error (``raise exc``) or builds its arguments elsewhere (``*args``) is not a
call with a literal message and is not checked here; a class with a default
hint of its own (``NotInRecording``) carries it on every raise.
"""
from __future__ import annotations

import ast
import inspect
import os

import pyimpact.errors as errors

ROOT = os.path.dirname(os.path.abspath(errors.__file__))

def _default_hint(cls) -> str:
    return inspect.signature(cls).parameters["hint"].default or ""


#: the error classes whose raise must name a hint: all but those with a default hint of their own
ERRORS = {name for name, obj in vars(errors).items()
          if isinstance(obj, type) and issubclass(obj, errors.PyimpactError) and not _default_hint(obj)}


def raises_without_hint(root: str = ROOT) -> list:
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x not in ("__pycache__", "probes")]
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(d, f)
            with open(path, encoding="utf-8") as fh:
                tree = ast.parse(fh.read(), path)
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                    continue
                func = node.exc.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if name not in ERRORS or any(isinstance(a, ast.Starred) for a in node.exc.args):
                    continue
                if len(node.exc.args) < 2 and not any(k.arg in ("hint", None) for k in node.exc.keywords):
                    out.append(f"{os.path.relpath(path, os.path.dirname(root))}:{node.lineno}: {name}")
    return out


def test_every_error_raised_carries_a_hint():
    missing = raises_without_hint()
    assert not missing, "raises without a hint:\n  " + "\n  ".join(missing)
    assert "UsageError" in ERRORS and "NotInRecording" not in ERRORS


def test_the_check_finds_a_raise_without_hint(tmp_path):
    (tmp_path / "bad.py").write_text('from .errors import UsageError\n'
                                     'def f():\n    raise UsageError("no")\n'
                                     'def g():\n    raise UsageError("yes", "the fix")\n')
    assert raises_without_hint(str(tmp_path)) == [f"{tmp_path.name}/bad.py:3: UsageError"]
