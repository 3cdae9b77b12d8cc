/* pidns_dead_owner: a pthread mutex whose owner thread exited while holding
 * it. glibc keeps the dead thread's TID in __owner; the main thread then
 * blocks in lock forever. Run in a PID namespace, that TID names no task of
 * the namespace any more, and on the host it is an unrelated number: the
 * diagnosis must say it cannot be translated and blame nobody outside.
 * Prints "ready <dead tid> <&mutex>" before blocking. Used by tests/test_pidns.py. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static volatile pid_t dead;

static void *take_and_exit(void *arg)
{
    (void)arg;
    dead = (pid_t)syscall(SYS_gettid);
    pthread_mutex_lock(&m);
    return NULL;                      /* exits holding the mutex */
}

int main(void)
{
    pthread_t t;
    pthread_create(&t, NULL, take_and_exit, NULL);
    pthread_join(t, NULL);
    printf("ready %d %p\n", (int)dead, (void *)&m);
    fflush(stdout);
    pthread_mutex_lock(&m);           /* never returns */
    return 0;
}
