"""The report session: a saved recording read back and given the same pure
analyses a live run gives (the timeline's story, the diagnosis of each target,
the kill preview of each job the recording sampled).

``load`` reads through pyimpact.export (one-line InputError, exit code 7, on a
missing, unreadable or foreign file); ``analyse`` and ``kill_previews`` compose
analyse/ on the Recording.  Used by `pyimpact report`.
"""
from __future__ import annotations

from ..errors import InputError, NotInRecording, PyimpactError
from ..export import read_recording

def load(path: str):
    """The recording in ``path``, or InputError (exit code 7) saying why not."""
    import os

    if os.path.isdir(path):
        raise InputError(f"cannot read {path}: it is a directory", "give a recording file")
    try:
        with open(path, "rb"):   # unreadable (mode, missing): one line naming why
            pass
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror or err}",
                         "check the path and its permissions") from None
    try:
        return read_recording(path)
    except PyimpactError:
        raise
    except Exception as err:  # a damaged or foreign file: one line, not a traceback
        raise InputError(f"cannot read {path}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                         "is it a recording written by pyimpact trace -o or diagnose -o?") from None


def analyse(rec, pids=()):
    """(story, [Diagnosis]) for the targets of ``rec`` (or ``pids``)."""
    from ..analyse.hang.diagnose import diagnose
    from ..analyse.timeline_summary import tell

    story = tell(rec)
    wanted = list(pids) or [int(t["pid"]) for t in (rec.metadata.targets or []) if "pid" in t]
    diagnoses = []
    for pid in wanted:
        try:
            diagnoses.append(diagnose(rec, pid))
        except NotInRecording:
            if pids:
                raise InputError(f"pid {pid} is not in the recording's snapshots",
                                 "pyimpact report FILE without -p lists the processes it holds") from None
    return story, diagnoses


def kill_previews(rec, pids=()):
    """([ImpactReport], [{pid, why}]): the kill-preview analysis of each job
    the recording observed (of ``pids`` only, if given), and the jobs that
    cannot be analysed (no snapshot of them: found after the trace started).
    Both empty when the recording carries no kill-preview samples."""
    from ..analyse.impact.report import COSTLY_AFTER_S, analyse_impact

    observations = (rec.metadata.kill_preview or {}).get("observations", [])
    costly_after_s = float((rec.metadata.options or {}).get("costly_after_s", COSTLY_AFTER_S))
    reports, skipped = [], []
    for obs in observations:
        root = int(obs["root"])
        if pids and root not in pids:
            continue
        try:
            reports.append(analyse_impact(rec, root, costly_after_s=costly_after_s))
        except NotInRecording as err:
            skipped.append({"pid": root, "why": str(err)})
    return reports, skipped
