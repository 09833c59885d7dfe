/*
 * test_timer.c - io_timer and io_clock_now: a wait never completes before
 * its expiry, waits that expire complete in expiry order (ties in start
 * order), every way of cancelling a wait (cancel, expires_at/after while
 * pending, each cancel signal type, destroy, context destroy) ends it
 * exactly once with ECANCELED and is counted, a cancel racing the expiry
 * either counts or finds error 0, destroy from a handler, a pending wait
 * keeps run going, a new earliest wait wakes the sleeping workers,
 * allocation failures lose nothing, and repeated waits allocate nothing.
 */
#include <errno.h>

#include "alloc.h"
#include "test_util.h"
#include "timer_queue.h"     /* IO_TIMER_SPARES_MAX */

#define MS 1000000ull

/* What one wait's handler saw. */
struct wait_rec {
    atomic_int calls;
    atomic_int error;               /* -1 until it ran */
    atomic_int outside_run;
    atomic_int strand_wrong;
    uint64_t expiry;                /* what it waited for */
    uint64_t fired_at;              /* io_clock_now() in the handler */
    const io_strand *strand;        /* must be running in the handler */
    io_timer *destroy;              /* the handler destroys it */
    struct wait_log *log;           /* NULL: not logged */
    int index;
};

/* The order handlers ran in (they share one strand). */
struct wait_log {
    atomic_int count;
    int *order;
};

static void recs_init(struct wait_rec *r, int n)
{
    for (int i = 0; i < n; i++) {
        memset(&r[i], 0, sizeof(r[i]));
        atomic_init(&r[i].error, -1);
        r[i].index = i;
    }
}

static void on_wait(void *arg, int error)
{
    struct wait_rec *r = arg;

    r->fired_at = io_clock_now();
    if (!tu_inside_run)
        atomic_fetch_add(&r->outside_run, 1);
    if (r->strand != NULL && !io_strand_running_in_this_thread(r->strand))
        atomic_fetch_add(&r->strand_wrong, 1);
    if (r->log != NULL)
        r->log->order[atomic_fetch_add(&r->log->count, 1)] = r->index;
    atomic_store(&r->error, error);
    if (r->destroy != NULL)
        io_timer_destroy(r->destroy);
    atomic_fetch_add(&r->calls, 1);
}

static int wait_on(io_timer *t, struct wait_rec *r, io_cancel_signal *sig)
{
    r->expiry = io_timer_expiry(t);
    return io_timer_async_wait(t, on_wait, r, sig);
}

static io_timer *new_timer(io_context *ctx, io_strand *strand)
{
    io_timer *t = NULL;

    ck_assert_int_eq(io_timer_create(ctx, strand, &t), 0);
    ck_assert_ptr_nonnull(t);
    return t;
}

static void assert_ran_once(struct wait_rec *r, int error)
{
    ck_assert_msg(tu_int(&r->calls) == 1, "wait %d: handler ran %d times", r->index,
                  tu_int(&r->calls));
    ck_assert_msg(tu_int(&r->error) == error, "wait %d: error %d, expected %d", r->index,
                  tu_int(&r->error), error);
    ck_assert_int_eq(tu_int(&r->outside_run), 0);
    ck_assert_int_eq(tu_int(&r->strand_wrong), 0);
}

/* ------------------------------------------------------------------ */

START_TEST(bad_arguments_are_refused)
{
    io_context *ctx = tu_new_context(1), *other = tu_new_context(1);
    io_strand *foreign = tu_new_strand(other);
    io_timer *t = NULL;
    struct wait_rec r;

    recs_init(&r, 1);
    ck_assert_int_eq(io_timer_create(NULL, NULL, &t), EINVAL);
    ck_assert_int_eq(io_timer_create(ctx, NULL, NULL), EINVAL);
    ck_assert_int_eq(io_timer_create(ctx, foreign, &t), EINVAL);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(io_timer_async_wait(NULL, on_wait, &r, NULL), EINVAL);
    t = new_timer(ctx, NULL);
    ck_assert_int_eq(io_timer_async_wait(t, NULL, &r, NULL), EINVAL);
    ck_assert_uint_eq(io_timer_expires_at(NULL, 1), 0);
    ck_assert_uint_eq(io_timer_expires_after(NULL, 1), 0);
    ck_assert_uint_eq(io_timer_expiry(NULL), 0);
    ck_assert_uint_eq(io_timer_cancel(NULL), 0);
    io_timer_destroy(NULL);
    /* A new timer has expired already, at 0. */
    ck_assert_uint_eq(io_timer_expiry(t), 0);
    io_timer_destroy(t);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 0);
    ck_assert_int_eq(tu_int(&r.calls), 0);
    io_strand_destroy(foreign);
    tu_destroy_context(ctx);
    tu_destroy_context(other);
}
END_TEST

