/*
 * timer_queue.c - the heap of deadlines the workers watch.  What it holds
 * and who may touch it under which lock: timer_queue.h.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "timer_queue.h"

/* The array never shrinks below this many slots. */
#define IO_TIMER_HEAP_MIN 16

static void free_spares(struct io_timer_spare *s)
{
    while (s != NULL) {
        struct io_timer_spare *next = s->next;

        io__free(s);
        s = next;
    }
}

uint64_t io__clock_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int io__timer_queue_init(struct io_timer_queue *q)
{
    q->heap = NULL;
    q->count = 0;
    q->capacity = 0;
    q->reserved = 0;
    q->next_order = 0;
    q->spares = NULL;
    q->spare_count = 0;
    atomic_init(&q->earliest, UINT64_MAX);
    atomic_init(&q->earliest_punctual, false);
    return pthread_mutex_init(&q->lock, NULL);
}

void io__timer_queue_free(struct io_timer_queue *q)
{
    free_spares(q->spares);
    io__free(q->heap);
    pthread_mutex_destroy(&q->lock);
}

static bool is_before(const struct io_timer_entry *a, const struct io_timer_entry *b)
{
    return a->expiry < b->expiry || (a->expiry == b->expiry && a->order < b->order);
}

static void place(struct io_timer_queue *q, size_t i, struct io_timer_entry *e)
{
    q->heap[i] = e;
    e->index = i;
}

