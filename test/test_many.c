/*
 * test_many.c - thousands of connections, some of them stuck, and what
 * the workers' poller owes them: parked descriptors do not hold up healthy
 * ones, each parked write ends exactly once (its reader drains, or its
 * descriptor is closed), a closed fd is never watched again even while
 * another fd keeps its file open, a registration the kernel refuses ends
 * the waiting writes with its error, and an idle connection weighs little
 * whatever bursts it has seen.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "alloc.h"
#include "ioctx.h"
#include "test_util.h"

/* epoll_ctl as the library sees it: fails with refuse_errno, once set. */
static atomic_int refuse_errno;

int __real_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);
int __wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev);

int __wrap_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    int err = atomic_load(&refuse_errno);

    if (err != 0 && op != EPOLL_CTL_DEL) {
        errno = err;
        return -1;
    }
    return __real_epoll_ctl(epfd, op, fd, ev);
}

static bool backend_is_epoll(void)
{
    return strcmp(IOCTX_TEST_POLLER, "epoll") == 0;
}

/* How many stuck connections fit the fd limit, up to want (two fds each,
 * and some to spare). */
static int connections_that_fit(int want)
{
    struct rlimit lim;
    int fit;

    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &lim), 0);
    lim.rlim_cur = lim.rlim_max;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
    fit = lim.rlim_cur > 256 ? (int)((lim.rlim_cur - 256) / 2) : 0;
    return fit < want ? fit : want;
}

/* More than the small socket pairs hold: the write parks. */
#define STUCK_LEN (16 * 1024)
#define STUCK_WANT 5000
#define HEALTHY 4
#define HEALTHY_WRITES 500

/* Reads n bytes from a blocking fd, discarding them. */
static void read_and_drop(int fd, size_t n)
{
    unsigned char buf[4096];

    while (n > 0) {
        ssize_t got = read(fd, buf, n < sizeof(buf) ? n : sizeof(buf));

        ck_assert_int_gt(got, 0);
        n -= (size_t)got;
    }
}

/* Reads len bytes from a blocking fd: they must be want's. */
static void read_and_check(int fd, const unsigned char *want, size_t len)
{
    unsigned char *got = malloc(len);

    ck_assert_ptr_nonnull(got);
    tu_read_exactly(fd, got, len);
    ck_assert(memcmp(got, want, len) == 0);
    free(got);
}

/*
 * Thousands of descriptors wait for POLLOUT while healthy pipes carry
 * hundreds of writes each.  Then half of the stuck readers drain (their
 * writes end whole) and the other half are closed (ECANCELED, with what
 * the kernel took so far): every handler runs exactly once.
 */
START_TEST(parked_descriptors_do_not_hold_up_healthy_ones)
{
    int n = connections_that_fit(STUCK_WANT);
    int (*sv)[2] = calloc((size_t)n, sizeof(*sv));
    io_descriptor **stuck = calloc((size_t)n, sizeof(*stuck));
    struct tu_result *stuck_r = calloc((size_t)n, sizeof(*stuck_r));
    struct tu_result *healthy_r = calloc(HEALTHY * HEALTHY_WRITES, sizeof(*healthy_r));
    unsigned char *data = tu_new_pattern(STUCK_LEN, 7);
    io_context *ctx = tu_new_context(1);
    struct tu_runner runner;
    io_descriptor *healthy[HEALTHY];
    int pipes[HEALTHY][2];

    ck_assert_int_ge(n, 1000);
    ck_assert(sv != NULL && stuck != NULL && stuck_r != NULL && healthy_r != NULL);
    tu_results_init(stuck_r, n);
    tu_results_init(healthy_r, HEALTHY * HEALTHY_WRITES);
    io_context_work_started(ctx);
    tu_runner_start(&runner, ctx, io_context_run, NULL);
    for (int i = 0; i < n; i++) {
        tu_small_socketpair(sv[i]);
        ck_assert_int_eq(io_descriptor_create(ctx, sv[i][0], NULL, &stuck[i]), 0);
        ck_assert_int_eq(tu_write_all(stuck[i], data, STUCK_LEN, &stuck_r[i]), 0);
    }
    /* Each of them fills its socket and waits for room. */
    for (int i = 0; i < n; i++)
        tu_wait_unwritable(sv[i][0]);

    for (int k = 0; k < HEALTHY; k++) {
        ck_assert_int_eq(pipe(pipes[k]), 0);
        ck_assert_int_eq(io_descriptor_create(ctx, pipes[k][1], NULL, &healthy[k]), 0);
        for (int i = 0; i < HEALTHY_WRITES; i++)
            ck_assert_int_eq(tu_write_all(healthy[k], data + i, 64,
                                          &healthy_r[k * HEALTHY_WRITES + i]), 0);
    }
    /* 32,000 bytes a pipe: they fit, so no reader is needed to finish. */
    for (int k = 0; k < HEALTHY; k++) {
        for (int i = 0; i < HEALTHY_WRITES; i++)
            read_and_check(pipes[k][0], data + i, 64);
    }

    for (int i = 0; i < n; i += 2)
        read_and_drop(sv[i][1], STUCK_LEN);
    for (int i = 1; i < n; i += 2)
        ck_assert_int_eq(io_descriptor_close(stuck[i]), 0);
    io_context_work_finished(ctx);
    tu_runner_join(&runner);

    for (int i = 0; i < HEALTHY * HEALTHY_WRITES; i++)
        tu_assert_result(&healthy_r[i], 0, 64);
    for (int i = 0; i < n; i++) {
        if (i % 2 == 0) {
            tu_assert_result(&stuck_r[i], 0, STUCK_LEN);
        } else {
            ck_assert_int_eq(tu_int(&stuck_r[i].calls), 1);
            ck_assert_int_eq(tu_result_error(&stuck_r[i]), ECANCELED);
            ck_assert_uint_gt(tu_result_bytes(&stuck_r[i]), 0);
            ck_assert_uint_lt(tu_result_bytes(&stuck_r[i]), STUCK_LEN);
        }
        io_descriptor_destroy(stuck[i]);
        close(sv[i][1]);
    }
    for (int k = 0; k < HEALTHY; k++) {
        io_descriptor_destroy(healthy[k]);
        close(pipes[k][0]);
    }
    io_context_destroy(ctx);
    free(data);
    free(healthy_r);
    free(stuck_r);
    free(stuck);
    free(sv);
}
END_TEST

