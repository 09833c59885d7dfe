/*
 * wakeup.c - the eventfd that brings a thread out of poll(); wakeup.h
 * says why a wake-up is never lost.
 */
#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "wakeup.h"

int io__wakeup_init(struct io_wakeup *wk)
{
    atomic_init(&wk->pending, false);
    wk->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return wk->fd < 0 ? errno : 0;
}

void io__wakeup_free(struct io_wakeup *wk)
{
    close(wk->fd);
}

void io__wakeup_signal(struct io_wakeup *wk)
{
    uint64_t one = 1;

    if (atomic_exchange(&wk->pending, true))
        return;     /* written already, not yet drained */
    /* Fails only when the counter is full, which means a wake-up is
     * pending anyway: nothing is lost. */
    (void)!write(wk->fd, &one, sizeof(one));
}

void io__wakeup_drain(struct io_wakeup *wk, const struct pollfd *entry)
{
    uint64_t count;

    if ((entry->revents & POLLIN)
        && read(wk->fd, &count, sizeof(count)) == (ssize_t)sizeof(count))
        atomic_store(&wk->pending, false);
}
