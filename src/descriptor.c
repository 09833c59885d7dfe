/*
 * descriptor.c - io_descriptor: the queue of writes of one fd, a worker's
 * turn on it, and cancel / close / release / destroy.
 *
 * Data and locking:
 *   d->lock guards d->ops (pending writes in start order, and their
 *   progress), d->scheduled, d->detaching and every change of d->os_fd.
 *   d->public_fd, d->queued_bytes and d->refs are atomics, read without it.
 *   Finished ops are handed to the strand with d->lock still held, so that
 *   they reach it in the order d->lock saw them (rule 10); hence the lock
 *   order d->lock, then the strand's lock, then ctx->lock, and d->lock
 *   then a cancel signal's lock.  No path takes them the other way round:
 *   handlers run with no lock held.
 *
 * Who may touch the fd:
 *   While d->scheduled is true the workers hold the descriptor (it is on
 *   their ready or parked queue, or one worker is in its turn) and only
 *   that worker calls writev on d->os_fd, without d->lock, on the ops it
 *   marked in_flight.  The fd is closed, or handed back by release, only
 *   while d->scheduled is false: close and release of a scheduled
 *   descriptor set d->detaching and wait until the workers let go (their
 *   turn ends at once; a parked descriptor is not polled again), so a
 *   number the kernel may reuse at once is never written by us again
 *   (DESIGN.md, hard part 1), and the fd is closed when close returns.
 *
 * Every op ends exactly once: it leaves d->ops under d->lock, by the
 * worker (written, or failed), by cancel/close/release, by an emit of its
 * cancel signal, or by shutdown.
 * An op in a worker's system call is never taken out by another thread:
 * cancel marks it, and the worker completes it when the call returns.
 *
 * References (d->refs): the user's handle, one per op from start until
 * its handler has returned and the op is back in d's cache (or freed),
 * and one while scheduled.  The last one frees d, which may happen on a
 * run thread after a handler, or on a worker.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* One turn writes at most this much, then the descriptor goes to the back
 * of the ready queue, so a huge write cannot starve the others. */
#define IO_TURN_BYTES_MAX ((size_t)1 << 20)

static struct io_write_op *op_of(struct io_task *t)
{
    return io_container_of(t, struct io_write_op, task);
}

static enum io_fd_kind kind_of(const struct stat *st, int fd)
{
    if (S_ISSOCK(st->st_mode))
        return IO_FD_SOCKET;
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

    if (ctx == NULL || out == NULL)
        return EINVAL;
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fstat(fd, &st) != 0)
        return errno;
    d = io__alloc(sizeof(*d));
    if (d == NULL)
        return ENOMEM;
    *d = (io_descriptor){
        .worker_link = { NULL, IO_TASK_DESCRIPTOR },
        .ctx = ctx,
        .strand = strand,
        .ops = IO_TASK_QUEUE_INIT,
        .spare_ops = IO_TASK_QUEUE_INIT,
        .os_fd = fd,
        .saved_flags = flags,
        .kind = kind_of(&st, fd),
    };
    atomic_init(&d->public_fd, fd);
    atomic_init(&d->detach_pending, false);
    atomic_init(&d->queued_bytes, 0);
    atomic_init(&d->refs, 1);
    if (strand != NULL)
        io__strand_retain(strand);
    else if ((err = io_strand_create(ctx, &d->strand)) != 0)
        goto out_free;
    err = pthread_mutex_init(&d->lock, NULL);
    if (err != 0)
        goto out_release_strand;
    err = pthread_cond_init(&d->released_cond, NULL);
    if (err != 0)
        goto out_destroy_lock;
    /* Last, so that a failure above leaves the fd as it was.  Skips the
     * system call when the flag is already set. */
    if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        err = errno;
        goto out_destroy_cond;
    }
    io__context_adopt(ctx, &ctx->descriptors, &d->member);
    *out = d;
    return 0;

