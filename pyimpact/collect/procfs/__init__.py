"""What /proc tells about processes, threads, file descriptors, sockets and
file locks, returned as ``pyimpact.snapshot`` records: the ONE /proc boundary
of the tool.

The package touches the system and nothing else: it never prints and never
decides.  Its modules, bottom to top:

* ``boundary`` - the error boundary every /proc read goes through, and the
  deadline-bounded workers (a stuck target must not stick the tool);
* ``parse``    - pure parsers of /proc file contents (the one stat parser);
* ``clock``    - boot time, per-CPU scheduler clock offsets;
* ``threads``  - one thread's wait state;
* ``tree``     - process identity and the one process-tree walk;
* ``process``  - one process's details, fds, memory words, argv;
* ``tables``   - host tables: file locks, sockets, pipe/socket holders;
* ``environ``  - the machine-wide allow-listed environment scan;
* ``pidns``    - PID namespaces: NSpid, ns pid -> host pid tables;
* ``snapshot`` - ``take_snapshot``, which composes all of the above.

Callers use the names re-exported here (``procfs.take_snapshot`` ...).
"""
from .boundary import CLOCK_TICKS, PAGE_SIZE, PROC, ErrorNotes, read, read_bounded, sys_call
from .clock import boot_time, calibrate_cpu_clocks
from .environ import EnvironEntry, scan_environ
from .parse import PF_KTHREAD, looks_like_python, parse_argv, parse_kv, parse_stat, parse_syscall, stat_field
from .process import CMDLINE_TIMEOUT_S, REMOTE_FS_TYPES, read_cmdline, read_memory_word, tgid_of
from .snapshot import take_snapshot
from .tables import inode_holders, own_netns, read_locks, read_sockets
from .threads import read_thread
from .tree import all_pids, children, descendants, exists, process_identity, read_stat, tree_of, walk

__all__ = [
    "CMDLINE_TIMEOUT_S", "PF_KTHREAD", "parse_argv", "parse_kv", "parse_syscall", "read_cmdline", "exists", "read_stat", "tgid_of", "tree_of", "walk",
    "CLOCK_TICKS", "PAGE_SIZE", "PROC", "REMOTE_FS_TYPES", "EnvironEntry", "ErrorNotes",
    "all_pids", "boot_time", "calibrate_cpu_clocks", "children", "descendants",
    "inode_holders", "looks_like_python", "own_netns", "parse_stat", "process_identity",
    "read", "read_bounded", "read_locks", "read_memory_word", "read_sockets", "read_thread",
    "scan_environ", "stat_field", "sys_call", "take_snapshot",
]