START_TEST(clock_is_monotonic_nanoseconds)
{
    uint64_t a = io_clock_now(), b;
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    b = io_clock_now();
    ck_assert_uint_le(a, b);
    /* The same clock as CLOCK_MONOTONIC, in ns. */
    ck_assert_uint_le(a, (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
    ck_assert_uint_ge(b, (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}
END_TEST

START_TEST(expired_wait_completes_in_run_never_inside_the_call)
{
    io_context *ctx = tu_new_context(1);
    io_timer *t = new_timer(ctx, NULL);
    struct wait_rec r;

    recs_init(&r, 1);
    ck_assert_int_eq(wait_on(t, &r, NULL), 0);
    ck_assert_int_eq(tu_int(&r.calls), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 1);
    assert_ran_once(&r, 0);
    ck_assert_uint_eq(tu_stats(ctx).handlers_run, 1);
    io_timer_destroy(t);
    tu_destroy_context(ctx);
}
END_TEST

/* Waits due in 1..40 ms, run completes each at or after its expiry, on
 * the strand given to create; run returns only when all are done. */
START_TEST(never_completes_before_its_expiry)
{
    enum { N = 8 };
    io_context *ctx = tu_new_context(2);
    io_strand *strand = tu_new_strand(ctx);
    io_timer *t[N];
    struct wait_rec r[N];

    recs_init(r, N);
    for (int i = 0; i < N; i++) {
        t[i] = new_timer(ctx, strand);
        r[i].strand = strand;
        ck_assert_uint_eq(io_timer_expires_after(t[i], (uint64_t)(1 + 5 * i) * MS), 0);
        ck_assert_int_eq(wait_on(t[i], &r[i], NULL), 0);
    }
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), N);
    for (int i = 0; i < N; i++) {
        assert_ran_once(&r[i], 0);
        ck_assert_msg(r[i].fired_at >= r[i].expiry, "wait %d ran %llu ns early", i,
                      (unsigned long long)(r[i].expiry - r[i].fired_at));
        io_timer_destroy(t[i]);
    }
    io_strand_destroy(strand);
    tu_destroy_context(ctx);
}
END_TEST

static void assert_expiry_order(struct wait_rec *r, const struct wait_log *log, int n)
{
    for (int k = 1; k < n; k++) {
        const struct wait_rec *a = &r[log->order[k - 1]], *b = &r[log->order[k]];

        ck_assert_msg(a->expiry < b->expiry || (a->expiry == b->expiry && a->index < b->index),
                      "wait %d (expiry %llu) ran before wait %d (expiry %llu)", a->index,
                      (unsigned long long)a->expiry, b->index, (unsigned long long)b->expiry);
    }
}

/* Waits started in an order unlike their expiries, some sharing one,
 * complete by expiry, ties in start order, as their one strand sees it. */
START_TEST(expired_waits_complete_in_expiry_then_start_order)
{
    enum { N = 24 };
    static const unsigned due_ms[N] = { 9, 3, 3, 15, 1, 9, 9, 27, 3, 21, 1, 15,
                                        12, 6, 6, 24, 0, 18, 0, 12, 30, 6, 24, 3 };
    io_context *ctx = tu_new_context(2);
    io_strand *strand = tu_new_strand(ctx);
    io_timer *t[31] = { 0 };
    struct wait_rec r[N];
    int order[N];
    struct wait_log log = { .order = order };
    uint64_t base = io_clock_now() + 200 * MS;     /* all started by then, even under TSan */

    recs_init(r, N);
    for (int i = 0; i < N; i++) {
        /* Waits with equal expiries share a timer. */
        unsigned slot = due_ms[i];

        if (t[slot] == NULL) {
            t[slot] = new_timer(ctx, strand);
            io_timer_expires_at(t[slot], base + due_ms[i] * MS);
        }
        r[i].strand = strand;
        r[i].log = &log;
        ck_assert_int_eq(wait_on(t[slot], &r[i], NULL), 0);
    }
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), N);
    ck_assert_int_eq(tu_int(&log.count), N);
    for (int i = 0; i < N; i++)
        assert_ran_once(&r[i], 0);
    assert_expiry_order(r, &log, N);
    for (int i = 0; i < 31; i++)
        io_timer_destroy(t[i]);
    io_strand_destroy(strand);
    tu_destroy_context(ctx);
}
END_TEST

