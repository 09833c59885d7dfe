/*
 * descriptor.c - io_descriptor: its life (create, close, release,
 * destroy, and its part in context shutdown), starting writes, and the
 * glue that lets the workers, the strands and cancel signals reach it.
 * The queue of writes and their states are op_queue.c's; what a worker
 * does in its turn is write_turn.c's.
 *
 * Data and locking:
 *   d->lock guards the op queue (op_queue.c), d->scheduled, d->detaching
 *   and d->released.  d->watch.fd is read by the worker that holds d and
 *   written only by the thread that takes the fd away (close, release,
 *   context shutdown), once the workers have let go and d is closed.  d->public_fd,
 *   d->queued_bytes and d->refs are atomics, read without it.  Lock order:
 *   d->lock, then the strand's lock, then ctx->lock (op_queue.c hands
 *   finished ops over with d->lock held); d->lock, then a cancel signal's
 *   lock.  Nothing takes them the other way round: handlers run with no
 *   lock held.
 *
 * Who may touch the fd:
 *   While d->scheduled is true the workers hold the descriptor (its watch
 *   is on their ready queue, in the poller, or in one worker's turn) and
 *   only that worker calls writev on d->watch.fd.  The fd is closed, or
 *   handed back by release, only while d->scheduled is false: close and
 *   release of a scheduled descriptor set d->detaching and wait until the
 *   workers let go (a turn under way ends at once; a parked watch is taken
 *   out of the poller), so that a number the kernel may reuse at once for
 *   another file is never written by us again, and the fd is closed when
 *   close returns.
 *
 * References (d->refs): the user's handle, one per op from start until
 * its handler has returned, and one while scheduled.  The last one frees d, which may happen on a
 * run thread after a handler, or on a worker.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static void release_refs(io_descriptor *d, unsigned n);
static void free_send_timeout(io_descriptor *d, struct io_send_timeout *st);
static int top_up_events_locked(io_descriptor *d, size_t want, bool setting,
                                struct io_task_queue *spare);
static void free_events(struct io_task_queue *events);
static void own_strand_last_ref(io_strand *s);
static void let_go_locked(io_descriptor *d);
static void turn(struct io_watch *w, struct iovec *scratch);
static const struct io_task_type completion_type;
static const struct io_cancel_owner_ops cancel_owner_ops;
static const struct io_member_type member_type;

static struct io_write_op *op_of(struct io_task *t)
{
    return io_container_of(t, struct io_write_op, task);
}

static enum io_fd_kind kind_of(const struct stat *st, int fd)
{
    if (S_ISSOCK(st->st_mode)) {
        int type = SOCK_STREAM;
        socklen_t len = sizeof(type);

        (void)getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len);
        return type == SOCK_STREAM ? IO_FD_SOCKET : IO_FD_MESSAGE_SOCKET;
    }
    if (S_ISFIFO(st->st_mode))
        return IO_FD_PIPE;
    if (S_ISREG(st->st_mode))
        return IO_FD_FILE;
    if (S_ISCHR(st->st_mode))
        return isatty(fd) ? IO_FD_TTY : IO_FD_CHAR;
    return IO_FD_OTHER;
}

int io_descriptor_create(io_context *ctx, int fd, io_strand *strand, io_descriptor **out)
{
    io_descriptor *d;
    struct stat st;
    int flags, err;

    if (ctx == NULL || out == NULL || (strand != NULL && strand->ctx != ctx))
        return EINVAL;
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fstat(fd, &st) != 0)
        return errno;
    /* Nothing could ever be written: say so now, not in every handler. */
    if ((flags & O_ACCMODE) == O_RDONLY || S_ISDIR(st.st_mode))
        return EBADF;
    /* Two descriptors on one fd would be two owners and two closes. */
    err = io__context_claim_fd(ctx, fd);
    if (err != 0)
        return err;
    d = io__alloc(sizeof(*d));
    if (d == NULL) {
        io__context_unclaim_fd(ctx, fd);
        return ENOMEM;
    }
    *d = (io_descriptor){
        .watch = { .fd = fd, .turn = turn },
        .strand = strand,
        .ops = IO_TASK_QUEUE_INIT,
        .saved_flags = flags,
        .kind = kind_of(&st, fd),
    };
    atomic_init(&d->watch.urgent, false);
    /* Only sockets, pipes and ttys honour O_NONBLOCK: a write to a file
     * or a device may sleep in the kernel. */
    atomic_init(&d->watch.may_block, d->kind == IO_FD_FILE || d->kind == IO_FD_CHAR
                                         || d->kind == IO_FD_OTHER);
    atomic_init(&d->public_fd, fd);
    atomic_init(&d->queued_bytes, 0);
    atomic_init(&d->refs, 1);
    err = pthread_mutex_init(&d->lock, NULL);
    if (err != 0)
        goto out_free;
    /* Last, so that a failure above leaves the fd as it was.  Skips the
     * system call when the flag is already set. */
    if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        err = errno;
        goto out_destroy_lock;
    }
    if (strand != NULL) {
        io__strand_retain(strand);
    } else {
        io__strand_init_private(&d->own_strand, ctx, &d->lock, &d->refs, own_strand_last_ref);
        d->strand = &d->own_strand;
    }
    io__context_adopt(ctx, &d->member, &member_type);
    *out = d;
    return 0;

