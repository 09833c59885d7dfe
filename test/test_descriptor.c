/*
 * test_descriptor.c - io_descriptor: rules 1-5, 9-16 and 20 as a user sees
 * them: what the calls return, the error and byte count each handler gets,
 * the bytes a reader receives, the thread a handler runs on and how often
 * it runs.
 *
 * The build links this suite with -Wl,--wrap=writev -Wl,--wrap=sendmsg:
 * the wrappers below count every write system call the library makes, and
 * those made on a thread the test owns (rule 20: there must be none).
 * Backpressure is real: a test fills a small pipe or socket and waits until
 * the stats show a write that returned EAGAIN before it starts a reader.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <termios.h>

#include "alloc.h"
#include "ioctx.h"
#include "test_util.h"

/* ------------------------------------------------------------------ */
/* write system calls                                                  */
/* ------------------------------------------------------------------ */

/* Set on every thread the test owns: the test itself and the run,
 * posting and reading threads it starts.  Clear on the library's own
 * workers, the only threads that may write (rule 20). */
static _Thread_local bool app_thread;

/* Set around the test's own run calls: a handler that finds it clear ran
 * somewhere it must not (rule 5). */
static _Thread_local bool inside_run_call;

static atomic_int write_calls;            /* writev and sendmsg, any thread */
static atomic_int app_thread_write_calls; /* those made on a test thread */

extern ssize_t __real_writev(int fd, const struct iovec *iov, int iovcnt);
extern ssize_t __real_sendmsg(int fd, const struct msghdr *msg, int flags);
ssize_t __wrap_writev(int fd, const struct iovec *iov, int iovcnt);
ssize_t __wrap_sendmsg(int fd, const struct msghdr *msg, int flags);

static void count_write_call(void)
{
    atomic_fetch_add(&write_calls, 1);
    if (app_thread)
        atomic_fetch_add(&app_thread_write_calls, 1);
}

ssize_t __wrap_writev(int fd, const struct iovec *iov, int iovcnt)
{
    count_write_call();
    return __real_writev(fd, iov, iovcnt);
}

ssize_t __wrap_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    count_write_call();
    return __real_sendmsg(fd, msg, flags);
}

/* Runs in the forked test process, on the thread that runs the test. */
static void setup(void)
{
    app_thread = true;
    inside_run_call = false;
    atomic_store(&write_calls, 0);
    atomic_store(&app_thread_write_calls, 0);
}

/* ------------------------------------------------------------------ */
/* contexts, descriptors, run threads                                  */
/* ------------------------------------------------------------------ */

static io_context *new_context(unsigned workers)
{
    io_context_options opts = { .worker_threads = workers };
    io_context *ctx = NULL;

    ck_assert_int_eq(io_context_create(&ctx, &opts), 0);
    ck_assert_ptr_nonnull(ctx);
    return ctx;
}

static io_descriptor *new_descriptor(io_context *ctx, int fd, io_strand *strand)
{
    io_descriptor *d = NULL;

    ck_assert_int_eq(io_descriptor_create(ctx, fd, strand, &d), 0);
    ck_assert_ptr_nonnull(d);
    return d;
}

/* Every test ends here: no thread of the test wrote to a descriptor. */
static void finish(io_context *ctx)
{
    ck_assert_int_eq(tu_int(&app_thread_write_calls), 0);
    io_context_destroy(ctx);
    ck_assert_int_eq(tu_int(&app_thread_write_calls), 0);
}

static size_t run_marked(io_context *ctx)
{
    size_t n;

    inside_run_call = true;
    n = io_context_run(ctx);
    inside_run_call = false;
    return n;
}

struct runner {
    pthread_t thread;
    io_context *ctx;
    size_t ran;
};

static void *run_in_thread(void *p)
{
    struct runner *r = p;

    app_thread = true;
    inside_run_call = true;
    r->ran = io_context_run(r->ctx);
    inside_run_call = false;
    return NULL;
}

static void start_runners(struct runner *r, int n, io_context *ctx)
{
    for (int i = 0; i < n; i++) {
        r[i] = (struct runner){ .ctx = ctx };
        ck_assert_int_eq(pthread_create(&r[i].thread, NULL, run_in_thread, &r[i]), 0);
    }
}

static size_t join_runners(struct runner *r, int n)
{
    size_t ran = 0;

    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(pthread_join(r[i].thread, NULL), 0);
        ran += r[i].ran;
    }
    return ran;
}

static io_context_stats stats_of(io_context *ctx)
{
    io_context_stats st;

    io_context_get_stats(ctx, &st);
    return st;
}

/* ------------------------------------------------------------------ */
/* pipes, sockets, data                                                */
/* ------------------------------------------------------------------ */

/* sv[0] for the descriptor, sv[1] for the reader; the kernel raises the
 * requested 1 byte to its minimum, a few KiB. */
static void small_socketpair(int sv[2])
{
    int one = 1;

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &one, sizeof(one)), 0);
    ck_assert_int_eq(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &one, sizeof(one)), 0);
}

static bool is_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);

    ck_assert_int_ne(flags, -1);
    return (flags & O_NONBLOCK) != 0;
}

