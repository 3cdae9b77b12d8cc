"""Generated syscall tables, one module per architecture (scripts/gen_syscall_tables.py)."""