out_destroy_lock:
    pthread_mutex_destroy(&d->lock);
out_free:
    io__free(d);
    io__context_unclaim_fd(ctx, fd);
    return err;
}

int io_descriptor_native_handle(const io_descriptor *d)
{
    return d != NULL ? atomic_load(&((io_descriptor *)d)->public_fd) : -1;
}

bool io_descriptor_is_open(const io_descriptor *d)
{
    return io_descriptor_native_handle(d) >= 0;
}

size_t io_descriptor_queued_bytes(const io_descriptor *d)
{
    return d != NULL ? atomic_load(&((io_descriptor *)d)->queued_bytes) : 0;
}

/* Frees d as it is (its private strand with it), but for a user strand.
 * Only a descriptor created while its context shut down can still hold an
 * fd here; it goes with it. */
static void free_descriptor(io_descriptor *d)
{
    if (d->watch.fd >= 0 && atomic_load(&d->public_fd) >= 0)
        close(d->watch.fd);
    if (d->send_timeout != NULL)
        free_send_timeout(d, d->send_timeout);
    if (d->watermarks != NULL) {
        free_events(&d->watermarks->spare);
        io__free(d->watermarks);
    }
    pthread_mutex_destroy(&d->lock);
    io__free(d);
}

/* Nothing refers to d any more: the user destroyed it, its ops' handlers
 * have run and neither the workers nor its private strand hold it. */
static void last_ref(io_descriptor *d)
{
    io_strand *strand = d->strand;
    bool own = strand == &d->own_strand;

    io__context_forget(strand->ctx, &d->member);
    free_descriptor(d);
    if (!own)
        io__strand_release(strand);
}

/* The private strand shares d's count: its last reference is d's. */
static void own_strand_last_ref(io_strand *s)
{
    last_ref(io_container_of(s, io_descriptor, own_strand));
}

/* Drops n references at once; the last one frees d. */
static void release_refs(io_descriptor *d, unsigned n)
{
    if (atomic_fetch_sub(&d->refs, n) == n)
        last_ref(d);
}

/* ------------------------------------------------------------------ */
/* starting a write                                                    */
/* ------------------------------------------------------------------ */

/* Whether a new op ends at once, in the initiating call (still through
 * the strand, never inside the call), and with which error: ECANCELED
 * while the context shuts down (it aborts the op, even though shutdown
 * has closed the descriptor too), EBADF on a closed descriptor, EPIPE
 * once an async_shutdown has run, 0 with nothing to write and nothing
 * queued before it (no system call). */
