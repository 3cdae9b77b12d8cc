"""Per-architecture syscall tables (pyimpact/syscalls/) against the kernel's
own headers, without root: x86_64 from Debian's linux-libc-dev, arm64 from the
kernel headers tree setup installs (linux-headers-*-common holds every
architecture's uapi headers). Both are installed by `make test`
(tests/apt-packages.txt, scripts/setup.sh), so nothing here skips in CI.
The probes' -D flags per architecture are checked too, and (as root) the BPF
C is compiled with the arm64 set, which is as close to arm64 as this x86_64
machine gets.
"""
from __future__ import annotations

import glob
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT
from pyimpact import syscall_table
from pyimpact.syscalls import aarch64, x86_64

X86_HEADER = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"


def _arm64_header():
    for tree in sorted(glob.glob("/usr/src/linux-headers-*"), reverse=True):
        arch = os.path.join(tree, "arch", "arm64", "include", "uapi")
        if os.path.isfile(os.path.join(arch, "asm", "unistd.h")):
            return arch, os.path.join(tree, "include", "uapi")
    raise AssertionError("no arm64 uapi headers under /usr/src (setup installs linux-headers-*-common)")


def _defines(args) -> dict:
    """name -> number of every __NR_ macro the preprocessor ends up with."""
    out = subprocess.run(["gcc", "-E", "-dM", "-nostdinc", *args], capture_output=True, text=True, check=True).stdout
    raw = dict(re.findall(r"^#define __NR_(\w+) (.+)$", out, re.M))
    alias = dict(re.findall(r"^#define (__NR3264_\w+) (\d+)$", out, re.M))
    nums = {}
    for name, value in raw.items():
        value = value.strip()
        if value.isdigit():
            nums[name] = int(value)
        elif value in alias:
            nums[name] = int(alias[value])
    nums.pop("syscalls", None)
    nums.pop("arch_specific_syscall", None)
    return nums


def _later(table, names_in_headers):
    """Entries of the table beyond the 6.1 headers: each must be marked as such."""
    return {nr: name for nr, name in table.items() if name not in names_in_headers}


def test_x86_64_table_matches_linux_libc_dev():
    assert os.path.isfile(X86_HEADER), "linux-libc-dev is not installed (tests/apt-packages.txt)"
    with open(X86_HEADER) as f:
        pairs = {name: int(n) for name, n in re.findall(r"#define __NR_(\w+) (\d+)", f.read())}
    assert len(pairs) > 350
    for name, nr in pairs.items():
        assert x86_64.SYSCALLS[nr] == name, (nr, name)
    later = _later(x86_64.SYSCALLS, pairs)
    assert set(later.values()) == {"uretprobe", "uprobe", "cachestat", "fchmodat2", "map_shadow_stack",
                                   "futex_wake", "futex_wait", "futex_requeue", "statmount", "listmount",
                                   "lsm_get_self_attr", "lsm_set_self_attr", "lsm_list_modules", "mseal",
                                   "setxattrat", "getxattrat", "listxattrat", "removexattrat", "open_tree_attr",
                                   "file_getattr", "file_setattr"}


def test_arm64_table_matches_the_kernel_headers():
    arch, generic = _arm64_header()
    nums = _defines(["-I", arch, "-I", generic, os.path.join(arch, "asm", "unistd.h")])
    assert len(nums) > 290
    by_nr = {}
    for name, nr in sorted(nums.items()):
        by_nr.setdefault(nr, name)
    for nr, name in by_nr.items():
        assert aarch64.SYSCALLS[nr] == name, (nr, name)
    # and what every arm64 user would check first (asm-generic numbering)
    known = {"io_setup": 0, "openat": 56, "close": 57, "read": 63, "write": 64, "ppoll": 73, "exit": 93,
             "exit_group": 94, "futex": 98, "nanosleep": 101, "clock_nanosleep": 115, "kill": 129,
             "clone": 220, "execve": 221, "mmap": 222, "wait4": 260, "clone3": 435}
    numbers = {name: nr for nr, name in aarch64.SYSCALLS.items()}
    for name, nr in known.items():
        assert numbers[name] == nr, name
    for absent in ("open", "fork", "vfork", "pipe", "poll", "select", "stat", "uretprobe"):
        assert absent not in numbers, absent
    assert set(_later(aarch64.SYSCALLS, nums).values()) == {
        "cachestat", "fchmodat2", "map_shadow_stack", "futex_wake", "futex_wait", "futex_requeue", "statmount",
        "listmount", "lsm_get_self_attr", "lsm_set_self_attr", "lsm_list_modules", "mseal", "setxattrat",
        "getxattrat", "listxattrat", "removexattrat", "open_tree_attr", "file_getattr", "file_setattr"}


