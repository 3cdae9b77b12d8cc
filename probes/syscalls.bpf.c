/* syscalls family: the hot path.
 *
 * Every syscall of every task on the machine runs these two programs while
 * the probes are attached, so each step is chosen for its cost (measured with
 * bpf_stats on a 2-vCPU VM, kernel 6.18; BENCHMARKS.md has the end-to-end
 * figures):
 *   - the first test is the traced-process byte array (pyimpact.h): an
 *     inlined array load, about 2 ns, where a hash miss costs about 20 ns;
 *     an untraced task pays only that and bpf_get_current_pid_tgid();
 *   - a traced thread's call in flight (entry time, number, arguments) lives
 *     in its slot of the `inflight` array, indexed by tid: an inlined array
 *     load at entry and at exit, no hash lookup; exit then accounts the call
 *     in its (tid, syscall) record of the syscall_stats array, found through
 *     a small two-way cache in the slot (a hash lookup only when it misses);
 *   - pt_regs is read with plain loads where the programs are BTF-typed raw
 *     tracepoints (PYI_TP_BTF=1: the verifier knows ctx->args[0] is a
 *     struct pt_regs * and turns each load into a fault-safe one, about 1 ns),
 *     and with bpf_probe_read_kernel otherwise (about 30 ns a read);
 *   - bpf_ktime_get_ns() twice (about 35 ns each here): the latency needs it,
 *     and the coarse clock is not offered to tracing programs.
 * Only a syscall that blocked at least PYI_SLOW_NS, and futex calls, reach
 * user space as events.
 */

/* PYI_NR_EXIT, PYI_NR_EXIT_GROUP, PYI_NR_CLONE3 and the pt_regs layout
 * (PYI_REGS_BASE, PYI_ARG0..5, PYI_REGS_NR): -D flags per architecture
 * (pyimpact.h). */

/* One 8-byte word of pt_regs at byte offset `off` (regs: ctx->args[0]). */
#if PYI_TP_BTF
#define PYI_REGS_WORD(regs, off) (*(volatile u64 *)((regs) + (off)))
#define PYI_REGS_U32(regs, off) (*(volatile u32 *)((regs) + (off)))
#else
static __always_inline u64 pyi_regs_word(u64 regs, u32 off)
{
    u64 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (void *)(regs + off));
    return v;
}
static __always_inline u32 pyi_regs_u32(u64 regs, u32 off)
{
    u32 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (void *)(regs + off));
    return v;
}
#define PYI_REGS_WORD(regs, off) pyi_regs_word((regs), (off))
#define PYI_REGS_U32(regs, off) pyi_regs_u32((regs), (off))
#endif

/* The six syscall arguments, from pt_regs at syscall entry. */
static __always_inline void pyi_read_args(u64 regs, u64 *args)
{
#if PYI_TP_BTF
    args[0] = PYI_REGS_WORD(regs, PYI_REGS_BASE + 8 * PYI_ARG0);
    args[1] = PYI_REGS_WORD(regs, PYI_REGS_BASE + 8 * PYI_ARG1);
    args[2] = PYI_REGS_WORD(regs, PYI_REGS_BASE + 8 * PYI_ARG2);
    args[3] = PYI_REGS_WORD(regs, PYI_REGS_BASE + 8 * PYI_ARG3);
    args[4] = PYI_REGS_WORD(regs, PYI_REGS_BASE + 8 * PYI_ARG4);
    args[5] = PYI_REGS_WORD(regs, PYI_REGS_BASE + 8 * PYI_ARG5);
#else
    /* One read of the 8-word window instead of six. */
    struct pyi_regs_window r;
    bpf_probe_read_kernel(&r, sizeof(r), (void *)(regs + PYI_REGS_BASE));
    args[0] = r.w[PYI_ARG0];
    args[1] = r.w[PYI_ARG1];
    args[2] = r.w[PYI_ARG2];
    args[3] = r.w[PYI_ARG3];
    args[4] = r.w[PYI_ARG4];
    args[5] = r.w[PYI_ARG5];
#endif
}

