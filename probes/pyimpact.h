/* pyimpact: the event layout, the maps every family shares, and the target filter.
 *
 * Compiled by bcc as one unit: this header, then each family's .bpf.c file.
 * No #include <linux/...>: each one costs ~1 s of compile time, so the few
 * structures needed are defined here. Settings arrive as -D flags built by
 * pyimpact/collect/probes.py from validated numbers:
 *   PYI_TRACE_ALL      1 = every process on the machine, 0 = the traced map only
 *   PYI_SLOW_NS        a syscall blocking at least this long is sent as an event
 *   PYI_RINGBUF_PAGES  ring buffer size in pages (a power of two)
 *   PYI_MAX_THREADS    size of the per-thread maps
 *   PYI_PID_WORDS      8-byte words of the traced-process bitmap (one byte per
 *                      tgid below PYI_PID_WORDS * 8: pid_max at start)
 *   PYI_FLIGHT_SLOTS   slots of the per-thread in-flight array (a power of
 *                      two; a thread's slot is tid & (PYI_FLIGHT_SLOTS - 1))
 *   PYI_TP_BTF         1 = the syscall programs are loaded as BTF-typed raw
 *                      tracepoints (tp_btf) and read pt_regs with plain loads,
 *                      and the rare ones are raw tracepoints reading the
 *                      kernel's structures at offsets from its BTF (end of
 *                      this file); 0 = the syscall programs are plain raw
 *                      tracepoints, pt_regs read with bpf_probe_read_kernel
 *                      (see syscalls.bpf.c), the rare ones classic tracepoints
 * and, per architecture (pyimpact/syscall_table.py, bpf_defines):
 *   PYI_NR_<call>      the numbers of the syscalls handled specially (exit,
 *                      exit_group, clone, clone3, fork, vfork, futex,
 *                      futex_wake, futex_wait); 0xFFFFFFFF where the
 *                      architecture has no such call
 *   PYI_REGS_BASE      byte offset in struct pt_regs of an 8-word window
 *                      holding the six syscall arguments
 *   PYI_REGS_NR        byte offset in struct pt_regs of the syscall number
 *                      (x86-64 orig_ax, arm64 syscallno), read at exit
 *   PYI_ARG0..PYI_ARG5 the word of that window holding each argument
 *
 * The layout of struct pyi_event, the kind numbers and PYI_PATH_LEN are mirrored
 * in pyimpact/timeline.py (EVENT_DTYPE, KINDS, EXEC_PATH_LEN): the kind name
 * after PYI_KIND_ is the timeline's kind in capitals. tests/test_event_layout.py
 * fails, without root, when the two sides differ.
 */

#define PYI_KIND_SYSCALL      1   /* a syscall that blocked >= PYI_SLOW_NS */
#define PYI_KIND_FUTEX_WAIT   2
#define PYI_KIND_FUTEX_WAKE   3
#define PYI_KIND_FORK         4
#define PYI_KIND_EXEC         5
#define PYI_KIND_EXIT         6
#define PYI_KIND_SIGNAL_GENERATE 7
#define PYI_KIND_SIGNAL_DELIVER  8
#define PYI_KIND_BLOCK_IO     9

#define PYI_LOST_RINGBUF      0   /* ring buffer reservation failed */
#define PYI_LOST_MAP_FULL     1   /* a map was full: a thread or request went unrecorded */
#define PYI_LOST_BLOCK_UNSEEN 2   /* a block request's completion never reached a probe (blockio.bpf.c) */

/* Submit flag for the frequent kinds (futex waits/wakes, slow syscalls): no
 * wake-up of the reader per event. A wake-up costs the traced thread an
 * irq_work (a self-IPI, a VM exit on a virtual machine) and the reader a
 * context switch per event; the reader polls on a timer instead (at most
 * 100 ms, see KernelProbes.poll) and takes what has accumulated in bulk. The
 * rare kinds keep the default adaptive wake-up, so a lone fork or signal still
 * wakes a reader waiting for it. */
#define PYI_RB_QUIET BPF_RB_NO_WAKEUP

#define PYI_COMM_LEN 16
#define PYI_PATH_LEN 128