out_destroy_cond:
    pthread_cond_destroy(&d->released_cond);
out_destroy_lock:
    pthread_mutex_destroy(&d->lock);
out_release_strand:
    io__strand_release(d->strand);
out_free:
    io__free(d);
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

void io__descriptor_retain(io_descriptor *d)
{
    atomic_fetch_add(&d->refs, 1);
}

static void release_refs(io_descriptor *d, unsigned n);

void io__descriptor_release_ref(io_descriptor *d)
{
    release_refs(d, 1);
}

void io__descriptor_free(io_descriptor *d)
{
    /* Only a descriptor created while its context shut down can still
     * hold an fd here; rule 17 closes it. */
    if (d->os_fd >= 0 && atomic_load(&d->public_fd) >= 0)
        close(d->os_fd);
    while (!io_task_queue_is_empty(&d->spare_ops))
        io__write_op_free(op_of(io_task_queue_pop(&d->spare_ops)));
    pthread_cond_destroy(&d->released_cond);
    pthread_mutex_destroy(&d->lock);
    io__strand_release(d->strand);
    io__free(d);
}

/* Takes op out of d->ops (prev is the op before it, or NULL at the head)
 * and records its result.  Called with d->lock held. */
static void complete_locked(io_descriptor *d, struct io_task *prev, struct io_write_op *op,
                            int error, struct io_task_queue *done)
{
    struct io_task *t = &op->task;

    if (prev == NULL)
        d->ops.head = t->next;
    else
        prev->next = t->next;
    if (d->ops.tail == t)
        d->ops.tail = prev;
    atomic_fetch_sub(&d->queued_bytes, op->total - op->done);
    op->error = error;
    op->in_flight = false;
    if (op->cancel != NULL) {
        /* Rule 18: free for reuse once the op is complete, already inside
         * its handler. */
        io__cancel_signal_detach(op->cancel);
        op->cancel = NULL;
    }
    io_task_queue_push(done, t);
}

/* Cancels every pending op that no system call holds; marks the others so
 * that the worker cancels them when their call returns.  Called with
 * d->lock held. */
static void cancel_pending_locked(io_descriptor *d, struct io_task_queue *done)
{
    struct io_task *prev = NULL, *t = d->ops.head, *next;

    for (; t != NULL; t = next) {
        struct io_write_op *op = op_of(t);

        next = t->next;
        if (op->in_flight) {
            op->cancel_requested = true;
            prev = t;
        } else {
            complete_locked(d, prev, op, ECANCELED, done);
        }
    }
}

/* Completes the ops that a cancel marked while they were in a system
 * call: all of them, or (IO_CANCEL_TOTAL) those the call wrote nothing
 * of.  Called with d->lock held, after the call's bytes were accounted. */
static void cancel_requested_locked(io_descriptor *d, struct io_task_queue *done)
{
    struct io_task *prev = NULL, *t = d->ops.head, *next;

    for (; t != NULL; t = next) {
        struct io_write_op *op = op_of(t);

        next = t->next;
        if (op->cancel_requested || (op->cancel_if_untouched && op->done == 0)) {
            complete_locked(d, prev, op, ECANCELED, done);
        } else {
            op->cancel_if_untouched = false;
            prev = t;
        }
    }
}

/* Takes op, wherever it is in the queue, out with ECANCELED; the others
 * keep their order (rule 10).  Called with d->lock held. */
static void cancel_one_locked(io_descriptor *d, struct io_write_op *op, struct io_task_queue *done)
{
    struct io_task *prev = NULL;

    for (struct io_task *t = d->ops.head; t != &op->task; t = t->next)
        prev = t;
    complete_locked(d, prev, op, ECANCELED, done);
}

/*
 * Rule 19.  async_write_some: any type cancels it while none of its bytes
 * is in a system call; after that, emit has no effect.  async_write:
 * TERMINAL or PARTIAL stop it before its next system call (the worker
 * finishes the one under way and reports the bytes so far); TOTAL only
 * while no byte has been written.  Called with d->lock held and op one of
 * d's pending ops.
 */
