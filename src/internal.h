/*
 * internal.h - the objects behind the opaque public types, and the calls
 * between modules.
 *
 * Locks: ctx->lock and each strand->lock.  A thread holds at most one of
 * them at a time, so there is no lock order to get wrong.  No lock is held
 * while a handler runs or while memory goes to or comes from the
 * allocator.
 */
#ifndef IOCTX_INTERNAL_H
#define IOCTX_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "ioctx.h"
#include "task_queue.h"


/* A posted handler.  One allocation per post, recycled through the free
 * list of the context or strand it was posted to. */
struct io_handler_node {
    struct io_task task;        /* kind IO_TASK_HANDLER */
    io_handler fn;
    void *arg;
};

/*
 * Spare handler nodes, kept by their owner (context or strand) under the
 * owner's lock so that a post in steady state neither allocates nor takes
 * a second lock.  Each cache has a cap, so a burst leaves at most that
 * many nodes behind: small for strands, which may number one per
 * connection, larger for the one context.
 */
#define IO_CONTEXT_NODE_CACHE_MAX 1024
#define IO_STRAND_NODE_CACHE_MAX 64

struct io_node_cache {
    struct io_task_queue nodes;
    size_t count;
    size_t max;
};

static inline struct io_handler_node *io_node_cache_take(struct io_node_cache *c)
{
    struct io_task *t = io_task_queue_pop(&c->nodes);

    if (t == NULL)
        return NULL;
    c->count--;
    return io_container_of(t, struct io_handler_node, task);
}

/* Keeps what fits of spent and leaves the rest in spent for the caller to
 * free after it drops its lock. */
static inline void io_node_cache_refill(struct io_node_cache *c,
                                        struct io_task_queue *spent)
{
    struct io_task *t;

    while (c->count < c->max && (t = io_task_queue_pop(spent)) != NULL) {
        io_task_queue_push(&c->nodes, t);
        c->count++;
    }
}

/* handler_node.c */

/* Called with *lock held (the lock that guards cache).  Returns a node
 * filled with fn and arg, with *lock held; or NULL, out of memory, with
 * *lock released. */
struct io_handler_node *io__handler_node_get_locked(struct io_node_cache *cache,
                                                    pthread_mutex_t *lock,
                                                    io_handler fn, void *arg);

/* Frees every node of the queue. */
void io__handler_nodes_free(struct io_task_queue *nodes);

struct io_context {
    pthread_mutex_t lock;
    pthread_cond_t ready_cond;          /* run threads wait here for work */
    struct io_task_queue ready;         /* lock: handlers and strands */
    struct io_node_cache spare_nodes;   /* lock */
    struct io_strand *strands;          /* lock: every strand not yet freed */
    unsigned idle_runners;              /* lock: threads in pthread_cond_wait */
    unsigned worker_threads;            /* from the options; set at create */

    /* Written under lock, read anywhere: run threads look at it between
     * two handlers of a strand batch without taking the lock. */
    atomic_bool stopped;

    /* Rule 6's work: plain handlers queued or running, + strands that are
     * scheduled (one unit each, however many handlers they hold), +
     * pending operations + work_started.  A unit is dropped only after
     * the handler returns or the run thread finds the strand empty. */
    atomic_size_t outstanding_work;

    struct {
        atomic_uint_fast64_t ops_started;
        atomic_uint_fast64_t ops_completed;
        atomic_uint_fast64_t writev_calls;
        atomic_uint_fast64_t bytes_written;
        atomic_uint_fast64_t would_block;
        atomic_uint_fast64_t handlers_run;
    } stats;
};

struct io_strand {
    struct io_task ready_task;          /* kind IO_TASK_STRAND; in ctx->ready */
    io_context *ctx;
    pthread_mutex_t lock;
    struct io_task_queue handlers;      /* lock */
    struct io_node_cache spare_nodes;   /* lock */

    /* lock: true from the post that finds the strand idle until a run
     * thread finds its queue empty; while true the strand is on the ready
     * queue or in a run thread's hands, never both, so no two threads run
     * its handlers, and it counts as one unit of outstanding work. */
    bool scheduled;

    /* The user's handle, one while scheduled, one per descriptor using it.
     * The strand is freed when the count reaches zero. */
    atomic_uint refs;

    struct io_strand *prev, *next;      /* ctx->lock: ctx->strands */
};

/* context.c */
void io__context_add_work(io_context *ctx, size_t n);
void io__context_push_ready(io_context *ctx, struct io_task *t);
bool io__context_is_stopped(io_context *ctx);
void io__context_adopt_strand(io_context *ctx, io_strand *s);
void io__context_forget_strand(io_context *ctx, io_strand *s);

/* strand.c */

/* Runs up to budget handlers of a strand taken off the ready queue, on the
 * calling run thread, with no lock held.  Returns how many ran; *requeue
 * is set when the strand still has handlers and must go back on the ready
 * queue (it stays scheduled). */
size_t io__strand_run(io_strand *s, size_t budget, bool ignore_stop, bool *requeue);

/* Frees a strand at context shutdown, when nothing can be queued on it. */
void io__strand_free(io_strand *s);

#endif /* IOCTX_INTERNAL_H */
