/* O_DIRECT 4 KiB overwrites from several threads, counted, for the block
 * accounting tests (tests/test_block_accounting.py).
 *
 *   direct_writes FILE NBLK NTHREADS PER_THREAD
 *
 * Allocates and writes NBLK blocks of FILE, fdatasync, prints "ready", waits
 * for one byte on stdin, then each of NTHREADS threads writes PER_THREAD
 * blocks in turn over those NBLK (thread t starts at block t % NBLK), every
 * one a plain overwrite: one block request each. NBLK 1 with 2 threads puts
 * two requests at the same sector in flight together. Prints "done N" with
 * the writes that succeeded. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fd, nblk, per_thread;
static void *buf;
static long done_writes;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void *writer(void *arg)
{
    long t = (long)arg, ok = 0;
    for (int i = 0; i < per_thread; i++)
        if (pwrite(fd, buf, 4096, (off_t)((t + i) % nblk) * 4096) == 4096)
            ok++;
    pthread_mutex_lock(&lock);
    done_writes += ok;
    pthread_mutex_unlock(&lock);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: %s FILE NBLK NTHREADS PER_THREAD\n", argv[0]);
        return 2;
    }
    nblk = atoi(argv[2]);
    int nthreads = atoi(argv[3]);
    per_thread = atoi(argv[4]);
    if (nblk < 1 || nthreads < 1 || nthreads > 64 || per_thread < 0)
        return 2;
    fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC | O_DIRECT, 0600);
    if (fd < 0) {
        perror("open O_DIRECT");
        return 1;
    }
    if (posix_memalign(&buf, 4096, 4096))
        return 1;
    memset(buf, 0x5a, 4096);
    for (int i = 0; i < nblk; i++)
        if (pwrite(fd, buf, 4096, (off_t)i * 4096) != 4096) {
            perror("pwrite");
            return 1;
        }
    fdatasync(fd);
    printf("ready\n");
    fflush(stdout);
    char c;
    if (read(0, &c, 1) != 1)
        return 1;
    pthread_t th[64];
    for (long t = 0; t < nthreads; t++)
        pthread_create(&th[t], NULL, writer, (void *)t);
    for (int t = 0; t < nthreads; t++)
        pthread_join(th[t], NULL);
    close(fd);
    printf("done %ld\n", done_writes);
    fflush(stdout);
    return 0;
}
