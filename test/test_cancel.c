/*
 * test_cancel.c - io_cancel_signal: a signal serves one pending write at
 * a time; what each cancellation type does to an async_write_some and to
 * an async_write, before, during and after their system calls; and the
 * queue around a cancelled write keeps its order.
 *
 * Ways to pin down when an op is inside a worker's system call:
 *   - a "held" worker: with one worker, a pipe whose O_NONBLOCK the test
 *     clears behind the library's back keeps the worker blocked in writev
 *     until the test reads it, so nothing else can be in flight;
 *   - a small pipe nobody reads: once it is full, the op at its head has
 *     written exactly what the pipe holds, whether or not the emit lands
 *     during the worker's last call (the outcome is the same);
 *   - a gated sendmsg (tu_gate_next_write): the worker stops inside the
 *     wrapper of its sendmsg until the test has emitted.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "alloc.h"
#include "test_util.h"

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
    h->d = tu_new_descriptor(ctx, h->fds[1], NULL);
    tu_make_blocking(h->fds[1]);
    tu_results_init(&h->r, 1);
    ck_assert_int_eq(tu_write_all(h->d, h->data, h->len, &h->r), 0);
}

static void release_worker(struct held_worker *h)
{
    unsigned char *sink = malloc(h->len);

    ck_assert_ptr_nonnull(sink);
    tu_read_exactly(h->fds[0], sink, h->len);
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
    sig = tu_new_signal();
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

/* Inside the handler of the op it was attached to, the signal is already
 * free for another op. */
static void reuse_in_handler(void *arg, int error, size_t bytes)
{
    tu_record(arg, error, bytes);
    atomic_store(&reuse_start_error,
                 tu_start_write(reuse_target, true, "again", 5, &reuse_result, reuse_signal));
}

/* EBUSY while attached to a pending op, on any descriptor and even for a
 * write that would complete at once; the refused call's handler never
 * runs; the signal detaches at completion. */
START_TEST(busy_while_attached_free_after_completion)
{
    io_cancel_signal *sig = tu_new_signal();
    unsigned char *data, *got;
    struct tu_result r[4];
    struct tu_stream io;
    io_descriptor *other;
    size_t len;
    int sv[2];

    tu_stream_open(&io, TU_SMALL_PIPE, 1);
    len = 4 * io.size;
    data = calloc(1, len);
    got = malloc(len);
    ck_assert(data != NULL && got != NULL);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    other = tu_new_descriptor(io.ctx, sv[0], NULL);
    tu_results_init(r, 4);
    atomic_init(&reuse_start_error, -1);
    tu_results_init(&reuse_result, 1);
    reuse_target = other;
    reuse_signal = sig;

    {
        struct iovec iov = io_buffer(data, len);

        ck_assert_int_eq(io_descriptor_async_write(io.d, &iov, 1, reuse_in_handler, &r[0], sig), 0);
    }
    tu_wait_unwritable(io.fd);
    ck_assert_int_eq(tu_start_write(io.d, true, "x", 1, &r[1], sig), EBUSY);
    ck_assert_int_eq(tu_start_write(other, false, "y", 1, &r[2], sig), EBUSY);
    ck_assert_int_eq(tu_start_write(other, true, "", 0, &r[3], sig), EBUSY);

    tu_read_exactly(io.peer, got, len);
    ck_assert_uint_eq(io_context_run(io.ctx), 2);
    tu_assert_result(&r[0], 0, len);
    ck_assert_int_eq(tu_int(&reuse_start_error), 0);
    tu_assert_result(&reuse_result, 0, 5);
    for (int i = 1; i < 4; i++)
        ck_assert_int_eq(tu_int(&r[i].calls), 0);
    io_cancel_signal_destroy(sig);
    io_descriptor_destroy(other);
    tu_stream_close(&io);
    close(sv[1]);
    free(data);
    free(got);
}
END_TEST

static const unsigned cancel_types[] = { IO_CANCEL_TERMINAL, IO_CANCEL_PARTIAL, IO_CANCEL_TOTAL };

/* An async_write_some none of whose bytes is in a system call is
 * cancelled by each of the three types, with ECANCELED and 0 bytes. */