/* Ties between different timers are in start order too. */
START_TEST(ties_between_timers_complete_in_start_order)
{
    enum { N = 16 };
    io_context *ctx = tu_new_context(1);
    io_strand *strand = tu_new_strand(ctx);
    io_timer *t[N];
    struct wait_rec r[N];
    int order[N];
    struct wait_log log = { .order = order };
    uint64_t due = io_clock_now() + 10 * MS;

    recs_init(r, N);
    for (int i = 0; i < N; i++) {
        t[i] = new_timer(ctx, strand);
        io_timer_expires_at(t[i], due);
        r[i].log = &log;
        ck_assert_int_eq(wait_on(t[i], &r[i], NULL), 0);
    }
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), N);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(order[i], i);
        io_timer_destroy(t[i]);
    }
    io_strand_destroy(strand);
    tu_destroy_context(ctx);
}
END_TEST

/*
 * 100,000 waits with random expiries over 300 ms fire in order.  The one
 * worker is held inside a sendmsg while they go in, so that all of them
 * are pending together (insertion takes longer than some expiries are
 * away, and a wait started after an earlier one fired may rightly run
 * after it): when it is let go, it finds many due at once.
 */
START_TEST(many_random_timers_fire_in_order)
{
    enum { N = 100000 };
    struct tu_stream io;
    struct tu_call_gate gate;
    struct tu_result written;
    io_strand *strand;
    io_timer **t = calloc(N, sizeof(*t));
    struct wait_rec *r = calloc(N, sizeof(*r));
    int *order = calloc(N, sizeof(*order));
    struct wait_log log = { .order = order };
    uint64_t seed = 42, base;
    unsigned char byte[1];

    ck_assert(t != NULL && r != NULL && order != NULL);
    tu_stream_open(&io, TU_SOCKETPAIR, 1);
    strand = tu_new_strand(io.ctx);
    tu_results_init(&written, 1);
    tu_gate_next_write(io.fd, &gate);
    ck_assert_int_eq(tu_write_all(io.d, "x", 1, &written), 0);
    ck_assert(tu_latch_wait_for(&gate.entered, TU_WAIT_S));
    tu_ungate_write();

    recs_init(r, N);
    base = io_clock_now();
    for (int i = 0; i < N; i++) {
        t[i] = new_timer(io.ctx, strand);
        io_timer_expires_at(t[i], base + tu_splitmix64(&seed) % (300 * MS));
        r[i].log = &log;
        ck_assert_int_eq(wait_on(t[i], &r[i], NULL), 0);
    }
    tu_latch_count_down(&gate.released);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), N + 1);
    tu_assert_result(&written, 0, 1);
    tu_read_exactly(io.peer, byte, 1);
    ck_assert_int_eq(tu_int(&log.count), N);
    assert_expiry_order(r, &log, N);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(tu_int(&r[i].calls), 1);
        ck_assert_int_eq(tu_int(&r[i].error), 0);
        ck_assert_uint_ge(r[i].fired_at, r[i].expiry);
        io_timer_destroy(t[i]);
    }
    free(order);
    free(r);
    free(t);
    io_strand_destroy(strand);
    tu_stream_close(&io);
}
END_TEST

/* cancel, expires_at and expires_after end pending waits with ECANCELED
 * and return how many; a timer with nothing pending returns 0. */
