/*
 * test_watermark.c - io_descriptor_set_watermarks: events alternate and
 * start with "above"; each runs on the descriptor's strand in order with
 * the write handlers ("below" after the handlers of the writes that
 * brought the bytes down); every "above" gets exactly one "below",
 * whatever brings the bytes down (writes, cancel, close, release,
 * destroy); setting or removing marks while "above" is outstanding tells
 * the old handler "below" first; bad input and allocation failures lose
 * nothing.
 */
#include <errno.h>

#include "alloc.h"
#include "test_util.h"

#define LOG_MAX 256

/* One log for write handlers and water-mark events, in the order the
 * strand ran them: writes as their index, events as -1 (above) or -2
 * (below), with the queued bytes each event reported. */
struct event_log {
    atomic_int count;
    int what[LOG_MAX];
    size_t queued[LOG_MAX];
    const char *who[LOG_MAX];
};

struct mark_handler {
    struct event_log *log;
    const char *name;
};

static void on_mark(void *arg, bool above, size_t queued)
{
    struct mark_handler *h = arg;
    int k = atomic_fetch_add(&h->log->count, 1);

    ck_assert_int_lt(k, LOG_MAX);
    h->log->what[k] = above ? -1 : -2;
    h->log->queued[k] = queued;
    h->log->who[k] = h->name;
}

struct logged_write {
    struct event_log *log;
    int index;
    atomic_int error;
};

static void on_logged_write(void *arg, int error, size_t bytes)
{
    struct logged_write *w = arg;
    int k = atomic_fetch_add(&w->log->count, 1);

    (void)bytes;
    ck_assert_int_lt(k, LOG_MAX);
    w->log->what[k] = w->index;
    atomic_store(&w->error, error);
}

static int start_logged(io_descriptor *d, const void *data, size_t len, struct logged_write *w)
{
    struct iovec iov = io_buffer(data, len);

    atomic_init(&w->error, -1);
    return io_descriptor_async_write(d, &iov, 1, on_logged_write, w, NULL);
}

static void log_init(struct event_log *log)
{
    memset(log, 0, sizeof(*log));
    atomic_init(&log->count, 0);
}

/* A full socket with marks 1 and 2 (handler h) and a 10-byte write
 * queued: "above" is outstanding, the write waits for a reader. */
static void open_above(struct tu_stream *io, struct event_log *log, struct mark_handler *h,
                       struct logged_write *w)
{
    log_init(log);
    tu_stream_open(io, TU_SMALL_SOCKETPAIR, 1);
    tu_fill_socket(io->fd);
    ck_assert_int_eq(io_descriptor_set_watermarks(io->d, 1, 2, on_mark, h), 0);
    ck_assert_int_eq(start_logged(io->d, "0123456789", 10, w), 0);
}

/* The log is exactly want[0..n-1]. */
static void assert_log(const struct event_log *log, const int *want, int n)
{
    ck_assert_int_eq(atomic_load((atomic_int *)&log->count), n);
    for (int i = 0; i < n; i++)
        ck_assert_msg(log->what[i] == want[i], "entry %d is %d, expected %d", i, log->what[i], want[i]);
}

/* A write that passes high: "above" with the bytes right after it was
 * queued, before the write's handler; the reader drains: the write's
 * handler, then "below" with 0. */
START_TEST(above_then_below_in_order_with_the_writes)
{
    enum { BIG = 100000 };
    unsigned char *data = tu_new_pattern(BIG, 1);
    struct event_log log;
    struct mark_handler h = { &log, "h" };
    struct logged_write w[2];
    struct tu_stream io;
    struct tu_reader reader;
    const int want[] = { -1, 0, 1, -2 };

    log_init(&log);
    tu_stream_open(&io, TU_SMALL_SOCKETPAIR, 1);
    ck_assert_int_eq(io_descriptor_set_watermarks(io.d, 100, 1000, on_mark, &h), 0);
    w[0] = (struct logged_write){ &log, 0, -1 };
    w[1] = (struct logged_write){ &log, 1, -1 };
    /* The big one first: its start crosses high, so "above" is queued
     * before any handler of it can be. */
    ck_assert_int_eq(start_logged(io.d, data, BIG, &w[0]), 0);
    ck_assert_int_eq(start_logged(io.d, "small", 5, &w[1]), 0);
    tu_reader_start(&reader, io.peer, BIG + 5, BIG + 5);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 4);
    tu_reader_join(&reader);
    ck_assert_uint_eq(reader.got, BIG + 5);
    free(reader.buf);
    assert_log(&log, want, 4);
    ck_assert_uint_eq(log.queued[0], BIG);
    ck_assert_uint_eq(log.queued[3], 0);
    tu_stream_close(&io);
    free(data);
}
END_TEST

