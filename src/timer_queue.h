/*
 * timer_queue.h - the deadlines the workers watch: every pending timer
 * wait and every descriptor whose send timeout runs, ordered by when they
 * are due.
 *
 * A binary min-heap in an array, keyed by (expiry, start order), each
 * entry knowing its own index, so that insert, remove and pop are
 * O(log n) and a cancel needs no search.  Entries are intrusive (a timer
 * wait or a descriptor's send timeout holds its struct io_timer_entry), so
 * the queue allocates only its array, and never while an entry goes in:
 * whoever may insert reserves a slot first (io__timer_queue_reserve, no
 * lock held), and gives it back when it will insert no more.  The array
 * shrinks when the reservations fall to a quarter of it, so a burst of
 * timers leaves no large array behind.
 *
 * The queue also keeps the blocks of timer waits that have ended, up to
 * IO_TIMER_SPARES_MAX, for the next waits to start in: they come back
 * with the reservation (io__timer_queue_unreserve), and a start takes one
 * under the lock it takes anyway, so a steady stream of waits allocates
 * nothing (start + cancel with 1,000 timers: malloc, and free from
 * another thread, took a third of the time per start).
 *
 * Data and locking:
 *   q->lock guards the heap, the entries' expiry, order and index, the
 *   reservation count, the start counter and the spare blocks.
 *   q->earliest mirrors the expiry of the heap's top (UINT64_MAX when
 *   empty), and q->earliest_punctual its type's punctual: written under
 *   the lock, read without it by the workers, who sleep until then.  Lock
 *   order: a descriptor's lock, then q->lock, then (when an expired wait
 *   is handed to its strand) the strand's lock and the context's lock.
 *   Nothing takes q->lock while holding the workers' lock or a strand's.
 */
#ifndef IOCTX_TIMER_QUEUE_H
#define IOCTX_TIMER_QUEUE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "task_queue.h"

#define IO_TIMER_NOT_QUEUED SIZE_MAX

struct io_timer_entry;

struct io_timer_entry_type {
    /*
     * The entry is due and out of the heap.  Called with q->lock held, in
     * the order the entries fell due.  Either finishes it there, or puts
     * it on later (through its own task, whose type's run is then called
     * after q->lock is released, in the same order) when finishing it
     * needs a lock that must not be taken under q->lock.
     */
    void (*expired_locked)(struct io_timer_entry *e, struct io_task_queue *later);
    /* Whether its handler should run on the dot: the workers then spend
     * a few microseconds watching before the expiry (worker.c).  A send
     * timeout does without. */
    bool punctual;
};

struct io_timer_entry {
    uint64_t expiry;            /* q->lock */
    uint64_t order;             /* q->lock: start order, for ties */
    size_t index;               /* q->lock: in the heap, or IO_TIMER_NOT_QUEUED */
    const struct io_timer_entry_type *type;
};

/* Spare blocks kept at most: about 26 KiB of timer waits per context. */
#define IO_TIMER_SPARES_MAX 256

/* A spare block: its first bytes link it while it waits in the queue. */
struct io_timer_spare {
    struct io_timer_spare *next;
};

struct io_timer_queue {
    pthread_mutex_t lock;
    struct io_timer_entry **heap;
    size_t count;
    size_t capacity;
    size_t reserved;            /* slots promised: count <= reserved <= capacity */
    uint64_t next_order;
    struct io_timer_spare *spares;
    size_t spare_count;
    atomic_uint_fast64_t earliest;
    atomic_bool earliest_punctual;  /* the type of the heap's top says so */
};

/* The timers' clock: CLOCK_MONOTONIC in nanoseconds. */
uint64_t io__clock_now(void);

int io__timer_queue_init(struct io_timer_queue *q);
void io__timer_queue_free(struct io_timer_queue *q);

static inline void io__timer_entry_init(struct io_timer_entry *e,
                                        const struct io_timer_entry_type *type)
{
    e->expiry = 0;
    e->order = 0;
    e->index = IO_TIMER_NOT_QUEUED;
    e->type = type;
}

/* Promises room for n more entries; 0 or ENOMEM.  No lock held. */
int io__timer_queue_reserve(struct io_timer_queue *q, size_t n);
/* The same for one entry, with q->lock held: false when the array has
 * no room left, and the caller must release the lock and reserve. */
static inline bool io__timer_queue_try_reserve_locked(struct io_timer_queue *q)
{
    if (q->reserved >= q->capacity)
        return false;
    q->reserved++;
    return true;
}

/* Takes back n promises, and keeps the blocks on the list spares (may be
 * NULL; io__alloc'ed, of the one size of a timer wait) for the next
 * starts, freeing those beyond the cap.  No lock held. */
void io__timer_queue_unreserve(struct io_timer_queue *q, size_t n, struct io_timer_spare *spares);

/* A spare block to start a wait in, or NULL.  q->lock held. */
static inline void *io__timer_queue_take_spare_locked(struct io_timer_queue *q)
{
    struct io_timer_spare *s = q->spares;

    if (s != NULL) {
        q->spares = s->next;
        q->spare_count--;
    }
    return s;
}

/* Inserts e, not queued, due at expiry, after every entry already due
 * then; uses one reserved slot's room (the reservation stays).  Returns
 * true when e is now the earliest: the workers must be told
 * (io__workers_timers_changed). */
bool io__timer_queue_insert_locked(struct io_timer_queue *q, struct io_timer_entry *e,
                                   uint64_t expiry);
/* Takes e out; false when it was not queued. */
bool io__timer_queue_remove_locked(struct io_timer_queue *q, struct io_timer_entry *e);

/* When the earliest entry is due; UINT64_MAX when there is none.  No
 * lock needed. */
static inline uint64_t io__timer_queue_earliest(struct io_timer_queue *q)
{
    return atomic_load_explicit(&q->earliest, memory_order_acquire);
}

/* Whether the earliest entry is punctual (its type's).  No lock needed. */
static inline bool io__timer_queue_earliest_punctual(struct io_timer_queue *q)
{
    return atomic_load_explicit(&q->earliest_punctual, memory_order_relaxed);
}

/* Hands every entry due at now to its type, in order.  No lock held. */
void io__timer_queue_expire(struct io_timer_queue *q, uint64_t now);

#endif /* IOCTX_TIMER_QUEUE_H */
