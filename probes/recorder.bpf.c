/* pyimpact recorder: the always-on, machine-wide program behind `pyimpact record`.
 *
 * Compiled alone (not with pyimpact.h and the trace families: those carry the
 * per-syscall raw hook and per-thread maps a days-long recorder must not
 * pay for), with the same conventions: no #include <linux/...>, settings and
 * kernel structure offsets as -D flags built by pyimpact/collect/recorder_probes.py
 * from validated numbers and the running kernel's BTF (pyimpact/collect/btf.py):
 *   PYI_RINGBUF_PAGES     ring buffer size in pages (a power of two)
 *   PYI_REC_MIN_BYTES     a file closed or fsynced after writing is sent when at
 *                         least this large, or when its name looks like a checkpoint
 *   PYI_OFF_*             byte offsets of the kernel structure members read here
 *
 * Attached only to rare tracepoints: process fork (a raw tracepoint: it hands
 * both tasks, so threads are told from processes in the kernel and never
 * sent), exec, exit (whole processes only), signal generation (SIGCHLD left
 * out: the exit says it), and for file completions, one of two sources
 * chosen by recorder_probes.py with -D flags (each 0 or 1):
 *   PYI_REC_FSYNC_EXT4/_BTRFS/_XFS  the filesystems' own fsync tracepoints
 *                         (raw: they hand the file or inode), beside fanotify
 *                         in user space for closes and renames. No syscall
 *                         tracepoint: nothing runs on a syscall this does not
 *                         record. At most one fsync event per inode a second
 *                         (O_SYNC writes reach the same tracepoint per write).
 *   PYI_REC_FILES_SYSCALLS  the fallback: the syscall tracepoints of close,
 *                         fsync, fdatasync and the renames this kernel has
 *                         (PYI_REC_HAVE_RENAME/_RENAMEAT/_RENAMEAT2; arm64 has
 *                         no rename(2)). Enabling any syscall tracepoint sends
 *                         every syscall of every task through the slow tracing
 *                         path: used only where fanotify is unavailable.
 * Close and fsync are filtered here: only regular files open for writing,
 * large or named like a checkpoint.
 * The event layout is mirrored in recorder_probes.py (REC_EVENT); change both.
 */

#define REC_FORK    1
#define REC_EXEC    2
#define REC_EXIT    3
#define REC_SIGNAL  4
#define REC_CLOSE   5
#define REC_FSYNC   6
#define REC_RENAME  7

#define REC_COMM_LEN 16
#define REC_PATH_LEN 256
#define REC_ARGV_LEN 512         /* a power of two */
#define REC_PIDTYPE_PGID 2
#define REC_PIDTYPE_SID  3
#define REC_DEPTH    8          /* path components kept, innermost first */
#define REC_NAME_LEN 64         /* bytes per component (a power of two) */

#define REC_FMODE_WRITE 0x2
#define REC_S_IFMT  0170000
#define REC_S_IFREG 0100000
#define REC_SIGCHLD 17

struct rec_event {              /* 72 bytes */
    u64 ts;                     /* boot-time ns (bpf_ktime_get_boot_ns): /proc start times use this clock */
    u32 kind;
    u32 tgid;                   /* the current process */
    u32 tid;
    u32 other;                  /* fork: child pid; exec: old pid; signal: target pid */
    s32 aux;                    /* exit: exit_code (status << 8 | signal); signal: number; rename: olddfd */
    s32 ret;                    /* signal: result; rename: return value; file: fd */
    u64 a[3];                   /* file: size, inode, dev; signal: code, group | repeats << 32, errno; rename: newdfd */
    char comm[REC_COMM_LEN];
};

struct rec_exec_event {
    struct rec_event e;         /* other: old pid; aux: process group; ret: session; a[0]: uid */
    char filename[REC_PATH_LEN];
    char argv[REC_ARGV_LEN];    /* the new program's arguments, NUL-separated, cut at REC_ARGV_LEN */
};

struct rec_file_event {
    struct rec_event e;
    u32 depth;                  /* components filled; REC_DEPTH + 1 = the chain went deeper */
    u32 pad;
    char names[REC_DEPTH][REC_NAME_LEN];
};

struct rec_rename_event {
    struct rec_event e;
    char oldname[REC_PATH_LEN];
    char newname[REC_PATH_LEN];
};

struct rec_rename_args {
    const char *oldname;
    const char *newname;
    s32 olddfd;
    s32 newdfd;
};