/* A context, a small socket pair with a descriptor on sv[0], and data
 * longer than the pair holds. */
struct stuck {
    io_context *ctx;
    unsigned char *data;
    io_descriptor *d;
    int sv[2];
    struct tu_result r[3];
};

static void stuck_open(struct stuck *st, uint64_t key)
{
    st->ctx = tu_new_context(1);
    st->data = tu_new_pattern(STUCK_LEN, key);
    tu_results_init(st->r, 3);
    tu_small_socketpair(st->sv);
}

/* Destroys the context (and the descriptors the test left), closes the
 * reader's end. */
static void stuck_close(struct stuck *st)
{
    io_context_destroy(st->ctx);
    close(st->sv[1]);
    free(st->data);
}

/*
 * An epoll registration outlives close() while another fd shares the
 * open file.  A descriptor that waited for POLLOUT is closed while a dup
 * of its fd stays open; then its file becomes writable.  Nothing may be
 * reported for it any more (under ASan, a report would read freed
 * memory), and the number, reused at once, belongs to the new file only.
 */
START_TEST(a_closed_fd_is_never_watched_again_while_a_dup_keeps_it_open)
{
    struct stuck st;
    io_descriptor *reused;
    int fresh[2], dup_fd, number;

    stuck_open(&st, 9);
    dup_fd = dup(st.sv[0]);
    ck_assert_int_ge(dup_fd, 0);
    ck_assert_int_eq(io_descriptor_create(st.ctx, st.sv[0], NULL, &st.d), 0);
    ck_assert_int_eq(tu_write_all(st.d, st.data, STUCK_LEN, &st.r[0]), 0);
    tu_wait_unwritable(st.sv[0]);
    number = st.sv[0];
    io_descriptor_destroy(st.d);
    ck_assert_uint_eq(io_context_run(st.ctx), 1);
    ck_assert_int_eq(tu_result_error(&st.r[0]), ECANCELED);

    /* A new file takes the number at once, as another thread's open()
     * could. */
    tu_small_socketpair(fresh);
    if (fresh[0] != number) {
        ck_assert_int_eq(dup2(fresh[0], number), number);
        close(fresh[0]);
        fresh[0] = number;
    }
    ck_assert_int_eq(io_descriptor_create(st.ctx, fresh[0], NULL, &reused), 0);
    /* The old file becomes writable: its reader drains what it got. */
    tu_read_available(st.sv[1], NULL, 0, NULL);
    /* The new descriptor parks and wakes up in the same poller. */
    ck_assert_int_eq(tu_write_all(reused, st.data, STUCK_LEN, &st.r[1]), 0);
    ck_assert_int_eq(tu_write_all(reused, "end", 3, &st.r[2]), 0);
    read_and_check(fresh[1], st.data, STUCK_LEN);
    read_and_check(fresh[1], (const unsigned char *)"end", 3);
    io_context_restart(st.ctx);
    ck_assert_uint_eq(io_context_run(st.ctx), 2);
    tu_assert_result(&st.r[1], 0, STUCK_LEN);
    tu_assert_result(&st.r[2], 0, 3);
    /* Nothing of the new file's reached the old one. */
    ck_assert_uint_eq(tu_read_available(st.sv[1], NULL, 0, NULL), 0);
    io_descriptor_destroy(reused);
    stuck_close(&st);
    close(dup_fd);
    close(fresh[1]);
}
END_TEST

/* The kernel refuses to watch the fd (ENOSPC: the user's epoll watches
 * are used up): the writes waiting for it end with that error, and the
 * descriptor works again once the kernel agrees. */
