/*
 * test_send_timeout.c - io_descriptor_set_send_timeout: pending writes to
 * a reader that stopped reading complete with ETIMEDOUT (bytes reported
 * = bytes the reader can get), the descriptor stays open and later
 * writes are performed; a reader that keeps draining slowly never trips
 * it; a timeout changed or disabled while a write waits takes effect at
 * once; close, cancel and context destroy leave nothing behind; an
 * allocation failure loses nothing.
 *
 * Where a test must show that something did NOT happen within a time, it
 * waits on an io_timer of the same context, not a sleep.
 */
#include <errno.h>
#include <fcntl.h>

#include "alloc.h"
#include "test_util.h"

#define MS 1000000ull

/* A write that records when its handler ran. */
struct timed {
    struct tu_result r;
    uint64_t started;
    atomic_uint_fast64_t ended;
};

static void record_timed(void *arg, int error, size_t bytes)
{
    struct timed *t = arg;

    atomic_store(&t->ended, io_clock_now());
    tu_record(&t->r, error, bytes);
}

static uint64_t ended_at(struct timed *t)
{
    return atomic_load(&t->ended);
}

static int start_timed(io_descriptor *d, bool all, const void *data, size_t len, struct timed *t)
{
    struct iovec iov = io_buffer(data, len);

    t->started = io_clock_now();
    return all ? io_descriptor_async_write(d, &iov, 1, record_timed, t, NULL)
               : io_descriptor_async_write_some(d, &iov, 1, record_timed, t, NULL);
}

static void timed_init(struct timed *t, int n)
{
    for (int i = 0; i < n; i++) {
        tu_results_init(&t[i].r, 1);
        t[i].r.index = i;
        atomic_init(&t[i].ended, 0);
    }
}

/* An io_timer handler that checks, at its moment, how many of the n
 * timed writes have completed: none must have. */
struct checkpoint {
    struct timed *writes;
    int n;
    atomic_int completed_by_then;   /* -1 until it ran */
    io_descriptor *cancel;          /* then cancelled, so that run ends */
};

static void at_checkpoint(void *arg, int error)
{
    struct checkpoint *c = arg;
    int done = 0;

    ck_assert_int_eq(error, 0);
    for (int i = 0; i < c->n; i++)
        done += tu_int(&c->writes[i].r.calls);
    atomic_store(&c->completed_by_then, done);
    if (c->cancel != NULL)
        ck_assert_int_eq(io_descriptor_cancel(c->cancel), 0);
}

static io_timer *checkpoint_after(io_context *ctx, uint64_t delay, struct checkpoint *c)
{
    io_timer *t = NULL;

    atomic_init(&c->completed_by_then, -1);
    ck_assert_int_eq(io_timer_create(ctx, NULL, &t), 0);
    io_timer_expires_after(t, delay);
    ck_assert_int_eq(io_timer_async_wait(t, at_checkpoint, c, NULL), 0);
    return t;
}

/* ------------------------------------------------------------------ */

START_TEST(bad_arguments_and_closed_descriptors_are_refused)
{
    struct tu_stream io;

    tu_stream_open(&io, TU_SOCKETPAIR, 1);
    ck_assert_int_eq(io_descriptor_set_send_timeout(NULL, MS), EINVAL);
    ck_assert_int_eq(io_descriptor_set_send_timeout(io.d, 0), 0);
    ck_assert_int_eq(io_descriptor_set_send_timeout(io.d, 10 * MS), 0);
    ck_assert_int_eq(io_descriptor_set_send_timeout(io.d, 0), 0);
    ck_assert_int_eq(io_descriptor_close(io.d), 0);
    ck_assert_int_eq(io_descriptor_set_send_timeout(io.d, MS), EBADF);
    tu_stream_close(&io);
}
END_TEST

/* A reader that stopped: the write that got part of its bytes in and the
 * one queued behind it time out, no sooner than the timeout after they
 * started; the first reports exactly what the reader can still read.
 * The descriptor stays open, and a write started later goes through. */
