/*
 * test_cancel.c - io_cancel_signal: rules 18 and 19, and rule 10 for ops
 * cancelled in the middle of a queue.
 *
 * Two ways to pin down when an op is inside a worker's system call:
 *   - a "held" worker: with one worker, a pipe whose O_NONBLOCK the test
 *     clears behind the library's back keeps the worker blocked in writev
 *     until the test reads it, so nothing else can be in flight;
 *   - a small pipe nobody reads: once the stats show an EAGAIN, the op at
 *     its head has written exactly what the pipe holds, whether or not the
 *     emit lands during the worker's last call (the outcome is the same).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "alloc.h"
#include "ioctx.h"
#include "test_util.h"

static io_context *new_context(void)
{
    io_context_options one_worker = { .worker_threads = 1 };
    io_context *ctx = NULL;

    ck_assert_int_eq(io_context_create(&ctx, &one_worker), 0);
    return ctx;
}

static io_descriptor *new_descriptor(io_context *ctx, int fd)
{
    io_descriptor *d = NULL;

    ck_assert_int_eq(io_descriptor_create(ctx, fd, NULL, &d), 0);
    return d;
}

static io_cancel_signal *new_signal(void)
{
    io_cancel_signal *sig = NULL;

    ck_assert_int_eq(io_cancel_signal_create(&sig), 0);
    ck_assert_ptr_nonnull(sig);
    return sig;
}

static int start(io_descriptor *d, bool write_all, const void *data, size_t len,
                 struct tu_result *r, io_cancel_signal *sig)
{
    struct iovec iov = io_buffer(data, len);

    return write_all ? io_descriptor_async_write(d, &iov, 1, tu_record, r, sig)
                     : io_descriptor_async_write_some(d, &iov, 1, tu_record, r, sig);
}

/* Reads exactly len bytes from a blocking fd. */
static void read_exactly(int fd, unsigned char *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);

        ck_assert_msg(n > 0 || (n < 0 && errno == EINTR), "read: %s",
                      n == 0 ? "EOF" : strerror(errno));
        if (n > 0)
            got += (size_t)n;
    }
}

/* Reads what fd holds now, without blocking. */
static size_t read_available(int fd, unsigned char *buf, size_t cap)
{
    size_t got = 0;
    ssize_t n;

    ck_assert_int_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    while (got < cap && (n = read(fd, buf + got, cap - got)) > 0)
        got += (size_t)n;
    return got;
}

/* The one worker, blocked in writev on a pipe made blocking behind the
 * library's back, until release_worker reads what it writes. */
struct held_worker {
    int fds[2];
    size_t len;
    unsigned char *data;
    io_descriptor *d;
    struct tu_result r;
};

static void hold_worker(struct held_worker *h, io_context *ctx)
{
    size_t psz = tu_small_pipe(h->fds);

    h->len = 2 * psz;
    h->data = calloc(1, h->len);
    ck_assert_ptr_nonnull(h->data);
    h->d = new_descriptor(ctx, h->fds[1]);
    ck_assert_int_eq(fcntl(h->fds[1], F_SETFL, fcntl(h->fds[1], F_GETFL) & ~O_NONBLOCK), 0);
    tu_results_init(&h->r, 1);
    ck_assert_int_eq(start(h->d, true, h->data, h->len, &h->r, NULL), 0);
}

static void release_worker(struct held_worker *h)
{
    unsigned char *sink = malloc(h->len);

    ck_assert_ptr_nonnull(sink);
    read_exactly(h->fds[0], sink, h->len);
    free(sink);
}

static void finish_held(struct held_worker *h)
{
    tu_assert_result(&h->r, 0, h->len);
    io_descriptor_destroy(h->d);
    close(h->fds[0]);
    free(h->data);
}

