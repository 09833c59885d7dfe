/*
 * test_descriptor.c - io_descriptor as a user sees it: what the calls
 * return, the error and byte count each handler gets, the bytes a reader
 * receives, the thread a handler runs on and how often it runs.
 *
 * Backpressure is real: a test fills a small pipe or socket and waits
 * until the kernel says it is full before it starts a reader.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <termios.h>

#include "alloc.h"
#include "test_util.h"

/* ------------------------------------------------------------------ */
/* create, and kinds of descriptor                                    */
/* ------------------------------------------------------------------ */

START_TEST(create_rejects_fds_that_are_not_open)
{
    io_context *ctx = tu_new_context(0);
    io_descriptor *d = NULL;
    int fds[2];

    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(close(fds[0]), 0);
    ck_assert_int_eq(close(fds[1]), 0);
    ck_assert_int_eq(io_descriptor_create(ctx, fds[1], NULL, &d), EBADF);
    ck_assert_int_eq(io_descriptor_create(ctx, -1, NULL, &d), EBADF);
    ck_assert_ptr_null(d);
    ck_assert_uint_eq(io_context_run(ctx), 0);
    tu_destroy_context(ctx);
}
END_TEST

/* NULL arguments give EINVAL, and the calls that tolerate NULL do. */
START_TEST(null_arguments_give_einval)
{
    io_context *ctx = tu_new_context(0);
    io_descriptor *d = NULL;
    int fds[2];

    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(io_descriptor_create(NULL, fds[1], NULL, &d), EINVAL);
    ck_assert_ptr_null(d);
    ck_assert_int_eq(io_descriptor_create(ctx, fds[1], NULL, NULL), EINVAL);
    ck_assert(!tu_is_closed(fds[1]));   /* a refused create took no charge */

    ck_assert_int_eq(io_descriptor_native_handle(NULL), -1);
    ck_assert_uint_eq(io_descriptor_queued_bytes(NULL), 0);
    ck_assert_int_eq(io_descriptor_cancel(NULL), EINVAL);
    ck_assert_int_eq(io_descriptor_close(NULL), EINVAL);
    errno = 0;
    ck_assert_int_eq(io_descriptor_release(NULL), -1);
    ck_assert_int_eq(errno, EINVAL);
    io_descriptor_destroy(NULL);
    ck_assert_uint_eq(io_context_run(ctx), 0);
    tu_destroy_context(ctx);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

/* create sets O_NONBLOCK; the fd stays the caller's number. */
START_TEST(create_sets_nonblocking_and_reports_the_fd)
{
    io_context *ctx = tu_new_context(0);
    io_descriptor *d;
    int fds[2];

    ck_assert_int_eq(pipe(fds), 0);
    ck_assert(!tu_is_nonblocking(fds[1]));
    d = tu_new_descriptor(ctx, fds[1], NULL);
    ck_assert(tu_is_nonblocking(fds[1]));
    ck_assert_int_eq(io_descriptor_native_handle(d), fds[1]);
    ck_assert(io_descriptor_is_open(d));
    ck_assert_uint_eq(io_descriptor_queued_bytes(d), 0);
    io_descriptor_destroy(d);
    tu_destroy_context(ctx);
    close(fds[0]);
}
END_TEST

/* ENOMEM at any allocation of create, with nothing leaked and the fd left
 * open; the create that succeeds gives a working descriptor. */
START_TEST(create_out_of_memory_gives_enomem_and_leaks_nothing)
{
    io_context *ctx = tu_new_context(0);
    size_t baseline = io__alloc_live();
    io_descriptor *d = NULL;
    struct tu_result r;
    bool eof;
    char c = 0;
    int fds[2], err;
    long n;

    ck_assert_int_eq(pipe(fds), 0);
    for (n = 1; n < 100; n++) {
        io__alloc_fail_after(n);
        err = io_descriptor_create(ctx, fds[1], NULL, &d);
        io__alloc_fail_after(0);
        if (err == 0)
            break;
        ck_assert_int_eq(err, ENOMEM);
        ck_assert_uint_eq(io__alloc_live(), baseline);
        ck_assert(!tu_is_closed(fds[1]));
    }
    ck_assert_int_eq(err, 0);
    ck_assert_int_gt(n, 1);            /* the first allocation did fail it */
    tu_results_init(&r, 1);
    ck_assert_int_eq(tu_write_all(d, "m", 1, &r), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 1);
    tu_assert_result_in_run(&r, 0, 1);
    ck_assert_uint_eq(tu_read_available(fds[0], (unsigned char *)&c, 1, &eof), 1);
    ck_assert_int_eq(c, 'm');
    io_descriptor_destroy(d);
    tu_destroy_context(ctx);
    close(fds[0]);
}
END_TEST

/* Writes len bytes of data to fd with one async_write of the given
 * buffers, runs it, and checks the handler's result. */
static void write_and_run(int fd, const struct iovec *iov, int count, size_t len)
{
    io_context *ctx = tu_new_context(0);
    io_descriptor *d = tu_new_descriptor(ctx, fd, NULL);
    struct tu_result r;

    tu_results_init(&r, 1);
    ck_assert_int_eq(io_descriptor_async_write(d, iov, (size_t)count, tu_record, &r, NULL), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 1);
    tu_assert_result_in_run(&r, 0, len);
    io_descriptor_destroy(d);
    tu_destroy_context(ctx);
}

START_TEST(regular_file_gets_every_byte)
{
    static const size_t sizes[3] = { 70001, 1, 30000 };
    unsigned char *data = tu_new_pattern(sizes[0] + sizes[1] + sizes[2], 10), *got;
    char path[] = "/tmp/ioctx-test-XXXXXX";
    struct iovec iov[3];
    size_t total;
    int fd, check;

    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    check = open(path, O_RDONLY);
    ck_assert_int_ge(check, 0);
    ck_assert_int_eq(unlink(path), 0);
    total = tu_split(iov, data, sizes, 3);
    got = malloc(total + 1);
    ck_assert_ptr_nonnull(got);
    write_and_run(fd, iov, 3, total);
    ck_assert_int_eq(pread(check, got, total + 1, 0), (ssize_t)total);
    ck_assert(memcmp(got, data, total) == 0);
    close(check);
    free(got);
    free(data);
}
END_TEST

START_TEST(dev_null_takes_a_mebibyte)
{
    size_t size = (size_t)1 << 20;
    unsigned char *data = calloc(1, size);
    struct iovec iov = io_buffer(data, size);
    int fd;

    ck_assert_ptr_nonnull(data);
    fd = open("/dev/null", O_WRONLY);
    ck_assert_int_ge(fd, 0);
    write_and_run(fd, &iov, 1, size);
    free(data);
}
END_TEST

/* A raw pty: what goes into the slave comes out of the master unchanged. */
START_TEST(pty_slave_writes_reach_the_master)
{
    size_t size = 32768;
    unsigned char *data = tu_new_pattern(size, 11);
    struct iovec iov = io_buffer(data, size);
    struct termios tio;
    struct tu_reader r;
    const char *name;
    int master, slave;

    master = posix_openpt(O_RDWR | O_NOCTTY);
    ck_assert_int_ge(master, 0);
    ck_assert_int_eq(grantpt(master), 0);
    ck_assert_int_eq(unlockpt(master), 0);
    name = ptsname(master);
    ck_assert_ptr_nonnull(name);
    slave = open(name, O_RDWR | O_NOCTTY);
    ck_assert_int_ge(slave, 0);
    ck_assert_int_eq(tcgetattr(slave, &tio), 0);
    cfmakeraw(&tio);
    ck_assert_int_eq(tcsetattr(slave, TCSANOW, &tio), 0);

    tu_reader_start(&r, master, size, size);
    write_and_run(slave, &iov, 1, size);
    tu_reader_finish(&r, data, size);
    close(master);
    free(data);
}
END_TEST

/* ------------------------------------------------------------------ */
/* initiating calls, buffers, stats                                   */
/* ------------------------------------------------------------------ */

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

/* ------------------------------------------------------------------ */
/* backpressure and order                                             */
/* ------------------------------------------------------------------ */

/* One async_write of the sizes given (a pattern of key) to wfd, which
 * fills before a reader of rfd starts: the write carries on across EAGAIN
 * and across partial writes that end inside a buffer, until every byte
 * is in, and the reader gets them all. */
static void write_through_a_full_buffer(int wfd, int rfd, const size_t *sizes, int n, uint64_t key)
{
    io_context *ctx = tu_new_context(0);
    io_descriptor *d = tu_new_descriptor(ctx, wfd, NULL);
    struct iovec iov[4];
    struct tu_reader reader;
    struct tu_result r;
    unsigned char *data;
    size_t total = 0;

    ck_assert_int_le(n, 4);
    for (int i = 0; i < n; i++)
        total += sizes[i];
    data = tu_new_pattern(total, key);
    tu_split(iov, data, sizes, n);
    tu_results_init(&r, 1);
    ck_assert_int_eq(io_descriptor_async_write(d, iov, (size_t)n, tu_record, &r, NULL), 0);
    tu_wait_unwritable(wfd);
    ck_assert_int_eq(tu_int(&r.calls), 0);
    tu_reader_start(&reader, rfd, total, 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 1);
    tu_assert_result_in_run(&r, 0, total);
    ck_assert_int_eq(io_descriptor_close(d), 0);   /* the reader sees EOF */
    tu_reader_finish(&reader, data, total);
    ck_assert_int_gt(tu_write_calls(), 0);
    io_descriptor_destroy(d);
    tu_destroy_context(ctx);
    close(rfd);
    free(data);
}

START_TEST(async_write_on_a_full_pipe_waits_for_the_reader)
{
    static const size_t sizes[3] = { 100003, 7, 150001 };
    int fds[2];

    (void)tu_small_pipe(fds);
    write_through_a_full_buffer(fds[1], fds[0], sizes, 3, 1);
}
END_TEST

START_TEST(async_write_on_a_full_socket_waits_for_the_reader)
{
    static const size_t sizes[2] = { 300001, 224287 };
    int sv[2];

    tu_small_socketpair(sv);
    write_through_a_full_buffer(sv[0], sv[1], sizes, 2, 2);
}
END_TEST

#define SOME_OPS 10

/* Each write_some writes a prefix of its buffer (1 to all of it) in one
 * go; the prefixes reach the reader, and the handlers run, in start
 * order. */
START_TEST(async_write_some_writes_a_prefix_and_keeps_start_order)
{
    struct tu_order_log log;
    struct tu_result r[SOME_OPS];
    struct tu_reader reader;
    unsigned char *data, *want;
    size_t chunk, sum = 0;
    struct tu_stream io;

    tu_stream_open(&io, TU_SMALL_PIPE, 0);
    chunk = 2 * io.size;
    data = tu_new_pattern(SOME_OPS * chunk, 3);
    want = malloc(SOME_OPS * chunk);
    ck_assert_ptr_nonnull(want);
    tu_order_log_init(&log);
    tu_results_init_logged(r, SOME_OPS, &log);
    for (int i = 0; i < SOME_OPS; i++)
        ck_assert_int_eq(tu_write_some(io.d, data + i * chunk, chunk, &r[i]), 0);
    tu_wait_unwritable(io.fd);
    tu_reader_start(&reader, io.peer, SOME_OPS * chunk, 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), SOME_OPS);
    /* What the reader must get: the prefix each handler reported, in
     * start order. */
    for (int i = 0; i < SOME_OPS; i++) {
        size_t n = tu_assert_some(&r[i], chunk);

        memcpy(want + sum, data + i * chunk, n);
        sum += n;
    }
    tu_assert_in_order(&log, SOME_OPS);
    ck_assert_int_eq(io_descriptor_close(io.d), 0);
    tu_reader_finish(&reader, want, sum);
    ck_assert_uint_eq(tu_stats(io.ctx).bytes_written, sum);
    tu_stream_close(&io);
    free(want);
    free(data);
}
END_TEST

