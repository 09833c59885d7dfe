/*
 * bench_timer.c - the timer workload (bench_timer_common.h) on ioctx.
 *
 * R threads (--run-threads, default 2) run handlers in io_context_run,
 * K workers (--workers, default 1) watch the clock.  Every timer has its
 * private strand (io_timer_create with no strand).  Lateness: the handler
 * reads io_clock_now() first and subtracts the expiry it gave
 * io_timer_expires_at().  Start and cancel: io_timer_expires_after +
 * io_timer_async_wait + io_timer_cancel from the main thread; each
 * handler must run, with ECANCELED, before the time stops.  Every
 * background wait must end once, with ECANCELED, at io_timer_destroy().
 */
#include <errno.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench_common.h"
#include "bench_timer_common.h"
#include "ioctx.h"

struct bench {
    struct bt_options o;
    io_context *ctx;
    uint64_t rng;
    sem_t done;                 /* posted when a measurement's last handler has run */
    io_timer **background;      /* P - 1 */
    io_timer **set;             /* T, for start and cancel */
    io_timer *measured;
    /* The measured waits: only the handler of the wait in progress (or
     * the main thread, before the first) touches these. */
    uint64_t expiry;
    unsigned long waits_done;
    struct bt_lateness late;
    atomic_ulong cancelled;     /* handlers of the started-and-cancelled waits */
    atomic_ulong ended;         /* handlers of the background and idle waits */
    atomic_ulong wrong;         /* handlers with an unexpected error */
};

static void wait_done(struct bench *b)
{
    while (sem_wait(&b->done) != 0 && errno == EINTR)
        continue;
}

static void measured_expired(void *arg, int error);

static int start_measured(struct bench *b)
{
    b->expiry = io_clock_now() + bt_measured_ns(&b->rng);
    io_timer_expires_at(b->measured, b->expiry);
    return io_timer_async_wait(b->measured, measured_expired, b, NULL);
}

static void measured_expired(void *arg, int error)
{
    uint64_t now = io_clock_now();
    struct bench *b = arg;

    b->late.ns[b->waits_done++] = (int64_t)(now - b->expiry);
    if (error != 0 || b->waits_done == b->o.waits || start_measured(b) != 0) {
        if (error != 0 || b->waits_done < b->o.waits)
            atomic_fetch_add(&b->wrong, 1);
        sem_post(&b->done);
    }
}

static void cancelled(void *arg, int error)
{
    struct bench *b = arg;

    if (error != ECANCELED)
        atomic_fetch_add(&b->wrong, 1);
    if (atomic_fetch_add(&b->cancelled, 1) + 1 == b->o.ops)
        sem_post(&b->done);
}

static void ended(void *arg, int error)
{
    struct bench *b = arg;

    if (error != ECANCELED)
        atomic_fetch_add(&b->wrong, 1);
    atomic_fetch_add(&b->ended, 1);
}

static int start_far(struct bench *b, io_timer *t, uint64_t delay_ns)
{
    io_timer_expires_after(t, delay_ns);
    return io_timer_async_wait(t, ended, b, NULL);
}

static int measure_lateness(struct bench *b)
{
    if (bt_lateness_init(&b->late, &b->o) != 0 || start_measured(b) != 0)
        return 1;
    wait_done(b);
    bt_report_lateness("ioctx", &b->o, &b->late);
    return 0;
}

static int measure_cancel(struct bench *b)
{
    double t0 = bench_now(), c0 = bt_cpu();
    unsigned long not_cancelled = 0;

    for (unsigned long i = 0; i < b->o.ops; i++) {
        io_timer *t = b->set[i % b->o.timers];

        io_timer_expires_after(t, BT_CANCELLED_NS);
        if (io_timer_async_wait(t, cancelled, b, NULL) != 0)
            return 1;
        not_cancelled += io_timer_cancel(t) != 1;
    }
    wait_done(b);
    bt_report_cancel("ioctx", &b->o, bench_now() - t0, bt_cpu() - c0);
    if (not_cancelled != 0)
        fprintf(stderr, "ioctx: %lu waits were not cancelled\n", not_cancelled);
    return not_cancelled != 0;
}