START_TEST(create_and_null_arguments)
{
    size_t baseline = io__alloc_live();
    io_cancel_signal *sig = NULL;

    ck_assert_int_eq(io_cancel_signal_create(NULL), EINVAL);
    io__alloc_fail_after(1);
    ck_assert_int_eq(io_cancel_signal_create(&sig), ENOMEM);
    ck_assert_ptr_null(sig);
    ck_assert_uint_eq(io__alloc_live(), baseline);
    sig = new_signal();
    /* Nothing attached, NULL, or no type: emit does nothing. */
    io_cancel_signal_emit(sig, IO_CANCEL_TERMINAL);
    io_cancel_signal_emit(NULL, IO_CANCEL_TERMINAL);
    io_cancel_signal_emit(sig, 0);
    io_cancel_signal_destroy(sig);
    io_cancel_signal_destroy(NULL);
    ck_assert_uint_eq(io__alloc_live(), baseline);
}
END_TEST

static io_descriptor *reuse_target;
static io_cancel_signal *reuse_signal;
static struct tu_result reuse_result;
static atomic_int reuse_start_error;

/* Rule 18: inside the handler of the op it was attached to, the signal is
 * already free for another op. */
static void reuse_in_handler(void *arg, int error, size_t bytes)
{
    tu_record(arg, error, bytes);
    atomic_store(&reuse_start_error,
                 start(reuse_target, true, "again", 5, &reuse_result, reuse_signal));
}

/* Rule 18: EBUSY while attached to a pending op, on any descriptor and
 * even for a write that would complete at once; the refused call's handler
 * never runs; the signal detaches at completion. */
START_TEST(busy_while_attached_free_after_completion)
{
    io_context *ctx = new_context();
    io_cancel_signal *sig = new_signal();
    unsigned char *data, *got;
    struct tu_result r[4];
    io_descriptor *d, *other;
    int fds[2], sv[2];
    size_t psz;

    psz = tu_small_pipe(fds);
    data = calloc(1, 4 * psz);
    got = malloc(4 * psz);
    ck_assert(data != NULL && got != NULL);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    d = new_descriptor(ctx, fds[1]);
    other = new_descriptor(ctx, sv[0]);
    tu_results_init(r, 4);
    atomic_init(&reuse_start_error, -1);
    tu_results_init(&reuse_result, 1);
    reuse_target = other;
    reuse_signal = sig;

    {
        struct iovec iov = io_buffer(data, 4 * psz);

        ck_assert_int_eq(io_descriptor_async_write(d, &iov, 1, reuse_in_handler, &r[0], sig), 0);
    }
    tu_wait_unwritable(fds[1]);
    ck_assert_int_eq(start(d, true, "x", 1, &r[1], sig), EBUSY);
    ck_assert_int_eq(start(other, false, "y", 1, &r[2], sig), EBUSY);
    ck_assert_int_eq(start(other, true, "", 0, &r[3], sig), EBUSY);

    read_exactly(fds[0], got, 4 * psz);
    ck_assert_uint_eq(io_context_run(ctx), 2);
    tu_assert_result(&r[0], 0, 4 * psz);
    ck_assert_int_eq(tu_int(&reuse_start_error), 0);
    tu_assert_result(&reuse_result, 0, 5);
    for (int i = 1; i < 4; i++)
        ck_assert_int_eq(tu_int(&r[i].calls), 0);
    io_cancel_signal_destroy(sig);
    io_descriptor_destroy(d);
    io_descriptor_destroy(other);
    io_context_destroy(ctx);
    close(fds[0]);
    close(sv[1]);
    free(data);
    free(got);
}
END_TEST

static const unsigned cancel_types[] = { IO_CANCEL_TERMINAL, IO_CANCEL_PARTIAL, IO_CANCEL_TOTAL };

/* Rule 19: an async_write_some none of whose bytes is in a system call is
 * cancelled by each of the three types, with ECANCELED and 0 bytes. */
START_TEST(write_some_not_started_is_cancelled_by_every_type)
{
    io_context *ctx = new_context();
    struct held_worker held;
    io_cancel_signal *sig[3];
    struct tu_result r[3];
    unsigned char got[16];
    io_descriptor *d;
    int sv[2];

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    hold_worker(&held, ctx);
    d = new_descriptor(ctx, sv[0]);
    tu_results_init(r, 3);
    for (int i = 0; i < 3; i++) {
        sig[i] = new_signal();
        ck_assert_int_eq(start(d, false, "abc", 3, &r[i], sig[i]), 0);
    }
    for (int i = 0; i < 3; i++)
        io_cancel_signal_emit(sig[i], cancel_types[i]);
    release_worker(&held);
    ck_assert_uint_eq(io_context_run(ctx), 4);
    for (int i = 0; i < 3; i++)
        tu_assert_result(&r[i], ECANCELED, 0);
    ck_assert_uint_eq(read_available(sv[1], got, sizeof(got)), 0);
    finish_held(&held);
    for (int i = 0; i < 3; i++)
        io_cancel_signal_destroy(sig[i]);
    io_descriptor_destroy(d);
    io_context_destroy(ctx);
    close(sv[1]);
}
END_TEST

