/*
 * strand.c - io_strand: handlers that run one at a time, in post order.
 *
 * Two kinds of strand share this code.  A user strand (io_strand_create)
 * is its own allocation, with its own lock, reference count and cache of
 * handler nodes, and is in the context's registry.  A private strand, the
 * one a descriptor created without a strand gets, lives inside the
 * descriptor and borrows the descriptor's lock and reference count: it
 * costs the descriptor no allocation and no mutex of its own, which is
 * most of what an idle connection weighs.  Nobody posts to a private
 * strand (nobody has its handle); it runs the descriptor's completions.
 *
 * Data and locking:
 *   *s->lock guards s->handlers (posted handlers and finished writes, in
 *   order) and s->scheduled; a user strand's lock also guards its node
 *   cache.  *s->refs is atomic; when it reaches zero s->last_ref frees
 *   what holds the strand.  A user strand's member belongs to ctx->lock.
 *
 * What a strand's queue holds it runs through each task's type: its own
 * posted handlers, and whatever other modules hand it (finished writes),
 * which go back to their owner through the type's recycle after the batch.
 * The strand itself is a task on the context's ready queue.
 *
 * A strand with handlers is "scheduled" and holds a reference: it sits on
 * the context's ready queue, or is in the hands of the one run thread that
 * took it from there.  The post that finds the strand idle schedules it;
 * the run thread that empties it unschedules it, both under its lock, so
 * the strand is never on the ready queue twice and never run by two
 * threads.  The run thread takes the whole queue out as a batch and runs
 * it without the lock; what a stop or the turn limit leaves unrun goes
 * back in front of anything posted meanwhile, which keeps FIFO order.
 */
#include <errno.h>

#include "internal.h"

/* A strand gives up its run thread after this many handlers so that one
 * busy strand cannot starve the others queued behind it. */
#define IO_STRAND_TURN_MAX 64

/* What io_strand_create allocates. */
struct user_strand {
    struct io_strand s;
    pthread_mutex_t lock;
    atomic_uint refs;                   /* the user's handle, + scheduled, + descriptors */
    struct io_node_cache spare_nodes;   /* lock */
    struct io_member member;            /* ctx->lock: in ctx->members */
};

/* The strands whose handlers this thread is running, innermost first:
 * a handler may call run_one, which may run another strand's handler. */
struct strand_frame {
    const io_strand *strand;
    struct strand_frame *outer;
};

static _Thread_local struct strand_frame *running_frames;

static size_t run_strand(struct io_task *t, struct io_run *run);

static const struct io_task_type strand_task_type = { run_strand, NULL };

static struct user_strand *user_of(io_strand *s)
{
    return io_container_of(s, struct user_strand, s);
}

static void free_user_strand(struct user_strand *u)
{
    io__handler_nodes_free(&u->spare_nodes.nodes);
    pthread_mutex_destroy(&u->lock);
    io__free(u);
}

/* The user's handle, the scheduled state and every descriptor are gone. */
static void user_strand_last_ref(io_strand *s)
{
    struct user_strand *u = user_of(s);

    io__context_forget(s->ctx, &u->member);
    free_user_strand(u);
}

/* Context destroy: nothing can be queued on it any more. */
static void free_member(struct io_member *m)
{
    free_user_strand(io_container_of(m, struct user_strand, member));
}

static const struct io_member_type strand_member_type = { NULL, free_member };

void io__strand_init_private(io_strand *s, io_context *ctx, pthread_mutex_t *lock,
                             atomic_uint *refs, void (*last_ref)(io_strand *s))
{
    *s = (io_strand){
        .ready_task = { NULL, &strand_task_type },
        .ctx = ctx,
        .lock = lock,
        .handlers = IO_TASK_QUEUE_INIT,
        .refs = refs,
        .last_ref = last_ref,
        .is_private = true,
    };
}