static void emit_locked(io_descriptor *d, struct io_write_op *op, unsigned type,
                        struct io_task_queue *done)
{
    bool terminal = (type & (IO_CANCEL_TERMINAL | IO_CANCEL_PARTIAL)) != 0;
    bool total = (type & IO_CANCEL_TOTAL) != 0;

    if (!op->write_all) {
        if ((terminal || total) && !op->in_flight)
            cancel_one_locked(d, op, done);
    } else if (terminal) {
        if (op->in_flight)
            op->cancel_requested = true;
        else
            cancel_one_locked(d, op, done);
    } else if (total && op->done == 0) {
        if (op->in_flight)
            op->cancel_if_untouched = true;
        else
            cancel_one_locked(d, op, done);
    }
}


/*
 * Hands finished ops to the descriptor's strand.  Called with d->lock
 * held, so that completions reach the strand in the order d->lock saw
 * them: handed over after unlocking, a worker's completions could be
 * overtaken by those of the next worker's turn (rule 10).  Their pending
 * units of work end once the strand holds them (it counts as work itself).
 */
static void hand_over_locked(io_descriptor *d, struct io_task_queue *done, bool counted_as_work)
{
    size_t n = 0;

    for (struct io_task *t = done->head; t != NULL; t = t->next)
        n++;
    if (n == 0)
        return;
    io__strand_push_completions(d->strand, done);
    atomic_fetch_add_explicit(&d->ctx->stats.ops_completed, n, memory_order_relaxed);
    if (counted_as_work)
        io__context_finish_work(d->ctx, n);
}

void io__descriptor_emit(io_descriptor *d, io_cancel_signal *sig, unsigned type)
{
    struct io_task_queue done = IO_TASK_QUEUE_INIT;
    struct io_write_op *op;

    pthread_mutex_lock(&d->lock);
    /* Looked up again under d->lock: the op may have completed, and the
     * signal been reused elsewhere, since the caller pinned d. */
    op = io__cancel_signal_op_on(sig, d);
    if (op != NULL && type == 0) {
        io__cancel_signal_detach(sig);
        op->cancel = NULL;
    } else if (op != NULL) {
        emit_locked(d, op, type, &done);
    }
    hand_over_locked(d, &done, true);
    pthread_mutex_unlock(&d->lock);
}

/* Whether a new op completes in the initiating call: during context
 * shutdown (ECANCELED: the context aborts it, even though shutdown has
 * closed the descriptor too), on a closed descriptor (EBADF), or with
 * nothing to write and nothing before it (rule 12: no system call).
 * Called with d->lock held; sets op->error. */
static bool completes_at_once_locked(io_descriptor *d, struct io_write_op *op)
{
    if (atomic_load(&d->ctx->shutting_down))
        op->error = ECANCELED;
    else if (atomic_load(&d->public_fd) < 0)
        op->error = EBADF;
    else if (!(op->total == 0 && io_task_queue_is_empty(&d->ops)))
        return false;
    return true;
}

/* The most ops a descriptor keeps for reuse: enough for a burst of small
 * writes, bounded so that an idle connection pins little memory. */
#define IO_DESCRIPTOR_SPARE_OPS 64

/* Returns an op for count buffers, filled, with d->lock held; NULL (out
 * of memory) with it not held.  A small one comes from d's cache when it
 * has one; the allocator is never called with the lock held. */
