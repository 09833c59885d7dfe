/*
 * internal.h - the objects behind the opaque public types, and the calls
 * between modules.
 *
 * Locks: ctx->lock, ctx->workers.lock, each strand->lock, each
 * descriptor->lock and each cancel signal's lock.  Only a descriptor's
 * lock is ever held while another is taken, in this order:
 *   descriptor->lock, then strand->lock, then ctx->lock (handing finished
 *   writes to the strand in order, descriptor.c);
 *   descriptor->lock, then a cancel signal's lock (cancel.c).
 * Everything else takes one lock at a time; nothing takes a descriptor's
 * lock while holding another, so the order cannot be inverted.  No lock is held
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

#include <sys/uio.h>

#include "alloc.h"
#include "ioctx.h"
#include "task_queue.h"
#include "spin.h"


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

/* A link in one of the context's registries (every strand, every
 * descriptor not yet freed), which context destroy walks; ctx->lock. */
struct io_member {
    struct io_member *prev, *next;
};

/*
 * The worker pool (worker.c): threads that write descriptors and wait in
 * poll() for the ones that would block.  Guarded by its own lock.
 */
struct io_workers {
    pthread_mutex_t lock;
    pthread_cond_t cond;            /* idle workers wait here */
    struct io_task_queue ready;     /* lock: descriptors waiting for a turn */
    struct io_task_queue parked;    /* lock: descriptors waiting for POLLOUT */
    unsigned idle;                  /* lock: workers in pthread_cond_wait */
    bool polling;                   /* lock: a worker is inside poll() */
    bool wake_pending;              /* lock: wake_fd written, not yet drained */
    bool stopping;                  /* lock */
    struct io_spin_slot spin;       /* lock, except spin.pushes (spin.h) */
    int wake_fd;                    /* eventfd that interrupts poll() */
    unsigned count;                 /* threads running; set at start */
    pthread_t *threads;
};

struct io_context {
    pthread_mutex_t lock;
    pthread_cond_t ready_cond;          /* run threads wait here for work */
    struct io_task_queue ready;         /* lock: handlers and strands */
    struct io_node_cache spare_nodes;   /* lock */
    struct io_member *strands;          /* lock: every strand not yet freed */
    struct io_member *descriptors;      /* lock: every descriptor not yet freed */
    unsigned idle_runners;              /* lock: threads in pthread_cond_wait */
    unsigned worker_threads;            /* from the options; set at create */

    /* Written under lock, read anywhere: run threads look at it between
     * two handlers of a strand batch without taking the lock. */
    atomic_bool stopped;

    /* Set when destroy begins: writes started from then on (by handlers
     * that destroy runs) complete at once with ECANCELED. */
    atomic_bool shutting_down;

    /* Rule 6's work: plain handlers queued or running, + strands that are
     * scheduled (one unit each, however many handlers they hold), +
     * pending operations + work_started.  A unit is dropped only after
     * the handler returns or the run thread finds the strand empty. */
    atomic_size_t outstanding_work;

    struct io_workers workers;

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

    struct io_member member;            /* ctx->lock: in ctx->strands */
};

/* What a descriptor is; it decides the system call (sendmsg for sockets)
 * and what EPIPE leaves behind (a SIGPIPE to consume, for the others). */
enum io_fd_kind {
    IO_FD_SOCKET,
    IO_FD_PIPE,         /* pipe or FIFO */
    IO_FD_TTY,
    IO_FD_FILE,         /* regular file: always writable, writev may block */
    IO_FD_CHAR,         /* character device other than a tty */
    IO_FD_OTHER,
};

/* One write, from the initiating call to its handler.  The same node sits
 * in the descriptor's queue while pending, then in the strand's queue as
 * its completion: one allocation for the whole life of the operation. */
struct io_write_op {
    struct io_task task;        /* kind IO_TASK_WRITE */
    io_descriptor *d;
    io_write_handler handler;
    void *arg;
    bool write_all;             /* async_write (else async_write_some) */
    bool in_flight;             /* d->lock: in the worker's current syscall */
    bool cancel_requested;      /* d->lock: cancel once that syscall returns */
    bool cancel_if_untouched;   /* d->lock: ... if it wrote no byte (TOTAL) */
    io_cancel_signal *cancel;   /* d->lock: attached signal, or NULL */
    int error;                  /* the result, once complete */
    size_t total;               /* bytes asked for */
    size_t done;                /* bytes the kernel accepted */
    size_t gathered;            /* bytes of this op in the current syscall */
    size_t iov_index;           /* first buffer not fully written */
    size_t iov_offset;          /* bytes of it already written */
    size_t iov_count;
    size_t iov_capacity;        /* room in iov[]: at least IO_OP_INLINE_IOVS */
    struct iovec iov[];         /* the caller's array, copied */
};

/* write_op.c */
#define IO_OP_INLINE_IOVS 4
struct io_write_op *io__write_op_alloc(size_t count);
void io__write_op_init(struct io_write_op *op, const struct iovec *bufs, size_t count,
                       bool write_all, io_write_handler handler, void *arg);