BPF_RINGBUF_OUTPUT(rec_events, PYI_RINGBUF_PAGES);
BPF_PERCPU_ARRAY(rec_lost, u64, 1);

static __always_inline void rec_count_lost(void)
{
    int key = 0;
    u64 *n = rec_lost.lookup(&key);
    if (n)
        (*n)++;
}

static __always_inline void rec_fill(struct rec_event *e, u32 kind)
{
    u64 id = bpf_get_current_pid_tgid();
    e->ts = bpf_ktime_get_boot_ns();
    e->kind = kind;
    e->tgid = id >> 32;
    e->tid = (u32)id;
    e->other = 0;
    e->aux = 0;
    e->ret = 0;
    e->a[0] = 0;
    e->a[1] = 0;
    e->a[2] = 0;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
}

static __always_inline void *rec_reserve(u32 size)
{
    void *e = rec_events.ringbuf_reserve(size);
    if (!e)
        rec_count_lost();
    return e;
}

#define REC_READ(dst, base, off) bpf_probe_read_kernel(&(dst), sizeof(dst), (void *)(base) + (off))

/* ---- lifecycle ---------------------------------------------------------- */

RAW_TRACEPOINT_PROBE(sched_process_fork)
{
    void *parent = (void *)ctx->args[0];
    void *child = (void *)ctx->args[1];
    s32 cpid = 0, ctgid = 0, ptgid = 0;
    REC_READ(cpid, child, PYI_OFF_TASK_PID);
    REC_READ(ctgid, child, PYI_OFF_TASK_TGID);
    if (cpid != ctgid)
        return 0;               /* a new thread: not a process event */
    REC_READ(ptgid, parent, PYI_OFF_TASK_TGID);
    struct rec_event *e = rec_reserve(sizeof(*e));
    if (!e)
        return 0;
    rec_fill(e, REC_FORK);
    e->tgid = ptgid;
    e->other = cpid;
    rec_events.ringbuf_submit(e, 0);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    struct rec_exec_event *x = rec_reserve(sizeof(*x));
    if (!x)
        return 0;
    rec_fill(&x->e, REC_EXEC);
    x->e.other = args->old_pid;
    unsigned short offset = args->data_loc_filename & 0xFFFF;
    bpf_probe_read_kernel_str(&x->filename, sizeof(x->filename), (void *)args + offset);
    /* Read here, not later from /proc: a short-lived job may be gone by then,
     * and its group and session decide which job its workers belong to. */
    void *task = (void *)bpf_get_current_task();
    void *mm = 0, *sig = 0, *pgrp = 0, *sess = 0;
    unsigned long start = 0, end = 0;
    s32 pgid = 0, sid = 0;
    REC_READ(mm, task, PYI_OFF_TASK_MM);
    if (mm) {
        REC_READ(start, mm, PYI_OFF_MM_ARG_START);
        REC_READ(end, mm, PYI_OFF_MM_ARG_END);
    }
    u32 len = end > start ? (end - start > REC_ARGV_LEN ? REC_ARGV_LEN : end - start) : 0;
    x->argv[0] = 0;
    if (len > 0 && len <= REC_ARGV_LEN) {
        if (bpf_probe_read_user(&x->argv, len, (void *)start) != 0)
            len = 0;
    }
    x->e.a[1] = len;
    REC_READ(sig, task, PYI_OFF_TASK_SIGNAL);
    if (sig) {
        REC_READ(pgrp, sig, PYI_OFF_SIGNAL_PIDS + REC_PIDTYPE_PGID * sizeof(void *));
        REC_READ(sess, sig, PYI_OFF_SIGNAL_PIDS + REC_PIDTYPE_SID * sizeof(void *));
    }
    if (pgrp)
        REC_READ(pgid, pgrp, PYI_OFF_PID_NUMBERS);     /* numbers[0].nr: the pid in the initial namespace */
    if (sess)
        REC_READ(sid, sess, PYI_OFF_PID_NUMBERS);
    x->e.aux = pgid;
    x->e.ret = sid;
    x->e.a[0] = (u32)bpf_get_current_uid_gid();
    rec_events.ringbuf_submit(x, 0);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    if (!args->group_dead)
        return 0;               /* a thread of a process that goes on */
    void *task = (void *)bpf_get_current_task();
    s32 code = 0;
    REC_READ(code, task, PYI_OFF_TASK_EXIT_CODE);
    struct rec_event *e = rec_reserve(sizeof(*e));
    if (!e)
        return 0;
    rec_fill(e, REC_EXIT);
    e->aux = code;
    rec_events.ringbuf_submit(e, 0);
    return 0;
}

