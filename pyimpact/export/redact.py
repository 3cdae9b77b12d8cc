"""`--redact`: command lines and paths replaced by stable placeholders in
every output (terminal, --json, -o files).

Why after the analysis and not before: the analysis reads paths (checkpoint
names, the layout of a checkpoint directory, a script's name), so redacting
its input would change the verdict.  Instead a `Redactor` learns, from the
recording, which strings are sensitive:

- every argument of every command line (the program too when it is a path;
  for ``--opt=value`` both the whole and the value), except pure flags,
  numbers and very short words;
- every path the recording holds: executables, working directories, open
  files and sockets, exec'd file names, Python source files of stacks;

and then rewrites *any* string of any result (dataclasses, dicts, lists,
DataFrames, the Recording itself) replacing those strings, token by token
(split at blanks, quotes, brackets, ``=``, ``:``, ``,``...), with ``<arg-N>``
and ``<path-N>`` (a path keeps a short extension: ``<path-3.pt>``).  Token
lookup in a dict keeps this linear in the text, whatever the number of
learned strings (a system-wide trace learns thousands).  An absolute path it did not learn (one built
into a message) is replaced too; system paths under /proc, /sys and /dev
(but /dev/shm) are kept, they say nothing about the user.

Placeholders are numbered in sorted order of what they replace, so the same
recording gives the same placeholders in every output and in every later
`report --redact` of it.  Process names (comm), pids, numbers and verdicts
stay.  Pure: no I/O.
"""
from __future__ import annotations

import copy
import dataclasses
import enum
import os
import re
from typing import Any, Dict, Iterable, List

import pandas as pd

#: A token of free text; a token that starts with / and was not learned is a
#: path too ("I/O", "MB/s" and "read/write" do not start with /).
_DELIMS = "\\s\"'<>|;,()\\[\\]{}=:"
_TOKEN = re.compile(f"[^{_DELIMS}]+")
_HAS_DELIM = re.compile(f"[{_DELIMS}]")
#: system paths that stay
_KEEP_PATHS = re.compile(r"^/(proc|sys)(/|$)|^/dev/(?!shm(/|$))")
_NUMERIC = re.compile(r"[-+]?(0[xX][0-9a-fA-F]+|[\d.,:_]*\d[\d.,:_]*[kKmMgGtT%]?[bB]?)")
_SHORT = 4      # arguments shorter than this are not secrets worth a placeholder
_EXT = re.compile(r"(\.[A-Za-z0-9]{1,6})$")
_PLACEHOLDER = re.compile(r"<(path|arg)-x?\d+(\.[A-Za-z0-9]{1,6})?>")

#: timeline columns whose values are a fixed vocabulary, never user data
_VOCAB_COLUMNS = frozenset({"kind", "syscall", "signame", "futex_op", "rwbs", "comm"})


def _is_flag(arg: str) -> bool:
    return arg.startswith("-") and "=" not in arg and re.fullmatch(r"--?[A-Za-z][\w\-]*", arg) is not None