static bool ends_at_once_locked(io_descriptor *d, const struct io_write_op *op, int *error)
{
    if (atomic_load(&io__descriptor_ctx(d)->shutting_down))
        *error = ECANCELED;
    else if (atomic_load(&d->public_fd) < 0)
        *error = EBADF;
    else if (d->write_shut)
        *error = EPIPE;     /* after a shutdown ran: no system call */
    else if (op->total == 0 && op->kind != IO_OP_SHUTDOWN && io_task_queue_is_empty(&d->ops))
        *error = 0;
    else
        return false;
    return true;
}

/* Returns an op for count buffers, filled, with d->lock held; NULL (out
 * of memory) with it not held. */
static struct io_write_op *take_op(io_descriptor *d, const struct iovec *bufs, size_t count,
                                   size_t total, enum io_op_kind kind, io_write_handler handler,
                                   void *arg)
{
    struct io_write_op *op = io__write_op_take(&io__descriptor_ctx(d)->op_cache, count);

    if (op == NULL)
        return NULL;
    io__write_op_init(op, bufs, count, total, kind, handler, arg);
    op->task.type = &completion_type;
    op->d = d;
    pthread_mutex_lock(&d->lock);
    return op;
}

/* Gives back an op that was never started.  d->lock held. */
static void discard_op_locked(io_descriptor *d, struct io_write_op *op)
{
    struct io_task_queue one = IO_TASK_QUEUE_INIT;

    pthread_mutex_unlock(&d->lock);
    io_task_queue_push(&one, &op->task);
    io__write_ops_give_back(&io__descriptor_ctx(d)->op_cache, &one);
}

/*
 * The common part of every initiating call: op is filled and d->lock
 * held.  Attaches cancel, counts the op as started and as work, and ends
 * it at once or queues it, scheduling d with the workers if they do not
 * hold it.  Releases d->lock.  Returns 0 or EBUSY (then no trace).
 */
static int start_op(io_descriptor *d, struct io_write_op *op, io_cancel_signal *cancel)
{
    struct io_task_queue done = IO_TASK_QUEUE_INIT, spare = IO_TASK_QUEUE_INIT;
    bool schedule = false, at_once;
    int error = 0;

    /* Nodes for the "above" this op may cause and the "below" after it,
     * taken now: the events themselves must never fail. */
    if (top_up_events_locked(d, 2, false, &spare) != 0) {
        discard_op_locked(d, op);
        return ENOMEM;
    }
    at_once = ends_at_once_locked(d, op, &error);
    /* A signal still attached to a pending op refuses a second one, and
     * the refused call leaves no trace. */
    if (cancel != NULL && (at_once ? io__cancel_signal_is_busy(cancel)
                                   : io__cancel_signal_attach(cancel, (struct io_cancel_attachment){
                                       &cancel_owner_ops, d, op }) != 0)) {
        discard_op_locked(d, op);
        return EBUSY;
    }
    atomic_fetch_add(&d->refs, 1);
    atomic_fetch_add_explicit(&io__descriptor_ctx(d)->stats.ops_started, 1, memory_order_relaxed);
    io__context_add_work(io__descriptor_ctx(d), 1);
    if (at_once) {
        io__op_queue_end_at_once_locked(d, op, error, &done);
    } else {
        op->cancel = cancel;
        if (io__op_queue_push_locked(d, op))
            io__send_timeout_started_locked(d);
        if (!d->scheduled) {
            d->scheduled = true;
            atomic_fetch_add(&d->refs, 1);
            schedule = true;
        }
    }
    io__op_queue_hand_over_locked(d, &done);
    pthread_mutex_unlock(&d->lock);
    free_events(&spare);

    if (schedule)
        io__workers_schedule(&io__descriptor_ctx(d)->workers, &d->watch);
    return 0;
}

static int start_write(io_descriptor *d, const struct iovec *bufs, size_t count,
                       enum io_op_kind kind, io_write_handler handler, void *arg,
                       io_cancel_signal *cancel)
{
    struct io_write_op *op;
    size_t total;

    if (d == NULL || handler == NULL || (bufs == NULL && count > 0)
        || !io__iovs_total(bufs, count, &total))
        return EINVAL;
    op = take_op(d, bufs, count, total, kind, handler, arg);
    if (op == NULL)
        return ENOMEM;
    return start_op(d, op, cancel);
}

