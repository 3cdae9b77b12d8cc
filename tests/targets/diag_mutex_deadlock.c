/* diag_mutex_deadlock: the classic AB-BA deadlock with two pthread mutexes.
 *
 * Thread "take-a-b" locks A then wants B; thread "take-b-a" locks B then wants
 * A.  A three-party barrier makes sure both hold their first mutex before
 * either asks for the second, so the deadlock is certain, not a race.  Once
 * past the barrier the main thread prints "ready <tid1> <tid2> <&A> <&B>" and
 * joins the first thread (forever).  Used by tests/test_diagnose.py.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>

static pthread_mutex_t a = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t b = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t barrier;
static volatile pid_t tids[2];

static void *take(void *arg)
{
    long first_a = (long)arg;
    pthread_mutex_t *first = first_a ? &a : &b, *second = first_a ? &b : &a;
    tids[first_a ? 0 : 1] = (pid_t)syscall(SYS_gettid);
    pthread_mutex_lock(first);
    pthread_barrier_wait(&barrier);
    pthread_mutex_lock(second);          /* never returns */
    pthread_mutex_unlock(second);
    pthread_mutex_unlock(first);
    return NULL;
}

int main(void)
{
    pthread_t t1, t2;
    pthread_barrier_init(&barrier, NULL, 3);
    pthread_create(&t1, NULL, take, (void *)1L);
    pthread_create(&t2, NULL, take, (void *)0L);
    pthread_setname_np(t1, "take-a-b");
    pthread_setname_np(t2, "take-b-a");
    pthread_barrier_wait(&barrier);
    printf("ready %d %d %p %p\n", (int)tids[0], (int)tids[1], (void *)&a, (void *)&b);
    fflush(stdout);
    pthread_join(t1, NULL);
    return 0;
}