/* ------------------------------------------------------------------ */
/* many threads, one descriptor: no interleaving                       */
/* ------------------------------------------------------------------ */

#define TAG_THREADS 8
#define TAG_MSGS 500
#define TAG_MAX_LOG2 18            /* payloads of 1 B to 256 KiB - 1 */
#define TAG_RUNNERS 2
#define TAG_SEED UINT64_C(0x10c7a5eed)

struct wire_header {
    uint32_t thread;
    uint32_t seq;
    uint32_t length;               /* of the payload that follows */
};

struct tag_test {
    io_descriptor *d;
    uint32_t lengths[TAG_THREADS][TAG_MSGS];
    atomic_int handled[TAG_THREADS][TAG_MSGS];
    atomic_int bad_results;        /* error != 0 or bytes != message size */
    atomic_int outside_run;
    atomic_int refused;
};

/* One message, freed by its handler: the buffers live until then. */
struct tag_msg {
    struct tag_test *test;
    struct wire_header header;
    unsigned char payload[];
};

struct tag_poster {
    struct tag_test *test;
    uint32_t index;
};

struct tag_reader {
    pthread_t thread;
    int fd;
    const struct tag_test *test;
    uint32_t next_seq[TAG_THREADS];
    int messages;
    char failure[160];
};

/* Log-uniform: a power of two picked uniformly, then a length uniformly
 * within it. */
