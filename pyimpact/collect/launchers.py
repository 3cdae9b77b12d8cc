"""Run a pyimpact command on other nodes through the launcher the cluster
already has: OpenSSH (BatchMode, the user's ssh configuration or ``-F FILE``),
Slurm (``srun --overlap`` inside the job's allocation) or ``kubectl exec``.
No agent of our own, no transport of our own.

Every node is asked at once (one thread and one launcher process each), so
the answer takes as long as the slowest node, not the sum. A node that does
not answer in time has its launcher process group killed (a group this
module created) and is reported with the reason, never waited on forever.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence

from ..errors import UsageError

VIAS = ("ssh", "slurm", "kubectl")
_HOST_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@%\[\]-]*$")


@dataclass
class RemoteAnswer:
    """What one node's launcher returned."""

    host: str
    argv: List[str]
    returncode: Optional[int]       # None: no answer in time, or the launcher could not start
    stdout: str = ""
    stderr: str = ""
    elapsed_s: float = 0.0
    error: Optional[str] = None     # why there is no answer, one line


def check_host(host: str) -> str:
    """A host, pod or node name as a launcher argument: never an option."""
    if not _HOST_RE.match(host):
        raise UsageError(f"not a host name: {host!r}", "one host name per line, no spaces or leading '-'")
    return host


def read_hosts(path: str) -> List[str]:
    """One host per line; blank lines and '#' comments are skipped."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise UsageError(f"cannot read hosts file {path}: {err.strerror}",
                         "give --hosts a readable file, one host per line") from None
    hosts = [check_host(line.split("#", 1)[0].strip()) for line in lines if line.split("#", 1)[0].strip()]
    if not hosts:
        raise UsageError(f"hosts file {path} names no host", "put one host per line in it (# starts a comment)")
    return list(dict.fromkeys(hosts))


def launcher_argv(via: str, host: str, remote: Sequence[str], *, ssh_config: Optional[str] = None,
                  slurm_job: Optional[str] = None) -> List[str]:
    """The local command that runs ``remote`` (an argv) on ``host``."""
    check_host(host)
    if via == "ssh":
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "ServerAliveInterval=5"]
        if ssh_config:
            argv += ["-F", ssh_config]
        # ssh joins the command words with spaces for the remote shell: quote them.
        return argv + [host, shlex.join(list(remote))]
    if via == "slurm":
        if not slurm_job:
            raise UsageError("--via slurm needs --slurm JOBID", "add --slurm JOBID, or use --via ssh with --hosts FILE")
        return ["srun", "--overlap", f"--jobid={slurm_job}", "--nodes=1", "--ntasks=1",
                f"--nodelist={host}", "--quiet", *remote]
    if via == "kubectl":
        return ["kubectl", "exec", host, "--", *remote]
    raise UsageError(f"unknown launcher {via!r}", f"use one of: {', '.join(VIAS)}")


def slurm_hosts(job_id: str, *, timeout_s: float = 10.0) -> List[str]:
    """The nodes of a Slurm job, from squeue and scontrol."""
    if not re.match(r"^[0-9]+(_[0-9]+)?$", job_id):
        raise UsageError(f"not a Slurm job id: {job_id!r}", "give the numeric job id that squeue shows")
    try:
        nodelist = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%N"], capture_output=True, text=True,
                                  timeout=timeout_s, check=True).stdout.strip()
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                             timeout=timeout_s, check=True).stdout
    except FileNotFoundError:
        raise UsageError("--slurm needs Slurm's squeue and scontrol on PATH",
                         "run on a Slurm login or compute node, or give --hosts FILE") from None
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
        raise UsageError(f"cannot list the nodes of Slurm job {job_id}: {err}",
                         "check the job id with squeue, or give --hosts FILE") from None
    hosts = [check_host(h.strip()) for h in out.splitlines() if h.strip()]
    if not hosts:
        raise UsageError(f"Slurm job {job_id} has no nodes (is it running?)",
                         "check the job's state with squeue -j JOBID")
    return hosts


def _explain(ans: RemoteAnswer, via: str) -> Optional[str]:
    """One line saying why a node gave no usable answer (None when it did)."""
    last = next((line for line in reversed(ans.stderr.splitlines()) if line.strip()), "")
    if ans.returncode == 0:
        return None
    if via == "ssh" and ans.returncode == 255:
        return f"unreachable through ssh: {last or 'connection failed'}"
    if ans.returncode == 127:
        return "pyimpact is not installed there (command not found); install it or pass --remote-cmd"
    if ans.returncode == 4:
        return f"not permitted there (pyimpact needs root on the node): {last}"
    return f"pyimpact failed there (exit {ans.returncode}): {last or 'no message'}"


def run_everywhere(hosts: Sequence[str], remote: Sequence[str], *, via: str = "ssh",
                   ssh_config: Optional[str] = None, slurm_job: Optional[str] = None,
                   timeout_s: float = 30.0) -> List[RemoteAnswer]:
    """Run ``remote`` on every host at once; answers in the order of ``hosts``."""
    answers: List[Optional[RemoteAnswer]] = [None] * len(hosts)

    def one(i: int, host: str) -> None:
        argv = launcher_argv(via, host, remote, ssh_config=ssh_config, slurm_job=slurm_job)
        t0 = time.monotonic()
        ans = RemoteAnswer(host=host, argv=argv, returncode=None)
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except OSError as err:
            ans.error = f"cannot start {argv[0]}: {err.strerror}"
            answers[i] = ans
            return
        try:
            out, err = proc.communicate(timeout=timeout_s)
            ans.returncode = proc.returncode
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)   # the group we created for this launcher
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
            ans.error = f"no answer within {timeout_s:g} s"
        ans.stdout = out.decode("utf-8", "replace")
        ans.stderr = err.decode("utf-8", "replace")
        ans.elapsed_s = time.monotonic() - t0
        if ans.error is None:
            ans.error = _explain(ans, via)
        answers[i] = ans

    threads = [threading.Thread(target=one, args=(i, h), name=f"pyimpact-node-{i}", daemon=True)
               for i, h in enumerate(hosts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [a for a in answers if a is not None]
