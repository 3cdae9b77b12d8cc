"""Probes loaded from a ProbeImage (bpf_image.py), held as file descriptors.

``LoadedProbes.load`` creates the image's maps, writes their fds into the
bytecode, loads each program and attaches it; ``FdMap`` reads and writes a
map through its fd the way the rest of pyimpact used bcc's tables (ctypes
keys and values, typed from bcc's own JSON descriptions of them,
bpf_ctypes.py). Nothing here imports bcc: a process that loads a cached
image never maps libbcc and the LLVM inside it (about 60 MB resident).

Detaching follows the costs measured for pyimpact (probes.py): raw
tracepoint and tp_btf links close in well under a millisecond each; a
classic tracepoint's perf event waits for RCU grace periods under a
kernel-wide mutex (about 36 ms each, one after another whatever the number
of threads closing them). With the kernel's BTF every probe is a link
(probes/pyimpact.h); without it, the classic ones are closed by one thread
each, which at least keeps them off the caller's thread.
"""
from __future__ import annotations

import ctypes
import json
import os
import threading
from typing import Dict, List, Optional, Tuple

from . import bpf_sys, tp_btf
from .bpf_ctypes import ctype_of
from .bpf_image import MapSpec, ProbeImage, with_map_refs

# bpf_map_type values whose lookups return one value per possible CPU
_PERCPU_TYPES = (5, 6, 10)     # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH
_PREFIXES = ("tracepoint__", "raw_tracepoint__")


class FdMap:
    """One BPF map by its fd: ``m[key]``, ``m[key] = value``, ``m.items()``.

    Keys and values are ctypes objects of the types bcc describes for the
    map (any ctypes object of the right size works as a key). A per-CPU
    map's value reads as a list, one entry per possible CPU."""

    def __init__(self, fd: int, spec: MapSpec):
        self.map_fd = fd
        self.spec = spec
        self.max_entries = spec.max_entries
        self._types = None

    def get_fd(self) -> int:
        return self.map_fd

    def _key_leaf(self) -> Tuple[type, type]:
        if self._types is None:
            self._types = (ctype_of(json.loads(self.spec.key_desc)), ctype_of(json.loads(self.spec.leaf_desc)))
        return self._types

    def leaf_type(self) -> type:
        """The ctypes type of the map's values (one value, not per CPU)."""
        return self._key_leaf()[1]

    def _leaf_buffer(self):
        _, leaf = self._key_leaf()
        if self.spec.type in _PERCPU_TYPES:
            if ctypes.sizeof(leaf) % 8:
                raise TypeError(f"per-CPU map {self.spec.name}: values of {ctypes.sizeof(leaf)} bytes are not supported")
            return (leaf * bpf_sys.possible_cpus())()
        return leaf()

    def _value(self, buf):
        return list(buf) if self.spec.type in _PERCPU_TYPES else buf

    def __getitem__(self, key):
        buf = self._leaf_buffer()
        if not bpf_sys.map_lookup(self.map_fd, key, buf):
            raise KeyError(key)
        return self._value(buf)

    def __setitem__(self, key, value) -> None:
        try:
            bpf_sys.map_update(self.map_fd, key, value)
        except bpf_sys.BpfSysError as err:
            raise OSError(err.errno, f"could not update map {self.spec.name}: {os.strerror(err.errno)}") from None

    def keys(self) -> list:
        keytype, _ = self._key_leaf()
        out, prev = [], None
        while len(out) <= self.max_entries:
            nxt = keytype()
            if not bpf_sys.map_next_key(self.map_fd, prev, nxt):
                break
            out.append(nxt)
            prev = nxt
        return out

    def items(self) -> list:
        """(key, value) pairs present now; an entry deleted meanwhile is left out."""
        out = []
        for key in self.keys():
            try:
                out.append((key, self[key]))
            except KeyError:
                continue
        return out