/* One event, 88 bytes. Field meaning per kind is documented in timeline.py. */
struct pyi_event {
    u64 ts;                  /* CLOCK_MONOTONIC ns at the start of what is described */
    u64 dur;                 /* ns; 0 for instants */
    u32 kind;
    u32 tgid;
    u32 tid;
    s32 aux;
    s64 ret;
    u64 a[4];
    char comm[PYI_COMM_LEN];
};

/* exec carries the new program's path too. */
struct pyi_exec_event {
    struct pyi_event e;
    char filename[PYI_PATH_LEN];
};

struct pyi_stat_key {
    u32 tid;
    u32 nr;
};

#define PYI_HIST_SLOTS 40    /* log2(ns) buckets: 1 ns .. ~18 minutes */
/* Per (thread, syscall): one record of the syscall_stats array
 * (syscalls.bpf.c), taken when the thread's first such call returns. */
struct pyi_stat {
    u32 tid;                 /* the record's key: thread and syscall number */
    u32 nr;
    u64 count;               /* 0: not (yet) in use */
    u64 total_ns;
    u64 max_ns;
    u32 tgid;
    u32 errors;              /* calls that returned an error (-4095..-1) */
    u32 hist[PYI_HIST_SLOTS];
    s64 last_err;            /* the last error returned (-errno), 0 none */
    u64 last_err_arg0;       /* the first argument of that failed call (an fd, mostly) */
    u64 ret_sum;             /* sum of positive returns: bytes, for read/write/send/recv calls */
};

/* The call a thread is in now, if any: its entry time (0 = none), number and
 * six arguments. One per thread, in its slot of the `inflight` array
 * (syscalls.bpf.c): entry writes it, exit reads and clears it, user space
 * reads the array through its mmap (KernelProbes.inflight). The slot also
 * remembers where the thread's stats records are, for the syscall numbers
 * it made last: a two-way cache of 32 sets by nr % 32, so no hash lookup at
 * exit when it hits. Sized on the PyTorch job of bench 3 (x86-64): 16 sets
 * of one way missed on 24 % of its syscalls, 16 of two ways on 10 %, 32 of
 * two ways on none but each thread's first call to each syscall.
 * 328 bytes. */
#define PYI_STAT_SETS 32
#define PYI_STAT_ENTRIES 64  /* two ways a set */
_Static_assert(PYI_STAT_ENTRIES == 2 * PYI_STAT_SETS, "two cache ways a set");
struct pyi_flight {
    u64 id;                  /* the owning thread's tgid << 32 | tid; 0 = free */
    u32 nr;
    u32 _pad;
    u64 ts;                  /* CLOCK_MONOTONIC ns at entry; 0 = no call pending */
    u64 args[6];
    u32 stat[PYI_STAT_ENTRIES]; /* set s: [2s] the latest filled, [2s+1] the one before;
                                  * 1 + index of a syscall_stats record, 0 none */
};

struct pyi_exit_info {
    s32 code;                /* exit status passed to exit/exit_group; -1 unknown */
    s32 sig;                 /* fatal signal delivered with default action; 0 none */
};

/* Eight consecutive words of struct pt_regs from PYI_REGS_BASE on: one read
 * fetches all six syscall arguments (x86-64: r10 r9 r8 ax cx dx si di;
 * arm64: x0..x7). */
struct pyi_regs_window {
    u64 w[8];
};
#if !defined(PYI_NR_FUTEX) || !defined(PYI_REGS_BASE) || !defined(PYI_ARG5)
#error "the per-architecture -D flags are missing (pyimpact.syscall_table.bpf_defines)"
#endif

#if !defined(PYI_REGS_NR) || !defined(PYI_PID_WORDS) || !defined(PYI_TP_BTF) || !defined(PYI_FLIGHT_SLOTS)
#error "-D flags missing (pyimpact.collect.probes.ProbeConfig.cflags)"
#endif

BPF_RINGBUF_OUTPUT(events, PYI_RINGBUF_PAGES);
BPF_PERCPU_ARRAY(lost, u64, 3);
BPF_HASH(traced, u32, u8, 65536);                         /* tgids followed */
BPF_HASH(threads, u32, u32, PYI_MAX_THREADS);             /* tid -> tgid of followed threads */
BPF_HASH(exit_info, u32, struct pyi_exit_info, PYI_MAX_THREADS);

