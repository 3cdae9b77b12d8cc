/* process lifecycle family: fork (thread or process), exec, exit.
 *
 * sched_process_fork runs in the parent before the child is first woken, so
 * adding the child to `traced` here follows children and workers without a
 * race. Whether the new task is a thread comes from the clone flags the parent
 * passed (kept in its in-flight slot by syscalls.bpf.c).
 */

/* PYI_NR_CLONE, PYI_NR_CLONE3, PYI_NR_VFORK: -D flags, per architecture (pyimpact.h). */
#define PYI_CLONE_VM     0x00000100ULL
#define PYI_CLONE_VFORK  0x00004000ULL
#define PYI_CLONE_THREAD 0x00010000ULL
#define PYI_SIGCHLD      17

TRACEPOINT_PROBE(sched, sched_process_fork)
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
    u32 child = args->child_pid;
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

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (!pyi_is_traced(tgid))
        return 0;
    /* A thread other than the leader exec'd and took the leader's tid: the
     * in-flight slot of its old tid (holding the execve) has no owner left. */
    if ((u32)args->old_pid != (u32)args->pid)
        pyi_flight_release(((u64)tgid << 32) | (u32)args->old_pid);
    struct pyi_exec_event *x = events.ringbuf_reserve(sizeof(struct pyi_exec_event));
    if (!x) {
        pyi_count_lost(PYI_LOST_RINGBUF);
        return 0;
    }
    pyi_fill(&x->e, PYI_KIND_EXEC, bpf_ktime_get_ns());
    x->e.a[0] = args->old_pid;
    unsigned short offset = args->data_loc_filename & 0xFFFF;
    bpf_probe_read_kernel_str(&x->filename, sizeof(x->filename), (void *)args + offset);
    events.ringbuf_submit(x, 0);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    u32 tid = (u32)id;
    if (!pyi_is_traced(tgid))
        return 0;
    int group_dead = args->group_dead;

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
