/*
 * test_close.c - the ways a descriptor ends its writes: cancel completes
 * every pending write with ECANCELED (one that had begun reports its
 * bytes, which are exactly what a reader gets) and keeps the descriptor
 * usable; close also closes the fd, release hands it back as it was;
 * either lets go of a worker at any point of its turn; destroy works
 * from the descriptor's own handler and on an idle descriptor.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "test_util.h"

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

void tu_add_tests(Suite *s)
{
    tu_add_tcase(s, "cancel close release", TU_TESTS(cancel_completes_pending_writes_with_ecanceled,
                                                     close_cancels_closes_and_fails_later_writes,
                                                     release_restores_flags_and_hands_back_the_fd,
                                                     close_and_release_let_go_of_a_worker_at_any_point));
    tu_add_tcase(s, "destroy", TU_TESTS(destroy_from_its_own_handler_with_writes_pending,
                                        destroy_idle_descriptor_closes_it));
}