int io_descriptor_async_write_some(io_descriptor *d, const struct iovec *bufs, size_t count,
                                   io_write_handler handler, void *arg,
                                   io_cancel_signal *cancel)
{
    return start_write(d, bufs, count, IO_OP_WRITE_SOME, handler, arg, cancel);
}

int io_descriptor_async_write(io_descriptor *d, const struct iovec *bufs, size_t count,
                              io_write_handler handler, void *arg,
                              io_cancel_signal *cancel)
{
    return start_write(d, bufs, count, IO_OP_WRITE, handler, arg, cancel);
}

/* NOLINTNEXTLINE(bugprone-easily-swappable-parameters): the public signature */
int io_descriptor_async_sendfile(io_descriptor *d, int in_fd, uint64_t offset, size_t count,
                                 io_write_handler handler, void *arg, io_cancel_signal *cancel)
{
    struct io_write_op *op;
    int flags;

    if (d == NULL || handler == NULL || offset > INT64_MAX || count > SSIZE_MAX)
        return EINVAL;
    /* The file must be readable now, count 0 too: a bad fd is the
     * caller's mistake, not something the handler should learn. */
    flags = fcntl(in_fd, F_GETFL);
    if (flags < 0 || (flags & O_ACCMODE) == O_WRONLY)
        return EBADF;
    op = take_op(d, NULL, 0, count, IO_OP_SENDFILE, handler, arg);
    if (op == NULL)
        return ENOMEM;
    op->in_fd = in_fd;
    op->offset = offset;
    /* Its turns read the file, which may wait for the disk; from now on
     * the descriptor's turns count as ones that may block. */
    atomic_store_explicit(&d->watch.may_block, true, memory_order_relaxed);
    return start_op(d, op, cancel);
}

int io_descriptor_async_shutdown(io_descriptor *d, io_wait_handler handler, void *arg)
{
    struct io_write_op *op;

    if (d == NULL || handler == NULL)
        return EINVAL;
    op = take_op(d, NULL, 0, 0, IO_OP_SHUTDOWN, NULL, arg);
    if (op == NULL)
        return ENOMEM;
    op->handler.wait = handler;
    return start_op(d, op, NULL);
}

/* ------------------------------------------------------------------ */
/* water marks                                                         */
/* ------------------------------------------------------------------ */

static const struct io_task_type watermark_event_type;

static void free_events(struct io_task_queue *events)
{
    struct io_task *t;

    while ((t = io_task_queue_pop(events)) != NULL)
        io__free(io_container_of(t, struct io_watermark_event, task));
}

/*
 * Makes sure the water-mark pool holds want event nodes, allocating with
 * d->lock released (it is held again on return, either way).  Returns 0
 * or ENOMEM.  Nodes the pool had no room for by then go to spare, to be
 * freed once d->lock is released.
 */
static int top_up_events_locked(io_descriptor *d, size_t want, bool setting,
                                struct io_task_queue *spare)
{
    size_t missing;

    /* Counted again after each allocation: while d->lock was released a
     * worker's events may have taken nodes from the pool. */
    while ((missing = io__watermarks_missing_nodes_locked(d, want, setting)) > 0) {
        struct io_task_queue fresh = IO_TASK_QUEUE_INIT;

        pthread_mutex_unlock(&d->lock);
        for (; missing > 0; missing--) {
            struct io_watermark_event *e = io__alloc(sizeof(*e));

            if (e == NULL) {
                free_events(&fresh);
                pthread_mutex_lock(&d->lock);
                return ENOMEM;
            }
            *e = (struct io_watermark_event){ .task = { NULL, &watermark_event_type }, .d = d };
            io_task_queue_push(&fresh, &e->task);
        }
        pthread_mutex_lock(&d->lock);
        io__watermarks_add_nodes_locked(d, &fresh);
        io_task_queue_splice(spare, &fresh);
    }
    return 0;
}

