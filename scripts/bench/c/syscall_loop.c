/* Tight syscall loop for the overhead benchmark.
 *
 *   syscall_loop SECONDS
 *
 * Prints "ready PID" on stdout, waits for one line on stdin (the harness sends
 * it once the tracer is attached), then calls getppid() in chunks until
 * SECONDS have passed, timing the loop from inside with CLOCK_MONOTONIC, and
 * prints "calls N wall_ns T cpu_ns C nivcsw I nvcsw V": wall time is what the
 * program experienced (a stopped tracee waits on strace); thread CPU time and
 * the involuntary context switches tell whether another task took the CPU
 * during the sample (the machine is shared). A tracer that attaches to a running
 * process (strace -p, syscount -p, pyimpact trace -p) sees the whole loop. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/syscall.h>

static long long clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
#define now_ns() clock_ns(CLOCK_MONOTONIC)

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    char line[64];
    printf("ready %d\n", getpid());
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin))
        return 1;
    long long budget = (long long)(seconds * 1e9);
    long long calls = 0;
    struct rusage r0, r1;
    getrusage(RUSAGE_THREAD, &r0);
    long long c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    long long t0 = now_ns(), t1 = t0;
    volatile long sink = 0;
    do {
        for (int i = 0; i < 64; i++)
            sink += syscall(SYS_getppid);
        calls += 64;
        t1 = now_ns();
    } while (t1 - t0 < budget);
    long long c1 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    getrusage(RUSAGE_THREAD, &r1);
    printf("calls %lld wall_ns %lld cpu_ns %lld nivcsw %ld nvcsw %ld\n", calls, t1 - t0, c1 - c0,
           r1.ru_nivcsw - r0.ru_nivcsw, r1.ru_nvcsw - r0.ru_nvcsw);
    fflush(stdout);
    return 0;
}
