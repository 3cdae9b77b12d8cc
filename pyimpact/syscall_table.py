"""System call numbers and names, per architecture.

Why per architecture: a syscall number means different calls on x86_64 and
arm64 (202 is futex on one, an unrelated call on the other; arm64 has no
open, fork or vfork at all). The tables in pyimpact/syscalls/ are generated
from the kernel's uapi headers by scripts/gen_syscall_tables.py (never read
at run time, so no headers are needed to name syscalls), and
tests/test_syscall_tables.py compares them with the installed headers.

``syscall_name`` and ``syscall_number`` answer for the machine pyimpact runs
on (the one whose probes and /proc produced the numbers); ``table_for`` gives
another architecture's table. The numbers are the 64-bit native ABIs only:
x32 (bit 30 set) and the 32-bit compat ABIs have other numbers, named
``syscall_N`` so that output never lies.

``BPF_NAMES`` are the calls the probes handle specially; ``bpf_defines``
turns them, and the architecture's pt_regs layout, into the -D flags the BPF
C is compiled with (pyimpact.collect.probes).
"""
from __future__ import annotations

import platform
from typing import Dict, List, Optional

from .syscalls import aarch64, x86_64

TABLES: Dict[str, Dict[int, str]] = {"x86_64": x86_64.SYSCALLS, "aarch64": aarch64.SYSCALLS}
ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}

#: syscalls the probes treat specially -> the -D name of their number
BPF_NAMES = {"exit": "PYI_NR_EXIT", "exit_group": "PYI_NR_EXIT_GROUP", "clone": "PYI_NR_CLONE",
             "clone3": "PYI_NR_CLONE3", "fork": "PYI_NR_FORK", "vfork": "PYI_NR_VFORK",
             "futex": "PYI_NR_FUTEX", "futex_wake": "PYI_NR_FUTEX_WAKE2", "futex_wait": "PYI_NR_FUTEX_WAIT2",
             "connect": "PYI_NR_CONNECT", "getsockopt": "PYI_NR_GETSOCKOPT"}
#: the number given for a call an architecture does not have: matches no syscall
NO_SYSCALL = 0xFFFFFFFF

#: Where the six syscall arguments sit in the architecture's struct pt_regs,
#: as the probe reads them: one read of 8 consecutive u64 words from byte
#: ``base`` on, then argument i is word ``args[i]`` of that window.
#:   x86_64 (arch/x86/include/asm/ptrace.h): r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di
#:          orig_ax ...; arguments in di si dx r10 r8 r9; the window starts at r10 (word 7).
#:   aarch64 (arch/arm64/include/asm/ptrace.h): regs[31] sp pc pstate orig_x0 syscallno ...;
#:          arguments in x0..x5 (regs[0..5]) at syscall entry; the window starts at regs[0].
#: ``nr``: byte offset of the syscall number, read at syscall exit (x86_64
#: orig_ax, word 15; aarch64 the s32 syscallno after regs[31] sp pc pstate orig_x0).
PT_REGS_ARGS = {"x86_64": {"base": 7 * 8, "args": (7, 6, 5, 0, 2, 1), "nr": 15 * 8},
                "aarch64": {"base": 0, "args": (0, 1, 2, 3, 4, 5), "nr": 35 * 8}}


def host_machine() -> str:
    machine = platform.machine()
    return ALIASES.get(machine, machine)


def table_for(machine: str) -> Dict[int, str]:
    """The table of ``machine`` (``uname -m`` spelling); empty when unknown."""
    return TABLES.get(ALIASES.get(machine, machine), {})


SYSCALLS: Dict[int, str] = table_for(host_machine())
_NUMBERS: Dict[str, int] = {name: nr for nr, name in SYSCALLS.items()}


def syscall_name(nr: int) -> str:
    """Name of syscall ``nr`` on this machine; ``syscall_N`` when unknown, so output never lies."""
    return SYSCALLS.get(nr, f"syscall_{nr}")


def syscall_number(name: str) -> Optional[int]:
    """Number of the syscall called ``name`` (without ``sys_``) on this machine, or None."""
    return _NUMBERS.get(name)


def bpf_defines(machine: Optional[str] = None) -> List[str]:
    """-D flags for the probes: the special syscalls' numbers and the pt_regs layout."""
    machine = ALIASES.get(machine, machine) if machine else host_machine()
    table = table_for(machine)
    if not table or machine not in PT_REGS_ARGS:
        raise ValueError(f"no syscall table for {machine}")
    numbers = {name: nr for nr, name in table.items()}
    flags = [f"-D{define}={numbers.get(name, NO_SYSCALL)}U" for name, define in BPF_NAMES.items()]
    regs = PT_REGS_ARGS[machine]
    flags.append(f"-DPYI_REGS_BASE={regs['base']}")
    flags.append(f"-DPYI_REGS_NR={regs['nr']}")
    flags += [f"-DPYI_ARG{i}={word}" for i, word in enumerate(regs["args"])]
    return flags
