"""Compile the recorder's BPF program in a short-lived child process.

Why a child: compiling with bcc maps LLVM and clang into the process (about
60 MB of RSS for `import bcc` alone, 150 MB at the peak of a compile), and
a recorder runs for days. The child compiles the program into a ProbeImage
(bpf_image.py: bytecode and map definitions, nothing loaded), keeps it in
the compiled-probe cache for the next start (probe_cache.py) and sends it
back; the recorder loads and attaches it itself with a few bpf(2) calls
(bpf_loaded.py), as it does at a start that finds the image in the cache
(no child at all then). Only this child ever imports bcc.

Protocol: the parent sends one JSON request ``{"cflags": [...], "key":
KEY}`` and shuts its side for writing; the child answers one JSON line,
``{"ok": true, "peak_rss_kb": N}`` followed by the image (ProbeImage.to_bytes
for KEY) up to the end of the stream, or ``{"ok": false, "message", "hint",
"exit_code"}``.

    python -m pyimpact.collect.recorder_loader SOCKET_FD
"""
from __future__ import annotations

import json
import os
import socket
import sys


def _compile(req: dict) -> bytes:
    from .bpf_image import compile_image
    from .probe_cache import ProbeCache
    from .recorder_probes import recorder_source

    cflags = [str(f) for f in req["cflags"]]
    key = str(req["key"])
    image = compile_image(recorder_source().encode(), cflags, {})
    cache = ProbeCache()
    try:
        cache.put(key, image)       # best effort: the parent loads what is sent back either way
    finally:
        cache.close()
    return image.to_bytes(key)


def _peak_rss_kb() -> int:
    """This loader's VmHWM: what compiling cost, reported so it can be measured (the recorder never pays it)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(x.split()[1]) for x in f if x.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return 0


def _read_all(sock: socket.socket, limit: int) -> bytes:
    data = b""
    while len(data) <= limit:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    return data


def main(argv) -> None:
    sock = socket.socket(fileno=int(argv[1]))
    try:
        req = json.loads(_read_all(sock, 1 << 20).decode())
        image = b""
        try:
            image = _compile(req)
            reply = {"ok": True, "peak_rss_kb": _peak_rss_kb()}
        except Exception as err:          # every failure goes back as one message: the parent raises it
            from ..errors import PyimpactError

            if isinstance(err, PyimpactError):
                reply = {"ok": False, "message": err.message, "hint": err.hint, "exit_code": err.exit_code}
            else:
                reply = {"ok": False, "message": f"could not compile the recorder probes: {type(err).__name__}: "
                                                 f"{str(err).splitlines()[0] if str(err) else ''}",
                         "hint": "is BPF permitted here (root, kernel >= 5.8)?", "exit_code": 5}
        sock.sendall(json.dumps(reply).encode() + b"\n" + image)
    finally:
        sock.close()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)     # no bcc teardown: nothing of it is needed any more


if __name__ == "__main__":
    main(sys.argv)