/* Up and down ten times: ten "above", ten "below", alternating. */
START_TEST(every_above_gets_exactly_one_below)
{
    enum { BIG = 50000, ROUNDS = 10 };
    unsigned char *data = tu_new_pattern(BIG, 2);
    struct event_log log;
    struct mark_handler h = { &log, "h" };
    struct logged_write w;
    struct tu_stream io;

    log_init(&log);
    tu_stream_open(&io, TU_SMALL_SOCKETPAIR, 1);
    ck_assert_int_eq(io_descriptor_set_watermarks(io.d, 0, 10000, on_mark, &h), 0);
    for (int round = 0; round < ROUNDS; round++) {
        struct tu_reader reader;

        w = (struct logged_write){ &log, round, -1 };
        ck_assert_int_eq(start_logged(io.d, data, BIG, &w), 0);
        tu_reader_start(&reader, io.peer, BIG, BIG);
        ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 3);
        io_context_restart(io.ctx);
        tu_reader_finish(&reader, data, BIG);
        ck_assert_int_eq(tu_int(&w.error), 0);
    }
    ck_assert_int_eq(tu_int(&log.count), 3 * ROUNDS);
    for (int i = 0; i < 3 * ROUNDS; i += 3) {
        ck_assert_int_eq(log.what[i], -1);
        ck_assert_int_eq(log.what[i + 1], i / 3);
        ck_assert_int_eq(log.what[i + 2], -2);
    }
    tu_stream_close(&io);
    free(data);
}
END_TEST

/* "above" outstanding, then cancel, close, release or destroy: the
 * writes end with ECANCELED, then "below" with 0. */
START_TEST(below_follows_cancel_close_release_and_destroy)
{
    for (int how = 0; how < 4; how++) {
        struct event_log log;
        struct mark_handler h = { &log, "h" };
        struct logged_write w = { &log, 0, -1 };
        struct tu_stream io;
        const int want[] = { -1, 0, -2 };

        open_above(&io, &log, &h, &w);
        if (how == 0) {
            ck_assert_int_eq(io_descriptor_cancel(io.d), 0);
        } else if (how == 1) {
            ck_assert_int_eq(io_descriptor_close(io.d), 0);
        } else if (how == 2) {
            int fd = io_descriptor_release(io.d);

            ck_assert_int_eq(fd, io.fd);
            close(fd);
        } else {
            io_descriptor_destroy(io.d);
            io.d = NULL;
        }
        ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 3);
        assert_log(&log, want, 3);
        ck_assert_int_eq(tu_int(&w.error), ECANCELED);
        ck_assert_uint_eq(log.queued[2], 0);
        tu_stream_close(&io);
    }
}
END_TEST

/* Context destroy with "above" outstanding: "below" runs in destroy. */
START_TEST(below_follows_context_destroy)
{
    struct event_log log;
    struct mark_handler h = { &log, "h" };
    struct logged_write w = { &log, 0, -1 };
    struct tu_stream io;
    const int want[] = { -1, 0, -2 };

    open_above(&io, &log, &h, &w);
    tu_inside_run = true;
    tu_stream_close(&io);
    tu_inside_run = false;
    assert_log(&log, want, 3);
}
END_TEST

/* New marks while "above" is outstanding: the old handler hears "below"
 * (with the bytes at the call) first; marks already crossed tell the new
 * one "above" at once; removing them tells "below". */
START_TEST(setting_or_removing_marks_while_above)
{
    struct event_log log;
    struct mark_handler a = { &log, "a" }, b = { &log, "b" };
    struct logged_write w = { &log, 0, -1 };
    struct tu_stream io;
    const int want[] = { -1, -2, -1, -2, 0 };

    open_above(&io, &log, &a, &w);
    ck_assert_int_eq(io_descriptor_set_watermarks(io.d, 3, 5, on_mark, &b), 0);
    ck_assert_int_eq(io_descriptor_set_watermarks(io.d, 0, 0, NULL, NULL), 0);
    ck_assert_int_eq(io_descriptor_cancel(io.d), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 5);
    assert_log(&log, want, 5);
    ck_assert_str_eq(log.who[0], "a");
    ck_assert_str_eq(log.who[1], "a");
    ck_assert_str_eq(log.who[2], "b");
    ck_assert_str_eq(log.who[3], "b");
    for (int i = 0; i < 4; i++)
        ck_assert_uint_eq(log.queued[i], 10);
    tu_stream_close(&io);
}
END_TEST

/* EINVAL for low >= high and NULL d; EBADF once closed; ENOMEM at each
 * allocation, nothing lost; a start that finds the pool short and cannot
 * fill it says ENOMEM and leaves no trace. */
