/*
 * internal.h - the objects behind the opaque public types, and the calls
 * between modules.
 *
 * Who calls whom: each file calls functions of the files named after its
 * arrow and of no other (all may call alloc.c, left out).  No path leads
 * back, so the modules form layers, and the sections below follow them
 * from the bottom up:
 *
 *   descriptor.c  -> write_turn.c op_queue.c write_op.c cancel.c
 *                    strand.c context.c worker.c
 *   write_turn.c  -> op_queue.c
 *   op_queue.c    -> write_op.c cancel.c strand.c context.c
 *   strand.c      -> context.c handler_node.c
 *   context.c     -> worker.c handler_node.c write_op.c
 *   worker.c      -> poller_epoll.c or poller_poll.c (through poller.h)
 *   poller_*.c    -> wakeup.c
 *   write_op.c, cancel.c, handler_node.c, wakeup.c -> nothing
 *
 * As layers, each calling only layers below it:
 *
 *   6  descriptor               lifecycle, starting writes
 *   5  write_turn               a worker's turn: gather, call, park
 *   4  op_queue                 op states, cancels, completions
 *   3  strand  cancel
 *   2  context                  ready queue, run threads, registry
 *   1  worker  handler_node  write_op
 *   0  poller_epoll or poller_poll  (poller.h), wakeup, alloc
 *
 * Upward calls go through function pointers only, set by the module above:
 * a worker runs a descriptor's turn through its struct io_watch, a run
 * thread runs a strand or a finished write through its struct io_task's
 * type, context destroy shuts down and frees strands and descriptors
 * through their struct io_member's type, and a cancel signal reaches the
 * operation's owner through the callbacks it was attached with.
 *
 * Locks: ctx->lock, ctx->workers.lock, each strand->lock, each
 * descriptor->lock and each cancel signal's lock.  Only a descriptor's
 * lock is ever held while another is taken, in this order:
 *   descriptor->lock, then strand->lock, then ctx->lock (handing finished
 *   writes to the strand in order, op_queue.c);
 *   descriptor->lock, then a cancel signal's lock (cancel.c).
 * Everything else takes one lock at a time; nothing takes a descriptor's
 * lock while holding another, so the order cannot be inverted.  No lock
 * is held while a handler runs or while memory goes to or comes from the
 * allocator.
 */
#ifndef IOCTX_INTERNAL_H
#define IOCTX_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/types.h>
#include <sys/uio.h>

#include "alloc.h"
#include "ioctx.h"
#include "poller.h"
#include "spin.h"
#include "task_queue.h"
#include "timer_queue.h"

/* ------------------------------------------------------------------ */
/* handler_node.c: posted handlers                                     */
/* ------------------------------------------------------------------ */

/* A posted handler.  One allocation per post, recycled through the cache
 * of the context or strand it was posted to. */
struct io_handler_node {
    struct io_task task;        /* type io_handler_node_type */
    io_handler fn;
    void *arg;
};

extern const struct io_task_type io_handler_node_type;

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

/* Called with *lock held (the lock that guards cache).  Returns a node
 * filled with fn and arg, with *lock held; or NULL, out of memory, with
 * *lock released. */
struct io_handler_node *io__handler_node_get_locked(struct io_node_cache *cache,
                                                    pthread_mutex_t *lock,
                                                    io_handler fn, void *arg);

/* Frees every node of the queue. */
void io__handler_nodes_free(struct io_task_queue *nodes);

/* ------------------------------------------------------------------ */
/* worker.c: the worker threads                                        */
/* ------------------------------------------------------------------ */

/* The worker pool: threads that take turns on watches and wait in the
 * poller for the ones that would block.  Guarded by its own lock. */
struct io_workers {
    pthread_mutex_t lock;
    pthread_cond_t cond;            /* idle workers wait here */
    struct io_task_queue ready;     /* lock: watches owed a turn */
    struct io_poller *poller;       /* lock, but io__poller_wake */
    unsigned ready_count;           /* lock: watches on ready */
    unsigned idle;                  /* lock: workers in pthread_cond_wait */
    /* lock: workers neither in pthread_cond_wait nor asleep in the
     * poller, plus those signalled out of pthread_cond_wait (signalled)
     * that have not yet run: each of them looks at ready before it
     * sleeps again. */
    unsigned awake;
    unsigned signalled;
    bool polling;                   /* lock: a worker is inside the poller's wait */
    bool poll_asleep;               /* lock: that wait may sleep (not only a look) */
    bool stopping;                  /* lock */
    uint64_t timer_late_ns;         /* lock: how late timed sleeps end, lately */
    uint64_t timer_margin_ns;       /* lock: how early the last one was to end */
    struct io_spin_slot spin;       /* lock, except spin.pushes (spin.h) */
    /* The deadlines the workers watch; its own lock (timer_queue.h). */
    struct io_timer_queue timers;
    /* Set at start: what a worker's turns left for the run threads goes
     * to them through this, before the worker waits and every few turns. */
    void (*flush)(void);
    unsigned count;                 /* threads running; set at start */
    pthread_t *threads;
};