static int measure_idle(struct bench *b)
{
    struct timespec ts = { (time_t)(b->o.idle_ms / 1000), (long)(b->o.idle_ms % 1000) * 1000000 };
    double t0, c0;

    if (start_far(b, b->measured, BT_CANCELLED_NS) != 0)
        return 1;
    t0 = bench_now();
    c0 = bt_cpu();
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        continue;
    bt_report_idle("ioctx", &b->o, bench_now() - t0, bt_cpu() - c0);
    return 0;
}

static void *run(void *ctx)
{
    io_context_run(ctx);
    return NULL;
}

static int create_timers(struct bench *b)
{
    unsigned long nbg = b->o.pending - 1;

    b->background = calloc(nbg + 1, sizeof(*b->background));
    b->set = calloc(b->o.timers, sizeof(*b->set));
    if (b->background == NULL || b->set == NULL || io_timer_create(b->ctx, NULL, &b->measured) != 0)
        return 1;
    for (unsigned long i = 0; i < b->o.timers; i++)
        if (io_timer_create(b->ctx, NULL, &b->set[i]) != 0)
            return 1;
    for (unsigned long i = 0; i < nbg; i++)
        if (io_timer_create(b->ctx, NULL, &b->background[i]) != 0
            || start_far(b, b->background[i], bt_background_ns(&b->rng)) != 0)
            return 1;
    return 0;
}

/* Destroys every timer (which ends the far waits); NULL ones are skipped. */
static void destroy_timers(struct bench *b)
{
    for (unsigned long i = 0; b->background != NULL && i < b->o.pending - 1; i++)
        io_timer_destroy(b->background[i]);
    for (unsigned long i = 0; b->set != NULL && i < b->o.timers; i++)
        io_timer_destroy(b->set[i]);
    io_timer_destroy(b->measured);
    free(b->background);
    free(b->set);
}

int main(int argc, char **argv)
{
    struct bench b = { .rng = BT_SEED };
    io_context_options opts;
    pthread_t *runners;
    unsigned long far_waits;
    int status;

    status = bt_parse(&b.o, argc, argv);
    if (status != 0)
        return status;
    opts = (io_context_options){ .worker_threads = b.o.workers };
    runners = calloc(b.o.run_threads, sizeof(*runners));
    if (runners == NULL || sem_init(&b.done, 0, 0) != 0 || io_context_create(&b.ctx, &opts) != 0) {
        fprintf(stderr, "ioctx: setup failed\n");
        return 1;
    }
    io_context_work_started(b.ctx);
    for (unsigned i = 0; i < b.o.run_threads; i++)
        bench_start_thread(&runners[i], run, b.ctx);

    status = create_timers(&b);
    if (status == 0)
        status = measure_lateness(&b);
    if (status == 0)
        status = measure_cancel(&b);
    if (status == 0 && b.o.idle_ms > 0)
        status = measure_idle(&b);

    destroy_timers(&b);
    io_context_work_finished(b.ctx);
    for (unsigned i = 0; i < b.o.run_threads; i++)
        pthread_join(runners[i], NULL);
    io_context_destroy(b.ctx);
    far_waits = b.o.pending - 1 + (b.o.idle_ms > 0);
    if (status == 0 && (atomic_load(&b.wrong) != 0 || atomic_load(&b.ended) != far_waits)) {
        fprintf(stderr, "ioctx: %lu handlers with an unexpected result; %lu of %lu far waits ended\n",
                atomic_load(&b.wrong), atomic_load(&b.ended), far_waits);
        status = 1;
    }
    if (status != 0)
        fprintf(stderr, "ioctx: failed\n");
    bt_lateness_free(&b.late);
    sem_destroy(&b.done);
    free(runners);
    return status;
}