bool io__write_op_is_recyclable(const struct io_write_op *op);
void io__write_op_free(struct io_write_op *op);
size_t io__write_op_gather(struct io_write_op *op, struct iovec *vec, size_t room,
                           size_t budget);
void io__write_op_advance(struct io_write_op *op, size_t n);
bool io__write_op_is_finished(const struct io_write_op *op);

struct io_descriptor {
    struct io_task worker_link;         /* kind IO_TASK_DESCRIPTOR; workers->lock */
    io_context *ctx;
    io_strand *strand;                  /* completions go here; one ref held */
    pthread_mutex_t lock;
    pthread_cond_t released_cond;       /* release waits here for the workers */
    struct io_task_queue ops;           /* lock: pending ops, in start order */
    struct io_task_queue spare_ops;     /* lock: recycled ops (inline size) */
    size_t spare_count;                 /* lock */
    int os_fd;                          /* the fd the workers use; see descriptor.c */
    atomic_int public_fd;               /* os_fd until closed or released, then -1 */
    int saved_flags;                    /* file status flags before create */
    enum io_fd_kind kind;
    bool scheduled;                     /* lock: the workers hold it */
    bool detaching;                     /* lock: close/release waits for the workers */
    atomic_bool detach_pending;         /* = detaching, readable without lock */
    atomic_size_t queued_bytes;
    atomic_uint refs;                   /* user + ops + scheduled */
    struct io_member member;            /* ctx->lock: in ctx->descriptors */
};

/* descriptor.c */

/* One turn of a worker on a descriptor taken from the ready queue: write
 * until the queue is empty, the kernel would block, or the turn's budget
 * is spent, then hand the descriptor back (idle, ready or parked).  The
 * descriptor may be freed by the time it returns.  scratch holds IOV_MAX
 * entries. */
void io__descriptor_write_turn(io_descriptor *d, struct iovec *scratch);

void io__descriptor_retain(io_descriptor *d);
void io__descriptor_release_ref(io_descriptor *d);

/* Applies an emit of type (0: only detach the signal) to the op sig is
 * attached to, if it is still a pending op of d.  Caller holds a ref. */
void io__descriptor_emit(io_descriptor *d, io_cancel_signal *sig, unsigned type);

/* Runs a completed write's handler on its strand (IO_TASK_WRITE) and
 * adds the op to spent, for io__write_ops_recycle once the batch is run. */
void io__write_op_complete(struct io_task *t, struct io_task_queue *spent);

/* Gives spent ops back to their descriptors' caches, one lock per run of
 * ops of one descriptor, and drops their references.  No lock held. */
void io__write_ops_recycle(struct io_task_queue *spent);

/* Context shutdown, after the workers stopped: cancel every pending op,
 * close every fd still open. */
void io__descriptors_shutdown(io_context *ctx);
void io__descriptor_free(io_descriptor *d);

/* cancel.c; attach and detach are called with the op's d->lock held */
int io__cancel_signal_attach(io_cancel_signal *sig, io_descriptor *d, struct io_write_op *op);
bool io__cancel_signal_is_busy(io_cancel_signal *sig);
void io__cancel_signal_detach(io_cancel_signal *sig);
struct io_write_op *io__cancel_signal_op_on(io_cancel_signal *sig, io_descriptor *d);

/* worker.c */
int io__workers_start(io_context *ctx, unsigned count);
void io__workers_stop(io_context *ctx);
void io__workers_free(io_context *ctx);
void io__workers_schedule(io_context *ctx, io_descriptor *d);  /* idle -> ready */
void io__workers_requeue(io_context *ctx, io_descriptor *d);   /* turn spent */
void io__workers_park(io_context *ctx, io_descriptor *d);      /* would block */
void io__workers_wake_poller(io_context *ctx);

/* context.c */
void io__context_add_work(io_context *ctx, size_t n);
void io__context_finish_work(io_context *ctx, size_t n);
/* Adds m to, or takes it out of, one of ctx's registries (list). */
void io__context_adopt(io_context *ctx, struct io_member **list, struct io_member *m);
void io__context_forget(io_context *ctx, struct io_member **list, struct io_member *m);
void io__context_push_ready(io_context *ctx, struct io_task *t);
bool io__context_is_stopped(io_context *ctx);

/* strand.c */

/* Runs up to budget handlers of a strand taken off the ready queue, on the
 * calling run thread, with no lock held.  Returns how many ran; *requeue
 * is set when the strand still has handlers and must go back on the ready
 * queue (it stays scheduled). */
size_t io__strand_run(io_strand *s, size_t budget, bool ignore_stop, bool *requeue);

/* Frees a strand at context shutdown, when nothing can be queued on it. */
void io__strand_free(io_strand *s);

void io__strand_retain(io_strand *s);
void io__strand_release(io_strand *s);

/* Appends finished writes (IO_TASK_WRITE tasks) to the strand's queue in
 * one step, scheduling the strand if it was idle. */
void io__strand_push_completions(io_strand *s, struct io_task_queue *done);

#endif /* IOCTX_INTERNAL_H */
