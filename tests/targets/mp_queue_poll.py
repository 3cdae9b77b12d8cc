"""A parent polling a multiprocessing queue with timeouts, as job runners do.

    mp_queue_poll.py queue   the parent loops on ``q.get(timeout=0.1)``; its
                             worker (a multiprocessing.Process) puts one item
                             every 0.1 s
    mp_queue_poll.py pool    the parent loops on ``AsyncResult.get(timeout=0.1)``
                             of a task a Pool worker runs (a long one: it
                             sleeps); retries on TimeoutError

Prints "worker PID" and, once the first item arrived (queue) or the task
started (pool), "ready".  The test then stops or kills the worker: the parent
goes on polling, with nothing arriving.  Plain standard library.
"""
import multiprocessing as mp
import queue
import sys
import time


def produce(q) -> None:
    n = 0
    while True:
        q.put(n)
        n += 1
        time.sleep(0.1)


STARTED = None


def init(started) -> None:
    global STARTED
    STARTED = started


def task() -> int:
    STARTED.set()
    time.sleep(3600)
    return 1


def main() -> None:
    mode = sys.argv[1]
    if mode == "queue":
        q = mp.Queue()
        w = mp.Process(target=produce, args=(q,), daemon=True)
        w.start()
        print(f"worker {w.pid}", flush=True)
        q.get(timeout=30)
        print("ready", flush=True)
        while True:
            try:
                q.get(timeout=0.1)
            except queue.Empty:
                continue
    else:
        started = mp.Event()
        with mp.Pool(1, initializer=init, initargs=(started,)) as pool:
            res = pool.apply_async(task)
            started.wait(30)
            print(f"worker {pool._pool[0].pid}", flush=True)
            print("ready", flush=True)
            while True:
                try:
                    res.get(timeout=0.1)
                    break
                except mp.TimeoutError:
                    continue


if __name__ == "__main__":
    main()