/* Signals: the first REC_SIG_PER_WINDOW a second of each (sender, target,
 * signal) are sent one by one; the rest of that second are counted, carried
 * by the next one sent for the same key (a[1] >> 32: "repeats") and in
 * rec_sig_coalesced (their total, never lost). A program that sends thousands
 * a second (a test's signal storm, Go's preemption SIGURG, profilers' timers)
 * then costs a few events a second, not thousands of rows. */
#define REC_SIG_PER_WINDOW 4
#define REC_SIG_WINDOW_NS 1000000000ULL

struct rec_sig_key {
    u32 sender;
    u32 target;
    u32 sig;
    u32 pad;
};

struct rec_sig_rate {
    u64 window;                 /* when this key's second began */
    u32 sent;                   /* sent in it */
    u32 repeats;                /* not sent in it (or in earlier seconds, not yet carried) */
};

BPF_TABLE("lru_hash", struct rec_sig_key, struct rec_sig_rate, rec_sig_rates, 8192);
BPF_PERCPU_ARRAY(rec_sig_coalesced, u64, 1);

TRACEPOINT_PROBE(signal, signal_generate)
{
    if (args->sig == REC_SIGCHLD)
        return 0;
    struct rec_sig_key k = {};
    k.sender = bpf_get_current_pid_tgid() >> 32;
    k.target = args->pid;
    k.sig = args->sig;
    u64 now = bpf_ktime_get_boot_ns();
    u64 repeats = 0;
    struct rec_sig_rate *r = rec_sig_rates.lookup(&k);
    if (r) {
        if (now - r->window >= REC_SIG_WINDOW_NS) {
            repeats = r->repeats;
            r->window = now;
            r->sent = 1;
            r->repeats = 0;
        } else if (r->sent < REC_SIG_PER_WINDOW) {
            r->sent++;
            repeats = r->repeats;
            r->repeats = 0;
        } else {
            r->repeats++;
            int zero = 0;
            u64 *n = rec_sig_coalesced.lookup(&zero);
            if (n)
                (*n)++;
            return 0;
        }
    } else {
        struct rec_sig_rate fresh = {};
        fresh.window = now;
        fresh.sent = 1;
        rec_sig_rates.update(&k, &fresh);
    }
    struct rec_event *e = rec_reserve(sizeof(*e));
    if (!e)
        return 0;
    rec_fill(e, REC_SIGNAL);
    e->other = args->pid;
    e->aux = args->sig;
    e->ret = args->result;
    e->a[0] = (u64)(s64)args->code;
    e->a[1] = (u64)(args->group & 1) | (repeats << 32);
    e->a[2] = (u64)(s64)args->errno;
    rec_events.ringbuf_submit(e, 0);
    return 0;
}

/* ---- file completions: close / fsync of a written file --------------------- */

/* Does the name in buf (len bytes) end like a checkpoint file? */
static __always_inline int rec_ends_with(const char *buf, u32 len, const char *suf, u32 n)
{
    if (len < n || len > REC_NAME_LEN - 1)
        return 0;
    u32 start = len - n;
#pragma unroll
    for (int i = 0; i < 12; i++) {
        if (i >= n)
            break;
        if (buf[(start + i) & (REC_NAME_LEN - 1)] != suf[i])
            return 0;
    }
    return 1;
}

static __always_inline int rec_ckpt_name(const char *buf, u32 len)
{
    return rec_ends_with(buf, len, ".pt", 3) || rec_ends_with(buf, len, ".pth", 4) ||
           rec_ends_with(buf, len, ".ckpt", 5) || rec_ends_with(buf, len, ".safetensors", 12) ||
           rec_ends_with(buf, len, ".bin", 4) || rec_ends_with(buf, len, ".npz", 4) ||
           rec_ends_with(buf, len, ".h5", 3);
}

#if PYI_REC_FSYNC_EXT4 || PYI_REC_FSYNC_BTRFS || PYI_REC_FSYNC_XFS
BPF_TABLE("lru_hash", u64, u64, rec_fsync_last, 4096);      /* inode -> last fsync event sent */

/* One fsync event per inode a second: the filesystems' fsync tracepoints also
 * fire for every O_SYNC / O_DSYNC write. */
static __always_inline int rec_fsync_repeat(void *inode)
{
    u64 key = (u64)inode, now = bpf_ktime_get_boot_ns();
    u64 *last = rec_fsync_last.lookup(&key);
    if (last && now - *last < 1000000000ULL)
        return 1;
    rec_fsync_last.update(&key, &now);
    return 0;
}
#endif

