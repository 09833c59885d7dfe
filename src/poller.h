/*
 * poller.h - the seam between the workers and the kernel's readiness
 * interface: how a worker waits until a descriptor that would block is
 * writable again.
 *
 * A poller knows watches, not descriptors: a watch is an fd to wait on
 * for POLLOUT, a link, and the turn a worker gives it once it is writable.
 * The workers (worker.c) keep the leader/follower logic and the spin watch
 * above this seam; one backend below it is compiled in, chosen at build
 * time (CMake option IOCTX_POLLER):
 *   poller_epoll.c  the default on Linux: poll() on the wake-up eventfd
 *                   plus one epoll fd in which every watch is registered
 *                   once (EPOLLOUT | EPOLLONESHOT, re-armed when it
 *                   parks), harvested with epoll_wait(.., 0): a wait
 *                   costs O(ready watches), an armed one costs nothing.
 *   poller_poll.c   poll() on the wake-up eventfd plus every armed fd,
 *                   rebuilt at each wait: O(armed watches) a wait, and
 *                   portable.
 *
 * Locking: every function but io__poller_wake is called with the workers'
 * lock held, which guards the poller's set of armed watches.
 * io__poller_wait_locked is called by one thread at a time (the workers'
 * leader) and releases that lock while it blocks.  io__poller_wake may be
 * called from any thread, with or without locks.
 */
#ifndef IOCTX_POLLER_H
#define IOCTX_POLLER_H

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

#include "task_queue.h"

struct io_watch {
    struct io_task link;        /* in the workers' ready queue or the poller's set */
    int fd;                     /* its owner changes it only while no worker holds it */
    atomic_bool urgent;         /* its owner waits for the workers to let go */
    /* Set by its owner when a turn may block in the kernel (a regular
     * file's writev, a sendfile that reads from disk): the worker in
     * such a turn does not count as awake, so others take what comes. */
    atomic_bool may_block;
    bool armed;                 /* the backend's, under the workers' lock */
    bool registered;            /* the backend's: the kernel knows the fd */
    /* A worker's turn on it, with no lock held; scratch holds IOV_MAX
     * entries.  The turn hands the watch back to the workers (schedule,
     * park) or lets it go. */
    void (*turn)(struct io_watch *w, struct iovec *scratch);
};

struct io_poller;

/* 0, or an errno value (the wake-up fd could not be made, ENOMEM). */
int io__poller_create(struct io_poller **out);
void io__poller_free(struct io_poller *p);

/* Starts waiting for w's fd to become writable.  Returns 0, or the errno
 * value with which the kernel refused to watch it (ENOMEM, or ENOSPC when
 * the user's epoll watches are used up); w is not armed then. */
int io__poller_arm_locked(struct io_poller *p, struct io_watch *w);

/* Stops waiting for w: true when it was armed and no longer is; false
 * when it is not armed, or a wait in progress holds it (that wait then
 * returns it as ready if w->urgent is set). */
bool io__poller_disarm_locked(struct io_poller *p, struct io_watch *w);

bool io__poller_has_armed_locked(const struct io_poller *p);

/* Whether a wait in progress sees a watch armed after it began, or must
 * be woken to see it. */
bool io__poller_wait_sees_new_arms(void);

/* w's owner is about to close its fd or hand it back: the kernel must
 * forget it, so that a number reused for another file is never watched as
 * w (nor reported after w is freed).  w is not armed. */
void io__poller_forget_locked(struct io_poller *p, struct io_watch *w);

/*
 * Waits until an armed watch is writable (or in error, or urgent), until
 * io__poller_wake, or for timeout_ns (-1: no limit; 0: only looks), with
 * *lock released meanwhile.  Appends the watches that are ready to ready,
 * in no particular order, and returns how many; the rest stay armed.  A
 * watch armed during the wait is seen by the next one (the arming thread
 * wakes this one).
 */
size_t io__poller_wait_locked(struct io_poller *p, pthread_mutex_t *lock, int64_t timeout_ns,
                            struct io_task_queue *ready);

/* poll() with a timeout in nanoseconds (-1: no limit), through ppoll():
 * a timer due in 300 us must not sleep a whole millisecond. */
static inline int io__poll_ns(struct pollfd *fds, nfds_t n, int64_t timeout_ns)
{
    struct timespec ts = { (time_t)(timeout_ns / 1000000000), (long)(timeout_ns % 1000000000) };

    return ppoll(fds, n, timeout_ns < 0 ? NULL : &ts, NULL);
}

/* Makes the wait in progress, or else the next one, return soon. */
void io__poller_wake(struct io_poller *p);

#endif /* IOCTX_POLLER_H */
