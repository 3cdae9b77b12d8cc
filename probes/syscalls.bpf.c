/* syscalls family: the hot path.
 *
 * Every syscall of every task on the machine runs these two programs while
 * the probes are attached, so each step is chosen for its cost (measured with
 * bpf_stats on a 2-vCPU VM, kernel 6.18; BENCHMARKS.md has the end-to-end
 * figures):
 *   - the first test is the traced-process byte array (pyimpact.h): an
 *     inlined array load, about 2 ns, where a hash miss costs about 20 ns;
 *     an untraced task pays only that and bpf_get_current_pid_tgid();
 *   - a traced thread's state lives in its syscall_stats record, keyed by
 *     (tid, syscall): entry marks the record pending (entry time and
 *     arguments), exit finds it again by the syscall number read from
 *     pt_regs and accounts the call. One hash lookup at entry and one at
 *     exit; a separate per-thread in-flight map cost one more at each;
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

/* The record of (tid, nr), created (zeroed, pending nothing) when missing. */
static __always_inline struct pyi_stat *pyi_stat_of(u32 tgid, u32 tid, u32 nr)
{
    struct pyi_stat_key key = { .tid = tid, .nr = nr };
    struct pyi_stat *s = syscall_stats.lookup(&key);
    if (s)
        return s;
    struct pyi_stat zero = {};
    zero.tgid = tgid;
    if (syscall_stats.update(&key, &zero) != 0) {
        pyi_count_lost(PYI_LOST_MAP_FULL);
        return 0;
    }
#if !PYI_TRACE_ALL
    if (tid != tgid && threads.update(&tid, &tgid) != 0)
        pyi_count_lost(PYI_LOST_MAP_FULL);
#endif
    return syscall_stats.lookup(&key);
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
    struct pyi_stat *s = pyi_stat_of(tgid, tid, nr);
    if (!s)
        return 0;
    pyi_read_args(regs, s->pending_args);
    u64 arg0 = s->pending_args[0];
    if (nr == PYI_NR_CLONE3 && arg0) {
        /* clone3 passes its flags in a struct: keep them where clone has them. */
        u64 flags = 0;
        bpf_probe_read_user(&flags, sizeof(flags), (void *)arg0);
        s->pending_args[0] = flags;
    } else if (nr == PYI_NR_EXIT_GROUP || nr == PYI_NR_EXIT) {
        struct pyi_exit_info info = { .code = (s32)(arg0 & 0xff), .sig = 0 };
        u32 key = nr == PYI_NR_EXIT_GROUP ? tgid : tid;
        exit_info.update(&key, &info);
    }
    s->pending_ts = bpf_ktime_get_ns();
    return 0;
}

/* One finished call into the record's counters. One writer per key (a
 * thread runs on one CPU at a time): no atomics needed. */
static __always_inline void pyi_account(struct pyi_stat *s, u64 dur, s64 ret)
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
        s->last_err_arg0 = s->pending_args[0];
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

    /* The number the call was entered with (a tracer may have changed it:
     * then no record is pending under the new one, and nothing is counted). */
    u32 nr = PYI_REGS_U32(ctx->args[0], PYI_REGS_NR);
    struct pyi_stat_key key = { .tid = tid, .nr = nr };
    struct pyi_stat *s = syscall_stats.lookup(&key);
    if (!s || s->pending_ts == 0)
        return 0;     /* entered before the probes were attached */

    u64 now = bpf_ktime_get_ns();
    u64 ts = s->pending_ts;
    u64 dur = now - ts;
    s64 ret = (s64)ctx->args[1];
    pyi_account(s, dur, ret);
    if (nr == PYI_NR_CONNECT || nr == PYI_NR_GETSOCKOPT)
        pyi_connect_exit(tgid, tid, nr, s->pending_args, ret);

    if (!pyi_futex_exit(nr, ts, s->pending_args, dur, ret) && dur >= PYI_SLOW_NS) {
        struct pyi_event *e = pyi_reserve(PYI_KIND_SYSCALL, ts);
        if (e) {
            e->dur = dur;
            e->ret = ret;
            e->aux = nr;
            e->a[0] = s->pending_args[0];
            e->a[1] = s->pending_args[1];
            e->a[2] = s->pending_args[2];
            e->a[3] = s->pending_args[3];
            events.ringbuf_submit(e, PYI_RB_QUIET);
        }
    }
    s->pending_ts = 0;
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
