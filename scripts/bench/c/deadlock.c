/* An AB-BA deadlock with two pthread mutexes, for the time-to-verdict benchmark.
 *
 * Two threads each lock one mutex, meet at a barrier, then ask for the other
 * one: certain deadlock, no race. The main thread then prints "ready" and
 * joins the first thread forever. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>

static pthread_mutex_t a = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t b = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t barrier;

static void *take(void *arg)
{
    int a_first = arg != NULL;
    pthread_mutex_t *first = a_first ? &a : &b, *second = a_first ? &b : &a;
    pthread_mutex_lock(first);
    pthread_barrier_wait(&barrier);
    pthread_mutex_lock(second);
    pthread_mutex_unlock(second);
    pthread_mutex_unlock(first);
    return NULL;
}

int main(void)
{
    pthread_t t1, t2;
    pthread_barrier_init(&barrier, NULL, 3);
    pthread_create(&t1, NULL, take, (void *)1L);
    pthread_create(&t2, NULL, take, NULL);
    pthread_barrier_wait(&barrier);
    printf("ready\n");
    fflush(stdout);
    pthread_join(t1, NULL);
    return 0;
}
