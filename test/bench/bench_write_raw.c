/*
 * bench_write_raw.c - the write workload (bench_write_common.h) with no
 * library: the baseline.
 *
 * Each producer writes its message itself with a blocking writev(), under
 * the connection's mutex so that two producers' messages never
 * interleave; the descriptors stay in blocking mode.  There are no
 * handlers and no run threads: the "handler" is the return of the last
 * writev, so the latency is from submit (before taking the mutex) to
 * then.  writes_per_msg counts our own writev calls.
 *
 * It sits out --slow (prints "raw skipped ...", exits 77): a blocking
 * write into a full connection whose reader never reads never returns.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "bench_write_common.h"

struct raw_conn {
    pthread_mutex_t lock;
    int fd;
    unsigned long long writes;      /* guarded by lock */
    char pad[64];
};

static void submit(void *impl, struct bw_msg *m)
{
    struct raw_conn *rc = &((struct raw_conn *)impl)[m->conn];
    struct iovec iov = { .iov_base = m->data, .iov_len = m->size };
    size_t done = 0;
    int error = 0;

    pthread_mutex_lock(&rc->lock);
    while (done < m->size) {
        ssize_t n = writev(rc->fd, &iov, 1);

        rc->writes++;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            error = errno;
            break;
        }
        done += (size_t)n;
        iov.iov_base = m->data + done;
        iov.iov_len = m->size - done;
    }
    pthread_mutex_unlock(&rc->lock);
    bw_complete(m, error, done);
}

int main(int argc, char **argv)
{
    struct bw_bench b;
    struct raw_conn *conns = NULL;
    unsigned long long writes = 0;
    int status;

    status = bw_init(&b, "raw", argc, argv);
    if (status == 0 && b.o.slow > 0)
        status = bw_skip("raw", "(--slow: a blocking write into a full connection never returns)");
    if (status == 0) {
        conns = calloc(b.o.connections, sizeof(*conns));
        status = conns == NULL;
    }
    if (status != 0)
        goto out;
    for (unsigned c = 0; c < b.o.connections; c++) {
        pthread_mutex_init(&conns[c].lock, NULL);
        conns[c].fd = b.write_fds[c];
    }
    status = bw_start(&b);
    if (status != 0)
        goto out;
    bw_produce(&b, submit, conns);
    bw_stop(&b);
    for (unsigned c = 0; c < b.o.connections; c++)
        writes += conns[c].writes;
    status = bw_report(&b, (long long)writes);
out:
    if (conns != NULL)
        for (unsigned c = 0; c < b.o.connections; c++)
            pthread_mutex_destroy(&conns[c].lock);
    free(conns);
    bw_fini(&b);
    return status;
}