START_TEST(write_some_not_started_is_cancelled_by_every_type)
{
    struct held_worker held;
    io_cancel_signal *sig[3];
    struct tu_result r[3];
    unsigned char got[16];
    struct tu_stream io;

    tu_stream_open(&io, TU_SOCKETPAIR, 1);
    hold_worker(&held, io.ctx);
    tu_results_init(r, 3);
    for (int i = 0; i < 3; i++) {
        sig[i] = tu_new_signal();
        ck_assert_int_eq(tu_start_write(io.d, false, "abc", 3, &r[i], sig[i]), 0);
    }
    for (int i = 0; i < 3; i++)
        io_cancel_signal_emit(sig[i], cancel_types[i]);
    release_worker(&held);
    ck_assert_uint_eq(io_context_run(io.ctx), 4);
    for (int i = 0; i < 3; i++)
        tu_assert_result(&r[i], ECANCELED, 0);
    ck_assert_uint_eq(tu_read_available(io.peer, got, sizeof(got), NULL), 0);
    finish_held(&held);
    for (int i = 0; i < 3; i++)
        io_cancel_signal_destroy(sig[i]);
    tu_stream_close(&io);
}
END_TEST

/* Once an async_write_some has written, emit has no effect. */
START_TEST(write_some_that_wrote_is_not_cancelled)
{
    io_cancel_signal *sig = tu_new_signal();
    unsigned char got[8];
    struct tu_result r;
    struct tu_stream io;

    tu_stream_open(&io, TU_SOCKETPAIR, 1);
    tu_results_init(&r, 1);
    ck_assert_int_eq(tu_start_write(io.d, false, "abcd", 4, &r, sig), 0);
    tu_read_exactly(io.peer, got, 4);    /* the worker wrote it */
    io_cancel_signal_emit(sig, IO_CANCEL_TERMINAL | IO_CANCEL_TOTAL);
    ck_assert_uint_eq(io_context_run(io.ctx), 1);
    tu_assert_result(&r, 0, 4);
    io_cancel_signal_destroy(sig);
    tu_stream_close(&io);
}
END_TEST

/* One write with a cancel signal, of pipe_sizes times what a small pipe
 * holds, on a context with one worker. */
struct pipe_write {
    struct tu_stream io;
    io_cancel_signal *sig;
    size_t len;
    unsigned char *data;
    unsigned char *got;         /* room for len bytes */
    struct tu_result r;
};

/* blocking: the pipe's O_NONBLOCK is cleared behind the library's back,
 * so the worker stays in its write until a reader makes room. */
static void start_pipe_write(struct pipe_write *w, bool all, size_t pipe_sizes, bool blocking,
                             uint64_t key)
{
    tu_stream_open(&w->io, TU_SMALL_PIPE, 1);
    w->sig = tu_new_signal();
    w->len = pipe_sizes * w->io.size;
    w->data = tu_new_pattern(w->len, key);
    w->got = malloc(w->len);
    ck_assert_ptr_nonnull(w->got);
    if (blocking)
        tu_make_blocking(w->io.fd);
    tu_results_init(&w->r, 1);
    ck_assert_int_eq(tu_start_write(w->io.d, all, w->data, w->len, &w->r, w->sig), 0);
}

static void finish_pipe_write(struct pipe_write *w)
{
    io_cancel_signal_destroy(w->sig);
    tu_stream_close(&w->io);
    free(w->data);
    free(w->got);
}

/* TERMINAL and PARTIAL stop an async_write that has begun; it reports
 * what the pipe took, and that is exactly what a reader gets. */
START_TEST(terminal_and_partial_stop_a_started_write_with_its_bytes)
{
    for (int k = 0; k < 2; k++) {
        struct pipe_write w;

        start_pipe_write(&w, true, 16, false, 40 + (uint64_t)k);
        tu_wait_unwritable(w.io.fd);
        io_cancel_signal_emit(w.sig, k == 0 ? IO_CANCEL_TERMINAL : IO_CANCEL_PARTIAL);
        ck_assert_uint_eq(io_context_run(w.io.ctx), 1);
        tu_assert_result(&w.r, ECANCELED, w.io.size);
        ck_assert_uint_eq(tu_read_available(w.io.peer, w.got, w.len, NULL), w.io.size);
        ck_assert(memcmp(w.got, w.data, w.io.size) == 0);
        ck_assert_uint_eq(io_descriptor_queued_bytes(w.io.d), 0);
        finish_pipe_write(&w);
    }
}
END_TEST

