/*
 * test_graceful.c - io_descriptor_async_shutdown: it waits behind every
 * earlier write, then the peer reads everything and EOF; what starts
 * after it ends with EPIPE without a system call, in order; cancel,
 * close and the send timeout end it before it ran, and the descriptor is
 * then not shut down; on a pipe it shuts nothing; bad input is refused.
 */
#include <errno.h>
#include <fcntl.h>

#include "alloc.h"
#include "test_util.h"

static void record_shutdown(void *arg, int error)
{
    tu_record(arg, error, 0);
}

static int start_shutdown(io_descriptor *d, struct tu_result *r)
{
    return io_descriptor_async_shutdown(d, record_shutdown, r);
}

/* Writes, then a shutdown, then more: the peer reads the writes and
 * EOF; the shutdown completes with 0 after them; what follows (a write,
 * a zero-byte write, a second shutdown) ends with EPIPE, in order,
 * without a system call. */
START_TEST(peer_reads_everything_then_eof)
{
    struct tu_stream io;
    struct tu_result r[6];
    struct tu_order_log log;
    unsigned char got[64];
    bool eof = false;
    int calls;

    tu_stream_open(&io, TU_SOCKETPAIR, 1);
    tu_order_log_init(&log);
    tu_results_init_logged(r, 6, &log);
    ck_assert_int_eq(tu_write_all(io.d, "hello ", 6, &r[0]), 0);
    ck_assert_int_eq(tu_write_some(io.d, "world", 5, &r[1]), 0);
    ck_assert_int_eq(start_shutdown(io.d, &r[2]), 0);
    ck_assert_int_eq(tu_write_all(io.d, "late", 4, &r[3]), 0);
    ck_assert_int_eq(tu_write_all(io.d, "", 0, &r[4]), 0);
    ck_assert_int_eq(start_shutdown(io.d, &r[5]), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 6);
    tu_assert_result_in_run(&r[0], 0, 6);
    tu_assert_result_in_run(&r[1], 0, 5);
    tu_assert_result_in_run(&r[2], 0, 0);
    tu_assert_result_in_run(&r[3], EPIPE, 0);
    tu_assert_result_in_run(&r[4], EPIPE, 0);
    tu_assert_result_in_run(&r[5], EPIPE, 0);
    tu_assert_in_order(&log, 6);
    ck_assert_uint_eq(tu_read_until_eof(io.peer, got, sizeof(got)), 11);
    ck_assert_mem_eq(got, "hello world", 11);

    /* Started once it has run: EPIPE at once, no system call. */
    calls = tu_write_calls();
    io_context_restart(io.ctx);
    tu_results_init(&r[0], 1);
    ck_assert_int_eq(tu_write_all(io.d, "x", 1, &r[0]), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 1);
    tu_assert_result_in_run(&r[0], EPIPE, 0);
    ck_assert_int_eq(tu_write_calls(), calls);
    ck_assert(io_descriptor_is_open(io.d));
    tu_read_available(io.peer, got, sizeof(got), &eof);
    ck_assert(eof);
    tu_stream_close(&io);
}
END_TEST

/* A shutdown behind a write that waits for the reader waits too; the
 * write started after it is refused only once it has run. */
START_TEST(waits_for_a_blocked_write)
{
    enum { BIG = 200000 };
    unsigned char *data = tu_new_pattern(BIG, 8);
    struct tu_stream io;
    struct tu_result r[3];
    struct tu_order_log log;
    struct tu_reader reader;

    tu_stream_open(&io, TU_SMALL_SOCKETPAIR, 1);
    tu_order_log_init(&log);
    tu_results_init_logged(r, 3, &log);
    ck_assert_int_eq(tu_write_all(io.d, data, BIG, &r[0]), 0);
    ck_assert_int_eq(start_shutdown(io.d, &r[1]), 0);
    ck_assert_int_eq(tu_write_all(io.d, "after", 5, &r[2]), 0);
    tu_wait_unwritable(io.fd);
    ck_assert_int_eq(tu_int(&r[1].calls), 0);
    tu_reader_start(&reader, io.peer, BIG, 0);      /* to EOF */
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 3);
    tu_reader_finish(&reader, data, BIG);
    tu_assert_result_in_run(&r[0], 0, BIG);
    tu_assert_result_in_run(&r[1], 0, 0);
    tu_assert_result_in_run(&r[2], EPIPE, 0);
    tu_assert_in_order(&log, 3);
    tu_stream_close(&io);
    free(data);
}
END_TEST

/* Cancelled, or timed out, before it ran: ECANCELED / ETIMEDOUT, the
 * socket is not shut down, and a later write is performed. */
