/*
 * context.c - the io_context: its ready queue, the run and poll loops, the
 * work count that decides when run returns, stop/restart, and shutdown.
 *
 * Data and locking:
 *   ctx->lock guards ctx->ready (plain handlers and strands that have
 *   handlers), ctx->spare_nodes, ctx->members, ctx->idle_runners, the map
 *   of fds held by open descriptors (claimed_fds), and every write of
 *   ctx->stopped.  It is held for pointer moves only: never while
 *   a handler runs, never across a call to the allocator.
 *   ctx->outstanding_work and ctx->stats are atomics changed without the
 *   lock; whoever brings the work count to zero then takes the lock to
 *   stop the context, so a run thread that checked the count under the
 *   lock and went to sleep is always woken.
 *
 * A run thread keeps what it must hand back (spent handler nodes, the
 * number of handlers it finished, a strand that still has handlers) in a
 * struct runner and settles it the next time it takes the lock anyway, so
 * running one plain handler costs one lock round trip, not three.
 *
 * The context knows no other module above it: it runs what is on its ready
 * queue through each task's type (a strand is one such task), and it shuts
 * down and frees strands and descriptors through the callbacks of their
 * registry entries (struct io_member).  Strands and descriptors call down
 * into it; it calls only the workers it owns.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

/* The contexts whose handlers this thread is running, innermost first: a
 * handler that calls run on its own context would wait for itself. */
struct running_frame {
    const io_context *ctx;
    struct running_frame *outer;
};

static _Thread_local struct running_frame *running_frames;

static bool running_here(const io_context *ctx)
{
    for (const struct running_frame *f = running_frames; f != NULL; f = f->outer)
        if (f->ctx == ctx)
            return true;
    return false;
}

/* Words of the claimed-fd map at create: fds 0 to 1,023. */
#define IO_CLAIMED_WORDS_INITIAL 16

struct runner {
    io_context *ctx;
    bool shutdown;                  /* inside destroy: ignore stop, never block */
    struct io_task_queue spent;     /* context handler nodes to recycle */
    size_t handlers_run;            /* not yet added to ctx->stats */
    size_t work_done;               /* units still counted in outstanding_work */
    struct io_task *requeue;        /* task run that still has handlers */
};

/* Called with ctx->lock held. */
static void stop_locked(io_context *ctx)
{
    atomic_store_explicit(&ctx->stopped, true, memory_order_release);
    if (ctx->idle_runners > 0)
        pthread_cond_broadcast(&ctx->ready_cond);
}

/* Whether a run thread waits for the task just queued: if so the caller
 * signals ready_cond once it has unlocked (wake_runner), since a thread
 * woken while the lock is still held would only wake to wait for it: two
 * more futex calls and a context switch.  Called with ctx->lock held. */
static bool runner_waits_locked(const io_context *ctx)
{
    return ctx->idle_runners > 0;
}

/* Wakes one run thread if wake is set.  Called with no lock held.  A
 * signal that finds no thread waiting any more (one took the task
 * meanwhile) costs nothing. */
static void wake_runner(io_context *ctx, bool wake)
{
    if (wake)
        pthread_cond_signal(&ctx->ready_cond);
}

/* Tasks were just queued on ctx->ready: releases ctx->lock, then wakes a
 * run thread if one waits.  Called with ctx->lock held. */
static void unlock_and_wake_runner(io_context *ctx)
{
    bool wake = runner_waits_locked(ctx);

    pthread_mutex_unlock(&ctx->lock);
    wake_runner(ctx, wake);
}

/* Drops n units of work; the one that reaches zero stops the context, as
 * Asio's scheduler does, which wakes every run thread waiting for work. */
static void finish_work_locked(io_context *ctx, size_t n)
{
    if (n > 0 && atomic_fetch_sub(&ctx->outstanding_work, n) == n)
        stop_locked(ctx);
}

