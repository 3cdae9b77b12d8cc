/* process lifecycle family: fork (thread or process), exec, exit.
 *
 * sched_process_fork runs in the parent before the child is first woken, so
 * adding the child to `traced` here follows children and workers without a
 * race. Whether the new task is a thread comes from the clone flags the parent
 * passed (kept in its in-flight slot by syscalls.bpf.c).
 *
 * Each handler takes the tracepoint's values as arguments; the entry points
 * at the end read them from the kernel's arguments (raw tracepoints, with
 * PYI_TP_BTF: pyimpact.h) or from the classic tracepoint's record.
 */

/* PYI_NR_CLONE, PYI_NR_CLONE3, PYI_NR_VFORK: -D flags, per architecture (pyimpact.h). */
#define PYI_CLONE_VM     0x00000100ULL
#define PYI_CLONE_VFORK  0x00004000ULL
#define PYI_CLONE_THREAD 0x00010000ULL
#define PYI_SIGCHLD      17

static __always_inline int pyi_on_fork(u32 child)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    u32 tid = (u32)id;
    if (!pyi_is_traced(tgid))
        return 0;

    /* The parent is inside clone, clone3, fork or vfork: its in-flight slot
     * (syscalls.bpf.c) holds the flags it passed. */
    u64 flags = PYI_SIGCHLD;
    struct pyi_flight *f = pyi_flight_of(id, 0);
    if (f && f->ts) {
        if (f->nr == PYI_NR_CLONE || f->nr == PYI_NR_CLONE3)
            flags = f->args[0];
        else if (f->nr == PYI_NR_VFORK)
            flags = PYI_CLONE_VM | PYI_CLONE_VFORK | PYI_SIGCHLD;
    }
    int is_thread = (flags & PYI_CLONE_THREAD) != 0;
    if (!is_thread) {
        if (pyi_set_traced(child, 1) != 0)
            pyi_count_lost(PYI_LOST_MAP_FULL);
    } else if (!PYI_TRACE_ALL) {
        /* A new thread: known as ours before its first syscall (signals sent
         * to it by tid are then followed). */
        if (threads.update(&child, &tgid) != 0)
            pyi_count_lost(PYI_LOST_MAP_FULL);
    }

    struct pyi_event *e = pyi_reserve(PYI_KIND_FORK, bpf_ktime_get_ns());
    if (!e)
        return 0;
    e->aux = is_thread;
    e->a[0] = child;
    e->a[1] = flags;
    e->a[2] = (flags & PYI_CLONE_VFORK) != 0;
    events.ringbuf_submit(e, 0);
    return 0;
}

/* exec: the tid before the exec, the tid now (the leader's), the new
 * program's path (a kernel string). */
static __always_inline int pyi_on_exec(u32 old_pid, u32 pid, const char *filename)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (!pyi_is_traced(tgid))
        return 0;
    /* A thread other than the leader exec'd and took the leader's tid: the
     * in-flight slot of its old tid (holding the execve) has no owner left. */
    if (old_pid != pid)
        pyi_flight_release(((u64)tgid << 32) | old_pid);
    struct pyi_exec_event *x = events.ringbuf_reserve(sizeof(struct pyi_exec_event));
    if (!x) {
        pyi_count_lost(PYI_LOST_RINGBUF);
        return 0;
    }
    pyi_fill(&x->e, PYI_KIND_EXEC, bpf_ktime_get_ns());
    x->e.a[0] = old_pid;
    bpf_probe_read_kernel_str(&x->filename, sizeof(x->filename), filename);
    events.ringbuf_submit(x, 0);
    return 0;
}

static __always_inline int pyi_on_exit(int group_dead)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    u32 tid = (u32)id;
    if (!pyi_is_traced(tgid))
        return 0;

    struct pyi_exit_info info = { .code = -1, .sig = 0 };
    struct pyi_exit_info *known = exit_info.lookup(&tid);
    if (!known)
        known = exit_info.lookup(&tgid);
    if (known)
        info = *known;
    exit_info.delete(&tid);
    threads.delete(&tid);
    /* exit and exit_group never return: the slot would stay pending, and taken. */
    pyi_flight_release(id);
    if (group_dead) {
        exit_info.delete(&tgid);
        pyi_set_traced(tgid, 0);
    }

    struct pyi_event *e = pyi_reserve(PYI_KIND_EXIT, bpf_ktime_get_ns());
    if (!e)
        return 0;
    e->aux = group_dead;
    e->a[0] = (u64)(s64)info.code;
    e->a[1] = info.sig;
    events.ringbuf_submit(e, 0);
    return 0;
}

#if PYI_TP_BTF
/* Raw tracepoints (pyimpact.h, PYI_TP_BTF): the kernel's own arguments. */

/* sched_process_fork(struct task_struct *parent, struct task_struct *child) */
RAW_TRACEPOINT_PROBE(sched_process_fork)
{
    return pyi_on_fork(pyi_task_pid((void *)ctx->args[1]));
}

/* sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm) */
RAW_TRACEPOINT_PROBE(sched_process_exec)
{
    const char *filename = (const char *)pyi_read64((void *)ctx->args[2], PYI_OFF_BPRM_FILENAME);
    return pyi_on_exec((u32)ctx->args[1], pyi_task_pid((void *)ctx->args[0]), filename);
}

/* sched_process_exit(struct task_struct *p, bool group_dead) */
RAW_TRACEPOINT_PROBE(sched_process_exit)
{
    return pyi_on_exit((u8)ctx->args[1] != 0);
}
#else
TRACEPOINT_PROBE(sched, sched_process_fork)
{
    return pyi_on_fork(args->child_pid);
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    unsigned short offset = args->data_loc_filename & 0xFFFF;
    return pyi_on_exec((u32)args->old_pid, (u32)args->pid, (const char *)args + offset);
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    return pyi_on_exit(args->group_dead);
}
#endif
