"""A small training-like job for the recorder tests: forks workers, checkpoints on cue.

    python history_job.py OUTDIR

Starts two multiprocessing workers (fork), prints "ready ROOT W1 W2", then for
each line read from stdin:
  ckpt N   writes OUTDIR/ckpt.pt.tmp (2 MiB), fsyncs it, renames it to
           OUTDIR/ckpt-N.pt and prints "ckpt N"
  signal   sends SIGUSR1 to the first worker and prints "signalled"
  spawn P  starts program P as a child (same process group), prints "spawned PID"
  exit     stops the workers and exits 0
Stdlib only.
"""
import multiprocessing as mp
import os
import signal
import sys
import time


def worker():
    signal.signal(signal.SIGUSR1, lambda *a: None)
    while True:
        time.sleep(0.2)


def main():
    out = sys.argv[1]
    ctx = mp.get_context("fork")
    workers = [ctx.Process(target=worker, daemon=True) for _ in range(2)]
    for w in workers:
        w.start()
    print("ready", os.getpid(), *[w.pid for w in workers], flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "ckpt":
            tmp = os.path.join(out, "ckpt.pt.tmp")
            with open(tmp, "wb") as f:
                f.write(os.urandom(2 << 20))
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, os.path.join(out, f"ckpt-{cmd[1]}.pt"))
            print("ckpt", cmd[1], flush=True)
        elif cmd[0] == "signal":
            os.kill(workers[0].pid, signal.SIGUSR1)
            print("signalled", flush=True)
        elif cmd[0] == "spawn":
            import subprocess

            child = subprocess.Popen([cmd[1]], stdout=subprocess.DEVNULL)
            print("spawned", child.pid, flush=True)
        elif cmd[0] == "exit":
            break
    for w in workers:
        w.terminate()
        w.join()


if __name__ == "__main__":
    main()
