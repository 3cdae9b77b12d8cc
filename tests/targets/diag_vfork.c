/* diag_vfork: a parent suspended in vfork() because its child neither execs
 * nor exits.  The child (which borrows the parent's memory, so it only makes
 * raw syscalls) writes "ready <child pid>" and sleeps in pause().  The parent
 * sleeps inside vfork() until the child is killed, then reaps it and exits.
 * Used by tests/test_diagnose.py.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    pid_t child = vfork();
    if (child == 0) {
        char buf[64];
        int n = snprintf(buf, sizeof buf, "ready %d\n", (int)syscall(SYS_getpid));
        syscall(SYS_write, 1, buf, n);
        for (;;)
            syscall(SYS_pause);
    }
    waitpid(child, NULL, 0);
    return 0;
}
