#!/usr/bin/env bash
# Set up pyimpact on a fresh Debian/Ubuntu machine, idempotently.
#
#   sudo scripts/setup.sh [--with-torch] [--with-test-deps]
#
# --with-torch installs the CPU build of PyTorch into .venv (the kill-preview
# tests train with it; pyimpact itself never imports torch, and `make demo`
# does not ask for it).
# --with-test-deps also installs the third-party software the tests run
# (Debian packages listed one per line in tests/apt-packages.txt).
#
# 1. installs bcc (python3-bpfcc), kernel headers, bpftool and build tools;
# 2. makes /lib/modules/$(uname -r)/build and /source point at real header
#    trees, repairing the links when no headers package matches the running
#    kernel (bcc compiles probes against them, and must never fall back to
#    extracting /sys/kernel/kheaders.tar.xz under /tmp: CVE-2024-2314);
# 3. mounts tracefs (and debugfs) when they are not mounted;
# 4. creates .venv with bcc importable and nothing else from the system
#    site-packages, and installs the project into it;
# 5. installs /usr/local/bin/pyimpact, a wrapper that execs .venv/bin/pyimpact,
#    so `sudo pyimpact ...` works (scripts/entrypoint.sh; `make uninstall`).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
venv="$here/.venv"
with_torch=0
with_test_deps=0
for arg in "$@"; do
  case "$arg" in
    --with-torch) with_torch=1 ;;
    --with-test-deps) with_test_deps=1 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

say() { printf 'setup: %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: must run as root (try: sudo $0)" >&2
  exit 4
fi

kernel=$(uname -r)
need_pkgs=()
dpkg -s python3-bpfcc >/dev/null 2>&1 || need_pkgs+=(python3-bpfcc)
dpkg -s bpfcc-tools >/dev/null 2>&1 || need_pkgs+=(bpfcc-tools)
command -v bpftool >/dev/null 2>&1 || need_pkgs+=(bpftool)
command -v gcc >/dev/null 2>&1 || need_pkgs+=(gcc)
command -v make >/dev/null 2>&1 || need_pkgs+=(make)
command -v strace >/dev/null 2>&1 || need_pkgs+=(strace)
/usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_pkgs+=(python3-venv)

headers_ok() { [ -e "/lib/modules/$kernel/build/include/generated/autoconf.h" ] || [ -e "/lib/modules/$kernel/build/include/config/auto.conf" ] || [ -d "/lib/modules/$kernel/build/arch" ]; }

if [ "$with_test_deps" = 1 ] && [ -f "$here/tests/apt-packages.txt" ]; then
  while read -r pkg _; do
    case "$pkg" in ''|'#'*) continue ;; esac
    dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
  done < "$here/tests/apt-packages.txt"
fi

if ! headers_ok; then
  if apt-cache policy "linux-headers-$kernel" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    need_pkgs+=("linux-headers-$kernel")
  else
    dpkg -s linux-headers-amd64 >/dev/null 2>&1 || need_pkgs+=(linux-headers-amd64)
  fi
fi

if [ ${#need_pkgs[@]} -gt 0 ]; then
  say "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  # The exact headers package may only show up after the update.
  if ! headers_ok && apt-cache policy "linux-headers-$kernel" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    need_pkgs=("${need_pkgs[@]/linux-headers-amd64/linux-headers-$kernel}")
  fi
  # Services a package would start belong to the tests, which start their own.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; own_policy=1; fi
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need_pkgs[@]}" >/dev/null
  if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
fi

if ! headers_ok; then
  # No package for this kernel: point the links at the newest distribution
  # header trees. Tracepoint programs only need the generic headers.
  arch_tree=$(ls -d /usr/src/linux-headers-*-amd64 /usr/src/linux-headers-*-generic 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$arch_tree" ]; then
    echo "setup.sh: no kernel headers under /usr/src; install linux-headers-amd64 and run again" >&2
    exit 6
  fi
  common_tree=${arch_tree%-amd64}-common
  [ -d "$common_tree" ] || common_tree=$arch_tree
  say "no headers package for $kernel: linking $arch_tree"
  mkdir -p "/lib/modules/$kernel"
  ln -sfn "$arch_tree" "/lib/modules/$kernel/build"
  ln -sfn "$common_tree" "/lib/modules/$kernel/source"
fi

mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug 2>/dev/null || true

if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv"
  /usr/bin/python3 -m venv "$venv"
fi
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# Link bcc alone into the venv: the whole system site-packages would leak
# unrelated (and older) packages into the project's environment.
bcc_dir=$(/usr/bin/python3 -c 'import bcc, os; print(os.path.dirname(bcc.__file__))')
ln -sfn "$bcc_dir" "$site/bcc"

stamp="$venv/.pyimpact-installed"
if [ ! -e "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
  say "installing pyimpact into $venv"
  "$venv/bin/pip" install -q -e "$here[test]"   # py-spy comes with it (a runtime dependency)
  touch "$stamp"
fi
# PyTorch, CPU build. PyPI's Linux x86_64 wheel is the CUDA build (with
# several GB of nvidia-* wheels); the CPU build carries the local version
# "+cpu" and is served by PyTorch's own index. So: first whatever pip is
# configured with (a local wheel cache or mirror may hold the CPU build), then
# the CPU index, and only if neither has it, PyPI's build -- said plainly.
torch_version=2.13.0
torch_cpu_index=https://download.pytorch.org/whl/cpu
if [ "$with_torch" = 1 ] && ! "$venv/bin/python" -c 'import torch' >/dev/null 2>&1; then
  if "$venv/bin/pip" install -q "torch==$torch_version+cpu" 2>/dev/null; then
    say "installed torch $torch_version+cpu (CPU build, from pip's configured indexes)"
  elif "$venv/bin/pip" install -q --retries 1 --timeout 30 --index-url "$torch_cpu_index" \
       "torch==$torch_version+cpu"; then
    say "installed torch $torch_version+cpu (CPU build, from $torch_cpu_index)"
  else
    say "the CPU build of torch $torch_version is not reachable ($torch_cpu_index);"
    say "installing PyPI's torch $torch_version instead: the CUDA build (several GB), which also runs on CPU"
    "$venv/bin/pip" install -q "torch==$torch_version"
  fi
  "$venv/bin/python" -c 'import torch; print("setup: torch", torch.__version__, "CUDA" if torch.version.cuda else "CPU-only")'
fi
# The kill-preview tests run a real Hugging Face Trainer (CPU, offline): after
# torch, so that accelerate's torch requirement is already met by the CPU build.
if [ "$with_torch" = 1 ] && ! "$venv/bin/python" -c 'import transformers, accelerate' >/dev/null 2>&1; then
  say "installing transformers and accelerate (for the HF Trainer tests)"
  "$venv/bin/pip" install -q "transformers>=4.40" "accelerate>=0.26"
fi
"$venv/bin/python" -c 'import bcc, pyimpact' || { echo "setup.sh: bcc or pyimpact not importable in $venv" >&2; exit 1; }
"$here/scripts/entrypoint.sh" install /usr/local | sed 's/^entrypoint.sh: /setup: /'
say "ready: sudo pyimpact --help"