/* TOTAL leaves an async_write that has written alone (it then completes
 * whole) and cancels one that has written nothing; the queue around a
 * cancelled op keeps its start order. */
START_TEST(total_cancels_only_a_write_with_no_byte_written)
{
    io_cancel_signal *started = tu_new_signal(), *waiting = tu_new_signal();
    unsigned char *data, *got;
    struct tu_result r[3];
    struct tu_stream io;
    size_t len;

    tu_stream_open(&io, TU_SMALL_PIPE, 1);
    len = 4 * io.size;
    data = tu_new_pattern(3 * len, 50);
    got = malloc(3 * len);
    ck_assert_ptr_nonnull(got);
    tu_results_init(r, 3);
    ck_assert_int_eq(tu_start_write(io.d, true, data, len, &r[0], started), 0);
    ck_assert_int_eq(tu_start_write(io.d, true, data + len, len, &r[1], waiting), 0);
    ck_assert_int_eq(tu_start_write(io.d, true, data + 2 * len, len, &r[2], NULL), 0);
    tu_wait_unwritable(io.fd);
    io_cancel_signal_emit(started, IO_CANCEL_TOTAL);
    io_cancel_signal_emit(waiting, IO_CANCEL_TOTAL);
    ck_assert_uint_eq(io_context_run_one(io.ctx), 1);   /* the cancelled one, at once */
    tu_assert_result(&r[1], ECANCELED, 0);
    ck_assert_int_eq(tu_int(&r[0].calls), 0);

    tu_read_exactly(io.peer, got, 2 * len);
    ck_assert_uint_eq(io_context_run(io.ctx), 2);
    tu_assert_result(&r[0], 0, len);
    tu_assert_result(&r[2], 0, len);
    ck_assert(memcmp(got, data, len) == 0);
    ck_assert(memcmp(got + len, data + 2 * len, len) == 0);
    ck_assert_uint_eq(tu_read_available(io.peer, got, 3 * len, NULL), 0);
    io_cancel_signal_destroy(started);
    io_cancel_signal_destroy(waiting);
    tu_stream_close(&io);
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
    io_cancel_signal *target = tu_new_signal(), *doomed = tu_new_signal();
    struct emit_from_handler e = { .target = target };
    struct held_worker held;
    struct tu_result r[2];
    unsigned char got[16];
    io_descriptor *trigger;
    struct tu_stream io;
    int tv[2];

    tu_stream_open(&io, TU_SOCKETPAIR, 1);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, tv), 0);
    tu_results_init(&e.r, 1);
    tu_results_init(r, 2);
    trigger = tu_new_descriptor(io.ctx, tv[0], NULL);
    hold_worker(&held, io.ctx);
    {
        struct iovec iov = io_buffer("t", 1);

        ck_assert_int_eq(io_descriptor_async_write(trigger, &iov, 1, emit_then_record, &e, NULL), 0);
    }
    ck_assert_int_eq(tu_start_write(io.d, true, "cancel", 6, &r[0], target), 0);
    ck_assert_int_eq(tu_start_write(io.d, true, "keep", 4, &r[1], doomed), 0);
    io_cancel_signal_emit(doomed, 1u << 7);     /* not a type at all */
    io_cancel_signal_destroy(doomed);
    release_worker(&held);
    ck_assert_uint_eq(io_context_run(io.ctx), 4);
    tu_assert_result(&e.r, 0, 1);
    finish_held(&held);
    /* The trigger may run before or after the worker reaches d: either
     * the write was cancelled, or it completed whole. */
    if (tu_result_error(&r[0]) == ECANCELED) {
        tu_assert_result(&r[0], ECANCELED, 0);
        tu_read_exactly(io.peer, got, 4);
        ck_assert(memcmp(got, "keep", 4) == 0);
    } else {
        tu_assert_result(&r[0], 0, 6);
        tu_read_exactly(io.peer, got, 6 + 4);
    }
    tu_assert_result(&r[1], 0, 4);
    io_cancel_signal_destroy(target);
    io_descriptor_destroy(trigger);
    tu_stream_close(&io);
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
 * The worker is blocked in a blocking writev of the op itself (the pipe
 * holds its first bytes), and every emit comes then.  An async_write_some
 * has started, so no type affects it; an async_write is stopped only
 * before its next system call, and this one finishes it, so both
 * complete whole, and report what the reader gets.
 */