class LoadedProbes:
    """The maps, programs and attachments of one loaded image."""

    def __init__(self) -> None:
        self.maps: Dict[str, FdMap] = {}
        self.prog_fds: List[int] = []
        self.links: List[Tuple[str, int]] = []       # raw tracepoints and tp_btf: (target, link fd)
        self.perf_events: List[Tuple[str, int]] = []  # classic tracepoints: (target, perf event fd)

    @classmethod
    def load(cls, image: ProbeImage, btf_ids: Optional[Dict[str, int]] = None,
             tracefs: str = "/sys/kernel/tracing") -> "LoadedProbes":
        """Create, load, attach. ``btf_ids``: tracepoint -> BTF id, for the
        image's tp_btf programs; ``tracefs``: where the classic tracepoints' ids are. Raises BpfSysError, OSError, or
        tp_btf.TpBtfUnavailable (a tp_btf program refused); whatever was
        made before the failure is closed again."""
        self = cls()
        try:
            fds = []
            for spec in image.maps:
                fd = bpf_sys.map_create(spec.type, spec.name, spec.key_size, spec.value_size, spec.max_entries,
                                        spec.flags)
                fds.append(fd)
                self.maps[spec.name] = FdMap(fd, spec)
            lic = image.license.encode()
            for prog in image.progs:
                insns = with_map_refs(prog.insns, lambda i: fds[i])
                self._load_prog(prog.kind, prog.name, prog.target, insns, lic, btf_ids, tracefs)
        except BaseException:
            self.close()
            raise
        return self

    def _load_prog(self, kind: str, name: str, target: str, insns: bytes, lic: bytes, btf_ids, tracefs: str) -> None:
        short = name
        for prefix in _PREFIXES:
            if short.startswith(prefix):
                short = short[len(prefix):]
        if kind == "tp_btf":
            if not btf_ids or target not in btf_ids:
                raise tp_btf.TpBtfUnavailable(f"no BTF id for tracepoint {target}")
            fd = tp_btf.load(target, insns, btf_ids[target])
            self.prog_fds.append(fd)
            self.links.append((target, tp_btf.attach(fd)))
        elif kind == "raw_tracepoint":
            fd = bpf_sys.prog_load(bpf_sys.BPF_PROG_TYPE_RAW_TRACEPOINT, short, insns, lic)
            self.prog_fds.append(fd)
            self.links.append((target, bpf_sys.raw_tracepoint_open(fd, target)))
        else:
            fd = bpf_sys.prog_load(bpf_sys.BPF_PROG_TYPE_TRACEPOINT, short, insns, lic)
            self.prog_fds.append(fd)
            category, _, event = target.partition(":")
            self.perf_events.append((target, bpf_sys.tracepoint_attach(fd, tracefs, category, event)))

    def table(self, name: str) -> FdMap:
        """The map called ``name``; KeyError when the image has none."""
        return self.maps[name]

    def detach_links(self) -> None:
        """Close the raw tracepoint and tp_btf links: detached at once."""
        links, self.links = self.links, []
        for _, fd in links:
            _close(fd)

    def close_perf_events(self) -> None:
        """Close every classic tracepoint's perf event, one thread each. Each
        close waits for RCU grace periods; the kernel runs them one after
        another (event_mutex), so the threads keep the wait off the caller
        (probes.stop) rather than shorten it: 0.4-0.5 s for twelve when no
        other tracer holds the same tracepoints. os.close releases the GIL."""
        events, self.perf_events = self.perf_events, []
        if not events:
            return
        threads = [threading.Thread(target=bpf_sys.perf_event_close, args=(fd,), daemon=True)
                   for _, fd in events]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def close(self) -> None:
        """Detach everything and free the programs and maps. Safe to call twice."""
        self.detach_links()
        self.close_perf_events()
        progs, self.prog_fds = self.prog_fds, []
        for fd in progs:
            _close(fd)
        maps, self.maps = self.maps, {}
        for m in maps.values():
            _close(m.map_fd)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
