"""The layering of pyimpact, checked from the modules' own imports (no root).

Every module's imports are read with ``ast`` — at module level and inside
functions (the lazy imports that keep time to verdict short are imports all
the same) — and each module is given its layer by its path:

  0 base      errors, units, text, formats, names, jsondoc, syscall_table, syscalls/, pyimpact/__init__
  1 model     snapshot, timeline, event_layout, recording
  2 collect   collect/...            (touches the system)
  2 analyse   analyse/...            (pure)
  3 export    export/...             (read/write recordings and files)
  3 render    render/...             (terminal text)
  4 act       act/...                (the only layer that signals)
  5 sessions  sessions/...           (collection sessions)
  6 commands  commands/...           (click glue)
  7 cli       cli, __main__          (may import commands and base only)
  demo/ is a target program: it imports nothing of pyimpact.

A module may import its own layer and the layers below, except that the two
layer-2 siblings (collect, analyse) never import each other, nor the two
layer-3 siblings (export, render), and act imports neither export nor render.
No module-level import cycle either.  There is no allow-list: a violation is
fixed in the code, not excused here.  The checker is also run on a synthetic
bad graph, so that a checker that cannot fail fails.
"""
from __future__ import annotations

import ast
import os
from typing import Dict, List, Set, Tuple

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyimpact")

BASE = {"pyimpact", "pyimpact.errors", "pyimpact.units", "pyimpact.text", "pyimpact.formats", "pyimpact.names",
        "pyimpact.jsondoc",
        "pyimpact.syscall_table"}
MODEL = {"pyimpact.snapshot", "pyimpact.timeline", "pyimpact.event_layout", "pyimpact.recording"}
FOLDERS = {"syscalls": "base", "collect": "collect", "analyse": "analyse", "export": "export", "render": "render",
           "act": "act", "sessions": "sessions", "commands": "commands", "demo": "demo"}
TOP = {"cli": "cli", "__main__": "cli"}

#: what each layer may import (its own layer included)
MAY_IMPORT: Dict[str, Set[str]] = {
    "base": {"base"},
    "model": {"base", "model"},
    "collect": {"base", "model", "collect"},
    "analyse": {"base", "model", "analyse"},
    "export": {"base", "model", "analyse", "export"},
    "render": {"base", "model", "analyse", "render"},
    "act": {"base", "model", "collect", "analyse", "act"},
    "sessions": {"base", "model", "collect", "analyse", "export", "render", "act", "sessions"},
    "commands": {"base", "model", "collect", "analyse", "export", "render", "act", "sessions", "commands"},
    "cli": {"base", "commands", "cli"},
    "demo": set(),
}


def layer_of(module: str) -> str:
    """The layer of a pyimpact module, by its path; an unknown top-level
    module is an error (a new module must be given its place here)."""
    if module in BASE:
        return "base"
    if module in MODEL:
        return "model"
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in FOLDERS:
        return FOLDERS[parts[1]]
    if len(parts) == 2 and parts[1] in TOP:
        return TOP[parts[1]]
    raise AssertionError(f"{module}: no layer for it; give it one in tests/test_layers.py")