int io__workers_start(struct io_workers *w, unsigned count, void (*flush)(void));
/* Stops and joins every worker; watches they held are dropped. */
void io__workers_stop(struct io_workers *w);
void io__workers_free(struct io_workers *w);
/* A watch with work: a worker gives it a turn soon. */
void io__workers_schedule(struct io_workers *w, struct io_watch *watch);
/* A watch whose fd would block: a turn once it is writable.  Returns 0,
 * or the errno value with which the kernel refused to watch the fd; the
 * workers do not hold the watch then. */
int io__workers_park(struct io_workers *w, struct io_watch *watch);
/* The owner of a watch the workers hold has set watch->urgent and waits
 * for them to let go.  Returns true when the watch was waiting in the
 * poller: it is the owner's again, at once.  Otherwise a turn sees soon
 * what the owner wants. */
bool io__workers_reclaim(struct io_workers *w, struct io_watch *watch);
/* The owner is about to close or hand back the watch's fd, which the
 * workers no longer hold. */
void io__workers_forget(struct io_workers *w, struct io_watch *watch);
/* An entry inserted into w->timers became the earliest: a leader asleep
 * in the poller wakes to sleep less.  No lock held. */
void io__workers_timers_changed(struct io_workers *w);

/* ------------------------------------------------------------------ */
/* write_op.c: one write and its buffers                               */
/* ------------------------------------------------------------------ */

/*
 * Where an op is in its life; changed only by op_step() in op_queue.c,
 * under the descriptor's lock.
 *   NEW       accepted by the initiating call, not queued yet
 *   QUEUED    in the descriptor's queue; no system call holds it
 *   IN_CALL   gathered into the worker's current system call
 *   IN_CALL_CANCEL_IF_UNTOUCHED
 *             the same, and it ends with op->error when the call returns
 *             if no byte of it has been written by then
 *   IN_CALL_CANCEL
 *             the same, and it ends with op->error when the call returns
 *             unless that call finished it
 *   DONE      out of the queue with its result, on its way to the strand
 */
enum io_op_state {
    IO_OP_NEW,
    IO_OP_QUEUED,
    IO_OP_IN_CALL,
    IO_OP_IN_CALL_CANCEL_IF_UNTOUCHED,
    IO_OP_IN_CALL_CANCEL,
    IO_OP_DONE,
};

/* What an op in a descriptor's queue does.  Writes are gathered into
 * one writev; a sendfile and a shutdown each take a system call of their
 * own when they reach the head. */
enum io_op_kind {
    IO_OP_WRITE_SOME,           /* async_write_some */
    IO_OP_WRITE,                /* async_write: every byte, never interleaved */
    IO_OP_SENDFILE,             /* async_sendfile: as async_write, from a file */
    IO_OP_SHUTDOWN,             /* async_shutdown: SHUT_WR after the ops before it */
};

/* One operation, from the initiating call to its handler.  The same node
 * sits in the descriptor's queue while pending, then in the strand's
 * queue as its completion: one allocation for the whole life of the
 * operation. */
struct io_write_op {
    struct io_task task;        /* its completion, once DONE */
    io_descriptor *d;
    union {
        io_write_handler write;     /* the writes and sendfile */
        io_wait_handler wait;       /* shutdown */
    } handler;
    void *arg;
    unsigned char kind;         /* enum io_op_kind */
    enum io_op_state state;     /* d->lock */
    io_cancel_signal *cancel;   /* d->lock: attached signal, or NULL */
    int error;                  /* the result once DONE; the cancel's error before */
    size_t total;               /* bytes asked for */
    size_t done;                /* bytes the kernel accepted */
    size_t gathered;            /* bytes of this op in the current system call */
    size_t iov_index;           /* first buffer not fully written */
    size_t iov_offset;          /* bytes of it already written */
    int in_fd;                  /* sendfile: the file, and where its bytes start */
    uint64_t offset;
    size_t iov_count;
    size_t iov_capacity;        /* room in iov[]: at least IO_OP_INLINE_IOVS */
    struct iovec iov[];         /* the caller's array, copied */
};