class Redactor:
    """Sensitive strings of one recording and their placeholders."""

    def __init__(self) -> None:
        self._args: set = set()
        self._paths: set = set()
        self._base_of: Dict[str, str] = {}      # basename -> first full path seen with it
        self._table: Dict[str, str] = {}
        self._regex = None

    # -- learning ---------------------------------------------------------
    def add_command(self, argv: Iterable[str]) -> None:
        for i, arg in enumerate(argv or []):
            arg = str(arg)
            if _PLACEHOLDER.fullmatch(arg):
                continue
            if "/" in arg and not arg.startswith("-"):
                self.add_path(arg, base=i > 0)      # the program's basename is its process name
                continue
            if i == 0:
                continue                    # a bare program name ("python3") is no secret
            if arg.startswith("-") and "=" in arg:     # --opt=value: the value is the secret
                arg = arg.split("=", 1)[1]
                if "/" in arg:
                    self.add_path(arg)
                    continue
            if len(arg) >= _SHORT and not _is_flag(arg) and not _NUMERIC.fullmatch(arg):
                self._args.add(arg)
        self._regex = None

    def add_path(self, path: Any, base: bool = True) -> None:
        """Learn `path`, and its basename (how views show a script) unless
        ``base`` is False (an executable's basename is the process name, which stays)."""
        if not isinstance(path, str) or not path or _KEEP_PATHS.match(path) or _PLACEHOLDER.fullmatch(path):
            return
        if path.startswith("/") or "/" in path or len(path) >= _SHORT:
            self._paths.add(path)
            name = os.path.basename(path.rstrip("/"))
            if base and name and name != path and len(name) >= _SHORT:
                self._base_of.setdefault(name, path)
        self._regex = None

    @classmethod
    def for_recording(cls, rec: Any, extra_paths: Iterable[str] = ()) -> "Redactor":
        """Everything sensitive that `rec` holds (snapshots, timeline, stacks)."""
        r = cls()
        for snap in (rec.snapshots or {}).values():
            for p in (getattr(snap, "processes", None) or {}).values():
                r.add_command(p.cmdline)
                r.add_path(p.exe, base=False)
                r.add_path(p.cwd)
                for fd in p.fds or []:
                    target = getattr(fd, "target", None)
                    if isinstance(target, str) and (target.startswith("/") or target.startswith("@")):
                        r.add_path(target)
        ev = rec.events
        if ev is not None and len(ev) and "filename" in ev.columns:
            for name in ev["filename"].dropna().unique():
                r.add_path(str(name), base=False)
        for dump in (getattr(rec.metadata, "python_stacks", None) or {}).values():
            for th in ((dump or {}).get("threads") or {}).values():
                for fr in th.get("frames") or []:
                    r.add_path(fr.get("path"))
                    r.add_path(fr.get("file"))
        for p in extra_paths:
            r.add_path(p)
        return r

    # -- placeholders -----------------------------------------------------
    def _build(self) -> None:
        table: Dict[str, str] = {}
        for n, path in enumerate(sorted(self._paths), 1):
            m = _EXT.search(path)
            table[path] = f"<path-{n}{m.group(1) if m else ''}>"
        for base, full in self._base_of.items():     # "train.py" is shown as its path's placeholder
            if base not in table:
                table[base] = table[full]
        for n, arg in enumerate(sorted(self._args - set(table)), 1):
            table[arg] = f"<arg-{n}>"
        self._table = table
        # learned strings that a token never is (a path or argument with a
        # blank, a colon...): replaced as substrings first, longest first
        self._odd = sorted((k for k in table if _HAS_DELIM.search(k)), key=len, reverse=True)
        self._regex = _TOKEN

    def _token(self, m: "re.Match") -> str:
        tok = m.group(0)
        hit = self._table.get(tok)
        if hit is not None:
            return hit
        bare = tok.rstrip(".")                 # the end of a sentence
        if bare != tok and bare in self._table:
            return self._table[bare] + tok[len(bare):]
        if bare.startswith("/") and len(bare.strip("/")) and not _KEEP_PATHS.match(bare):
            ext = _EXT.search(bare)
            hit = self._table[bare] = f"<path-x{len(self._table) + 1}{ext.group(1) if ext else ''}>"
            return hit + tok[len(bare):]
        return tok

    def text(self, s: str) -> str:
        """`s` with every learned string and every other user path replaced."""
        if self._regex is None:
            self._build()
        if not s:
            return s
        for k in self._odd:
            if k in s:
                s = s.replace(k, self._table[k])
        return _TOKEN.sub(self._token, s)

    # -- applying ---------------------------------------------------------
    def value(self, obj: Any) -> Any:
        """A redacted copy of `obj`: str, dict, list, tuple, DataFrame or
        dataclass (recursively); other values (numbers, enums: a closed
        vocabulary of the tool's own, never another process's text) are
        returned as they are."""
        if isinstance(obj, enum.Enum):
            return obj
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {(self.text(k) if isinstance(k, str) else k): self.value(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.value(v) for v in obj]
        if isinstance(obj, tuple):     # a NamedTuple (a WriteFd's path) is rebuilt as its own type
            items = [self.value(v) for v in obj]
            return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
        if isinstance(obj, pd.DataFrame):
            return self.frame(obj)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            new = copy.copy(obj)
            for f in dataclasses.fields(obj):
                object.__setattr__(new, f.name, self.value(getattr(obj, f.name)))
            return new
        return obj

    def frame(self, df: pd.DataFrame, skip: Iterable[str] = ()) -> pd.DataFrame:
        """A copy of `df` with its string values redacted (each distinct value once)."""
        out = df.copy()
        skip = set(skip)
        for col in out.columns:
            if col in skip:
                continue
            s = out[col]
            if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
                uniq = {v: self.text(v) for v in s.dropna().unique() if isinstance(v, str)}
                if any(k != v for k, v in uniq.items()):
                    out[col] = s.map(lambda v: uniq.get(v, v) if isinstance(v, str) else v).astype(s.dtype)
        return out

    def recording(self, rec: Any) -> Any:
        """A redacted copy of the Recording (for -o): the same analysis reads it."""
        new = copy.copy(rec)
        new.events = self.frame(rec.events, skip=_VOCAB_COLUMNS)
        new.snapshots = self.value(rec.snapshots)
        new.inflight = self.frame(rec.inflight)
        new.block_inflight = self.frame(rec.block_inflight)
        new.gpu = self.value(rec.gpu)
        meta = self.value(rec.metadata)
        meta.redacted = True
        new.metadata = meta
        return new

    def placeholders(self) -> List[str]:
        """The placeholders in use (for tests and --json consumers); never the secrets."""
        if self._regex is None:
            self._build()
        return sorted(set(self._table.values()))


def redactor_for(rec: Any, enabled: bool):
    """The Redactor of ``rec``, or None when redaction was not asked for."""
    return Redactor.for_recording(rec) if enabled else None
