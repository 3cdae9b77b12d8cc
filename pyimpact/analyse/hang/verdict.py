"""The verdict one rule returns: class, summary, root cause, chain, evidence.

Shared by the rules (``pyimpact.analyse.hang.rules``) and the diagnosis that
assembles them (``pyimpact.analyse.hang.diagnose``).  Pure data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ...jsondoc import to_json
from .chains import ChainLink

CLASSES = ("deadlock", "blocked", "stopped", "zombie", "busy", "idle", "progressing")
KINDS = ("mutex", "futex", "pipe", "socket", "child", "vfork", "file-lock", "block-io",
         "signal-stop", "gpu", "db-lock", "collective", "unknown")
HUNG = ("deadlock", "blocked", "stopped", "zombie")
#: verdicts that name no root cause: nothing is wrong
HEALTHY = ("idle", "progressing")


@dataclass
class RootCause:
    """Where the chain of waits ends: the process/thread, the kind of resource and which one."""

    pid: Optional[int]
    tid: Optional[int]
    kind: str                 # one of KINDS
    resource: str

    def to_dict(self) -> Dict[str, Any]:
        return to_json(self)


@dataclass
class Verdict:
    """What one rule concluded about one process, with what it saw."""

    verdict: str
    summary: str
    root_cause: RootCause
    confidence: str
    chain: List[ChainLink] = field(default_factory=list)
    cycle: List[ChainLink] = field(default_factory=list)
    evidence: List[str] = field(default_factory=list)
    rule: str = ""
    soft: bool = False      # blocked only on a peer that is alive and idle (possibly by design)

    @property
    def hung(self) -> bool:
        return self.verdict in HUNG