/*
 * Hands back what the runner owes the context.  Called with ctx->lock
 * held; leaves in r->spent the nodes the cache has no room for, and
 * returns whether a run thread must be woken (wake_runner) for the
 * strand it requeued.  A thread about to take the next task itself
 * requeues its strand without waking anyone: most often it takes that
 * strand straight back, and a wake-up would only make the strand hop
 * threads (run_tasks wakes another when it leaves tasks on the queue).
 */
static bool settle_locked(struct runner *r, bool taking_next)
{
    io_context *ctx = r->ctx;
    bool wake = false;

    io_node_cache_refill(&ctx->spare_nodes, &r->spent);
    if (r->requeue != NULL) {
        io_task_queue_push(&ctx->ready, r->requeue);
        wake = !taking_next && runner_waits_locked(ctx);
        r->requeue = NULL;
    }
    if (r->handlers_run > 0) {
        atomic_fetch_add_explicit(&ctx->stats.handlers_run, r->handlers_run,
                                  memory_order_relaxed);
        r->handlers_run = 0;
    }
    finish_work_locked(ctx, r->work_done);
    r->work_done = 0;
    return wake;
}

/* Takes the next ready task, waiting for one if block is set.  Returns NULL
 * when the caller must return: stopped, nothing ready without blocking, or
 * no work left (which stops the context).  Called with ctx->lock held. */
static struct io_task *next_task_locked(struct runner *r, bool block)
{
    io_context *ctx = r->ctx;
    struct io_task *t;

    for (;;) {
        if (!r->shutdown && atomic_load_explicit(&ctx->stopped, memory_order_relaxed))
            return NULL;
        t = io_task_queue_pop(&ctx->ready);
        if (t != NULL || r->shutdown)
            return t;
        if (atomic_load(&ctx->outstanding_work) == 0) {
            stop_locked(ctx);
            return NULL;
        }
        if (!block)
            return NULL;
        ctx->idle_runners++;
        pthread_cond_wait(&ctx->ready_cond, &ctx->lock);
        ctx->idle_runners--;
    }
}

/* Runs one task with no lock held; returns the number of handlers run.
 * A task is one unit of work until it has ended: a plain handler at once,
 * a strand once it has no handler left.  The context's own nodes go back
 * to its cache. */
static size_t run_task(struct runner *r, struct io_task *t, size_t budget)
{
    struct io_run run = { .budget = budget, .ignore_stop = r->shutdown };
    /* Read first: a strand that has ended may be freed by its run. */
    bool own_node = t->type == &io_handler_node_type;
    size_t ran = t->type->run(t, &run);

    if (run.again) {
        r->requeue = t;
    } else {
        r->work_done++;
        if (own_node)
            io_task_queue_push(&r->spent, t);
    }
    return ran;
}

/* The loop behind run, run_one, poll, poll_one and shutdown. */
static size_t run_tasks(struct runner *r, size_t budget, bool block)
{
    io_context *ctx = r->ctx;
    struct running_frame frame = { ctx, running_frames };
    size_t ran = 0, n;
    struct io_task *t;
    bool wake;

    running_frames = &frame;
    pthread_mutex_lock(&ctx->lock);
    while (ran < budget) {

        (void)settle_locked(r, true);   /* taking the next: never wakes */
        t = next_task_locked(r, block);
        if (t == NULL)
            break;
        /* More left: one more thread, which will do the same (so a
         * batch wakes threads one at a time, as they are needed). */
        wake = !io_task_queue_is_empty(&ctx->ready) && runner_waits_locked(ctx);
        pthread_mutex_unlock(&ctx->lock);
        wake_runner(ctx, wake);
        io__handler_nodes_free(&r->spent);
        n = run_task(r, t, budget - ran);
        r->handlers_run += n;
        ran += n;
        pthread_mutex_lock(&ctx->lock);
    }
    wake = settle_locked(r, false);
    pthread_mutex_unlock(&ctx->lock);
    wake_runner(ctx, wake);
    io__handler_nodes_free(&r->spent);
    running_frames = frame.outer;
    return ran;
}

