"""The compiled-probe cache (collect/probe_cache.py, bpf_image.py, bpf_loaded.py):
probes loaded from a kept image behave as freshly compiled ones, and the cache
is used only when no one but root could have written it (root, real BPF)."""
from __future__ import annotations

import os
import stat
import struct
import threading

import pytest

from pyimpact.collect.bpf_image import ImageError, MapSpec, ProbeImage, ProgSpec, map_references, with_map_refs
from pyimpact.collect.probe_cache import ProbeCache
from pyimpact.collect.probes import KernelProbes, ProbeConfig
from pyimpact.render.timings_view import timings_line

NCALLS = 1237


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    base = tmp_path / "cache"
    base.mkdir(mode=0o700)
    monkeypatch.setenv("PYIMPACT_CACHE_DIR", str(base))
    return base


def _entries(base) -> list:
    d = base / "probes"
    return sorted(p for p in d.iterdir() if p.suffix == ".json") if d.exists() else []


def _open_and_count(tid_out: list) -> KernelProbes:
    """Open the probes on this process, make NCALLS getppid calls from a new thread, read its count back."""
    probes = KernelProbes(ProbeConfig(pids=(os.getpid(),))).open()
    try:
        def calls():
            tid_out.append(threading.get_native_id())
            for _ in range(NCALLS):
                os.getppid()

        t = threading.Thread(target=calls)
        t.start()
        t.join()
        counts = [s.count for s in probes.syscall_stats() if s.tid == tid_out[-1] and s.syscall == "getppid"]
        assert counts == [NCALLS]
        assert probes.lost()["map_full"] == 0
    except BaseException:
        probes.close()
        raise
    return probes


def test_second_start_loads_the_kept_image_and_counts_the_same(cache_dir):
    tids = []
    first = _open_and_count(tids)
    first.close()
    assert first.timings["probe_cache_hit"] == 0.0 and first.timings["compile_s"] > 0.1
    (entry,) = _entries(cache_dir)
    st = entry.stat()
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE((cache_dir / "probes").stat().st_mode) == 0o700

    second = _open_and_count(tids)
    try:
        assert second.timings["probe_cache_hit"] == 1.0 and "compile_s" not in second.timings
        assert second.syscall_probe_kind == first.syscall_probe_kind
        # Loading the image is a few bpf() calls; compiling was clang: an order of magnitude apart.
        assert second.timings["compile_attach_s"] < first.timings["compile_s"] / 3
    finally:
        second.close()
    assert _entries(cache_dir) == [entry]