/* NOLINTNEXTLINE(bugprone-easily-swappable-parameters): the public signature */
int io_descriptor_set_watermarks(io_descriptor *d, size_t low, size_t high,
                                 io_watermark_handler handler, void *arg)
{
    struct io_task_queue done = IO_TASK_QUEUE_INIT, spare = IO_TASK_QUEUE_INIT;
    struct io_task_queue below = IO_TASK_QUEUE_INIT;
    struct io_watermarks *fresh = NULL;
    int err = 0;

    if (d == NULL || (handler != NULL && low >= high))
        return EINVAL;
    pthread_mutex_lock(&d->lock);
    /* The state is allocated once, by the first call that sets marks,
     * with d->lock released meanwhile. */
    if (handler != NULL && d->watermarks == NULL) {
        pthread_mutex_unlock(&d->lock);
        fresh = io__alloc(sizeof(*fresh));
        if (fresh == NULL)
            return ENOMEM;
        pthread_mutex_lock(&d->lock);
    }
    if (atomic_load(&d->public_fd) < 0) {
        err = EBADF;
    } else if (d->watermarks != NULL || fresh != NULL) {
        if (d->watermarks == NULL && fresh != NULL) {
            *fresh = (struct io_watermarks){ .spare = IO_TASK_QUEUE_INIT };
            d->watermarks = fresh;
            fresh = NULL;
        }
        /* Nodes for a "below" now, an "above" at once and the "below"
         * after it. */
        if (top_up_events_locked(d, 3, true, &spare) != 0) {
            err = ENOMEM;
        } else {
            /* The "below" owed to the old handler goes first, on its own
             * (it ends no op); the hand-over then checks the new marks. */
            io__watermarks_set_locked(d, low, high, handler, arg, &below);
            if (!io_task_queue_is_empty(&below))
                io__strand_push_completions(d->strand, &below, &d->lock);
            io__op_queue_hand_over_locked(d, &done);
        }
    }
    pthread_mutex_unlock(&d->lock);
    free_events(&spare);
    io__free(fresh);
    return err;
}

/* A water-mark event on its strand (struct io_task_type). */
static size_t run_watermark_event(struct io_task *t, struct io_run *run)
{
    struct io_watermark_event *e = io_container_of(t, struct io_watermark_event, task);

    (void)run;
    e->handler(e->arg, e->above, e->queued);
    return 1;
}

/* Back to the pool of their descriptor, or to the allocator when it is
 * full; then the reference each held. */
static void recycle_watermark_events(struct io_task_queue *ended)
{
    struct io_task *t;

    while ((t = io_task_queue_pop(ended)) != NULL) {
        io_descriptor *d = io_container_of(t, struct io_watermark_event, task)->d;
        struct io_task_queue one = IO_TASK_QUEUE_INIT;

        io_task_queue_push(&one, t);
        pthread_mutex_lock(&d->lock);
        io__watermarks_add_nodes_locked(d, &one);
        pthread_mutex_unlock(&d->lock);
        free_events(&one);
        release_refs(d, 1);
    }
}

static const struct io_task_type watermark_event_type = { run_watermark_event,
                                                          recycle_watermark_events };

/* ------------------------------------------------------------------ */
/* send timeout                                                        */
/* ------------------------------------------------------------------ */

static const struct io_task_type send_timeout_fire_type;

static void free_send_timeout(io_descriptor *d, struct io_send_timeout *st)
{
    io__timer_queue_unreserve(&io__descriptor_ctx(d)->workers.timers, 1, NULL);
    io__free(st);
}

/* Allocates what a send timeout needs, once: its state and its room in
 * the timer queue's heap, held until d is freed. */
static struct io_send_timeout *new_send_timeout(io_descriptor *d)
{
    struct io_send_timeout *st = io__alloc(sizeof(*st));

    if (st == NULL)
        return NULL;
    if (io__timer_queue_reserve(&io__descriptor_ctx(d)->workers.timers, 1) != 0) {
        io__free(st);
        return NULL;
    }
    *st = (struct io_send_timeout){ .fire = { NULL, &send_timeout_fire_type }, .d = d };
    io__timer_entry_init(&st->entry, &io_send_timeout_entry_type);
    return st;
}

