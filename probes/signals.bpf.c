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

/* signal_generate: what the classic tracepoint records (signal number,
 * siginfo's errno and code, target tid, group, result). */
static __always_inline int pyi_on_generate(int sig, s32 err, s32 code, u32 target, int group, int result)
{
    u32 sender = bpf_get_current_pid_tgid() >> 32;
    if (!(pyi_is_traced(sender) && pyi_sent_by_current(sig, code)) && !pyi_is_traced_tid(target))
        return 0;
    struct pyi_event *e = pyi_reserve(PYI_KIND_SIGNAL_GENERATE, bpf_ktime_get_ns());
    if (!e)
        return 0;
    e->aux = sig;
    e->ret = err;
    e->a[0] = target;
    e->a[1] = group;
    e->a[2] = result;
    e->a[3] = (u64)(s64)code;
    events.ringbuf_submit(e, 0);
    return 0;
}

/* signal_deliver: signal number, siginfo's errno and code, the handler and
 * its flags. */
static __always_inline int pyi_on_deliver(int sig, s32 err, s32 code, u64 sa_handler, u64 sa_flags)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (!pyi_is_traced(tgid))
        return 0;
    if (sa_handler == PYI_SIG_DFL && pyi_sig_default_fatal(sig)) {
        struct pyi_exit_info info = { .code = -1, .sig = sig };
        exit_info.update(&tgid, &info);
    }
    struct pyi_event *e = pyi_reserve(PYI_KIND_SIGNAL_DELIVER, bpf_ktime_get_ns());
    if (!e)
        return 0;
    e->aux = sig;
    e->ret = err;
    e->a[0] = sa_handler;
    e->a[1] = sa_flags;
    e->a[2] = (u64)(s64)code;
    events.ringbuf_submit(e, 0);
    return 0;
}

#if PYI_TP_BTF
/* Raw tracepoints (pyimpact.h, PYI_TP_BTF): the kernel's own arguments. */

/* signal_generate(int sig, struct kernel_siginfo *info, struct task_struct *task, int group, int result) */
RAW_TRACEPOINT_PROBE(signal_generate)
{
    s32 err, code;
    pyi_siginfo((void *)ctx->args[1], &err, &code);
    return pyi_on_generate((s32)ctx->args[0], err, code, pyi_task_pid((void *)ctx->args[2]), (s32)ctx->args[3],
                           (s32)ctx->args[4]);
}

/* signal_deliver(int sig, struct kernel_siginfo *info, struct k_sigaction *ka) */
RAW_TRACEPOINT_PROBE(signal_deliver)
{
    s32 err, code;
    pyi_siginfo((void *)ctx->args[1], &err, &code);
    void *ka = (void *)ctx->args[2];
    return pyi_on_deliver((s32)ctx->args[0], err, code, pyi_read64(ka, PYI_OFF_KA_HANDLER),
                          pyi_read64(ka, PYI_OFF_KA_FLAGS));
}
#else
TRACEPOINT_PROBE(signal, signal_generate)
{
    return pyi_on_generate(args->sig, args->errno, args->code, args->pid, args->group, args->result);
}

TRACEPOINT_PROBE(signal, signal_deliver)
{
    return pyi_on_deliver(args->sig, args->errno, args->code, args->sa_handler, args->sa_flags);
}
#endif
