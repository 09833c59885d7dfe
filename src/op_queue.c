/*
 * op_queue.c - a descriptor's pending writes: their queue, their states,
 * and how each one ends.
 *
 * Data and locking: every function here is called with d->lock held and
 * touches d->ops (pending ops in start order), d->queued_bytes,
 * d->progress_at (when the last call accepted bytes, or the queue got its
 * first op: where a send timeout counts from), and each
 * pending op's state, progress and cancel signal.  Ops that end go to the
 * caller's done queue, which it hands to the strand before it lets go of
 * d->lock.
 *
 * Every change of an op's state goes through op_step(), and every source
 * of completion is one of its inputs: the worker's system call returning
 * or failing, a cancel of the descriptor (cancel, close, release, context
 * shutdown), an emit of the op's cancel signal, and the initiating call
 * itself (a closed descriptor, a context shutting down, nothing to write).
 * An op in a worker's system call is never taken out by another thread:
 * a cancel only moves it to an IN_CALL_CANCEL* state, and the worker's
 * input when the call returns ends it.  So every op ends exactly once,
 * and in one place.
 *
 * Ended ops are handed to the strand with d->lock still held, so that
 * they reach it in the order the lock saw them: handed over after
 * unlocking, a worker's completions could be overtaken by those of the
 * next worker's turn, and handlers would run out of start order.
 */
#include <errno.h>
#include <limits.h>

#include "internal.h"

enum op_event {
    OP_AT_HEAD,             /* first in line, no call holds it */
    OP_GATHERED,            /* taken into the worker's next system call */
    OP_CALL_RETURNED,       /* that call returned; its bytes are credited */
    OP_CALL_FAILED,         /* that call failed, and the error is this op's */
    OP_CANCEL,              /* end with the error now, or when its call returns */
    OP_CANCEL_IF_UNTOUCHED, /* the same, only while no byte of it is written */
    OP_RAN,                 /* its call did what it had to (a shutdown): ends
                             * with the call's result, whatever came meanwhile */
};

struct op_input {
    enum op_event event;
    int error;              /* with OP_CALL_FAILED and the cancels */
};

static struct io_write_op *op_of(struct io_task *t)
{
    return io_container_of(t, struct io_write_op, task);
}

static bool is_in_call(const struct io_write_op *op)
{
    return op->state == IO_OP_IN_CALL || op->state == IO_OP_IN_CALL_CANCEL_IF_UNTOUCHED
           || op->state == IO_OP_IN_CALL_CANCEL;
}

/* Whether a cancel requested while op was in its call wins now that the
 * call has returned (and op is not finished). */
static bool cancel_wins(const struct io_write_op *op)
{
    return op->state == IO_OP_IN_CALL_CANCEL
           || (op->state == IO_OP_IN_CALL_CANCEL_IF_UNTOUCHED && op->done == 0);
}

/* Takes op out of d->ops (unless it was never queued) and records its
 * result.  prev is the op before it, NULL at the head. */
static void end(io_descriptor *d, struct io_task *prev, struct io_write_op *op, int error,
                struct io_task_queue *done)
{
    struct io_task *t = &op->task;

    if (op->state != IO_OP_NEW) {
        io_task_queue_remove(&d->ops, prev, t);
        atomic_fetch_sub(&d->queued_bytes, op->total - op->done);
    }
    op->state = IO_OP_DONE;
    op->error = error;
    if (op->cancel != NULL) {
        /* Free for reuse once the op is complete, already inside its
         * handler. */
        io__cancel_signal_detach(op->cancel);
        op->cancel = NULL;
    }
    io_task_queue_push(done, t);
}

/* Ends op with the cancel's error now or, when it is in a system call,
 * marks it to end with that error when the call returns. */
static bool cancel(io_descriptor *d, struct io_task *prev, struct io_write_op *op,
                   struct op_input in, struct io_task_queue *done)
{
    if (!is_in_call(op)) {
        end(d, prev, op, in.error, done);
        return true;
    }
    op->state = in.event == OP_CANCEL ? IO_OP_IN_CALL_CANCEL : IO_OP_IN_CALL_CANCEL_IF_UNTOUCHED;
    op->error = in.error;
    return false;
}

