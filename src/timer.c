/*
 * timer.c - io_timer: Asio's steady_timer.  A timer has an expiry and
 * any number of pending waits; each wait is an entry of the workers'
 * timer queue (timer_queue.h) until it ends.
 *
 * Data and locking:
 *   The timer queue's lock (q->lock, one per context) guards every
 *   timer's list of pending waits and each wait's place in the heap and
 *   cancel signal; t->expiry is written under it and read without it.
 *   t->refs is atomic: the user's handle plus one per wait, from its start
 *   until its handler has returned, so that a timer destroyed from inside
 *   a handler lives on until its last handler has run.  t->member belongs
 *   to ctx->lock.  Lock order: q->lock, then the strand's lock and
 *   ctx->lock (a wait that ends is handed to its strand under q->lock);
 *   q->lock, then a cancel signal's lock.
 *
 * How a wait ends: it is pending exactly while it is on its timer's list,
 * and only end_wait_locked(), under q->lock, takes it off: at expiry (a
 * worker pops it from the heap), by cancel, expires_at, destroy or an
 * emit, or at once when the context is shutting down.  Whoever takes it
 * off hands it to the strand in the same critical section, so each wait
 * ends exactly once, and waits that expire reach a strand in the order
 * the heap gives them: expiry, then start order.
 */
#include <errno.h>

#include "internal.h"

struct io_timer {
    io_context *ctx;
    io_strand *strand;                  /* the user's (a reference held), or own */
    bool own_strand;
    atomic_uint_fast64_t expiry;        /* written under q->lock */
    struct io_timer_wait *waits;        /* q->lock: pending, in start order */
    struct io_timer_wait *last_wait;    /* q->lock: the list's tail */
    atomic_uint refs;
    struct io_member member;            /* ctx->lock: in ctx->members */
};

/* One async_wait, from its start until its handler has returned. */
struct io_timer_wait {
    struct io_task task;                /* its completion, on the strand */
    struct io_timer_entry entry;        /* in the heap while pending */
    struct io_timer_wait *prev, *next;  /* q->lock: the timer's pending waits */
    io_timer *timer;
    io_wait_handler handler;
    void *arg;
    io_cancel_signal *cancel;           /* q->lock */
    int error;
};

static const struct io_task_type completion_type;
static const struct io_timer_entry_type entry_type;
static const struct io_cancel_owner_ops cancel_owner_ops;
static const struct io_member_type member_type;

static struct io_timer_queue *queue_of(const io_timer *t)
{
    return &t->ctx->workers.timers;
}

uint64_t io_clock_now(void)
{
    return io__clock_now();
}

int io_timer_create(io_context *ctx, io_strand *strand, io_timer **out)
{
    io_timer *t;
    int err;

    if (ctx == NULL || out == NULL || (strand != NULL && strand->ctx != ctx))
        return EINVAL;
    t = io__alloc(sizeof(*t));
    if (t == NULL)
        return ENOMEM;
    *t = (io_timer){ .ctx = ctx, .strand = strand, .own_strand = strand == NULL };
    atomic_init(&t->expiry, 0);
    atomic_init(&t->refs, 1);
    if (strand != NULL) {
        io__strand_retain(strand);
    } else if ((err = io_strand_create(ctx, &t->strand)) != 0) {
        io__free(t);
        return err;
    }
    io__context_adopt(ctx, &t->member, &member_type);
    *out = t;
    return 0;
}

/* Its handle and every wait are gone. */
static void free_timer(io_timer *t)
{
    io__context_forget(t->ctx, &t->member);
    if (t->own_strand)
        io_strand_destroy(t->strand);
    else
        io__strand_release(t->strand);
    io__free(t);
}

static void release_refs(io_timer *t, unsigned n)
{
    if (atomic_fetch_sub(&t->refs, n) == n)
        free_timer(t);
}

/* Ends a pending wait with error and hands it to the strand.  Called with
 * q->lock held; w may already be out of the heap (expiry took it). */
