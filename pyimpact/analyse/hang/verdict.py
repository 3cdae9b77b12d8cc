"""The verdict one rule returns: class, summary, root cause, chain, evidence.

Shared by the rules (``pyimpact.analyse.hang.rules``) and the diagnosis that
assembles them (``pyimpact.analyse.hang.diagnose``).  Pure data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .chains import ChainLink

CLASSES = ("deadlock", "blocked", "stopped", "zombie", "busy", "idle", "progressing")
KINDS = ("mutex", "futex", "pipe", "socket", "child", "vfork", "file-lock", "block-io",
         "signal-stop", "gpu", "db-lock", "collective", "unknown")
HUNG = ("deadlock", "blocked", "stopped", "zombie")
#: verdicts that name no root cause: nothing is wrong
HEALTHY = ("idle", "progressing")


@dataclass
class RootCause:
    pid: Optional[int]
    tid: Optional[int]
    kind: str
    resource: str

    def to_dict(self) -> Dict[str, Any]:
        return {"pid": self.pid, "tid": self.tid, "kind": self.kind, "resource": self.resource}


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
