"""The conventions users of py-spy, pystack and bcc's tools expect: -V, exit
codes in --help, shell completion, -o checked early (an unknown suffix is a
usage error, exit 2) and -o - for standard output; one version string and an
SPDX license in the package metadata. No root needed."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import PYIMPACT, ROOT, wait_for_line
from pyimpact import __version__
from pyimpact import errors

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None


def _cli(args, env=None, timeout=60):
    full = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
    return subprocess.run(PYIMPACT + list(args), capture_output=True, timeout=timeout, env=full)


def test_version_flags():
    for flag in ("-V", "--version"):
        res = _cli([flag])
        assert res.returncode == 0 and res.stdout.decode().strip() == f"pyimpact {__version__}"


@pytest.mark.skipif(tomllib is None, reason="tomllib needs Python 3.11")
def test_metadata_one_version_and_spdx_license():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    assert "py-spy" in " ".join(project["dependencies"])
    with open(os.path.join(ROOT, "LICENSE")) as f:
        text = f.read()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_help_lists_every_exit_code_as_readme_does():
    res = _cli(["--help"])
    assert res.returncode == 0
    out = res.stdout.decode()
    help_codes = re.findall(r"^\s+(\d+)\s{2,}\S", out.split("Exit codes:")[1], re.M)
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    readme_codes = re.findall(r"^\| (\d+) \|", readme.split("### Exit codes")[1], re.M)
    doc_codes = re.findall(r"^  (\d+)\s", errors.__doc__, re.M)
    assert help_codes == readme_codes == doc_codes, (help_codes, readme_codes, doc_codes)
    assert {c.exit_code for c in vars(errors).values()
            if isinstance(c, type) and issubclass(c, errors.PyimpactError)} <= {int(c) for c in help_codes}


def test_shell_completion():
    res = _cli([], env={"_PYIMPACT_COMPLETE": "bash_source"})
    assert res.returncode == 0 and b"_pyimpact_completion()" in res.stdout
    res = _cli([], env={"_PYIMPACT_COMPLETE": "bash_complete", "COMP_WORDS": "pyimpact kill", "COMP_CWORD": "1"})
    assert res.stdout.decode().split() == ["plain,kill-preview"]


def test_process_names_complete(spawn):
    """PID|NAME completes to the running processes' names (here: a sleeper's)."""
    proc = spawn([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"],
                 stdout=subprocess.PIPE)
    wait_for_line(proc.stdout, "ready")
    res = _cli([], env={"_PYIMPACT_COMPLETE": "bash_complete", "COMP_WORDS": f"pyimpact diagnose {proc.pid}",
                        "COMP_CWORD": "2"})
    assert f"plain,{proc.pid}" in res.stdout.decode().split()


def test_unknown_output_suffix_is_a_usage_error(spawn, tmp_path):
    proc = spawn([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"],
                 stdout=subprocess.PIPE)
    wait_for_line(proc.stdout, "ready")
    bad = str(tmp_path / "out.txt")
    for args in (["diagnose", "--no-bpf", str(proc.pid), "-o", bad],
                 ["kill-preview", "--no-bpf", "-d", "0.2", str(proc.pid), "-o", bad],
                 ["trace", "-p", str(proc.pid), "-d", "0.2", "-o", bad],
                 ["report", os.path.join(ROOT, "tests", "recordings", "diag_rec_chain.parquet"), "-o", bad]):
        res = _cli(args)
        err = res.stderr.decode().strip()
        assert res.returncode == 2, (args, err)
        assert err.startswith("pyimpact: ") and "unknown format" in err and len(err.splitlines()) == 1
        assert not os.path.exists(bad)


def test_output_dash_writes_the_recording_to_stdout(spawn, tmp_path):
    proc = spawn([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"],
                 stdout=subprocess.PIPE)
    wait_for_line(proc.stdout, "ready")
    res = _cli(["diagnose", "--no-bpf", "--no-python", "-w", "0.05", str(proc.pid), "-o", "-"])
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)           # stdout is the recording alone ...
    assert "traceEvents" in doc and doc["pyimpact"]["metadata"]["targets"][0]["pid"] == proc.pid
    assert b"Verdict" in res.stderr        # ... and the human view went to stderr
    saved = tmp_path / "d.json"
    saved.write_bytes(res.stdout)
    res = _cli(["report", str(saved), "--json"])
    assert res.returncode == 0 and json.loads(res.stdout)["diagnoses"][0]["pid"] == proc.pid
    res = _cli(["diagnose", "--no-bpf", str(proc.pid), "-o", "-", "--json"])
    assert res.returncode == 2 and b"both write to standard output" in res.stderr


def test_report_converts_a_recording_to_every_format(tmp_path):
    """report FILE -o OUT: .json and .parquet read back to the same diagnosis; .csv keeps the timeline."""
    from pyimpact.analyse.hang.diagnose import diagnose
    from pyimpact.export import read_recording

    src = os.path.join(ROOT, "tests", "recordings", "diag_rec_chain.parquet")
    rec = read_recording(src)
    pid = int(rec.metadata["targets"][0]["pid"])
    want = diagnose(rec, pid).to_json()["verdict"]
    for suffix in (".json", ".parquet", ".csv"):
        out = tmp_path / f"conv{suffix}"
        res = _cli(["report", src, "-o", str(out)])
        assert res.returncode == 0 and out.stat().st_size > 0, res.stderr
        assert res.stdout == b"" and b"wrote" in res.stderr
        again = read_recording(str(out))
        assert len(again.events) == len(rec.events)
        if suffix != ".csv":
            assert diagnose(again, pid).to_json()["verdict"] == want
    res = _cli(["report", src, "-o", "-"])
    assert res.returncode == 0 and json.loads(res.stdout)["pyimpact"]["metadata"]["targets"][0]["pid"] == pid