int io_descriptor_set_send_timeout(io_descriptor *d, uint64_t timeout_ns)
{
    struct io_send_timeout *fresh = NULL;

    if (d == NULL)
        return EINVAL;
    pthread_mutex_lock(&d->lock);
    while (d->send_timeout == NULL && timeout_ns > 0 && fresh == NULL) {
        /* The allocator is called with no lock held. */
        pthread_mutex_unlock(&d->lock);
        fresh = new_send_timeout(d);
        if (fresh == NULL)
            return ENOMEM;
        pthread_mutex_lock(&d->lock);
    }
    if (atomic_load(&d->public_fd) < 0) {
        pthread_mutex_unlock(&d->lock);
        if (fresh != NULL)
            free_send_timeout(d, fresh);
        return EBADF;
    }
    if (d->send_timeout == NULL && fresh != NULL) {
        d->send_timeout = fresh;
        fresh = NULL;
    }
    if (d->send_timeout != NULL)
        io__send_timeout_set_locked(d, timeout_ns);
    pthread_mutex_unlock(&d->lock);
    if (fresh != NULL)          /* another call installed one meanwhile */
        free_send_timeout(d, fresh);
    return 0;
}

/* The send timeout's entry fell due (struct io_task_type, run by the
 * worker that found it due, no lock held). */
static size_t fire_send_timeout(struct io_task *t, struct io_run *run)
{
    io_descriptor *d = io_container_of(t, struct io_send_timeout, fire)->d;

    (void)run;
    release_refs(d, io__send_timeout_fired(d));
    return 0;
}

static const struct io_task_type send_timeout_fire_type = { fire_send_timeout, NULL };

/* ------------------------------------------------------------------ */
/* cancel, close, release, destroy                                     */
/* ------------------------------------------------------------------ */

int io_descriptor_cancel(io_descriptor *d)
{
    struct io_task_queue done = IO_TASK_QUEUE_INIT;
    int err = 0;

    if (d == NULL)
        return EINVAL;
    pthread_mutex_lock(&d->lock);
    if (atomic_load(&d->public_fd) < 0)
        err = EBADF;    /* as Asio's cancel on a closed descriptor */
    else
        io__op_queue_cancel_all_locked(d, ECANCELED, &done);
    io__op_queue_hand_over_locked(d, &done);
    pthread_mutex_unlock(&d->lock);
    return err;
}

/*
 * The common part of close and release: the descriptor stops being open
 * at once, its pending ops are cancelled, and when the workers hold it,
 * this waits until their turn on it has ended (an op inside a system call
 * completes when the call returns), so that the fd can be closed or
 * handed back with no worker left to write it.  The wait is short: a
 * worker never waits for a run thread.  Called with d->lock held and the
 * descriptor open; returns with d->lock held and d not scheduled.  The
 * caller holds a reference, since a handler may destroy d meanwhile.
 */
static void detach_locked(io_descriptor *d)
{
    struct io_task_queue done = IO_TASK_QUEUE_INIT;
    pthread_cond_t released;
    bool reclaimed;

    atomic_store(&d->public_fd, -1);
    io__op_queue_cancel_all_locked(d, ECANCELED, &done);
    io__op_queue_hand_over_locked(d, &done);
    if (!d->scheduled)
        return;
    d->detaching = true;
    atomic_store(&d->watch.urgent, true);
    pthread_mutex_unlock(&d->lock);
    /* A descriptor waiting for POLLOUT is taken back from the poller
     * here, in O(1), with no worker involved. */
    reclaimed = io__workers_reclaim(&io__descriptor_ctx(d)->workers, &d->watch);
    pthread_mutex_lock(&d->lock);
    if (reclaimed) {
        let_go_locked(d);
        atomic_fetch_sub(&d->refs, 1);  /* the workers'; the caller holds one */
        return;
    }
    /* On this stack, not in d: only the one detaching thread waits. */
    pthread_cond_init(&released, NULL);
    d->released = &released;
    while (d->scheduled)
        pthread_cond_wait(&released, &d->lock);
    d->released = NULL;
    pthread_cond_destroy(&released);
}