/* Whether op writes every byte or fails, never interleaved with others. */
static inline bool io__op_is_whole(const struct io_write_op *op)
{
    return op->kind == IO_OP_WRITE || op->kind == IO_OP_SENDFILE;
}

#define IO_OP_INLINE_IOVS 4

/* A context's spare small ops (write_op.c says why it is shared). */
#define IO_OP_CACHE_MAX 1024

struct io_op_cache {
    pthread_mutex_t lock;
    struct io_task_queue ops;   /* lock */
    size_t count;               /* lock */
};

int io__op_cache_init(struct io_op_cache *c);
void io__op_cache_free(struct io_op_cache *c);
/* An op with room for count buffers, from the cache when it is small and
 * the cache has one; NULL when memory runs out.  No lock held. */
struct io_write_op *io__write_op_take(struct io_op_cache *c, size_t count);
/* Takes back ops whose handlers have run: the small ones into the cache
 * while there is room, the rest to the allocator.  No lock held. */
void io__write_ops_give_back(struct io_op_cache *c, struct io_task_queue *ops);
/* The bytes of count buffers into *total; false when count or the sum is
 * more than a write can take (the caller says EINVAL). */
bool io__iovs_total(const struct iovec *bufs, size_t count, size_t *total);
void io__write_op_init(struct io_write_op *op, const struct iovec *bufs, size_t count,
                       size_t total, enum io_op_kind kind, io_write_handler handler, void *arg);
size_t io__write_op_gather(struct io_write_op *op, struct iovec *vec, size_t room,
                           size_t budget);
void io__write_op_advance(struct io_write_op *op, size_t n);
bool io__write_op_is_finished(const struct io_write_op *op);

/* ------------------------------------------------------------------ */
/* context.c: the ready queue, run threads, work count, registry       */
/* ------------------------------------------------------------------ */

/* A link in the context's registry of every strand and descriptor not yet
 * freed (ctx->lock), and what context destroy does with each. */
struct io_member;

struct io_member_type {
    /* With the workers stopped: complete pending operations, close fds.
     * Never frees a member.  May be NULL. */
    void (*shutdown)(struct io_member *m);
    /* Frees the object as it is, without following its references: every
     * other member is freed in the same walk. */
    void (*free)(struct io_member *m);
};

struct io_member {
    struct io_member *prev, *next;
    const struct io_member_type *type;
};

struct io_context {
    pthread_mutex_t lock;
    pthread_cond_t ready_cond;          /* run threads wait here for work */
    struct io_task_queue ready;         /* lock: handlers and strands */
    struct io_node_cache spare_nodes;   /* lock */
    struct io_member *members;          /* lock: every strand and descriptor */
    uint64_t *claimed_fds;              /* lock: bit per fd an open descriptor holds */
    size_t claimed_words;               /* lock */
    unsigned idle_runners;              /* lock: threads in pthread_cond_wait */
    unsigned worker_threads;            /* from the options; set at create */

    /* Written under lock, read anywhere: run threads look at it between
     * two handlers of a strand batch without taking the lock. */
    atomic_bool stopped;

    /* Set when destroy begins: writes started from then on (by handlers
     * that destroy runs) complete at once with ECANCELED. */
    atomic_bool shutting_down;

    /* The work that keeps run() from returning: plain handlers queued or
     * running, + strands that are scheduled (one unit each, however many
     * handlers they hold), + pending operations + work_started.  A unit
     * is dropped only after the handler returns or the run thread finds
     * the strand empty. */
    atomic_size_t outstanding_work;

    struct io_workers workers;
    struct io_op_cache op_cache;        /* spare write ops, its own lock */

    struct {
        atomic_uint_fast64_t ops_started;
        atomic_uint_fast64_t ops_completed;
        atomic_uint_fast64_t writev_calls;
        atomic_uint_fast64_t bytes_written;
        atomic_uint_fast64_t would_block;
        atomic_uint_fast64_t handlers_run;
    } stats;
};

void io__context_add_work(io_context *ctx, size_t n);
void io__context_finish_work(io_context *ctx, size_t n);
/* Adds m, of the given type, to ctx's registry, or takes it out. */
void io__context_adopt(io_context *ctx, struct io_member *m, const struct io_member_type *type);
void io__context_forget(io_context *ctx, struct io_member *m);
/* An open descriptor of ctx takes fd: 0, EEXIST when one already holds
 * it, or ENOMEM.  unclaim gives it up (close, release, shutdown). */