static void sift_up(struct io_timer_queue *q, size_t i)
{
    struct io_timer_entry *e = q->heap[i];

    while (i > 0 && is_before(e, q->heap[(i - 1) / 2])) {
        place(q, i, q->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    place(q, i, e);
}

static void sift_down(struct io_timer_queue *q, size_t i)
{
    struct io_timer_entry *e = q->heap[i];

    for (;;) {
        size_t child = 2 * i + 1;

        if (child >= q->count)
            break;
        if (child + 1 < q->count && is_before(q->heap[child + 1], q->heap[child]))
            child++;
        if (!is_before(q->heap[child], e))
            break;
        place(q, i, q->heap[child]);
        i = child;
    }
    place(q, i, e);
}

static void publish_earliest_locked(struct io_timer_queue *q)
{
    atomic_store_explicit(&q->earliest_punctual, q->count > 0 && q->heap[0]->type->punctual,
                          memory_order_relaxed);
    atomic_store_explicit(&q->earliest, q->count > 0 ? q->heap[0]->expiry : UINT64_MAX,
                          memory_order_release);
}

/* A new array of capacity slots holding the heap, or NULL. */
static struct io_timer_entry **new_array(size_t capacity)
{
    if (capacity > SIZE_MAX / sizeof(struct io_timer_entry *))
        return NULL;
    return io__alloc(capacity * sizeof(struct io_timer_entry *));
}

/* Moves the heap into array (capacity slots) and returns the old one.
 * Called with q->lock held; the heap fits. */
static struct io_timer_entry **swap_array_locked(struct io_timer_queue *q,
                                                 struct io_timer_entry **array, size_t capacity)
{
    struct io_timer_entry **old = q->heap;

    if (q->count > 0)
        memcpy(array, q->heap, q->count * sizeof(struct io_timer_entry *));
    q->heap = array;
    q->capacity = capacity;
    return old;
}

int io__timer_queue_reserve(struct io_timer_queue *q, size_t n)
{
    for (;;) {
        struct io_timer_entry **array, **spare;
        size_t need, capacity;

        pthread_mutex_lock(&q->lock);
        need = q->reserved + n;
        if (need >= q->reserved && need <= q->capacity) {
            q->reserved = need;
            pthread_mutex_unlock(&q->lock);
            return 0;
        }
        capacity = q->capacity > IO_TIMER_HEAP_MIN ? q->capacity : IO_TIMER_HEAP_MIN;
        pthread_mutex_unlock(&q->lock);
        if (need < n)
            return ENOMEM;
        while (capacity < need && capacity <= SIZE_MAX / 2)
            capacity *= 2;
        /* The allocator is called with no lock held; the queue may have
         * changed meanwhile, so look again. */
        array = new_array(capacity);
        if (array == NULL)
            return ENOMEM;
        pthread_mutex_lock(&q->lock);
        need = q->reserved + n;
        spare = array;
        if (need <= q->capacity) {
            q->reserved = need;
        } else if (need <= capacity) {
            spare = swap_array_locked(q, array, capacity);
            q->reserved = need;
        } else {
            need = 0;           /* grew past this array meanwhile: again */
        }
        pthread_mutex_unlock(&q->lock);
        io__free(spare);
        if (need != 0)
            return 0;
    }
}

/* Keeps what the cap allows of the list spares; returns the rest.
 * q->lock held. */
static struct io_timer_spare *keep_spares_locked(struct io_timer_queue *q,
                                                 struct io_timer_spare *spares)
{
    while (spares != NULL && q->spare_count < IO_TIMER_SPARES_MAX) {
        struct io_timer_spare *next = spares->next;

        spares->next = q->spares;
        q->spares = spares;
        q->spare_count++;
        spares = next;
    }
    return spares;
}

void io__timer_queue_unreserve(struct io_timer_queue *q, size_t n, struct io_timer_spare *spares)
{
    struct io_timer_entry **array, **unused;
    size_t capacity;
    bool shrink;

    pthread_mutex_lock(&q->lock);
    q->reserved -= n;
    spares = keep_spares_locked(q, spares);
    capacity = q->capacity / 2;
    shrink = capacity >= IO_TIMER_HEAP_MIN && q->reserved <= capacity / 2;
    pthread_mutex_unlock(&q->lock);
    free_spares(spares);
    if (!shrink)
        return;
    /* Down to a quarter: halve the array, with no lock held; a failure
     * only keeps the larger one. */
    array = new_array(capacity);
    if (array == NULL)
        return;
    pthread_mutex_lock(&q->lock);
    unused = array;
    if (q->reserved <= capacity / 2 && q->capacity > capacity)
        unused = swap_array_locked(q, array, capacity);
    pthread_mutex_unlock(&q->lock);
    io__free(unused);
}

bool io__timer_queue_insert_locked(struct io_timer_queue *q, struct io_timer_entry *e,
                                   uint64_t expiry)
{
    e->expiry = expiry;
    e->order = q->next_order++;
    place(q, q->count++, e);
    sift_up(q, e->index);
    if (q->heap[0] != e)
        return false;
    publish_earliest_locked(q);
    return true;
}

bool io__timer_queue_remove_locked(struct io_timer_queue *q, struct io_timer_entry *e)
{
    size_t i = e->index;
    struct io_timer_entry *last;

    if (i == IO_TIMER_NOT_QUEUED)
        return false;
    e->index = IO_TIMER_NOT_QUEUED;
    last = q->heap[--q->count];
    if (i < q->count) {
        place(q, i, last);
        if (i > 0 && is_before(last, q->heap[(i - 1) / 2]))
            sift_up(q, i);
        else
            sift_down(q, i);
    }
    if (i == 0)
        publish_earliest_locked(q);
    return true;
}

void io__timer_queue_expire(struct io_timer_queue *q, uint64_t now)
{
    struct io_task_queue later = IO_TASK_QUEUE_INIT;
    struct io_task *t;

    pthread_mutex_lock(&q->lock);
    while (q->count > 0 && q->heap[0]->expiry <= now) {
        struct io_timer_entry *e = q->heap[0];

        io__timer_queue_remove_locked(q, e);
        e->type->expired_locked(e, &later);
    }
    pthread_mutex_unlock(&q->lock);
    while ((t = io_task_queue_pop(&later)) != NULL) {
        struct io_run run = { .budget = 1 };

        t->type->run(t, &run);
    }
}