static void end_wait_locked(struct io_timer_queue *q, struct io_timer_wait *w, int error)
{
    io_timer *t = w->timer;
    struct io_task_queue one = IO_TASK_QUEUE_INIT;

    io__timer_queue_remove_locked(q, &w->entry);
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        t->waits = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    else
        t->last_wait = w->prev;
    if (w->cancel != NULL) {
        io__cancel_signal_detach(w->cancel);
        w->cancel = NULL;
    }
    w->error = error;
    io_task_queue_push(&one, &w->task);
    io__strand_push_completions(t->strand, &one, NULL);
    /* After the push: the strand's own unit of work keeps the count up. */
    io__context_finish_work(t->ctx, 1);
}

/* Ends every pending wait of t with ECANCELED; returns how many. */
static size_t cancel_all_locked(io_timer *t)
{
    struct io_timer_queue *q = queue_of(t);
    size_t n = 0;

    while (t->waits != NULL) {
        end_wait_locked(q, t->waits, ECANCELED);
        n++;
    }
    return n;
}

size_t io_timer_expires_at(io_timer *t, uint64_t expiry_ns)
{
    size_t n;

    if (t == NULL)
        return 0;
    pthread_mutex_lock(&queue_of(t)->lock);
    n = cancel_all_locked(t);
    atomic_store(&t->expiry, expiry_ns);
    pthread_mutex_unlock(&queue_of(t)->lock);
    return n;
}

size_t io_timer_expires_after(io_timer *t, uint64_t delay_ns)
{
    uint64_t now = io__clock_now();

    return io_timer_expires_at(t, delay_ns > UINT64_MAX - now ? UINT64_MAX : now + delay_ns);
}

uint64_t io_timer_expiry(const io_timer *t)
{
    return t != NULL ? atomic_load(&((io_timer *)t)->expiry) : 0;
}

size_t io_timer_cancel(io_timer *t)
{
    size_t n;

    if (t == NULL)
        return 0;
    pthread_mutex_lock(&queue_of(t)->lock);
    n = cancel_all_locked(t);
    pthread_mutex_unlock(&queue_of(t)->lock);
    return n;
}

void io_timer_destroy(io_timer *t)
{
    if (t == NULL)
        return;
    (void)io_timer_cancel(t);
    release_refs(t, 1);
}

int io_timer_async_wait(io_timer *t, io_wait_handler handler, void *arg,
                        io_cancel_signal *cancel)
{
    struct io_timer_queue *q;
    struct io_timer_wait *w;
    bool at_once, reserved, earliest = false;

    if (t == NULL || handler == NULL)
        return EINVAL;
    q = queue_of(t);

    /* A block and the heap's room, taken before anything else so that
     * inserting cannot fail later: in the lock already when the queue has
     * them (one lock round trip per start), else allocated and reserved
     * with the lock released. */
    pthread_mutex_lock(&q->lock);
    w = io__timer_queue_take_spare_locked(q);
    reserved = io__timer_queue_try_reserve_locked(q);
    if (w == NULL || !reserved) {
        pthread_mutex_unlock(&q->lock);
        if (w == NULL && (w = io__alloc(sizeof(*w))) == NULL) {
            if (reserved)
                io__timer_queue_unreserve(q, 1, NULL);
            return ENOMEM;
        }
        if (!reserved && io__timer_queue_reserve(q, 1) != 0) {
            io__free(w);
            return ENOMEM;
        }
        pthread_mutex_lock(&q->lock);
    }
    *w = (struct io_timer_wait){
        .task = { NULL, &completion_type },
        .timer = t,
        .handler = handler,
        .arg = arg,
    };
    io__timer_entry_init(&w->entry, &entry_type);
    /* While the context shuts down, the workers watch no clock: the wait
     * is cancelled at once (still through the strand). */
    at_once = atomic_load(&t->ctx->shutting_down);
    if (cancel != NULL && (at_once ? io__cancel_signal_is_busy(cancel)
                                   : io__cancel_signal_attach(cancel, (struct io_cancel_attachment){
                                       &cancel_owner_ops, t, w }) != 0)) {
        pthread_mutex_unlock(&q->lock);
        io__timer_queue_unreserve(q, 1, NULL);
        io__free(w);
        return EBUSY;
    }
    atomic_fetch_add(&t->refs, 1);
    io__context_add_work(t->ctx, 1);
    w->prev = t->last_wait;
    if (w->prev != NULL)
        w->prev->next = w;
    else
        t->waits = w;
    t->last_wait = w;
    if (at_once) {
        end_wait_locked(q, w, ECANCELED);
    } else {
        w->cancel = cancel;
        earliest = io__timer_queue_insert_locked(q, &w->entry, atomic_load(&t->expiry));
    }
    pthread_mutex_unlock(&q->lock);
    if (earliest)
        io__workers_timers_changed(&t->ctx->workers);
    return 0;
}