static uint32_t log_uniform_length(uint64_t *state)
{
    uint64_t r = tu_splitmix64(state);
    uint32_t base = UINT32_C(1) << (r % TAG_MAX_LOG2);

    return base + (uint32_t)((r >> 8) % base);
}

static uint64_t tag_key(uint32_t thread, uint32_t seq)
{
    return ((uint64_t)(thread + 1) << 40) | seq;
}

static void on_tagged_write(void *arg, int error, size_t bytes)
{
    struct tag_msg *m = arg;
    struct tag_test *t = m->test;

    atomic_fetch_add(&t->handled[m->header.thread][m->header.seq], 1);
    if (error != 0 || bytes != sizeof(m->header) + m->header.length)
        atomic_fetch_add(&t->bad_results, 1);
    if (!tu_inside_run)
        atomic_fetch_add(&t->outside_run, 1);
    free(m);
}

static void *post_tagged_writes(void *p)
{
    struct tag_poster *tp = p;
    struct tag_test *t = tp->test;

    for (uint32_t seq = 0; seq < TAG_MSGS; seq++) {
        uint32_t len = t->lengths[tp->index][seq];
        struct tag_msg *m = malloc(sizeof(*m) + len);
        struct iovec iov[2];

        if (m == NULL) {
            atomic_fetch_add(&t->refused, 1);
            continue;
        }
        m->test = t;
        m->header = (struct wire_header){ tp->index, seq, len };
        tu_fill_pattern(m->payload, len, tag_key(tp->index, seq));
        iov[0] = io_buffer(&m->header, sizeof(m->header));
        iov[1] = io_buffer(m->payload, len);
        if (io_descriptor_async_write(t->d, iov, 2, on_tagged_write, m, NULL) != 0) {
            atomic_fetch_add(&t->refused, 1);
            free(m);
        }
    }
    return NULL;
}

static bool tag_check_message(struct tag_reader *r, unsigned char *got, unsigned char *want)
{
    struct wire_header h;
    size_t n = tu_read_up_to(r->fd, &h, sizeof(h));

    if (n == 0)
        return false;                       /* EOF between messages: the end */
    if (n != sizeof(h)) {
        snprintf(r->failure, sizeof(r->failure), "the stream ends inside a header");
    } else if (h.thread >= TAG_THREADS || h.seq >= TAG_MSGS) {
        snprintf(r->failure, sizeof(r->failure), "after %d messages: a header for thread %u message %u",
                 r->messages, h.thread, h.seq);
    } else if (h.seq != r->next_seq[h.thread]) {
        snprintf(r->failure, sizeof(r->failure), "thread %u: message %u arrived where %u was due",
                 h.thread, h.seq, r->next_seq[h.thread]);
    } else if (h.length != r->test->lengths[h.thread][h.seq]) {
        snprintf(r->failure, sizeof(r->failure), "thread %u message %u: length %u, sent %u",
                 h.thread, h.seq, h.length, r->test->lengths[h.thread][h.seq]);
    } else if (tu_read_up_to(r->fd, got, h.length) != h.length) {
        snprintf(r->failure, sizeof(r->failure), "the stream ends inside thread %u message %u",
                 h.thread, h.seq);
    } else {
        tu_fill_pattern(want, h.length, tag_key(h.thread, h.seq));
        if (memcmp(got, want, h.length) != 0) {
            snprintf(r->failure, sizeof(r->failure),
                     "thread %u message %u: wrong payload (interleaved with another write?)",
                     h.thread, h.seq);
            return false;
        }
        r->next_seq[h.thread]++;
        r->messages++;
        return true;
    }
    return false;
}

/* Parses the stream message by message until EOF.  After a mismatch it
 * cannot resynchronise, so it only drains, letting the writers finish. */
static void *read_tagged_stream(void *p)
{
    struct tag_reader *r = p;
    size_t cap = (size_t)1 << TAG_MAX_LOG2;
    unsigned char *got = malloc(cap), *want = malloc(cap);

    tu_app_thread = true;
    if (got == NULL || want == NULL) {
        snprintf(r->failure, sizeof(r->failure), "reader: out of memory");
        free(got);
        free(want);
        return NULL;
    }
    while (tag_check_message(r, got, want))
        ;
    while (read(r->fd, got, cap) > 0)
        ;
    free(got);
    free(want);
    return NULL;
}

/* 8 threads start 500 async_writes each on one socket, 4 workers write,
 * 2 threads run the handlers.  The reader sees every message whole
 * (header and payload together, nothing of another message inside) and
 * each thread's messages in the order it sent them; every handler runs
 * once, inside run. */