/* Detaches d and takes its fd from it; -1 with errno EBADF when it is
 * already closed or released. */
static int take_fd(io_descriptor *d)
{
    unsigned timeout_refs = 0;
    int fd = -1;

    atomic_fetch_add(&d->refs, 1);
    pthread_mutex_lock(&d->lock);
    if (atomic_load(&d->public_fd) >= 0) {
        detach_locked(d);
        timeout_refs = io__send_timeout_stop_locked(d);
        fd = d->watch.fd;
    }
    pthread_mutex_unlock(&d->lock);
    if (timeout_refs > 0)
        atomic_fetch_sub(&d->refs, timeout_refs);   /* the caller's keeps d */
    if (fd >= 0) {
        io__workers_forget(&io__descriptor_ctx(d)->workers, &d->watch);
        d->watch.fd = -1;
        /* Before the fd can be closed and its number reused. */
        io__context_unclaim_fd(io__descriptor_ctx(d), fd);
    }
    release_refs(d, 1);
    if (fd < 0)
        errno = EBADF;
    return fd;
}

int io_descriptor_close(io_descriptor *d)
{
    int fd;

    if (d == NULL)
        return EINVAL;
    fd = take_fd(d);
    if (fd < 0)
        return EBADF;
    close(fd);      /* on Linux the fd is gone even if close fails */
    return 0;
}

int io_descriptor_release(io_descriptor *d)
{
    int flags, fd;

    if (d == NULL) {
        errno = EINVAL;
        return -1;
    }
    flags = d->saved_flags;     /* read before d may go away */
    fd = take_fd(d);
    /* Restore what create changed: the file status flags it had. */
    if (fd >= 0 && fcntl(fd, F_GETFL) != flags)
        (void)fcntl(fd, F_SETFL, flags);
    return fd;
}

void io_descriptor_destroy(io_descriptor *d)
{
    if (d == NULL)
        return;
    (void)io_descriptor_close(d);   /* EBADF when already closed or released */
    release_refs(d, 1);
}

/* ------------------------------------------------------------------ */
/* what the workers, strands, cancel signals and the context call      */
/* ------------------------------------------------------------------ */

/* The workers no longer hold d: whoever waits for that may go on.  The
 * caller drops the workers' reference.  d->lock held. */
static void let_go_locked(io_descriptor *d)
{
    d->detaching = false;
    atomic_store(&d->watch.urgent, false);
    d->scheduled = false;
    if (d->released != NULL)
        pthread_cond_signal(d->released);
}

/* The kernel refused to watch d's fd (ENOMEM, ENOSPC): the ops that wait
 * for it to become writable end with that error, and the workers let go
 * of d; a write started later tries again. */
static void give_up(io_descriptor *d, int error)
{
    struct io_task_queue done = IO_TASK_QUEUE_INIT;

    pthread_mutex_lock(&d->lock);
    io__op_queue_cancel_all_locked(d, error, &done);
    io__op_queue_hand_over_locked(d, &done);
    let_go_locked(d);
    pthread_mutex_unlock(&d->lock);
    release_refs(d, 1);
}

/* A worker's turn (struct io_watch): write, then hand the descriptor back
 * to the workers or let it go.  d may be freed by the time it returns. */
static void turn(struct io_watch *w, struct iovec *scratch)
{
    io_descriptor *d = io_container_of(w, io_descriptor, watch);
    struct io_task_queue done = IO_TASK_QUEUE_INIT;
    enum io_turn_end end;
    int err;

    /* What this turn finishes goes to the run threads with the next ones'
     * (the worker flushes before it waits). */
    io__context_defer_pushes(io__descriptor_ctx(d));
    pthread_mutex_lock(&d->lock);
    end = io__write_turn_locked(d, scratch, &done);
    if (end == IO_TURN_DETACH) {
        /* A close or release waits for this turn to end: let go, with
         * whatever the last call left cancelled. */
        io__op_queue_cancel_all_locked(d, ECANCELED, &done);
        end = IO_TURN_IDLE;
    }
    io__op_queue_hand_over_locked(d, &done);
    if (end == IO_TURN_IDLE)
        let_go_locked(d);
    pthread_mutex_unlock(&d->lock);

    if (end == IO_TURN_READY) {
        io__workers_schedule(&io__descriptor_ctx(d)->workers, w);
    } else if (end == IO_TURN_PARKED) {
        if ((err = io__workers_park(&io__descriptor_ctx(d)->workers, w)) != 0)
            give_up(d, err);
    } else {
        release_refs(d, 1);
    }
}