static struct io_write_op *take_op(io_descriptor *d, const struct iovec *bufs, size_t count,
                                   bool write_all, io_write_handler handler, void *arg)
{
    struct io_write_op *op = NULL;
    struct io_task *t;

    if (count <= IO_OP_INLINE_IOVS) {
        pthread_mutex_lock(&d->lock);
        if ((t = io_task_queue_pop(&d->spare_ops)) != NULL) {
            d->spare_count--;
            op = op_of(t);
        }
        if (op == NULL)
            pthread_mutex_unlock(&d->lock);
    }
    if (op == NULL) {
        op = io__write_op_alloc(count);
        if (op == NULL)
            return NULL;
        pthread_mutex_lock(&d->lock);
    }
    io__write_op_init(op, bufs, count, write_all, handler, arg);
    return op;
}

/* Keeps op in d's cache if it is small and there is room; otherwise
 * returns it for the caller to free after unlocking.  d->lock held. */
static struct io_write_op *give_back_locked(io_descriptor *d, struct io_write_op *op)
{
    if (!io__write_op_is_recyclable(op) || d->spare_count >= IO_DESCRIPTOR_SPARE_OPS)
        return op;
    io_task_queue_push(&d->spare_ops, &op->task);
    d->spare_count++;
    return NULL;
}

static int start_write(io_descriptor *d, const struct iovec *bufs, size_t count, bool write_all,
                       io_write_handler handler, void *arg, io_cancel_signal *cancel)
{
    struct io_task_queue done = IO_TASK_QUEUE_INIT;
    struct io_write_op *op;
    bool schedule = false, pending;

    if (d == NULL || handler == NULL || (bufs == NULL && count > 0))
        return EINVAL;
    op = take_op(d, bufs, count, write_all, handler, arg);
    if (op == NULL)
        return ENOMEM;
    op->d = d;

    pending = !completes_at_once_locked(d, op);
    /* Rule 18: a signal still attached to a pending op refuses a second
     * one, and the refused call leaves no trace. */
    if (cancel != NULL && (pending ? io__cancel_signal_attach(cancel, d, op) != 0
                                   : io__cancel_signal_is_busy(cancel))) {
        op = give_back_locked(d, op);
        pthread_mutex_unlock(&d->lock);
        if (op != NULL)
            io__write_op_free(op);
        return EBUSY;
    }
    atomic_fetch_add(&d->refs, 1);
    atomic_fetch_add_explicit(&d->ctx->stats.ops_started, 1, memory_order_relaxed);
    if (!pending) {
        /* Still through the strand, never run here (rule 5). */
        io_task_queue_push(&done, &op->task);
    } else {
        op->cancel = cancel;
        io_task_queue_push(&d->ops, &op->task);
        atomic_fetch_add(&d->queued_bytes, op->total);
        io__context_add_work(d->ctx, 1);
        if (!d->scheduled) {
            d->scheduled = true;
            atomic_fetch_add(&d->refs, 1);
            schedule = true;
        }
    }
    if (!pending)
        hand_over_locked(d, &done, false);
    pthread_mutex_unlock(&d->lock);

    if (schedule)
        io__workers_schedule(d->ctx, d);
    return 0;
}

int io_descriptor_async_write_some(io_descriptor *d, const struct iovec *bufs, size_t count,
                                   io_write_handler handler, void *arg,
                                   io_cancel_signal *cancel)
{
    return start_write(d, bufs, count, false, handler, arg, cancel);
}

int io_descriptor_async_write(io_descriptor *d, const struct iovec *bufs, size_t count,
                              io_write_handler handler, void *arg,
                              io_cancel_signal *cancel)
{
    return start_write(d, bufs, count, true, handler, arg, cancel);
}

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
        cancel_pending_locked(d, &done);
    hand_over_locked(d, &done, true);
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

    atomic_store(&d->public_fd, -1);
    cancel_pending_locked(d, &done);
    hand_over_locked(d, &done, true);
    if (!d->scheduled)
        return;
    d->detaching = true;
    atomic_store(&d->detach_pending, true);
    pthread_mutex_unlock(&d->lock);
    io__workers_wake_poller(d->ctx);
    pthread_mutex_lock(&d->lock);
    while (d->scheduled)
        pthread_cond_wait(&d->released_cond, &d->lock);
}

