/*
 * test_poller.c - the poller backend on its own (src/poller.h), whichever
 * one the build chose: a watch armed on a writable fd comes back ready,
 * one on a full fd stays armed until the fd drains, disarm takes a watch
 * out (also from under a wait in progress, or that wait hands it back),
 * and a wake-up ends a wait that nothing else would end, once.
 */
#include <errno.h>
#include <fcntl.h>

#include "poller.h"
#include "test_util.h"

#define PIPES 3

/* A poller, the lock the workers would hold around it, and a pipe per
 * watch; the watches watch the write ends. */
struct fixture {
    struct io_poller *poller;
    pthread_mutex_t lock;
    struct io_task_queue ready;
    int fds[PIPES][2];
    struct io_watch w[PIPES];
};

static void setup(struct fixture *f)
{
    ck_assert_int_eq(io__poller_create(&f->poller), 0);
    pthread_mutex_init(&f->lock, NULL);
    f->ready = (struct io_task_queue)IO_TASK_QUEUE_INIT;
    for (int i = 0; i < PIPES; i++) {
        tu_small_pipe(f->fds[i]);
        f->w[i] = (struct io_watch){ .fd = f->fds[i][1] };
        atomic_init(&f->w[i].urgent, false);
    }
}

/* What an owner does before it closes its fd, then the closes. */
static void teardown(struct fixture *f)
{
    for (int i = 0; i < PIPES; i++) {
        pthread_mutex_lock(&f->lock);
        io__poller_forget_locked(f->poller, &f->w[i]);
        pthread_mutex_unlock(&f->lock);
        close(f->fds[i][0]);
        close(f->fds[i][1]);
    }
    io__poller_free(f->poller);
    pthread_mutex_destroy(&f->lock);
}

/* One wait, as a worker makes it: with the lock held around it. */
static size_t wait_once(struct fixture *f, int timeout_ms)
{
    size_t n;

    pthread_mutex_lock(&f->lock);
    n = io__poller_wait_locked(f->poller, &f->lock, timeout_ms, &f->ready);
    pthread_mutex_unlock(&f->lock);
    return n;
}

static void arm(struct fixture *f, int i)
{
    pthread_mutex_lock(&f->lock);
    ck_assert_int_eq(io__poller_arm_locked(f->poller, &f->w[i]), 0);
    pthread_mutex_unlock(&f->lock);
}

static bool disarm(struct fixture *f, int i)
{
    bool disarmed;

    pthread_mutex_lock(&f->lock);
    disarmed = io__poller_disarm_locked(f->poller, &f->w[i]);
    pthread_mutex_unlock(&f->lock);
    return disarmed;
}

static bool has_armed(struct fixture *f)
{
    bool armed;

    pthread_mutex_lock(&f->lock);
    armed = io__poller_has_armed_locked(f->poller);
    pthread_mutex_unlock(&f->lock);
    return armed;
}

/* The next ready watch is w[i] (-1: there is none). */
static void assert_next_ready(struct fixture *f, int i)
{
    ck_assert_ptr_eq(io_task_queue_pop(&f->ready), i >= 0 ? &f->w[i].link : NULL);
}

/* Fills, or drains, one end of a pipe, without blocking. */
static void fill_or_drain(int fd, bool fill)
{
    static char block[4096];

    ck_assert_int_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    while ((fill ? write(fd, block, sizeof(block)) : read(fd, block, sizeof(block))) > 0)
        ;
    ck_assert_int_eq(errno, EAGAIN);
}

START_TEST(a_writable_fd_comes_back_ready)
{
    struct fixture f;

    setup(&f);
    arm(&f, 0);
    ck_assert(has_armed(&f));
    ck_assert_uint_eq(wait_once(&f, -1), 1);
    assert_next_ready(&f, 0);
    assert_next_ready(&f, -1);
    ck_assert(!has_armed(&f));
    teardown(&f);
}
END_TEST

START_TEST(a_full_fd_stays_armed_until_it_drains)
{
    struct fixture f;

    setup(&f);
    fill_or_drain(f.fds[0][1], true);
    arm(&f, 0);
    ck_assert_uint_eq(wait_once(&f, 0), 0);
    assert_next_ready(&f, -1);
    ck_assert(has_armed(&f));
    fill_or_drain(f.fds[0][0], false);
    ck_assert_uint_eq(wait_once(&f, -1), 1);
    assert_next_ready(&f, 0);
    teardown(&f);
}
END_TEST