START_TEST(bad_input_and_allocation_failures)
{
    struct event_log log;
    struct mark_handler h = { &log, "h" };
    struct logged_write w[2];
    struct tu_stream io;
    int err;

    log_init(&log);
    tu_stream_open(&io, TU_SMALL_SOCKETPAIR, 1);
    ck_assert_int_eq(io_descriptor_set_watermarks(NULL, 1, 2, on_mark, &h), EINVAL);
    ck_assert_int_eq(io_descriptor_set_watermarks(io.d, 2, 2, on_mark, &h), EINVAL);
    ck_assert_int_eq(io_descriptor_set_watermarks(io.d, 3, 2, on_mark, &h), EINVAL);
    ck_assert_int_eq(io_descriptor_set_watermarks(io.d, 3, 2, NULL, NULL), 0);
    for (long n = 1; n <= 10; n++) {
        io__alloc_fail_after(n);
        err = io_descriptor_set_watermarks(io.d, 1, 2, on_mark, &h);
        io__alloc_fail_after(0);
        if (err == 0)
            break;
        ck_assert_int_eq(err, ENOMEM);
    }
    ck_assert_int_eq(err, 0);
    tu_fill_socket(io.fd);
    /* above (pool 3 -> 2), then below by cancel (-> 1), neither run yet. */
    w[0] = (struct logged_write){ &log, 0, -1 };
    ck_assert_int_eq(start_logged(io.d, "0123456789", 10, &w[0]), 0);
    ck_assert_int_eq(io_descriptor_cancel(io.d), 0);
    w[1] = (struct logged_write){ &log, 1, -1 };
    io__alloc_fail_after(1);
    err = start_logged(io.d, "x", 1, &w[1]);
    io__alloc_fail_after(0);
    ck_assert_int_eq(err, ENOMEM);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 3);
    ck_assert_uint_eq(io_descriptor_queued_bytes(io.d), 0);     /* the refused one left none */
    ck_assert_int_eq(tu_int(&log.count), 3);
    ck_assert_int_eq(io_descriptor_close(io.d), 0);
    ck_assert_int_eq(io_descriptor_set_watermarks(io.d, 1, 2, on_mark, &h), EBADF);
    tu_stream_close(&io);
}
END_TEST

/* Writers on two threads and a reader: events alternate, and the last
 * one is "below" once everything is written. */
struct pair_writer {
    io_descriptor *d;
    struct tu_result r[100];
};

static void *write_many(void *arg)
{
    struct pair_writer *pw = arg;
    static unsigned char block[3000];

    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(tu_write_all(pw->d, block, sizeof(block), &pw->r[i]), 0);
    return NULL;
}

struct alternation {
    atomic_int events;
    atomic_int wrong;
    bool last_above;
};

static void check_alternation(void *arg, bool above, size_t queued)
{
    struct alternation *a = arg;

    (void)queued;
    if (above == a->last_above)
        atomic_fetch_add(&a->wrong, 1);
    a->last_above = above;
    atomic_fetch_add(&a->events, 1);
}

START_TEST(events_alternate_under_concurrent_writers)
{
    struct tu_stream io;
    struct pair_writer pw[2];
    struct alternation a = { .last_above = false };
    struct tu_reader reader;
    pthread_t threads[2];

    atomic_init(&a.events, 0);
    atomic_init(&a.wrong, 0);
    tu_stream_open(&io, TU_SMALL_SOCKETPAIR, 2);
    ck_assert_int_eq(io_descriptor_set_watermarks(io.d, 4000, 20000, check_alternation, &a), 0);
    tu_reader_start(&reader, io.peer, 0, 2 * 100 * 3000);
    io_context_work_started(io.ctx);
    for (int i = 0; i < 2; i++) {
        pw[i].d = io.d;
        tu_results_init(pw[i].r, 100);
        ck_assert_int_eq(pthread_create(&threads[i], NULL, write_many, &pw[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    io_context_work_finished(io.ctx);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 200 + (size_t)tu_int(&a.events));
    tu_reader_join(&reader);
    ck_assert_uint_eq(reader.got, 2 * 100 * 3000);
    free(reader.buf);
    ck_assert_int_eq(tu_int(&a.wrong), 0);
    ck_assert_int_gt(tu_int(&a.events), 0);
    ck_assert_int_eq(tu_int(&a.events) % 2, 0);
    ck_assert(!a.last_above);
    tu_stream_close(&io);
}
END_TEST

void tu_add_tests(Suite *s)
{
    tu_add_tcase(s, "events", TU_TESTS(above_then_below_in_order_with_the_writes,
                                       every_above_gets_exactly_one_below,
                                       below_follows_cancel_close_release_and_destroy,
                                       below_follows_context_destroy,
                                       setting_or_removing_marks_while_above,
                                       events_alternate_under_concurrent_writers));
    tu_add_tcase(s, "input", TU_TESTS(bad_input_and_allocation_failures));
}
