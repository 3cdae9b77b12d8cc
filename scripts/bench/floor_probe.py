"""The floor of benchmark 1: an empty sys_enter + sys_exit program pair,
attached the way pyimpact attaches its own syscall programs (BTF-typed raw
tracepoints where the machine allows them, else plain raw tracepoints), so
that what pyimpact adds beyond it is what its programs do, not the kernel's
dispatch. Run as root; prints "floor attached (KIND)" on stderr, detaches and
exits on SIGINT or SIGTERM.

    floor_probe.py [--raw]      --raw: plain raw tracepoints whatever pyimpact uses
"""
from __future__ import annotations

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

EMPTY_TP_BTF = b"""
int pyi_tp_sys_enter(struct bpf_raw_tracepoint_args *ctx) { return 0; }
int pyi_tp_sys_exit(struct bpf_raw_tracepoint_args *ctx) { return 0; }
"""
EMPTY_RAW = b"""
RAW_TRACEPOINT_PROBE(sys_enter) { return 0; }
RAW_TRACEPOINT_PROBE(sys_exit) { return 0; }
"""


def main() -> int:
    from pyimpact.collect import tp_btf
    from pyimpact.collect.bpf_image import compile_image
    from pyimpact.collect.bpf_loaded import LoadedProbes
    from pyimpact.collect.probes import TP_BTF_FUNCS

    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    kind, why = "raw_tracepoint", ""
    loaded = None
    if "--raw" not in sys.argv[1:]:
        try:
            ids = tp_btf.btf_ids(TP_BTF_FUNCS.values())
            loaded = LoadedProbes.load(compile_image(EMPTY_TP_BTF, [], TP_BTF_FUNCS), ids)
            kind = "tp_btf"
        except tp_btf.TpBtfUnavailable as err:
            why = f": {err}"
    if loaded is None:
        loaded = LoadedProbes.load(compile_image(EMPTY_RAW, [], {}))
    print(f"floor attached ({kind}{why})", file=sys.stderr, flush=True)
    while not stop:
        signal.pause()
    loaded.close()
    print("floor detached", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