START_TEST(cancel_and_new_expiry_cancel_pending_waits_and_count_them)
{
    io_context *ctx = tu_new_context(1);
    io_timer *t = new_timer(ctx, NULL);
    struct wait_rec r[7];
    uint64_t later;

    recs_init(r, 7);
    io_timer_expires_after(t, 3600 * 1000 * MS);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(wait_on(t, &r[i], NULL), 0);
    ck_assert_uint_eq(io_timer_cancel(t), 3);
    ck_assert_uint_eq(io_timer_cancel(t), 0);
    for (int i = 3; i < 5; i++)
        ck_assert_int_eq(wait_on(t, &r[i], NULL), 0);
    later = io_clock_now() + 7200 * 1000 * MS;
    ck_assert_uint_eq(io_timer_expires_at(t, later), 2);
    ck_assert_uint_eq(io_timer_expiry(t), later);
    ck_assert_int_eq(wait_on(t, &r[5], NULL), 0);
    ck_assert_uint_eq(io_timer_expires_after(t, 0), 1);
    ck_assert_uint_le(io_timer_expiry(t), io_clock_now());
    /* Expired now: this one completes with 0. */
    ck_assert_int_eq(wait_on(t, &r[6], NULL), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 7);
    for (int i = 0; i < 6; i++)
        assert_ran_once(&r[i], ECANCELED);
    assert_ran_once(&r[6], 0);
    io_timer_destroy(t);
    tu_destroy_context(ctx);
}
END_TEST

START_TEST(expires_after_saturates)
{
    io_context *ctx = tu_new_context(1);
    io_timer *t = new_timer(ctx, NULL);

    io_timer_expires_after(t, UINT64_MAX);
    ck_assert_uint_eq(io_timer_expiry(t), UINT64_MAX);
    io_timer_destroy(t);
    tu_destroy_context(ctx);
}
END_TEST

/* Each type cancels a pending wait; a signal attached to a pending wait
 * refuses a second (EBUSY, no trace), and is free again once it ended. */
START_TEST(every_cancel_signal_type_cancels_a_wait)
{
    static const unsigned types[] = { IO_CANCEL_TERMINAL, IO_CANCEL_PARTIAL, IO_CANCEL_TOTAL };
    io_context *ctx = tu_new_context(1);
    io_timer *t = new_timer(ctx, NULL);
    io_cancel_signal *sig = tu_new_signal();
    struct wait_rec r[4], refused;

    recs_init(r, 4);
    recs_init(&refused, 1);
    io_timer_expires_after(t, 3600 * 1000 * MS);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(wait_on(t, &r[i], sig), 0);
        ck_assert_int_eq(wait_on(t, &refused, sig), EBUSY);
        io_cancel_signal_emit(sig, 1u << 7);        /* no such type: nothing */
        io_cancel_signal_emit(sig, types[i]);
        ck_assert_uint_eq(tu_run_marked(io_context_run_one, ctx), 1);
        assert_ran_once(&r[i], ECANCELED);
        io_context_restart(ctx);
    }
    /* An emit after the wait ended does nothing to the next one. */
    ck_assert_int_eq(wait_on(t, &r[3], NULL), 0);
    io_cancel_signal_emit(sig, IO_CANCEL_TERMINAL);
    ck_assert_uint_eq(io_timer_cancel(t), 1);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 1);
    assert_ran_once(&r[3], ECANCELED);
    ck_assert_int_eq(tu_int(&refused.calls), 0);
    io_cancel_signal_destroy(sig);
    io_timer_destroy(t);
    tu_destroy_context(ctx);
}
END_TEST

/* A signal destroyed while attached lets the wait go on, to its expiry. */
START_TEST(destroying_an_attached_signal_leaves_the_wait)
{
    io_context *ctx = tu_new_context(1);
    io_timer *t = new_timer(ctx, NULL);
    io_cancel_signal *sig = tu_new_signal();
    struct wait_rec r;

    recs_init(&r, 1);
    io_timer_expires_after(t, 5 * MS);
    ck_assert_int_eq(wait_on(t, &r, sig), 0);
    io_cancel_signal_destroy(sig);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 1);
    assert_ran_once(&r, 0);
    ck_assert_uint_ge(r.fired_at, r.expiry);
    io_timer_destroy(t);
    tu_destroy_context(ctx);
}
END_TEST

/* destroy cancels; a handler may destroy its own timer or another, whose
 * memory lasts until its last handler has run (ASan says if not). */
