/*
 * test_util.h - what the Check suites share: a latch, a way to tell that
 * another thread is asleep in the kernel (so a test can wait for "blocked
 * in run" without sleeping), and the suite runner.
 */
#ifndef IOCTX_TEST_UTIL_H
#define IOCTX_TEST_UTIL_H

#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Generous: TSan builds run these an order of magnitude slower, and the
 * test build multiplies it again (CK_TIMEOUT_MULTIPLIER). */
#define TU_TIMEOUT_S 60

struct tu_latch {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned count;
};

static inline void tu_latch_init(struct tu_latch *l, unsigned count)
{
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cond, NULL);
    l->count = count;
}

static inline void tu_latch_count_down(struct tu_latch *l)
{
    pthread_mutex_lock(&l->lock);
    if (l->count > 0 && --l->count == 0)
        pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

static inline void tu_latch_wait(struct tu_latch *l)
{
    pthread_mutex_lock(&l->lock);
    while (l->count > 0)
        pthread_cond_wait(&l->cond, &l->lock);
    pthread_mutex_unlock(&l->lock);
}

static inline void tu_latch_destroy(struct tu_latch *l)
{
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
}

/* Functions, not atomic_load(): inside ck_assert a macro would be
 * expanded into the failure message. */
static inline int tu_int(atomic_int *p)
{
    return atomic_load(p);
}

static inline bool tu_bool(atomic_bool *p)
{
    return atomic_load(p);
}

static inline pid_t tu_gettid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

/* 'S' while the thread sleeps in the kernel (a futex wait, say), 'R' while
 * it runs, 0 once it has exited. */
static inline char tu_thread_state(pid_t tid)
{
    char path[64], buf[512], *close_paren;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    close_paren = strrchr(buf, ')');
    if (close_paren == NULL || close_paren[1] == '\0' || close_paren[2] == '\0')
        return 0;
    return close_paren[2] == 'Z' || close_paren[2] == 'X' ? 0 : close_paren[2];
}

/* Waits until thread tid sleeps in the kernel or *gone becomes true (the
 * thread left the call the test cares about).  Returns true if it sleeps.
 * The thread is seen sleeping three times in a row, so a thread passing
 * through a brief mutex wait is not taken for one that blocks. */
static inline bool tu_wait_sleeping(pid_t tid, atomic_bool *gone)
{
    int seen = 0;

    while (!atomic_load(gone)) {
        char state = tu_thread_state(tid);

        if (state == 0)
            return false;
        seen = state == 'S' ? seen + 1 : 0;
        if (seen >= 3)
            return true;
        sched_yield();
    }
    return false;
}

/* A pipe that holds one page: a few KiB of writes make it block.
 * Returns what it holds. */
static inline size_t tu_small_pipe(int fds[2])
{
    int size;

    ck_assert_int_eq(pipe(fds), 0);
    size = fcntl(fds[1], F_SETPIPE_SZ, 4096);
    ck_assert_int_gt(size, 0);
    return (size_t)size;
}

/* Waits until fd (a pipe's write end or a socket) is no longer writable:
 * a worker has filled its buffer and must now wait for POLLOUT, so the
 * test exercises that wait.  The kernel's own answer is the probe, so it
 * holds whether the worker saw EAGAIN or stopped after a short write. */
static inline void tu_wait_unwritable(int fd)
{
    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLOUT };

        ck_assert_int_ge(poll(&p, 1, 0), 0);
        if ((p.revents & POLLOUT) == 0)
            return;
        sched_yield();
    }
}

/* What a write handler saw, for suites that only need the outcome: how
 * often it ran, with which error and byte count. */
struct tu_result {
    atomic_int calls;
    atomic_int error;           /* -1 until it ran */
    atomic_size_t bytes;        /* SIZE_MAX until it ran */
};

static inline void tu_results_init(struct tu_result *r, int n)
{
    for (int i = 0; i < n; i++) {
        atomic_init(&r[i].calls, 0);
        atomic_init(&r[i].error, -1);
        atomic_init(&r[i].bytes, SIZE_MAX);
    }
}

/* An io_write_handler: arg is a struct tu_result. */
static inline void tu_record(void *arg, int error, size_t bytes)
{
    struct tu_result *r = arg;

    atomic_store(&r->error, error);
    atomic_store(&r->bytes, bytes);
    atomic_fetch_add(&r->calls, 1);
}

/* The handler ran once, with this error and byte count. */
static inline void tu_assert_result(struct tu_result *r, int error, size_t bytes)
{
    ck_assert_int_eq(tu_int(&r->calls), 1);
    ck_assert_msg(atomic_load(&r->error) == error, "error %d (%s), expected %d (%s)",
                  atomic_load(&r->error), strerror(atomic_load(&r->error)), error, strerror(error));
    ck_assert_uint_eq(atomic_load(&r->bytes), bytes);
}

static inline TCase *tu_tcase(Suite *s, const char *name)
{
    TCase *tc = tcase_create(name);

    tcase_set_timeout(tc, TU_TIMEOUT_S);
    suite_add_tcase(s, tc);
    return tc;
}

static inline int tu_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif /* IOCTX_TEST_UTIL_H */