START_TEST(concurrent_async_writes_never_interleave)
{
    struct tag_test *t = calloc(1, sizeof(*t));
    struct tag_poster posters[TAG_THREADS];
    struct tag_reader reader;
    io_context *ctx = tu_new_context(4);
    uint64_t rng = TAG_SEED;
    size_t total = 0;
    int sv[2];

    ck_assert_ptr_nonnull(t);
    for (int i = 0; i < TAG_THREADS; i++)
        for (int j = 0; j < TAG_MSGS; j++) {
            t->lengths[i][j] = log_uniform_length(&rng);
            total += sizeof(struct wire_header) + t->lengths[i][j];
        }
    printf("order: tagged writes, seed %#llx, %zu bytes\n", (unsigned long long)TAG_SEED, total);
    fflush(stdout);   /* a failing test ends without flushing */
    ck_assert_uint_lt(total, (size_t)100 << 20);

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    t->d = tu_new_descriptor(ctx, sv[0], NULL);
    reader = (struct tag_reader){ .fd = sv[1], .test = t };
    ck_assert_int_eq(pthread_create(&reader.thread, NULL, read_tagged_stream, &reader), 0);
    for (uint32_t i = 0; i < TAG_THREADS; i++)
        posters[i] = (struct tag_poster){ .test = t, .index = i };
    ck_assert_uint_eq(tu_run_while(ctx, TAG_RUNNERS, post_tagged_writes, posters, sizeof(posters[0]),
                                   TAG_THREADS), TAG_THREADS * TAG_MSGS);
    ck_assert_int_eq(io_descriptor_close(t->d), 0);
    ck_assert_int_eq(pthread_join(reader.thread, NULL), 0);

    ck_assert_msg(reader.failure[0] == '\0', "%s", reader.failure);
    ck_assert_int_eq(reader.messages, TAG_THREADS * TAG_MSGS);
    ck_assert_int_eq(tu_int(&t->refused), 0);
    ck_assert_int_eq(tu_int(&t->bad_results), 0);
    ck_assert_int_eq(tu_int(&t->outside_run), 0);
    for (int i = 0; i < TAG_THREADS; i++)
        for (int j = 0; j < TAG_MSGS; j++)
            ck_assert_msg(atomic_load(&t->handled[i][j]) == 1, "thread %d message %d: handler ran %d times",
                          i, j, atomic_load(&t->handled[i][j]));
    ck_assert_uint_eq(tu_stats(ctx).bytes_written, total);
    io_descriptor_destroy(t->d);
    tu_destroy_context(ctx);
    close(sv[1]);
    free(t);
}
END_TEST

/* ------------------------------------------------------------------ */
/* strands                                                             */
/* ------------------------------------------------------------------ */

#define SERIAL_OPS 200
#define SERIAL_LEN 512
#define SERIAL_RUNNERS 4

/* With a private strand: 4 run threads, yet no two completions of one
 * descriptor run at once, and they run in start order. */
START_TEST(completions_of_one_descriptor_never_run_concurrently)
{
    struct tu_order_log log;
    struct tu_result *r = calloc(SERIAL_OPS, sizeof(*r));
    unsigned char *data = tu_new_pattern(SERIAL_OPS * SERIAL_LEN, 4);
    struct tu_runner runners[SERIAL_RUNNERS];
    struct tu_reader reader;
    struct tu_stream io;

    ck_assert_ptr_nonnull(r);
    tu_stream_open(&io, TU_SMALL_SOCKETPAIR, 4);
    tu_order_log_init(&log);
    tu_results_init_logged(r, SERIAL_OPS, &log);
    tu_reader_start(&reader, io.peer, SERIAL_OPS * SERIAL_LEN, 0);
    io_context_work_started(io.ctx);
    tu_runners_start(runners, SERIAL_RUNNERS, io.ctx);
    for (int i = 0; i < SERIAL_OPS; i++)
        ck_assert_int_eq(tu_write_all(io.d, data + i * SERIAL_LEN, SERIAL_LEN, &r[i]), 0);
    io_context_work_finished(io.ctx);
    ck_assert_uint_eq(tu_runners_join(runners, SERIAL_RUNNERS), SERIAL_OPS);
    for (int i = 0; i < SERIAL_OPS; i++)
        tu_assert_result_in_run(&r[i], 0, SERIAL_LEN);
    tu_assert_in_order(&log, SERIAL_OPS);
    ck_assert_int_eq(io_descriptor_close(io.d), 0);
    tu_reader_finish(&reader, data, SERIAL_OPS * SERIAL_LEN);
    tu_stream_close(&io);
    free(data);
    free(r);
}
END_TEST

/* With a user strand: the handler runs on it; a descriptor with a
 * private strand does not. */
START_TEST(completions_run_on_the_strand_given_to_create)
{
    io_context *ctx = tu_new_context(0);
    io_strand *strand = tu_new_strand(ctx);
    io_descriptor *mine, *other;
    unsigned char buf[4];
    struct tu_result r[2];
    bool eof;
    int a[2], b[2];

    ck_assert_int_eq(pipe(a), 0);
    ck_assert_int_eq(pipe(b), 0);
    mine = tu_new_descriptor(ctx, a[1], strand);
    other = tu_new_descriptor(ctx, b[1], NULL);
    tu_results_init(r, 2);
    r[0].on_strand = strand;
    r[1].off_strand = strand;
    ck_assert_int_eq(tu_write_all(mine, "s", 1, &r[0]), 0);
    ck_assert_int_eq(tu_write_all(other, "p", 1, &r[1]), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 2);
    tu_assert_result_in_run(&r[0], 0, 1);
    tu_assert_result_in_run(&r[1], 0, 1);
    ck_assert_uint_eq(tu_read_available(a[0], buf, sizeof(buf), &eof), 1);
    ck_assert_uint_eq(tu_read_available(b[0], buf, sizeof(buf), &eof), 1);
    io_descriptor_destroy(mine);
    io_descriptor_destroy(other);
    io_strand_destroy(strand);
    tu_destroy_context(ctx);
    close(a[0]);
    close(b[0]);
}
END_TEST

/* ------------------------------------------------------------------ */
/* several workers, several descriptors                                */
/* ------------------------------------------------------------------ */

#define FAN_SOCKETS 16
#define FAN_WRITERS 4
#define FAN_CHUNKS 32
#define FAN_CHUNK 4096
#define FAN_BYTES (FAN_CHUNKS * FAN_CHUNK)
#define FAN_RUNNERS 2

struct fan_socket {
    io_descriptor *d;
    int peer;
    unsigned char *data;          /* FAN_BYTES, written chunk by chunk */
    unsigned char *got;           /* FAN_BYTES + FAN_CHUNK of room */
    size_t got_len;
    struct tu_order_log log;
    struct tu_result r[FAN_CHUNKS];
};

struct fan_test {
    struct fan_socket sockets[FAN_SOCKETS];
    int reader_error;
    int refused[FAN_WRITERS];
};

struct fan_writer {
    struct fan_test *test;
    int index;
};

/* Writer w owns sockets w, w + 4, ...; it starts their chunks in turn. */
static void *write_fan(void *p)
{
    struct fan_writer *w = p;

    for (int c = 0; c < FAN_CHUNKS; c++)
        for (int s = w->index; s < FAN_SOCKETS; s += FAN_WRITERS) {
            struct fan_socket *fs = &w->test->sockets[s];

            if (tu_write_all(fs->d, fs->data + c * FAN_CHUNK, FAN_CHUNK, &fs->r[c]) != 0)
                w->test->refused[w->index]++;
        }
    return NULL;
}