static size_t run_as_user(io_context *ctx, size_t budget, bool block)
{
    struct runner r = { .ctx = ctx, .spent = IO_TASK_QUEUE_INIT };

    /* Called from one of ctx's own handlers: Asio leaves it undefined; it
     * would wait for the handler it is called from.  Nothing runs. */
    if (ctx == NULL || running_here(ctx))
        return 0;
    return run_tasks(&r, budget, block);
}

int io_context_create(io_context **out, const io_context_options *opts)
{
    io_context *ctx;
    int err;

    if (out == NULL)
        return EINVAL;
    ctx = io__alloc(sizeof(*ctx));
    if (ctx == NULL)
        return ENOMEM;
    *ctx = (io_context){
        .ready = IO_TASK_QUEUE_INIT,
        .spare_nodes = { IO_TASK_QUEUE_INIT, 0, IO_CONTEXT_NODE_CACHE_MAX },
        .worker_threads = (opts != NULL && opts->worker_threads > 0)
                              ? opts->worker_threads : 1,
    };
    atomic_init(&ctx->stopped, false);
    atomic_init(&ctx->shutting_down, false);
    atomic_init(&ctx->outstanding_work, 0);
    atomic_init(&ctx->stats.ops_started, 0);
    atomic_init(&ctx->stats.ops_completed, 0);
    atomic_init(&ctx->stats.writev_calls, 0);
    atomic_init(&ctx->stats.bytes_written, 0);
    atomic_init(&ctx->stats.would_block, 0);
    atomic_init(&ctx->stats.handlers_run, 0);
    err = pthread_mutex_init(&ctx->lock, NULL);
    if (err != 0)
        goto out_free_ctx;
    err = pthread_cond_init(&ctx->ready_cond, NULL);
    if (err != 0)
        goto out_destroy_lock;
    /* Room for fds below 1,024 at once: creating a descriptor on one of
     * those allocates nothing for the map. */
    ctx->claimed_words = IO_CLAIMED_WORDS_INITIAL;
    ctx->claimed_fds = io__alloc(ctx->claimed_words * sizeof(*ctx->claimed_fds));
    err = ENOMEM;
    if (ctx->claimed_fds == NULL)
        goto out_destroy_cond;
    memset(ctx->claimed_fds, 0, ctx->claimed_words * sizeof(*ctx->claimed_fds));
    err = io__op_cache_init(&ctx->op_cache);
    if (err != 0)
        goto out_free_claimed;
    err = io__workers_start(&ctx->workers, ctx->worker_threads, io__context_flush_pushes);
    if (err != 0)
        goto out_free_op_cache;
    *out = ctx;
    return 0;

out_free_op_cache:
    io__op_cache_free(&ctx->op_cache);
out_free_claimed:
    io__free(ctx->claimed_fds);
out_destroy_cond:
    pthread_cond_destroy(&ctx->ready_cond);
out_destroy_lock:
    pthread_mutex_destroy(&ctx->lock);
out_free_ctx:
    io__free(ctx);
    return err;
}

/*
 * Stop the workers, so that nothing else touches a descriptor; let every
 * member complete its pending operations (ECANCELED) and close its fd;
 * then run every queued handler, and every handler those post, on this
 * thread, ignoring stop and outstanding work_started, before anything is
 * freed.  Descriptors and strands the user did not destroy go with the
 * context.  No lock is needed: no other thread may use the context now.
 */
void io_context_destroy(io_context *ctx)
{
    struct runner r = { .ctx = ctx, .shutdown = true, .spent = IO_TASK_QUEUE_INIT };
    struct io_member *m;

    if (ctx == NULL)
        return;
    atomic_store(&ctx->shutting_down, true);
    io__workers_stop(&ctx->workers);
    /* A shutdown callback never frees a member, so the walk is safe. */
    for (m = ctx->members; m != NULL; m = m->next) {
        if (m->type->shutdown != NULL)
            m->type->shutdown(m);
    }
    run_tasks(&r, SIZE_MAX, false);
    /* Each member is freed as it is, without following its references
     * (a descriptor's strand goes in the same walk), so order is free. */
    while ((m = ctx->members) != NULL) {
        ctx->members = m->next;
        m->type->free(m);
    }
    io__workers_free(&ctx->workers);
    io__op_cache_free(&ctx->op_cache);
    io__handler_nodes_free(&ctx->spare_nodes.nodes);
    io__free(ctx->claimed_fds);
    pthread_cond_destroy(&ctx->ready_cond);
    pthread_mutex_destroy(&ctx->lock);
    io__free(ctx);
}

