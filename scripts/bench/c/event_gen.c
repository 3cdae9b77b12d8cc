/* Generator of the rare events pyimpact sends to user space, at a set rate,
 * counting what it generates independently of any tracer.
 *
 *   event_gen RATE SECONDS FILE
 *
 * RATE is in pyimpact events per second (when more than 5 ms behind, it drops
 * the missed 1 ms slots instead of bursting). Prints "ready PID", waits for one
 * line on stdin, then for SECONDS generates, in 1 ms slots, this mix (shares
 * of the events):
 *   72 %  futex: FUTEX_WAIT on a word whose value differs (returns EAGAIN at
 *         once) and FUTEX_WAKE with no waiter, alternately: 1 event each
 *   20 %  kill(getpid(), SIGUSR1) caught by a handler: signal_generate +
 *         signal_deliver, 2 events
 *    6 %  fork() + _exit(0) in the child: fork, the child's exit, and the
 *         SIGCHLD sent to us (ignored by default): 3 events; children are
 *         reaped without blocking
 *    2 %  a 4 KiB O_DIRECT pwrite over preallocated blocks of FILE: one
 *         block request, 1 event
 * and prints one line "done kind count ..." with what it generated per
 * pyimpact event kind, plus elapsed_ns and the slots it fell behind in; then
 * waits for a second line on stdin before exiting (so the harness can read
 * the tracer's in-kernel statistics while the tracer still runs).
 * Blocking calls (waitpid at the end, reading stdin) may count as slow
 * syscalls: trace with a large --slow-ms to keep the count exact. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t delivered;

static void on_usr1(int sig)
{
    (void)sig;
    delivered++;
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s RATE SECONDS FILE\n", argv[0]);
        return 2;
    }
    double rate = atof(argv[1]);
    double seconds = atof(argv[2]);
    const char *path = argv[3];

    const int blk = 4096, nblk = 256;
    int fd = open(path, O_RDWR | O_CREAT | O_DIRECT, 0600);
    if (fd < 0) {
        perror("open O_DIRECT");
        return 1;
    }
    void *buf;
    if (posix_memalign(&buf, blk, blk))
        return 1;
    memset(buf, 0x5a, blk);
    /* Allocate and write the blocks now, so the measured writes are plain
     * overwrites: one block request each, no metadata. */
    for (int i = 0; i < nblk; i++)
        if (pwrite(fd, buf, blk, (off_t)i * blk) != blk) {
            perror("pwrite");
            return 1;
        }
    fdatasync(fd);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);

    static uint32_t word = 1;
    /* shares of events, and events per action */
    const double share[4] = {0.72, 0.20, 0.06, 0.02};
    const double per_action[4] = {1, 2, 3, 1};
    double credit[4] = {0, 0, 0, 0};
    long long n_wait = 0, n_wake = 0, n_kill = 0, n_fork = 0, n_fork_failed = 0, n_blk = 0, n_reaped = 0;
    long long late_slots = 0, skipped_slots = 0;
    char line[64];

    printf("ready %d\n", getpid());
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin))
        return 1;

    const long long slot = 1000000;   /* 1 ms */
    long long t0 = now_ns();
    long long nslots = (long long)(seconds * 1000.0 + 0.5);
    double per_slot = rate / 1000.0;
    for (long long s = 0; s < nslots; s++) {
        for (int k = 0; k < 4; k++)
            credit[k] += per_slot * share[k] / per_action[k];
        while (credit[0] >= 1.0) {
            credit[0] -= 1.0;
            if ((n_wait + n_wake) & 1) {
                syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
                n_wake++;
            } else {
                syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);  /* word is 1: EAGAIN */
                n_wait++;
            }
        }
        while (credit[1] >= 1.0) {
            credit[1] -= 1.0;
            kill(getpid(), SIGUSR1);
            n_kill++;
        }
        while (credit[2] >= 1.0) {
            credit[2] -= 1.0;
            pid_t c = fork();
            if (c == 0)
                _exit(0);
            if (c > 0)
                n_fork++;
            else
                n_fork_failed++;
        }
        while (credit[3] >= 1.0) {
            credit[3] -= 1.0;
            if (pwrite(fd, buf, blk, (off_t)(n_blk % nblk) * blk) == blk)
                n_blk++;
        }
        while (waitpid(-1, NULL, WNOHANG) > 0)
            n_reaped++;
        long long next = t0 + (s + 1) * slot;
        long long now = now_ns();
        if (now < next) {
            struct timespec ts = {next / 1000000000LL, next % 1000000000LL};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        } else {
            late_slots++;
            /* More than 5 ms behind: drop the missed slots rather than catch
             * up in a burst far above the set rate (the achieved rate is
             * reported). */
            long long behind = (now - next) / slot;
            if (behind > 5) {
                skipped_slots += behind;
                s += behind;
            }
        }
    }
    long long elapsed = now_ns() - t0;
    while (n_reaped < n_fork) {
        if (waitpid(-1, NULL, 0) <= 0)
            break;
        n_reaped++;
    }
    close(fd);
    printf("done futex_wait %lld futex_wake %lld signal_generate %lld signal_deliver %lld fork %lld exit %lld "
           "block_io %lld elapsed_ns %lld late_slots %lld skipped_slots %lld slots %lld fork_failed %lld "
           "handler_ran %lld\n",
           n_wait, n_wake, n_kill + n_fork, (long long)delivered, n_fork, n_fork, n_blk, elapsed, late_slots,
           skipped_slots, nslots, n_fork_failed, (long long)delivered);
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin))
        return 0;
    return 0;
}
