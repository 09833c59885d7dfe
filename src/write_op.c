/*
 * write_op.c - one write operation: the caller's iovec array, copied, and
 * how far the kernel has got through it.
 *
 * Memory: one allocation per op, with room for IO_OP_INLINE_IOVS buffers
 * at least.  An op that small goes back, once its handler has run, to its
 * context's cache (struct io_op_cache), shared by all the context's
 * descriptors and capped at IO_OP_CACHE_MAX: steady-state writes of a few
 * buffers allocate nothing, and the memory a burst took goes back to the
 * allocator, whatever the number of descriptors.  The cache has its own
 * lock, taken once per op by the initiating call and once per batch of
 * finished ops by a run thread, never with another lock held.
 *
 * Data and locking: an op belongs to its descriptor's queue and is touched
 * under d->lock, except by the worker that gathered it into a system call,
 * which reads its buffers without the lock while the op is IN_CALL
 * (nobody else moves such an op).  After it ends it belongs to the strand
 * that runs its handler.  No locks here; op_queue.c owns op->state.
 */
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

/* An op can hold at least this many buffers inline; one of that size is
 * recycled by its descriptor instead of going back to the allocator. */
static size_t capacity_for(size_t count)
{
    return count > IO_OP_INLINE_IOVS ? count : IO_OP_INLINE_IOVS;
}

/* Room for count buffers; NULL when memory runs out (or count is absurd). */
static struct io_write_op *alloc_op(size_t count)
{
    size_t capacity = capacity_for(count);
    struct io_write_op *op;

    if (capacity > (SIZE_MAX - sizeof(*op)) / sizeof(struct iovec))
        return NULL;
    op = io__alloc(sizeof(*op) + capacity * sizeof(struct iovec));
    if (op != NULL)
        op->iov_capacity = capacity;
    return op;
}

/* The bytes of count buffers, in *total; false when they could not be
 * real memory (the array or the sum too large for the op to hold). */
bool io__iovs_total(const struct iovec *bufs, size_t count, size_t *total)
{
    size_t sum = 0;

    /* So many that the op could not even hold the array. */
    if (count > (SIZE_MAX - sizeof(struct io_write_op)) / sizeof(struct iovec))
        return false;
    for (size_t i = 0; i < count; i++) {
        /* More than one system call can report (SSIZE_MAX) cannot be
         * real memory, and would wrap the queued-bytes count. */
        if (bufs[i].iov_len > (size_t)SSIZE_MAX - sum)
            return false;
        sum += bufs[i].iov_len;
    }
    *total = sum;
    return true;
}

/* Copies the array, not the data: the caller keeps the buffers valid until
 * the handler runs, as in Asio.  op has room for count buffers. */
/* NOLINTNEXTLINE(bugprone-easily-swappable-parameters): count buffers, total bytes */
void io__write_op_init(struct io_write_op *op, const struct iovec *bufs, size_t count,
                       size_t total, enum io_op_kind kind, io_write_handler handler, void *arg)
{
    size_t capacity = op->iov_capacity;

    *op = (struct io_write_op){
        .state = IO_OP_NEW,
        .handler.write = handler,
        .arg = arg,
        .kind = (unsigned char)kind,
        .in_fd = -1,
        .iov_count = count,
        .iov_capacity = capacity,
    };
    if (count > 0)
        memcpy(op->iov, bufs, count * sizeof(struct iovec));
    op->total = total;
}

int io__op_cache_init(struct io_op_cache *c)
{
    c->ops = (struct io_task_queue)IO_TASK_QUEUE_INIT;
    c->count = 0;
    return pthread_mutex_init(&c->lock, NULL);
}

static void free_ops(struct io_task_queue *ops)
{
    struct io_task *t;

    while ((t = io_task_queue_pop(ops)) != NULL)
        io__free(io_container_of(t, struct io_write_op, task));
}

void io__op_cache_free(struct io_op_cache *c)
{
    free_ops(&c->ops);
    pthread_mutex_destroy(&c->lock);
}

struct io_write_op *io__write_op_take(struct io_op_cache *c, size_t count)
{
    struct io_task *t = NULL;

    if (count <= IO_OP_INLINE_IOVS) {
        pthread_mutex_lock(&c->lock);
        if ((t = io_task_queue_pop(&c->ops)) != NULL)
            c->count--;
        pthread_mutex_unlock(&c->lock);
    }
    return t != NULL ? io_container_of(t, struct io_write_op, task) : alloc_op(count);
}

void io__write_ops_give_back(struct io_op_cache *c, struct io_task_queue *ops)
{
    struct io_task_queue kept = IO_TASK_QUEUE_INIT, spare = IO_TASK_QUEUE_INIT;
    struct io_task *t;

    /* Only the small ones: a large one is rare, and would pin its size. */
    while ((t = io_task_queue_pop(ops)) != NULL) {
        bool small = io_container_of(t, struct io_write_op, task)->iov_capacity
                     == IO_OP_INLINE_IOVS;

        io_task_queue_push(small ? &kept : &spare, t);
    }
    pthread_mutex_lock(&c->lock);
    while (c->count < IO_OP_CACHE_MAX && (t = io_task_queue_pop(&kept)) != NULL) {
        io_task_queue_push(&c->ops, t);
        c->count++;
    }
    pthread_mutex_unlock(&c->lock);
    free_ops(&kept);
    free_ops(&spare);
}

/*
 * Appends to vec (room entries left) the op's unwritten bytes, at most
 * budget of them, skipping empty buffers.  Records the amount in
 * op->gathered and returns the number of entries used.
 */
size_t io__write_op_gather(struct io_write_op *op, struct iovec *vec, size_t room,
                           size_t budget)
{
    size_t used = 0, bytes = 0, offset = op->iov_offset;

    for (size_t i = op->iov_index; i < op->iov_count && used < room && bytes < budget; i++) {
        size_t len = op->iov[i].iov_len - offset;

        if (len > budget - bytes)
            len = budget - bytes;
        if (len > 0) {
            vec[used].iov_base = (char *)op->iov[i].iov_base + offset;
            vec[used].iov_len = len;
            used++;
            bytes += len;
        }
        offset = 0;
    }
    op->gathered = bytes;
    return used;
}

/* Moves the op's position n bytes on (n <= its unwritten bytes). */
void io__write_op_advance(struct io_write_op *op, size_t n)
{
    op->done += n;
    while (n > 0 && op->iov_index < op->iov_count) {
        size_t left = op->iov[op->iov_index].iov_len - op->iov_offset;

        if (n < left) {
            op->iov_offset += n;
            return;
        }
        n -= left;
        op->iov_index++;
        op->iov_offset = 0;
    }
}

/* async_write and sendfile are finished when every byte is written;
 * async_write_some after any write that took at least one byte; either
 * at once when it asked for nothing.  A shutdown only once it has run
 * (op_queue.c ends it then). */
bool io__write_op_is_finished(const struct io_write_op *op)
{
    if (op->kind == IO_OP_SHUTDOWN)
        return false;
    if (io__op_is_whole(op))
        return op->done == op->total;
    return op->done > 0 || op->total == 0;
}