int io_strand_create(io_context *ctx, io_strand **out)
{
    struct user_strand *u;
    int err;

    if (ctx == NULL || out == NULL)
        return EINVAL;
    u = io__alloc(sizeof(*u));
    if (u == NULL)
        return ENOMEM;
    *u = (struct user_strand){
        .s = {
            .ready_task = { NULL, &strand_task_type },
            .ctx = ctx,
            .lock = &u->lock,
            .handlers = IO_TASK_QUEUE_INIT,
            .refs = &u->refs,
            .last_ref = user_strand_last_ref,
        },
        .spare_nodes = { IO_TASK_QUEUE_INIT, 0, IO_STRAND_NODE_CACHE_MAX },
    };
    atomic_init(&u->refs, 1);
    err = pthread_mutex_init(&u->lock, NULL);
    if (err != 0) {
        io__free(u);
        return err;
    }
    io__context_adopt(ctx, &u->member, &strand_member_type);
    *out = &u->s;
    return 0;
}

void io__strand_retain(io_strand *s)
{
    atomic_fetch_add(s->refs, 1);
}

void io__strand_release(io_strand *s)
{
    if (atomic_fetch_sub(s->refs, 1) == 1)
        s->last_ref(s);
}

/* Handlers already posted keep their place and run; the last reference,
 * held while the strand is scheduled, frees it. */
void io_strand_destroy(io_strand *s)
{
    if (s != NULL)
        io__strand_release(s);
}

/* Called with the strand's lock held, after queueing: returns true when
 * this call made the strand scheduled, and must then hand it to
 * schedule(). */
static bool mark_scheduled_locked(io_strand *s)
{
    if (s->scheduled)
        return false;
    s->scheduled = true;
    io__strand_retain(s);
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

void io__strand_push_completions(io_strand *s, struct io_task_queue *done,
                                 const pthread_mutex_t *held)
{
    bool own_lock = s->lock != held;
    bool was_idle;

    if (own_lock)
        pthread_mutex_lock(s->lock);
    io_task_queue_splice(&s->handlers, done);
    was_idle = mark_scheduled_locked(s);
    if (own_lock)
        pthread_mutex_unlock(s->lock);
    if (was_idle)
        schedule(s);
}

int io_strand_post(io_strand *s, io_handler fn, void *arg)
{
    struct io_handler_node *node;
    bool was_idle;

    if (s == NULL || fn == NULL || s->is_private)
        return EINVAL;
    pthread_mutex_lock(s->lock);
    node = io__handler_node_get_locked(&user_of(s)->spare_nodes, s->lock, fn, arg);
    if (node == NULL)
        return ENOMEM;
    io_task_queue_push(&s->handlers, &node->task);
    was_idle = mark_scheduled_locked(s);
    pthread_mutex_unlock(s->lock);
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
 * the ready queue (it stays scheduled).  A strand that empties drops the
 * reference of its scheduled state, which may free it: nothing touches it
 * after that.
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
    pthread_mutex_lock(s->lock);
    io_task_queue_splice(&batch, &s->handlers);
    pthread_mutex_unlock(s->lock);

    running_frames = &frame;
    while (ran < budget && (run->ignore_stop || !io__context_is_stopped(s->ctx))
           && (t = io_task_queue_pop(&batch)) != NULL) {
        bool own_node = t->type == &io_handler_node_type;

        ran += t->type->run(t, &one);
        io_task_queue_push(own_node ? &spent : &ended, t);
    }
    running_frames = frame.outer;
    io_task_queue_recycle(&ended);

    pthread_mutex_lock(s->lock);
    io_task_queue_prepend(&s->handlers, &batch);
    if (!s->is_private)
        io_node_cache_refill(&user_of(s)->spare_nodes, &spent);
    emptied = io_task_queue_is_empty(&s->handlers);
    if (emptied)
        s->scheduled = false;
    pthread_mutex_unlock(s->lock);

    io__handler_nodes_free(&spent);
    run->again = !emptied;
    if (emptied)
        io__strand_release(s);
    return ran;
}
