/* A syscall storm: waits for one byte on stdin, then calls getppid() N times
 * (argv[1]) and exits. Traced with --slow-ms 0 every call is an event, which
 * overflows a deliberately tiny ring buffer. */
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    char go;
    if (read(0, &go, 1) != 1)
        return 3;
    for (long i = 0; i < n; i++)
        getppid();
    return 0;
}