/* Each thread's call in flight, in the slot tid & (PYI_FLIGHT_SLOTS - 1) of
 * an array: an inlined array load where a hash lookup by tid costs about
 * 30 ns, on entry and on exit. A slot belongs to the first thread that
 * claims it (compare-and-swap from 0) until that thread exits
 * (lifecycle.bpf.c frees it); only its owner writes it. A thread whose slot
 * is owned by another (their tids equal modulo the slot count: only where
 * pid_max is above it) keeps its call in `inflight_spill`, a hash by tid,
 * at the old cost. The array is mmapable: user space reads it in one copy. */
BPF_F_TABLE("array", u32, struct pyi_flight, inflight, PYI_FLIGHT_SLOTS, PYI_F_MMAPABLE);
BPF_HASH(inflight_spill, u32, struct pyi_flight, PYI_MAX_THREADS);

/* A thread of a followed process made its first syscall: known by tid from
 * now on (signals sent to it by tid). */
static __always_inline void pyi_thread_seen(u32 tgid, u32 tid)
{
#if !PYI_TRACE_ALL
    if (tid != tgid && threads.update(&tid, &tgid) != 0)
        pyi_count_lost(PYI_LOST_MAP_FULL);
#endif
}

/* The in-flight slot of this thread (id: bpf_get_current_pid_tgid()), or
 * NULL. claim: at entry, take a free slot or make a spill entry when it has
 * none yet. */
static __always_inline struct pyi_flight *pyi_flight_of(u64 id, int claim)
{
    u32 tid = (u32)id;
    u32 idx = tid & (PYI_FLIGHT_SLOTS - 1);
    struct pyi_flight *f = inflight.lookup(&idx);
    if (!f)
        return 0;
    if (f->id == id)
        return f;
    if (!claim)
        return inflight_spill.lookup(&tid);
    if (f->id == 0 && __sync_val_compare_and_swap(&f->id, 0, id) == 0) {
        f->ts = 0;
        __builtin_memset(f->stat, 0, sizeof(f->stat));
        pyi_thread_seen(id >> 32, tid);
        return f;
    }
    struct pyi_flight *g = inflight_spill.lookup(&tid);
    if (g)
        return g;
    struct pyi_flight zero = {};
    zero.id = id;
    if (inflight_spill.update(&tid, &zero) != 0) {
        pyi_count_lost(PYI_LOST_MAP_FULL);
        return 0;
    }
    pyi_thread_seen(id >> 32, tid);
    return inflight_spill.lookup(&tid);
}

/* The thread exits: its slot is free again (called by lifecycle.bpf.c). */
static __always_inline void pyi_flight_release(u64 id)
{
    u32 tid = (u32)id;
    u32 idx = tid & (PYI_FLIGHT_SLOTS - 1);
    struct pyi_flight *f = inflight.lookup(&idx);
    if (f && f->id == id) {
        f->ts = 0;
        f->id = 0;
    } else {
        inflight_spill.delete(&tid);
    }
}

/* Per (thread, syscall) counters: records of an array, taken in order with
 * an atomic counter (stat_next) when a thread's first call to a syscall
 * returns, found again through the thread's slot cache (an inlined array
 * load) or, when that misses, through stat_index, a hash by (tid, nr).
 * Records are never freed while the probes are attached (as the hash
 * before them). Mmapable: user space reads the records in use in one copy
 * (KernelProbes.syscall_stats). */
#define PYI_STAT_RECORDS (PYI_MAX_THREADS * 8)
BPF_F_TABLE("array", u32, struct pyi_stat, syscall_stats, PYI_STAT_RECORDS, PYI_F_MMAPABLE);
BPF_HASH(stat_index, struct pyi_stat_key, u32, PYI_STAT_RECORDS);
BPF_ARRAY(stat_next, u64, 1);

/* The record a cache entry (1 + index, 0 none) names, if it is (tid, nr)'s. */
static __always_inline struct pyi_stat *pyi_stat_cached(u32 e, u32 tid, u32 nr)
{
    if (!e)
        return 0;
    u32 i = e - 1;
    struct pyi_stat *s = syscall_stats.lookup(&i);
    if (s && s->nr == nr && s->tid == tid)
        return s;
    return 0;
}

/* The stats record of (tid, nr): from the slot's cache, else found or
 * created through stat_index (then cached in the set's first way, the
 * previous first moving to the second). */
