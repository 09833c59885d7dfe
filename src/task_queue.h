/*
 * task_queue.h - the intrusive FIFO that carries every queued handler.
 *
 * A task is a link embedded in the object it describes (a posted handler's
 * node, a strand waiting for a run thread, later a finished write), so
 * queueing never allocates and never fails.  The queue itself has no lock:
 * each queue is owned by whoever owns its lock (ctx->lock for the ready
 * queue, strand->lock for a strand's handlers), or is a thread's local
 * batch taken out under that lock.
 */
#ifndef IOCTX_TASK_QUEUE_H
#define IOCTX_TASK_QUEUE_H

#include <stddef.h>

enum io_task_kind {
    IO_TASK_HANDLER,    /* a struct io_handler_node: fn(arg) */
    IO_TASK_STRAND,     /* a strand with handlers to run */
    IO_TASK_WRITE,      /* a struct io_write_op: pending, then its completion */
    IO_TASK_DESCRIPTOR, /* a descriptor waiting for a worker */
};

struct io_task {
    struct io_task *next;       /* owned by the queue that holds the task */
    enum io_task_kind kind;
};

struct io_task_queue {
    struct io_task *head;
    struct io_task *tail;
};

#define IO_TASK_QUEUE_INIT { NULL, NULL }

#define io_container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

static inline int io_task_queue_is_empty(const struct io_task_queue *q)
{
    return q->head == NULL;
}

static inline void io_task_queue_push(struct io_task_queue *q, struct io_task *t)
{
    t->next = NULL;
    if (q->tail != NULL)
        q->tail->next = t;
    else
        q->head = t;
    q->tail = t;
}

static inline struct io_task *io_task_queue_pop(struct io_task_queue *q)
{
    struct io_task *t = q->head;

    if (t != NULL) {
        q->head = t->next;
        if (q->head == NULL)
            q->tail = NULL;
        t->next = NULL;
    }
    return t;
}

/* Moves all of src to the tail of dst in O(1): grab a batch under a lock,
 * work through it after unlocking. */
static inline void io_task_queue_splice(struct io_task_queue *dst,
                                        struct io_task_queue *src)
{
    if (src->head == NULL)
        return;
    if (dst->tail != NULL)
        dst->tail->next = src->head;
    else
        dst->head = src->head;
    dst->tail = src->tail;
    src->head = src->tail = NULL;
}

/* Moves all of src in front of dst in O(1): hands back the unrun rest of a
 * batch so that it still runs before anything queued since. */
static inline void io_task_queue_prepend(struct io_task_queue *dst,
                                         struct io_task_queue *src)
{
    if (src->head == NULL)
        return;
    src->tail->next = dst->head;
    if (dst->tail == NULL)
        dst->tail = src->tail;
    dst->head = src->head;
    src->head = src->tail = NULL;
}

#endif /* IOCTX_TASK_QUEUE_H */
