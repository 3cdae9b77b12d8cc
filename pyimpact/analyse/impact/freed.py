"""What a kill of the whole tree gives back: RAM, VRAM, cores, disk rates, ports.

Why a range for RAM: USS counts the pages only one process maps, so the sum
of USS is what a kill returns for sure; PSS adds each process's share of its
shared pages, and the pages a job's processes share only among themselves
(fork copy-on-write pages of DataLoader workers) come back too.  RSS counts
every shared page, the libraries too: it is shown, never summed as "freed".

Pure: the tree's rows, the collector's samples and the NVML figures in, a
``Freed`` out (``freed`` of the --json document).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

from .resources import GpuFigures, cpu_rate, io_rates, latest_pss
from .tree import ProcessRow


@dataclass(frozen=True)
class FreedBasis:
    """How each figure of ``Freed`` was obtained (measured / unavailable, and from what)."""

    ram: str
    vram: str
    cpu_cores: str
    disk: str
    network: str


@dataclass(frozen=True)
class Freed:
    """The resources a kill of the whole tree returns, each with its basis."""

    ram_uss_bytes: int                  # sum of USS: returned for sure
    ram_pss_bytes: Optional[int]        # sum of PSS (newest sample that has it); None: not sampled
    ram_rss_bytes: int                  # sum of RSS: an upper bound shown for comparison
    ram_complete: bool                  # every process's USS was readable
    vram_bytes: Dict[str, int]          # GPU index -> bytes the tree holds (NVML)
    cpu_cores: Optional[float]          # the tree's CPU rate over the window; None: too few samples
    disk_read_bps: Optional[int]
    disk_write_bps: Optional[int]
    network_bps: Optional[float]        # always None: Linux keeps no per-process network byte counters
    listening_ports: List[str]          # local addresses the tree listens on (released by the kill)
    basis: FreedBasis


def freed_by_kill(tree: List[ProcessRow], samples, gpuf: GpuFigures) -> Freed:
    """What a kill of the tree frees, from its rows, the samples and NVML."""
    uss = [r.uss_bytes for r in tree]
    rate = cpu_rate(samples)
    rb, wb = io_rates(samples)
    ports = sorted({port for r in tree for port in r.sockets.listening})
    pss = latest_pss(samples)
    return Freed(
        ram_uss_bytes=sum(u for u in uss if u is not None),
        ram_pss_bytes=pss[0] if pss else None,
        ram_rss_bytes=sum(r.rss_bytes or 0 for r in tree),
        ram_complete=all(u is not None for u in uss),
        vram_bytes={str(k): v for k, v in gpuf.vram_by_device.items()},
        cpu_cores=round(rate[0], 2) if rate else None,
        disk_read_bps=round(rb) if rb is not None else None,
        disk_write_bps=round(wb) if wb is not None else None,
        network_bps=None,
        listening_ports=ports,
        basis=FreedBasis(
            ram="measured: the RAM a kill of the whole job returns lies between the sum of USS "
                "(pages only one of its processes maps) and the sum of PSS (adds its share of shared "
                "pages: all of those the job's processes share only among themselves, e.g. fork "
                "copy-on-write pages of workers), from /proc smaps_rollup; RSS counts every shared page",
            vram=("measured: NVML per-process used memory" if gpuf.available else f"unavailable: {gpuf.reason}"),
            cpu_cores=(f"measured: /proc CPU time over the {rate[1]:.1f} s window" if rate
                       else "unavailable: too few samples"),
            disk="measured: /proc/PID/io read_bytes/write_bytes over the window (live processes)",
            network="unavailable: Linux keeps no per-process network byte counters and the probes "
                    "do not count socket bytes yet",
        ),
    )
