"""A job whose joblib (loky) workers outlive it when it is killed.

    python loky_job.py

Runs a small joblib.Parallel (loky backend, 2 workers), prints "ready PID",
then sleeps: the loky executor keeps its workers (and resource trackers)
alive, idle, as it does between calls in a real job.
"""
import os
import time

from joblib import Parallel, delayed


def square(x):
    return x * x


if __name__ == "__main__":
    assert Parallel(n_jobs=2, backend="loky")(delayed(square)(i) for i in range(8)) == [i * i for i in range(8)]
    print("ready", os.getpid(), flush=True)
    time.sleep(600)
