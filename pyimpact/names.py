"""What a file's name says: a checkpoint, a temporary (half-written) copy, a log; a checkpoint directory and
the entries that mark its layout; an fd's open flags that write.

Why a base module: the collectors decide from these rules which files to watch and sample
(pyimpact.collect.workfiles, ckpt_scan, recorder) and the analysis decides from the same rules what the
samples mean (pyimpact.analyse.impact); collect and analyse may not import each other, both import this.
Pure: names and flags in, booleans out.
"""
from __future__ import annotations

import re
from typing import Optional

#: Suffixes of checkpoint files (the issue's list, plus .hdf5).
CKPT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".bin", ".h5", ".hdf5", ".npz", ".keras",
                 ".distcp", ".msgpack", ".pdparams")
#: Decorations that make a temporary name out of a final one.
_TEMP_TAIL = re.compile(r"(\.(tmp|temp|part|partial|incomplete|swp)[\w.-]*|~)$", re.IGNORECASE)
_TEMP_HEAD = re.compile(r"^(\.|tmp[._-]?|\.tmp[._-]?)", re.IGNORECASE)
_LOG_NAME = re.compile(r"(\.(log|txt|out|err|jsonl|csv|tsv)(\.\d+)?$|^events\.out\.tfevents|^nohup\.out$)",
                       re.IGNORECASE)
O_ACCMODE, O_WRONLY, O_RDWR, O_APPEND = 0o3, 0o1, 0o2, 0o2000


def is_temp_name(name: str) -> bool:
    """``ckpt.pt.tmp``, ``ckpt.pt~``, ``.ckpt.pt.part``, ``tmpab12cd.pt``..."""
    return bool(_TEMP_TAIL.search(name)) or (bool(_TEMP_HEAD.match(name)) and name not in (".", ".."))


def final_name(name: str) -> str:
    """The final name a temporary name stands for (itself when not temporary)."""
    out = _TEMP_TAIL.sub("", name)
    if out == name and _TEMP_HEAD.match(name):
        stripped = _TEMP_HEAD.sub("", name, count=1)
        out = stripped or name
    return out


def is_checkpoint_name(name: str) -> bool:
    low = final_name(name).lower()
    return low.endswith(CKPT_SUFFIXES) or "checkpoint" in low or "ckpt" in low


def is_log_name(name: str) -> bool:
    return bool(_LOG_NAME.search(name))


def writable(flags: Optional[int]) -> bool:
    return flags is not None and (flags & O_ACCMODE) in (O_WRONLY, O_RDWR)


#: Entry names a collector records inside a checkpoint directory (markers).
MARKERS = ("trainer_state.json", ".metadata", "_CHECKPOINT_METADATA", "saved_model.pb", "latest")
DIR_NAME = re.compile(r"(checkpoint|ckpt|step|epoch|iter|global_step|save|snapshot|orbax-checkpoint-tmp)",
                      re.IGNORECASE)
DIGITS_ONLY = re.compile(r"^\d+$")
DCP_RANK_META = re.compile(r"^__\d+\.metadata$")    # torch.distributed.checkpoint's per-rank metadata


def looks_like_ckpt_dir_name(name: str) -> bool:
    """A directory name that may hold a checkpoint (its contents decide)."""
    return bool(DIR_NAME.search(name) or DIGITS_ONLY.match(name))


def is_numbered_ckpt_dir_name(name: str) -> bool:
    """``checkpoint-500``, ``global_step500``, ``step_10``, ``0010``: one of a
    numbered series of directory checkpoints (``ckpt/`` holding files is a
    place, not a checkpoint)."""
    return looks_like_ckpt_dir_name(name) and any(c.isdigit() for c in name)


def is_dir_marker(name: str) -> bool:
    """Entries whose presence tells a layout (or its completeness)."""
    return (name in MARKERS or name.endswith((".distcp", ".metadata", ".metadata.tmp"))
            or name.startswith("commit_success") or name.endswith(("model_states.pt", "optim_states.pt"))
            or DCP_RANK_META.match(name) is not None)
