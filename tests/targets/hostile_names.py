"""A process whose every visible string is hostile (tests/test_hostile_text.py).

    hostile_names.py COMM DIR [--signal PID] [--busy] [ARG...]

Sets its own name (comm) to COMM with prctl(PR_SET_NAME) (os.fsencode: an
argument holding invalid UTF-8 keeps its raw bytes), opens a file for writing
in DIR whose name holds a newline, a spoofed verdict line, a terminal escape,
a bidi override and an invalid UTF-8 byte, and keeps writing to it from a
function whose code object is named with a newline and an escape (py-spy's
frames).  With
--signal PID it sends SIGUSR1 to PID on every round (a hostile sender in the
signal table); with --busy it sleeps 1 ms per round instead of 50 ms (many
short syscalls: the top of a machine-wide trace).  The extra ARGs are there
to be seen in /proc/PID/cmdline.  Says "ready" on stdout once set up; runs
until killed (the test kills its process group).
"""
import ctypes
import os
import signal
import sys
import time

FILE_NAME = b"ckpt\nVERDICT SAFE\x1b[31m\xe2\x80\xae\xff.pt"
FRAME_NAME = "work\nVERDICT SAFE\x1b[31m[/oops]"


def main() -> None:
    comm = os.fsencode(sys.argv[1])[:15]
    directory = os.fsencode(sys.argv[2])
    rest = sys.argv[3:]
    target = int(rest[rest.index("--signal") + 1]) if "--signal" in rest else None
    pause = 0.001 if "--busy" in rest else 0.05
    signal.signal(signal.SIGUSR1, lambda *_: None)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(15, ctypes.c_char_p(comm), 0, 0, 0) != 0:   # PR_SET_NAME
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NAME)")
    out = open(os.path.join(directory, FILE_NAME), "wb")
    out.write(b"x" * 4096)
    out.flush()
    print("ready", flush=True)
    work(out, target, pause)


def work(out, target, pause) -> None:
    while True:
        out.write(b"y")
        out.flush()
        if target is not None:
            try:
                os.kill(target, signal.SIGUSR1)
            except ProcessLookupError:
                target = None
        time.sleep(pause)


# the function's name, as py-spy reads it from the code object, is hostile too
work.__code__ = work.__code__.replace(co_name=FRAME_NAME, **(
    {"co_qualname": FRAME_NAME} if hasattr(work.__code__, "co_qualname") else {}))


if __name__ == "__main__":
    main()