static bool is_closed(int fd)
{
    return fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

static size_t iov_max(void)
{
    long n = sysconf(_SC_IOV_MAX);

    return n > 0 ? (size_t)n : IOV_MAX;
}

static uint64_t mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

/* Bytes that depend on key and on their offset, so that a lost, repeated
 * or misplaced stretch shows. */
static void fill_pattern(unsigned char *p, size_t len, uint64_t key)
{
    for (size_t off = 0; off < len; off += 8) {
        uint64_t w = mix64(key * UINT64_C(0x9e3779b97f4a7c15) + off);

        memcpy(p + off, &w, len - off < 8 ? len - off : 8);
    }
}

static unsigned char *new_pattern(size_t len, uint64_t key)
{
    unsigned char *p = malloc(len > 0 ? len : 1);

    ck_assert_ptr_nonnull(p);
    fill_pattern(p, len, key);
    return p;
}

/* iov[i] covers the next sizes[i] bytes of data. */
static size_t split(struct iovec *iov, unsigned char *data, const size_t *sizes, int n)
{
    size_t off = 0;

    for (int i = 0; i < n; i++) {
        iov[i] = io_buffer(data + off, sizes[i]);
        off += sizes[i];
    }
    return off;
}

/* Reads what fd holds now, without blocking; *eof tells whether every
 * writer is gone (for a pipe: the library really closed its end). */
static size_t drain(int fd, unsigned char *buf, size_t cap, bool *eof)
{
    unsigned char scratch[512];
    size_t got = 0;

    ck_assert_int_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    *eof = false;
    for (;;) {
        unsigned char *dst = got < cap ? buf + got : scratch;
        size_t want = got < cap ? cap - got : sizeof(scratch);
        ssize_t n = read(fd, dst, want);

        if (n > 0) {
            got += (size_t)n;
        } else if (n == 0) {
            *eof = true;
            break;
        } else if (errno == EAGAIN) {
            break;
        } else if (errno != EINTR) {
            ck_abort_msg("read: %s", strerror(errno));
        }
    }
    return got;
}

/* Reads fd, blocking, until EOF: it returns once every writer is gone, so
 * a library that never closes its end makes the test time out.  Closing
 * may wait for a worker to let go of the fd, so it need not be done when
 * the call that asked for it returns. */
static size_t read_until_eof(int fd, unsigned char *buf, size_t cap)
{
    unsigned char scratch[512];
    size_t got = 0;

    for (;;) {
        unsigned char *dst = got < cap ? buf + got : scratch;
        size_t want = got < cap ? cap - got : sizeof(scratch);
        ssize_t n = read(fd, dst, want);

        if (n > 0)
            got += (size_t)n;
        else if (n == 0)
            return got;
        else if (errno != EINTR)
            ck_abort_msg("read: %s", strerror(errno));
    }
}

/* A thread that reads fd (blocking) until EOF, or until stop_at bytes
 * when stop_at is not 0.  buf keeps the first cap bytes; got counts all. */
struct reader {
    pthread_t thread;
    int fd;
    unsigned char *buf;
    size_t cap;
    size_t stop_at;
    size_t got;
    int error;
};

static void *read_stream(void *p)
{
    struct reader *r = p;
    unsigned char scratch[4096];

    app_thread = true;
    while (r->stop_at == 0 || r->got < r->stop_at) {
        unsigned char *dst = r->got < r->cap ? r->buf + r->got : scratch;
        size_t want = r->got < r->cap ? r->cap - r->got : sizeof(scratch);
        ssize_t n;

        if (r->stop_at != 0 && want > r->stop_at - r->got)
            want = r->stop_at - r->got;
        n = read(r->fd, dst, want);
        if (n > 0) {
            r->got += (size_t)n;
        } else if (n == 0) {
            break;
        } else if (errno != EINTR) {
            r->error = errno;
            break;
        }
    }
    return NULL;
}

static void start_reader(struct reader *r, int fd, size_t cap, size_t stop_at)
{
    *r = (struct reader){ .fd = fd, .cap = cap, .stop_at = stop_at };
    r->buf = malloc(cap > 0 ? cap : 1);
    ck_assert_ptr_nonnull(r->buf);
    ck_assert_int_eq(pthread_create(&r->thread, NULL, read_stream, r), 0);
}

static void join_reader(struct reader *r)
{
    ck_assert_int_eq(pthread_join(r->thread, NULL), 0);
    ck_assert_int_eq(r->error, 0);
}

/* ------------------------------------------------------------------ */
/* write handlers                                                      */
/* ------------------------------------------------------------------ */

#define LOG_MAX 256

/* The handlers of one descriptor: the order they ran in, and whether two
 * of them ever ran at once (they share the descriptor's strand). */
struct op_log {
    atomic_int count;
    atomic_int in_flight;
    atomic_int overlaps;
    int order[LOG_MAX];       /* each slot written once, read after run */
};

/* One write operation and what its handler saw. */
struct op {
    atomic_int calls;
    atomic_int error;
    atomic_size_t bytes;
    atomic_int outside_run;
    atomic_int strand_wrong;
    struct op_log *log;           /* NULL: not logged */
    int index;
    const io_strand *on_strand;   /* must be running in the handler */
    const io_strand *off_strand;  /* must not be running in the handler */
    io_descriptor *destroy;       /* the handler destroys it */
};

static void init_log(struct op_log *log)
{
    atomic_init(&log->count, 0);
    atomic_init(&log->in_flight, 0);
    atomic_init(&log->overlaps, 0);
    memset(log->order, -1, sizeof(log->order));
}

static void init_ops(struct op *ops, int n, struct op_log *log)
{
    for (int i = 0; i < n; i++) {
        ops[i] = (struct op){ .log = log, .index = i };
        atomic_init(&ops[i].calls, 0);
        atomic_init(&ops[i].error, -1);
        atomic_init(&ops[i].bytes, SIZE_MAX);
        atomic_init(&ops[i].outside_run, 0);
        atomic_init(&ops[i].strand_wrong, 0);
    }
}

static void on_write(void *arg, int error, size_t bytes)
{
    struct op *op = arg;
    struct op_log *log = op->log;

    if (!inside_run_call)
        atomic_fetch_add(&op->outside_run, 1);
    if (op->on_strand != NULL && !io_strand_running_in_this_thread(op->on_strand))
        atomic_fetch_add(&op->strand_wrong, 1);
    if (op->off_strand != NULL && io_strand_running_in_this_thread(op->off_strand))
        atomic_fetch_add(&op->strand_wrong, 1);
    if (log != NULL) {
        int i;

        if (atomic_fetch_add(&log->in_flight, 1) != 0)
            atomic_fetch_add(&log->overlaps, 1);
        i = atomic_fetch_add(&log->count, 1);
        if (i < LOG_MAX)
            log->order[i] = op->index;
        sched_yield();   /* gives an overlapping handler time to show */
        atomic_fetch_sub(&log->in_flight, 1);
    }
    atomic_store(&op->error, error);
    atomic_store(&op->bytes, bytes);
    if (op->destroy != NULL)
        io_descriptor_destroy(op->destroy);
    atomic_fetch_add(&op->calls, 1);
}

static int op_calls(struct op *op)
{
    return atomic_load(&op->calls);
}

static int op_error(struct op *op)
{
    return atomic_load(&op->error);
}

static size_t op_bytes(struct op *op)
{
    return atomic_load(&op->bytes);
}

/* The handler ran once, inside run, with this error and byte count. */
static void assert_op(struct op *op, int error, size_t bytes)
{
    ck_assert_msg(op_calls(op) == 1, "op %d: handler ran %d times", op->index, op_calls(op));
    ck_assert_msg(op_error(op) == error, "op %d: error %d (%s), expected %d (%s)",
                  op->index, op_error(op), strerror(op_error(op)), error, strerror(error));
    ck_assert_msg(op_bytes(op) == bytes, "op %d: %zu bytes, expected %zu",
                  op->index, op_bytes(op), bytes);
    ck_assert_int_eq(tu_int(&op->outside_run), 0);
    ck_assert_int_eq(tu_int(&op->strand_wrong), 0);
}

/* As assert_op, for a write_some: 1..asked bytes.  Returns the count. */
static size_t assert_some(struct op *op, size_t asked)
{
    assert_op(op, 0, op_bytes(op));
    ck_assert_msg(op_bytes(op) >= 1 && op_bytes(op) <= asked, "op %d: %zu bytes of %zu",
                  op->index, op_bytes(op), asked);
    return op_bytes(op);
}

/* The n handlers ran in start order (rule 10), never two at once (rule 9). */
static void assert_in_order(struct op_log *log, int n)
{
    ck_assert_int_eq(tu_int(&log->count), n);
    for (int i = 0; i < n && i < LOG_MAX; i++)
        ck_assert_msg(log->order[i] == i, "handler %d ran in place %d", log->order[i], i);
    ck_assert_int_eq(tu_int(&log->overlaps), 0);
}

static int write_all(io_descriptor *d, void *data, size_t len, struct op *op)
{
    struct iovec iov = io_buffer(data, len);

    return io_descriptor_async_write(d, &iov, 1, on_write, op, NULL);
}

static int write_some(io_descriptor *d, void *data, size_t len, struct op *op)
{
    struct iovec iov = io_buffer(data, len);

    return io_descriptor_async_write_some(d, &iov, 1, on_write, op, NULL);
}

/* ------------------------------------------------------------------ */
/* create                                                              */
/* ------------------------------------------------------------------ */

/* Rule 3. */
START_TEST(create_rejects_fds_that_are_not_open)
{
    io_context *ctx = new_context(0);
    io_descriptor *d = NULL;
    int fds[2];

    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(close(fds[0]), 0);
    ck_assert_int_eq(close(fds[1]), 0);
    ck_assert_int_eq(io_descriptor_create(ctx, fds[1], NULL, &d), EBADF);
    ck_assert_int_eq(io_descriptor_create(ctx, -1, NULL, &d), EBADF);
    ck_assert_ptr_null(d);
    ck_assert_uint_eq(io_context_run(ctx), 0);
    finish(ctx);
}
END_TEST

/* Rule 1, and the calls that tolerate NULL. */
START_TEST(null_arguments_give_einval)
{
    io_context *ctx = new_context(0);
    io_descriptor *d = NULL;
    int fds[2];

    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(io_descriptor_create(NULL, fds[1], NULL, &d), EINVAL);
    ck_assert_ptr_null(d);
    ck_assert_int_eq(io_descriptor_create(ctx, fds[1], NULL, NULL), EINVAL);
    ck_assert(!is_closed(fds[1]));   /* a refused create took no charge */

    ck_assert_int_eq(io_descriptor_native_handle(NULL), -1);
    ck_assert_uint_eq(io_descriptor_queued_bytes(NULL), 0);
    ck_assert_int_eq(io_descriptor_cancel(NULL), EINVAL);
    ck_assert_int_eq(io_descriptor_close(NULL), EINVAL);
    errno = 0;
    ck_assert_int_eq(io_descriptor_release(NULL), -1);
    ck_assert_int_eq(errno, EINVAL);
    io_descriptor_destroy(NULL);
    ck_assert_uint_eq(io_context_run(ctx), 0);
    finish(ctx);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

/* Rule 14: create sets O_NONBLOCK; the fd stays the caller's number. */
START_TEST(create_sets_nonblocking_and_reports_the_fd)
{
    io_context *ctx = new_context(0);
    io_descriptor *d;
    int fds[2];

    ck_assert_int_eq(pipe(fds), 0);
    ck_assert(!is_nonblocking(fds[1]));
    d = new_descriptor(ctx, fds[1], NULL);
    ck_assert(is_nonblocking(fds[1]));
    ck_assert_int_eq(io_descriptor_native_handle(d), fds[1]);
    ck_assert(io_descriptor_is_open(d));
    ck_assert_uint_eq(io_descriptor_queued_bytes(d), 0);
    io_descriptor_destroy(d);
    finish(ctx);
    close(fds[0]);
}
END_TEST

/* Rule 1: ENOMEM at any allocation of create, with nothing leaked and the
 * fd left open; the create that succeeds gives a working descriptor. */
START_TEST(create_out_of_memory_gives_enomem_and_leaks_nothing)
{
    io_context *ctx = new_context(0);
    size_t baseline = io__alloc_live();
    io_descriptor *d = NULL;
    struct op op;
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
        ck_assert(!is_closed(fds[1]));
    }
    ck_assert_int_eq(err, 0);
    ck_assert_int_gt(n, 1);            /* the first allocation did fail it */
    init_ops(&op, 1, NULL);
    ck_assert_int_eq(write_all(d, "m", 1, &op), 0);
    ck_assert_uint_eq(run_marked(ctx), 1);
    assert_op(&op, 0, 1);
    ck_assert_uint_eq(drain(fds[0], (unsigned char *)&c, 1, &eof), 1);
    ck_assert_int_eq(c, 'm');
    io_descriptor_destroy(d);
    finish(ctx);
    close(fds[0]);
}
END_TEST

/* ------------------------------------------------------------------ */
/* initiating calls                                                    */
/* ------------------------------------------------------------------ */

/* Rules 1 and 4: a refused call never runs its handler, counts as no
 * operation and writes nothing. */
START_TEST(write_rejects_null_arguments)
{
    io_context *ctx = new_context(0);
    struct iovec iov = io_buffer("x", 1);
    unsigned char buf[4];
    io_descriptor *d;
    struct op op;
    bool eof;
    int fds[2];

    ck_assert_int_eq(pipe(fds), 0);
    d = new_descriptor(ctx, fds[1], NULL);
    init_ops(&op, 1, NULL);
    ck_assert_int_eq(io_descriptor_async_write(NULL, &iov, 1, on_write, &op, NULL), EINVAL);
    ck_assert_int_eq(io_descriptor_async_write_some(NULL, &iov, 1, on_write, &op, NULL), EINVAL);
    ck_assert_int_eq(io_descriptor_async_write(d, &iov, 1, NULL, &op, NULL), EINVAL);
    ck_assert_int_eq(io_descriptor_async_write_some(d, &iov, 1, NULL, &op, NULL), EINVAL);
    ck_assert_int_eq(io_descriptor_async_write(d, NULL, 1, on_write, &op, NULL), EINVAL);
    ck_assert_int_eq(io_descriptor_async_write_some(d, NULL, 1, on_write, &op, NULL), EINVAL);
    ck_assert_uint_eq(io_context_run(ctx), 0);
    ck_assert_int_eq(op_calls(&op), 0);
    ck_assert_uint_eq(stats_of(ctx).ops_started, 0);
    ck_assert_int_eq(tu_int(&write_calls), 0);
    ck_assert_uint_eq(drain(fds[0], buf, sizeof(buf), &eof), 0);
    io_descriptor_destroy(d);
    finish(ctx);
    close(fds[0]);
}
END_TEST

/* Rule 5: even after the workers completed both writes, their handlers
 * wait for a thread that calls run. */
START_TEST(handler_runs_inside_run_never_inside_the_call)
{
    io_context *ctx = new_context(0);
    unsigned char buf[8];
    io_descriptor *d;
    struct op ops[2];
    bool eof;
    int fds[2];

    ck_assert_int_eq(pipe(fds), 0);
    d = new_descriptor(ctx, fds[1], NULL);
    init_ops(ops, 2, NULL);
    ck_assert_int_eq(write_all(d, "a", 1, &ops[0]), 0);
    ck_assert_int_eq(op_calls(&ops[0]), 0);
    ck_assert_int_eq(write_some(d, "bc", 2, &ops[1]), 0);
    ck_assert_int_eq(op_calls(&ops[1]), 0);
    while (stats_of(ctx).ops_completed < 2)
        sched_yield();
    ck_assert_int_eq(op_calls(&ops[0]) + op_calls(&ops[1]), 0);
    ck_assert_uint_eq(run_marked(ctx), 2);
    assert_op(&ops[0], 0, 1);
    assert_op(&ops[1], 0, 2);   /* 2 bytes into an empty pipe go at once */
    ck_assert_uint_eq(drain(fds[0], buf, sizeof(buf), &eof), 3);
    ck_assert(memcmp(buf, "abc", 3) == 0);
    io_descriptor_destroy(d);
    finish(ctx);
    close(fds[0]);
}
END_TEST

/* Rule 12: 0 bytes in total (no buffers, or empty ones) complete with
 * error 0 and 0 bytes, without a system call, and not inside the call. */
START_TEST(zero_byte_writes_complete_without_a_system_call)
{
    io_context *ctx = new_context(0);
    char byte = 'z';
    struct iovec empty[3] = { io_buffer(&byte, 0), io_buffer(NULL, 0), io_buffer(&byte, 0) };
    unsigned char buf[4];
    io_context_stats st;
    io_descriptor *d;
    struct op ops[4];
    bool eof;
    int fds[2];

    ck_assert_int_eq(pipe(fds), 0);
    d = new_descriptor(ctx, fds[1], NULL);
    init_ops(ops, 4, NULL);
    ck_assert_int_eq(io_descriptor_async_write(d, NULL, 0, on_write, &ops[0], NULL), 0);
    ck_assert_int_eq(io_descriptor_async_write_some(d, NULL, 0, on_write, &ops[1], NULL), 0);
    ck_assert_int_eq(io_descriptor_async_write(d, empty, 3, on_write, &ops[2], NULL), 0);
    ck_assert_int_eq(io_descriptor_async_write_some(d, empty, 3, on_write, &ops[3], NULL), 0);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(op_calls(&ops[i]), 0);
    ck_assert_uint_eq(run_marked(ctx), 4);
    for (int i = 0; i < 4; i++)
        assert_op(&ops[i], 0, 0);
    ck_assert_int_eq(tu_int(&write_calls), 0);
    st = stats_of(ctx);
    ck_assert_uint_eq(st.ops_started, 4);
    ck_assert_uint_eq(st.ops_completed, 4);
    ck_assert_uint_eq(st.writev_calls, 0);
    ck_assert_uint_eq(st.bytes_written, 0);
    ck_assert_uint_eq(drain(fds[0], buf, sizeof(buf), &eof), 0);
    io_descriptor_destroy(d);
    finish(ctx);
    close(fds[0]);
}
END_TEST

/* ------------------------------------------------------------------ */
/* backpressure and order                                              */
/* ------------------------------------------------------------------ */

/* Rules 2 and 11: async_write carries on across EAGAIN and partial
 * writes that end inside a buffer, until every byte is in. */
START_TEST(async_write_on_a_full_pipe_waits_for_the_reader)
{
    static const size_t sizes[3] = { 100003, 7, 150001 };
    unsigned char *data = new_pattern(sizes[0] + sizes[1] + sizes[2], 1);
    io_context *ctx = new_context(0);
    struct iovec iov[3];
    struct reader r;
    io_descriptor *d;
    struct op op;
    size_t total;
    int fds[2];

    (void)tu_small_pipe(fds);
    d = new_descriptor(ctx, fds[1], NULL);
    init_ops(&op, 1, NULL);
    total = split(iov, data, sizes, 3);
    ck_assert_int_eq(io_descriptor_async_write(d, iov, 3, on_write, &op, NULL), 0);
    tu_wait_unwritable(fds[1]);
    ck_assert_int_eq(op_calls(&op), 0);
    start_reader(&r, fds[0], total, 0);
    ck_assert_uint_eq(run_marked(ctx), 1);
    assert_op(&op, 0, total);
    ck_assert_int_eq(io_descriptor_close(d), 0);   /* the reader sees EOF */
    join_reader(&r);
    ck_assert_uint_eq(r.got, total);
    ck_assert(memcmp(r.buf, data, total) == 0);
    io_descriptor_destroy(d);
    finish(ctx);
    close(fds[0]);
    free(r.buf);
    free(data);
}
END_TEST

START_TEST(async_write_on_a_full_socket_waits_for_the_reader)
{
    static const size_t sizes[2] = { 300001, 224287 };
    unsigned char *data = new_pattern(sizes[0] + sizes[1], 2);
    io_context *ctx = new_context(0);
    struct iovec iov[2];
    struct reader r;
    io_descriptor *d;
    struct op op;
    size_t total;
    int sv[2];

    small_socketpair(sv);
    d = new_descriptor(ctx, sv[0], NULL);
    init_ops(&op, 1, NULL);
    total = split(iov, data, sizes, 2);
    ck_assert_int_eq(io_descriptor_async_write(d, iov, 2, on_write, &op, NULL), 0);
    tu_wait_unwritable(sv[0]);
    ck_assert_int_eq(op_calls(&op), 0);
    start_reader(&r, sv[1], total, 0);
    ck_assert_uint_eq(run_marked(ctx), 1);
    assert_op(&op, 0, total);
    ck_assert_int_eq(io_descriptor_close(d), 0);
    join_reader(&r);
    ck_assert_uint_eq(r.got, total);
    ck_assert(memcmp(r.buf, data, total) == 0);
    ck_assert_int_gt(tu_int(&write_calls), 0);
    io_descriptor_destroy(d);
    finish(ctx);
    close(sv[1]);
    free(r.buf);
    free(data);
}
END_TEST

#define SOME_OPS 10

/* Rules 10 and 11: each write_some writes a prefix of its buffer (1 to
 * all of it) in one go; the prefixes reach the reader, and the handlers
 * run, in start order. */
START_TEST(async_write_some_writes_a_prefix_and_keeps_start_order)
{
    struct op_log log;
    struct op ops[SOME_OPS];
    io_context *ctx = new_context(0);
    struct reader r;
    io_descriptor *d;
    unsigned char *data;
    size_t chunk, sum = 0, pos = 0;
    int fds[2];

    chunk = 2 * tu_small_pipe(fds);
    data = new_pattern(SOME_OPS * chunk, 3);
    d = new_descriptor(ctx, fds[1], NULL);
    init_log(&log);
    init_ops(ops, SOME_OPS, &log);
    for (int i = 0; i < SOME_OPS; i++)
        ck_assert_int_eq(write_some(d, data + i * chunk, chunk, &ops[i]), 0);
    tu_wait_unwritable(fds[1]);
    start_reader(&r, fds[0], SOME_OPS * chunk, 0);
    ck_assert_uint_eq(run_marked(ctx), SOME_OPS);
    for (int i = 0; i < SOME_OPS; i++)
        sum += assert_some(&ops[i], chunk);
    assert_in_order(&log, SOME_OPS);
    ck_assert_int_eq(io_descriptor_close(d), 0);
    join_reader(&r);
    ck_assert_uint_eq(r.got, sum);
    for (int i = 0; i < SOME_OPS; i++) {
        ck_assert_msg(memcmp(r.buf + pos, data + i * chunk, op_bytes(&ops[i])) == 0,
                      "the bytes of write_some %d are not where they belong", i);
        pos += op_bytes(&ops[i]);
    }
    ck_assert_uint_eq(stats_of(ctx).bytes_written, sum);
    io_descriptor_destroy(d);
    finish(ctx);
    close(fds[0]);
    free(r.buf);
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
    pthread_t thread;
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

static uint64_t splitmix64(uint64_t *state)
{
    *state += UINT64_C(0x9e3779b97f4a7c15);
    return mix64(*state);
}

/* Log-uniform: a power of two picked uniformly, then a length uniformly
 * within it. */
static uint32_t log_uniform_length(uint64_t *state)
{
    uint64_t r = splitmix64(state);
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
    if (!inside_run_call)
        atomic_fetch_add(&t->outside_run, 1);
    free(m);
}

static void *post_tagged_writes(void *p)
{
    struct tag_poster *tp = p;
    struct tag_test *t = tp->test;

    app_thread = true;
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
        fill_pattern(m->payload, len, tag_key(tp->index, seq));
        iov[0] = io_buffer(&m->header, sizeof(m->header));
        iov[1] = io_buffer(m->payload, len);
        if (io_descriptor_async_write(t->d, iov, 2, on_tagged_write, m, NULL) != 0) {
            atomic_fetch_add(&t->refused, 1);
            free(m);
        }
    }
    return NULL;
}

/* Reads up to len bytes; fewer only at EOF or on an error. */
static size_t read_exact(int fd, void *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = read(fd, (unsigned char *)buf + got, len - got);

        if (n > 0)
            got += (size_t)n;
        else if (n == 0 || errno != EINTR)
            break;
    }
    return got;
}

