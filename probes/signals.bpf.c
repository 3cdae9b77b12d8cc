/* signals family: generation (who sent what to whom, and the result) and
 * delivery (the handler kind the target had). A fatal delivery is remembered
 * so the exit event can name the signal that killed the process.
 */

#define PYI_SIG_DFL 0

/* Signals whose default action terminates the process. */
static __always_inline int pyi_sig_default_fatal(int sig)
{
    switch (sig) {
    case 17: /* SIGCHLD */
    case 18: /* SIGCONT */
    case 19: /* SIGSTOP */
    case 20: /* SIGTSTP */
    case 21: /* SIGTTIN */
    case 22: /* SIGTTOU */
    case 23: /* SIGURG */
    case 28: /* SIGWINCH */
        return 0;
    }
    return sig > 0 && sig < 32;
}

/* Whether the current task sent this signal. A task sends kill, tkill and
 * tgkill (SI_USER, SI_TKILL), sigqueue (SI_QUEUE) and mq_notify (SI_MESGQ)
 * signals, and a child its SIGCHLD (CLD_*, > 0). Every other code is raised
 * by the kernel, often in an interrupt on top of whatever task was running:
 * an itimer's SIGALRM (SI_KERNEL, from the hrtimer interrupt), a POSIX
 * timer's (SI_TIMER), SIGIO; that task sent nothing (a busy traced process
 * beside another's 2 ms itimer "sent" it 970 SIGALRMs in 2.5 s). Such a
 * signal is recorded only when its target is followed. */
static __always_inline int pyi_sent_by_current(int sig, int code)
{
    if (code == 0 || code == -1 || code == -3 || code == -6)
        return 1;
    return sig == 17 && code > 0;
}

TRACEPOINT_PROBE(signal, signal_generate)
{
    u32 sender = bpf_get_current_pid_tgid() >> 32;
    u32 target = args->pid;
    if (!(pyi_is_traced(sender) && pyi_sent_by_current(args->sig, args->code)) && !pyi_is_traced_tid(target))
        return 0;
    struct pyi_event *e = pyi_reserve(PYI_KIND_SIGNAL_GENERATE, bpf_ktime_get_ns());
    if (!e)
        return 0;
    e->aux = args->sig;
    e->ret = args->errno;
    e->a[0] = target;
    e->a[1] = args->group;
    e->a[2] = args->result;
    e->a[3] = (u64)(s64)args->code;
    events.ringbuf_submit(e, 0);
    return 0;
}

TRACEPOINT_PROBE(signal, signal_deliver)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (!pyi_is_traced(tgid))
        return 0;
    int sig = args->sig;
    if (args->sa_handler == PYI_SIG_DFL && pyi_sig_default_fatal(sig)) {
        struct pyi_exit_info info = { .code = -1, .sig = sig };
        exit_info.update(&tgid, &info);
    }
    struct pyi_event *e = pyi_reserve(PYI_KIND_SIGNAL_DELIVER, bpf_ktime_get_ns());
    if (!e)
        return 0;
    e->aux = sig;
    e->ret = args->errno;
    e->a[0] = args->sa_handler;
    e->a[1] = args->sa_flags;
    e->a[2] = (u64)(s64)args->code;
    events.ringbuf_submit(e, 0);
    return 0;
}