/* Detaches d and takes its fd from it; -1 with errno EBADF when it is
 * already closed or released. */
static int take_fd(io_descriptor *d)
{
    int fd = -1;

    io__descriptor_retain(d);
    pthread_mutex_lock(&d->lock);
    if (atomic_load(&d->public_fd) >= 0) {
        detach_locked(d);
        fd = d->os_fd;
        d->os_fd = -1;
    }
    pthread_mutex_unlock(&d->lock);
    io__descriptor_release_ref(d);
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
    io__descriptor_release_ref(d);
}

void io__write_op_complete(struct io_task *t, struct io_task_queue *spent)
{
    struct io_write_op *op = op_of(t);

    op->handler(op->arg, op->error, op->done);
    io_task_queue_push(spent, t);
}

/* Drops n references at once. */
static void release_refs(io_descriptor *d, unsigned n)
{
    if (atomic_fetch_sub(&d->refs, n) == n) {
        io__context_forget(d->ctx, &d->ctx->descriptors, &d->member);
        io__descriptor_free(d);
    }
}

void io__write_ops_recycle(struct io_task_queue *spent)
{
    while (!io_task_queue_is_empty(spent)) {
        struct io_task_queue to_free = IO_TASK_QUEUE_INIT;
        io_descriptor *d = op_of(spent->head)->d;
        struct io_write_op *op;
        unsigned n = 0;

        /* The ops of one strand batch mostly share a descriptor: one
         * lock for the run of them at the head. */
        pthread_mutex_lock(&d->lock);
        while (spent->head != NULL && op_of(spent->head)->d == d) {
            op = give_back_locked(d, op_of(io_task_queue_pop(spent)));
            if (op != NULL)
                io_task_queue_push(&to_free, &op->task);
            n++;
        }
        pthread_mutex_unlock(&d->lock);
        while (!io_task_queue_is_empty(&to_free))
            io__write_op_free(op_of(io_task_queue_pop(&to_free)));
        /* Only now may d go: its cache holds the ops just given back. */
        release_refs(d, n);
    }
}

/* ------------------------------------------------------------------ */
/* the worker's turn                                                   */
/* ------------------------------------------------------------------ */

/* Completes the ops at the head that have nothing left to write (those
 * that asked for 0 bytes).  Called with d->lock held. */
static void complete_finished_head_locked(io_descriptor *d, struct io_task_queue *done)
{
    while (d->ops.head != NULL && io__write_op_is_finished(op_of(d->ops.head)))
        complete_locked(d, NULL, op_of(d->ops.head), 0, done);
}

/* What one system call was given. */
struct gathered {
    size_t buffers;
    size_t ops;
    size_t bytes;
};

/*
 * Gathers ops from the head, in order, into one system call: up to IOV_MAX
 * buffers and budget bytes, never past an op it could not take whole (so
 * no op's bytes follow a part of another).  Marks them in_flight.  Called
 * with d->lock held.
 */
static struct gathered gather_locked(io_descriptor *d, struct iovec *vec, size_t budget,
                                     bool one_op)
{
    struct gathered g = { 0, 0, 0 };

    for (struct io_task *t = d->ops.head; t != NULL && g.buffers < IOV_MAX && g.bytes < budget;
         t = t->next) {
        struct io_write_op *op = op_of(t);

        g.buffers += io__write_op_gather(op, vec + g.buffers, IOV_MAX - g.buffers,
                                         budget - g.bytes);
        g.bytes += op->gathered;
        op->in_flight = true;
        g.ops++;
        if (one_op || op->gathered < op->total - op->done)
            break;
    }
    return g;
}

/* Credits n written bytes to the in-flight ops in order and completes the
 * finished ones.  Called with d->lock held. */