/* Rule 19: once an async_write_some has written, emit has no effect. */
START_TEST(write_some_that_wrote_is_not_cancelled)
{
    io_context *ctx = new_context();
    io_cancel_signal *sig = new_signal();
    unsigned char got[8];
    struct tu_result r;
    io_descriptor *d;
    int sv[2];

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    d = new_descriptor(ctx, sv[0]);
    tu_results_init(&r, 1);
    ck_assert_int_eq(start(d, false, "abcd", 4, &r, sig), 0);
    read_exactly(sv[1], got, 4);    /* the worker wrote it */
    io_cancel_signal_emit(sig, IO_CANCEL_TERMINAL | IO_CANCEL_TOTAL);
    ck_assert_uint_eq(io_context_run(ctx), 1);
    tu_assert_result(&r, 0, 4);
    io_cancel_signal_destroy(sig);
    io_descriptor_destroy(d);
    io_context_destroy(ctx);
    close(sv[1]);
}
END_TEST

/* Rule 19: TERMINAL and PARTIAL stop an async_write that has begun; it
 * reports what the pipe took, and that is exactly what a reader gets. */
START_TEST(terminal_and_partial_stop_a_started_write_with_its_bytes)
{
    for (int k = 0; k < 2; k++) {
        io_context *ctx = new_context();
        io_cancel_signal *sig = new_signal();
        unsigned char *data, *got;
        struct tu_result r;
        io_descriptor *d;
        size_t psz;
        int fds[2];

        psz = tu_small_pipe(fds);
        data = malloc(16 * psz);
        got = malloc(16 * psz);
        ck_assert(data != NULL && got != NULL);
        for (size_t i = 0; i < 16 * psz; i++)
            data[i] = (unsigned char)(i * 7 + 3);
        d = new_descriptor(ctx, fds[1]);
        tu_results_init(&r, 1);
        ck_assert_int_eq(start(d, true, data, 16 * psz, &r, sig), 0);
        tu_wait_unwritable(fds[1]);
        io_cancel_signal_emit(sig, k == 0 ? IO_CANCEL_TERMINAL : IO_CANCEL_PARTIAL);
        ck_assert_uint_eq(io_context_run(ctx), 1);
        tu_assert_result(&r, ECANCELED, psz);
        ck_assert_uint_eq(read_available(fds[0], got, 16 * psz), psz);
        ck_assert(memcmp(got, data, psz) == 0);
        ck_assert_uint_eq(io_descriptor_queued_bytes(d), 0);
        io_cancel_signal_destroy(sig);
        io_descriptor_destroy(d);
        io_context_destroy(ctx);
        close(fds[0]);
        free(data);
        free(got);
    }
}
END_TEST

/* Rule 19: TOTAL leaves an async_write that has written alone (it then
 * completes whole) and cancels one that has written nothing; the queue
 * around a cancelled op keeps its order (rule 10). */