static __always_inline struct pyi_stat *pyi_stat_of(struct pyi_flight *f, u32 tgid, u32 tid, u32 nr)
{
    u32 c = (nr & (PYI_STAT_SETS - 1)) * 2;
    struct pyi_stat *s = pyi_stat_cached(f->stat[c], tid, nr);
    if (s)
        return s;
    s = pyi_stat_cached(f->stat[c + 1], tid, nr);
    if (s)
        return s;
    u32 i;
    struct pyi_stat_key key = { .tid = tid, .nr = nr };
    u32 *known = stat_index.lookup(&key);
    if (known) {
        i = *known;
    } else {
        u32 zero = 0;
        u64 *next = stat_next.lookup(&zero);
        if (!next)
            return 0;
        u64 n = __sync_fetch_and_add(next, 1);
        if (n >= PYI_STAT_RECORDS) {
            pyi_count_lost(PYI_LOST_MAP_FULL);
            return 0;
        }
        i = (u32)n;
        s = syscall_stats.lookup(&i);
        if (!s)
            return 0;
        s->tid = tid;
        s->nr = nr;
        s->tgid = tgid;
        /* Cannot be full before the array is (one entry per record). */
        if (stat_index.update(&key, &i) != 0)
            pyi_count_lost(PYI_LOST_MAP_FULL);
    }
    s = syscall_stats.lookup(&i);
    if (!s || s->nr != nr || s->tid != tid)
        return 0;
    f->stat[c + 1] = f->stat[c];
    f->stat[c] = i + 1;
    return s;
}

static __always_inline int pyi_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    u32 tid = (u32)id;
    if (!pyi_is_traced(tgid))
        return 0;

    u32 nr = (u32)ctx->args[1];
    u64 regs = ctx->args[0];
    struct pyi_flight *f = pyi_flight_of(id, 1);
    if (!f)
        return 0;
    pyi_read_args(regs, f->args);
    f->nr = nr;
    u64 arg0 = f->args[0];
    if (nr == PYI_NR_CLONE3 && arg0) {
        /* clone3 passes its flags in a struct: keep them where clone has them. */
        u64 flags = 0;
        bpf_probe_read_user(&flags, sizeof(flags), (void *)arg0);
        f->args[0] = flags;
    } else if (nr == PYI_NR_EXIT_GROUP || nr == PYI_NR_EXIT) {
        struct pyi_exit_info info = { .code = (s32)(arg0 & 0xff), .sig = 0 };
        u32 key = nr == PYI_NR_EXIT_GROUP ? tgid : tid;
        exit_info.update(&key, &info);
    }
    /* Last: user space takes a slot with ts != 0 as a call in flight. */
    f->ts = bpf_ktime_get_ns();
    return 0;
}

/* One finished call into the record's counters. One writer per key (a
 * thread runs on one CPU at a time): no atomics needed. */
static __always_inline void pyi_account(struct pyi_stat *s, u64 dur, s64 ret, u64 arg0)
{
    s->count++;
    s->total_ns += dur;
    if (dur > s->max_ns)
        s->max_ns = dur;
    u32 slot = bpf_log2l(dur);
    if (slot >= PYI_HIST_SLOTS)
        slot = PYI_HIST_SLOTS - 1;
    s->hist[slot]++;
    /* Failed calls are what a polling waiter leaves behind (a lock taken with
     * F_SETLK and refused, a connect refused): count them, keep the last. */
    if (ret > 0)
        s->ret_sum += ret;
    if (ret < 0 && ret > -4096) {
        s->errors++;
        s->last_err = ret;
        s->last_err_arg0 = arg0;
    }
}

/* Connections refused or failed, per thread: what a connect-retry loop leaves
 * behind.  A blocking connect() returns the error itself; a non-blocking one
 * returns EINPROGRESS and the error comes later from getsockopt(SO_ERROR), so
 * both are counted, with the address the thread was connecting to.  Only the
 * two calls reach this, and only in threads we follow. */
