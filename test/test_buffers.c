/*
 * test_buffers.c - what the initiating calls accept and what they cost:
 * NULL arguments refused without a trace, handlers that never run inside
 * the call, 0-byte writes without a system call, more buffers than
 * IOV_MAX, the counters of io_context_get_stats, and no allocation once
 * a descriptor serves writes in a steady state.
 */
#include <errno.h>
#include <limits.h>
#include <sys/socket.h>

#include "alloc.h"
#include "test_util.h"

/* A refused call never runs its handler, counts as no operation and
 * writes nothing. */
START_TEST(write_rejects_null_arguments)
{
    struct iovec iov = io_buffer("x", 1);
    unsigned char buf[4];
    struct tu_result r;
    struct tu_stream io;

    tu_stream_open(&io, TU_PIPE, 0);
    tu_results_init(&r, 1);
    ck_assert_int_eq(io_descriptor_async_write(NULL, &iov, 1, tu_record, &r, NULL), EINVAL);
    ck_assert_int_eq(io_descriptor_async_write_some(NULL, &iov, 1, tu_record, &r, NULL), EINVAL);
    ck_assert_int_eq(io_descriptor_async_write(io.d, &iov, 1, NULL, &r, NULL), EINVAL);
    ck_assert_int_eq(io_descriptor_async_write_some(io.d, &iov, 1, NULL, &r, NULL), EINVAL);
    ck_assert_int_eq(io_descriptor_async_write(io.d, NULL, 1, tu_record, &r, NULL), EINVAL);
    ck_assert_int_eq(io_descriptor_async_write_some(io.d, NULL, 1, tu_record, &r, NULL), EINVAL);
    ck_assert_uint_eq(io_context_run(io.ctx), 0);
    ck_assert_int_eq(tu_int(&r.calls), 0);
    ck_assert_uint_eq(tu_stats(io.ctx).ops_started, 0);
    ck_assert_int_eq(tu_write_calls(), 0);
    ck_assert_uint_eq(tu_read_available(io.peer, buf, sizeof(buf), NULL), 0);
    tu_stream_close(&io);
}
END_TEST

/* Even after the workers completed both writes, their handlers wait for
 * a thread that calls run. */
START_TEST(handler_runs_inside_run_never_inside_the_call)
{
    unsigned char buf[8];
    struct tu_result r[2];
    struct tu_stream io;

    tu_stream_open(&io, TU_PIPE, 0);
    tu_results_init(r, 2);
    ck_assert_int_eq(tu_write_all(io.d, "a", 1, &r[0]), 0);
    ck_assert_int_eq(tu_int(&r[0].calls), 0);
    ck_assert_int_eq(tu_write_some(io.d, "bc", 2, &r[1]), 0);
    ck_assert_int_eq(tu_int(&r[1].calls), 0);
    while (tu_stats(io.ctx).ops_completed < 2)
        sched_yield();
    ck_assert_int_eq(tu_int(&r[0].calls) + tu_int(&r[1].calls), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 2);
    tu_assert_result_in_run(&r[0], 0, 1);
    tu_assert_result_in_run(&r[1], 0, 2);   /* 2 bytes into an empty pipe go at once */
    ck_assert_uint_eq(tu_read_available(io.peer, buf, sizeof(buf), NULL), 3);
    ck_assert(memcmp(buf, "abc", 3) == 0);
    tu_stream_close(&io);
}
END_TEST

/* 0 bytes in total (no buffers, or empty ones) complete with error 0 and
 * 0 bytes, without a system call, and not inside the call. */
START_TEST(zero_byte_writes_complete_without_a_system_call)
{
    char byte = 'z';
    struct iovec empty[3] = { io_buffer(&byte, 0), io_buffer(NULL, 0), io_buffer(&byte, 0) };
    unsigned char buf[4];
    io_context_stats st;
    struct tu_result r[4];
    struct tu_stream io;

    tu_stream_open(&io, TU_PIPE, 0);
    tu_results_init(r, 4);
    ck_assert_int_eq(io_descriptor_async_write(io.d, NULL, 0, tu_record, &r[0], NULL), 0);
    ck_assert_int_eq(io_descriptor_async_write_some(io.d, NULL, 0, tu_record, &r[1], NULL), 0);
    ck_assert_int_eq(io_descriptor_async_write(io.d, empty, 3, tu_record, &r[2], NULL), 0);
    ck_assert_int_eq(io_descriptor_async_write_some(io.d, empty, 3, tu_record, &r[3], NULL), 0);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(tu_int(&r[i].calls), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 4);
    for (int i = 0; i < 4; i++)
        tu_assert_result_in_run(&r[i], 0, 0);
    ck_assert_int_eq(tu_write_calls(), 0);
    st = tu_stats(io.ctx);
    ck_assert_uint_eq(st.ops_started, 4);
    ck_assert_uint_eq(st.ops_completed, 4);
    ck_assert_uint_eq(st.writev_calls, 0);
    ck_assert_uint_eq(st.bytes_written, 0);
    ck_assert_uint_eq(tu_read_available(io.peer, buf, sizeof(buf), NULL), 0);
    tu_stream_close(&io);
}
END_TEST

