/*
 * send_timeout.c - a descriptor's send timeout: when it has pending
 * operations and no write system call has accepted a byte for the
 * timeout, every pending operation completes with ETIMEDOUT and the
 * descriptor stays open.
 *
 * The clock runs from d->progress_at: the later of the moment the
 * descriptor went from no pending operation to one and the last call
 * that accepted bytes (op_queue.c keeps it, for every descriptor, so that
 * a timeout set while operations wait counts from the right moment).
 * A descriptor with a timeout has one entry in the workers' timer queue,
 * not one per operation, and the entry is lazy: progress does not move
 * it.  When it falls due, the descriptor looks at progress_at and either
 * times out or puts the entry back at the new deadline.  So progress
 * costs a write no lock and no heap operation; a descriptor without a
 * timeout has no entry and no struct io_send_timeout at all.
 *
 * Data and locking:
 *   d->lock guards st->timeout and st->armed.  st->armed is true from the
 *   moment the entry goes into the heap until the descriptor has seen it
 *   fire (or took it out): while it is true the entry holds a reference
 *   to d, so that a worker that popped the entry can still lock d.
 *   st->entry belongs to the timer queue's lock (timer_queue.h), taken
 *   with d->lock held, never the other way round: the entry that fires is
 *   handed to the descriptor after the queue's lock is released.
 */
#include <errno.h>

#include "internal.h"

static struct io_timer_queue *queue_of(io_descriptor *d)
{
    return &io__descriptor_ctx(d)->workers.timers;
}

/* Puts the entry into the heap at the deadline, holding a reference to
 * d.  Returns true when the workers must be told of a new earliest
 * entry.  d->lock held; the entry is not in the heap. */
static bool arm_locked(io_descriptor *d, uint64_t deadline)
{
    struct io_send_timeout *st = d->send_timeout;
    struct io_timer_queue *q = queue_of(d);
    bool earliest;

    if (!st->armed) {
        st->armed = true;
        atomic_fetch_add(&d->refs, 1);
    }
    pthread_mutex_lock(&q->lock);
    earliest = io__timer_queue_insert_locked(q, &st->entry, deadline);
    pthread_mutex_unlock(&q->lock);
    return earliest;
}

static uint64_t deadline_of(const io_descriptor *d)
{
    uint64_t timeout = d->send_timeout->timeout;

    return d->progress_at > UINT64_MAX - timeout ? UINT64_MAX : d->progress_at + timeout;
}

static void tell_workers(io_descriptor *d, bool earliest)
{
    if (earliest)
        io__workers_timers_changed(&io__descriptor_ctx(d)->workers);
}

void io__send_timeout_started_locked(io_descriptor *d)
{
    struct io_send_timeout *st = d->send_timeout;

    /* Armed already: the entry fires no later than the new deadline and
     * looks at progress_at then. */
    if (st != NULL && st->timeout > 0 && !st->armed)
        tell_workers(d, arm_locked(d, deadline_of(d)));
}

void io__send_timeout_set_locked(io_descriptor *d, uint64_t timeout)
{
    struct io_send_timeout *st = d->send_timeout;
    struct io_timer_queue *q = queue_of(d);
    bool earliest = false;

    st->timeout = timeout;
    if (timeout == 0 || io_task_queue_is_empty(&d->ops))
        return;         /* an armed entry finds nothing to do when it fires */
    if (!st->armed) {
        earliest = arm_locked(d, deadline_of(d));
    } else {
        /* A shorter timeout may be due before the entry: move it. */
        pthread_mutex_lock(&q->lock);
        if (st->entry.index != IO_TIMER_NOT_QUEUED && st->entry.expiry > deadline_of(d)) {
            io__timer_queue_remove_locked(q, &st->entry);
            earliest = io__timer_queue_insert_locked(q, &st->entry, deadline_of(d));
        }
        pthread_mutex_unlock(&q->lock);
    }
    tell_workers(d, earliest);
}

unsigned io__send_timeout_stop_locked(io_descriptor *d)
{
    struct io_send_timeout *st = d->send_timeout;
    struct io_timer_queue *q = queue_of(d);
    bool removed;

    if (st == NULL || !st->armed)
        return 0;
    pthread_mutex_lock(&q->lock);
    removed = io__timer_queue_remove_locked(q, &st->entry);
    pthread_mutex_unlock(&q->lock);
    /* Not in the heap: a worker has it and will find d closed. */
    if (!removed)
        return 0;
    st->armed = false;
    return 1;
}

unsigned io__send_timeout_fired(io_descriptor *d)
{
    struct io_send_timeout *st = d->send_timeout;
    struct io_task_queue done = IO_TASK_QUEUE_INIT;
    bool earliest = false;
    unsigned drop = 0;

    pthread_mutex_lock(&d->lock);
    if (st->timeout > 0 && !io_task_queue_is_empty(&d->ops)
        && atomic_load(&d->public_fd) >= 0) {
        uint64_t deadline = deadline_of(d);

        if (io__clock_now() < deadline) {
            earliest = arm_locked(d, deadline);    /* progress since: later */
        } else {
            io__op_queue_cancel_all_locked(d, ETIMEDOUT, &done);
            io__op_queue_hand_over_locked(d, &done);
            if (!io_task_queue_is_empty(&d->ops)) {
                /* An op inside a worker's call ends when it returns; what
                 * is queued behind it by then gets a clock of its own. */
                earliest = arm_locked(d, io__clock_now() + st->timeout);
            } else {
                st->armed = false;
                drop = 1;
            }
        }
    } else {
        st->armed = false;
        drop = 1;
    }
    pthread_mutex_unlock(&d->lock);
    tell_workers(d, earliest);
    return drop;
}

/* The entry fell due: the descriptor looks at it once the queue's lock
 * is released (struct io_timer_entry_type). */
static void expired_locked(struct io_timer_entry *e, struct io_task_queue *later)
{
    io_task_queue_push(later, &io_container_of(e, struct io_send_timeout, entry)->fire);
}

const struct io_timer_entry_type io_send_timeout_entry_type = { expired_locked, false };