/* The traced tgids again, as one byte per tgid in an array: the first test on
 * every syscall of every task on the machine while the probes are attached.
 * An array lookup is inlined by the verifier (a bounds check and an add, no
 * helper call); a hash miss costs a hash and a bucket walk (about 20 ns on a
 * machine of this kind, on each of the two syscall tracepoints). One byte
 * per tgid, not one bit: bytes are stored without atomics from both sides,
 * and user space writes its byte through the map's mmap (BPF_F_MMAPABLE), so
 * a write never rewrites a neighbour's byte. `traced` stays the list user
 * space reads, and the answer for a tgid above the array (pid_max raised
 * after the start). */
#define PYI_F_MMAPABLE (1U << 10)
#if !PYI_TRACE_ALL
BPF_F_TABLE("array", u32, u64, traced_bytes, PYI_PID_WORDS, PYI_F_MMAPABLE);
#endif

static __always_inline void pyi_count_lost(int reason)
{
    int key = reason;
    u64 *n = lost.lookup(&key);
    if (n)
        (*n)++;
}

/* Is this process (tgid) one we follow? */
static __always_inline int pyi_is_traced(u32 tgid)
{
#if PYI_TRACE_ALL
    return 1;
#else
    if (tgid < PYI_PID_WORDS * 8ULL) {
        u32 word = tgid >> 3;
        u8 *b = (u8 *)traced_bytes.lookup(&word);
        return b && b[tgid & 7];
    }
    return traced.lookup(&tgid) != 0;
#endif
}

/* Follow (1) or stop following (0) a process. */
static __always_inline int pyi_set_traced(u32 tgid, u8 on)
{
#if PYI_TRACE_ALL
    return 0;
#else
    if (tgid < PYI_PID_WORDS * 8ULL) {
        u32 word = tgid >> 3;
        u8 *b = (u8 *)traced_bytes.lookup(&word);
        if (b)
            b[tgid & 7] = on;
    }
    if (!on) {
        traced.delete(&tgid);
        return 0;
    }
    return traced.update(&tgid, &on);
#endif
}

/* Is this thread (tid) part of a followed process? The tid of a main thread
 * is its tgid; other threads are in `threads` once they made a syscall. Used
 * where a tracepoint names a task by tid alone. */
static __always_inline int pyi_is_traced_tid(u32 tid)
{
#if PYI_TRACE_ALL
    return 1;
#else
    return pyi_is_traced(tid) || threads.lookup(&tid) != 0;
#endif
}

/* Fill the fields every event has, for the current task. */
static __always_inline void pyi_fill(struct pyi_event *e, u32 kind, u64 ts)
{
    u64 id = bpf_get_current_pid_tgid();
    e->ts = ts;
    e->dur = 0;
    e->kind = kind;
    e->tgid = id >> 32;
    e->tid = (u32)id;
    e->aux = 0;
    e->ret = 0;
    e->a[0] = 0;
    e->a[1] = 0;
    e->a[2] = 0;
    e->a[3] = 0;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
}

/* Reserve an event and fill its common fields; NULL (and counted) when the
 * ring buffer is full. */
static __always_inline struct pyi_event *pyi_reserve(u32 kind, u64 ts)
{
    struct pyi_event *e = events.ringbuf_reserve(sizeof(struct pyi_event));
    if (!e) {
        pyi_count_lost(PYI_LOST_RINGBUF);
        return 0;
    }
    pyi_fill(e, kind, ts);
    return e;
}

#if PYI_TP_BTF
/* With PYI_TP_BTF the rare tracepoints (lifecycle, signals, block) are raw
 * tracepoints too, not classic ones. Detaching a raw tracepoint is closing
 * its link: well under a millisecond. Detaching a classic one is closing its
 * perf event, which waits for RCU grace periods (the tracepoint's
 * unregistration) under a kernel-wide mutex: about 36 ms each on the VMs of
 * BENCHMARKS.md, one after another however many threads close them, 0.4 s
 * for twelve, paid at the end of every command. A raw tracepoint program
 * gets the tracepoint's own arguments (a struct task_struct *, a struct
 * bio *...), not the formatted record: the fields are read with
 * bpf_probe_read_kernel at offsets user space takes from the kernel's BTF
 * (pyimpact.collect.tp_btf.KERNEL_FIELDS, in the order below), written to
 * pyi_offsets before any process is followed, so before any program can
 * match. Bit numbers of the block request flags come the same way (the
 * kernel's enum req_flag_bits and enum req_op). */