START_TEST(stalled_reader_times_pending_writes_out)
{
    enum { BIG = 256 * 1024 };
    struct tu_stream io;
    struct timed w[3];
    unsigned char *data = tu_new_pattern(BIG, 1);
    unsigned char *got = malloc(BIG);
    size_t avail;

    ck_assert_ptr_nonnull(got);
    timed_init(w, 3);
    tu_stream_open(&io, TU_SMALL_SOCKETPAIR, 1);
    ck_assert_int_eq(io_descriptor_set_send_timeout(io.d, 50 * MS), 0);
    ck_assert_int_eq(start_timed(io.d, true, data, BIG, &w[0]), 0);
    ck_assert_int_eq(start_timed(io.d, false, data, 100, &w[1]), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 2);
    tu_assert_result_in_run(&w[0].r, ETIMEDOUT, tu_result_bytes(&w[0].r));
    tu_assert_result_in_run(&w[1].r, ETIMEDOUT, 0);
    ck_assert_uint_gt(tu_result_bytes(&w[0].r), 0);
    ck_assert_uint_lt(tu_result_bytes(&w[0].r), BIG);
    for (int i = 0; i < 2; i++)
        ck_assert_uint_ge(ended_at(&w[i]), w[i].started + 50 * MS);
    avail = tu_read_available(io.peer, got, BIG, NULL);
    ck_assert_uint_eq(avail, tu_result_bytes(&w[0].r));
    ck_assert_mem_eq(got, data, avail);
    ck_assert(io_descriptor_is_open(io.d));
    ck_assert_uint_eq(io_descriptor_queued_bytes(io.d), 0);

    io_context_restart(io.ctx);
    ck_assert_int_eq(start_timed(io.d, true, data, 1000, &w[2]), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 1);
    tu_assert_result_in_run(&w[2].r, 0, 1000);
    tu_read_exactly(io.peer, got, 1000);
    ck_assert_mem_eq(got, data, 1000);
    free(got);
    free(data);
    tu_stream_close(&io);
}
END_TEST

/* A reader that drains slowly but steadily: progress keeps restarting
 * the clock, so a write that takes many times the timeout succeeds. */
static void *drain_slowly(void *arg)
{
    int fd = *(int *)arg;
    unsigned char buf[4096];
    size_t total = 0;

    while (total < 128 * 1024) {
        /* The slow consumer's pace, not synchronisation. */
        struct timespec pause = { 0, 20 * 1000 * 1000 };
        size_t n = tu_read_up_to(fd, buf, sizeof(buf));

        if (n == 0)
            break;
        total += n;
        nanosleep(&pause, NULL);
    }
    return NULL;
}

START_TEST(slow_reader_that_keeps_draining_never_times_out)
{
    enum { BIG = 128 * 1024 };
    struct tu_stream io;
    struct timed w;
    unsigned char *data = tu_new_pattern(BIG, 2);
    pthread_t reader;

    timed_init(&w, 1);
    tu_stream_open(&io, TU_SMALL_SOCKETPAIR, 1);
    /* Well above the reader's pace, so that a loaded machine's delays
     * do not look like a stall. */
    ck_assert_int_eq(io_descriptor_set_send_timeout(io.d, 300 * MS), 0);
    ck_assert_int_eq(pthread_create(&reader, NULL, drain_slowly, &io.peer), 0);
    ck_assert_int_eq(start_timed(io.d, true, data, BIG, &w), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 1);
    if (tu_result_error(&w.r) != 0)
        io_descriptor_close(io.d);  /* the reader then sees EOF, and stops */
    pthread_join(reader, NULL);
    tu_assert_result_in_run(&w.r, 0, BIG);
    /* It did take longer than the timeout: the test proves something. */
    ck_assert_uint_gt(ended_at(&w) - w.started, 300 * MS);
    free(data);
    tu_stream_close(&io);
}
END_TEST

/* Shortened while a write waits, to a timeout already due: it fires at
 * once, long before the old one would have. */