/* A worker found the wait due (struct io_timer_entry_type); q->lock held. */
static void expired_locked(struct io_timer_entry *e, struct io_task_queue *later)
{
    struct io_timer_wait *w = io_container_of(e, struct io_timer_wait, entry);

    (void)later;
    end_wait_locked(&w->timer->ctx->workers.timers, w, 0);
}

static const struct io_timer_entry_type entry_type = { expired_locked, true };

/* A finished wait on its strand (struct io_task_type). */
static size_t run_completion(struct io_task *task, struct io_run *run)
{
    struct io_timer_wait *w = io_container_of(task, struct io_timer_wait, task);

    (void)run;
    w->handler(w->arg, w->error);
    return 1;
}

/* The handlers have returned: the waits give back their heap room, their
 * blocks and their references, all of one context (one strand's batch). */
static void recycle_completions(struct io_task_queue *ended)
{
    struct io_timer_queue *q =
        queue_of(io_container_of(ended->head, struct io_timer_wait, task)->timer);
    struct io_timer_spare *spares = NULL;
    size_t n = 0;
    struct io_task *task;

    while ((task = io_task_queue_pop(ended)) != NULL) {
        struct io_timer_wait *w = io_container_of(task, struct io_timer_wait, task);
        io_timer *t = w->timer;
        struct io_timer_spare *block = (struct io_timer_spare *)(void *)w;

        block->next = spares;
        spares = block;
        release_refs(t, 1);
        n++;
    }
    io__timer_queue_unreserve(q, n, spares);
}

static const struct io_task_type completion_type = { run_completion, recycle_completions };

/* The cancel signal's view of the timer (struct io_cancel_owner_ops). */
static void pin(void *owner)
{
    atomic_fetch_add(&((io_timer *)owner)->refs, 1);
}

static void unpin(void *owner)
{
    release_refs(owner, 1);
}

/* Any type cancels a pending wait; 0 only lets the signal go. */
static void emit(void *owner, io_cancel_signal *sig, unsigned type)
{
    io_timer *t = owner;
    struct io_timer_queue *q = queue_of(t);
    struct io_timer_wait *w;

    if (type != 0 && (type & (IO_CANCEL_TERMINAL | IO_CANCEL_PARTIAL | IO_CANCEL_TOTAL)) == 0)
        return;
    pthread_mutex_lock(&q->lock);
    /* Looked up again under q->lock: the wait may have ended since. */
    w = io__cancel_signal_op(sig, t);
    if (w != NULL && type == 0) {
        io__cancel_signal_detach(sig);
        w->cancel = NULL;
    } else if (w != NULL) {
        end_wait_locked(q, w, ECANCELED);
    }
    pthread_mutex_unlock(&q->lock);
}

static const struct io_cancel_owner_ops cancel_owner_ops = { pin, unpin, emit };

/* Context destroy, with the workers stopped: the pending waits end. */
static void shut_down(struct io_member *m)
{
    (void)io_timer_cancel(io_container_of(m, io_timer, member));
}

/* Context destroy frees every member in one walk, the strand too. */
static void free_member(struct io_member *m)
{
    io__free(io_container_of(m, io_timer, member));
}

static const struct io_member_type member_type = { shut_down, free_member };