size_t io_context_run(io_context *ctx)
{
    return run_as_user(ctx, SIZE_MAX, true);
}

size_t io_context_run_one(io_context *ctx)
{
    return run_as_user(ctx, 1, true);
}

size_t io_context_poll(io_context *ctx)
{
    return run_as_user(ctx, SIZE_MAX, false);
}

size_t io_context_poll_one(io_context *ctx)
{
    return run_as_user(ctx, 1, false);
}

void io_context_stop(io_context *ctx)
{
    if (ctx == NULL)
        return;
    pthread_mutex_lock(&ctx->lock);
    stop_locked(ctx);
    pthread_mutex_unlock(&ctx->lock);
}

bool io_context_stopped(io_context *ctx)
{
    return ctx != NULL && io__context_is_stopped(ctx);
}

void io_context_restart(io_context *ctx)
{
    if (ctx == NULL)
        return;
    pthread_mutex_lock(&ctx->lock);
    atomic_store_explicit(&ctx->stopped, false, memory_order_release);
    pthread_mutex_unlock(&ctx->lock);
}

void io_context_work_started(io_context *ctx)
{
    if (ctx != NULL)
        io__context_add_work(ctx, 1);
}

void io_context_work_finished(io_context *ctx)
{
    if (ctx != NULL)
        io__context_finish_work(ctx, 1);
}

int io_context_post(io_context *ctx, io_handler fn, void *arg)
{
    struct io_handler_node *node;

    if (ctx == NULL || fn == NULL)
        return EINVAL;
    pthread_mutex_lock(&ctx->lock);
    node = io__handler_node_get_locked(&ctx->spare_nodes, &ctx->lock, fn, arg);
    if (node == NULL)
        return ENOMEM;
    io__context_add_work(ctx, 1);
    io_task_queue_push(&ctx->ready, &node->task);
    unlock_and_wake_runner(ctx);
    return 0;
}

void io_context_get_stats(io_context *ctx, io_context_stats *out)
{
    if (ctx == NULL || out == NULL)
        return;
    out->ops_started = atomic_load_explicit(&ctx->stats.ops_started, memory_order_relaxed);
    out->ops_completed = atomic_load_explicit(&ctx->stats.ops_completed, memory_order_relaxed);
    out->writev_calls = atomic_load_explicit(&ctx->stats.writev_calls, memory_order_relaxed);
    out->bytes_written = atomic_load_explicit(&ctx->stats.bytes_written, memory_order_relaxed);
    out->would_block = atomic_load_explicit(&ctx->stats.would_block, memory_order_relaxed);
    out->handlers_run = atomic_load_explicit(&ctx->stats.handlers_run, memory_order_relaxed);
}

void io__context_add_work(io_context *ctx, size_t n)
{
    atomic_fetch_add(&ctx->outstanding_work, n);
}

void io__context_finish_work(io_context *ctx, size_t n)
{
    if (n > 0 && atomic_fetch_sub(&ctx->outstanding_work, n) == n) {
        pthread_mutex_lock(&ctx->lock);
        stop_locked(ctx);
        pthread_mutex_unlock(&ctx->lock);
    }
}

void io__context_adopt(io_context *ctx, struct io_member *m, const struct io_member_type *type)
{
    pthread_mutex_lock(&ctx->lock);
    m->type = type;
    m->prev = NULL;
    m->next = ctx->members;
    if (ctx->members != NULL)
        ctx->members->prev = m;
    ctx->members = m;
    pthread_mutex_unlock(&ctx->lock);
}