START_TEST(destroy_cancels_and_may_be_called_from_a_handler)
{
    io_context *ctx = tu_new_context(1);
    io_strand *strand = tu_new_strand(ctx);
    io_timer *a = new_timer(ctx, NULL), *b = new_timer(ctx, strand), *c = new_timer(ctx, strand);
    io_timer *d = new_timer(ctx, NULL);
    struct wait_rec ra[2], rb[2], rc, rd[2];

    recs_init(ra, 2);
    recs_init(rb, 2);
    recs_init(&rc, 1);
    recs_init(rd, 2);
    /* a: destroyed with two waits pending. */
    io_timer_expires_after(a, 3600 * 1000 * MS);
    ck_assert_int_eq(wait_on(a, &ra[0], NULL), 0);
    ck_assert_int_eq(wait_on(a, &ra[1], NULL), 0);
    io_timer_destroy(a);
    /* b's waits are pending when c's handler destroys b. */
    io_timer_expires_after(b, 3600 * 1000 * MS);
    ck_assert_int_eq(wait_on(b, &rb[0], NULL), 0);
    ck_assert_int_eq(wait_on(b, &rb[1], NULL), 0);
    rc.destroy = b;
    ck_assert_int_eq(wait_on(c, &rc, NULL), 0);
    /* d's first handler destroys d; the second, due too, has expired by
     * then or is cancelled by that destroy (a cancel racing the expiry):
     * either way it runs once, after d's handle is gone. */
    rd[0].destroy = d;
    ck_assert_int_eq(wait_on(d, &rd[0], NULL), 0);
    ck_assert_int_eq(wait_on(d, &rd[1], NULL), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 7);
    assert_ran_once(&ra[0], ECANCELED);
    assert_ran_once(&ra[1], ECANCELED);
    assert_ran_once(&rb[0], ECANCELED);
    assert_ran_once(&rb[1], ECANCELED);
    assert_ran_once(&rc, 0);
    assert_ran_once(&rd[0], 0);
    ck_assert_int_eq(tu_int(&rd[1].calls), 1);
    ck_assert(tu_int(&rd[1].error) == 0 || tu_int(&rd[1].error) == ECANCELED);
    io_timer_destroy(c);
    io_strand_destroy(strand);
    tu_destroy_context(ctx);
}
END_TEST

/* Pending waits end with ECANCELED in context destroy, on its thread;
 * timers the user did not destroy go with it. */
START_TEST(context_destroy_cancels_pending_waits)
{
    io_context *ctx = tu_new_context(2);
    io_timer *t = new_timer(ctx, NULL), *kept = new_timer(ctx, NULL);
    struct wait_rec r[3];

    recs_init(r, 3);
    io_timer_expires_after(t, 3600 * 1000 * MS);
    io_timer_expires_after(kept, 3600 * 1000 * MS);
    ck_assert_int_eq(wait_on(t, &r[0], NULL), 0);
    ck_assert_int_eq(wait_on(t, &r[1], NULL), 0);
    ck_assert_int_eq(wait_on(kept, &r[2], NULL), 0);
    io_timer_destroy(t);
    tu_inside_run = true;           /* destroy runs the handlers here */
    tu_destroy_context(ctx);
    tu_inside_run = false;
    for (int i = 0; i < 3; i++)
        assert_ran_once(&r[i], ECANCELED);
}
END_TEST

/* A wait started from a handler that context destroy runs is cancelled
 * at once. */
static void wait_again(void *arg, int error)
{
    struct wait_rec *r = arg;

    (void)error;
    ck_assert_int_eq(io_timer_async_wait(r->destroy, on_wait, &r[1], NULL), 0);
    atomic_fetch_add(&r->calls, 1);
}

START_TEST(wait_started_during_context_destroy_is_cancelled)
{
    io_context *ctx = tu_new_context(1);
    io_timer *t = new_timer(ctx, NULL);
    struct wait_rec r[2];

    recs_init(r, 2);
    r[0].destroy = t;
    io_timer_expires_after(t, 3600 * 1000 * MS);
    ck_assert_int_eq(io_timer_async_wait(t, wait_again, &r[0], NULL), 0);
    tu_inside_run = true;
    tu_destroy_context(ctx);
    tu_inside_run = false;
    ck_assert_int_eq(tu_int(&r[0].calls), 1);
    assert_ran_once(&r[1], ECANCELED);
}
END_TEST

/* The workers sleep until the earliest expiry: a wait due sooner than
 * the one they sleep for must wake them. */
