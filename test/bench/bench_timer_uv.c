/*
 * bench_timer_uv.c - the timer workload (bench_timer_common.h) on libuv:
 * uv_timer_t.
 *
 * libuv's loop is single-threaded and its timer calls must be made on
 * the loop's thread: the whole program runs on one thread (--run-threads
 * and --workers do not apply).
 *
 * libuv's timers count whole milliseconds from the loop's cached clock
 * (uv_now), so a measured wait's delay is rounded to 1 or 2 ms and the
 * loop's clock is brought up to date first (uv_update_time); its
 * lateness is uv_hrtime() in the callback minus the intended due time,
 * uv_hrtime() just before uv_timer_start plus the delay in whole ms.  The
 * loop also sleeps in epoll_wait with a millisecond timeout.
 *
 * Start and cancel: uv_timer_start + uv_timer_stop.  A stopped timer's
 * callback never runs (libuv has no cancelled completion), so no handler
 * is counted here, unlike the other programs.  A background timer's
 * callback must never run either.
 */
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "bench_common.h"
#include "bench_timer_common.h"

struct bench {
    struct bt_options o;
    uv_loop_t loop;
    uint64_t rng;
    uv_timer_t *background;     /* P - 1 */
    uv_timer_t *set;            /* T, for start and stop */
    uv_timer_t measured, idle;
    uint64_t due;               /* the measured wait's, in uv_hrtime() ns */
    unsigned long waits_done;
    struct bt_lateness late;
    unsigned long wrong;        /* callbacks that should not have run */
};

static void never(uv_timer_t *t)
{
    ((struct bench *)t->data)->wrong++;
}

static void measured_expired(uv_timer_t *t);

static void start_measured(struct bench *b)
{
    uint64_t ms = (bt_measured_ns(&b->rng) + 500000) / 1000000;

    uv_update_time(&b->loop);
    b->due = uv_hrtime() + ms * 1000000;
    uv_timer_start(&b->measured, measured_expired, ms, 0);
}

static void measured_expired(uv_timer_t *t)
{
    uint64_t now = uv_hrtime();
    struct bench *b = t->data;

    b->late.ns[b->waits_done++] = (int64_t)(now - b->due);
    if (b->waits_done == b->o.waits)
        uv_stop(&b->loop);
    else
        start_measured(b);
}

static void idle_over(uv_timer_t *t)
{
    uv_stop(t->loop);
}

static int init_timer(struct bench *b, uv_timer_t *t)
{
    int err = uv_timer_init(&b->loop, t);

    t->data = b;
    if (err != 0)
        fprintf(stderr, "uv: uv_timer_init: %s\n", uv_strerror(err));
    return err != 0;
}

static int setup(struct bench *b)
{
    int err = uv_loop_init(&b->loop);

    if (err != 0) {
        fprintf(stderr, "uv: uv_loop_init: %s\n", uv_strerror(err));
        return 1;
    }
    b->background = calloc(b->o.pending, sizeof(*b->background));
    b->set = calloc(b->o.timers, sizeof(*b->set));
    if (b->background == NULL || b->set == NULL)
        return 1;
    if (init_timer(b, &b->measured) != 0 || init_timer(b, &b->idle) != 0)
        return 1;
    for (unsigned long i = 0; i < b->o.timers; i++)
        if (init_timer(b, &b->set[i]) != 0)
            return 1;
    for (unsigned long i = 0; i + 1 < b->o.pending; i++) {
        if (init_timer(b, &b->background[i]) != 0)
            return 1;
        uv_timer_start(&b->background[i], never, bt_background_ns(&b->rng) / 1000000, 0);
    }
    return 0;
}

static void close_all(struct bench *b)
{
    for (unsigned long i = 0; i + 1 < b->o.pending; i++)
        uv_close((uv_handle_t *)&b->background[i], NULL);
    for (unsigned long i = 0; i < b->o.timers; i++)
        uv_close((uv_handle_t *)&b->set[i], NULL);
    uv_close((uv_handle_t *)&b->measured, NULL);
    uv_close((uv_handle_t *)&b->idle, NULL);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    uv_loop_close(&b->loop);
}

static void measure_cancel(struct bench *b)
{
    double t0 = bench_now(), c0 = bt_cpu();

    for (unsigned long i = 0; i < b->o.ops; i++) {
        uv_timer_t *t = &b->set[i % b->o.timers];

        uv_timer_start(t, never, BT_CANCELLED_NS / 1000000, 0);
        uv_timer_stop(t);
    }
    bt_report_cancel("uv", &b->o, bench_now() - t0, bt_cpu() - c0);
}

static void measure_idle(struct bench *b)
{
    double t0, c0;

    uv_timer_start(&b->measured, never, BT_CANCELLED_NS / 1000000, 0);
    uv_timer_start(&b->idle, idle_over, b->o.idle_ms, 0);
    t0 = bench_now();
    c0 = bt_cpu();
    uv_run(&b->loop, UV_RUN_DEFAULT);
    bt_report_idle("uv", &b->o, bench_now() - t0, bt_cpu() - c0);
}

int main(int argc, char **argv)
{
    struct bench b = { .rng = BT_SEED };
    int status = bt_parse(&b.o, argc, argv);

    if (status != 0)
        return status;
    if (setup(&b) != 0) {
        fprintf(stderr, "uv: setup failed\n");
        return 1;
    }
    if (bt_lateness_init(&b.late, &b.o) != 0)
        return 1;
    start_measured(&b);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    bt_report_lateness("uv", &b.o, &b.late);
    measure_cancel(&b);
    if (b.o.idle_ms > 0)
        measure_idle(&b);
    close_all(&b);
    if (b.wrong != 0) {
        fprintf(stderr, "uv: %lu callbacks of stopped or far timers ran\n", b.wrong);
        status = 1;
    }
    bt_lateness_free(&b.late);
    free(b.background);
    free(b.set);
    return status;
}
