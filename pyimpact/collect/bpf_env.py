"""Preflight for the kernel probes: each missing piece becomes one clear error.

Checked before anything is compiled, in the order a user would fix them:
root, bcc importable, tracefs, kernel headers at their proper place. The header
check also closes CVE-2024-2314: bcc < 0.30 extracts /sys/kernel/kheaders.tar.xz
under /tmp, or uses a directory already there, when /lib/modules/$(uname -r)/build
is missing. We refuse to compile unless that link resolves to a real directory
outside /tmp, so bcc never reaches its fallback.
"""
from __future__ import annotations

import importlib.util
import os
import platform
import re
from dataclasses import dataclass

from ..errors import BPFUnavailable, NotPermitted

TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
# Hints name what a user of a wheel can do: scripts/setup.sh exists in a
# checkout only.
HEADERS_HINT = ("install the kernel headers: apt install linux-headers-$(uname -r) (Debian/Ubuntu), "
                "dnf install kernel-devel-$(uname -r) (Fedora); in a checkout: sudo scripts/setup.sh")
BCC_HINT = ("install the distribution's bcc: apt install python3-bpfcc (Debian/Ubuntu), "
            "dnf install python3-bcc (Fedora); a venv or pipx sees it only with --system-site-packages; "
            "PyPI's 'bcc' is an unrelated package")
#: machine -> the syscall ABI the probes are built for (pyimpact.syscall_table)
SUPPORTED_MACHINES = ("x86_64", "aarch64")


@dataclass(frozen=True)
class BPFEnvironment:
    """What was found, for the recording's metadata."""

    kernel: str
    headers: str
    tracefs: str
    bcc_version: str


def _require_root() -> None:
    if os.geteuid() != 0:
        # The hint names no option: each command has its own (trace has no
        # /proc-only mode; diagnose and kill-preview degrade to one by themselves).
        raise NotPermitted("kernel probes need root", "run with sudo")


def _require_bcc() -> str:
    """bcc's version, found without importing bcc: the import maps libbcc and
    the LLVM inside it (about 60 MB resident), which only a compile needs, and
    most starts load their probes from the compiled-probe cache instead. A
    libbcc that is missing under an installed bcc is reported by the compile
    (bpf_image.py), in the same words."""
    try:
        spec = importlib.util.find_spec("bcc")
    except (ImportError, ValueError) as exc:
        raise BPFUnavailable(f"bcc is not importable ({exc.__class__.__name__}: {exc})", BCC_HINT) from None
    if spec is None or not spec.submodule_search_locations:
        raise BPFUnavailable("bcc is not importable (ModuleNotFoundError: No module named 'bcc')", BCC_HINT)
    for where in spec.submodule_search_locations:
        try:
            with open(os.path.join(where, "version.py")) as f:
                found = re.search(r"""__version__\s*=\s*['"]([^'"]+)['"]""", f.read(4096))
        except OSError:
            continue
        if found:
            return found.group(1)
    return "unknown"


def _require_tracefs() -> str:
    for path in TRACEFS_CANDIDATES:
        if os.path.isdir(os.path.join(path, "events", "sched")):
            return path
    raise BPFUnavailable("tracefs is not mounted", "run: sudo mount -t tracefs nodev /sys/kernel/tracing")


def _is_under_tmp(path: str) -> bool:
    for tmp in ("/tmp", "/var/tmp", "/dev/shm"):
        if path == tmp or path.startswith(tmp + "/"):
            return True
    return False


def _require_headers(kernel: str) -> str:
    build = f"/lib/modules/{kernel}/build"
    real = os.path.realpath(build)
    if not os.path.isdir(real) or not os.path.isdir(os.path.join(real, "include")):
        raise BPFUnavailable(f"kernel headers not found at {build}", HEADERS_HINT)
    if _is_under_tmp(real):
        raise BPFUnavailable(f"kernel headers at {build} resolve under a temporary directory ({real}); refusing them",
                             HEADERS_HINT)
    return real


def require_supported_machine(machine: str = "") -> str:
    """The probes read syscall numbers and pt_regs by architecture: refuse the
    ones without a table rather than name syscalls wrongly."""
    machine = machine or platform.machine()
    if machine not in SUPPORTED_MACHINES:
        raise BPFUnavailable(f"the kernel probes support x86_64 and aarch64, not {machine}",
                             "diagnose and kill-preview still answer from /proc with --no-bpf")
    return machine


def check_bpf_environment() -> BPFEnvironment:
    """Raise a PyimpactError naming the first missing piece, else describe what is there."""
    require_supported_machine()
    _require_root()
    version = _require_bcc()
    tracefs = _require_tracefs()
    kernel = platform.release()
    headers = _require_headers(kernel)
    return BPFEnvironment(kernel=kernel, headers=headers, tracefs=tracefs, bcc_version=version)
