/*
 * poller_poll.c - the poll() backend of the poller (poller.h).
 *
 * Data and locking:
 *   p->armed (the watches waiting for POLLOUT) belongs to the workers'
 *   lock, which every call but io__poller_wake holds.  The arrays given
 *   to poll() belong to the one thread in io__poller_wait_locked.
 *   p->wakeup needs no lock (wakeup.h).
 *
 * A wait takes every armed watch out of p->armed, builds the arrays (the
 * eventfd first), polls without the lock, and puts back what is not
 * ready: one wait costs O(armed watches).
 */
#include <errno.h>
#include <poll.h>

#include "alloc.h"
#include "poller.h"
#include "wakeup.h"

/* The arrays live inside the poller while they fit, so that a wait on
 * the eventfd alone never needs memory. */
#define POLL_SET_INLINE 64

struct io_poller {
    struct io_task_queue armed;     /* the workers' lock */
    struct io_wakeup wakeup;
    struct pollfd *fds;             /* the waiting thread's */
    struct io_watch **watches;
    size_t capacity;
    struct pollfd inline_fds[POLL_SET_INLINE];
    struct io_watch *inline_watches[POLL_SET_INLINE];
};

static struct io_watch *watch_of(struct io_task *t)
{
    return io_container_of(t, struct io_watch, link);
}

int io__poller_create(struct io_poller **out)
{
    struct io_poller *p = io__alloc(sizeof(*p));
    int err;

    if (p == NULL)
        return ENOMEM;
    p->armed = (struct io_task_queue)IO_TASK_QUEUE_INIT;
    p->fds = p->inline_fds;
    p->watches = p->inline_watches;
    p->capacity = POLL_SET_INLINE;
    err = io__wakeup_init(&p->wakeup);
    if (err != 0) {
        io__free(p);
        return err;
    }
    *out = p;
    return 0;
}

static void free_arrays(struct io_poller *p)
{
    if (p->fds != p->inline_fds) {
        io__free(p->fds);
        io__free(p->watches);
    }
}

void io__poller_free(struct io_poller *p)
{
    free_arrays(p);
    io__wakeup_free(&p->wakeup);
    io__free(p);
}

int io__poller_arm_locked(struct io_poller *p, struct io_watch *w)
{
    io_task_queue_push(&p->armed, &w->link);
    return 0;
}

/* The set given to poll() is built when the wait begins. */
bool io__poller_wait_sees_new_arms(void)
{
    return false;
}

/* poll() keeps nothing between two waits. */
void io__poller_forget_locked(struct io_poller *p, struct io_watch *w)
{
    (void)p;
    (void)w;
}

bool io__poller_disarm_locked(struct io_poller *p, struct io_watch *w)
{
    struct io_task *prev = NULL, *t;

    for (t = p->armed.head; t != NULL && t != &w->link; t = t->next)
        prev = t;
    if (t == NULL)
        return false;
    io_task_queue_remove(&p->armed, prev, t);
    return true;
}

bool io__poller_has_armed_locked(const struct io_poller *p)
{
    return !io_task_queue_is_empty(&p->armed);
}

void io__poller_wake(struct io_poller *p)
{
    io__wakeup_signal(&p->wakeup);
}

static bool reserve(struct io_poller *p, size_t n)
{
    struct pollfd *fds;
    struct io_watch **watches;

    if (n <= p->capacity)
        return true;
    n = n < 2 * p->capacity ? 2 * p->capacity : n;
    fds = io__alloc(n * sizeof(*fds));
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    watches = io__alloc(n * sizeof(*watches));
    if (fds == NULL || watches == NULL) {
        io__free(fds);
        io__free(watches);
        return false;
    }
    free_arrays(p);
    p->fds = fds;
    p->watches = watches;
    p->capacity = n;
    return true;
}

size_t io__poller_wait_locked(struct io_poller *p, pthread_mutex_t *lock, int64_t timeout_ns,
                              struct io_task_queue *ready)
{
    struct io_task_queue batch = IO_TASK_QUEUE_INIT;
    size_t n = 1, woken = 0;
    struct io_task *t;

    io_task_queue_splice(&batch, &p->armed);
    pthread_mutex_unlock(lock);

    for (t = batch.head; t != NULL; t = t->next)
        n++;
    if (!reserve(p, n)) {
        /* No memory for the arrays: every watch gets a turn instead, and
         * one that still would block is armed again. */
        pthread_mutex_lock(lock);
        io_task_queue_splice(ready, &batch);
        return n - 1;
    }
    p->fds[0] = (struct pollfd){ .fd = p->wakeup.fd, .events = POLLIN };
    n = 1;
    for (t = batch.head; t != NULL; t = t->next, n++) {
        struct io_watch *w = watch_of(t);

        p->watches[n] = w;
        p->fds[n] = (struct pollfd){ .fd = w->fd, .events = POLLOUT };
        /* Its owner waits for it: no sleep, a turn at once.  One that
         * becomes urgent later wakes this wait. */
        if (atomic_load(&w->urgent))
            timeout_ns = 0;
    }
    if (io__poll_ns(p->fds, n, timeout_ns) < 0) {
        for (size_t i = 0; i < n; i++)
            p->fds[i].revents = 0;      /* EINTR: look again next round */
    }
    io__wakeup_drain(&p->wakeup, &p->fds[0]);

    pthread_mutex_lock(lock);
    for (size_t i = 1; i < n; i++) {
        struct io_watch *w = p->watches[i];

        /* POLLERR, POLLHUP and POLLNVAL too: the turn finds out what is
         * wrong and tells the op's handler. */
        if (p->fds[i].revents != 0 || atomic_load(&w->urgent)) {
            io_task_queue_push(ready, &w->link);
            woken++;
        } else {
            io_task_queue_push(&p->armed, &w->link);
        }
    }
    return woken;
}
