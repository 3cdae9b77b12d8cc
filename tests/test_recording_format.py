"""Recordings written before the metadata and the kill-preview samples were typed still read, and read typed.

No root.  The metadata: every saved recording in tests/recordings was written while it was a plain dict;
read now it is a ``Metadata`` (keys this version does not know, like the fixtures' "fixture", kept in
``extra``), and written again it is the same JSON object.

tests/recordings/kp_slow_writer_v1.parquet was written by `pyimpact kill-preview PID -d 0.8 --if nice=10 -o`
(the version before ``WriteFd``/``FileStat``/``DirStat``/``LogTail``/``ThreadSample`` lived in the Recording: its samples were plain
lists) on tests/targets/kp_slow_writer.py in the middle of its third checkpoint.  Read now, its sample rows
come back as the typed records a live run holds; written again, they are the same lists on disk; and the
analysis of the old file is the analysis of its rewrite.
"""
from __future__ import annotations

import glob
import json
import os

import pyarrow.parquet as pq

from conftest import RECORDINGS
from pyimpact.analyse.impact.report import analyse_impact
from pyimpact.export import read_recording, write_recording
from pyimpact.recording import METADATA_KEY, DirStat, FileStat, LogTail, Metadata, ThreadSample, WriteFd

OLD = os.path.join(RECORDINGS, "kp_slow_writer_v1.parquet")


def _raw_metadata(path: str) -> dict:
    """The recording's metadata as the file holds it (a JSON object), read without pyimpact."""
    return json.loads(pq.read_schema(path).metadata[METADATA_KEY])["metadata"]


def _raw_kill_preview(path: str) -> dict:
    """metadata["kill_preview"] as the file holds it (JSON lists), read without pyimpact."""
    return _raw_metadata(path)["kill_preview"]


def test_old_metadata_reads_as_fields_and_writes_back_the_same_object(tmp_path):
    olds = sorted(glob.glob(os.path.join(RECORDINGS, "*.parquet")))
    assert len(olds) >= 9
    for path in olds:
        raw = _raw_metadata(path)
        rec = read_recording(path)
        meta = rec.metadata
        assert isinstance(meta, Metadata)
        assert (meta.host, meta.kernel, meta.tool_version) == (raw["host"], raw["kernel"], raw["tool_version"])
        assert meta.targets == raw["targets"] and meta.lost == raw["lost"] and meta.duration_s == raw["duration_s"]
        assert meta.unavailable == raw["unavailable"] and meta.end_reason == raw["end_reason"]
        unknown = {k: v for k, v in raw.items() if not hasattr(meta, k) or k == "extra"}
        assert meta.extra == unknown
        assert json.loads(json.dumps(meta.to_dict())) == raw       # (sample rows: NamedTuples, lists in JSON)
        again = str(tmp_path / os.path.basename(path))
        write_recording(rec, again)
        assert _raw_metadata(again) == raw, path
        assert read_recording(again).metadata == meta
    fixture = read_recording(olds[0]).metadata
    assert "fixture" in fixture.extra and fixture["fixture"] == fixture.extra["fixture"]


def test_metadata_mapping_view_matches_the_fields():
    meta = Metadata.from_dict({"host": "h", "lost": {"ringbuf_full": 2}, "someday": [1]})
    assert meta["host"] == "h" and meta.get("mode") is None and "mode" not in meta and "someday" in meta
    meta["mode"] = "pids"
    meta["fixture"] = {"pid": 1}
    assert meta.mode == "pids" and meta.extra == {"someday": [1], "fixture": {"pid": 1}}
    assert meta.to_dict() == {"host": "h", "lost": {"ringbuf_full": 2}, "mode": "pids", "someday": [1],
                              "fixture": {"pid": 1}}


def test_old_kill_preview_file_reads_typed_and_rewrites_the_same_lists(tmp_path):
    raw = _raw_kill_preview(OLD)
    assert raw["version"] == 1
    raw_samples = raw["observations"][0]["samples"]
    assert any(s["wfds"] for s in raw_samples) and all(isinstance(w, list) for s in raw_samples for w in s["wfds"])

    rec = read_recording(OLD)
    kp = rec.metadata["kill_preview"]
    samples = kp["observations"][0]["samples"]
    wfds = [w for s in samples for w in s["wfds"]]
    assert wfds and all(isinstance(w, WriteFd) for w in wfds)
    assert any(w.path.endswith("/ckpt_0003.bin") and w.size is not None for w in wfds)
    files = [f for s in samples for f in s["files"].values()]
    assert files and all(isinstance(f, FileStat) for f in files)
    dirs = [d for s in samples for d in (s.get("dirs") or {}).values()]
    assert all(isinstance(d, DirStat) for d in dirs)
    logs = [t for s in samples for t in (s.get("logs") or {}).values()]
    assert all(isinstance(t, LogTail) for t in logs)
    rows = [r for s in kp["threads"]["samples"] for r in s["threads"].values()]
    assert rows and all(isinstance(r, ThreadSample) for r in rows)
    assert {r.pid for r in rows} == {rec.metadata["targets"][0]["pid"]}

    again = str(tmp_path / "again.parquet")
    write_recording(rec, again)
    assert _raw_kill_preview(again) == raw                    # the same lists on disk
    back = read_recording(again)
    assert back.metadata == rec.metadata

    pid = int(rec.metadata["targets"][0]["pid"])
    old_doc = analyse_impact(rec, pid).to_dict()
    assert old_doc["safe_to_kill"]["verdict"] == "unsafe"
    assert [p["path"] for p in old_doc["loss"]["partial_files"]] == [w.path for w in wfds
                                                                     if w.path.endswith("/ckpt_0003.bin")][:1]
    assert analyse_impact(back, pid).to_dict() == old_doc