START_TEST(disarm_takes_an_armed_watch_out)
{
    struct fixture f;

    setup(&f);
    for (int i = 0; i < PIPES; i++)
        arm(&f, i);
    /* The middle, the last, then the first: the set stays consistent. */
    ck_assert(disarm(&f, 1));
    ck_assert(!disarm(&f, 1));
    ck_assert(disarm(&f, 2));
    ck_assert(disarm(&f, 0));
    ck_assert(!has_armed(&f));
    arm(&f, 2);
    /* Every fd is writable, but only w[2] is watched now. */
    ck_assert_uint_eq(wait_once(&f, -1), 1);
    assert_next_ready(&f, 2);
    assert_next_ready(&f, -1);
    teardown(&f);
}
END_TEST

struct waiter {
    struct fixture *f;
    pthread_t thread;
    atomic_int tid;
    atomic_bool returned;
    size_t ready;
};

static void *wait_in_thread(void *p)
{
    struct waiter *w = p;

    atomic_store(&w->tid, tu_gettid());
    w->ready = wait_once(w->f, -1);
    atomic_store(&w->returned, true);
    return NULL;
}

/* Starts a thread in a wait with no limit; returns once it sleeps there. */
static void start_waiter(struct waiter *waiter, struct fixture *f)
{
    waiter->f = f;
    waiter->ready = SIZE_MAX;
    atomic_init(&waiter->tid, 0);
    atomic_init(&waiter->returned, false);
    ck_assert_int_eq(pthread_create(&waiter->thread, NULL, wait_in_thread, waiter), 0);
    while (atomic_load(&waiter->tid) == 0)
        sched_yield();
    ck_assert(tu_wait_sleeping(atomic_load(&waiter->tid), &waiter->returned));
}

/*
 * A close takes a watch back while the leader waits: either disarm gets
 * it (the wait will never report it), or the wait in progress holds it
 * and hands it back, urgent, once woken.  Never both, never neither.
 */
START_TEST(a_watch_is_taken_back_from_under_a_wait_exactly_once)
{
    struct waiter waiter;
    struct fixture f;
    bool disarmed;

    setup(&f);
    fill_or_drain(f.fds[0][1], true);
    arm(&f, 0);
    start_waiter(&waiter, &f);
    atomic_store(&f.w[0].urgent, true);
    disarmed = disarm(&f, 0);
    io__poller_wake(f.poller);
    pthread_join(waiter.thread, NULL);
    ck_assert_uint_eq(waiter.ready, disarmed ? 0 : 1);
    assert_next_ready(&f, disarmed ? -1 : 0);
    ck_assert(!has_armed(&f));
    teardown(&f);
}
END_TEST

START_TEST(wake_ends_a_wait_that_nothing_else_would_end)
{
    struct waiter waiter;
    struct fixture f;

    setup(&f);
    start_waiter(&waiter, &f);
    ck_assert(!tu_bool(&waiter.returned));
    io__poller_wake(f.poller);
    pthread_join(waiter.thread, NULL);
    ck_assert_uint_eq(waiter.ready, 0);
    teardown(&f);
}
END_TEST

START_TEST(a_wake_before_the_wait_is_not_lost)
{
    struct fixture f;

    setup(&f);
    io__poller_wake(f.poller);
    io__poller_wake(f.poller);
    /* Pending from before: this wait returns although nothing is armed
     * and it has no limit; the next one sees the wake-up drained. */
    ck_assert_uint_eq(wait_once(&f, -1), 0);
    ck_assert_uint_eq(wait_once(&f, 0), 0);
    io__poller_wake(f.poller);
    ck_assert_uint_eq(wait_once(&f, -1), 0);
    teardown(&f);
}
END_TEST

void tu_add_tests(Suite *s)
{
    tu_add_tcase(s, "poller", TU_TESTS(a_writable_fd_comes_back_ready,
                                       a_full_fd_stays_armed_until_it_drains,
                                       disarm_takes_an_armed_watch_out,
                                       a_watch_is_taken_back_from_under_a_wait_exactly_once,
                                       wake_ends_a_wait_that_nothing_else_would_end,
                                       a_wake_before_the_wait_is_not_lost));
}
