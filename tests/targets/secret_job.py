"""A job that carries secrets everywhere a tool could pick them up (issue 8,
item 5): its argv, its script's path and its working directory, a file it
holds open, credentials in its environment, and a credential in a Python
local variable of the thread that waits.

The main thread joins a worker thread that blocks reading a pipe nobody
writes to, so `diagnose` has a real wait to explain (and py-spy a real
Thread.join to read the locals of).  Prints "ready" once both wait.
Usage: secret_job.py [args...] < LOCAL_CANARY (read from stdin: not in argv)
"""
import os
import sys
import threading
import time


def wait_for_input(fd):
    os.read(fd, 1)


def main():
    aws_secret_access_key = sys.stdin.readline().strip()   # the canary a --locals dump would show
    held = open(os.path.join(os.getcwd(), "held_open.log"), "w")
    r, w = os.pipe()
    worker = threading.Thread(target=wait_for_input, args=(r,), name="worker")
    worker.start()
    time.sleep(0.2)
    print("ready", flush=True)
    worker.join()
    held.close()
    return aws_secret_access_key


if __name__ == "__main__":
    main()
