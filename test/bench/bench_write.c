/*
 * bench_write.c - the write workload (bench_write_common.h) on ioctx.
 *
 * Producers call io_descriptor_async_write() directly, concurrently on
 * the same descriptors: ioctx keeps each descriptor's writes in order and
 * never interleaves them, so no queue of our own is needed.  W worker
 * threads (--workers) do the writev/sendmsg; R threads (--run-threads)
 * run the handlers in io_context_run().  writes_per_msg: the
 * interposer's count of write system calls on the connections, as for
 * the peers (it leaves out the slow consumers); where there is no
 * interposer, io_context_get_stats().writev_calls during the timed
 * section.
 *
 * --slow: once every message's handler has run, io_context_stop() stops
 * the run threads; io_descriptor_close() then closes each slow
 * descriptor (its stuck write completes with ECANCELED), timed; then
 * io_context_run() on the main thread runs those handlers and returns
 * when no work is left.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_write_common.h"
#include "ioctx.h"

struct ioctx_bench {
    io_context *ctx;
    io_descriptor **descriptors;
};

static void on_written(void *arg, int error, size_t bytes)
{
    bw_complete(arg, error, bytes);
}

static void submit(void *impl, struct bw_msg *m)
{
    struct ioctx_bench *ib = impl;
    struct iovec iov = io_buffer(m->data, m->size);
    int err = io_descriptor_async_write(ib->descriptors[m->conn], &iov, 1, on_written, m, NULL);

    if (err != 0) {
        fprintf(stderr, "ioctx: io_descriptor_async_write: %s\n", strerror(err));
        exit(1);
    }
}

static void close_one(void *impl, unsigned conn)
{
    struct ioctx_bench *ib = impl;
    int err = io_descriptor_close(ib->descriptors[conn]);

    if (err != 0) {
        fprintf(stderr, "ioctx: io_descriptor_close: %s\n", strerror(err));
        exit(1);
    }
}

static void *run(void *ctx)
{
    io_context_run(ctx);
    return NULL;
}

static int setup(struct bw_bench *b, struct ioctx_bench *ib)
{
    io_context_options opts = { .worker_threads = b->o.workers };
    int err;

    err = io_context_create(&ib->ctx, &opts);
    if (err != 0) {
        fprintf(stderr, "ioctx: io_context_create: %s\n", strerror(err));
        return 1;
    }
    ib->descriptors = calloc(bw_conns(b), sizeof(*ib->descriptors));
    if (ib->descriptors == NULL)
        return 1;
    for (unsigned c = 0; c < bw_conns(b); c++) {
        err = io_descriptor_create(ib->ctx, b->write_fds[c], NULL, &ib->descriptors[c]);
        if (err != 0) {
            fprintf(stderr, "ioctx: io_descriptor_create: %s\n", strerror(err));
            return 1;
        }
        b->write_fds[c] = -1;       /* the descriptor closes it */
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct bw_bench b;
    struct ioctx_bench ib = { 0 };
    io_context_stats stats0, stats;
    pthread_t *runners = NULL;
    int status;

    status = bw_init(&b, "ioctx", argc, argv);
    if (status == 0)
        status = setup(&b, &ib);
    if (status == 0) {
        runners = calloc(b.o.run_threads, sizeof(*runners));
        status = runners == NULL;
    }
    if (status != 0)
        goto out;

    /* The guard keeps run() from returning before the first write, and
     * while the slow descriptors are closed. */
    io_context_work_started(ib.ctx);
    for (unsigned t = 0; t < b.o.run_threads; t++)
        if (pthread_create(&runners[t], NULL, run, ib.ctx) != 0) {
            fprintf(stderr, "ioctx: cannot start a run thread\n");
            exit(1);
        }
    bw_submit_stuck(&b, submit, &ib);
    io_context_get_stats(ib.ctx, &stats0);
    if (bw_start(&b) != 0)
        exit(1);                    /* the run threads wait for the guard */
    bw_produce(&b, submit, &ib);
    bw_wait_completed(&b);
    bw_stop(&b);

    io_context_stop(ib.ctx);
    for (unsigned t = 0; t < b.o.run_threads; t++)
        pthread_join(runners[t], NULL);
    bw_close_stuck(&b, close_one, &ib);
    io_context_restart(ib.ctx);
    io_context_work_finished(ib.ctx);
    io_context_run(ib.ctx);         /* the stuck writes' handlers */

    io_context_get_stats(ib.ctx, &stats);
    status = bw_report(&b, bench_counting_available() ? bw_interposed_writes(&b)
                                                      : (long long)(stats.writev_calls - stats0.writev_calls));
out:
    io_context_destroy(ib.ctx);
    free(ib.descriptors);
    free(runners);
    bw_fini(&b);
    return status;
}