/* One thread reads all 16 peers with poll() until each reaches EOF. */
static void *read_fan(void *p)
{
    struct fan_test *f = p;
    struct pollfd pfd[FAN_SOCKETS];
    int open = FAN_SOCKETS;

    tu_app_thread = true;
    for (int s = 0; s < FAN_SOCKETS; s++)
        pfd[s] = (struct pollfd){ .fd = f->sockets[s].peer, .events = POLLIN };
    while (open > 0 && f->reader_error == 0) {
        if (poll(pfd, FAN_SOCKETS, -1) < 0) {
            if (errno != EINTR)
                f->reader_error = errno;
            continue;
        }
        for (int s = 0; s < FAN_SOCKETS; s++) {
            struct fan_socket *fs = &f->sockets[s];
            ssize_t n;

            if (pfd[s].fd < 0 || pfd[s].revents == 0)
                continue;
            if (fs->got_len == FAN_BYTES + FAN_CHUNK) {
                f->reader_error = EOVERFLOW;
                break;
            }
            n = read(pfd[s].fd, fs->got + fs->got_len, FAN_BYTES + FAN_CHUNK - fs->got_len);
            if (n > 0) {
                fs->got_len += (size_t)n;
            } else if (n == 0) {
                pfd[s].fd = -1;
                open--;
            } else if (errno != EAGAIN && errno != EINTR) {
                f->reader_error = errno;
            }
        }
    }
    return NULL;
}

/* With worker_threads = 4: 16 small sockets written at once from 4
 * threads; every byte arrives, in order per socket, and only workers
 * write. */
START_TEST(four_workers_serve_sixteen_sockets)
{
    struct fan_test *f = calloc(1, sizeof(*f));
    struct fan_writer writers[FAN_WRITERS];
    io_context *ctx = tu_new_context(4);
    pthread_t reader;

    ck_assert_ptr_nonnull(f);
    for (int s = 0; s < FAN_SOCKETS; s++) {
        struct fan_socket *fs = &f->sockets[s];
        int sv[2];

        tu_small_socketpair(sv);
        ck_assert_int_eq(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
        fs->d = tu_new_descriptor(ctx, sv[0], NULL);
        fs->peer = sv[1];
        fs->data = tu_new_pattern(FAN_BYTES, 100 + (uint64_t)s);
        fs->got = malloc(FAN_BYTES + FAN_CHUNK);
        ck_assert_ptr_nonnull(fs->got);
        tu_order_log_init(&fs->log);
        tu_results_init_logged(fs->r, FAN_CHUNKS, &fs->log);
    }
    ck_assert_int_eq(pthread_create(&reader, NULL, read_fan, f), 0);
    for (int w = 0; w < FAN_WRITERS; w++)
        writers[w] = (struct fan_writer){ .test = f, .index = w };
    ck_assert_uint_eq(tu_run_while(ctx, FAN_RUNNERS, write_fan, writers, sizeof(writers[0]),
                                   FAN_WRITERS), FAN_SOCKETS * FAN_CHUNKS);
    for (int s = 0; s < FAN_SOCKETS; s++)
        ck_assert_int_eq(io_descriptor_close(f->sockets[s].d), 0);
    ck_assert_int_eq(pthread_join(reader, NULL), 0);

    ck_assert_int_eq(f->reader_error, 0);
    for (int w = 0; w < FAN_WRITERS; w++)
        ck_assert_int_eq(f->refused[w], 0);
    for (int s = 0; s < FAN_SOCKETS; s++) {
        struct fan_socket *fs = &f->sockets[s];

        for (int c = 0; c < FAN_CHUNKS; c++)
            tu_assert_result_in_run(&fs->r[c], 0, FAN_CHUNK);
        tu_assert_in_order(&fs->log, FAN_CHUNKS);
        ck_assert_msg(fs->got_len == FAN_BYTES, "socket %d: %zu bytes", s, fs->got_len);
        ck_assert_msg(memcmp(fs->got, fs->data, FAN_BYTES) == 0, "socket %d: wrong bytes", s);
        io_descriptor_destroy(fs->d);
        close(fs->peer);
        free(fs->data);
        free(fs->got);
    }
    tu_destroy_context(ctx);
    free(f);
}
END_TEST

#define HUGE_CHUNKS 64

/*
 * One worker is held in a blocking writev (the pipe's O_NONBLOCK cleared
 * behind the library's back) while a 64 MiB write to /dev/null and then a
 * 1-byte write to a socket queue up behind it.  Once it is let go, the
 * bounded turn must hand the worker to the small write long before the
 * huge one is done: the completions come held, small, huge.
 */
START_TEST(a_huge_write_does_not_starve_other_descriptors)
{
    size_t psz, chunk = (size_t)1 << 20;
    unsigned char *hold_data, *chunk_data, *got;
    io_context *ctx = tu_new_context(1);
    struct iovec huge[HUGE_CHUNKS];
    io_descriptor *held, *big, *small;
    int hold[2], sv[2], null_fd;
    struct tu_order_log log;
    struct tu_result r[3];
    char byte;

    psz = tu_small_pipe(hold);
    hold_data = tu_new_pattern(2 * psz, 21);
    chunk_data = calloc(1, chunk);
    got = malloc(2 * psz);
    ck_assert(chunk_data != NULL && got != NULL);
    null_fd = open("/dev/null", O_WRONLY);
    ck_assert_int_ge(null_fd, 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    held = tu_new_descriptor(ctx, hold[1], NULL);
    big = tu_new_descriptor(ctx, null_fd, NULL);
    small = tu_new_descriptor(ctx, sv[0], NULL);
    tu_make_blocking(hold[1]);
    tu_order_log_init(&log);
    tu_results_init_logged(r, 3, &log);

    /* The first psz bytes fill the pipe; the worker blocks on the rest. */
    ck_assert_int_eq(tu_write_all(held, hold_data, 2 * psz, &r[0]), 0);
    for (int i = 0; i < HUGE_CHUNKS; i++)
        huge[i] = io_buffer(chunk_data, chunk);
    ck_assert_int_eq(io_descriptor_async_write(big, huge, HUGE_CHUNKS, tu_record, &r[2], NULL), 0);
    ck_assert_int_eq(tu_write_all(small, "s", 1, &r[1]), 0);
    tu_read_exactly(hold[0], got, 2 * psz);
    ck_assert(memcmp(got, hold_data, 2 * psz) == 0);

    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 3);
    tu_assert_result_in_run(&r[0], 0, 2 * psz);
    tu_assert_result_in_run(&r[1], 0, 1);
    tu_assert_result_in_run(&r[2], 0, HUGE_CHUNKS * chunk);
    tu_assert_in_order(&log, 3);
    ck_assert_int_eq(read(sv[1], &byte, 1), 1);
    ck_assert_int_eq(byte, 's');
    ck_assert_int_eq(tu_app_thread_write_calls(), 0);

    io_descriptor_destroy(held);
    io_descriptor_destroy(big);
    io_descriptor_destroy(small);
    tu_destroy_context(ctx);
    close(hold[0]);
    close(sv[1]);
    free(hold_data);
    free(chunk_data);
    free(got);
}
END_TEST

/* ------------------------------------------------------------------ */
/* cancel, close, release, destroy                                    */
/* ------------------------------------------------------------------ */

/* Writes of 16 pipe sizes each, on a small pipe nobody reads. */
struct stuck {
    struct tu_stream io;
    size_t size;                /* each write's */
    unsigned char *data;
    unsigned char *got;         /* room for every byte of every write */
    struct tu_result r[4];
};

/* Starts n async_writes and waits until they are stuck: op 0 has
 * written what the pipe holds. */
static void start_stuck_writes(struct stuck *s, int n)
{
    tu_stream_open(&s->io, TU_SMALL_PIPE, 0);
    s->size = 16 * s->io.size;
    s->data = tu_new_pattern(n * s->size, 7);
    s->got = malloc(n * s->size);
    ck_assert_ptr_nonnull(s->got);
    tu_results_init(s->r, 4);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(tu_write_all(s->io.d, s->data + i * s->size, s->size, &s->r[i]), 0);
    tu_wait_unwritable(s->io.fd);
    /* The pipe fills during the worker's call; the call has returned once
     * the library counts the bytes as written. */
    while (io_descriptor_queued_bytes(s->io.d) == (size_t)n * s->size)
        sched_yield();
}

/* Op 0 was cancelled after it wrote what the pipe took, and the rest of
 * the first n before it wrote anything; returns op 0's bytes. */
static size_t assert_first_cut_short(struct stuck *s, int n)
{
    size_t first = tu_result_bytes(&s->r[0]);

    ck_assert_uint_gt(first, 0);
    ck_assert_uint_le(first, s->io.size);
    tu_assert_result_in_run(&s->r[0], ECANCELED, first);
    for (int i = 1; i < n; i++)
        tu_assert_result_in_run(&s->r[i], ECANCELED, 0);
    ck_assert_uint_eq(io_descriptor_queued_bytes(s->io.d), 0);
    return first;
}

static void finish_stuck(struct stuck *s)
{
    tu_stream_close(&s->io);
    free(s->got);
    free(s->data);
}

/* Cancel completes every pending write with ECANCELED; the one that had
 * begun reports what the pipe took, and that is what a reader gets.  The
 * descriptor stays open and usable. */
START_TEST(cancel_completes_pending_writes_with_ecanceled)
{
    struct stuck s;
    size_t queued, first;
    bool eof;

    start_stuck_writes(&s, 3);
    queued = io_descriptor_queued_bytes(s.io.d);
    ck_assert_uint_ge(queued, 3 * s.size - s.io.size);
    ck_assert_uint_lt(queued, 3 * s.size);
    ck_assert_int_eq(tu_int(&s.r[0].calls), 0);

    /* A worker that had just seen EAGAIN may still hold the ops in its
     * system call for a moment: queued_bytes is checked after run. */
    ck_assert_int_eq(io_descriptor_cancel(s.io.d), 0);
    ck_assert_int_eq(tu_int(&s.r[0].calls), 0);   /* queued, not run inline */
    ck_assert_uint_eq(tu_run_marked(io_context_run, s.io.ctx), 3);
    first = assert_first_cut_short(&s, 3);
    ck_assert_uint_eq(tu_read_available(s.io.peer, s.got, 3 * s.size, &eof), first);
    ck_assert(!eof);
    ck_assert(memcmp(s.got, s.data, first) == 0);

    /* Nothing pending: cancel is still fine, and writes still work. */
    ck_assert(io_descriptor_is_open(s.io.d));
    ck_assert_int_eq(io_descriptor_native_handle(s.io.d), s.io.fd);
    ck_assert_int_eq(io_descriptor_cancel(s.io.d), 0);
    tu_results_init(&s.r[3], 1);
    io_context_restart(s.io.ctx);
    ck_assert_int_eq(tu_write_all(s.io.d, "z", 1, &s.r[3]), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, s.io.ctx), 1);
    tu_assert_result_in_run(&s.r[3], 0, 1);
    ck_assert_uint_eq(tu_read_available(s.io.peer, s.got, 3 * s.size, &eof), 1);
    ck_assert_int_eq(s.got[0], 'z');
    finish_stuck(&s);
}
END_TEST