int io__context_claim_fd(io_context *ctx, int fd);
void io__context_unclaim_fd(io_context *ctx, int fd);
/* Queues a task for the run threads and wakes one; on a thread that
 * defers its pushes, only queues it until the next flush. */
void io__context_push_ready(io_context *ctx, struct io_task *t);
/* The calling thread (a worker, in its turn) defers its pushes to ctx
 * until it calls io__context_flush_pushes, which it must do before it
 * waits for anything. */
void io__context_defer_pushes(io_context *ctx);
void io__context_flush_pushes(void);
bool io__context_is_stopped(io_context *ctx);

/* ------------------------------------------------------------------ */
/* strand.c                                                            */
/* ------------------------------------------------------------------ */

struct io_strand {
    struct io_task ready_task;          /* on ctx->ready while scheduled */
    io_context *ctx;
    pthread_mutex_t *lock;              /* its own, or its descriptor's */
    struct io_task_queue handlers;      /* *lock */

    /* *lock: true from the post that finds the strand idle until a run
     * thread finds its queue empty; while true the strand is on the ready
     * queue or in a run thread's hands, never both, so no two threads run
     * its handlers, and it counts as one unit of outstanding work and
     * holds one reference. */
    bool scheduled;
    bool is_private;                    /* a descriptor's own (strand.c) */

    /* The count that keeps the strand alive (a user strand's own, or its
     * descriptor's), and what frees it when that reaches zero. */
    atomic_uint *refs;
    void (*last_ref)(io_strand *s);
};

/* A descriptor's private strand, inside the descriptor: it uses the
 * descriptor's lock and reference count; last_ref frees the descriptor. */
void io__strand_init_private(io_strand *s, io_context *ctx, pthread_mutex_t *lock,
                             atomic_uint *refs, void (*last_ref)(io_strand *s));
void io__strand_retain(io_strand *s);
void io__strand_release(io_strand *s);

/* Appends finished operations (tasks whose type runs their handler) to the
 * strand's queue in one step, scheduling the strand if it was idle.  held
 * is a lock the caller holds: when it is the strand's, it is not taken
 * again. */
void io__strand_push_completions(io_strand *s, struct io_task_queue *done,
                                 const pthread_mutex_t *held);

/* ------------------------------------------------------------------ */
/* cancel.c                                                            */
/* ------------------------------------------------------------------ */

/* What a signal knows of the owner of its operation (a descriptor). */
struct io_cancel_owner_ops {
    /* Keep the owner alive across emit, without any lock held. */
    void (*pin)(void *owner);
    void (*unpin)(void *owner);
    /* An emit of type (0: only detach sig) on the operation sig was
     * attached to, if it still is (io__cancel_signal_op, under the
     * owner's lock). */
    void (*emit)(void *owner, io_cancel_signal *sig, unsigned type);
};

/* An operation, its owner, and how to reach the owner. */
struct io_cancel_attachment {
    const struct io_cancel_owner_ops *ops;
    void *owner;
    void *op;
};

/* attach and detach are called with the owner's lock held. */
int io__cancel_signal_attach(io_cancel_signal *sig, struct io_cancel_attachment a);
bool io__cancel_signal_is_busy(io_cancel_signal *sig);
void io__cancel_signal_detach(io_cancel_signal *sig);
/* The operation sig is attached to, if owner owns it; else NULL. */
void *io__cancel_signal_op(io_cancel_signal *sig, const void *owner);

/* ------------------------------------------------------------------ */
/* the descriptor's data (its functions are in descriptor.c)           */
/* ------------------------------------------------------------------ */

/* What a descriptor is; it decides the system call (sendmsg for sockets),
 * what EPIPE leaves behind (a SIGPIPE to consume, for the others), and
 * whether ops may share a call (not on message sockets, where a call is
 * a message). */
enum io_fd_kind {
    IO_FD_SOCKET,       /* a stream socket */
    IO_FD_MESSAGE_SOCKET,   /* datagram or seqpacket: one op, one message */
    IO_FD_PIPE,         /* pipe or FIFO */
    IO_FD_TTY,
    IO_FD_FILE,         /* regular file: always writable, writev may block */
    IO_FD_CHAR,         /* character device other than a tty */
    IO_FD_OTHER,
};