/*
 * The op state machine (the states are described at enum io_op_state).
 * prev is the op before op in d->ops (NULL at the head, or when op is
 * NEW).  Returns true when op has ended and left d->ops.
 */
static bool op_step(io_descriptor *d, struct io_task *prev, struct io_write_op *op,
                    struct op_input in, struct io_task_queue *done)
{
    switch (in.event) {
    case OP_AT_HEAD:
        if (!io__write_op_is_finished(op))
            return false;
        end(d, prev, op, 0, done);  /* it asked for no byte: no system call */
        return true;
    case OP_GATHERED:
        op->state = IO_OP_IN_CALL;
        return false;
    case OP_CALL_RETURNED:
        /* Only at the head: a zero-byte op gathered behind one the call
         * cut short must not end, and run its handler, before it. */
        if (prev == NULL && io__write_op_is_finished(op))
            end(d, prev, op, 0, done);
        else if (cancel_wins(op))
            end(d, prev, op, op->error, done);
        else
            op->state = IO_OP_QUEUED;
        return op->state == IO_OP_DONE;
    case OP_CALL_FAILED:
        /* A cancel requested meanwhile wins over the call's error. */
        end(d, prev, op, cancel_wins(op) ? op->error : in.error, done);
        return true;
    case OP_CANCEL_IF_UNTOUCHED:
        if (op->done > 0 || op->state == IO_OP_IN_CALL_CANCEL)
            return false;
        return cancel(d, prev, op, in, done);
    case OP_CANCEL:
        return cancel(d, prev, op, in, done);
    case OP_RAN:
        end(d, prev, op, in.error, done);
        return true;
    }
    return false;
}

bool io__op_queue_push_locked(io_descriptor *d, struct io_write_op *op)
{
    bool first = io_task_queue_is_empty(&d->ops);

    if (first)
        d->progress_at = io__clock_now();
    op->state = IO_OP_QUEUED;
    io_task_queue_push(&d->ops, &op->task);
    atomic_fetch_add(&d->queued_bytes, op->total);
    return first;
}

void io__op_queue_end_at_once_locked(io_descriptor *d, struct io_write_op *op, int error,
                                     struct io_task_queue *done)
{
    struct op_input in = { error != 0 ? OP_CANCEL : OP_AT_HEAD, error };

    op_step(d, NULL, op, in, done);
}

void io__op_queue_end_finished_head_locked(io_descriptor *d, struct io_task_queue *done)
{
    static const struct op_input at_head = { OP_AT_HEAD, 0 };

    while (d->ops.head != NULL && op_step(d, NULL, op_of(d->ops.head), at_head, done))
        ;
}

struct io_gathered io__op_queue_gather_locked(io_descriptor *d, struct iovec *vec,
                                              size_t budget, bool one_op)
{
    static const struct op_input gathered = { OP_GATHERED, 0 };
    struct io_gathered g = { 0, 0, 0, NULL, false };

    for (struct io_task *t = d->ops.head; t != NULL && g.buffers < IOV_MAX && g.bytes < budget;
         t = t->next) {
        struct io_write_op *op = op_of(t);

        if (op->kind == IO_OP_SENDFILE || op->kind == IO_OP_SHUTDOWN) {
            if (g.ops == 0) {
                size_t left = op->total - op->done;

                op->gathered = left < budget ? left : budget;
                op_step(d, NULL, op, gathered, NULL);
                g.alone = op;
                g.bytes = op->gathered;
                g.ops = 1;
            } else {
                g.sendfile_next = op->kind == IO_OP_SENDFILE && op->done < op->total;
            }
            break;
        }
        g.buffers += io__write_op_gather(op, vec + g.buffers, IOV_MAX - g.buffers,
                                         budget - g.bytes);
        g.bytes += op->gathered;
        op_step(d, NULL, op, gathered, NULL);    /* never ends an op */
        g.ops++;
        /* No op's bytes may follow a part of another's. */
        if (one_op || op->gathered < op->total - op->done)
            break;
    }
    return g;
}

