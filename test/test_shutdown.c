/*
 * test_shutdown.c - io_context_destroy with work still pending.
 *
 * Writes stuck on full pipes (one partly written), posted handlers queued
 * on the context and on strands, strands and descriptors the user never
 * destroyed: destroy stops the workers, completes every pending write with
 * ECANCELED (an async_write with its bytes so far), runs every handler,
 * and those they post, exactly once on the calling thread, closes the
 * fds, and frees everything (the live-allocation count returns to where
 * it was; ASan/LSan and valgrind see no leak).
 */
#include <errno.h>

#include "alloc.h"
#include "ioctx.h"
#include "test_util.h"

#define PIPES 3

static pthread_t destroying_thread;
static atomic_int wrong_thread;

static void on_write(void *arg, int error, size_t bytes)
{
    if (!pthread_equal(pthread_self(), destroying_thread))
        atomic_fetch_add(&wrong_thread, 1);
    tu_record(arg, error, bytes);
}

/* A posted handler that, the first time, posts another and starts a
 * write: both must still run during destroy (the write at once, with
 * ECANCELED: the workers are gone). */
struct chain {
    io_context *ctx;
    io_strand *strand;
    io_descriptor *d;
    atomic_int calls;
    atomic_int posted_calls;
    struct tu_result late_write;
};

static void posted_by_handler(void *arg)
{
    struct chain *c = arg;

    if (!pthread_equal(pthread_self(), destroying_thread))
        atomic_fetch_add(&wrong_thread, 1);
    atomic_fetch_add(&c->posted_calls, 1);
}

static void posting_handler(void *arg)
{
    struct chain *c = arg;
    struct iovec iov = io_buffer("late", 4);

    if (!pthread_equal(pthread_self(), destroying_thread))
        atomic_fetch_add(&wrong_thread, 1);
    if (atomic_fetch_add(&c->calls, 1) == 0) {
        ck_assert_int_eq(io_context_post(c->ctx, posted_by_handler, c), 0);
        ck_assert_int_eq(io_strand_post(c->strand, posted_by_handler, c), 0);
        ck_assert_int_eq(io_descriptor_async_write(c->d, &iov, 1, on_write, &c->late_write, NULL), 0);
    }
}

START_TEST(destroy_cancels_pending_writes_and_runs_every_handler)
{
    size_t baseline = io__alloc_live();
    struct tu_result writes[PIPES][3];
    unsigned char *data, *got;
    io_descriptor *d[PIPES];
    io_context_stats stats;
    struct chain chain;
    io_context *ctx;
    io_strand *strand;
    size_t psz = 0, len;
    int fds[PIPES][2];

    destroying_thread = pthread_self();
    atomic_init(&wrong_thread, 0);
    ctx = tu_new_context(2);
    strand = tu_new_strand(ctx);
    for (int p = 0; p < PIPES; p++) {
        psz = tu_small_pipe(fds[p]);
        ck_assert_uint_ge(psz, 4096);
        /* The last descriptor completes on the user's strand. */
        d[p] = tu_new_descriptor(ctx, fds[p][1], p == PIPES - 1 ? strand : NULL);
    }
    len = 8 * psz;
    data = calloc(1, len);
    got = malloc(len);
    ck_assert(data != NULL && got != NULL);

    /* Per pipe: an async_write the pipe takes a part of, an async_write
     * and an async_write_some stuck behind it. */
    for (int p = 0; p < PIPES; p++) {
        struct iovec iov = io_buffer(data, len);

        tu_results_init(writes[p], 3);
        ck_assert_int_eq(io_descriptor_async_write(d[p], &iov, 1, on_write, &writes[p][0], NULL), 0);
        ck_assert_int_eq(io_descriptor_async_write(d[p], &iov, 1, on_write, &writes[p][1], NULL), 0);
        ck_assert_int_eq(io_descriptor_async_write_some(d[p], &iov, 1, on_write, &writes[p][2], NULL), 0);
    }
    /* Wait until each pipe is full: the first write of each has written
     * what the pipe holds. */
    do {
        sched_yield();
        io_context_get_stats(ctx, &stats);
    } while (stats.bytes_written < PIPES * psz);

    chain = (struct chain){ .ctx = ctx, .strand = strand, .d = d[0] };
    atomic_init(&chain.calls, 0);
    atomic_init(&chain.posted_calls, 0);
    tu_results_init(&chain.late_write, 1);
    ck_assert_int_eq(io_context_post(ctx, posting_handler, &chain), 0);
    ck_assert_int_eq(io_strand_post(strand, posting_handler, &chain), 0);
    io_context_work_started(ctx);   /* never finished: destroy must not wait for it */

    io_context_destroy(ctx);

    ck_assert_int_eq(tu_int(&wrong_thread), 0);
    ck_assert_int_eq(tu_int(&chain.calls), 2);
    ck_assert_int_eq(tu_int(&chain.posted_calls), 2);
    tu_assert_result(&chain.late_write, ECANCELED, 0);
    for (int p = 0; p < PIPES; p++) {
        tu_assert_result(&writes[p][0], ECANCELED, psz);
        tu_assert_result(&writes[p][1], ECANCELED, 0);
        tu_assert_result(&writes[p][2], ECANCELED, 0);
        /* The fd is closed: the reader gets what the pipe held, then EOF. */
        ck_assert(tu_is_closed(fds[p][1]));
        ck_assert_int_eq(read(fds[p][0], got, len), (ssize_t)psz);
        ck_assert_int_eq(read(fds[p][0], got, len), 0);
        close(fds[p][0]);
    }
    ck_assert_uint_eq(io__alloc_live(), baseline);
    free(data);
    free(got);
}
END_TEST