static void account_written_locked(io_descriptor *d, size_t n, struct io_task_queue *done)
{
    struct io_task *t;

    while ((t = d->ops.head) != NULL && op_of(t)->in_flight) {
        struct io_write_op *op = op_of(t);
        size_t take = n < op->gathered ? n : op->gathered;

        n -= take;
        io__write_op_advance(op, take);
        atomic_fetch_sub(&d->queued_bytes, take);
        op->in_flight = false;
        op->gathered = 0;
        if (!io__write_op_is_finished(op)) {
            t = t->next;    /* the ops behind it got no byte of this call */
            break;
        }
        complete_locked(d, NULL, op, 0, done);
    }
    for (; t != NULL && op_of(t)->in_flight; t = t->next) {
        op_of(t)->in_flight = false;
        op_of(t)->gathered = 0;
    }
}

static void clear_in_flight_locked(io_descriptor *d)
{
    account_written_locked(d, 0, &(struct io_task_queue)IO_TASK_QUEUE_INIT);
}

/* A pipe's EPIPE leaves a SIGPIPE pending on this thread (workers keep it
 * blocked); take it away so that nothing is ever delivered. */
static void consume_sigpipe(void)
{
    static const struct timespec no_wait = { 0, 0 };
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    while (sigtimedwait(&set, NULL, &no_wait) < 0 && errno == EINTR)
        ;
}

/* One write system call.  Returns the bytes written, or -1 with *err set;
 * EINTR is retried here and never reaches the caller. */
static ssize_t write_once(io_descriptor *d, int fd, struct iovec *vec, size_t count, int *err)
{
    io_context *ctx = d->ctx;
    ssize_t n;

    for (;;) {
        atomic_fetch_add_explicit(&ctx->stats.writev_calls, 1, memory_order_relaxed);
        if (d->kind == IO_FD_SOCKET) {
            struct msghdr msg = { .msg_iov = vec, .msg_iovlen = count };

            n = sendmsg(fd, &msg, MSG_NOSIGNAL);
        } else {
            n = writev(fd, vec, (int)count);
        }
        if (n >= 0) {
            atomic_fetch_add_explicit(&ctx->stats.bytes_written, (uint64_t)n,
                                      memory_order_relaxed);
            return n;
        }
        if (errno != EINTR)
            break;
    }
    *err = errno;
    if (*err == EAGAIN || *err == EWOULDBLOCK) {
        *err = EAGAIN;
        atomic_fetch_add_explicit(&ctx->stats.would_block, 1, memory_order_relaxed);
    } else if (*err == EPIPE && d->kind != IO_FD_SOCKET) {
        consume_sigpipe();
    }
    return -1;
}

enum turn_end { TURN_IDLE, TURN_READY, TURN_PARKED };

/* Whether a turn should wait for POLLOUT after a call that wrote less than
 * it offered.  Only sockets and pipes: a file or tty may write short for
 * other reasons and poll() says nothing useful about them.  Called with
 * d->lock held. */
static bool parks_after_short_write(const io_descriptor *d)
{
    return (d->kind == IO_FD_SOCKET || d->kind == IO_FD_PIPE) && !d->detaching
           && !io_task_queue_is_empty(&d->ops);
}