/* Send a completion of the regular file behind inode/dentry when it is large
 * or named like a checkpoint (written: pos > 0 or size > 0, checked by the
 * caller). fd: the descriptor (-1: not known). */
static __always_inline int rec_send_file(u32 kind, s32 fd, void *inode, void *dentry, s64 size, int limit)
{
    struct rec_file_event *x = rec_reserve(sizeof(*x));
    if (!x)
        return 0;
    const unsigned char *name = 0;
    u32 nlen = 0;
    void *sb = 0;
    REC_READ(name, dentry, PYI_OFF_DENTRY_NAME);
    REC_READ(nlen, dentry, PYI_OFF_DENTRY_NAME_LEN);
    bpf_probe_read_kernel_str(&x->names[0], REC_NAME_LEN, name);
    if (size < PYI_REC_MIN_BYTES && !rec_ckpt_name(x->names[0], nlen)) {
        rec_events.ringbuf_discard(x, 0);
        return 0;
    }
#if PYI_REC_FSYNC_EXT4 || PYI_REC_FSYNC_BTRFS || PYI_REC_FSYNC_XFS
    if (limit && rec_fsync_repeat(inode)) {
        rec_events.ringbuf_discard(x, 0);
        return 0;
    }
#endif
    rec_fill(&x->e, kind);
    x->e.ret = fd;
    x->e.a[0] = size;
    REC_READ(x->e.a[1], inode, PYI_OFF_INODE_INO);
    REC_READ(sb, inode, PYI_OFF_INODE_SB);
    u32 dev = 0;
    if (sb)
        REC_READ(dev, sb, PYI_OFF_SB_DEV);
    x->e.a[2] = dev;
    u32 depth = 1;
    void *d = dentry;
#pragma unroll
    for (int i = 1; i <= REC_DEPTH; i++) {
        void *parent = 0;
        REC_READ(parent, d, PYI_OFF_DENTRY_PARENT);
        if (!parent || parent == d)
            break;              /* the filesystem's root */
        if (i == REC_DEPTH) {
            depth = REC_DEPTH + 1;
            break;
        }
        REC_READ(name, parent, PYI_OFF_DENTRY_NAME);
        bpf_probe_read_kernel_str(&x->names[i], REC_NAME_LEN, name);
        depth = i + 1;
        d = parent;
    }
    x->depth = depth;
    rec_events.ringbuf_submit(x, 0);
    return 0;
}

/* A struct file: regular, open for writing, written through it. */
static __always_inline int rec_file_done(u32 kind, void *file, s32 fd, int limit)
{
    void *inode = 0, *dentry = 0;
    u32 fmode = 0;
    u16 imode = 0;
    if (!file)
        return 0;
    REC_READ(fmode, file, PYI_OFF_FILE_MODE);
    if (!(fmode & REC_FMODE_WRITE))
        return 0;
    REC_READ(inode, file, PYI_OFF_FILE_INODE);
    if (!inode)
        return 0;
    REC_READ(imode, inode, PYI_OFF_INODE_MODE);
    if ((imode & REC_S_IFMT) != REC_S_IFREG)
        return 0;
    s64 size = 0, pos = 0;
    REC_READ(size, inode, PYI_OFF_INODE_SIZE);
    REC_READ(pos, file, PYI_OFF_FILE_POS);
    if (pos <= 0 && size <= 0)
        return 0;               /* opened for writing, nothing written through it */
    REC_READ(dentry, file, PYI_OFF_FILE_DENTRY);
    if (!dentry)
        return 0;
    return rec_send_file(kind, fd, inode, dentry, size, limit);
}

#if PYI_REC_FSYNC_EXT4
RAW_TRACEPOINT_PROBE(ext4_sync_file_enter)
{
    return rec_file_done(REC_FSYNC, (void *)ctx->args[0], -1, 1);
}
#endif

#if PYI_REC_FSYNC_BTRFS
RAW_TRACEPOINT_PROBE(btrfs_sync_file)
{
    return rec_file_done(REC_FSYNC, (void *)ctx->args[0], -1, 1);
}
#endif

#if PYI_REC_FSYNC_XFS
/* xfs hands its own inode: the VFS inode is embedded in it, and the file's
 * name is that of the inode's first dentry (an inode fsynced has one). */