/* Close cancels, closes the fd, and makes later writes fail with EBADF;
 * a second close is EBADF. */
START_TEST(close_cancels_closes_and_fails_later_writes)
{
    struct stuck s;
    size_t first;

    start_stuck_writes(&s, 2);
    ck_assert_int_eq(io_descriptor_close(s.io.d), 0);
    ck_assert_int_eq(io_descriptor_native_handle(s.io.d), -1);
    ck_assert(!io_descriptor_is_open(s.io.d));

    ck_assert_int_eq(tu_write_all(s.io.d, "x", 1, &s.r[2]), 0);
    ck_assert_int_eq(tu_write_some(s.io.d, "y", 1, &s.r[3]), 0);
    ck_assert_int_eq(tu_int(&s.r[2].calls) + tu_int(&s.r[3].calls), 0);
    ck_assert_int_eq(io_descriptor_close(s.io.d), EBADF);
    ck_assert_int_eq(io_descriptor_cancel(s.io.d), EBADF);   /* as Asio */
    errno = 0;
    ck_assert_int_eq(io_descriptor_release(s.io.d), -1);
    ck_assert_int_eq(errno, EBADF);

    ck_assert_uint_eq(tu_run_marked(io_context_run, s.io.ctx), 4);
    first = assert_first_cut_short(&s, 2);
    tu_assert_result_in_run(&s.r[2], EBADF, 0);
    tu_assert_result_in_run(&s.r[3], EBADF, 0);
    ck_assert_uint_eq(tu_read_until_eof(s.io.peer, s.got, 2 * s.size), first);
    ck_assert(tu_is_closed(s.io.fd));
    ck_assert(memcmp(s.got, s.data, first) == 0);
    finish_stuck(&s);
}
END_TEST

