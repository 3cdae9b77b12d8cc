"""What a suspend (SIGSTOP) keeps held and whom it makes wait: the warnings `pyimpact suspend` prints.

Why: a suspended job frees CPU only.  Its RAM and VRAM stay allocated (the
kernel does not swap VRAM out; RAM is reclaimed only under pressure, to
swap), its open files and listening sockets stay open (clients connect and
hang), and the peers of a distributed job block in their next collective
until their timeout fires, then fail the whole group.  The timeout is the
job's own (``init_process_group(timeout=...)``), which cannot be read from
outside; PyTorch's defaults are 10 min for NCCL and 30 min for Gloo, and its
NCCL watchdog heartbeat (``TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC``, default 480 s)
aborts a rank whose watchdog thread stalls -- which a stopped rank's does.

Pure: from a SystemSnapshot and an NVML sample dict.
"""
from __future__ import annotations

from typing import List, Optional

from ...snapshot import SystemSnapshot
from .tree import distributed_env, group_sockets, tree_pids
from .verdict import mib

NCCL_DEFAULT_TIMEOUT_S = 600
GLOO_DEFAULT_TIMEOUT_S = 1800
NCCL_HEARTBEAT_DEFAULT_S = 480


def suspend_warnings(snap: SystemSnapshot, root: int, gpu_sample: Optional[dict] = None) -> List[str]:
    """One sentence per thing a suspend of ``root``'s tree keeps held or breaks."""
    pids = tree_pids(snap, root)
    procs = [snap.processes[p] for p in pids]
    out: List[str] = []
    uss = sum(p.uss_bytes or 0 for p in procs)
    rss = sum(p.rss_bytes or 0 for p in procs)
    ram = f"{mib(uss)} (USS; RSS {mib(rss)})" if uss else f"{mib(rss)} (RSS)"
    out.append(f"RAM stays held while suspended: {ram} across {len(procs)} process(es); the kernel "
               "reclaims it only under memory pressure, by swapping")
    if gpu_sample and gpu_sample.get("available"):
        vram = {}
        for g in gpu_sample.get("processes", []):
            if g.get("pid") in pids:
                vram[g["device"]] = vram.get(g["device"], 0) + (g.get("used_memory_bytes") or 0)
        if vram:
            out.append("VRAM stays held while suspended: " + ", ".join(f"{mib(b)} on GPU {d}" for d, b in
                                                                        sorted(vram.items())))
    elif any(f.target.startswith("/dev/nvidia") for p in procs for f in p.fds):
        out.append("the tree holds /dev/nvidia* open: its VRAM stays held while suspended (NVML unreadable: "
                   "amount unknown)")
    dist = distributed_env(snap.processes[root]) or next(
        (d for d in (distributed_env(p) for p in procs) if d), None)
    if dist:
        who = f"rank {dist.get('rank', '?')} of {dist.get('world_size', '?')}" \
            if ("rank" in dist or "world_size" in dist) else "a distributed job"
        if dist.get("master_addr"):
            who += f" (rendezvous {dist['master_addr']}:{dist.get('master_port', '?')})"
        env = next((p.env for p in procs if "TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC" in p.env), {})
        hb = env.get("TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC")
        text = (f"this is {who}: its peers block in their next collective and fail after their collective "
                f"timeout (set by the job's init_process_group; PyTorch's default {NCCL_DEFAULT_TIMEOUT_S // 60} min "
                f"NCCL, {GLOO_DEFAULT_TIMEOUT_S // 60} min Gloo)")
        if hb:
            text += f"; TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC={hb}: a stalled watchdog aborts the rank after {hb} s"
        else:
            text += (f"; NCCL's watchdog heartbeat aborts a stalled rank after {NCCL_HEARTBEAT_DEFAULT_S} s "
                     "by default")
        if "torchelastic" in dist:
            text += "; the torchelastic agent then restarts the group from its last checkpoint"
        out.append(text)
    ports = sorted({port for p in procs for port in group_sockets(p, snap, set(pids)).listening})
    if ports:
        out.append("listening port(s) " + ", ".join(map(str, ports)) + " stay open: new clients connect and "
                   "then hang, they are not refused")
    return out