def test_generator_agrees_with_the_checked_in_tables():
    res = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gen_syscall_tables.py"), "--check"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def test_host_table_and_lookup():
    assert syscall_table.host_machine() == "x86_64" or syscall_table.host_machine() == "aarch64"
    assert syscall_table.SYSCALLS is syscall_table.table_for(syscall_table.host_machine())
    assert syscall_table.table_for("arm64") is aarch64.SYSCALLS
    assert syscall_table.table_for("riscv64") == {}
    assert syscall_table.syscall_name(999_999) == "syscall_999999"
    futex = syscall_table.syscall_number("futex")
    assert syscall_table.syscall_name(futex) == "futex"


def _flags(machine):
    return dict(f[2:].split("=", 1) for f in syscall_table.bpf_defines(machine))


def test_bpf_defines_per_architecture():
    x86, arm = _flags("x86_64"), _flags("aarch64")
    assert (x86["PYI_NR_FUTEX"], arm["PYI_NR_FUTEX"]) == ("202U", "98U")
    assert (x86["PYI_NR_EXIT_GROUP"], arm["PYI_NR_EXIT_GROUP"]) == ("231U", "94U")
    assert (x86["PYI_NR_CLONE"], arm["PYI_NR_CLONE"]) == ("56U", "220U")
    assert arm["PYI_NR_FORK"] == arm["PYI_NR_VFORK"] == f"{syscall_table.NO_SYSCALL}U"   # arm64 has neither
    # x86_64 pt_regs: r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di; arguments di si dx r10 r8 r9
    order = "r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di orig_ax".split()
    base = int(x86["PYI_REGS_BASE"]) // 8
    got = [order[base + int(x86[f"PYI_ARG{i}"])] for i in range(6)]
    assert got == ["di", "si", "dx", "r10", "r8", "r9"]
    # arm64 pt_regs: regs[0..30] first; arguments x0..x5
    assert arm["PYI_REGS_BASE"] == "0" and [int(arm[f"PYI_ARG{i}"]) for i in range(6)] == list(range(6))
    for flags in (x86, arm):
        assert all(0 <= int(flags[f"PYI_ARG{i}"]) < 8 for i in range(6))
    with pytest.raises(ValueError):
        syscall_table.bpf_defines("riscv64")


@pytest.mark.skipif(os.geteuid() != 0, reason="loading BPF needs root (CI is root)")
def test_probes_compile_and_verify_with_the_arm64_flags():
    """The BPF C with arm64's numbers and pt_regs layout compiles and passes the
    verifier (loaded here, with nothing traced: the traced map stays empty)."""
    from bcc import BPF

    from pyimpact.collect.probes import ProbeConfig, probe_source

    cflags = [f for f in ProbeConfig(pids=(1,)).cflags() if not f.startswith(("-DPYI_NR_", "-DPYI_REGS", "-DPYI_ARG"))]
    bpf = BPF(text=probe_source().encode(), cflags=cflags + syscall_table.bpf_defines("aarch64"))
    try:
        assert bpf.num_open_kprobes() == 0
        assert len(bpf[b"traced"]) == 0
    finally:
        bpf.cleanup()