RAW_TRACEPOINT_PROBE(xfs_file_fsync)
{
    void *inode = (void *)ctx->args[0] + PYI_OFF_XFS_I_VNODE;
    void *first = 0;
    u16 imode = 0;
    s64 size = 0;
    REC_READ(imode, inode, PYI_OFF_INODE_MODE);
    if ((imode & REC_S_IFMT) != REC_S_IFREG)
        return 0;
    REC_READ(size, inode, PYI_OFF_INODE_SIZE);
    if (size <= 0)
        return 0;
    REC_READ(first, inode, PYI_OFF_INODE_DENTRY);
    if (!first)
        return 0;
    return rec_send_file(REC_FSYNC, -1, inode, first - PYI_OFF_DENTRY_ALIAS, size, 1);
}
#endif

#if PYI_REC_FILES_SYSCALLS
static __always_inline int rec_fd_done(u32 kind, u32 fd)
{
    void *task = (void *)bpf_get_current_task();
    void *files = 0, *fdt = 0, *fdarr = 0, *file = 0;
    u32 max_fds = 0;
    REC_READ(files, task, PYI_OFF_TASK_FILES);
    if (!files)
        return 0;
    REC_READ(fdt, files, PYI_OFF_FILES_FDT);
    if (!fdt)
        return 0;
    REC_READ(max_fds, fdt, PYI_OFF_FDT_MAX_FDS);
    if (fd >= max_fds)
        return 0;
    REC_READ(fdarr, fdt, PYI_OFF_FDT_FD);
    if (!fdarr)
        return 0;
    bpf_probe_read_kernel(&file, sizeof(file), (void **)fdarr + fd);
    return rec_file_done(kind, file, fd, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_close)
{
    return rec_fd_done(REC_CLOSE, args->fd);
}

TRACEPOINT_PROBE(syscalls, sys_enter_fsync)
{
    return rec_fd_done(REC_FSYNC, args->fd);
}

TRACEPOINT_PROBE(syscalls, sys_enter_fdatasync)
{
    return rec_fd_done(REC_FSYNC, args->fd);
}

/* ---- renames: kept at entry, sent at a successful exit ------------------- */

BPF_HASH(rec_renames, u32, struct rec_rename_args, 4096);

static __always_inline int rec_rename_enter(s32 olddfd, const char *oldname, s32 newdfd, const char *newname)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct rec_rename_args r = { .oldname = oldname, .newname = newname, .olddfd = olddfd, .newdfd = newdfd };
    rec_renames.update(&tid, &r);
    return 0;
}

static __always_inline int rec_rename_exit(long ret)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct rec_rename_args *r = rec_renames.lookup(&tid);
    if (!r)
        return 0;
    struct rec_rename_args a = *r;
    rec_renames.delete(&tid);
    if (ret != 0)
        return 0;
    struct rec_rename_event *x = rec_reserve(sizeof(*x));
    if (!x)
        return 0;
    rec_fill(&x->e, REC_RENAME);
    x->e.aux = a.olddfd;
    x->e.a[0] = (u64)(s64)a.newdfd;
    bpf_probe_read_user_str(&x->oldname, sizeof(x->oldname), a.oldname);
    bpf_probe_read_user_str(&x->newname, sizeof(x->newname), a.newname);
    rec_events.ringbuf_submit(x, 0);
    return 0;
}

#define REC_AT_FDCWD -100

#if PYI_REC_HAVE_RENAME
TRACEPOINT_PROBE(syscalls, sys_enter_rename)
{
    return rec_rename_enter(REC_AT_FDCWD, args->oldname, REC_AT_FDCWD, args->newname);
}

TRACEPOINT_PROBE(syscalls, sys_exit_rename)
{
    return rec_rename_exit(args->ret);
}
#endif

#if PYI_REC_HAVE_RENAMEAT
TRACEPOINT_PROBE(syscalls, sys_enter_renameat)
{
    return rec_rename_enter(args->olddfd, args->oldname, args->newdfd, args->newname);
}

TRACEPOINT_PROBE(syscalls, sys_exit_renameat)
{
    return rec_rename_exit(args->ret);
}
#endif

#if PYI_REC_HAVE_RENAMEAT2
TRACEPOINT_PROBE(syscalls, sys_enter_renameat2)
{
    return rec_rename_enter(args->olddfd, args->oldname, args->newdfd, args->newname);
}

TRACEPOINT_PROBE(syscalls, sys_exit_renameat2)
{
    return rec_rename_exit(args->ret);
}
#endif

#endif /* PYI_REC_FILES_SYSCALLS */