START_TEST(a_refused_registration_ends_the_waiting_writes_with_its_error)
{
    struct stuck st;
    size_t first;

    stuck_open(&st, 11);
    ck_assert_int_eq(io_descriptor_create(st.ctx, st.sv[0], NULL, &st.d), 0);
    atomic_store(&refuse_errno, ENOSPC);
    ck_assert_int_eq(tu_write_all(st.d, st.data, STUCK_LEN, &st.r[0]), 0);
    ck_assert_int_eq(tu_write_all(st.d, st.data, 8, &st.r[1]), 0);
    ck_assert_uint_eq(io_context_run(st.ctx), 2);
    ck_assert_int_eq(tu_int(&st.r[0].calls), 1);
    ck_assert_int_eq(tu_result_error(&st.r[0]), ENOSPC);
    first = tu_result_bytes(&st.r[0]);
    ck_assert_uint_gt(first, 0);
    ck_assert_uint_lt(first, STUCK_LEN);
    tu_assert_result(&st.r[1], ENOSPC, 0);

    atomic_store(&refuse_errno, 0);
    ck_assert_uint_eq(tu_read_available(st.sv[1], NULL, 0, NULL), first);
    ck_assert_int_eq(fcntl(st.sv[1], F_SETFL, fcntl(st.sv[1], F_GETFL) & ~O_NONBLOCK), 0);
    io_context_restart(st.ctx);
    ck_assert_int_eq(tu_write_all(st.d, st.data, STUCK_LEN, &st.r[2]), 0);
    read_and_check(st.sv[1], st.data, STUCK_LEN);
    ck_assert_uint_eq(io_context_run(st.ctx), 1);
    tu_assert_result(&st.r[2], 0, STUCK_LEN);
    io_descriptor_destroy(st.d);
    stuck_close(&st);
}
END_TEST

#define IDLE_ROUND 400
#define BURST 64
#define IDLE_BYTES_MAX 256

/* Opens IDLE_ROUND descriptors (private strands) on pipes, queues a burst
 * of BURST writes on each at once, and runs until all have completed. */
static void open_and_burst(io_context *ctx, io_descriptor **d, int (*fds)[2])
{
    static struct tu_result r[IDLE_ROUND * BURST];

    tu_results_init(r, IDLE_ROUND * BURST);
    for (int i = 0; i < IDLE_ROUND; i++) {
        ck_assert_int_eq(pipe(fds[i]), 0);
        ck_assert_int_eq(io_descriptor_create(ctx, fds[i][1], NULL, &d[i]), 0);
        for (int k = 0; k < BURST; k++)
            ck_assert_int_eq(tu_write_all(d[i], "burst", 5, &r[i * BURST + k]), 0);
    }
    io_context_restart(ctx);
    ck_assert_uint_eq(io_context_run(ctx), IDLE_ROUND * BURST);
    for (int i = 0; i < IDLE_ROUND * BURST; i++)
        tu_assert_result(&r[i], 0, 5);
}

/*
 * What one more idle connection costs, after a burst of queued writes:
 * the memory the library holds with 2N such descriptors less what it
 * holds with N, over N.  Both include the context's cache of spare ops,
 * which is capped, so the difference is the descriptors' own: at most
 * IDLE_BYTES_MAX each, private strand included.
 */
START_TEST(an_idle_descriptor_keeps_nothing_from_its_bursts)
{
    static io_descriptor *d[2 * IDLE_ROUND];
    static int fds[2 * IDLE_ROUND][2];
    io_context *ctx = tu_new_context(1);
    size_t with_n, with_2n, each;

    ck_assert_int_ge(connections_that_fit(2 * IDLE_ROUND), 2 * IDLE_ROUND);
    open_and_burst(ctx, d, fds);
    with_n = io__alloc_live_bytes();
    open_and_burst(ctx, d + IDLE_ROUND, fds + IDLE_ROUND);
    with_2n = io__alloc_live_bytes();
    each = (with_2n - with_n) / IDLE_ROUND;
    ck_assert_msg(each <= IDLE_BYTES_MAX, "an idle descriptor holds %zu bytes", each);
    /* The measure is not empty: a descriptor is not free. */
    ck_assert_uint_gt(each, 64);
    for (int i = 0; i < 2 * IDLE_ROUND; i++) {
        io_descriptor_destroy(d[i]);
        close(fds[i][0]);
    }
    io_context_destroy(ctx);
}
END_TEST

void tu_add_tests(Suite *s)
{
    tu_add_tcase(s, "many", TU_TESTS(parked_descriptors_do_not_hold_up_healthy_ones,
                                     a_closed_fd_is_never_watched_again_while_a_dup_keeps_it_open,
                                     an_idle_descriptor_keeps_nothing_from_its_bursts));
    /* With poll() there is no registration to refuse. */
    if (backend_is_epoll())
        tu_add_tcase(s, "epoll", TU_TESTS(a_refused_registration_ends_the_waiting_writes_with_its_error));
}
