/*
 * test_poller.c - the poller backend on its own (src/poller.h): a watch
 * armed on a writable fd comes back ready, one on a full fd stays armed
 * until the fd drains, disarm takes a watch out, an urgent watch comes
 * back at once, and a wake-up ends a wait that nothing else would end.
 */
#include <errno.h>
#include <fcntl.h>

#include "poller.h"
#include "test_util.h"

struct fixture {
    struct io_poller *poller;
    pthread_mutex_t lock;
    struct io_task_queue ready;
};

static void fixture_init(struct fixture *f)
{
    ck_assert_int_eq(io__poller_create(&f->poller), 0);
    pthread_mutex_init(&f->lock, NULL);
    f->ready = (struct io_task_queue)IO_TASK_QUEUE_INIT;
}

static void fixture_free(struct fixture *f)
{
    io__poller_free(f->poller);
    pthread_mutex_destroy(&f->lock);
}

static void watch_init(struct io_watch *w, int fd)
{
    *w = (struct io_watch){ .fd = fd };
    atomic_init(&w->urgent, false);
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

static void arm(struct fixture *f, struct io_watch *w)
{
    pthread_mutex_lock(&f->lock);
    io__poller_arm_locked(f->poller, w);
    pthread_mutex_unlock(&f->lock);
}

static bool has_armed(struct fixture *f)
{
    bool armed;

    pthread_mutex_lock(&f->lock);
    armed = io__poller_has_armed_locked(f->poller);
    pthread_mutex_unlock(&f->lock);
    return armed;
}

/* Fills a pipe whose write end is non-blocking. */
static void fill(int fd)
{
    static const char block[4096];

    ck_assert_int_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    while (write(fd, block, sizeof(block)) > 0)
        ;
    ck_assert_int_eq(errno, EAGAIN);
}

static void drain(int fd)
{
    char buf[65536];

    ck_assert_int_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}

START_TEST(a_writable_fd_comes_back_ready)
{
    struct fixture f;
    struct io_watch w;
    int fds[2];

    fixture_init(&f);
    tu_small_pipe(fds);
    watch_init(&w, fds[1]);
    arm(&f, &w);
    ck_assert(has_armed(&f));
    ck_assert_uint_eq(wait_once(&f, -1), 1);
    ck_assert_ptr_eq(io_task_queue_pop(&f.ready), &w.link);
    ck_assert(!has_armed(&f));
    close(fds[0]);
    close(fds[1]);
    fixture_free(&f);
}
END_TEST

START_TEST(a_full_fd_stays_armed_until_it_drains)
{
    struct fixture f;
    struct io_watch w;
    int fds[2];

    fixture_init(&f);
    tu_small_pipe(fds);
    fill(fds[1]);
    watch_init(&w, fds[1]);
    arm(&f, &w);
    ck_assert_uint_eq(wait_once(&f, 0), 0);
    ck_assert(io_task_queue_is_empty(&f.ready));
    ck_assert(has_armed(&f));
    drain(fds[0]);
    ck_assert_uint_eq(wait_once(&f, -1), 1);
    ck_assert_ptr_eq(io_task_queue_pop(&f.ready), &w.link);
    close(fds[0]);
    close(fds[1]);
    fixture_free(&f);
}
END_TEST

START_TEST(disarm_takes_an_armed_watch_out)
{
    struct fixture f;
    struct io_watch a, b, c;
    int fds[2];

    fixture_init(&f);
    tu_small_pipe(fds);
    watch_init(&a, fds[1]);
    watch_init(&b, fds[1]);
    watch_init(&c, fds[1]);
    arm(&f, &a);
    arm(&f, &b);
    arm(&f, &c);
    pthread_mutex_lock(&f.lock);
    /* The middle, the tail, then the head: the set stays well linked. */
    ck_assert(io__poller_disarm_locked(f.poller, &b));
    ck_assert(!io__poller_disarm_locked(f.poller, &b));
    ck_assert(io__poller_disarm_locked(f.poller, &c));
    ck_assert(io__poller_disarm_locked(f.poller, &a));
    ck_assert(!io__poller_has_armed_locked(f.poller));
    io__poller_arm_locked(f.poller, &c);
    pthread_mutex_unlock(&f.lock);
    /* Only c is watched now. */
    ck_assert_uint_eq(wait_once(&f, -1), 1);
    ck_assert_ptr_eq(io_task_queue_pop(&f.ready), &c.link);
    ck_assert(io_task_queue_is_empty(&f.ready));
    close(fds[0]);
    close(fds[1]);
    fixture_free(&f);
}
END_TEST

START_TEST(an_urgent_watch_comes_back_without_waiting)
{
    struct fixture f;
    struct io_watch w;
    int fds[2];

    fixture_init(&f);
    tu_small_pipe(fds);
    fill(fds[1]);
    watch_init(&w, fds[1]);
    atomic_store(&w.urgent, true);
    arm(&f, &w);
    /* No limit, and the fd stays full: only urgency ends this wait. */
    ck_assert_uint_eq(wait_once(&f, -1), 1);
    ck_assert_ptr_eq(io_task_queue_pop(&f.ready), &w.link);
    close(fds[0]);
    close(fds[1]);
    fixture_free(&f);
}
END_TEST

struct waiter {
    struct fixture *f;
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

START_TEST(wake_ends_a_wait_that_nothing_else_would_end)
{
    struct waiter waiter = { .ready = SIZE_MAX };
    struct fixture f;
    pthread_t thread;

    fixture_init(&f);
    waiter.f = &f;
    atomic_init(&waiter.tid, 0);
    atomic_init(&waiter.returned, false);
    ck_assert_int_eq(pthread_create(&thread, NULL, wait_in_thread, &waiter), 0);
    while (atomic_load(&waiter.tid) == 0)
        sched_yield();
    ck_assert(tu_wait_sleeping(atomic_load(&waiter.tid), &waiter.returned));
    ck_assert(!tu_bool(&waiter.returned));
    io__poller_wake(f.poller);
    pthread_join(thread, NULL);
    ck_assert_uint_eq(waiter.ready, 0);
    fixture_free(&f);
}
END_TEST

START_TEST(a_wake_before_the_wait_is_not_lost)
{
    struct fixture f;

    fixture_init(&f);
    io__poller_wake(f.poller);
    io__poller_wake(f.poller);
    /* Pending from before: this wait returns although nothing is armed
     * and it has no limit; the next one sees the wake-up drained. */
    ck_assert_uint_eq(wait_once(&f, -1), 0);
    ck_assert_uint_eq(wait_once(&f, 0), 0);
    io__poller_wake(f.poller);
    ck_assert_uint_eq(wait_once(&f, -1), 0);
    fixture_free(&f);
}
END_TEST

void tu_add_tests(Suite *s)
{
    tu_add_tcase(s, "poller", TU_TESTS(a_writable_fd_comes_back_ready,
                                       a_full_fd_stays_armed_until_it_drains,
                                       disarm_takes_an_armed_watch_out,
                                       an_urgent_watch_comes_back_without_waiting,
                                       wake_ends_a_wait_that_nothing_else_would_end,
                                       a_wake_before_the_wait_is_not_lost));
}
