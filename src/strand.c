/*
 * strand.c - io_strand: handlers that run one at a time, in post order.
 *
 * Data and locking:
 *   s->lock guards s->handlers (posted handlers and finished writes, in
 *   order), s->spare_nodes and s->scheduled.
 *   s->refs is atomic.  s->member belongs to ctx->lock (context.c).
 *
 * What a strand's queue holds it runs through each task's type: its own
 * posted handlers, and whatever other modules hand it (finished writes),
 * which go back to their owner through the type's recycle after the batch.
 * The strand itself is a task on the context's ready queue.
 *
 * A strand with handlers is "scheduled": it sits on the context's ready
 * queue, or is in the hands of the one run thread that took it from there.
 * The post that finds the strand idle schedules it; the run thread that
 * empties it unschedules it, both under s->lock, so the strand is never on
 * the ready queue twice and never run by two threads.  The run thread
 * takes the whole queue out as a batch and runs it without the lock; what
 * a stop or the turn limit leaves unrun goes back in front of anything
 * posted meanwhile, which keeps FIFO order.
 */
#include <errno.h>

#include "internal.h"

/* A strand gives up its run thread after this many handlers so that one
 * busy strand cannot starve the others queued behind it. */
#define IO_STRAND_TURN_MAX 64

/* The strands whose handlers this thread is running, innermost first:
 * a handler may call run_one, which may run another strand's handler. */
struct strand_frame {
    const io_strand *strand;
    struct strand_frame *outer;
};

static _Thread_local struct strand_frame *running_frames;

static size_t run_strand(struct io_task *t, struct io_run *run);

static const struct io_task_type strand_task_type = { run_strand, NULL };

static void free_strand(io_strand *s)
{
    io__handler_nodes_free(&s->spare_nodes.nodes);
    pthread_mutex_destroy(&s->lock);
    io__free(s);
}

/* Context destroy: nothing can be queued on it any more. */
static void free_member(struct io_member *m)
{
    free_strand(io_container_of(m, io_strand, member));
}

static const struct io_member_type strand_member_type = { NULL, free_member };

int io_strand_create(io_context *ctx, io_strand **out)
{
    io_strand *s;
    int err;

    if (ctx == NULL || out == NULL)
        return EINVAL;
    s = io__alloc(sizeof(*s));
    if (s == NULL)
        return ENOMEM;
    *s = (io_strand){
        .ready_task = { NULL, &strand_task_type },
        .ctx = ctx,
        .handlers = IO_TASK_QUEUE_INIT,
        .spare_nodes = { IO_TASK_QUEUE_INIT, 0, IO_STRAND_NODE_CACHE_MAX },
    };
    atomic_init(&s->refs, 1);
    err = pthread_mutex_init(&s->lock, NULL);
    if (err != 0) {
        io__free(s);
        return err;
    }
    io__context_adopt(ctx, &s->member, &strand_member_type);
    *out = s;
    return 0;
}

void io__strand_retain(io_strand *s)
{
    atomic_fetch_add(&s->refs, 1);
}

void io__strand_release(io_strand *s)
{
    if (atomic_fetch_sub(&s->refs, 1) == 1) {
        io__context_forget(s->ctx, &s->member);
        free_strand(s);
    }
}

/* Handlers already posted keep their place and run; the last reference,
 * held while the strand is scheduled, frees it. */
void io_strand_destroy(io_strand *s)
{
    if (s != NULL)
        io__strand_release(s);
}

/* Called with s->lock held, after queueing: returns true when this call
 * made the strand scheduled, and must then hand it to schedule(). */
static bool mark_scheduled_locked(io_strand *s)
{
    if (s->scheduled)
        return false;
    s->scheduled = true;
    atomic_fetch_add(&s->refs, 1);
    return true;
}

/* Only the call that schedules the strand touches the context: the strand
 * is one unit of work until a run thread empties it, so the posts behind
 * it share no counter with the run threads. */
static void schedule(io_strand *s)
{
    io__context_add_work(s->ctx, 1);
    io__context_push_ready(s->ctx, &s->ready_task);
}

void io__strand_push_completions(io_strand *s, struct io_task_queue *done)
{
    bool was_idle;

    pthread_mutex_lock(&s->lock);
    io_task_queue_splice(&s->handlers, done);
    was_idle = mark_scheduled_locked(s);
    pthread_mutex_unlock(&s->lock);
    if (was_idle)
        schedule(s);
}

int io_strand_post(io_strand *s, io_handler fn, void *arg)
{
    struct io_handler_node *node;
    bool was_idle;

    if (s == NULL || fn == NULL)
        return EINVAL;
    pthread_mutex_lock(&s->lock);
    node = io__handler_node_get_locked(&s->spare_nodes, &s->lock, fn, arg);
    if (node == NULL)
        return ENOMEM;
    io_task_queue_push(&s->handlers, &node->task);
    was_idle = mark_scheduled_locked(s);
    pthread_mutex_unlock(&s->lock);
    if (was_idle)
        schedule(s);
    return 0;
}

bool io_strand_running_in_this_thread(const io_strand *s)
{
    const struct strand_frame *f;

    if (s == NULL)
        return false;
    for (f = running_frames; f != NULL; f = f->outer)
        if (f->strand == s)
            return true;
    return false;
}

/*
 * Runs up to run->budget handlers of a strand taken off the ready queue,
 * on the calling run thread, with no lock held, and returns how many ran.
 * Sets run->again when the strand still has handlers and must go back on
 * the ready queue (it stays scheduled).
 */
static size_t run_strand(struct io_task *ready_task, struct io_run *run)
{
    io_strand *s = io_container_of(ready_task, io_strand, ready_task);
    struct io_task_queue batch = IO_TASK_QUEUE_INIT;
    struct io_task_queue spent = IO_TASK_QUEUE_INIT;
    struct io_task_queue ended = IO_TASK_QUEUE_INIT;
    struct strand_frame frame = { s, running_frames };
    struct io_run one = { .budget = 1, .ignore_stop = run->ignore_stop };
    size_t budget = run->budget, ran = 0;
    struct io_task *t;
    bool emptied;

    if (budget > IO_STRAND_TURN_MAX)
        budget = IO_STRAND_TURN_MAX;
    pthread_mutex_lock(&s->lock);
    io_task_queue_splice(&batch, &s->handlers);
    pthread_mutex_unlock(&s->lock);

    running_frames = &frame;
    while (ran < budget && (run->ignore_stop || !io__context_is_stopped(s->ctx))
           && (t = io_task_queue_pop(&batch)) != NULL) {
        bool own_node = t->type == &io_handler_node_type;

        ran += t->type->run(t, &one);
        io_task_queue_push(own_node ? &spent : &ended, t);
    }
    running_frames = frame.outer;
    io_task_queue_recycle(&ended);

    pthread_mutex_lock(&s->lock);
    io_task_queue_prepend(&s->handlers, &batch);
    io_node_cache_refill(&s->spare_nodes, &spent);
    emptied = io_task_queue_is_empty(&s->handlers);
    if (emptied)
        s->scheduled = false;
    pthread_mutex_unlock(&s->lock);

    io__handler_nodes_free(&spent);
    run->again = !emptied;
    if (emptied)
        io__strand_release(s);
    return ran;
}