START_TEST(total_cancels_only_a_write_with_no_byte_written)
{
    io_context *ctx = new_context();
    io_cancel_signal *started = new_signal(), *waiting = new_signal();
    unsigned char *data, *got;
    struct tu_result r[3];
    io_descriptor *d;
    size_t psz, len;
    int fds[2];

    psz = tu_small_pipe(fds);
    len = 4 * psz;
    data = malloc(3 * len);
    got = malloc(3 * len);
    ck_assert(data != NULL && got != NULL);
    for (size_t i = 0; i < 3 * len; i++)
        data[i] = (unsigned char)(i / len + 'A');
    d = new_descriptor(ctx, fds[1]);
    tu_results_init(r, 3);
    ck_assert_int_eq(start(d, true, data, len, &r[0], started), 0);
    ck_assert_int_eq(start(d, true, data + len, len, &r[1], waiting), 0);
    ck_assert_int_eq(start(d, true, data + 2 * len, len, &r[2], NULL), 0);
    tu_wait_unwritable(fds[1]);
    io_cancel_signal_emit(started, IO_CANCEL_TOTAL);
    io_cancel_signal_emit(waiting, IO_CANCEL_TOTAL);
    ck_assert_uint_eq(io_context_run_one(ctx), 1);   /* the cancelled one, at once */
    tu_assert_result(&r[1], ECANCELED, 0);
    ck_assert_int_eq(tu_int(&r[0].calls), 0);

    read_exactly(fds[0], got, 2 * len);
    ck_assert_uint_eq(io_context_run(ctx), 2);
    tu_assert_result(&r[0], 0, len);
    tu_assert_result(&r[2], 0, len);
    ck_assert(memcmp(got, data, len) == 0);
    ck_assert(memcmp(got + len, data + 2 * len, len) == 0);
    ck_assert_uint_eq(read_available(fds[0], got, 3 * len), 0);
    io_cancel_signal_destroy(started);
    io_cancel_signal_destroy(waiting);
    io_descriptor_destroy(d);
    io_context_destroy(ctx);
    close(fds[0]);
    free(data);
    free(got);
}
END_TEST

struct emit_from_handler {
    io_cancel_signal *target;
    struct tu_result r;
};

static void emit_then_record(void *arg, int error, size_t bytes)
{
    struct emit_from_handler *e = arg;

    io_cancel_signal_emit(e->target, IO_CANCEL_TERMINAL);
    tu_record(&e->r, error, bytes);
}

/* Emit from a handler of another descriptor cancels a queued write; emit
 * with a type the op does not support (none) leaves it alone; a signal
 * destroyed while attached lets its op finish. */
START_TEST(emit_from_a_handler_and_destroy_while_attached)
{
    io_context *ctx = new_context();
    io_cancel_signal *target = new_signal(), *doomed = new_signal();
    struct emit_from_handler e = { .target = target };
    struct held_worker held;
    struct tu_result r[2];
    unsigned char got[16];
    io_descriptor *d, *trigger;
    int sv[2], tv[2];

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, tv), 0);
    tu_results_init(&e.r, 1);
    tu_results_init(r, 2);
    d = new_descriptor(ctx, sv[0]);
    trigger = new_descriptor(ctx, tv[0]);
    hold_worker(&held, ctx);
    {
        struct iovec iov = io_buffer("t", 1);

        ck_assert_int_eq(io_descriptor_async_write(trigger, &iov, 1, emit_then_record, &e, NULL), 0);
    }
    ck_assert_int_eq(start(d, true, "cancel", 6, &r[0], target), 0);
    ck_assert_int_eq(start(d, true, "keep", 4, &r[1], doomed), 0);
    io_cancel_signal_emit(doomed, 1u << 7);     /* not a type at all */
    io_cancel_signal_destroy(doomed);
    release_worker(&held);
    ck_assert_uint_eq(io_context_run(ctx), 4);
    tu_assert_result(&e.r, 0, 1);
    finish_held(&held);
    /* The trigger may run before or after the worker reaches d: either
     * the write was cancelled, or it completed whole. */
    if (atomic_load(&r[0].error) == ECANCELED) {
        tu_assert_result(&r[0], ECANCELED, 0);
        read_exactly(sv[1], got, 4);
        ck_assert(memcmp(got, "keep", 4) == 0);
    } else {
        tu_assert_result(&r[0], 0, 6);
        read_exactly(sv[1], got, 6 + 4);
    }
    tu_assert_result(&r[1], 0, 4);
    io_cancel_signal_destroy(target);
    io_descriptor_destroy(d);
    io_descriptor_destroy(trigger);
    io_context_destroy(ctx);
    close(sv[1]);
    close(tv[1]);
}
END_TEST