def modules(root: str = ROOT) -> Dict[str, str]:
    """{dotted module name: file} for every .py under pyimpact/ (probes is C)."""
    out = {}
    base = os.path.dirname(root)
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in ("__pycache__", "probes"))
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(d, f)
                name = os.path.relpath(path, base)[:-3].replace(os.sep, ".")
                out[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    return out


def imports_of(name: str, path: str, known: Set[str]) -> List[Tuple[str, int, bool]]:
    """(imported pyimpact module, line, at module level) for each import in
    the file, function-level ones included.  ``from X import y`` names the
    module X.y when that is a module, else X."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    top_level = {id(n) for n in tree.body}
    for n in tree.body:   # imports under a module-level if/try run at import time too
        if isinstance(n, (ast.If, ast.Try)):
            top_level.update(id(c) for c in ast.walk(n))
    out = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                src = ".".join(parts + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            for a in node.names:
                sub = f"{src}.{a.name}"
                targets.append(sub if sub in known else src)
        for t in targets:
            while t and t not in known and "." in t:   # import pyimpact.a.b.c -> the module that exists
                t = t.rpartition(".")[0]
            if t in known and t != name:
                out.append((t, node.lineno, id(node) in top_level))
    return out


def graph(root: str = ROOT) -> Dict[str, List[Tuple[str, int, bool]]]:
    mods = modules(root)
    known = set(mods)
    return {m: imports_of(m, p, known) for m, p in mods.items()}


def layer_violations(g: Dict[str, List[Tuple[str, int, bool]]]) -> List[str]:
    bad = []
    for mod, deps in sorted(g.items()):
        mine = layer_of(mod)
        for dep, line, _ in deps:
            if mod.startswith(dep + "."):
                continue   # a module's own package (its __init__ runs first anyway)
            theirs = layer_of(dep)
            entry = f"{mod}:{line} ({mine}) imports {dep} ({theirs})"
            if theirs not in MAY_IMPORT[mine] and entry not in bad:
                bad.append(entry)
    return bad


def cycles(g: Dict[str, List[Tuple[str, int, bool]]]) -> List[List[str]]:
    """Import cycles between modules through module-level imports (Tarjan's
    strongly connected components of more than one module)."""
    edges = {m: sorted({d for d, _, top in deps if top and not m.startswith(d + ".")}) for m, deps in g.items()}
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def all_cycles(g: Dict[str, List[Tuple[str, int, bool]]]) -> List[List[str]]:
    """Cycles through any import, function-level ones included: a lazy
    import does not make two modules independent."""
    g2 = {m: [(d, line, True) for d, line, _ in deps] for m, deps in g.items()}
    return cycles(g2)


# --------------------------------------------------------------------------

def test_every_module_has_a_layer():
    for mod in modules():
        layer_of(mod)


def test_no_import_against_the_layers():
    bad = layer_violations(graph())
    assert not bad, "imports against the layers:\n  " + "\n  ".join(bad)


def test_no_import_cycle():
    found = all_cycles(graph())
    assert not found, "import cycles:\n  " + "\n  ".join(" <-> ".join(c) for c in found)


def test_the_graph_is_read():
    """The checker sees the imports it must see (a parser that read nothing
    would pass every test above)."""
    g = graph()
    assert len(g) > 100
    deps = {d for d, _, _ in g["pyimpact.commands.diagnose"]}
    assert "pyimpact.sessions.observe" in deps            # module level
    lazy = {d for d, _, top in g["pyimpact.sessions.observe"] if not top}
    assert "pyimpact.collect.tracer" in lazy               # inside a function


def test_the_checker_fails_on_a_bad_graph(tmp_path):
    """A synthetic package with one of each violation: the checker names
    each of them, and a clean copy passes."""
    pkg = tmp_path / "pyimpact"
    files = {
        "__init__.py": "",
        "errors.py": "",
        "recording.py": "from .export import tables\n",                 # model -> export
        "export/__init__.py": "",
        "export/tables.py": "from ..recording import x\n",                 # (and a cycle with recording)
        "collect/__init__.py": "",
        "collect/probe.py": "def f():\n    from ..analyse import rules\n",  # collect -> analyse, lazy
        "analyse/__init__.py": "",
        "analyse/rules.py": "import pyimpact.render.view\n",             # analyse -> render
        "render/__init__.py": "",
        "render/view.py": "from pyimpact.commands import trace\n",       # render -> commands
        "commands/__init__.py": "",
        "commands/trace.py": "from . import panel\n",
        "commands/panel.py": "def g():\n    from .trace import h\n",     # a cycle through a lazy import
        "cli.py": "from .collect import probe\n",                        # cli -> collect
    }
    for rel, text in files.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    g = graph(str(pkg))
    bad = "\n".join(layer_violations(g))
    for expected in ("pyimpact.recording:1 (model) imports pyimpact.export.tables (export)",
                     "pyimpact.collect.probe:2 (collect) imports pyimpact.analyse.rules (analyse)",
                     "pyimpact.analyse.rules:1 (analyse) imports pyimpact.render.view (render)",
                     "pyimpact.render.view:1 (render) imports pyimpact.commands.trace (commands)",
                     "pyimpact.cli:1 (cli) imports pyimpact.collect.probe (collect)"):
        assert expected in bad, bad
    assert ["pyimpact.export.tables", "pyimpact.recording"] in cycles(g)
    assert ["pyimpact.commands.panel", "pyimpact.commands.trace"] in all_cycles(g)
    assert ["pyimpact.commands.panel", "pyimpact.commands.trace"] not in cycles(g)   # lazy: not module level

    (pkg / "recording.py").write_text("from . import errors\n")
    for rel in ("collect/probe.py", "analyse/rules.py", "render/view.py", "commands/panel.py", "cli.py"):
        (pkg / rel).write_text("")
    clean = graph(str(pkg))
    assert layer_violations(clean) == [] and all_cycles(clean) == []