#define MANY_BUFS 3000

static size_t iov_max(void)
{
    long n = sysconf(_SC_IOV_MAX);

    return n > 0 ? (size_t)n : IOV_MAX;
}

/* MANY_BUFS one-byte buffers of a pattern, written by one call to a pipe
 * (which holds them all); returns the bytes the reader got, which must
 * be the first ones of the pattern and as many as the handler said. */
static size_t write_one_byte_buffers(bool all, uint64_t key)
{
    unsigned char *data = tu_new_pattern(MANY_BUFS, key), got[MANY_BUFS + 1];
    struct iovec *iov = calloc(MANY_BUFS, sizeof(*iov));
    struct tu_result r;
    struct tu_stream io;
    size_t n;

    ck_assert_ptr_nonnull(iov);
    for (size_t i = 0; i < MANY_BUFS; i++)
        iov[i] = io_buffer(data + i, 1);
    tu_stream_open(&io, TU_PIPE, 0);
    tu_results_init(&r, 1);
    ck_assert_int_eq(all ? io_descriptor_async_write(io.d, iov, MANY_BUFS, tu_record, &r, NULL)
                         : io_descriptor_async_write_some(io.d, iov, MANY_BUFS, tu_record, &r, NULL), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 1);
    if (all)
        tu_assert_result_in_run(&r, 0, MANY_BUFS);
    else
        (void)tu_assert_some(&r, iov_max());
    n = tu_result_bytes(&r);
    ck_assert_uint_eq(tu_read_available(io.peer, got, sizeof(got), NULL), n);
    ck_assert(memcmp(got, data, n) == 0);
    tu_stream_close(&io);
    free(iov);
    free(data);
    return n;
}

/* async_write writes all of them, in order. */
START_TEST(async_write_sends_more_than_iov_max_buffers)
{
    ck_assert_uint_gt(MANY_BUFS, iov_max());
    ck_assert_uint_eq(write_one_byte_buffers(true, 5), MANY_BUFS);
}
END_TEST

/* async_write_some may stop at IOV_MAX buffers, but succeeds. */
START_TEST(async_write_some_with_more_than_iov_max_buffers)
{
    ck_assert_uint_ge(write_one_byte_buffers(false, 6), 1);
}
END_TEST

#define STATS_OPS 5

/* The counters agree with what the handlers, the reader and the write
 * system calls saw; refused calls count for nothing. */
START_TEST(stats_count_ops_bytes_calls_and_handlers)
{
    static const size_t sizes[STATS_OPS] = { 1, 1000, 40000, 70000, 3000 };
    unsigned char *data = tu_new_pattern(sizes[0] + sizes[1] + sizes[2] + sizes[3] + sizes[4], 9);
    struct tu_result r[STATS_OPS];
    struct tu_counter posted = { 0 };
    io_context_stats st;
    struct tu_reader reader;
    size_t off = 0, sum = 0;
    struct tu_stream io;

    tu_stream_open(&io, TU_PIPE, 0);
    tu_results_init(r, STATS_OPS);
    for (int i = 0; i < STATS_OPS; i++)
        sum += sizes[i];
    tu_reader_start(&reader, io.peer, sum, 0);
    sum = 0;
    for (int i = 0; i < STATS_OPS - 1; i++) {
        ck_assert_int_eq(tu_write_all(io.d, data + off, sizes[i], &r[i]), 0);
        off += sizes[i];
    }
    ck_assert_int_eq(tu_write_some(io.d, data + off, sizes[STATS_OPS - 1], &r[STATS_OPS - 1]), 0);
    ck_assert_int_eq(io_descriptor_async_write(io.d, NULL, 1, tu_record, &r[0], NULL), EINVAL);
    ck_assert_int_eq(io_context_post(io.ctx, tu_count, &posted), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), STATS_OPS + 1);
    for (int i = 0; i < STATS_OPS - 1; i++) {
        tu_assert_result_in_run(&r[i], 0, sizes[i]);
        sum += sizes[i];
    }
    sum += tu_assert_some(&r[STATS_OPS - 1], sizes[STATS_OPS - 1]);
    ck_assert_int_eq(tu_int(&posted.calls), 1);

    st = tu_stats(io.ctx);
    ck_assert_uint_eq(st.ops_started, STATS_OPS);
    ck_assert_uint_eq(st.ops_completed, STATS_OPS);
    ck_assert_uint_eq(st.bytes_written, sum);
    ck_assert_uint_ge(st.writev_calls, 1);
    ck_assert_uint_eq(st.writev_calls, (uint64_t)tu_write_calls());
    ck_assert_uint_eq(st.handlers_run, STATS_OPS + 1);
    ck_assert_int_eq(io_descriptor_close(io.d), 0);
    tu_reader_finish(&reader, data, sum);
    tu_stream_close(&io);
    free(data);
}
END_TEST