/* Waits until the pipe holds n bytes: the worker has begun the write. */
static void wait_for_pipe_bytes(int read_end, int n)
{
    int queued = 0;

    while (ioctl(read_end, FIONREAD, &queued) == 0 && queued < n)
        sched_yield();
    ck_assert_int_ge(queued, n);
}

/*
 * Rule 19 while the op is inside the worker's system call: the worker is
 * blocked in a blocking writev of the op itself (the pipe holds its first
 * bytes), and every emit comes then.  An async_write_some has started, so
 * no type affects it; an async_write is stopped only before its next
 * system call, and this one finishes it, so both complete whole, and
 * report what the reader gets.
 */
START_TEST(emit_during_the_write_call_does_not_end_the_op_early)
{
    for (int write_all = 0; write_all < 2; write_all++) {
        io_context *ctx = new_context();
        io_cancel_signal *sig = new_signal();
        unsigned char *data, *got;
        struct tu_result r;
        io_descriptor *d;
        size_t psz;
        int fds[2];

        psz = tu_small_pipe(fds);
        data = malloc(2 * psz);
        got = malloc(2 * psz);
        ck_assert(data != NULL && got != NULL);
        for (size_t i = 0; i < 2 * psz; i++)
            data[i] = (unsigned char)(i * 13 + 1);
        d = new_descriptor(ctx, fds[1]);
        ck_assert_int_eq(fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) & ~O_NONBLOCK), 0);
        tu_results_init(&r, 1);
        ck_assert_int_eq(start(d, write_all, data, 2 * psz, &r, sig), 0);
        wait_for_pipe_bytes(fds[0], (int)psz);
        for (int k = 0; k < 3; k++)
            io_cancel_signal_emit(sig, cancel_types[k]);
        read_exactly(fds[0], got, 2 * psz);
        ck_assert_uint_eq(io_context_run(ctx), 1);
        tu_assert_result(&r, 0, 2 * psz);
        ck_assert(memcmp(got, data, 2 * psz) == 0);
        io_cancel_signal_destroy(sig);
        io_descriptor_destroy(d);
        io_context_destroy(ctx);
        close(fds[0]);
        free(data);
        free(got);
    }
}
END_TEST

#define RACE_OPS 3000
#define RACE_MAX 8192

struct race {
    io_cancel_signal *sig[RACE_OPS];
    struct tu_result r[RACE_OPS];
    bool write_all[RACE_OPS];
    size_t size[RACE_OPS];
    atomic_int started;         /* ops started so far */
    unsigned char *data;        /* op i writes data + i % 251, size[i] bytes */
};

static void *emit_randomly(void *arg)
{
    struct race *race = arg;
    unsigned seed = 12345;

    for (int i = 0; i < RACE_OPS; i++) {
        while (atomic_load(&race->started) <= i)
            sched_yield();
        seed = seed * 1103515245u + 12345u;
        if ((seed >> 16) % 3 != 0)
            io_cancel_signal_emit(race->sig[i], 1u << ((seed >> 20) % 3));
    }
    return NULL;
}

struct stream_reader {
    pthread_t thread;
    int fd;
    unsigned char *buf;
    size_t cap, got;
};

static void *read_to_eof(void *arg)
{
    struct stream_reader *r = arg;
    ssize_t n;

    while ((n = read(r->fd, r->buf + r->got, r->cap - r->got)) != 0) {
        if (n > 0)
            r->got += (size_t)n;
        else if (errno != EINTR)
            break;
    }
    return NULL;
}

static void *run_ctx(void *ctx)
{
    io_context_run(ctx);
    return NULL;
}

/*
 * Emits of random types race with the worker writing the ops they target,
 * on a socket with a small buffer and a reader.  Each handler runs once;
 * a cancelled async_write_some reports 0 bytes, a cancelled async_write
 * its bytes so far; and the reader gets exactly, in order, the bytes the
 * handlers report.
 */