START_TEST(an_earlier_wait_wakes_the_sleeping_workers)
{
    io_context *ctx = tu_new_context(1);
    io_timer *far = new_timer(ctx, NULL), *near = new_timer(ctx, NULL);
    struct wait_rec r[2];
    struct tu_runner runner;
    uint64_t started;

    recs_init(r, 2);
    io_timer_expires_after(far, 3600 * 1000 * MS);
    ck_assert_int_eq(wait_on(far, &r[0], NULL), 0);
    tu_runner_start(&runner, ctx, io_context_run, NULL);
    started = io_clock_now();
    io_timer_expires_after(near, 20 * MS);
    ck_assert_int_eq(wait_on(near, &r[1], NULL), 0);
    while (tu_int(&r[1].calls) == 0 && io_clock_now() - started < TU_WAIT_S * 1000 * MS)
        sched_yield();
    assert_ran_once(&r[1], 0);
    ck_assert_int_eq(tu_int(&r[0].calls), 0);
    ck_assert_uint_eq(io_timer_cancel(far), 1);
    tu_runner_join(&runner);
    assert_ran_once(&r[0], ECANCELED);
    io_timer_destroy(far);
    io_timer_destroy(near);
    tu_destroy_context(ctx);
}
END_TEST

/* run does not return while a wait is pending. */
START_TEST(a_pending_wait_keeps_run_going)
{
    io_context *ctx = tu_new_context(1);
    io_timer *t = new_timer(ctx, NULL);
    struct wait_rec r;
    uint64_t due;

    recs_init(&r, 1);
    io_timer_expires_after(t, 30 * MS);
    due = io_timer_expiry(t);
    ck_assert_int_eq(wait_on(t, &r, NULL), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 1);
    ck_assert_uint_ge(io_clock_now(), due);
    assert_ran_once(&r, 0);
    io_timer_destroy(t);
    tu_destroy_context(ctx);
}
END_TEST

/* Four run threads, timers on several strands, and a thread that cancels
 * while they expire: every handler runs once, and the waits counted as
 * cancelled are exactly those that saw ECANCELED. */
struct race {
    io_timer **timers;
    int ntimers;
    atomic_size_t counted;
};

static void *cancel_while_expiring(void *arg)
{
    struct race *race = arg;

    for (int round = 0; round < 4; round++)
        for (int i = round % 2; i < race->ntimers; i += 2)
            atomic_fetch_add(&race->counted, io_timer_cancel(race->timers[i]));
    return NULL;
}

START_TEST(cancel_racing_expiry_counts_exactly_the_cancelled)
{
    enum { TIMERS = 64, WAITS = 8, STRANDS = 4 };
    io_context *ctx = tu_new_context(2);
    io_strand *strands[STRANDS];
    io_timer *t[TIMERS];
    struct wait_rec *r = calloc(TIMERS * WAITS, sizeof(*r));
    struct race race = { .timers = t, .ntimers = TIMERS };
    uint64_t seed = 7, base = io_clock_now() + 2 * MS;
    size_t cancelled = 0;

    ck_assert_ptr_nonnull(r);
    atomic_init(&race.counted, 0);
    recs_init(r, TIMERS * WAITS);
    for (int s = 0; s < STRANDS; s++)
        strands[s] = tu_new_strand(ctx);
    for (int i = 0; i < TIMERS; i++) {
        t[i] = new_timer(ctx, i % 5 == 4 ? NULL : strands[i % STRANDS]);
        io_timer_expires_at(t[i], base + tu_splitmix64(&seed) % (3 * MS));
        for (int k = 0; k < WAITS; k++)
            ck_assert_int_eq(wait_on(t[i], &r[i * WAITS + k], NULL), 0);
    }
    ck_assert_uint_eq(tu_run_while(ctx, 4, cancel_while_expiring, &race, sizeof(race), 1),
                      TIMERS * WAITS);
    for (int i = 0; i < TIMERS * WAITS; i++) {
        ck_assert_int_eq(tu_int(&r[i].calls), 1);
        ck_assert(tu_int(&r[i].error) == 0 || tu_int(&r[i].error) == ECANCELED);
        if (tu_int(&r[i].error) == ECANCELED)
            cancelled++;
        else
            ck_assert_uint_ge(r[i].fired_at, r[i].expiry);
    }
    ck_assert_uint_eq(cancelled, atomic_load(&race.counted));
    for (int i = 0; i < TIMERS; i++)
        io_timer_destroy(t[i]);
    for (int s = 0; s < STRANDS; s++)
        io_strand_destroy(strands[s]);
    free(r);
    tu_destroy_context(ctx);
}
END_TEST

/* A wait starts in the block of one that ended, as a timer re-armed from
 * its handler does again and again: after the first, nothing is
 * allocated.  A burst of waits leaves at most IO_TIMER_SPARES_MAX blocks
 * behind. */
