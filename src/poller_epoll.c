/*
 * poller_epoll.c - the epoll backend of the poller (poller.h), the
 * default on Linux.
 *
 * The leader still blocks in poll(), on two fds: the wake-up eventfd and
 * one epoll fd in which the watches are registered.  When the epoll fd is
 * readable it harvests with epoll_wait(.., 0).  So a wait costs O(ready
 * watches) whatever the number of armed ones, and arming or disarming a
 * watch is O(1).
 *
 * Data and locking:
 *   Everything here but p->wakeup (wakeup.h) belongs to the workers' lock,
 *   which every call but io__poller_wake holds; the wait drops it only
 *   around poll().  The harvest (epoll_wait) runs under it too, so that
 *   a watch pointer read from the kernel is used before anyone can
 *   disarm, forget and free that watch: forget (EPOLL_CTL_DEL) takes the
 *   same lock, and after it the kernel reports nothing more for the fd.
 *   w->armed says whether a report for w is wanted: a watch that was
 *   disarmed while its one-shot registration stayed enabled may still be
 *   reported once, and that report is ignored.
 *
 * Registration: EPOLL_CTL_ADD when a watch first parks, then EPOLL_CTL_MOD
 * to re-arm it (EPOLLONESHOT disables it after each report, so no report
 * comes for a watch that is not waiting), and EPOLL_CTL_DEL before its
 * owner closes or hands back the fd: an epoll registration outlives
 * close() while another fd shares the open file, and the number may be
 * reused at once for another file.
 */
#include <errno.h>
#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "alloc.h"
#include "poller.h"
#include "wakeup.h"

/* Reports taken per harvest; more stay in the kernel for the next one. */
#define EPOLL_BATCH 256

struct io_poller {
    struct io_wakeup wakeup;
    int epoll_fd;
    size_t armed;                   /* the workers' lock */
    struct epoll_event events[EPOLL_BATCH];     /* the workers' lock */
};

int io__poller_create(struct io_poller **out)
{
    struct io_poller *p = io__alloc(sizeof(*p));
    int err;

    if (p == NULL)
        return ENOMEM;
    p->armed = 0;
    err = io__wakeup_init(&p->wakeup);
    if (err != 0)
        goto out_free;
    p->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epoll_fd < 0) {
        err = errno;
        goto out_free_wakeup;
    }
    *out = p;
    return 0;

out_free_wakeup:
    io__wakeup_free(&p->wakeup);
out_free:
    io__free(p);
    return err;
}

void io__poller_free(struct io_poller *p)
{
    close(p->epoll_fd);
    io__wakeup_free(&p->wakeup);
    io__free(p);
}

int io__poller_arm_locked(struct io_poller *p, struct io_watch *w)
{
    struct epoll_event ev = { .events = EPOLLOUT | EPOLLONESHOT, .data.ptr = w };
    int rc = -1;

    if (w->registered) {
        rc = epoll_ctl(p->epoll_fd, EPOLL_CTL_MOD, w->fd, &ev);
        /* The fd was closed behind the library's back, and the kernel
         * dropped the registration with it: register it again. */
        if (rc != 0 && errno == ENOENT)
            w->registered = false;
    }
    if (!w->registered) {
        rc = epoll_ctl(p->epoll_fd, EPOLL_CTL_ADD, w->fd, &ev);
        w->registered = rc == 0;
    }
    if (rc != 0)
        return errno;
    w->armed = true;
    p->armed++;
    return 0;
}

bool io__poller_disarm_locked(struct io_poller *p, struct io_watch *w)
{
    if (!w->armed)
        return false;
    w->armed = false;
    p->armed--;
    return true;
}

/* The leader's poll() watches the epoll fd, which becomes readable when
 * any registered watch, old or new, is reported. */
bool io__poller_wait_sees_new_arms(void)
{
    return true;
}

bool io__poller_has_armed_locked(const struct io_poller *p)
{
    return p->armed > 0;
}

void io__poller_forget_locked(struct io_poller *p, struct io_watch *w)
{
    (void)io__poller_disarm_locked(p, w);
    /* Fails only for an fd already closed behind the library's back,
     * which the kernel has forgotten by itself. */
    if (w->registered)
        (void)epoll_ctl(p->epoll_fd, EPOLL_CTL_DEL, w->fd, NULL);
    w->registered = false;
}

void io__poller_wake(struct io_poller *p)
{
    io__wakeup_signal(&p->wakeup);
}

/* Moves the watches the kernel reports writable (or in error) to ready.
 * Called with the workers' lock held. */
static size_t harvest_locked(struct io_poller *p, struct io_task_queue *ready)
{
    size_t woken = 0;
    int n;

    do
        n = epoll_wait(p->epoll_fd, p->events, EPOLL_BATCH, 0);
    while (n < 0 && errno == EINTR);
    for (int i = 0; i < n; i++) {
        struct io_watch *w = p->events[i].data.ptr;

        /* EPOLLERR and EPOLLHUP too: the turn finds out what is wrong
         * and tells the op's handler. */
        if (io__poller_disarm_locked(p, w)) {
            io_task_queue_push(ready, &w->link);
            woken++;
        }
    }
    return woken;
}

size_t io__poller_wait_locked(struct io_poller *p, pthread_mutex_t *lock, int64_t timeout_ns,
                              struct io_task_queue *ready)
{
    struct pollfd fds[2] = {
        { .fd = p->wakeup.fd, .events = POLLIN },
        { .fd = p->epoll_fd, .events = POLLIN },
    };

    pthread_mutex_unlock(lock);
    if (io__poll_ns(fds, 2, timeout_ns) < 0)
        fds[0].revents = fds[1].revents = 0;    /* EINTR: look again next round */
    io__wakeup_drain(&p->wakeup, &fds[0]);
    pthread_mutex_lock(lock);
    return (fds[1].revents & POLLIN) ? harvest_locked(p, ready) : 0;
}