#define PYI_OFF_RQ_Q           0   /* request.q */
#define PYI_OFF_RQ_SECTOR      1   /* request.__sector */
#define PYI_OFF_Q_DISK         2   /* request_queue.disk */
#define PYI_OFF_DISK_MAJOR     3   /* gendisk.major */
#define PYI_OFF_DISK_MINOR     4   /* gendisk.first_minor */
#define PYI_OFF_RQ_DATA_LEN    5   /* request.__data_len */
#define PYI_OFF_BIO_BDEV       6   /* bio.bi_bdev */
#define PYI_OFF_BDEV_DISK      7   /* block_device.bd_disk */
#define PYI_OFF_BIO_SECTOR     8   /* bio.bi_iter.bi_sector */
#define PYI_OFF_BIO_SIZE       9   /* bio.bi_iter.bi_size */
#define PYI_OFF_BIO_OPF        10  /* bio.bi_opf */
#define PYI_OFF_BIO_STATUS     11  /* bio.bi_status */
#define PYI_OFF_TASK_PID       12  /* task_struct.pid */
#define PYI_OFF_BPRM_FILENAME  13  /* linux_binprm.filename */
#define PYI_OFF_SI_ERRNO       14  /* kernel_siginfo.si_errno */
#define PYI_OFF_SI_CODE        15  /* kernel_siginfo.si_code */
#define PYI_OFF_KA_HANDLER     16  /* k_sigaction.sa.sa_handler */
#define PYI_OFF_KA_FLAGS       17  /* k_sigaction.sa.sa_flags */
#define PYI_BIT_OP_BITS        18  /* __REQ_FAILFAST_DEV: the bits below it are the op (REQ_OP_BITS) */
#define PYI_BIT_SYNC           19  /* __REQ_SYNC */
#define PYI_BIT_META           20  /* __REQ_META */
#define PYI_BIT_FUA            21  /* __REQ_FUA */
#define PYI_BIT_PREFLUSH       22  /* __REQ_PREFLUSH */
#define PYI_BIT_RAHEAD         23  /* __REQ_RAHEAD */
#define PYI_OP_READ            24  /* REQ_OP_READ */
#define PYI_OP_WRITE           25  /* REQ_OP_WRITE */
#define PYI_OP_FLUSH           26  /* REQ_OP_FLUSH */
#define PYI_OP_DISCARD         27  /* REQ_OP_DISCARD */
#define PYI_OP_SECURE_ERASE    28  /* REQ_OP_SECURE_ERASE */
#define PYI_OFFSETS            32
BPF_ARRAY(pyi_offsets, u32, PYI_OFFSETS);

static __always_inline u32 pyi_offset(int which)
{
    u32 *off = pyi_offsets.lookup(&which);
    return off ? *off : 0;
}

/* The 8- and 4-byte words at BASE + the offset WHICH (0 when unreadable). */
static __always_inline u64 pyi_read64(const void *base, int which)
{
    u64 v = 0;
    if (base)
        bpf_probe_read_kernel(&v, sizeof(v), (const char *)base + pyi_offset(which));
    return v;
}

static __always_inline u32 pyi_read32(const void *base, int which)
{
    u32 v = 0;
    if (base)
        bpf_probe_read_kernel(&v, sizeof(v), (const char *)base + pyi_offset(which));
    return v;
}

static __always_inline u32 pyi_task_pid(const void *task)
{
    return pyi_read32(task, PYI_OFF_TASK_PID);
}

/* The errno and si_code a classic signal tracepoint records
 * (TP_STORE_SIGINFO): SEND_SIG_NOINFO (0) is SI_USER, SEND_SIG_PRIV (1)
 * SI_KERNEL, anything else a struct kernel_siginfo *. */
static __always_inline void pyi_siginfo(const void *info, s32 *err, s32 *code)
{
    if ((unsigned long)info <= 1) {
        *err = 0;
        *code = info ? 0x80 : 0;
        return;
    }
    *err = (s32)pyi_read32(info, PYI_OFF_SI_ERRNO);
    *code = (s32)pyi_read32(info, PYI_OFF_SI_CODE);
}
#endif