/* A descriptor's send timeout (send_timeout.c), allocated by the first
 * io_descriptor_set_send_timeout that sets one. */
struct io_send_timeout {
    struct io_timer_entry entry;        /* the timer queue's lock */
    struct io_task fire;                /* run once the entry fell due */
    io_descriptor *d;
    uint64_t timeout;                   /* d->lock: ns, 0 for none */
    bool armed;                         /* d->lock: the entry holds a reference */
};

extern const struct io_timer_entry_type io_send_timeout_entry_type;

/* A descriptor's water marks (watermark.c), allocated by the first
 * io_descriptor_set_watermarks with a handler. */
#define IO_WATERMARK_SPARES_MAX 4

struct io_watermark_event {
    struct io_task task;                /* on the strand, or in the pool */
    io_descriptor *d;
    io_watermark_handler handler;
    void *arg;
    bool above;
    size_t queued;
};

struct io_watermarks {                  /* all d->lock */
    size_t low, high;
    io_watermark_handler handler;       /* NULL: none */
    void *arg;
    bool above;                         /* "above" told, "below" not yet */
    io_watermark_handler told;          /* who was told "above" */
    void *told_arg;
    struct io_task_queue spare;         /* event nodes */
    size_t spares;
};

struct io_descriptor {
    /* What the workers see: watch.fd is the fd they write and poll; it
     * changes only while the workers do not hold the descriptor. */
    struct io_watch watch;              /* workers->lock, while scheduled */
    io_strand *strand;                  /* completions go here: own_strand,
                                         * or a user strand with a ref held */
    pthread_mutex_t lock;
    pthread_cond_t *released;           /* lock: a detaching thread waits on it */
    struct io_task_queue ops;           /* lock: pending ops, in start order */
    atomic_size_t queued_bytes;
    atomic_int public_fd;               /* watch.fd until closed or released, then -1 */
    atomic_uint refs;                   /* user + ops + scheduled + own_strand scheduled
                                         * + an armed send timeout */
    uint64_t progress_at;               /* lock: the send timeout's clock starts here */
    struct io_send_timeout *send_timeout;   /* lock: NULL until one is set */
    struct io_watermarks *watermarks;   /* lock: NULL until set */
    int saved_flags;                    /* file status flags before create */
    unsigned char kind;                 /* enum io_fd_kind */
    bool scheduled;                     /* lock: the workers hold it */
    bool detaching;                     /* lock: close/release waits for the workers */
    bool write_shut;                    /* lock: an async_shutdown has run */
    struct io_member member;            /* ctx->lock: in ctx->members */
    struct io_strand own_strand;        /* the private one, when none was given */
};

static inline bool io__descriptor_is_socket(const io_descriptor *d)
{
    return d->kind == IO_FD_SOCKET || d->kind == IO_FD_MESSAGE_SOCKET;
}

/* The context of a descriptor: its strand's. */
static inline io_context *io__descriptor_ctx(const io_descriptor *d)
{
    return d->strand->ctx;
}

/* ------------------------------------------------------------------ */
/* op_queue.c: a descriptor's pending ops and their state machine      */
/* ------------------------------------------------------------------ */

/* All of these are called with d->lock held.  Ops that end go to the
 * caller's done queue; io__op_queue_hand_over_locked passes them to the
 * strand, and the caller calls it before it lets go of d->lock. */

/* Queues a NEW op at the tail: it is pending from now on.  Returns true
 * when it is the only one (the send timeout's clock starts). */
bool io__op_queue_push_locked(io_descriptor *d, struct io_write_op *op);
/* Ends a NEW op at once with error (0: it asked for no byte), never
 * queued; still through the strand, never inside the initiating call. */
void io__op_queue_end_at_once_locked(io_descriptor *d, struct io_write_op *op, int error,
                                     struct io_task_queue *done);
/* Ends the ops at the head that have nothing left to write. */
void io__op_queue_end_finished_head_locked(io_descriptor *d, struct io_task_queue *done);

/* What one system call was given. */
struct io_gathered {
    size_t buffers;
    size_t ops;
    size_t bytes;
    /* A sendfile or shutdown at the head, alone in its call (buffers 0). */
    struct io_write_op *alone;
    /* The writes gathered end right before a sendfile: on a TCP socket
     * they go with MSG_MORE, so that they and the file share packets. */
    bool sendfile_next;
};