void io__context_forget(io_context *ctx, struct io_member *m)
{
    pthread_mutex_lock(&ctx->lock);
    if (m->prev != NULL)
        m->prev->next = m->next;
    else
        ctx->members = m->next;
    if (m->next != NULL)
        m->next->prev = m->prev;
    pthread_mutex_unlock(&ctx->lock);
}

/*
 * Tasks a worker made ready during its last turns, not yet on ctx->ready:
 * a worker writing many descriptors in a row pushes their strands in one
 * step (one lock, one wake-up if a run thread waits) instead of one lock
 * and often one futex wake-up per turn.  The run thread woken wakes
 * another only if it leaves tasks on the queue, and so on, as Asio's
 * scheduler does: waking one per task at once cost wake-ups of threads
 * that then found the queue empty (4,096 connections, 2 run threads: 15%
 * more messages a second on 13% less CPU).  Only the worker's thread
 * touches it.
 */
static _Thread_local struct {
    io_context *ctx;            /* non-NULL: this thread defers, for ctx */
    struct io_task_queue tasks;
} deferred;

void io__context_defer_pushes(io_context *ctx)
{
    if (deferred.ctx != ctx) {
        io__context_flush_pushes();
        deferred.ctx = ctx;
    }
}

void io__context_flush_pushes(void)
{
    io_context *ctx = deferred.ctx;

    if (ctx == NULL || io_task_queue_is_empty(&deferred.tasks))
        return;
    pthread_mutex_lock(&ctx->lock);
    io_task_queue_splice(&ctx->ready, &deferred.tasks);
    unlock_and_wake_runner(ctx);
}

void io__context_push_ready(io_context *ctx, struct io_task *t)
{
    if (deferred.ctx == ctx) {
        io_task_queue_push(&deferred.tasks, t);
        return;
    }
    pthread_mutex_lock(&ctx->lock);
    io_task_queue_push(&ctx->ready, t);
    unlock_and_wake_runner(ctx);
}

bool io__context_is_stopped(io_context *ctx)
{
    return atomic_load_explicit(&ctx->stopped, memory_order_acquire);
}

/* The claimed fds are a bitmap indexed by fd number: create and close
 * cost O(1), and the map is as large as the highest fd ever held. */
#define FD_WORD_BITS 64u

int io__context_claim_fd(io_context *ctx, int fd)
{
    size_t word = (size_t)fd / FD_WORD_BITS;
    uint64_t bit = (uint64_t)1 << ((unsigned)fd % FD_WORD_BITS);

    for (;;) {
        uint64_t *bigger, *spare;
        size_t words;
        int err = 0;

        pthread_mutex_lock(&ctx->lock);
        if (word < ctx->claimed_words) {
            if (ctx->claimed_fds[word] & bit)
                err = EEXIST;
            else
                ctx->claimed_fds[word] |= bit;
            pthread_mutex_unlock(&ctx->lock);
            return err;
        }
        words = ctx->claimed_words;
        pthread_mutex_unlock(&ctx->lock);
        /* Grow with no lock held, then look again. */
        words = word + 1 > 2 * words ? word + 1 : 2 * words;
        bigger = io__alloc(words * sizeof(*bigger));
        if (bigger == NULL)
            return ENOMEM;
        pthread_mutex_lock(&ctx->lock);
        spare = bigger;
        if (words > ctx->claimed_words) {
            memset(bigger, 0, words * sizeof(*bigger));
            if (ctx->claimed_words > 0)
                memcpy(bigger, ctx->claimed_fds, ctx->claimed_words * sizeof(*bigger));
            spare = ctx->claimed_fds;
            ctx->claimed_fds = bigger;
            ctx->claimed_words = words;
        }
        pthread_mutex_unlock(&ctx->lock);
        io__free(spare);
    }
}

void io__context_unclaim_fd(io_context *ctx, int fd)
{
    size_t word = (size_t)fd / FD_WORD_BITS;

    pthread_mutex_lock(&ctx->lock);
    if (word < ctx->claimed_words)
        ctx->claimed_fds[word] &= ~((uint64_t)1 << ((unsigned)fd % FD_WORD_BITS));
    pthread_mutex_unlock(&ctx->lock);
}
