/*
 * wakeup.h - the eventfd that brings a thread out of poll(), written once
 * per burst of wake-ups.
 *
 * Data and locking: no lock.  pending is true from the write that it
 * records until a waiter has drained the eventfd, so that a second wake-up
 * before the drain writes nothing.  That loses no wake-up: a waker changes
 * what the waiter will look at before it calls io__wakeup_signal, and the
 * waiter drains (then clears pending) after poll() returned and before it
 * looks, so it either sees that change or the change's wake-up finds
 * pending cleared and writes the eventfd again.
 */
#ifndef IOCTX_WAKEUP_H
#define IOCTX_WAKEUP_H

#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>

struct io_wakeup {
    int fd;
    atomic_bool pending;
};

/* 0, or the errno value of eventfd(). */
int io__wakeup_init(struct io_wakeup *wk);
void io__wakeup_free(struct io_wakeup *wk);

/* Any thread, any time. */
void io__wakeup_signal(struct io_wakeup *wk);

/* The waiter, after poll() returned with fd's entry in it. */
void io__wakeup_drain(struct io_wakeup *wk, const struct pollfd *entry);

#endif /* IOCTX_WAKEUP_H */
