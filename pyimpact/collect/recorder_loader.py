"""Compile, load and attach the recorder's BPF program in a short-lived child process.

Why a child: compiling with bcc maps LLVM and clang into the process (about
60 MB of RSS for `import bcc` alone, 150 MB at the peak of a compile), and
a recorder runs for days. The kernel objects that matter afterwards are
file descriptors: the ring buffer map, the lost-records map, and one
descriptor per attachment (a perf event for a classic tracepoint, a link
for a raw one; each holds its program). The child hands them to the
recorder over a Unix socket (SCM_RIGHTS) and exits without bcc's cleanup
(which would disable the perf events it shares with the recorder); the
recorder reads the ring buffer through its own mmap and never loads bcc.

Protocol: the parent sends one JSON request ``{"config": {...}}``
(RecorderConfig's fields); the child answers one JSON message, with the
descriptors attached when ``ok``: ``{"ok": true, "file_tracepoints": [...],
"attached": [...], "fds": ["rec_events", "rec_lost", "tp:NAME", ...]}``, or
``{"ok": false, "message", "hint", "exit_code"}``.

    python -m pyimpact.collect.recorder_loader SOCKET_FD
"""
from __future__ import annotations

import json
import os
import socket
import sys


def _load(req: dict):
    from ..errors import BPFUnavailable
    from .bpf_env import check_bpf_environment
    from .btf import XFS_OFFSETS, load_btf, optional_offsets, recorder_offsets
    from .recorder_probes import RecorderConfig, recorder_source

    config = RecorderConfig(**req["config"])
    config.validate()
    check_bpf_environment()
    btf = load_btf()
    offsets = recorder_offsets(btf)
    xfs = optional_offsets(XFS_OFFSETS, btf)
    switches, file_tps = config.file_probes(xfs)
    offsets.update(xfs or {k: 0 for k in XFS_OFFSETS})
    del btf
    from bcc import BPF

    try:
        bpf = BPF(text=recorder_source().encode(), cflags=config.cflags(offsets, switches))
    except Exception as exc:
        raise BPFUnavailable(f"could not load the recorder probes: {str(exc).splitlines()[0]}",
                             "is BPF permitted here (root, no lockdown, kernel >= 5.8)?") from None
    names = ["rec_events", "rec_lost", "rec_sig_coalesced"]
    fds = [bpf[b"rec_events"].map_fd, bpf[b"rec_lost"].map_fd, bpf[b"rec_sig_coalesced"].map_fd]
    for tp, fd in list(bpf.raw_tracepoint_fds.items()) + list(bpf.tracepoint_fds.items()):
        names.append("tp:" + (tp.decode() if isinstance(tp, bytes) else str(tp)))
        fds.append(fd)
    return {"ok": True, "file_tracepoints": file_tps, "fds": names, "peak_rss_kb": _peak_rss_kb()}, fds


def _peak_rss_kb() -> int:
    """This loader's VmHWM: what compiling cost, reported so it can be measured (the recorder never pays it)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(x.split()[1]) for x in f if x.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return 0


def main(argv) -> None:
    sock = socket.socket(fileno=int(argv[1]))
    try:
        req = json.loads(sock.recv(1 << 16).decode())
        try:
            reply, fds = _load(req)
        except Exception as err:          # every failure goes back as one message: the parent raises it
            from ..errors import PyimpactError

            if isinstance(err, PyimpactError):
                reply = {"ok": False, "message": err.message, "hint": err.hint, "exit_code": err.exit_code}
            else:
                reply = {"ok": False, "message": f"could not load the recorder probes: {type(err).__name__}: "
                                                 f"{str(err).splitlines()[0] if str(err) else ''}",
                         "hint": "is BPF permitted here (root, kernel >= 5.8)?", "exit_code": 5}
            fds = []
        socket.send_fds(sock, [json.dumps(reply).encode()], fds)
    finally:
        sock.close()
        sys.stdout.flush()
        sys.stderr.flush()
        # No bcc cleanup, no atexit, no destructors: they would detach what the recorder now holds.
        os._exit(0)


if __name__ == "__main__":
    main(sys.argv)