void io__descriptor_write_turn(io_descriptor *d, struct iovec *scratch)
{
    struct io_task_queue done = IO_TASK_QUEUE_INIT;
    size_t budget = IO_TURN_BYTES_MAX;
    struct gathered g;
    bool one_op = false;
    enum turn_end end;
    int fd, err = 0;
    ssize_t n;

    pthread_mutex_lock(&d->lock);
    for (;;) {
        if (d->detaching) {
            /* A close or release waits for this turn to end: let go, with
             * whatever the last call left cancelled. */
            cancel_pending_locked(d, &done);
            d->detaching = false;
            atomic_store(&d->detach_pending, false);
            end = TURN_IDLE;
            break;
        }
        complete_finished_head_locked(d, &done);
        if (io_task_queue_is_empty(&d->ops)) {
            end = TURN_IDLE;
            break;
        }
        if (budget == 0) {
            end = TURN_READY;
            break;
        }
        g = gather_locked(d, scratch, budget, one_op);
        one_op = false;
        fd = d->os_fd;
        hand_over_locked(d, &done, true);
        pthread_mutex_unlock(&d->lock);
        n = write_once(d, fd, scratch, g.buffers, &err);
        pthread_mutex_lock(&d->lock);

        if (n > 0) {
            account_written_locked(d, (size_t)n, &done);
            budget -= (size_t)n < budget ? (size_t)n : budget;
            cancel_requested_locked(d, &done);
            if ((size_t)n < g.bytes && parks_after_short_write(d)) {
                /* A socket or pipe that took less than it was offered is
                 * full: the next call would only return EAGAIN.  Waiting
                 * for POLLOUT now saves that call (a 1 MiB message: 5
                 * calls instead of 9). */
                end = TURN_PARKED;
                break;
            }
            continue;
        }
        clear_in_flight_locked(d);
        if (n == 0 || err == EAGAIN) {
            cancel_requested_locked(d, &done);
            if (d->detaching)
                continue;   /* never park what a close or release waits for */
            /* 0 from a non-empty write means no room either: wait for
             * POLLOUT rather than spin. */
            end = TURN_PARKED;
            break;
        }
        if (g.ops > 1 && (err == EFAULT || err == EINVAL)) {
            /* A bad buffer may be any op's: give the head op a call of its
             * own, so that one op's EFAULT is not blamed on the others.
             * Other errors are the descriptor's (EPIPE, ECONNRESET, EIO)
             * and go to the head op as they are: a retry would lose a
             * reset that the kernel reports only once. */
            cancel_requested_locked(d, &done);
            one_op = true;
            continue;
        }
        /* The head op is the one the call was for: ops in a call never
         * leave the queue but through this worker.  A cancel requested
         * meanwhile wins; the error is not passed on to the next op. */
        if (!op_of(d->ops.head)->cancel_requested && !op_of(d->ops.head)->cancel_if_untouched)
            complete_locked(d, NULL, op_of(d->ops.head), err, &done);
        cancel_requested_locked(d, &done);
    }
    hand_over_locked(d, &done, true);
    if (end == TURN_IDLE) {
        d->scheduled = false;
        pthread_cond_broadcast(&d->released_cond);
    }
    pthread_mutex_unlock(&d->lock);

    if (end == TURN_READY)
        io__workers_schedule(d->ctx, d);
    else if (end == TURN_PARKED)
        io__workers_park(d->ctx, d);
    else
        io__descriptor_release_ref(d);
}

/* ------------------------------------------------------------------ */
/* context shutdown                                                    */
/* ------------------------------------------------------------------ */

/* Rule 17, with the workers stopped: nothing else touches descriptors. */
void io__descriptors_shutdown(io_context *ctx)
{
    struct io_member *m, *next;

    for (m = ctx->descriptors; m != NULL; m = next) {
        io_descriptor *d = io_container_of(m, io_descriptor, member);
        struct io_task_queue done = IO_TASK_QUEUE_INIT;
        bool was_scheduled;
        int fd = -1;

        next = m->next;
        pthread_mutex_lock(&d->lock);
        clear_in_flight_locked(d);
        cancel_pending_locked(d, &done);
        if (atomic_load(&d->public_fd) >= 0) {
            fd = d->os_fd;
            d->os_fd = -1;
        }
        atomic_store(&d->public_fd, -1);
        was_scheduled = d->scheduled;
        d->scheduled = false;
        pthread_cond_broadcast(&d->released_cond);
        hand_over_locked(d, &done, true);
        pthread_mutex_unlock(&d->lock);

        if (fd >= 0)
            close(fd);
        if (was_scheduled)
            io__descriptor_release_ref(d);
    }
}
