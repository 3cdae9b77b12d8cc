/* Repeated getppid() bursts for scripts/bench/body_ab.py.
 *
 *   getppid_bursts CALLS
 *
 * Prints "ready PID", then for every line read on stdin makes CALLS getppid()
 * calls and prints "CPU_NS_PER_CALL WALL_NS_PER_CALL" (thread CPU time and
 * CLOCK_MONOTONIC around the burst). One process serves many samples, so the
 * tracer attached to it stays attached between them. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

static long long ns(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 300000;
    char line[64];
    if (n <= 0)
        return 2;
    printf("ready %d\n", getpid());
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {
        long long c0 = ns(CLOCK_THREAD_CPUTIME_ID), w0 = ns(CLOCK_MONOTONIC);
        for (long i = 0; i < n; i++)
            syscall(SYS_getppid);
        long long c1 = ns(CLOCK_THREAD_CPUTIME_ID), w1 = ns(CLOCK_MONOTONIC);
        printf("%.2f %.2f\n", (double)(c1 - c0) / n, (double)(w1 - w0) / n);
        fflush(stdout);
    }
    return 0;
}