static bool tag_check_message(struct tag_reader *r, unsigned char *got, unsigned char *want)
{
    struct wire_header h;
    size_t n = read_exact(r->fd, &h, sizeof(h));

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
    } else if (read_exact(r->fd, got, h.length) != h.length) {
        snprintf(r->failure, sizeof(r->failure), "the stream ends inside thread %u message %u",
                 h.thread, h.seq);
    } else {
        fill_pattern(want, h.length, tag_key(h.thread, h.seq));
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

    app_thread = true;
    if (got == NULL || want == NULL) {
        snprintf(r->failure, sizeof(r->failure), "reader: out of memory");
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

/* Rules 4, 11 and 13: 8 threads start 500 async_writes each on one
 * socket, 4 workers write, 2 threads run the handlers.  The reader sees
 * every message whole (header and payload together, nothing of another
 * message inside) and each thread's messages in the order it sent them. */
START_TEST(concurrent_async_writes_never_interleave)
{
    struct tag_test *t = calloc(1, sizeof(*t));
    struct tag_poster posters[TAG_THREADS];
    struct runner runners[TAG_RUNNERS];
    struct tag_reader reader;
    io_context *ctx = new_context(4);
    uint64_t rng = TAG_SEED;
    size_t total = 0;
    int sv[2];

    ck_assert_ptr_nonnull(t);
    for (int i = 0; i < TAG_THREADS; i++)
        for (int j = 0; j < TAG_MSGS; j++) {
            t->lengths[i][j] = log_uniform_length(&rng);
            total += sizeof(struct wire_header) + t->lengths[i][j];
        }
    printf("descriptor: tagged writes, seed %#llx, %zu bytes\n", (unsigned long long)TAG_SEED, total);
    fflush(stdout);   /* a failing test ends without flushing */
    ck_assert_uint_lt(total, (size_t)100 << 20);

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    t->d = new_descriptor(ctx, sv[0], NULL);
    reader = (struct tag_reader){ .fd = sv[1], .test = t };
    ck_assert_int_eq(pthread_create(&reader.thread, NULL, read_tagged_stream, &reader), 0);
    io_context_work_started(ctx);
    start_runners(runners, TAG_RUNNERS, ctx);
    for (uint32_t i = 0; i < TAG_THREADS; i++) {
        posters[i] = (struct tag_poster){ .test = t, .index = i };
        ck_assert_int_eq(pthread_create(&posters[i].thread, NULL, post_tagged_writes, &posters[i]), 0);
    }
    for (int i = 0; i < TAG_THREADS; i++)
        ck_assert_int_eq(pthread_join(posters[i].thread, NULL), 0);
    io_context_work_finished(ctx);
    ck_assert_uint_eq(join_runners(runners, TAG_RUNNERS), TAG_THREADS * TAG_MSGS);
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
    ck_assert_uint_eq(stats_of(ctx).bytes_written, total);
    io_descriptor_destroy(t->d);
    finish(ctx);
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

/* Rule 9 with a private strand: 4 run threads, yet no two completions of
 * one descriptor run at once, and they run in start order. */
START_TEST(completions_of_one_descriptor_never_run_concurrently)
{
    struct op_log log;
    struct op *ops = calloc(SERIAL_OPS, sizeof(*ops));
    unsigned char *data = new_pattern(SERIAL_OPS * SERIAL_LEN, 4);
    struct runner runners[SERIAL_RUNNERS];
    io_context *ctx = new_context(4);
    struct reader r;
    io_descriptor *d;
    int sv[2];

    ck_assert_ptr_nonnull(ops);
    small_socketpair(sv);
    d = new_descriptor(ctx, sv[0], NULL);
    init_log(&log);
    init_ops(ops, SERIAL_OPS, &log);
    start_reader(&r, sv[1], SERIAL_OPS * SERIAL_LEN, 0);
    io_context_work_started(ctx);
    start_runners(runners, SERIAL_RUNNERS, ctx);
    for (int i = 0; i < SERIAL_OPS; i++)
        ck_assert_int_eq(write_all(d, data + i * SERIAL_LEN, SERIAL_LEN, &ops[i]), 0);
    io_context_work_finished(ctx);
    ck_assert_uint_eq(join_runners(runners, SERIAL_RUNNERS), SERIAL_OPS);
    for (int i = 0; i < SERIAL_OPS; i++)
        assert_op(&ops[i], 0, SERIAL_LEN);
    assert_in_order(&log, SERIAL_OPS);
    ck_assert_int_eq(io_descriptor_close(d), 0);
    join_reader(&r);
    ck_assert_uint_eq(r.got, SERIAL_OPS * SERIAL_LEN);
    ck_assert(memcmp(r.buf, data, SERIAL_OPS * SERIAL_LEN) == 0);
    io_descriptor_destroy(d);
    finish(ctx);
    close(sv[1]);
    free(r.buf);
    free(data);
    free(ops);
}
END_TEST

/* Rule 9 with a user strand: the handler runs on it; a descriptor with a
 * private strand does not. */
START_TEST(completions_run_on_the_strand_given_to_create)
{
    io_context *ctx = new_context(0);
    io_strand *strand = NULL;
    io_descriptor *mine, *other;
    unsigned char buf[4];
    struct op ops[2];
    bool eof;
    int a[2], b[2];

    ck_assert_int_eq(io_strand_create(ctx, &strand), 0);
    ck_assert_int_eq(pipe(a), 0);
    ck_assert_int_eq(pipe(b), 0);
    mine = new_descriptor(ctx, a[1], strand);
    other = new_descriptor(ctx, b[1], NULL);
    init_ops(ops, 2, NULL);
    ops[0].on_strand = strand;
    ops[1].off_strand = strand;
    ck_assert_int_eq(write_all(mine, "s", 1, &ops[0]), 0);
    ck_assert_int_eq(write_all(other, "p", 1, &ops[1]), 0);
    ck_assert_uint_eq(run_marked(ctx), 2);
    assert_op(&ops[0], 0, 1);
    assert_op(&ops[1], 0, 1);
    ck_assert_uint_eq(drain(a[0], buf, sizeof(buf), &eof), 1);
    ck_assert_uint_eq(drain(b[0], buf, sizeof(buf), &eof), 1);
    io_descriptor_destroy(mine);
    io_descriptor_destroy(other);
    io_strand_destroy(strand);
    finish(ctx);
    close(a[0]);
    close(b[0]);
}
END_TEST

/* ------------------------------------------------------------------ */
/* more buffers than IOV_MAX                                           */
/* ------------------------------------------------------------------ */

#define MANY_BUFS 3000

static struct iovec *one_byte_buffers(unsigned char *data, size_t n)
{
    struct iovec *iov = calloc(n, sizeof(*iov));

    ck_assert_ptr_nonnull(iov);
    for (size_t i = 0; i < n; i++)
        iov[i] = io_buffer(data + i, 1);
    return iov;
}

/* Rule 12: async_write writes all of them, in order. */
START_TEST(async_write_sends_more_than_iov_max_buffers)
{
    unsigned char *data = new_pattern(MANY_BUFS, 5), got[MANY_BUFS + 1];
    struct iovec *iov = one_byte_buffers(data, MANY_BUFS);
    io_context *ctx = new_context(0);
    io_descriptor *d;
    struct op op;
    bool eof;
    int fds[2];

    ck_assert_uint_gt(MANY_BUFS, iov_max());
    ck_assert_int_eq(pipe(fds), 0);
    d = new_descriptor(ctx, fds[1], NULL);
    init_ops(&op, 1, NULL);
    ck_assert_int_eq(io_descriptor_async_write(d, iov, MANY_BUFS, on_write, &op, NULL), 0);
    ck_assert_uint_eq(run_marked(ctx), 1);
    assert_op(&op, 0, MANY_BUFS);
    ck_assert_uint_eq(drain(fds[0], got, sizeof(got), &eof), MANY_BUFS);
    ck_assert(memcmp(got, data, MANY_BUFS) == 0);
    io_descriptor_destroy(d);
    finish(ctx);
    close(fds[0]);
    free(iov);
    free(data);
}
END_TEST

/* Rule 12: async_write_some may stop at IOV_MAX buffers, but succeeds. */
START_TEST(async_write_some_with_more_than_iov_max_buffers)
{
    unsigned char *data = new_pattern(MANY_BUFS, 6), got[MANY_BUFS + 1];
    struct iovec *iov = one_byte_buffers(data, MANY_BUFS);
    io_context *ctx = new_context(0);
    io_descriptor *d;
    struct op op;
    size_t n;
    bool eof;
    int fds[2];

    ck_assert_int_eq(pipe(fds), 0);
    d = new_descriptor(ctx, fds[1], NULL);
    init_ops(&op, 1, NULL);
    ck_assert_int_eq(io_descriptor_async_write_some(d, iov, MANY_BUFS, on_write, &op, NULL), 0);
    ck_assert_uint_eq(run_marked(ctx), 1);
    n = assert_some(&op, iov_max());
    ck_assert_uint_eq(drain(fds[0], got, sizeof(got), &eof), n);
    ck_assert(memcmp(got, data, n) == 0);
    io_descriptor_destroy(d);
    finish(ctx);
    close(fds[0]);
    free(iov);
    free(data);
}
END_TEST

/* ------------------------------------------------------------------ */
/* EPIPE without SIGPIPE                                               */
/* ------------------------------------------------------------------ */

/* Rule 16: with SIGPIPE at its default, a signal would kill this process
 * and fail the test. */
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

START_TEST(write_to_a_pipe_without_reader_gives_epipe)
{
    io_context *ctx = new_context(0);
    io_descriptor *d;
    struct op ops[2];
    int fds[2];

    signal(SIGPIPE, SIG_DFL);
    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(close(fds[0]), 0);
    d = new_descriptor(ctx, fds[1], NULL);
    init_ops(ops, 2, NULL);
    ck_assert_int_eq(write_all(d, "x", 1, &ops[0]), 0);
    ck_assert_int_eq(write_some(d, "yz", 2, &ops[1]), 0);
    ck_assert_uint_eq(run_marked(ctx), 2);
    assert_op(&ops[0], EPIPE, 0);
    assert_op(&ops[1], EPIPE, 0);
    /* The worker keeps SIGPIPE blocked; each EPIPE left one pending on it,
     * and the library must have taken it away (still running here). */
    ck_assert_int_eq(threads_with_sigpipe_pending(), 0);
    io_descriptor_destroy(d);
    finish(ctx);
}
END_TEST

START_TEST(write_to_a_socket_without_peer_gives_epipe)
{
    io_context *ctx = new_context(0);
    io_descriptor *d;
    struct op ops[2];
    int sv[2];

    signal(SIGPIPE, SIG_DFL);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(close(sv[1]), 0);
    d = new_descriptor(ctx, sv[0], NULL);
    init_ops(ops, 2, NULL);
    ck_assert_int_eq(write_all(d, "x", 1, &ops[0]), 0);
    ck_assert_int_eq(write_some(d, "yz", 2, &ops[1]), 0);
    ck_assert_uint_eq(run_marked(ctx), 2);
    for (int i = 0; i < 2; i++) {
        int err = op_error(&ops[i]);

        ck_assert_msg(err == EPIPE || err == ECONNRESET, "op %d: error %d (%s)", i, err, strerror(err));
        assert_op(&ops[i], err, 0);
    }
    /* MSG_NOSIGNAL: not even a blocked SIGPIPE left pending on a worker. */
    ck_assert_int_eq(threads_with_sigpipe_pending(), 0);
    io_descriptor_destroy(d);
    finish(ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* cancel, close, release                                              */
/* ------------------------------------------------------------------ */

/* Starts three async_writes of 16 pipe sizes each on a pipe nobody reads
 * and waits until they are stuck; op 0 has written what the pipe holds. */
static unsigned char *start_stuck_writes(io_descriptor *d, struct op *ops, size_t size, int n)
{
    unsigned char *data = new_pattern(n * size, 7);

    init_ops(ops, n, NULL);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(write_all(d, data + i * size, size, &ops[i]), 0);
    tu_wait_unwritable(io_descriptor_native_handle(d));
    /* The pipe fills during the worker's call; the call has returned once
     * the library counts the bytes as written. */
    while (io_descriptor_queued_bytes(d) == (size_t)n * size)
        sched_yield();
    return data;
}

/* Rule 15: cancel completes every pending write with ECANCELED; the one
 * that had begun reports what the pipe took, and that is what a reader
 * gets.  The descriptor stays open and usable. */
START_TEST(cancel_completes_pending_writes_with_ecanceled)
{
    io_context *ctx = new_context(0);
    struct op ops[3], after;
    unsigned char *data, *got;
    io_descriptor *d;
    size_t psz, size, queued, first;
    bool eof;
    int fds[2];

    psz = tu_small_pipe(fds);
    size = 16 * psz;
    got = malloc(3 * size);
    ck_assert_ptr_nonnull(got);
    d = new_descriptor(ctx, fds[1], NULL);
    data = start_stuck_writes(d, ops, size, 3);
    queued = io_descriptor_queued_bytes(d);
    ck_assert_uint_ge(queued, 3 * size - psz);
    ck_assert_uint_lt(queued, 3 * size);
    ck_assert_int_eq(op_calls(&ops[0]), 0);

    /* A worker that had just seen EAGAIN may still hold the ops in its
     * system call for a moment: queued_bytes is checked after run. */
    ck_assert_int_eq(io_descriptor_cancel(d), 0);
    ck_assert_int_eq(op_calls(&ops[0]), 0);   /* queued, not run inline */
    ck_assert_uint_eq(run_marked(ctx), 3);
    first = op_bytes(&ops[0]);
    ck_assert_uint_gt(first, 0);
    ck_assert_uint_le(first, psz);
    assert_op(&ops[0], ECANCELED, first);
    assert_op(&ops[1], ECANCELED, 0);
    assert_op(&ops[2], ECANCELED, 0);
    ck_assert_uint_eq(io_descriptor_queued_bytes(d), 0);
    ck_assert_uint_eq(drain(fds[0], got, 3 * size, &eof), first);
    ck_assert(!eof);
    ck_assert(memcmp(got, data, first) == 0);

    /* Nothing pending: cancel is still fine, and writes still work. */
    ck_assert(io_descriptor_is_open(d));
    ck_assert_int_eq(io_descriptor_native_handle(d), fds[1]);
    ck_assert_int_eq(io_descriptor_cancel(d), 0);
    init_ops(&after, 1, NULL);
    io_context_restart(ctx);
    ck_assert_int_eq(write_all(d, "z", 1, &after), 0);
    ck_assert_uint_eq(run_marked(ctx), 1);
    assert_op(&after, 0, 1);
    ck_assert_uint_eq(drain(fds[0], got, 3 * size, &eof), 1);
    ck_assert_int_eq(got[0], 'z');
    io_descriptor_destroy(d);
    finish(ctx);
    close(fds[0]);
    free(got);
    free(data);
}
END_TEST

/* Rule 15: close cancels, closes the fd, and makes later writes fail with
 * EBADF; a second close is EBADF. */
START_TEST(close_cancels_closes_and_fails_later_writes)
{
    io_context *ctx = new_context(0);
    struct op ops[4];
    unsigned char *data, *got;
    io_descriptor *d;
    size_t psz, size, first;
    int fds[2];

    psz = tu_small_pipe(fds);
    size = 16 * psz;
    got = malloc(2 * size);
    ck_assert_ptr_nonnull(got);
    d = new_descriptor(ctx, fds[1], NULL);
    data = start_stuck_writes(d, ops, size, 2);
    ck_assert_int_eq(io_descriptor_close(d), 0);
    ck_assert_int_eq(io_descriptor_native_handle(d), -1);
    ck_assert(!io_descriptor_is_open(d));

    init_ops(&ops[2], 2, NULL);
    ops[2].index = 2;
    ops[3].index = 3;
    ck_assert_int_eq(write_all(d, "x", 1, &ops[2]), 0);
    ck_assert_int_eq(write_some(d, "y", 1, &ops[3]), 0);
    ck_assert_int_eq(op_calls(&ops[2]) + op_calls(&ops[3]), 0);
    ck_assert_int_eq(io_descriptor_close(d), EBADF);
    ck_assert_int_eq(io_descriptor_cancel(d), EBADF);   /* as Asio */
    errno = 0;
    ck_assert_int_eq(io_descriptor_release(d), -1);
    ck_assert_int_eq(errno, EBADF);

    ck_assert_uint_eq(run_marked(ctx), 4);
    first = op_bytes(&ops[0]);
    ck_assert_uint_gt(first, 0);
    assert_op(&ops[0], ECANCELED, first);
    assert_op(&ops[1], ECANCELED, 0);
    assert_op(&ops[2], EBADF, 0);
    assert_op(&ops[3], EBADF, 0);
    ck_assert_uint_eq(io_descriptor_queued_bytes(d), 0);
    ck_assert_uint_eq(read_until_eof(fds[0], got, 2 * size), first);
    ck_assert(is_closed(fds[1]));
    ck_assert(memcmp(got, data, first) == 0);
    io_descriptor_destroy(d);
    finish(ctx);
    close(fds[0]);
    free(got);
    free(data);
}
END_TEST

/* Rules 14 and 15: release cancels, gives back the same fd with the flags
 * it had (blocking again), open; later writes fail with EBADF. */
START_TEST(release_restores_flags_and_hands_back_the_fd)
{
    io_context *ctx = new_context(0);
    struct op ops[2];
    unsigned char *data, *got;
    io_descriptor *d;
    size_t psz, size, first;
    int fds[2], flags, fd;
    bool eof;

    psz = tu_small_pipe(fds);
    size = 16 * psz;
    got = malloc(size);
    ck_assert_ptr_nonnull(got);
    flags = fcntl(fds[1], F_GETFL);
    ck_assert_int_eq(flags & O_NONBLOCK, 0);
    d = new_descriptor(ctx, fds[1], NULL);
    ck_assert(is_nonblocking(fds[1]));
    data = start_stuck_writes(d, ops, size, 1);

    fd = io_descriptor_release(d);
    ck_assert_int_eq(fd, fds[1]);
    ck_assert_int_eq(fcntl(fd, F_GETFL), flags);
    ck_assert_int_eq(io_descriptor_native_handle(d), -1);
    ck_assert(!io_descriptor_is_open(d));
    init_ops(&ops[1], 1, NULL);
    ops[1].index = 1;
    ck_assert_int_eq(write_all(d, "x", 1, &ops[1]), 0);
    ck_assert_uint_eq(run_marked(ctx), 2);
    first = op_bytes(&ops[0]);
    ck_assert_uint_gt(first, 0);
    assert_op(&ops[0], ECANCELED, first);
    assert_op(&ops[1], EBADF, 0);

    ck_assert_uint_eq(drain(fds[0], got, size, &eof), first);
    ck_assert(!eof);                 /* released, not closed */
    ck_assert(memcmp(got, data, first) == 0);
    ck_assert_int_eq(write(fd, "r", 1), 1);
    ck_assert_uint_eq(drain(fds[0], got, size, &eof), 1);
    ck_assert_int_eq(got[0], 'r');

    errno = 0;
    ck_assert_int_eq(io_descriptor_release(d), -1);
    ck_assert_int_eq(errno, EBADF);
    ck_assert_int_eq(io_descriptor_close(d), EBADF);
    io_descriptor_destroy(d);
    finish(ctx);
    ck_assert(!is_closed(fd));       /* neither destroy closed it */
    ck_assert_int_eq(close(fd), 0);
    close(fds[0]);
    free(got);
    free(data);
}
END_TEST

#define DETACH_ROUNDS 300

/*
 * Rule 15 against a worker mid-turn: a 1 MiB write on a pipe nobody reads,
 * then close or release at once, so that they land anywhere in the
 * worker's turn (writing, about to poll, polling).  release must return,
 * close must have closed the fd when it returns, and the write ends
 * ECANCELED with what the pipe took.  The number close freed is reused
 * at once by a new file: no byte of ours may ever reach it.
 */
START_TEST(close_and_release_let_go_of_a_worker_at_any_point)
{
    size_t size = (size_t)1 << 20;
    unsigned char *data = calloc(1, size);
    char path[] = "/tmp/ioctx-reuse-XXXXXX";
    io_context *ctx = new_context(1);

    ck_assert_ptr_nonnull(data);
    for (int i = 0; i < DETACH_ROUNDS; i++) {
        bool use_release = i % 2 == 1;
        struct stat st;
        io_descriptor *d;
        struct op op;
        int fds[2], fd, reused;

        tu_small_pipe(fds);
        d = new_descriptor(ctx, fds[1], NULL);
        init_ops(&op, 1, NULL);
        ck_assert_int_eq(write_all(d, data, size, &op), 0);
        for (int spin = 0; spin < i % 7; spin++)
            sched_yield();      /* land at a different point each round */
        if (use_release) {
            fd = io_descriptor_release(d);
            ck_assert_int_eq(fd, fds[1]);
            ck_assert_int_eq(close(fd), 0);
        } else {
            ck_assert_int_eq(io_descriptor_close(d), 0);
            ck_assert(is_closed(fds[1]));
        }
        reused = mkstemp(path);
        ck_assert_int_ge(reused, 0);
        unlink(path);
        memcpy(path + sizeof(path) - 7, "XXXXXX", 6);
        io_context_restart(ctx);
        ck_assert_uint_eq(run_marked(ctx), 1);
        ck_assert_int_eq(op_calls(&op), 1);
        ck_assert_int_eq(op_error(&op), ECANCELED);
        ck_assert_uint_le(op_bytes(&op), size);
        ck_assert_int_eq(fstat(reused, &st), 0);
        ck_assert_int_eq(st.st_size, 0);
        close(reused);
        io_descriptor_destroy(d);
        close(fds[0]);
    }
    finish(ctx);
    free(data);
}
END_TEST

#define STEADY_WRITES 2000

/* Steady state allocates nothing: once a descriptor has served a few
 * writes of up to IO_OP_INLINE_IOVS buffers, more of them (one at a time,
 * as a server that keeps up does) reuse its ops and nodes. */
START_TEST(steady_state_writes_do_not_allocate)
{
    io_context *ctx = new_context(1);
    struct reader r;
    io_descriptor *d;
    size_t before;
    int sv[2];

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    d = new_descriptor(ctx, sv[0], NULL);
    start_reader(&r, sv[1], 0, 0);
    io_context_work_started(ctx);
    for (int i = 0; i < STEADY_WRITES + 100; i++) {
        struct iovec iov[2] = { io_buffer("head", 4), io_buffer("payload", 7) };
        struct op op;

        if (i == 100)
            before = io__alloc_calls();     /* warmed up */
        init_ops(&op, 1, NULL);
        ck_assert_int_eq(io_descriptor_async_write(d, iov, 2, on_write, &op, NULL), 0);
        inside_run_call = true;
        while (op_calls(&op) == 0)
            ck_assert_uint_eq(io_context_run_one(ctx), 1);
        inside_run_call = false;
        assert_op(&op, 0, 11);
    }
    ck_assert_uint_eq(io__alloc_calls() - before, 0);
    io_context_work_finished(ctx);
    io_descriptor_destroy(d);
    join_reader(&r);
    ck_assert_uint_eq(r.got, (size_t)(STEADY_WRITES + 100) * 11);
    free(r.buf);
    finish(ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* destroy                                                             */
/* ------------------------------------------------------------------ */

#define DESTROY_OPS 5

/* Rule 15: the first handler destroys its descriptor while four writes are
 * stuck behind it; each still completes once (ECANCELED), and the fd is
 * closed.  ASan sees any use of freed memory. */
START_TEST(destroy_from_its_own_handler_with_writes_pending)
{
    io_context *ctx = new_context(0);
    struct op ops[DESTROY_OPS];
    unsigned char *data, *got;
    io_descriptor *d;
    size_t psz, size;
    int fds[2];

    psz = tu_small_pipe(fds);
    size = 16 * psz;
    data = new_pattern(psz + (DESTROY_OPS - 1) * size, 8);
    got = malloc(psz + 1);
    ck_assert_ptr_nonnull(got);
    d = new_descriptor(ctx, fds[1], NULL);
    init_ops(ops, DESTROY_OPS, NULL);
    ops[0].destroy = d;
    /* Op 0 fills the pipe exactly; the others cannot write a byte. */
    ck_assert_int_eq(write_all(d, data, psz, &ops[0]), 0);
    for (int i = 1; i < DESTROY_OPS; i++)
        ck_assert_int_eq(write_all(d, data + psz + (i - 1) * size, size, &ops[i]), 0);
    ck_assert_uint_eq(run_marked(ctx), DESTROY_OPS);
    assert_op(&ops[0], 0, psz);
    for (int i = 1; i < DESTROY_OPS; i++)
        assert_op(&ops[i], ECANCELED, 0);
    ck_assert_uint_eq(read_until_eof(fds[0], got, psz + 1), psz);
    ck_assert(is_closed(fds[1]));
    ck_assert(memcmp(got, data, psz) == 0);
    finish(ctx);
    close(fds[0]);
    free(got);
    free(data);
}
END_TEST

/* Rule 15: destroy of an idle descriptor, used or not, closes its fd;
 * NULL is ignored. */
START_TEST(destroy_idle_descriptor_closes_it)
{
    io_context *ctx = new_context(0);
    unsigned char buf[4];
    io_descriptor *d;
    struct op op;
    int a[2], b[2];

    ck_assert_int_eq(pipe(a), 0);
    ck_assert_int_eq(pipe(b), 0);
    io_descriptor_destroy(new_descriptor(ctx, a[1], NULL));
    d = new_descriptor(ctx, b[1], NULL);
    init_ops(&op, 1, NULL);
    ck_assert_int_eq(write_all(d, "w", 1, &op), 0);
    ck_assert_uint_eq(run_marked(ctx), 1);
    assert_op(&op, 0, 1);
    io_descriptor_destroy(d);
    io_descriptor_destroy(NULL);
    io_context_restart(ctx);
    ck_assert_uint_eq(run_marked(ctx), 0);
    ck_assert_uint_eq(read_until_eof(a[0], buf, sizeof(buf)), 0);
    ck_assert(is_closed(a[1]));
    ck_assert_uint_eq(read_until_eof(b[0], buf, sizeof(buf)), 1);
    ck_assert(is_closed(b[1]));
    ck_assert_int_eq(buf[0], 'w');
    finish(ctx);
    close(a[0]);
    close(b[0]);
}
END_TEST

/* ------------------------------------------------------------------ */
/* stats                                                               */
/* ------------------------------------------------------------------ */

static void count_post(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

#define STATS_OPS 5

/* The counters agree with what the handlers, the reader and the write
 * system calls saw; refused calls count for nothing. */
START_TEST(stats_count_ops_bytes_calls_and_handlers)
{
    static const size_t sizes[STATS_OPS] = { 1, 1000, 40000, 70000, 3000 };
    unsigned char *data = new_pattern(sizes[0] + sizes[1] + sizes[2] + sizes[3] + sizes[4], 9);
    io_context *ctx = new_context(0);
    struct op ops[STATS_OPS];
    io_context_stats st;
    struct reader r;
    io_descriptor *d;
    size_t off = 0, sum = 0;
    atomic_int posted;
    int fds[2];

    atomic_init(&posted, 0);
    ck_assert_int_eq(pipe(fds), 0);
    d = new_descriptor(ctx, fds[1], NULL);
    init_ops(ops, STATS_OPS, NULL);
    for (int i = 0; i < STATS_OPS; i++)
        sum += sizes[i];
    start_reader(&r, fds[0], sum, 0);
    sum = 0;
    for (int i = 0; i < STATS_OPS - 1; i++) {
        ck_assert_int_eq(write_all(d, data + off, sizes[i], &ops[i]), 0);
        off += sizes[i];
    }
    ck_assert_int_eq(write_some(d, data + off, sizes[STATS_OPS - 1], &ops[STATS_OPS - 1]), 0);
    ck_assert_int_eq(io_descriptor_async_write(d, NULL, 1, on_write, &ops[0], NULL), EINVAL);
    ck_assert_int_eq(io_context_post(ctx, count_post, &posted), 0);
    ck_assert_uint_eq(run_marked(ctx), STATS_OPS + 1);
    for (int i = 0; i < STATS_OPS - 1; i++) {
        assert_op(&ops[i], 0, sizes[i]);
        sum += sizes[i];
    }
    sum += assert_some(&ops[STATS_OPS - 1], sizes[STATS_OPS - 1]);
    ck_assert_int_eq(tu_int(&posted), 1);

    st = stats_of(ctx);
    ck_assert_uint_eq(st.ops_started, STATS_OPS);
    ck_assert_uint_eq(st.ops_completed, STATS_OPS);
    ck_assert_uint_eq(st.bytes_written, sum);
    ck_assert_uint_ge(st.writev_calls, 1);
    ck_assert_uint_eq(st.writev_calls, (uint64_t)tu_int(&write_calls));
    ck_assert_uint_eq(st.handlers_run, STATS_OPS + 1);
    ck_assert_int_eq(io_descriptor_close(d), 0);
    join_reader(&r);
    ck_assert_uint_eq(r.got, sum);
    ck_assert(memcmp(r.buf, data, sum) == 0);
    io_descriptor_destroy(d);
    finish(ctx);
    close(fds[0]);
    free(r.buf);
    free(data);
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
    struct op_log log;
    struct op ops[FAN_CHUNKS];
};

struct fan_test {
    struct fan_socket sockets[FAN_SOCKETS];
    int reader_error;
    int refused[FAN_WRITERS];
};

struct fan_writer {
    pthread_t thread;
    struct fan_test *test;
    int index;
};

/* Writer w owns sockets w, w + 4, ...; it starts their chunks in turn. */
static void *write_fan(void *p)
{
    struct fan_writer *w = p;

    app_thread = true;
    for (int c = 0; c < FAN_CHUNKS; c++)
        for (int s = w->index; s < FAN_SOCKETS; s += FAN_WRITERS) {
            struct fan_socket *fs = &w->test->sockets[s];

            if (write_all(fs->d, fs->data + c * FAN_CHUNK, FAN_CHUNK, &fs->ops[c]) != 0)
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

    app_thread = true;
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

/* Rules 10, 13 and 20 with worker_threads = 4: 16 small sockets written
 * at once from 4 threads; every byte arrives, in order per socket. */
START_TEST(four_workers_serve_sixteen_sockets)
{
    struct fan_test *f = calloc(1, sizeof(*f));
    struct fan_writer writers[FAN_WRITERS];
    struct runner runners[FAN_RUNNERS];
    io_context *ctx = new_context(4);
    pthread_t reader;

    ck_assert_ptr_nonnull(f);
    for (int s = 0; s < FAN_SOCKETS; s++) {
        struct fan_socket *fs = &f->sockets[s];
        int sv[2];

        small_socketpair(sv);
        ck_assert_int_eq(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
        fs->d = new_descriptor(ctx, sv[0], NULL);
        fs->peer = sv[1];
        fs->data = new_pattern(FAN_BYTES, 100 + (uint64_t)s);
        fs->got = malloc(FAN_BYTES + FAN_CHUNK);
        ck_assert_ptr_nonnull(fs->got);
        init_log(&fs->log);
        init_ops(fs->ops, FAN_CHUNKS, &fs->log);
    }
    ck_assert_int_eq(pthread_create(&reader, NULL, read_fan, f), 0);
    io_context_work_started(ctx);
    start_runners(runners, FAN_RUNNERS, ctx);
    for (int w = 0; w < FAN_WRITERS; w++) {
        writers[w] = (struct fan_writer){ .test = f, .index = w };
        ck_assert_int_eq(pthread_create(&writers[w].thread, NULL, write_fan, &writers[w]), 0);
    }
    for (int w = 0; w < FAN_WRITERS; w++)
        ck_assert_int_eq(pthread_join(writers[w].thread, NULL), 0);
    io_context_work_finished(ctx);
    ck_assert_uint_eq(join_runners(runners, FAN_RUNNERS), FAN_SOCKETS * FAN_CHUNKS);
    for (int s = 0; s < FAN_SOCKETS; s++)
        ck_assert_int_eq(io_descriptor_close(f->sockets[s].d), 0);
    ck_assert_int_eq(pthread_join(reader, NULL), 0);

    ck_assert_int_eq(f->reader_error, 0);
    for (int w = 0; w < FAN_WRITERS; w++)
        ck_assert_int_eq(f->refused[w], 0);
    for (int s = 0; s < FAN_SOCKETS; s++) {
        struct fan_socket *fs = &f->sockets[s];

        for (int c = 0; c < FAN_CHUNKS; c++)
            assert_op(&fs->ops[c], 0, FAN_CHUNK);
        assert_in_order(&fs->log, FAN_CHUNKS);
        ck_assert_msg(fs->got_len == FAN_BYTES, "socket %d: %zu bytes", s, fs->got_len);
        ck_assert_msg(memcmp(fs->got, fs->data, FAN_BYTES) == 0, "socket %d: wrong bytes", s);
        io_descriptor_destroy(fs->d);
        close(fs->peer);
        free(fs->data);
        free(fs->got);
    }
    finish(ctx);
    free(f);
}
END_TEST

/* ------------------------------------------------------------------ */
/* kinds of descriptor                                                 */
/* ------------------------------------------------------------------ */

START_TEST(regular_file_gets_every_byte)
{
    static const size_t sizes[3] = { 70001, 1, 30000 };
    unsigned char *data = new_pattern(sizes[0] + sizes[1] + sizes[2], 10), *got;
    char path[] = "/tmp/ioctx-test-XXXXXX";
    io_context *ctx = new_context(0);
    struct iovec iov[3];
    io_descriptor *d;
    struct op op;
    size_t total;
    int fd, check;

    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    check = open(path, O_RDONLY);
    ck_assert_int_ge(check, 0);
    ck_assert_int_eq(unlink(path), 0);
    total = split(iov, data, sizes, 3);
    got = malloc(total + 1);
    ck_assert_ptr_nonnull(got);
    d = new_descriptor(ctx, fd, NULL);
    init_ops(&op, 1, NULL);
    ck_assert_int_eq(io_descriptor_async_write(d, iov, 3, on_write, &op, NULL), 0);
    ck_assert_uint_eq(run_marked(ctx), 1);
    assert_op(&op, 0, total);
    ck_assert_int_eq(pread(check, got, total + 1, 0), (ssize_t)total);
    ck_assert(memcmp(got, data, total) == 0);
    io_descriptor_destroy(d);
    finish(ctx);
    close(check);
    free(got);
    free(data);
}
END_TEST

/* Reads exactly len bytes from a blocking fd. */
static void read_exactly(int fd, unsigned char *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);

        if (n > 0)
            got += (size_t)n;
        else
            ck_assert_msg(n < 0 && errno == EINTR, "read: %s", n == 0 ? "EOF" : strerror(errno));
    }
}

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
    io_context *ctx = new_context(1);
    struct iovec huge[HUGE_CHUNKS];
    io_descriptor *held, *big, *small;
    int hold[2], sv[2], null_fd;
    struct op_log log;
    struct op ops[3];
    char byte;

    psz = tu_small_pipe(hold);
    hold_data = new_pattern(2 * psz, 21);
    chunk_data = calloc(1, chunk);
    got = malloc(2 * psz);
    ck_assert(chunk_data != NULL && got != NULL);
    null_fd = open("/dev/null", O_WRONLY);
    ck_assert_int_ge(null_fd, 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    held = new_descriptor(ctx, hold[1], NULL);
    big = new_descriptor(ctx, null_fd, NULL);
    small = new_descriptor(ctx, sv[0], NULL);
    ck_assert_int_eq(fcntl(hold[1], F_SETFL, fcntl(hold[1], F_GETFL) & ~O_NONBLOCK), 0);
    init_log(&log);
    init_ops(ops, 3, &log);

    /* The first psz bytes fill the pipe; the worker blocks on the rest. */
    ck_assert_int_eq(write_all(held, hold_data, 2 * psz, &ops[0]), 0);
    for (int i = 0; i < HUGE_CHUNKS; i++)
        huge[i] = io_buffer(chunk_data, chunk);
    ck_assert_int_eq(io_descriptor_async_write(big, huge, HUGE_CHUNKS, on_write, &ops[2], NULL), 0);
    ck_assert_int_eq(write_all(small, "s", 1, &ops[1]), 0);
    read_exactly(hold[0], got, 2 * psz);
    ck_assert(memcmp(got, hold_data, 2 * psz) == 0);

    ck_assert_uint_eq(run_marked(ctx), 3);
    assert_op(&ops[0], 0, 2 * psz);
    assert_op(&ops[1], 0, 1);
    assert_op(&ops[2], 0, HUGE_CHUNKS * chunk);
    assert_in_order(&log, 3);
    ck_assert_int_eq(read(sv[1], &byte, 1), 1);
    ck_assert_int_eq(byte, 's');
    ck_assert_int_eq(tu_int(&app_thread_write_calls), 0);

    io_descriptor_destroy(held);
    io_descriptor_destroy(big);
    io_descriptor_destroy(small);
    finish(ctx);
    close(hold[0]);
    close(sv[1]);
    free(hold_data);
    free(chunk_data);
    free(got);
}
END_TEST

START_TEST(dev_null_takes_a_mebibyte)
{
    size_t size = (size_t)1 << 20;
    unsigned char *data = calloc(1, size);
    io_context *ctx = new_context(0);
    io_descriptor *d;
    struct op op;
    int fd;

    ck_assert_ptr_nonnull(data);
    fd = open("/dev/null", O_WRONLY);
    ck_assert_int_ge(fd, 0);
    d = new_descriptor(ctx, fd, NULL);
    init_ops(&op, 1, NULL);
    ck_assert_int_eq(write_all(d, data, size, &op), 0);
    ck_assert_uint_eq(run_marked(ctx), 1);
    assert_op(&op, 0, size);
    io_descriptor_destroy(d);
    finish(ctx);
    free(data);
}
END_TEST

/* A raw pty: what goes into the slave comes out of the master unchanged. */
START_TEST(pty_slave_writes_reach_the_master)
{
    size_t size = 32768;
    unsigned char *data = new_pattern(size, 11);
    io_context *ctx = new_context(0);
    struct termios tio;
    struct reader r;
    io_descriptor *d;
    struct op op;
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

    start_reader(&r, master, size, size);
    d = new_descriptor(ctx, slave, NULL);
    init_ops(&op, 1, NULL);
    ck_assert_int_eq(write_all(d, data, size, &op), 0);
    ck_assert_uint_eq(run_marked(ctx), 1);
    assert_op(&op, 0, size);
    join_reader(&r);
    ck_assert_uint_eq(r.got, size);
    ck_assert(memcmp(r.buf, data, size) == 0);
    io_descriptor_destroy(d);
    finish(ctx);
    close(master);
    free(r.buf);
    free(data);
}
END_TEST

/* ------------------------------------------------------------------ */

static TCase *new_tcase(Suite *s, const char *name)
{
    TCase *tc = tu_tcase(s, name);

    tcase_add_checked_fixture(tc, setup, NULL);
    return tc;
}

static Suite *descriptor_suite(void)
{
    Suite *s = suite_create("descriptor");
    TCase *tc;

    tc = new_tcase(s, "create");
    tcase_add_test(tc, create_rejects_fds_that_are_not_open);
    tcase_add_test(tc, null_arguments_give_einval);
    tcase_add_test(tc, create_sets_nonblocking_and_reports_the_fd);
    tcase_add_test(tc, create_out_of_memory_gives_enomem_and_leaks_nothing);

    tc = new_tcase(s, "initiating calls");
    tcase_add_test(tc, write_rejects_null_arguments);
    tcase_add_test(tc, handler_runs_inside_run_never_inside_the_call);
    tcase_add_test(tc, zero_byte_writes_complete_without_a_system_call);

    tc = new_tcase(s, "backpressure and order");
    tcase_add_test(tc, async_write_on_a_full_pipe_waits_for_the_reader);
    tcase_add_test(tc, async_write_on_a_full_socket_waits_for_the_reader);
    tcase_add_test(tc, async_write_some_writes_a_prefix_and_keeps_start_order);
    tcase_add_test(tc, async_write_sends_more_than_iov_max_buffers);
    tcase_add_test(tc, async_write_some_with_more_than_iov_max_buffers);

    tc = new_tcase(s, "concurrency");
    tcase_add_test(tc, concurrent_async_writes_never_interleave);
    tcase_add_test(tc, completions_of_one_descriptor_never_run_concurrently);
    tcase_add_test(tc, completions_run_on_the_strand_given_to_create);
    tcase_add_test(tc, four_workers_serve_sixteen_sockets);
    tcase_add_test(tc, a_huge_write_does_not_starve_other_descriptors);

    tc = new_tcase(s, "errors");
    tcase_add_test(tc, write_to_a_pipe_without_reader_gives_epipe);
    tcase_add_test(tc, write_to_a_socket_without_peer_gives_epipe);

    tc = new_tcase(s, "cancel close release destroy");
    tcase_add_test(tc, cancel_completes_pending_writes_with_ecanceled);
    tcase_add_test(tc, close_cancels_closes_and_fails_later_writes);
    tcase_add_test(tc, release_restores_flags_and_hands_back_the_fd);
    tcase_add_test(tc, close_and_release_let_go_of_a_worker_at_any_point);
    tcase_add_test(tc, destroy_from_its_own_handler_with_writes_pending);
    tcase_add_test(tc, destroy_idle_descriptor_closes_it);

    tc = new_tcase(s, "stats");
    tcase_add_test(tc, stats_count_ops_bytes_calls_and_handlers);
    tcase_add_test(tc, steady_state_writes_do_not_allocate);

    tc = new_tcase(s, "kinds");
    tcase_add_test(tc, regular_file_gets_every_byte);
    tcase_add_test(tc, dev_null_takes_a_mebibyte);
    tcase_add_test(tc, pty_slave_writes_reach_the_master);
    return s;
}

int main(void)
{
    return tu_run_suite(descriptor_suite());
}