START_TEST(emit_during_the_write_call_does_not_end_the_op_early)
{
    for (int all = 0; all < 2; all++) {
        struct pipe_write w;

        start_pipe_write(&w, all, 2, true, 60 + (uint64_t)all);
        wait_for_pipe_bytes(w.io.peer, (int)w.io.size);
        for (int k = 0; k < 3; k++)
            io_cancel_signal_emit(w.sig, cancel_types[k]);
        tu_read_exactly(w.io.peer, w.got, w.len);
        ck_assert_uint_eq(io_context_run(w.io.ctx), 1);
        tu_assert_result(&w.r, 0, w.len);
        ck_assert(memcmp(w.got, w.data, w.len) == 0);
        finish_pipe_write(&w);
    }
}
END_TEST

/* An async_write_some of "abc" with a cancel signal on a socketpair whose
 * worker is held inside the wrapper of sendmsg, before the real call,
 * until the test has emitted. */
struct gated_write {
    struct tu_stream io;
    io_cancel_signal *sig;
    struct tu_call_gate gate;
    struct tu_latch handled;
    struct tu_result r;
    struct tu_runner runner;
    size_t filled;              /* what the test put in the socket first */
    bool entered;               /* the worker came into sendmsg in time */
    bool handled_in_time;       /* and the handler ran in time after the emit */
};

/* full: the socket's send buffer is filled first, so that the real
 * sendmsg returns EAGAIN without writing a byte. */
static void emit_during_sendmsg(struct gated_write *g, unsigned type, bool full)
{
    tu_stream_open(&g->io, TU_SMALL_SOCKETPAIR, 1);
    g->filled = full ? tu_fill_socket(g->io.fd) : 0;
    g->sig = tu_new_signal();
    tu_latch_init(&g->handled, 1);
    tu_results_init(&g->r, 1);
    g->r.done = &g->handled;
    tu_gate_next_write(g->io.fd, &g->gate);
    ck_assert_int_eq(tu_start_write(g->io.d, false, "abc", 3, &g->r, g->sig), 0);
    tu_runner_start(&g->runner, g->io.ctx, io_context_run, NULL);

    g->entered = tu_latch_wait_for(&g->gate.entered, TU_WAIT_S);
    tu_ungate_write();
    if (g->entered)
        io_cancel_signal_emit(g->sig, type);
    tu_latch_count_down(&g->gate.released);
    g->handled_in_time = g->entered && tu_latch_wait_for(&g->handled, TU_WAIT_S);

    /* Let go of an op that may be parked for good, so that the test ends
     * either way: destroy completes whatever is pending. */
    io_context_stop(g->io.ctx);
    tu_runner_join(&g->runner);
    tu_destroy_context(g->io.ctx);
    io_cancel_signal_destroy(g->sig);
    tu_latch_destroy(&g->handled);
    tu_latch_destroy(&g->gate.entered);
    tu_latch_destroy(&g->gate.released);
    ck_assert_msg(g->entered, "the worker made no sendmsg call within %d s", TU_WAIT_S);
}

/*
 * An emit of any type on an async_write_some whose sendmsg is under way
 * but has not written a byte must still cancel it: the call returns
 * EAGAIN (the socket is full), so none of the op's bytes were written,
 * and the op completes with ECANCELED and 0 bytes instead of waiting for
 * room that never comes (the reader never reads).  One loop iteration
 * per cancellation type.
 */
START_TEST(emit_during_a_sendmsg_that_would_block_cancels_write_some)
{
    struct gated_write g;
    unsigned type = cancel_types[_i];

    emit_during_sendmsg(&g, type, true);
    ck_assert_msg(g.handled_in_time, "type %u: emitted while sendmsg was under way, the call "
                  "wrote nothing, and no handler ran within %d s: the emit was lost",
                  type, TU_WAIT_S);
    tu_assert_result(&g.r, ECANCELED, 0);
    /* Nothing of the op reached the reader, only what filled the socket. */
    ck_assert_uint_eq(tu_read_until_eof(g.io.peer, NULL, 0), g.filled);
    close(g.io.peer);
}
END_TEST

/* The same emit when the sendmsg does write (the socket has room): the
 * op's bytes are written, so the emit has no effect and the op completes
 * normally with them. */