START_TEST(shorter_timeout_already_due_fires_at_once)
{
    struct tu_stream io;
    struct timed w;
    struct checkpoint c = { .writes = &w, .n = 1 };
    io_timer *t;

    timed_init(&w, 1);
    tu_stream_open(&io, TU_SMALL_SOCKETPAIR, 1);
    tu_fill_socket(io.fd);
    ck_assert_int_eq(io_descriptor_set_send_timeout(io.d, 3600 * 1000 * MS), 0);
    ck_assert_int_eq(start_timed(io.d, false, "abc", 3, &w), 0);
    /* The checkpoint, 30 ms on, sets a 20 ms timeout, already due. */
    t = checkpoint_after(io.ctx, 30 * MS, &c);
    ck_assert_uint_eq(tu_run_marked(io_context_run_one, io.ctx), 1);
    ck_assert_int_eq(tu_int(&c.completed_by_then), 0);
    ck_assert_int_eq(io_descriptor_set_send_timeout(io.d, 20 * MS), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 1);
    tu_assert_result_in_run(&w.r, ETIMEDOUT, 0);
    ck_assert_uint_lt(ended_at(&w) - w.started, TU_WAIT_S * 1000 * MS);
    io_timer_destroy(t);
    tu_stream_close(&io);
}
END_TEST

/* Lengthened or disabled while writes wait: the old deadline passes and
 * nothing times out (seen by a timer well after it); cancel ends them. */
START_TEST(longer_or_disabled_timeout_does_not_fire_at_the_old_deadline)
{
    for (int disable = 0; disable < 2; disable++) {
        struct tu_stream io;
        struct timed w[2];
        struct checkpoint c = { .writes = w, .n = 2 };
        io_timer *t;

        timed_init(w, 2);
        tu_stream_open(&io, TU_SMALL_SOCKETPAIR, 1);
        tu_fill_socket(io.fd);
        c.cancel = io.d;
        /* 300 ms: time enough to change it before it is due, even on a
         * loaded machine. */
        ck_assert_int_eq(io_descriptor_set_send_timeout(io.d, 300 * MS), 0);
        ck_assert_int_eq(start_timed(io.d, true, "abc", 3, &w[0]), 0);
        ck_assert_int_eq(start_timed(io.d, false, "def", 3, &w[1]), 0);
        ck_assert_int_eq(io_descriptor_set_send_timeout(io.d, disable ? 0 : 3600 * 1000 * MS), 0);
        t = checkpoint_after(io.ctx, 600 * MS, &c);
        ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 3);
        ck_assert_int_eq(tu_int(&c.completed_by_then), 0);
        tu_assert_result_in_run(&w[0].r, ECANCELED, 0);
        tu_assert_result_in_run(&w[1].r, ECANCELED, 0);
        io_timer_destroy(t);
        tu_stream_close(&io);
    }
}
END_TEST

/* Set while a write already waits: the clock counts from when the write
 * started, not from the call. */
START_TEST(timeout_set_late_counts_from_the_first_pending_write)
{
    struct tu_stream io;
    struct timed w;
    struct checkpoint c = { .writes = &w, .n = 1 };
    io_timer *t;

    timed_init(&w, 1);
    tu_stream_open(&io, TU_SMALL_SOCKETPAIR, 1);
    tu_fill_socket(io.fd);
    ck_assert_int_eq(start_timed(io.d, false, "abc", 3, &w), 0);
    t = checkpoint_after(io.ctx, 60 * MS, &c);
    ck_assert_uint_eq(tu_run_marked(io_context_run_one, io.ctx), 1);
    ck_assert_int_eq(tu_int(&c.completed_by_then), 0);
    /* 60 ms have passed since the write started: 40 ms is due already. */
    ck_assert_int_eq(io_descriptor_set_send_timeout(io.d, 40 * MS), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 1);
    tu_assert_result_in_run(&w.r, ETIMEDOUT, 0);
    io_timer_destroy(t);
    tu_stream_close(&io);
}
END_TEST

/* Close, cancel and context destroy with the timeout armed: the writes
 * end with ECANCELED, never ETIMEDOUT, and nothing leaks (ASan). */
