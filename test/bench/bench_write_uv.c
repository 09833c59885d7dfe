/*
 * bench_write_uv.c - the write workload (bench_write_common.h) on libuv.
 *
 * libuv's loop is single-threaded, and uv_write() may only be called on
 * the loop's thread: producers append their message to a mutex-protected
 * queue and wake the loop with uv_async_send(); the loop thread takes the
 * whole queue at once and calls uv_write() on each message's uv_pipe_t
 * (uv_pipe_open() on the write end).  libuv keeps each stream's writes in
 * order; the write callbacks, run on the loop thread, are the handlers.
 * --run-threads and --workers do not apply.  writes_per_msg: the
 * interposer's count of write system calls on the connections.
 *
 * --slow: once the loop thread has returned (every message's callback
 * has run), uv_close() on each slow connection's uv_pipe_t is timed;
 * the main thread then runs the loop until every close callback has run,
 * and with them the stuck writes' callbacks (UV_ECANCELED).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "bench_write_common.h"

struct uv_bench {
    struct bw_bench *bench;
    uv_loop_t loop;
    uv_async_t wakeup;
    uv_pipe_t *pipes;
    uv_write_t *reqs;               /* one per message slot */
    struct bw_handoff queue;
    unsigned closed;                /* close callbacks of the slow pipes */
};

static void submit(void *impl, struct bw_msg *m)
{
    struct uv_bench *ub = impl;
    int err;

    bw_handoff_push(&ub->queue, m);
    err = uv_async_send(&ub->wakeup);
    if (err != 0) {
        fprintf(stderr, "uv: uv_async_send: %s\n", uv_strerror(err));
        exit(1);
    }
}

static void on_written(uv_write_t *req, int status)
{
    struct bw_msg *m = req->data;
    struct uv_bench *ub = req->handle->data;

    bw_complete(m, status < 0 ? -status : 0, status < 0 ? 0 : m->size);
    if (bw_all_completed(ub->bench))
        uv_stop(&ub->loop);
}

static void on_wakeup(uv_async_t *async)
{
    struct uv_bench *ub = async->data;
    struct bw_msg *m, *next;

    for (m = bw_handoff_take(&ub->queue); m != NULL; m = next) {
        uv_buf_t buf = uv_buf_init((char *)m->data, (unsigned)m->size);
        uv_write_t *req = &ub->reqs[m->slot];
        int err;

        next = m->next;
        req->data = m;
        err = uv_write(req, (uv_stream_t *)&ub->pipes[m->conn], &buf, 1, on_written);
        if (err != 0) {
            fprintf(stderr, "uv: uv_write: %s\n", uv_strerror(err));
            exit(1);
        }
    }
}

static void on_closed(uv_handle_t *handle)
{
    struct uv_bench *ub = handle->data;

    ub->closed++;
    handle->data = NULL;            /* teardown() skips it */
}

static void close_one(void *impl, unsigned conn)
{
    struct uv_bench *ub = impl;

    uv_close((uv_handle_t *)&ub->pipes[conn], on_closed);
}

/* Closes the slow pipes (timed), then runs the loop on the calling
 * thread until their close callbacks, which come after their write
 * callbacks, have run. */
static void close_stuck(struct bw_bench *b, struct uv_bench *ub)
{
    bw_close_stuck(b, close_one, ub);
    while (ub->closed < b->o.slow)
        uv_run(&ub->loop, UV_RUN_ONCE);
}

/* The loop thread: runs until the last write callback stops it.  The
 * handles stay open until the producers are joined, since a producer may
 * still be inside uv_async_send(). */
static void *loop_main(void *arg)
{
    struct uv_bench *ub = arg;

    uv_run(&ub->loop, UV_RUN_DEFAULT);
    return NULL;
}

static int setup(struct bw_bench *b, struct uv_bench *ub)
{
    int err;

    ub->bench = b;
    ub->pipes = calloc(bw_conns(b), sizeof(*ub->pipes));
    ub->reqs = calloc(bw_slots(b), sizeof(*ub->reqs));
    if (ub->pipes == NULL || ub->reqs == NULL)
        return 1;
    err = uv_loop_init(&ub->loop);
    if (err == 0)
        err = uv_async_init(&ub->loop, &ub->wakeup, on_wakeup);
    if (err != 0) {
        fprintf(stderr, "uv: loop setup: %s\n", uv_strerror(err));
        return 1;
    }
    ub->wakeup.data = ub;
    for (unsigned c = 0; c < bw_conns(b); c++) {
        err = uv_pipe_init(&ub->loop, &ub->pipes[c], 0);
        if (err == 0)
            err = uv_pipe_open(&ub->pipes[c], b->write_fds[c]);
        if (err != 0) {
            fprintf(stderr, "uv: uv_pipe_open: %s\n", uv_strerror(err));
            return 1;
        }
        ub->pipes[c].data = ub;
        b->write_fds[c] = -1;       /* uv_close() closes it */
    }
    return 0;
}

/* Closes every handle (and so the write ends) and the loop. */
static void teardown(struct uv_bench *ub, unsigned connections)
{
    if (ub->pipes == NULL || ub->wakeup.data == NULL)
        return;
    for (unsigned c = 0; c < connections; c++)
        if (ub->pipes[c].data != NULL)
            uv_close((uv_handle_t *)&ub->pipes[c], NULL);
    uv_close((uv_handle_t *)&ub->wakeup, NULL);
    uv_run(&ub->loop, UV_RUN_DEFAULT);
    uv_loop_close(&ub->loop);
}

int main(int argc, char **argv)
{
    struct bw_bench b;
    struct uv_bench ub = { .queue = BW_HANDOFF_INIT };
    int status = bw_init(&b, "uv", argc, argv);

    if (status == 0)
        status = setup(&b, &ub);
    if (status == 0)
        status = bw_run_beside(&b, loop_main, submit, &ub);
    if (status == 0) {
        close_stuck(&b, &ub);
        status = bw_report(&b, bw_interposed_writes(&b));
    }
    teardown(&ub, bw_conns(&b));
    free(ub.pipes);
    free(ub.reqs);
    bw_fini(&b);
    return status;
}