START_TEST(emit_during_a_sendmsg_that_writes_has_no_effect)
{
    struct gated_write g;
    unsigned type = cancel_types[_i];
    unsigned char got[4];

    emit_during_sendmsg(&g, type, false);
    ck_assert_msg(g.handled_in_time, "type %u: no handler within %d s", type, TU_WAIT_S);
    tu_assert_result(&g.r, 0, 3);
    ck_assert_uint_eq(tu_read_until_eof(g.io.peer, got, sizeof(got)), 3);
    ck_assert(memcmp(got, "abc", 3) == 0);
    close(g.io.peer);
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
    uint64_t rng = 12345;

    tu_app_thread = true;
    for (int i = 0; i < RACE_OPS; i++) {
        uint64_t x;

        while (atomic_load(&race->started) <= i)
            sched_yield();
        x = tu_splitmix64(&rng);
        if (x % 3 != 0)
            io_cancel_signal_emit(race->sig[i], 1u << ((x >> 8) % 3));
    }
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
    io_context *ctx = tu_new_context(1);
    struct tu_runner runners[2];
    struct tu_reader reader;
    pthread_t emitter;
    size_t expected = 0, total = 0;
    uint64_t rng = 777;
    io_descriptor *d;
    unsigned char *want;
    int sv[2];

    ck_assert_ptr_nonnull(race);
    race->data = tu_new_pattern(RACE_MAX + 256, 31);
    for (int i = 0; i < RACE_OPS; i++) {
        uint64_t x = tu_splitmix64(&rng);

        race->size[i] = 1 + (x >> 8) % RACE_MAX;
        race->write_all[i] = (x >> 4) & 1;
        race->sig[i] = tu_new_signal();
        total += race->size[i];
    }
    tu_results_init(race->r, RACE_OPS);
    atomic_init(&race->started, 0);
    tu_small_socketpair(sv);
    tu_reader_start(&reader, sv[1], total, 0);
    d = tu_new_descriptor(ctx, sv[0], NULL);
    io_context_work_started(ctx);
    ck_assert_int_eq(pthread_create(&emitter, NULL, emit_randomly, race), 0);
    tu_runners_start(runners, 2, ctx);
    for (int i = 0; i < RACE_OPS; i++) {
        ck_assert_int_eq(tu_start_write(d, race->write_all[i], race->data + i % 251, race->size[i],
                                        &race->r[i], race->sig[i]), 0);
        atomic_store(&race->started, i + 1);
    }
    ck_assert_int_eq(pthread_join(emitter, NULL), 0);
    io_context_work_finished(ctx);
    tu_runners_join(runners, 2);
    io_descriptor_destroy(d);       /* the reader sees EOF */

    want = malloc(total);
    ck_assert_ptr_nonnull(want);
    for (int i = 0; i < RACE_OPS; i++) {
        int err = tu_result_error(&race->r[i]);
        size_t bytes = tu_result_bytes(&race->r[i]);

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
    tu_reader_finish(&reader, want, expected);
    for (int i = 0; i < RACE_OPS; i++)
        io_cancel_signal_destroy(race->sig[i]);
    tu_destroy_context(ctx);
    close(sv[1]);
    free(want);
    free(race->data);
    free(race);
}
END_TEST

void tu_add_tests(Suite *s)
{
    TCase *tc;

    tu_add_tcase(s, "signals", TU_TESTS(create_and_null_arguments,
                                        busy_while_attached_free_after_completion,
                                        emit_from_a_handler_and_destroy_while_attached));
    tu_add_tcase(s, "types", TU_TESTS(write_some_not_started_is_cancelled_by_every_type,
                                      write_some_that_wrote_is_not_cancelled,
                                      terminal_and_partial_stop_a_started_write_with_its_bytes,
                                      total_cancels_only_a_write_with_no_byte_written,
                                      emit_during_the_write_call_does_not_end_the_op_early));
    /* One test case each, so that CK_RUN_CASE picks either. */
    tc = tu_add_tcase(s, "emit during a sendmsg that writes", TU_TESTS(NULL));
    tcase_add_loop_test(tc, emit_during_a_sendmsg_that_writes_has_no_effect, 0, 3);
    tc = tu_add_tcase(s, "emit during a sendmsg that would block", TU_TESTS(NULL));
    tcase_add_loop_test(tc, emit_during_a_sendmsg_that_would_block_cancels_write_some, 0, 3);
    tu_add_tcase(s, "races", TU_TESTS(emit_racing_the_worker_loses_and_repeats_nothing));
}
