"""The look at a process tree before an action (suspend, resume, orphans
--cleanup): what it holds, from /proc and NVML, for the plan and warnings the
command prints before asking."""
from __future__ import annotations


def tree_snapshot(pid: int):
    """A light /proc snapshot of the tree of ``pid`` (with what it holds), for the warnings."""
    from ..collect import procfs

    return procfs.take_snapshot([pid], tree=True, threads=False, stacks=False, holders=True, timeout_s=0.8)


def gpu_sample():
    """One NVML sample as a dict, or None when NVML cannot be read."""
    from ..collect.gpu import read_gpus

    try:
        return read_gpus().to_dict()
    except Exception:  # noqa: BLE001 - GPU figures are extra; the warning says they are unknown
        return None


def describe_tree(tree) -> str:
    """"123 (python), 124 (worker)": the live processes of an identified tree."""
    return ", ".join(f"{h.pid} ({h.comm})" for h in tree.live())


def gpu_memory_by_pid(procs) -> dict:
    """{pid: GPU memory in bytes} from NVML for the processes that hold a GPU; {} without."""
    if not any(p.gpu_devices for p in procs):
        return {}
    try:
        from ..collect.gpu import read_gpus

        s = read_gpus()
    except Exception:  # noqa: BLE001 - NVML trouble: the open /dev/nvidia* still shows
        return {}
    out = {}
    for g in s.processes:
        out[g.pid] = out.get(g.pid, 0) + (g.used_memory_bytes or 0)
    return out