#define STEADY_WRITES 2000

/* Steady state allocates nothing: once a descriptor has served a few
 * writes of up to IO_OP_INLINE_IOVS buffers, more of them (one at a time,
 * as a server that keeps up does) reuse its ops and nodes. */
START_TEST(steady_state_writes_do_not_allocate)
{
    io_context *ctx = tu_new_context(1);
    struct tu_reader reader;
    io_descriptor *d;
    size_t before = 0;
    int sv[2];

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    d = tu_new_descriptor(ctx, sv[0], NULL);
    tu_reader_start(&reader, sv[1], 0, 0);
    io_context_work_started(ctx);
    for (int i = 0; i < STEADY_WRITES + 100; i++) {
        struct iovec iov[2] = { io_buffer("head", 4), io_buffer("payload", 7) };
        struct tu_result r;

        if (i == 100)
            before = io__alloc_calls();     /* warmed up */
        tu_results_init(&r, 1);
        ck_assert_int_eq(io_descriptor_async_write(d, iov, 2, tu_record, &r, NULL), 0);
        while (tu_int(&r.calls) == 0)
            ck_assert_uint_eq(tu_run_marked(io_context_run_one, ctx), 1);
        tu_assert_result_in_run(&r, 0, 11);
    }
    ck_assert_uint_eq(io__alloc_calls() - before, 0);
    io_context_work_finished(ctx);
    io_descriptor_destroy(d);
    tu_reader_join(&reader);
    ck_assert_uint_eq(reader.got, (size_t)(STEADY_WRITES + 100) * 11);
    free(reader.buf);
    tu_destroy_context(ctx);
}
END_TEST

/* Buffers whose lengths add up past SSIZE_MAX, and counts whose array
 * could not even be copied, are EINVAL: nothing is queued or written,
 * no handler runs. */
START_TEST(write_rejects_sizes_past_ssize_max)
{
    struct tu_stream io;
    struct tu_result r;
    char byte = 'x';
    struct iovec two[2] = { { &byte, (size_t)SSIZE_MAX / 2 + 1 }, { &byte, (size_t)SSIZE_MAX / 2 + 1 } };
    struct iovec one = { &byte, (size_t)SSIZE_MAX + 1 };

    tu_stream_open(&io, TU_PIPE, 1);
    tu_results_init(&r, 1);
    for (int all = 0; all < 2; all++) {
        io_write_handler h = tu_record;
        int (*start)(io_descriptor *, const struct iovec *, size_t, io_write_handler, void *,
                     io_cancel_signal *) = all ? io_descriptor_async_write : io_descriptor_async_write_some;

        ck_assert_int_eq(start(io.d, two, 2, h, &r, NULL), EINVAL);
        ck_assert_int_eq(start(io.d, &one, 1, h, &r, NULL), EINVAL);
        ck_assert_int_eq(start(io.d, &one, SIZE_MAX / sizeof(struct iovec), h, &r, NULL), EINVAL);
        ck_assert_int_eq(start(io.d, &one, SIZE_MAX, h, &r, NULL), EINVAL);
    }
    ck_assert_uint_eq(io_descriptor_queued_bytes(io.d), 0);
    ck_assert_uint_eq(tu_stats(io.ctx).ops_started, 0);
    ck_assert_uint_eq(tu_run_marked(io_context_poll, io.ctx), 0);
    ck_assert_int_eq(tu_int(&r.calls), 0);
    ck_assert_int_eq(tu_write_calls(), 0);
    tu_stream_close(&io);
}
END_TEST

void tu_add_tests(Suite *s)
{
    tu_add_tcase(s, "strict", TU_TESTS(write_rejects_sizes_past_ssize_max));
    tu_add_tcase(s, "initiating calls", TU_TESTS(write_rejects_null_arguments,
                                                 handler_runs_inside_run_never_inside_the_call,
                                                 zero_byte_writes_complete_without_a_system_call));
    tu_add_tcase(s, "buffer counts", TU_TESTS(async_write_sends_more_than_iov_max_buffers,
                                              async_write_some_with_more_than_iov_max_buffers));
    tu_add_tcase(s, "stats", TU_TESTS(stats_count_ops_bytes_calls_and_handlers,
                                      steady_state_writes_do_not_allocate));
}
