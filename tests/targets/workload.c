/* A known workload for `pyimpact trace` tests, with exact (prime) counts.
 *
 * Prints the contended mutex's address and the idle futex word's, then waits for one byte on stdin
 * (so the tracer is attached before anything happens), then:
 *   - forks NFORK children; child i exits with code i % 7;
 *   - one more child sleeps 20 ms (a slow syscall in a child) and execs /bin/true;
 *   - sends NSIG SIGUSR1 to itself (a handler counts them);
 *   - two threads contend on one pthread mutex (futex waits and wakes on it);
 *   - writes NBLOCK 4 KiB blocks with O_DIRECT to argv[1], then fsync;
 *   - makes NIDLE FUTEX_WAKE calls on a word nobody waits on.
 * Prints "done <signals handled>" and exits 0.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/syscall.h>

#define NFORK 23
#define NSIG_SENT 13
#define NBLOCK 17
#define NLOOP 29
#define NIDLE 11

static pthread_mutex_t contended = PTHREAD_MUTEX_INITIALIZER;
static volatile sig_atomic_t handled;
static int idle_word;

static void on_usr1(int sig) { (void)sig; handled++; }

static void *contend(void *arg)
{
    (void)arg;
    struct timespec hold = {0, 2 * 1000 * 1000};
    for (int i = 0; i < NLOOP; i++) {
        pthread_mutex_lock(&contended);
        nanosleep(&hold, NULL);
        pthread_mutex_unlock(&contended);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: workload FILE\n");
        return 2;
    }
    printf("%p %p\n", (void *)&contended, (void *)&idle_word);
    fflush(stdout);
    char go;
    if (read(0, &go, 1) != 1)
        return 3;

    for (int i = 0; i < NFORK; i++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(i % 7);
        waitpid(pid, NULL, 0);
    }
    pid_t pid = fork();
    if (pid == 0) {
        struct timespec t = {0, 20 * 1000 * 1000};
        nanosleep(&t, NULL);
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
    }
    waitpid(pid, NULL, 0);

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    for (int i = 0; i < NSIG_SENT; i++)
        kill(getpid(), SIGUSR1);

    pthread_t a, b;
    pthread_create(&a, NULL, contend, NULL);
    pthread_create(&b, NULL, contend, NULL);
    pthread_join(a, NULL);
    pthread_join(b, NULL);

    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0600);
    if (fd < 0) {
        perror("open O_DIRECT");
        return 4;
    }
    void *buf;
    if (posix_memalign(&buf, 4096, 4096))
        return 5;
    memset(buf, 'x', 4096);
    for (int i = 0; i < NBLOCK; i++)
        if (write(fd, buf, 4096) != 4096) {
            perror("write");
            return 6;
        }
    fsync(fd);
    close(fd);
    for (int i = 0; i < NIDLE; i++)
        syscall(SYS_futex, &idle_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    printf("done %d\n", (int)handled);
    fflush(stdout);
    return 0;
}