def test_a_corrupt_entry_is_dropped_and_compiled_again(cache_dir):
    KernelProbes(ProbeConfig(pids=(os.getpid(),))).open().close()
    (entry,) = _entries(cache_dir)
    good = entry.read_bytes()
    entry.write_bytes(good[:len(good) // 2])
    probes = _open_and_count([])
    probes.close()
    assert probes.timings["probe_cache_hit"] == 0.0
    (again,) = _entries(cache_dir)
    assert again.read_bytes() != good[:len(good) // 2]
    assert ProbeImage.from_bytes(again.read_bytes(), again.stem).progs


def _tiny_image() -> ProbeImage:
    # r0 = 0; exit -- with one map reference (ld_imm64 src_reg 1, imm = map index 0)
    insns = (struct.pack("<BBhi", 0x18, 0x10, 0, 0) + struct.pack("<BBhi", 0, 0, 0, 0)
             + struct.pack("<BBhi", 0xb7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0))
    m = MapSpec(name="m", type=2, key_size=4, value_size=8, max_entries=1, flags=0, key_desc='"int"',
                leaf_desc='"unsigned long long"')
    return ProbeImage(license="GPL", maps=(m,), progs=(ProgSpec("raw_tracepoint__x", "raw_tracepoint", "x", insns),))


def test_map_references_are_rewritten_and_checked():
    image = _tiny_image()
    insns = image.progs[0].insns
    assert list(map_references(insns)) == [(0, 0)]
    assert list(map_references(with_map_refs(insns, lambda i: i + 41))) == [(0, 41)]
    data = image.to_bytes("k")
    assert ProbeImage.from_bytes(data, "k") == image
    with pytest.raises(ImageError):
        ProbeImage.from_bytes(data, "another key")
    bad = ProbeImage(license="GPL", maps=(), progs=image.progs)
    with pytest.raises(ImageError):
        ProbeImage.from_bytes(bad.to_bytes("k"), "k")


def test_a_directory_others_can_write_is_not_used(tmp_path):
    base = tmp_path / "open"
    base.mkdir()
    os.chmod(base, 0o777)
    cache = ProbeCache(str(base))
    cache.put("k", _tiny_image())
    assert cache.get("k") is None
    assert "not root's alone" in cache.note
    assert not (base / "probes").exists() or not list((base / "probes").iterdir())
    cache.close()


def test_a_directory_owned_by_another_user_is_not_used(tmp_path):
    base = tmp_path / "theirs"
    base.mkdir(mode=0o700)
    os.chown(base, 65534, 65534)
    cache = ProbeCache(str(base))
    assert cache.get("k") is None and "not root's alone" in cache.note
    cache.close()


def test_entries_others_could_have_written_or_links_are_ignored(tmp_path):
    base = tmp_path / "c"
    base.mkdir(mode=0o700)
    cache = ProbeCache(str(base))
    cache.put("k", _tiny_image())
    assert cache.get("k") == _tiny_image()
    entry = base / "probes" / "k.json"
    os.chmod(entry, 0o666)
    assert cache.get("k") is None and "not root's alone" in cache.note
    os.chmod(entry, 0o600)
    os.chown(entry, 65534, 65534)
    assert cache.get("k") is None
    entry.unlink()
    target = tmp_path / "elsewhere.json"
    target.write_bytes(_tiny_image().to_bytes("k"))
    os.chmod(target, 0o600)
    (base / "probes" / "k.json").symlink_to(target)
    assert cache.get("k") is None          # O_NOFOLLOW: a link is never read
    cache.close()


def test_timings_line_shows_the_probes_as_parallel_and_their_source():
    line = timings_line({"imported": 0.45, "attached": 0.25, "window_done": 1.25, "diagnosed": 1.3},
                        {"compile_attach_s": 0.05, "probe_cache_hit": 1.0})
    assert "probes attached 0.25 s (during the previous step)" in line
    assert "window 1.25 s (+1.00)" in line
    assert "probes from the compiled-probe cache" in line
    line = timings_line({"imported": 0.4, "attached": 0.9}, {"compile_attach_s": 0.7, "compile_s": 0.66,
                                                            "probe_cache_hit": 0.0})
    assert "probes attached 0.90 s (+0.50)" in line and "compiled in 0.66 s" in line


def _twice_in_fresh_interpreters(code: str) -> list:
    """Run ``code`` in two new Pythons one after the other (the first fills
    the cache, the second starts from it); both must succeed."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
            for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    return runs


def test_a_start_from_the_cache_never_loads_bcc_or_llvm(cache_dir):
    """The point of the cache for memory (issue 14): libbcc, with LLVM inside, is mapped only to compile."""
    code = ("import os, sys\n"
            "from pyimpact.collect.probes import KernelProbes, ProbeConfig\n"
            "p = KernelProbes(ProbeConfig(pids=(os.getpid(),))).open()\n"
            "print(int(p.timings['probe_cache_hit']), 'bcc' in sys.modules,\n"
            "      any('libbcc' in line for line in open('/proc/self/maps')))\n"
            "p.close()\n")
    runs = _twice_in_fresh_interpreters(code)
    assert runs[0].stdout.split() == ["0", "True", "True"]      # compiled: bcc and libbcc loaded
    assert runs[1].stdout.split() == ["1", "False", "False"]    # from the cache: neither


def test_the_key_survives_the_kernel_dropping_its_caches():
    """sysfs stamps an inode it makes again with the time of that moment: a key
    taken from /sys/kernel/btf/vmlinux's mtime changed after every drop_caches
    (a cold start compiled again)."""
    from pyimpact.collect.probe_cache import cache_key

    before = cache_key(b"int x;", ["-DA=1"], "0.26.0")
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2\n")          # dentries and inodes: sysfs's among them
    assert cache_key(b"int x;", ["-DA=1"], "0.26.0") == before
    assert cache_key(b"int y;", ["-DA=1"], "0.26.0") != before


def _recorder_open_and_fork(cache_dir):
    """Open the recorder's probes, fork a child that exits 7, and return (probes
    timings, the child's fork and exit events as the recorder saw them, entries)."""
    import time

    from pyimpact.collect.recorder_probes import RecorderConfig, RecorderProbes

    probes = RecorderProbes(RecorderConfig(files=False)).open()
    try:
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        os.waitpid(pid, 0)
        got = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(e.kind == "exit" and e.pid == pid for e in got):
            probes.drain(got.append)
            time.sleep(0.05)
        mine = [(e.kind, e.other if e.kind == "fork" else e.aux) for e in got
                if (e.kind == "fork" and e.other == pid) or (e.kind == "exit" and e.pid == pid)]
        return dict(probes.timings), mine, probes.attached
    finally:
        probes.close()


def test_the_recorder_loads_its_kept_image_without_a_compile(cache_dir):
    """`pyimpact record` uses the cache like the trace probes (issue: it compiled
    at every start): the first start compiles in the loader child and keeps the
    image, the second loads it with no compile; both see the same events."""
    first, events1, attached1 = _recorder_open_and_fork(cache_dir)
    assert first["probe_cache_hit"] == 0.0 and first["compile_s"] > 0.1, first
    (entry,) = _entries(cache_dir)
    assert entry.stat().st_uid == 0 and stat.S_IMODE(entry.stat().st_mode) == 0o600
    second, events2, attached2 = _recorder_open_and_fork(cache_dir)
    assert second["probe_cache_hit"] == 1.0 and "compile_s" not in second, second
    assert _entries(cache_dir) == [entry]
    assert attached2 == attached1 and {"sched_process_fork", "sched_process_exit"} <= set(attached1)
    assert [k for k, _ in events1] == [k for k, _ in events2] == ["fork", "exit"], (events1, events2)
    assert events1[1][1] == events2[1][1] == 7 << 8     # exit_code (status << 8), read through the BTF offsets


def test_a_recorder_start_from_the_cache_spawns_no_compiler(cache_dir):
    """The recorder never maps bcc itself; with its image kept it starts no
    loader child either (the child is what imports bcc and LLVM)."""
    code = ("import subprocess, sys\n"
            "started = []\n"
            "real = subprocess.Popen\n"
            "class Counting(real):\n"
            "    def __init__(self, *a, **k):\n"
            "        started.append(a[0]); super().__init__(*a, **k)\n"
            "subprocess.Popen = Counting\n"
            "from pyimpact.collect.recorder_probes import RecorderConfig, RecorderProbes\n"
            "p = RecorderProbes(RecorderConfig(files=False)).open()\n"
            "print(int(p.timings['probe_cache_hit']), len(started), 'bcc' in sys.modules,\n"
            "      any('libbcc' in line for line in open('/proc/self/maps')))\n"
            "p.close()\n")
    runs = _twice_in_fresh_interpreters(code)
    assert runs[0].stdout.split() == ["0", "1", "False", "False"]      # compiled by one loader child
    assert runs[1].stdout.split() == ["1", "0", "False", "False"]      # from the cache: no child