/* Gathers ops from the head, in order, into vec (IOV_MAX entries) for one
 * system call: at most budget bytes, one op only if one_op, never past an
 * op it could not take whole, and never a sendfile or shutdown with
 * anything else.  They are IN_CALL until the call returns. */
struct io_gathered io__op_queue_gather_locked(io_descriptor *d, struct iovec *vec,
                                              size_t budget, bool one_op);
/* What a system call said. */
struct io_call_result {
    size_t written;     /* bytes the kernel accepted */
    int error;          /* 0, or the error that fails the head op */
};

/* The call returned: credits the written bytes to the gathered ops in
 * order, ends those that are finished or were cancelled meanwhile, and
 * fails the head op with the error, if any. */
void io__op_queue_call_returned_locked(io_descriptor *d, struct io_call_result result,
                                       struct io_task_queue *done);
/* The shutdown at the head has run (error: shutdown's): it ends, and so
 * does every op queued behind it, with EPIPE; later ones too. */
void io__op_queue_shutdown_ran_locked(io_descriptor *d, int error, struct io_task_queue *done);
/* Ends every pending op with error; one in a call ends when it returns. */
void io__op_queue_cancel_all_locked(io_descriptor *d, int error, struct io_task_queue *done);
/* An emit of a cancel signal of type on op, one of d's pending ops. */
void io__op_queue_emit_locked(io_descriptor *d, struct io_write_op *op, unsigned type,
                              struct io_task_queue *done);
/* Hands the ended ops to d's strand, in the order they ended, and after
 * them the water-mark event the change calls for, if any. */
void io__op_queue_hand_over_locked(io_descriptor *d, struct io_task_queue *done);

/* ------------------------------------------------------------------ */
/* write_turn.c: a worker's turn on a descriptor                       */
/* ------------------------------------------------------------------ */

enum io_turn_end {
    IO_TURN_IDLE,       /* nothing left to write */
    IO_TURN_READY,      /* the turn's budget is spent; more to write */
    IO_TURN_PARKED,     /* the fd would block: wait until it is writable */
    IO_TURN_DETACH,     /* a close or release waits for the workers */
};

/* Writes d's ops from the head until one of the ends above.  Called and
 * returns with d->lock held; drops it around each system call, after
 * handing over what ended; what ends last is left in done.  scratch holds
 * IOV_MAX entries. */
enum io_turn_end io__write_turn_locked(io_descriptor *d, struct iovec *scratch,
                                      struct io_task_queue *done);

/* ------------------------------------------------------------------ */
/* send_timeout.c: a descriptor's send timeout                        */
/* ------------------------------------------------------------------ */

/* All but io__send_timeout_fired are called with d->lock held. */

/* The descriptor got its first pending op: the clock runs. */
void io__send_timeout_started_locked(io_descriptor *d);
/* A new timeout (0: none) takes effect, for the wait in progress too;
 * d->send_timeout is allocated. */
void io__send_timeout_set_locked(io_descriptor *d, uint64_t timeout);
/* The descriptor is closed or released, or its context shuts down: the
 * entry leaves the heap.  Returns the references to drop (0 or 1). */
unsigned io__send_timeout_stop_locked(io_descriptor *d);
/* The entry fell due (from its fire task, no lock held): times the ops
 * out, or puts the entry back at a later deadline.  Returns the
 * references to drop (0 or 1). */
unsigned io__send_timeout_fired(io_descriptor *d);

/* ------------------------------------------------------------------ */
/* watermark.c: a descriptor's water marks                             */
/* ------------------------------------------------------------------ */

/* All called with d->lock held. */

/* Event nodes the pool lacks for want of them (0 without marks, unless
 * setting: marks are being set). */
size_t io__watermarks_missing_nodes_locked(const io_descriptor *d, size_t want, bool setting);
/* Adds nodes to the pool up to its cap; leaves the rest in nodes. */
void io__watermarks_add_nodes_locked(io_descriptor *d, struct io_task_queue *nodes);
/* Queues onto done the event a crossing of the marks calls for. */
void io__watermarks_check_locked(io_descriptor *d, struct io_task_queue *done);
/* New marks (handler NULL: none); an "above" outstanding gets its
 * "below" on done, which the caller hands to the strand before a
 * hand-over checks the new marks.  d->watermarks is allocated. */
void io__watermarks_set_locked(io_descriptor *d, size_t low, size_t high,
                               io_watermark_handler handler, void *arg,
                               struct io_task_queue *done);

#endif /* IOCTX_INTERNAL_H */