START_TEST(cancel_or_timeout_before_it_ran_leaves_the_descriptor_usable)
{
    for (int how = 0; how < 2; how++) {
        struct tu_stream io;
        struct tu_result r[3];
        unsigned char buf[256 * 1024];
        size_t filled, avail;
        bool eof = true;
        int want = how == 0 ? ECANCELED : ETIMEDOUT;

        tu_stream_open(&io, TU_SMALL_SOCKETPAIR, 1);
        tu_results_init(r, 3);
        filled = tu_fill_socket(io.fd);
        if (how == 1)
            ck_assert_int_eq(io_descriptor_set_send_timeout(io.d, 20 * 1000 * 1000), 0);
        ck_assert_int_eq(tu_write_all(io.d, "stuck", 5, &r[0]), 0);
        ck_assert_int_eq(start_shutdown(io.d, &r[1]), 0);
        if (how == 0)
            ck_assert_int_eq(io_descriptor_cancel(io.d), 0);
        ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 2);
        tu_assert_result_in_run(&r[0], want, 0);
        tu_assert_result_in_run(&r[1], want, 0);
        /* Not shut down: drain, and a new write gets through. */
        if (how == 1)
            ck_assert_int_eq(io_descriptor_set_send_timeout(io.d, 0), 0);
        avail = tu_read_available(io.peer, buf, sizeof(buf), NULL);
        ck_assert_uint_eq(avail, filled);
        io_context_restart(io.ctx);
        ck_assert_int_eq(tu_write_all(io.d, "again", 5, &r[2]), 0);
        ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 1);
        tu_assert_result_in_run(&r[2], 0, 5);
        tu_read_exactly(io.peer, buf, 5);
        ck_assert_mem_eq(buf, "again", 5);
        tu_read_available(io.peer, buf, sizeof(buf), &eof);
        ck_assert(!eof);
        tu_stream_close(&io);
    }
}
END_TEST

/* Close before it ran: ECANCELED; on a closed descriptor: EBADF. */
START_TEST(close_before_it_ran_and_after)
{
    struct tu_stream io;
    struct tu_result r[3];

    tu_stream_open(&io, TU_SMALL_SOCKETPAIR, 1);
    tu_results_init(r, 3);
    tu_fill_socket(io.fd);
    ck_assert_int_eq(tu_write_all(io.d, "stuck", 5, &r[0]), 0);
    ck_assert_int_eq(start_shutdown(io.d, &r[1]), 0);
    ck_assert_int_eq(io_descriptor_close(io.d), 0);
    ck_assert_int_eq(start_shutdown(io.d, &r[2]), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 3);
    tu_assert_result_in_run(&r[0], ECANCELED, 0);
    tu_assert_result_in_run(&r[1], ECANCELED, 0);
    tu_assert_result_in_run(&r[2], EBADF, 0);
    tu_stream_close(&io);
}
END_TEST

/* On a pipe it does nothing to the fd (the reader sees no EOF: the fd is
 * still open) and completes with 0; later writes get EPIPE. */
START_TEST(on_a_pipe_shuts_nothing)
{
    struct tu_stream io;
    struct tu_result r[3];
    unsigned char buf[16];
    bool eof = true;

    tu_stream_open(&io, TU_PIPE, 1);
    tu_results_init(r, 3);
    ck_assert_int_eq(tu_write_all(io.d, "pipe", 4, &r[0]), 0);
    ck_assert_int_eq(start_shutdown(io.d, &r[1]), 0);
    ck_assert_int_eq(tu_write_all(io.d, "more", 4, &r[2]), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 3);
    tu_assert_result_in_run(&r[0], 0, 4);
    tu_assert_result_in_run(&r[1], 0, 0);
    tu_assert_result_in_run(&r[2], EPIPE, 0);
    ck_assert_uint_eq(tu_read_available(io.peer, buf, sizeof(buf), &eof), 4);
    ck_assert(!eof);
    ck_assert(!tu_is_closed(io.fd));
    tu_stream_close(&io);
}
END_TEST

START_TEST(bad_input_is_refused)
{
    struct tu_stream io;
    struct tu_result r;

    tu_stream_open(&io, TU_SOCKETPAIR, 1);
    tu_results_init(&r, 1);
    ck_assert_int_eq(io_descriptor_async_shutdown(NULL, record_shutdown, &r), EINVAL);
    ck_assert_int_eq(io_descriptor_async_shutdown(io.d, NULL, &r), EINVAL);
    io__alloc_fail_after(1);
    ck_assert_int_eq(start_shutdown(io.d, &r), ENOMEM);
    io__alloc_fail_after(0);
    ck_assert_uint_eq(tu_run_marked(io_context_poll, io.ctx), 0);
    ck_assert_int_eq(tu_int(&r.calls), 0);
    tu_stream_close(&io);
}
END_TEST

void tu_add_tests(Suite *s)
{
    tu_add_tcase(s, "shutdown", TU_TESTS(peer_reads_everything_then_eof, waits_for_a_blocked_write,
                                         cancel_or_timeout_before_it_ran_leaves_the_descriptor_usable,
                                         close_before_it_ran_and_after, on_a_pipe_shuts_nothing,
                                         bad_input_is_refused));
}
