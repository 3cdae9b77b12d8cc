"""A rank of a (pretend) distributed job: it holds a TCP connection to its
master (MASTER_ADDR:MASTER_PORT from the environment, as torch.distributed
does) and listens on a port of its own, then waits.  Says its own port on
READY_FD once both are up.

usage: RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=N kp_rank.py READY_FD
"""
from __future__ import annotations

import os
import socket
import sys


def main() -> int:
    ready = int(sys.argv[1])
    master = socket.create_connection((os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])))
    own = socket.socket()
    own.bind(("127.0.0.1", 0))
    own.listen(1)
    os.write(ready, f"{own.getsockname()[1]}\n".encode())
    master.recv(1)          # until the master goes away
    return 0


if __name__ == "__main__":
    sys.exit(main())