START_TEST(close_cancel_and_destroy_with_an_armed_timeout)
{
    for (int how = 0; how < 3; how++) {
        struct tu_stream io;
        struct timed w;

        timed_init(&w, 1);
        tu_stream_open(&io, TU_SMALL_SOCKETPAIR, 1);
        tu_fill_socket(io.fd);
        ck_assert_int_eq(io_descriptor_set_send_timeout(io.d, 3600 * 1000 * MS), 0);
        ck_assert_int_eq(start_timed(io.d, false, "abc", 3, &w), 0);
        if (how == 0) {
            ck_assert_int_eq(io_descriptor_close(io.d), 0);
        } else if (how == 1) {
            ck_assert_int_eq(io_descriptor_cancel(io.d), 0);
        }
        if (how < 2)
            ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 1);
        else
            tu_inside_run = true;   /* context destroy runs it */
        tu_stream_close(&io);
        tu_inside_run = false;
        tu_assert_result(&w.r, ECANCELED, 0);
    }
}
END_TEST

/* Many descriptors, each with a timeout, all stalled: each times out
 * once, with all its writes, in start order. */
START_TEST(many_stalled_descriptors_each_time_out_once)
{
    enum { N = 64, PER = 3 };
    io_context *ctx = tu_new_context(2);
    int sv[N][2];
    io_descriptor *d[N];
    struct tu_result r[N][PER];
    struct tu_order_log log[N];

    for (int i = 0; i < N; i++) {
        tu_small_socketpair(sv[i]);
        tu_fill_socket(sv[i][0]);
        d[i] = tu_new_descriptor(ctx, sv[i][0], NULL);
        ck_assert_int_eq(io_descriptor_set_send_timeout(d[i], (uint64_t)(10 + i % 7) * MS), 0);
        tu_order_log_init(&log[i]);
        tu_results_init_logged(r[i], PER, &log[i]);
        for (int k = 0; k < PER; k++)
            ck_assert_int_eq(tu_start_write(d[i], k % 2 == 0, "abcdef", 6, &r[i][k], NULL), 0);
    }
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), N * PER);
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < PER; k++)
            tu_assert_result_in_run(&r[i][k], ETIMEDOUT, 0);
        tu_assert_in_order(&log[i], PER);
        ck_assert(io_descriptor_is_open(d[i]));
        io_descriptor_destroy(d[i]);
        close(sv[i][1]);
    }
    tu_destroy_context(ctx);
}
END_TEST

START_TEST(allocation_failure_loses_nothing)
{
    struct tu_stream io;
    struct timed w;
    size_t live;

    timed_init(&w, 1);
    tu_stream_open(&io, TU_SMALL_SOCKETPAIR, 1);
    live = io__alloc_live();
    for (long n = 1; n <= 2; n++) {       /* its state, the heap's first array */
        io__alloc_fail_after(n);
        ck_assert_int_eq(io_descriptor_set_send_timeout(io.d, 20 * MS), ENOMEM);
        io__alloc_fail_after(0);
        ck_assert_uint_eq(io__alloc_live(), live);
    }
    tu_fill_socket(io.fd);
    ck_assert_int_eq(io_descriptor_set_send_timeout(io.d, 20 * MS), 0);
    ck_assert_int_eq(start_timed(io.d, false, "abc", 3, &w), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 1);
    tu_assert_result_in_run(&w.r, ETIMEDOUT, 0);
    tu_stream_close(&io);
}
END_TEST

void tu_add_tests(Suite *s)
{
    tu_add_tcase(s, "api", TU_TESTS(bad_arguments_and_closed_descriptors_are_refused,
                                    allocation_failure_loses_nothing));
    tu_add_tcase(s, "fires", TU_TESTS(stalled_reader_times_pending_writes_out,
                                      slow_reader_that_keeps_draining_never_times_out,
                                      many_stalled_descriptors_each_time_out_once));
    tu_add_tcase(s, "changes", TU_TESTS(shorter_timeout_already_due_fires_at_once,
                                        longer_or_disabled_timeout_does_not_fire_at_the_old_deadline,
                                        timeout_set_late_counts_from_the_first_pending_write,
                                        close_cancel_and_destroy_with_an_armed_timeout));
}
