/*
 * watermark.c - a descriptor's write-buffer water marks: an event when
 * its queued bytes rise above high, and one when they next fall to low
 * or below, alternating, starting with "above" (Netty's writability
 * changes).
 *
 * Each event is a task on the descriptor's strand, queued in the same
 * hand-over as the completions of the change that crossed and after
 * them, so the user sees it in order with the write handlers: a "below"
 * runs after the handlers of the writes whose end brought the bytes down.
 * The check runs at every hand-over (op_queue.c), which every change of
 * the queued bytes reaches before d->lock is released.
 *
 * Memory: an event needs a node, and a "below" must never be lost to a
 * failed allocation (every "above" is followed by exactly one "below"),
 * and no allocation happens under d->lock.  So nodes come from a small
 * pool in struct io_watermarks, topped up outside the lock by the calls
 * that can make the bytes rise (an initiating call makes sure of two: one
 * for the "above" it may cause, one for the "below" that must follow),
 * and handed back to it after their handler has run.
 *
 * Data and locking: d->lock guards all of struct io_watermarks and the
 * pool; an event node belongs to the strand's queue from its hand-over
 * until its handler has run, and holds a reference to d meanwhile.
 */
#include "internal.h"

size_t io__watermarks_missing_nodes_locked(const io_descriptor *d, size_t want, bool setting)
{
    const struct io_watermarks *wm = d->watermarks;

    /* Without a handler no event can come, but one being set needs them. */
    if (wm == NULL || (wm->handler == NULL && !setting))
        return 0;
    return wm->spares < want ? want - wm->spares : 0;
}

void io__watermarks_add_nodes_locked(io_descriptor *d, struct io_task_queue *nodes)
{
    struct io_watermarks *wm = d->watermarks;
    struct io_task *t;

    while (wm->spares < IO_WATERMARK_SPARES_MAX && (t = io_task_queue_pop(nodes)) != NULL) {
        io_task_queue_push(&wm->spare, t);
        wm->spares++;
    }
}

/* Queues one event from the pool onto done.  The pool is never empty
 * here: see the top of the file. */
static void queue_event_locked(io_descriptor *d, bool above, io_watermark_handler handler,
                               void *arg, struct io_task_queue *done)
{
    struct io_watermarks *wm = d->watermarks;
    struct io_watermark_event *e =
        io_container_of(io_task_queue_pop(&wm->spare), struct io_watermark_event, task);

    wm->spares--;
    e->above = above;
    e->queued = atomic_load(&d->queued_bytes);
    e->handler = handler;
    e->arg = arg;
    atomic_fetch_add(&d->refs, 1);      /* until the handler has run */
    io_task_queue_push(done, &e->task);
}

void io__watermarks_check_locked(io_descriptor *d, struct io_task_queue *done)
{
    struct io_watermarks *wm = d->watermarks;
    size_t queued;

    if (wm == NULL)
        return;
    queued = atomic_load(&d->queued_bytes);
    if (!wm->above && wm->handler != NULL && queued > wm->high) {
        wm->above = true;
        wm->told = wm->handler;
        wm->told_arg = wm->arg;
        queue_event_locked(d, true, wm->told, wm->told_arg, done);
    } else if (wm->above && queued <= wm->low) {
        wm->above = false;
        queue_event_locked(d, false, wm->told, wm->told_arg, done);
    }
}

/* NOLINTNEXTLINE(bugprone-easily-swappable-parameters): as the public call's */
void io__watermarks_set_locked(io_descriptor *d, size_t low, size_t high,
                               io_watermark_handler handler, void *arg,
                               struct io_task_queue *done)
{
    struct io_watermarks *wm = d->watermarks;

    /* The handler that was told "above" hears "below" first. */
    if (wm->above) {
        wm->above = false;
        queue_event_locked(d, false, wm->told, wm->told_arg, done);
    }
    wm->low = low;
    wm->high = high;
    wm->handler = handler;
    wm->arg = arg;
    /* The caller's hand-over checks the new marks at once. */
}