/* Release cancels, gives back the same fd with the flags it had (blocking
 * again), open; later writes fail with EBADF. */
START_TEST(release_restores_flags_and_hands_back_the_fd)
{
    struct stuck s;
    size_t first;
    bool eof;
    int fd;

    start_stuck_writes(&s, 1);
    ck_assert_int_eq(s.io.flags & O_NONBLOCK, 0);
    ck_assert(tu_is_nonblocking(s.io.fd));

    fd = io_descriptor_release(s.io.d);
    ck_assert_int_eq(fd, s.io.fd);
    ck_assert_int_eq(fcntl(fd, F_GETFL), s.io.flags);
    ck_assert_int_eq(io_descriptor_native_handle(s.io.d), -1);
    ck_assert(!io_descriptor_is_open(s.io.d));
    ck_assert_int_eq(tu_write_all(s.io.d, "x", 1, &s.r[1]), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, s.io.ctx), 2);
    first = assert_first_cut_short(&s, 1);
    tu_assert_result_in_run(&s.r[1], EBADF, 0);

    ck_assert_uint_eq(tu_read_available(s.io.peer, s.got, s.size, &eof), first);
    ck_assert(!eof);                 /* released, not closed */
    ck_assert(memcmp(s.got, s.data, first) == 0);
    ck_assert_int_eq(write(fd, "r", 1), 1);
    ck_assert_uint_eq(tu_read_available(s.io.peer, s.got, s.size, &eof), 1);
    ck_assert_int_eq(s.got[0], 'r');

    errno = 0;
    ck_assert_int_eq(io_descriptor_release(s.io.d), -1);
    ck_assert_int_eq(errno, EBADF);
    ck_assert_int_eq(io_descriptor_close(s.io.d), EBADF);
    finish_stuck(&s);
    ck_assert(!tu_is_closed(fd));       /* neither destroy closed it */
    ck_assert_int_eq(close(fd), 0);
}
END_TEST

#define DETACH_ROUNDS 300

/*
 * Against a worker mid-turn: a 1 MiB write on a pipe nobody reads, then
 * close or release at once, so that they land anywhere in the worker's
 * turn (writing, about to poll, polling).  release must return, close
 * must have closed the fd when it returns, and the write ends ECANCELED
 * with what the pipe took.  The number close freed is reused at once by
 * a new file: no byte of ours may ever reach it.
 */
START_TEST(close_and_release_let_go_of_a_worker_at_any_point)
{
    size_t size = (size_t)1 << 20;
    unsigned char *data = calloc(1, size);
    char path[] = "/tmp/ioctx-reuse-XXXXXX";
    io_context *ctx = tu_new_context(1);

    ck_assert_ptr_nonnull(data);
    for (int i = 0; i < DETACH_ROUNDS; i++) {
        bool use_release = i % 2 == 1;
        struct stat st;
        io_descriptor *d;
        struct tu_result r;
        int fds[2], fd, reused;

        tu_small_pipe(fds);
        d = tu_new_descriptor(ctx, fds[1], NULL);
        tu_results_init(&r, 1);
        ck_assert_int_eq(tu_write_all(d, data, size, &r), 0);
        for (int spin = 0; spin < i % 7; spin++)
            sched_yield();      /* land at a different point each round */
        if (use_release) {
            fd = io_descriptor_release(d);
            ck_assert_int_eq(fd, fds[1]);
            ck_assert_int_eq(close(fd), 0);
        } else {
            ck_assert_int_eq(io_descriptor_close(d), 0);
            ck_assert(tu_is_closed(fds[1]));
        }
        reused = mkstemp(path);
        ck_assert_int_ge(reused, 0);
        unlink(path);
        memcpy(path + sizeof(path) - 7, "XXXXXX", 6);
        io_context_restart(ctx);
        ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 1);
        ck_assert_int_eq(tu_int(&r.calls), 1);
        ck_assert_int_eq(tu_result_error(&r), ECANCELED);
        ck_assert_uint_le(tu_result_bytes(&r), size);
        ck_assert_int_eq(fstat(reused, &st), 0);
        ck_assert_int_eq(st.st_size, 0);
        close(reused);
        io_descriptor_destroy(d);
        close(fds[0]);
    }
    tu_destroy_context(ctx);
    free(data);
}
END_TEST

#define DESTROY_OPS 5

/* The first handler destroys its descriptor while four writes are stuck
 * behind it; each still completes once (ECANCELED), and the fd is
 * closed.  ASan sees any use of freed memory. */
START_TEST(destroy_from_its_own_handler_with_writes_pending)
{
    io_context *ctx = tu_new_context(0);
    struct tu_result r[DESTROY_OPS];
    unsigned char *data, *got;
    io_descriptor *d;
    size_t psz, size;
    int fds[2];

    psz = tu_small_pipe(fds);
    size = 16 * psz;
    data = tu_new_pattern(psz + (DESTROY_OPS - 1) * size, 8);
    got = malloc(psz + 1);
    ck_assert_ptr_nonnull(got);
    d = tu_new_descriptor(ctx, fds[1], NULL);
    tu_results_init(r, DESTROY_OPS);
    r[0].destroy = d;
    /* Op 0 fills the pipe exactly; the others cannot write a byte. */
    ck_assert_int_eq(tu_write_all(d, data, psz, &r[0]), 0);
    for (int i = 1; i < DESTROY_OPS; i++)
        ck_assert_int_eq(tu_write_all(d, data + psz + (i - 1) * size, size, &r[i]), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), DESTROY_OPS);
    tu_assert_result_in_run(&r[0], 0, psz);
    for (int i = 1; i < DESTROY_OPS; i++)
        tu_assert_result_in_run(&r[i], ECANCELED, 0);
    ck_assert_uint_eq(tu_read_until_eof(fds[0], got, psz + 1), psz);
    ck_assert(tu_is_closed(fds[1]));
    ck_assert(memcmp(got, data, psz) == 0);
    tu_destroy_context(ctx);
    close(fds[0]);
    free(got);
    free(data);
}
END_TEST

/* Destroy of an idle descriptor, used or not, closes its fd; NULL is
 * ignored. */
