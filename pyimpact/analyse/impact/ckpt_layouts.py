"""What the frameworks' checkpoint layouts say: which entry is a checkpoint,
which step/epoch it holds, and whether it is complete.

Why a module of its own: a directory checkpoint is many files written one
after another, and only the framework knows which one finishes it.  Read from
outside (read-only), each layout has a rule:

- Hugging Face Trainer ``checkpoint-N/``: ``trainer_state.json`` is written
  last (after model, optimizer, scheduler, RNG state); its ``global_step``,
  ``save_steps``, ``max_steps``, ``epoch`` and ``num_train_epochs`` describe
  the run.
- ``torch.distributed.checkpoint``: ``*.distcp`` shards, then ``.metadata``
  (written as ``.metadata.tmp`` and renamed) once every rank finished.
- DeepSpeed ``global_stepN/``: the ``latest`` file beside it names the newest
  complete one (written after the save).
- orbax: a step directory is renamed from ``*.orbax-checkpoint-tmp-*`` when
  finished, and carries ``commit_success*`` (object stores) or
  ``_CHECKPOINT_METADATA``.
- Keras/TF: ``.keras``/``.h5`` single files; TF object checkpoints
  ``ckpt-N.index`` + ``ckpt-N.data-*`` are complete once the ``checkpoint``
  index file names them.
- Lightning ``epoch=E-step=S.ckpt`` and ``last.ckpt`` (a copy or a link of the
  newest).
- Anything else: a plain file (complete when no process of the tree writes
  it) or a plain directory of checkpoint files (complete when nothing in it
  is being written; said to be unverified).

Pure: works on names, listings and the small metadata the collector read.
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

from ...names import DCP_RANK_META, DIGITS_ONLY

_ORBAX_TMP = re.compile(r"\.orbax-checkpoint-tmp-\d+$")
_HF = re.compile(r"^checkpoint-(\d+)$")
_DS = re.compile(r"^global_step(\d+)$")

_STEP = re.compile(r"(?<![a-z])(?:global[_-]?step|step|iteration|iter)s?[=_-]?(\d+)", re.IGNORECASE)
_EPOCH = re.compile(r"(?<![a-z])(?:epoch|ep)s?[=_-]?(\d+)", re.IGNORECASE)
_RUN = re.compile(r"\d+")


def name_numbers(name: str) -> Dict[str, Optional[int]]:
    """{step, epoch, number} read from a checkpoint's name.

    ``epoch=3-step=1200.ckpt`` -> epoch 3, step 1200; ``checkpoint-500`` and
    ``global_step500`` -> step 500; ``ckpt_0007.pt`` -> number 7 (a step or a
    save counter: the name does not say which)."""
    base = name.rsplit("/", 1)[-1]
    out: Dict[str, Optional[int]] = {"step": None, "epoch": None, "number": None}
    m = _HF.match(base) or _DS.match(base)
    if m:
        out["step"] = int(m.group(1))
    else:
        s = _STEP.search(base)
        if s:
            out["step"] = int(s.group(1))
    e = _EPOCH.search(base)
    if e:
        out["epoch"] = int(e.group(1))
    if DIGITS_ONLY.match(base):
        out["step"] = int(base)                 # orbax step directories are named by the step
    runs = [int(x) for x in _RUN.findall(base.split(".orbax-checkpoint-tmp-")[0])]
    if runs:
        out["number"] = out["step"] if out["step"] is not None else runs[-1 if out["epoch"] is None else 0]
    return out


def index_of(numbers: Dict[str, Optional[int]]) -> Tuple[Optional[int], str]:
    """The number that orders a series, and what it is ("step", "epoch", "number")."""
    for key in ("step", "epoch", "number"):
        if numbers.get(key) is not None:
            return numbers[key], key
    return None, ""


def render_name(template: str, number: int) -> str:
    """Put ``number`` into the last digit run of ``template``, keeping its padding:
    ``ckpt_step0200.pt`` with 300 -> ``ckpt_step0300.pt``."""
    runs = list(_RUN.finditer(template))
    if not runs:
        return template
    numbers = name_numbers(template)
    pick = runs[-1]
    if numbers["step"] is not None:                 # the run that holds the step
        for r in runs:
            if int(r.group(0)) == numbers["step"]:
                pick = r
    width = len(pick.group(0)) if pick.group(0).startswith("0") else 0
    return template[:pick.start()] + str(number).zfill(width) + template[pick.end():]


def dir_layout(name: str, names: List[str], parent_meta: Dict[str, dict]) -> Tuple[str, Optional[bool], str]:
    """(layout, complete, why) of a directory checkpoint from its entry names.

    ``complete`` is True when its framework says it is finished, False when
    the framework's own rule says it is not (yet), None when the layout has no
    such rule (a plain directory)."""
    have = set(names)
    if _ORBAX_TMP.search(name):
        return "orbax", False, "orbax writes into a *.orbax-checkpoint-tmp-* directory and renames it when done"
    if "trainer_state.json" in have or _HF.match(name):
        if "trainer_state.json" in have:
            return "hf-trainer", True, "trainer_state.json is present (the Trainer writes it last)"
        return "hf-trainer", False, "no trainer_state.json yet (the Trainer writes it last)"
    if any(n.endswith(".distcp") for n in names) or ".metadata" in have or ".metadata.tmp" in have:
        if ".metadata" in have or any(DCP_RANK_META.match(n) for n in names):
            return "torch.distributed.checkpoint", True, ".metadata is present (written after every shard)"
        return "torch.distributed.checkpoint", False, "shards without .metadata (written last, by rename)"
    if _DS.match(name) or any(n.endswith(("model_states.pt", "optim_states.pt")) for n in names):
        latest = (parent_meta.get("latest") or {}).get("text", "").strip()
        if latest:
            mine, theirs = name_numbers(name)["step"], name_numbers(latest)["step"]
            if latest == name or (mine is not None and theirs is not None and mine <= theirs):
                return "deepspeed", True, f"the 'latest' file names {latest}"
            return "deepspeed", False, f"the 'latest' file still names {latest} (written after a save)"
        return "deepspeed", None, "no 'latest' file beside it: completeness unverified"
    if "_CHECKPOINT_METADATA" in have or any(n.startswith("commit_success") for n in names):
        return "orbax", True, "_CHECKPOINT_METADATA / commit_success is present"
    if "saved_model.pb" in have:
        return "tf-savedmodel", True, "saved_model.pb is present"
    return "directory", None, "plain directory of checkpoint files: complete when nothing in it is written"


def file_layout(name: str) -> str:
    low = name.lower()
    if re.search(r"epoch=\d+.*step=\d+\.ckpt$", low) or low == "last.ckpt" or re.match(r"last(-v\d+)?\.ckpt$", low):
        return "lightning"
    if low.endswith((".keras", ".h5", ".hdf5")):
        return "keras"
    if re.search(r"\.(index|data-\d+-of-\d+)$", low):
        return "tf-checkpoint"
    return "file"


def tf_prefix(name: str) -> Optional[str]:
    """``ckpt-3.data-00000-of-00001`` -> ``ckpt-3`` (a TF object checkpoint's prefix)."""
    m = re.match(r"^(.*)\.(index|data-\d+-of-\d+)$", name)
    return m.group(1) if m else None


def tf_indexed(index_text: str) -> List[str]:
    """Prefixes named by a TF ``checkpoint`` index file (its protobuf text form)."""
    return re.findall(r'(?:all_)?model_checkpoint_paths?:\s*"([^"]+)"', index_text or "")


def is_alias_name(name: str) -> bool:
    """``last.ckpt``, ``latest.pt``: a name that always holds the newest checkpoint."""
    return bool(re.match(r"^(last|latest|current|final)(-v\d+)?[._]", name.lower()))