/* Destroyed descriptors and strands whose last handlers are still queued
 * are freed by destroy too; idle ones the user kept are freed with it. */
START_TEST(destroy_frees_what_the_user_kept_or_let_go)
{
    size_t baseline = io__alloc_live();
    struct tu_result r[2];
    io_descriptor *kept, *dropped;
    io_strand *strand;
    io_context *ctx;
    int a[2], b[2];

    destroying_thread = pthread_self();
    atomic_init(&wrong_thread, 0);
    tu_results_init(r, 2);
    ctx = tu_new_default_context();
    strand = tu_new_strand(ctx);
    (void)tu_new_strand(ctx);          /* idle, and kept */
    ck_assert_int_eq(pipe(a), 0);
    ck_assert_int_eq(pipe(b), 0);
    kept = tu_new_descriptor(ctx, a[1], strand);
    dropped = tu_new_descriptor(ctx, b[1], NULL);
    {
        struct iovec iov = io_buffer("x", 1);

        ck_assert_int_eq(io_descriptor_async_write(kept, &iov, 1, on_write, &r[0], NULL), 0);
        ck_assert_int_eq(io_descriptor_async_write(dropped, &iov, 1, on_write, &r[1], NULL), 0);
    }
    io_descriptor_destroy(dropped);     /* its write still completes */
    io_strand_destroy(strand);          /* kept still uses it */
    io_context_destroy(ctx);
    ck_assert_int_eq(tu_int(&wrong_thread), 0);
    for (int i = 0; i < 2; i++) {
        int err = atomic_load(&r[i].error);

        /* Either the worker wrote it before destroy, or destroy cancelled it. */
        ck_assert_int_eq(tu_int(&r[i].calls), 1);
        ck_assert(err == 0 || err == ECANCELED);
    }
    ck_assert(tu_is_closed(a[1]) && tu_is_closed(b[1]));
    close(a[0]);
    close(b[0]);
    ck_assert_uint_eq(io__alloc_live(), baseline);
}
END_TEST

void tu_add_tests(Suite *s)
{
    tu_add_tcase(s, "destroy", TU_TESTS(destroy_cancels_pending_writes_and_runs_every_handler,
                                        destroy_frees_what_the_user_kept_or_let_go));
}