START_TEST(destroy_idle_descriptor_closes_it)
{
    io_context *ctx = tu_new_context(0);
    unsigned char buf[4];
    io_descriptor *d;
    struct tu_result r;
    int a[2], b[2];

    ck_assert_int_eq(pipe(a), 0);
    ck_assert_int_eq(pipe(b), 0);
    io_descriptor_destroy(tu_new_descriptor(ctx, a[1], NULL));
    d = tu_new_descriptor(ctx, b[1], NULL);
    tu_results_init(&r, 1);
    ck_assert_int_eq(tu_write_all(d, "w", 1, &r), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 1);
    tu_assert_result_in_run(&r, 0, 1);
    io_descriptor_destroy(d);
    io_descriptor_destroy(NULL);
    io_context_restart(ctx);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 0);
    ck_assert_uint_eq(tu_read_until_eof(a[0], buf, sizeof(buf)), 0);
    ck_assert(tu_is_closed(a[1]));
    ck_assert_uint_eq(tu_read_until_eof(b[0], buf, sizeof(buf)), 1);
    ck_assert(tu_is_closed(b[1]));
    ck_assert_int_eq(buf[0], 'w');
    tu_destroy_context(ctx);
    close(a[0]);
    close(b[0]);
}
END_TEST

/* ------------------------------------------------------------------ */
/* EPIPE without SIGPIPE                                              */
/* ------------------------------------------------------------------ */

/* How many threads of this process have a SIGPIPE pending, from the
 * SigPnd mask of each in /proc (a blocked signal waits there for ever). */
static int threads_with_sigpipe_pending(void)
{
    char path[300], line[256];
    int count = 0;
    DIR *dir = opendir("/proc/self/task");
    struct dirent *e;

    ck_assert_ptr_nonnull(dir);
    while ((e = readdir(dir)) != NULL) {
        FILE *f;

        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
        f = fopen(path, "r");
        if (f == NULL)
            continue;   /* the thread just exited */
        while (fgets(line, sizeof(line), f) != NULL) {
            unsigned long long mask;

            if (sscanf(line, "SigPnd: %llx", &mask) == 1 && (mask & (1ull << (SIGPIPE - 1))))
                count++;
        }
        fclose(f);
    }
    closedir(dir);
    return count;
}

/* An async_write and an async_write_some to fd, whose reader is gone:
 * both fail with no byte written.  Returns the error of each in err. */
static void write_without_reader(int fd, int err[2])
{
    io_context *ctx = tu_new_context(0);
    io_descriptor *d = tu_new_descriptor(ctx, fd, NULL);
    struct tu_result r[2];

    tu_results_init(r, 2);
    ck_assert_int_eq(tu_write_all(d, "x", 1, &r[0]), 0);
    ck_assert_int_eq(tu_write_some(d, "yz", 2, &r[1]), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 2);
    for (int i = 0; i < 2; i++) {
        err[i] = tu_result_error(&r[i]);
        tu_assert_result_in_run(&r[i], err[i], 0);
    }
    /* Checked with the workers still running: the one that got EPIPE
     * keeps SIGPIPE blocked, so a signal it raised would wait there. */
    ck_assert_int_eq(threads_with_sigpipe_pending(), 0);
    io_descriptor_destroy(d);
    tu_destroy_context(ctx);
}

/* Each EPIPE left a SIGPIPE pending on the worker, and the library must
 * have taken it away. */
START_TEST(write_to_a_pipe_without_reader_gives_epipe)
{
    int fds[2], err[2];

    signal(SIGPIPE, SIG_DFL);
    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(close(fds[0]), 0);
    write_without_reader(fds[1], err);
    ck_assert_int_eq(err[0], EPIPE);
    ck_assert_int_eq(err[1], EPIPE);
}
END_TEST

/* MSG_NOSIGNAL: not even a blocked SIGPIPE is left pending on a worker. */
START_TEST(write_to_a_socket_without_peer_gives_epipe)
{
    int sv[2], err[2];

    signal(SIGPIPE, SIG_DFL);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(close(sv[1]), 0);
    write_without_reader(sv[0], err);
    for (int i = 0; i < 2; i++)
        ck_assert_msg(err[i] == EPIPE || err[i] == ECONNRESET, "op %d: error %d (%s)", i, err[i],
                      strerror(err[i]));
}
END_TEST

void tu_add_tests(Suite *s)
{
    tu_add_tcase(s, "create", TU_TESTS(create_rejects_fds_that_are_not_open,
                                       null_arguments_give_einval,
                                       create_sets_nonblocking_and_reports_the_fd,
                                       create_out_of_memory_gives_enomem_and_leaks_nothing));
    tu_add_tcase(s, "kinds", TU_TESTS(regular_file_gets_every_byte, dev_null_takes_a_mebibyte,
                                      pty_slave_writes_reach_the_master));
    tu_add_tcase(s, "initiating calls", TU_TESTS(write_rejects_null_arguments,
                                                 handler_runs_inside_run_never_inside_the_call,
                                                 zero_byte_writes_complete_without_a_system_call));
    tu_add_tcase(s, "buffer counts", TU_TESTS(async_write_sends_more_than_iov_max_buffers,
                                              async_write_some_with_more_than_iov_max_buffers));
    tu_add_tcase(s, "stats", TU_TESTS(stats_count_ops_bytes_calls_and_handlers,
                                      steady_state_writes_do_not_allocate));
    tu_add_tcase(s, "backpressure", TU_TESTS(async_write_on_a_full_pipe_waits_for_the_reader,
                                             async_write_on_a_full_socket_waits_for_the_reader,
                                             async_write_some_writes_a_prefix_and_keeps_start_order));
    tu_add_tcase(s, "concurrency", TU_TESTS(concurrent_async_writes_never_interleave,
                                            completions_of_one_descriptor_never_run_concurrently,
                                            completions_run_on_the_strand_given_to_create,
                                            four_workers_serve_sixteen_sockets,
                                            a_huge_write_does_not_starve_other_descriptors));
    tu_add_tcase(s, "cancel close release", TU_TESTS(cancel_completes_pending_writes_with_ecanceled,
                                                     close_cancels_closes_and_fails_later_writes,
                                                     release_restores_flags_and_hands_back_the_fd,
                                                     close_and_release_let_go_of_a_worker_at_any_point));
    tu_add_tcase(s, "destroy", TU_TESTS(destroy_from_its_own_handler_with_writes_pending,
                                        destroy_idle_descriptor_closes_it));
    tu_add_tcase(s, "errors", TU_TESTS(write_to_a_pipe_without_reader_gives_epipe,
                                       write_to_a_socket_without_peer_gives_epipe));
}