void io__op_queue_call_returned_locked(io_descriptor *d, struct io_call_result result,
                                       struct io_task_queue *done)
{
    struct io_task *prev = NULL, *t = d->ops.head, *next;
    size_t written = result.written;
    /* A failed call is the head op's: the ops behind it got no chance. */
    struct op_input in = { result.error != 0 ? OP_CALL_FAILED : OP_CALL_RETURNED, result.error };

    if (written > 0)
        d->progress_at = io__clock_now();      /* the send timeout starts again */

    /* The ops of the call are at the head, in the order they were given
     * to it; only the worker that made the call moves them. */
    for (; t != NULL && is_in_call(op_of(t)); t = next) {
        struct io_write_op *op = op_of(t);
        size_t take = written < op->gathered ? written : op->gathered;

        next = t->next;
        written -= take;
        io__write_op_advance(op, take);
        atomic_fetch_sub(&d->queued_bytes, take);
        op->gathered = 0;
        if (!op_step(d, prev, op, in, done))
            prev = t;
        in = (struct op_input){ OP_CALL_RETURNED, 0 };
    }
}

void io__op_queue_shutdown_ran_locked(io_descriptor *d, int error, struct io_task_queue *done)
{
    const struct op_input ran = { OP_RAN, error }, refused = { OP_CANCEL, EPIPE };
    struct io_task *t;

    /* It has run: a cancel that came meanwhile is too late to undo it. */
    op_step(d, NULL, op_of(d->ops.head), ran, done);
    d->write_shut = true;
    while ((t = d->ops.head) != NULL)
        op_step(d, NULL, op_of(t), refused, done);
}

void io__op_queue_cancel_all_locked(io_descriptor *d, int error, struct io_task_queue *done)
{
    struct op_input in = { OP_CANCEL, error };
    struct io_task *prev = NULL, *t = d->ops.head, *next;

    for (; t != NULL; t = next) {
        next = t->next;
        if (!op_step(d, prev, op_of(t), in, done))
            prev = t;
    }
}

/*
 * An emit, by the kind of op.  async_write_some: any type cancels it while
 * none of its bytes has been written, wherever the emit lands (queued, or
 * in a call that then writes nothing of it); after that, emit has no
 * effect.  async_write: IO_CANCEL_TERMINAL or IO_CANCEL_PARTIAL stop it
 * before its next system call (a call under way finishes and the handler
 * gets the bytes so far); IO_CANCEL_TOTAL only while no byte of it has
 * been written.
 */
void io__op_queue_emit_locked(io_descriptor *d, struct io_write_op *op, unsigned type,
                              struct io_task_queue *done)
{
    const unsigned all = IO_CANCEL_TERMINAL | IO_CANCEL_PARTIAL | IO_CANCEL_TOTAL;
    struct op_input in = { OP_CANCEL_IF_UNTOUCHED, ECANCELED };
    struct io_task *prev = NULL;

    if ((type & all) == 0)
        return;
    if (io__op_is_whole(op) && (type & (IO_CANCEL_TERMINAL | IO_CANCEL_PARTIAL)) != 0)
        in.event = OP_CANCEL;
    for (struct io_task *t = d->ops.head; t != &op->task; t = t->next)
        prev = t;
    op_step(d, prev, op, in, done);
}

void io__op_queue_hand_over_locked(io_descriptor *d, struct io_task_queue *done)
{
    size_t n = 0;

    for (struct io_task *t = done->head; t != NULL; t = t->next)
        n++;
    /* After the completions of the change: a "below" follows the
     * handlers of the writes that brought the bytes down. */
    io__watermarks_check_locked(d, done);
    if (io_task_queue_is_empty(done))
        return;
    io__strand_push_completions(d->strand, done, &d->lock);
    if (n == 0)
        return;
    atomic_fetch_add_explicit(&io__descriptor_ctx(d)->stats.ops_completed, n, memory_order_relaxed);
    /* After the push: the strand holds a unit of work of its own now, so
     * the count cannot touch zero in between and stop the context. */
    io__context_finish_work(io__descriptor_ctx(d), n);
}
