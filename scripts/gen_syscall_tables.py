#!/usr/bin/env python3
"""Generate pyimpact/syscalls/{x86_64,aarch64}.py from the kernel's uapi headers.

    scripts/gen_syscall_tables.py            (rewrites both tables)
    scripts/gen_syscall_tables.py --check    (exit 1 if a table differs from the headers)

Sources, read through the C preprocessor (``gcc -E -dM``) so that aliases
(``__NR_fcntl`` -> ``__NR3264_fcntl``) and arch switches resolve exactly as the
kernel's own build resolves them:

- x86_64:  asm/unistd_64.h from Debian's linux-libc-dev
           (/usr/include/x86_64-linux-gnu/asm/unistd_64.h);
- aarch64: arch/arm64/include/uapi/asm/unistd.h (its __ARCH_WANT_* switches)
           over include/uapi/asm-generic/unistd.h, from a kernel headers tree
           (Debian's linux-headers-*-common under /usr/src), or Debian's
           linux-libc-dev-arm64-cross (/usr/aarch64-linux-gnu/include).

Both sources here are Linux 6.1. Syscalls added since, up to 6.18, are in
LATER below, each with the release that added it; their numbers are the
unified ones (424 and up are the same on every architecture) except where
noted. Nothing is read at run time: pyimpact needs no headers to name syscalls.
"""
from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
from typing import Dict

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(HERE, "pyimpact", "syscalls")

X86_HEADER = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"

#: name -> (number, kernel release) for syscalls newer than the 6.1 headers
LATER = {
    "x86_64": {"uretprobe": (335, "6.11"), "uprobe": (336, "6.18")},
    "common": {"cachestat": (451, "6.5"), "fchmodat2": (452, "6.6"), "map_shadow_stack": (453, "6.6"),
               "futex_wake": (454, "6.7"), "futex_wait": (455, "6.7"), "futex_requeue": (456, "6.7"),
               "statmount": (457, "6.8"), "listmount": (458, "6.8"), "lsm_get_self_attr": (459, "6.8"),
               "lsm_set_self_attr": (460, "6.8"), "lsm_list_modules": (461, "6.8"), "mseal": (462, "6.10"),
               "setxattrat": (463, "6.13"), "getxattrat": (464, "6.13"), "listxattrat": (465, "6.13"),
               "removexattrat": (466, "6.13"), "open_tree_attr": (467, "6.15"), "file_getattr": (468, "6.17"),
               "file_setattr": (469, "6.17")},
}


def arm64_sources():
    """(description, gcc arguments) for the first arm64 uapi source found."""
    trees = sorted(glob.glob("/usr/src/linux-headers-*-common") + glob.glob("/usr/src/linux-headers-*"),
                   key=lambda p: (os.path.isfile(os.path.join(p, "arch/arm64/include/uapi/asm/unistd.h")), p))
    for tree in reversed(trees):
        arch = os.path.join(tree, "arch", "arm64", "include", "uapi")
        if os.path.isfile(os.path.join(arch, "asm", "unistd.h")):
            return (f"{tree}/arch/arm64/include/uapi/asm/unistd.h",
                    ["-I", arch, "-I", os.path.join(tree, "include", "uapi"), os.path.join(arch, "asm", "unistd.h")])
    cross = "/usr/aarch64-linux-gnu/include"
    if os.path.isfile(os.path.join(cross, "asm", "unistd.h")):
        return (f"{cross}/asm/unistd.h (linux-libc-dev-arm64-cross)",
                ["-I", cross, os.path.join(cross, "asm", "unistd.h")])
    return None


def preprocess(args) -> Dict[str, int]:
    """__NR_name -> number, from ``gcc -E -dM``, aliases resolved."""
    out = subprocess.run(["gcc", "-E", "-dM", "-nostdinc", "-D__KERNEL__=0", "-U__KERNEL__", *args],
                         capture_output=True, text=True, check=True).stdout
    macros = dict(re.findall(r"^#define (__NR\w*) (.+)$", out, re.M))

    def value(name, depth=0):
        v = macros.get(name, "").strip().strip("()")
        if re.fullmatch(r"\d+", v):
            return int(v)
        if depth < 8 and v.startswith("__NR"):
            return value(v, depth + 1)
        m = re.fullmatch(r"(__NR\w+)\s*\+\s*(\d+)", v)
        if m and depth < 8:
            base = value(m.group(1), depth + 1)
            return None if base is None else base + int(m.group(2))
        return None

    table = {}
    for name in macros:
        if not name.startswith("__NR_") or name in ("__NR_syscalls", "__NR_arch_specific_syscall"):
            continue
        nr = value(name)
        if nr is not None:
            table[name[len("__NR_"):]] = nr
    return table


def from_headers(arch: str):
    """(source description, {number: name}) for ``arch`` from the installed headers."""
    if arch == "x86_64":
        if not os.path.isfile(X86_HEADER):
            return None
        src, names = X86_HEADER + " (linux-libc-dev)", preprocess([X86_HEADER])
    else:
        found = arm64_sources()
        if found is None:
            return None
        src, names = found[0], preprocess(found[1])
    by_nr = {}
    for name, nr in sorted(names.items(), key=lambda kv: (kv[1], kv[0])):
        by_nr.setdefault(nr, name)
    return src, by_nr


def render(arch: str, src: str, by_nr: Dict[int, str]) -> str:
    later = dict(LATER["common"])
    later.update(LATER.get(arch, {}))
    lines = [f'"""{arch} system call numbers, generated by scripts/gen_syscall_tables.py. Do not edit.',
             "", f"Source: {src}", "(Linux 6.1 uapi headers); the entries after the marker were added since, up to 6.18.",
             '"""', "", "SYSCALLS = {"]
    lines += [f'    {nr}: "{name}",' for nr, name in sorted(by_nr.items())]
    lines.append("    # --- added since 6.1 (release in the comment) ---")
    for name, (nr, release) in sorted(later.items(), key=lambda kv: kv[1][0]):
        if nr not in by_nr:
            lines.append(f'    {nr}: "{name}",  # {release}')
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv) -> int:
    check = "--check" in argv
    status = 0
    for arch in ("x86_64", "aarch64"):
        found = from_headers(arch)
        if found is None:
            print(f"gen_syscall_tables: no {arch} uapi headers found (install linux-libc-dev and linux-headers-amd64)",
                  file=sys.stderr)
            return 1
        text = render(arch, *found)
        path = os.path.join(OUT, f"{arch}.py")
        if check:
            with open(path) as f:
                if f.read().split('"""', 2)[2] != text.split('"""', 2)[2]:
                    print(f"gen_syscall_tables: {path} differs from {found[0]}", file=sys.stderr)
                    status = 1
            continue
        with open(path, "w") as f:
            f.write(text)
        print(f"gen_syscall_tables: {path}: {len(found[1])} syscalls from {found[0]}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
