/* futex family: waits (address, op, value, timeout, duration, result) and wakes
 * that woke someone (address, count woken, waker); wakes that woke nobody are
 * only counted. These are the raw material of the wait-for
 * graph. Called from the syscall exit hook in syscalls.bpf.c so that futex
 * tracing costs no extra tracepoint dispatch on every syscall.
 */

/* Syscall numbers, -D flags per architecture (pyimpact.h):
 *   PYI_NR_FUTEX        futex(uaddr, op, val, timeout|val2, uaddr2, val3)
 *   PYI_NR_FUTEX_WAKE2  futex_wake(uaddr, mask, nr, flags)                  (6.7)
 *   PYI_NR_FUTEX_WAIT2  futex_wait(uaddr, val, mask, flags, timeout, clockid) (6.7) */

#define PYI_FUTEX_CMD_MASK  (~(128 | 256))   /* strip PRIVATE and CLOCK_REALTIME */

#define PYI_TIMEOUT_NONE     0
#define PYI_TIMEOUT_RELATIVE 1
#define PYI_TIMEOUT_ABSOLUTE 2

struct pyi_timespec {
    s64 tv_sec;
    s64 tv_nsec;
};

static __always_inline int pyi_futex_is_wait(int cmd)
{
    /* WAIT, LOCK_PI, WAIT_BITSET, WAIT_REQUEUE_PI, LOCK_PI2 */
    return cmd == 0 || cmd == 6 || cmd == 9 || cmd == 11 || cmd == 13;
}

static __always_inline int pyi_futex_is_wake(int cmd)
{
    /* WAKE, REQUEUE, CMP_REQUEUE, WAKE_OP, UNLOCK_PI, WAKE_BITSET, CMP_REQUEUE_PI */
    return cmd == 1 || cmd == 3 || cmd == 4 || cmd == 5 || cmd == 7 || cmd == 10 || cmd == 12;
}

static __always_inline void pyi_emit_futex_wait(u64 ts, u64 dur, s64 ret,
                                                int op, u64 uaddr, u64 val, u64 utimeout,
                                                int absolute)
{
    struct pyi_event *e = pyi_reserve(PYI_KIND_FUTEX_WAIT, ts);
    if (!e)
        return;
    e->dur = dur;
    e->ret = ret;
    e->aux = op;
    e->a[0] = uaddr;
    e->a[1] = val;
    e->a[2] = 0;
    e->a[3] = PYI_TIMEOUT_NONE;
    if (utimeout) {
        struct pyi_timespec t = {};
        if (bpf_probe_read_user(&t, sizeof(t), (void *)utimeout) == 0) {
            e->a[2] = (u64)t.tv_sec * 1000000000ULL + (u64)t.tv_nsec;
            e->a[3] = absolute ? PYI_TIMEOUT_ABSOLUTE : PYI_TIMEOUT_RELATIVE;
        }
    }
    events.ringbuf_submit(e, PYI_RB_QUIET);
}

/* A wake that woke nobody says nothing about who waits for whom, and is most of
 * the wakes a busy job makes (85 % in the PyTorch benchmark): count it in the
 * kernel instead of sending it. */
BPF_PERCPU_ARRAY(futex_idle_wakes, u64, 1);

static __always_inline void pyi_emit_futex_wake(u64 ts, u64 dur, s64 ret,
                                                int op, u64 uaddr, u64 nr_wake, u64 uaddr2)
{
    if (ret == 0) {
        int zero = 0;
        u64 *n = futex_idle_wakes.lookup(&zero);
        if (n)
            (*n)++;
        return;
    }
    struct pyi_event *e = pyi_reserve(PYI_KIND_FUTEX_WAKE, ts);
    if (!e)
        return;
    e->dur = dur;
    e->ret = ret;
    e->aux = op;
    e->a[0] = uaddr;
    e->a[1] = nr_wake;
    e->a[2] = uaddr2;
    events.ringbuf_submit(e, PYI_RB_QUIET);
}

/* Returns 1 when the syscall was a futex call (handled here), else 0.
 * nr, ts, args: the call, its entry time and arguments (its pending record). */
static __always_inline int pyi_futex_exit(u32 nr, u64 ts, u64 *args, u64 dur, s64 ret)
{
    if (nr == PYI_NR_FUTEX) {
        int op = (int)args[1];
        int cmd = op & PYI_FUTEX_CMD_MASK;
        if (pyi_futex_is_wait(cmd))
            /* FUTEX_WAIT's timeout is relative; the others take an absolute time. */
            pyi_emit_futex_wait(ts, dur, ret, op, args[0], args[2], args[3], cmd != 0);
        else if (pyi_futex_is_wake(cmd))
            pyi_emit_futex_wake(ts, dur, ret, op, args[0], args[2], args[4]);
        return 1;
    }
    if (nr == PYI_NR_FUTEX_WAIT2) {
        pyi_emit_futex_wait(ts, dur, ret, 0, args[0], args[1], args[4], 1);
        return 1;
    }
    if (nr == PYI_NR_FUTEX_WAKE2) {
        pyi_emit_futex_wake(ts, dur, ret, 1, args[0], args[2], 0);
        return 1;
    }
    return 0;
}