#define PYI_EINPROGRESS 115
#define PYI_SOL_SOCKET 1
#define PYI_SO_ERROR 4
struct pyi_connfail {
    u32 tgid;
    u32 count;               /* connects that failed (any error but EINPROGRESS) */
    s64 last_err;            /* the last error (-errno) */
    u64 pending_fd;          /* the socket of the last connect() that went on in the background */
    u8 addr[28];             /* sockaddr of the last failed connect (sockaddr_in or sockaddr_in6) */
    u8 pending[28];          /* sockaddr of the last connect() */
};
BPF_HASH(connect_fail, u32, struct pyi_connfail, 1024);

static __always_inline void pyi_connect_exit(u32 tgid, u32 tid, u32 nr, u64 *args, s64 ret)
{
    struct pyi_connfail *c = connect_fail.lookup(&tid);
    if (nr == PYI_NR_CONNECT) {
        if (ret == 0)
            return;
        if (!c) {
            struct pyi_connfail zero = {};
            zero.tgid = tgid;
            if (connect_fail.update(&tid, &zero) != 0) {
                pyi_count_lost(PYI_LOST_MAP_FULL);
                return;
            }
            c = connect_fail.lookup(&tid);
            if (!c)
                return;
        }
        if (bpf_probe_read_user(c->pending, sizeof(c->pending), (void *)args[1]) != 0)
            bpf_probe_read_user(c->pending, 16, (void *)args[1]);
        c->pending_fd = args[0];
        if (ret == -PYI_EINPROGRESS)
            return;
        c->count++;
        c->last_err = ret;
        __builtin_memcpy(c->addr, c->pending, sizeof(c->addr));
        return;
    }
    /* getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) on the socket of that connect */
    if (!c || ret != 0 || args[1] != PYI_SOL_SOCKET || args[2] != PYI_SO_ERROR || args[0] != c->pending_fd)
        return;
    int err = 0;
    bpf_probe_read_user(&err, sizeof(err), (void *)args[3]);
    if (err <= 0)
        return;
    c->count++;
    c->last_err = -err;
    __builtin_memcpy(c->addr, c->pending, sizeof(c->addr));
}

static __always_inline int pyi_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    u32 tid = (u32)id;
    if (!pyi_is_traced(tgid))
        return 0;

    struct pyi_flight *f = pyi_flight_of(id, 0);
    if (!f)
        return 0;
    u64 ts = f->ts;
    if (ts == 0)
        return 0;     /* entered before the probes were attached */
    u64 now = bpf_ktime_get_ns();
    f->ts = 0;
    /* The number the call was entered with: a tracer may have changed it
     * since (the exit then reports another), and nothing is counted. */
    u32 nr = f->nr;
    if (PYI_REGS_U32(ctx->args[0], PYI_REGS_NR) != nr)
        return 0;
    struct pyi_stat *s = pyi_stat_of(f, tgid, tid, nr);
    if (!s)
        return 0;

    u64 dur = now - ts;
    s64 ret = (s64)ctx->args[1];
    pyi_account(s, dur, ret, f->args[0]);
    if (nr == PYI_NR_CONNECT || nr == PYI_NR_GETSOCKOPT)
        pyi_connect_exit(tgid, tid, nr, f->args, ret);

    if (!pyi_futex_exit(nr, ts, f->args, dur, ret) && dur >= PYI_SLOW_NS) {
        struct pyi_event *e = pyi_reserve(PYI_KIND_SYSCALL, ts);
        if (e) {
            e->dur = dur;
            e->ret = ret;
            e->aux = nr;
            e->a[0] = f->args[0];
            e->a[1] = f->args[1];
            e->a[2] = f->args[2];
            e->a[3] = f->args[3];
            events.ringbuf_submit(e, PYI_RB_QUIET);
        }
    }
    return 0;
}

/* Entry points. With PYI_TP_BTF, pyimpact.collect.probes loads these two as
 * BPF_PROG_TYPE_TRACING / BPF_TRACE_RAW_TP programs itself (bcc 0.26 has no
 * loader for that type); otherwise bcc attaches them as raw tracepoints. */
#if PYI_TP_BTF
int pyi_tp_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
    return pyi_sys_enter(ctx);
}

int pyi_tp_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
    return pyi_sys_exit(ctx);
}
#else
RAW_TRACEPOINT_PROBE(sys_enter)
{
    return pyi_sys_enter(ctx);
}

RAW_TRACEPOINT_PROBE(sys_exit)
{
    return pyi_sys_exit(ctx);
}
#endif