START_TEST(emit_racing_the_worker_loses_and_repeats_nothing)
{
    struct race *race = calloc(1, sizeof(*race));
    io_context *ctx = new_context();
    struct stream_reader reader;
    pthread_t emitter, runners[2];
    size_t expected = 0, total = 0;
    unsigned seed = 777;
    io_descriptor *d;
    unsigned char *want;
    int sv[2], one = 1;

    ck_assert_ptr_nonnull(race);
    race->data = malloc(RACE_MAX + 256);
    ck_assert_ptr_nonnull(race->data);
    for (int i = 0; i < RACE_MAX + 256; i++)
        race->data[i] = (unsigned char)(i * 31 + 7);
    for (int i = 0; i < RACE_OPS; i++) {
        seed = seed * 1103515245u + 12345u;
        race->size[i] = 1 + (seed >> 8) % RACE_MAX;
        race->write_all[i] = (seed >> 4) & 1;
        race->sig[i] = new_signal();
        total += race->size[i];
    }
    tu_results_init(race->r, RACE_OPS);
    atomic_init(&race->started, 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &one, sizeof(one)), 0);
    reader = (struct stream_reader){ .fd = sv[1], .cap = total };
    reader.buf = malloc(total);
    ck_assert_ptr_nonnull(reader.buf);
    d = new_descriptor(ctx, sv[0]);
    io_context_work_started(ctx);
    ck_assert_int_eq(pthread_create(&reader.thread, NULL, read_to_eof, &reader), 0);
    ck_assert_int_eq(pthread_create(&emitter, NULL, emit_randomly, race), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&runners[i], NULL, run_ctx, ctx), 0);
    for (int i = 0; i < RACE_OPS; i++) {
        ck_assert_int_eq(start(d, race->write_all[i], race->data + i % 251, race->size[i],
                               &race->r[i], race->sig[i]), 0);
        atomic_store(&race->started, i + 1);
    }
    ck_assert_int_eq(pthread_join(emitter, NULL), 0);
    io_context_work_finished(ctx);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_join(runners[i], NULL), 0);
    io_descriptor_destroy(d);       /* the reader sees EOF */
    ck_assert_int_eq(pthread_join(reader.thread, NULL), 0);

    want = malloc(total);
    ck_assert_ptr_nonnull(want);
    for (int i = 0; i < RACE_OPS; i++) {
        int err = atomic_load(&race->r[i].error);
        size_t bytes = atomic_load(&race->r[i].bytes);

        ck_assert_int_eq(tu_int(&race->r[i].calls), 1);
        ck_assert_msg(err == 0 || err == ECANCELED, "op %d: error %d", i, err);
        if (err == 0 && race->write_all[i])
            ck_assert_uint_eq(bytes, race->size[i]);
        else if (err == 0)
            ck_assert(bytes >= 1 && bytes <= race->size[i]);
        else if (!race->write_all[i])
            ck_assert_uint_eq(bytes, 0);
        else
            ck_assert_uint_lt(bytes, race->size[i]);
        memcpy(want + expected, race->data + i % 251, bytes);
        expected += bytes;
    }
    ck_assert_uint_eq(reader.got, expected);
    ck_assert(memcmp(reader.buf, want, expected) == 0);
    for (int i = 0; i < RACE_OPS; i++)
        io_cancel_signal_destroy(race->sig[i]);
    io_context_destroy(ctx);
    close(sv[1]);
    free(want);
    free(reader.buf);
    free(race->data);
    free(race);
}
END_TEST

static Suite *cancel_suite(void)
{
    Suite *s = suite_create("cancel");
    TCase *tc;

    tc = tu_tcase(s, "signals");
    tcase_add_test(tc, create_and_null_arguments);
    tcase_add_test(tc, busy_while_attached_free_after_completion);
    tcase_add_test(tc, emit_from_a_handler_and_destroy_while_attached);

    tc = tu_tcase(s, "types");
    tcase_add_test(tc, write_some_not_started_is_cancelled_by_every_type);
    tcase_add_test(tc, write_some_that_wrote_is_not_cancelled);
    tcase_add_test(tc, terminal_and_partial_stop_a_started_write_with_its_bytes);
    tcase_add_test(tc, total_cancels_only_a_write_with_no_byte_written);
    tcase_add_test(tc, emit_during_the_write_call_does_not_end_the_op_early);

    tc = tu_tcase(s, "races");
    tcase_add_test(tc, emit_racing_the_worker_loses_and_repeats_nothing);
    return s;
}

int main(void)
{
    return tu_run_suite(cancel_suite());
}