START_TEST(repeated_waits_reuse_blocks_and_a_burst_leaves_a_bounded_cache)
{
    enum { REPEATS = 1000, BURST = 3 * IO_TIMER_SPARES_MAX };
    io_context *ctx = tu_new_context(1);
    io_timer *t = new_timer(ctx, NULL);
    struct wait_rec *r = calloc(BURST, sizeof(*r));
    size_t before = 0, live;

    ck_assert_ptr_nonnull(r);
    io_timer_expires_after(t, 3600 * 1000 * MS);
    for (int i = 0; i <= REPEATS; i++) {
        if (i == 1)
            before = io__alloc_calls();     /* the first wait allocated its block */
        recs_init(r, 1);
        ck_assert_int_eq(wait_on(t, &r[0], NULL), 0);
        ck_assert_uint_eq(io_timer_cancel(t), 1);
        ck_assert_uint_eq(tu_run_marked(io_context_run_one, ctx), 1);
        assert_ran_once(&r[0], ECANCELED);
        io_context_restart(ctx);
    }
    ck_assert_uint_eq(io__alloc_calls() - before, 0);

    live = io__alloc_live();
    recs_init(r, BURST);
    for (int i = 0; i < BURST; i++)
        ck_assert_int_eq(wait_on(t, &r[i], NULL), 0);
    ck_assert_uint_eq(io_timer_cancel(t), BURST);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), BURST);
    for (int i = 0; i < BURST; i++)
        assert_ran_once(&r[i], ECANCELED);
    ck_assert_uint_le(io__alloc_live(), live + IO_TIMER_SPARES_MAX);
    io_timer_destroy(t);
    free(r);
    tu_destroy_context(ctx);
}
END_TEST

/* Every allocation a timer makes may fail: the call says ENOMEM and
 * nothing is left behind or run. */
START_TEST(allocation_failures_lose_nothing)
{
    io_context *ctx = tu_new_context(1);
    io_timer *t = NULL;
    struct wait_rec r[2];
    size_t live;

    recs_init(r, 2);
    live = io__alloc_live();
    for (long n = 1; n <= 2; n++) {       /* the timer, its private strand */
        io__alloc_fail_after(n);
        ck_assert_int_eq(io_timer_create(ctx, NULL, &t), ENOMEM);
        io__alloc_fail_after(0);
        ck_assert_uint_eq(io__alloc_live(), live);
    }
    t = new_timer(ctx, NULL);
    live = io__alloc_live();
    for (long n = 1; n <= 2; n++) {       /* the wait, the heap's first array */
        io__alloc_fail_after(n);
        ck_assert_int_eq(wait_on(t, &r[0], NULL), ENOMEM);
        io__alloc_fail_after(0);
        ck_assert_uint_eq(io__alloc_live(), live);
    }
    ck_assert_int_eq(wait_on(t, &r[1], NULL), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 1);
    ck_assert_int_eq(tu_int(&r[0].calls), 0);
    assert_ran_once(&r[1], 0);
    io_timer_destroy(t);
    tu_destroy_context(ctx);
}
END_TEST

void tu_add_tests(Suite *s)
{
    tu_add_tcase(s, "api", TU_TESTS(bad_arguments_are_refused, clock_is_monotonic_nanoseconds,
                                    expired_wait_completes_in_run_never_inside_the_call,
                                    expires_after_saturates, allocation_failures_lose_nothing,
                                    repeated_waits_reuse_blocks_and_a_burst_leaves_a_bounded_cache));
    tu_add_tcase(s, "expiry", TU_TESTS(never_completes_before_its_expiry,
                                       expired_waits_complete_in_expiry_then_start_order,
                                       ties_between_timers_complete_in_start_order,
                                       many_random_timers_fire_in_order,
                                       an_earlier_wait_wakes_the_sleeping_workers,
                                       a_pending_wait_keeps_run_going));
    tu_add_tcase(s, "cancel", TU_TESTS(cancel_and_new_expiry_cancel_pending_waits_and_count_them,
                                       every_cancel_signal_type_cancels_a_wait,
                                       destroying_an_attached_signal_leaves_the_wait,
                                       destroy_cancels_and_may_be_called_from_a_handler,
                                       context_destroy_cancels_pending_waits,
                                       wait_started_during_context_destroy_is_cancelled,
                                       cancel_racing_expiry_counts_exactly_the_cancelled));
}
