/*
 * task_queue.h - the intrusive FIFO that carries every queued handler, and
 * the type that says how to run what it carries.
 *
 * A task is a link embedded in the object it describes (a posted handler's
 * node, a strand waiting for a run thread, a finished write), so queueing
 * never allocates and never fails.  Whoever runs a queue runs each task
 * through its type and never needs to know what the task is: a strand runs
 * finished writes without knowing write ops, and the context runs strands
 * without knowing strands.
 *
 * The queue itself has no lock: each queue is owned by whoever owns its
 * lock (ctx->lock for the ready queue, strand->lock for a strand's
 * handlers), or is a thread's local batch taken out under that lock.
 */
#ifndef IOCTX_TASK_QUEUE_H
#define IOCTX_TASK_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

struct io_task;
struct io_task_queue;

/* What a run thread passes to a task it runs. */
struct io_run {
    size_t budget;      /* handlers the task may run: at least 1 */
    bool ignore_stop;   /* inside context destroy: run even when stopped */
    bool again;         /* set by a task that still has handlers to run */
};

struct io_task_type {
    /* Runs the task's handler (a group of them: up to run->budget) with no
     * lock held, on the calling run thread, and returns how many ran.  A
     * task that still has handlers sets run->again and is queued again by
     * the caller; any other task has ended. */
    size_t (*run)(struct io_task *t, struct io_run *run);

    /* Takes back tasks of this type that have ended, all at once after a
     * batch (one lock per batch instead of one per task).  NULL for a task
     * whose queue's owner keeps it (a posted handler's node). */
    void (*recycle)(struct io_task_queue *ended);
};

struct io_task {
    struct io_task *next;               /* owned by the queue that holds it */
    const struct io_task_type *type;    /* NULL for a link that is never run */
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

/* Takes t out of q, wherever it is; prev is the task before it (NULL
 * when t is the head), which the caller found walking q. */
static inline void io_task_queue_remove(struct io_task_queue *q, struct io_task *prev,
                                        struct io_task *t)
{
    if (prev == NULL)
        q->head = t->next;
    else
        prev->next = t->next;
    if (q->tail == t)
        q->tail = prev;
    t->next = NULL;
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

/* Hands each run of tasks of one type at the head of ended to that type's
 * recycle, until ended is empty.  Every task in it has a recycle. */
static inline void io_task_queue_recycle(struct io_task_queue *ended)
{
    while (ended->head != NULL) {
        struct io_task_queue same = IO_TASK_QUEUE_INIT;
        const struct io_task_type *type = ended->head->type;

        while (ended->head != NULL && ended->head->type == type)
            io_task_queue_push(&same, io_task_queue_pop(ended));
        type->recycle(&same);
    }
}

#endif /* IOCTX_TASK_QUEUE_H */
