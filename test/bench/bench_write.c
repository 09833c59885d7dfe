/*
 * bench_write.c - async_write throughput of ioctx on socketpairs.
 *
 * P producer threads each start M async_writes of S bytes, round-robin
 * over N AF_UNIX socketpairs; one reader thread drains the other ends with
 * poll() and counts bytes.  Prints messages/s, MB/s and the write system
 * calls per message (coalescing), and fails if a byte is missing.
 *
 *   bench_write [--sockets N] [--producers P] [--messages M] [--size S]
 *               [--workers W] [--threads T]
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_common.h"
#include "ioctx.h"

struct config {
    unsigned long sockets, producers, messages, size, workers, threads;
};

static struct config cfg = { 64, 2, 200000, 64, 1, 2 };
static io_descriptor **descriptors;
static int *read_ends;
static char *payload;
static atomic_ulong completed, failed;

static void on_written(void *arg, int error, size_t bytes)
{
    (void)arg;
    if (error != 0 || bytes != cfg.size)
        atomic_fetch_add(&failed, 1);
    atomic_fetch_add_explicit(&completed, 1, memory_order_relaxed);
}

static void *produce(void *arg)
{
    unsigned long id = (unsigned long)(uintptr_t)arg;
    struct iovec iov = io_buffer(payload, cfg.size);

    for (unsigned long i = 0; i < cfg.messages; i++) {
        io_descriptor *d = descriptors[(i + id) % cfg.sockets];

        if (io_descriptor_async_write(d, &iov, 1, on_written, NULL, NULL) != 0)
            atomic_fetch_add(&failed, 1);
    }
    return NULL;
}

static void *read_all(void *arg)
{
    unsigned long expected = *(unsigned long *)arg, got = 0;
    struct pollfd *fds = calloc(cfg.sockets, sizeof(*fds));
    char buf[65536];

    for (unsigned long i = 0; i < cfg.sockets; i++)
        fds[i] = (struct pollfd){ .fd = read_ends[i], .events = POLLIN };
    while (got < expected) {
        if (poll(fds, cfg.sockets, -1) < 0 && errno != EINTR)
            break;
        for (unsigned long i = 0; i < cfg.sockets; i++) {
            ssize_t n;

            if (!(fds[i].revents & POLLIN))
                continue;
            n = read(fds[i].fd, buf, sizeof(buf));
            if (n > 0)
                got += (unsigned long)n;
        }
    }
    free(fds);
    *(unsigned long *)arg = got;
    return NULL;
}

static void *run(void *ctx)
{
    io_context_run(ctx);
    return NULL;
}

static int parse(int argc, char **argv)
{
    static const char *names[] = { "--sockets", "--producers", "--messages", "--size",
                                   "--workers", "--threads" };
    unsigned long *fields[] = { &cfg.sockets, &cfg.producers, &cfg.messages, &cfg.size,
                                &cfg.workers, &cfg.threads };

    for (int i = 1; i < argc; i += 2) {
        size_t k = 0;
        char *end;

        while (k < 6 && strcmp(argv[i], names[k]) != 0)
            k++;
        if (k == 6 || i + 1 >= argc)
            return -1;
        *fields[k] = strtoul(argv[i + 1], &end, 10);
        if (*end != '\0' || *fields[k] == 0 || *fields[k] > 100000000ul)
            return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    io_context_options opts;
    io_context_stats stats;
    io_context *ctx;
    pthread_t reader, *producers, *runners;
    unsigned long total, received;
    double start, elapsed;

    if (parse(argc, argv) != 0) {
        fprintf(stderr, "usage: %s [--sockets N] [--producers P] [--messages M] [--size S] "
                        "[--workers W] [--threads T]\n", argv[0]);
        return 2;
    }
    opts.worker_threads = (unsigned)cfg.workers;
    if (io_context_create(&ctx, &opts) != 0)
        return 1;
    descriptors = calloc(cfg.sockets, sizeof(*descriptors));
    read_ends = calloc(cfg.sockets, sizeof(*read_ends));
    payload = malloc(cfg.size);
    producers = calloc(cfg.producers, sizeof(*producers));
    runners = calloc(cfg.threads, sizeof(*runners));
    if (!descriptors || !read_ends || !payload || !producers || !runners)
        return 1;
    memset(payload, 'x', cfg.size);
    for (unsigned long i = 0; i < cfg.sockets; i++) {
        int sv[2];

        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0
            || io_descriptor_create(ctx, sv[0], NULL, &descriptors[i]) != 0)
            return 1;
        read_ends[i] = sv[1];
    }
    total = cfg.producers * cfg.messages;
    received = total * cfg.size;

    start = bench_now();
    io_context_work_started(ctx);
    pthread_create(&reader, NULL, read_all, &received);
    for (unsigned long t = 0; t < cfg.threads; t++)
        pthread_create(&runners[t], NULL, run, ctx);
    for (unsigned long p = 0; p < cfg.producers; p++)
        pthread_create(&producers[p], NULL, produce, (void *)(uintptr_t)p);
    for (unsigned long p = 0; p < cfg.producers; p++)
        pthread_join(producers[p], NULL);
    io_context_work_finished(ctx);
    for (unsigned long t = 0; t < cfg.threads; t++)
        pthread_join(runners[t], NULL);
    pthread_join(reader, NULL);
    elapsed = bench_now() - start;

    io_context_get_stats(ctx, &stats);
    printf("ioctx %.0f msgs/s  %.1f MB/s  %.3f writes/msg  would_block %llu  (%lu x %lu B over %lu sockets)\n",
           (double)total / elapsed, (double)received / elapsed / 1e6,
           (double)stats.writev_calls / (double)total, (unsigned long long)stats.would_block,
           total, cfg.size, cfg.sockets);
    for (unsigned long i = 0; i < cfg.sockets; i++)
        close(read_ends[i]);
    io_context_destroy(ctx);
    if (atomic_load(&failed) != 0 || atomic_load(&completed) != total
        || received != total * cfg.size) {
        fprintf(stderr, "FAILED: %lu failed, %lu of %lu completed, %lu of %lu bytes read\n",
                atomic_load(&failed), atomic_load(&completed), total, received, total * cfg.size);
        return 1;
    }
    free(descriptors);
    free(read_ends);
    free(payload);
    free(producers);
    free(runners);
    return 0;
}