/* A finished write on its strand (struct io_task_type). */
static size_t run_completion(struct io_task *t, struct io_run *run)
{
    struct io_write_op *op = op_of(t);

    (void)run;
    if (op->kind == IO_OP_SHUTDOWN)
        op->handler.wait(op->arg, op->error);
    else
        op->handler.write(op->arg, op->error, op->done);
    return 1;
}

/* Drops the references of finished writes to their descriptors, one
 * atomic operation per run of ops of one descriptor (a strand batch mostly
 * has one), and gives the ops back to the context's cache at once. */
static void recycle_completions(struct io_task_queue *ended)
{
    io_context *ctx = io__descriptor_ctx(op_of(ended->head)->d);  /* one for all */
    struct io_task *t = ended->head;

    while (t != NULL) {
        io_descriptor *d = op_of(t)->d;
        unsigned n = 0;

        for (; t != NULL && op_of(t)->d == d; t = t->next)
            n++;
        release_refs(d, n);     /* the ops no longer need d */
    }
    io__write_ops_give_back(&ctx->op_cache, ended);
}

static const struct io_task_type completion_type = { run_completion, recycle_completions };

static void pin(void *owner)
{
    atomic_fetch_add(&((io_descriptor *)owner)->refs, 1);
}

static void unpin(void *owner)
{
    release_refs(owner, 1);
}

static void emit(void *owner, io_cancel_signal *sig, unsigned type)
{
    struct io_task_queue done = IO_TASK_QUEUE_INIT;
    io_descriptor *d = owner;
    struct io_write_op *op;

    pthread_mutex_lock(&d->lock);
    /* Looked up again under d->lock: the op may have completed, and the
     * signal been reused elsewhere, since the signal pinned d. */
    op = io__cancel_signal_op(sig, d);
    if (op != NULL && type == 0) {
        io__cancel_signal_detach(sig);
        op->cancel = NULL;
    } else if (op != NULL) {
        io__op_queue_emit_locked(d, op, type, &done);
        io__op_queue_hand_over_locked(d, &done);
    }
    pthread_mutex_unlock(&d->lock);
}

static const struct io_cancel_owner_ops cancel_owner_ops = { pin, unpin, emit };

/* Context destroy, with the workers stopped: nothing else touches d. */
static void shut_down(struct io_member *m)
{
    io_descriptor *d = io_container_of(m, io_descriptor, member);
    struct io_task_queue done = IO_TASK_QUEUE_INIT;
    bool was_scheduled;
    int fd = -1;

    pthread_mutex_lock(&d->lock);
    io__op_queue_cancel_all_locked(d, ECANCELED, &done);
    if (atomic_load(&d->public_fd) >= 0)
        fd = d->watch.fd;
    atomic_store(&d->public_fd, -1);
    /* Its reference, dropped without freeing, as the workers' below. */
    atomic_fetch_sub(&d->refs, io__send_timeout_stop_locked(d));
    was_scheduled = d->scheduled;
    let_go_locked(d);
    io__op_queue_hand_over_locked(d, &done);
    pthread_mutex_unlock(&d->lock);

    if (fd >= 0) {
        io__workers_forget(&io__descriptor_ctx(d)->workers, &d->watch);
        d->watch.fd = -1;
        close(fd);
    }
    /* The workers' reference, dropped without freeing: the context frees
     * every member once the handlers have run. */
    if (was_scheduled)
        atomic_fetch_sub(&d->refs, 1);
}

static void free_member(struct io_member *m)
{
    free_descriptor(io_container_of(m, io_descriptor, member));
}

static const struct io_member_type member_type = { shut_down, free_member };
