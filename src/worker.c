/*
 * worker.c - the worker threads: the only threads that write descriptors
 * (rule 20), and the poll() that waits for the ones that would block.
 *
 * Data and locking (struct io_workers, in the context):
 *   w->lock guards the ready queue (descriptors owed a write turn), the
 *   parked queue (descriptors waiting for POLLOUT), the flags idle,
 *   polling, wake_pending and stopping, and w->spin (but spin.pushes,
 *   an atomic the watching worker reads without it).  It is never held
 *   across a system call, nor together with any other lock.
 *
 * Leader/followers: at most one worker polls at a time, on every parked
 * descriptor plus an eventfd, also when none is parked (an idle context
 * has one worker in poll()); the others wait on w->cond.  When poll()
 * returns, the poller moves the writable descriptors to the ready queue
 * and wakes only as many followers as there is work for, so one writable
 * fd wakes one thread.  Work that arrives while every free worker is in
 * poll() writes the eventfd, once until the poller drains it.  Before it
 * polls or waits, a worker that ran out of work watches for more for a few
 * microseconds (spin.h); work pushed meanwhile wakes no one.
 *
 * A descriptor is in at most one queue, and only while d->scheduled; the
 * worker that pops it from the ready queue owns it for one turn
 * (descriptor.c), which ends by handing it back here or letting it go.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"

/* While descriptors are ready, a worker still polls the parked ones (with
 * a zero timeout) every this many turns, so that a stream of ready work
 * cannot starve descriptors waiting for POLLOUT. */
#define IO_TURNS_BETWEEN_POLLS 8

/* A worker's poll() arrays, on its stack while they fit (so an idle
 * worker can always poll the eventfd, even with no memory left): the
 * eventfd first, then one per parked descriptor. */
#define IO_POLL_SET_INLINE 64

struct poll_set {
    struct pollfd *fds;
    io_descriptor **descriptors;
    size_t capacity;
    struct pollfd inline_fds[IO_POLL_SET_INLINE];
    io_descriptor *inline_descriptors[IO_POLL_SET_INLINE];
};

static void poll_set_init(struct poll_set *ps)
{
    ps->fds = ps->inline_fds;
    ps->descriptors = ps->inline_descriptors;
    ps->capacity = IO_POLL_SET_INLINE;
}

static void poll_set_free(struct poll_set *ps)
{
    if (ps->fds != ps->inline_fds) {
        io__free(ps->fds);
        io__free(ps->descriptors);
    }
}

static io_descriptor *descriptor_of(struct io_task *t)
{
    return io_container_of(t, io_descriptor, worker_link);
}

static void wake_eventfd(struct io_workers *w)
{
    uint64_t one = 1;

    /* Only fails when the counter is full, which means a wake-up is
     * already pending: nothing is lost. */
    (void)!write(w->wake_fd, &one, sizeof(one));
}

static bool poll_set_reserve(struct poll_set *ps, size_t n)
{
    struct pollfd *fds;
    io_descriptor **descriptors;

    if (n <= ps->capacity)
        return true;
    n = n < 2 * ps->capacity ? 2 * ps->capacity : n;
    fds = io__alloc(n * sizeof(*fds));
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    descriptors = io__alloc(n * sizeof(*descriptors));
    if (fds == NULL || descriptors == NULL) {
        io__free(fds);
        io__free(descriptors);
        return false;
    }
    poll_set_free(ps);
    ps->fds = fds;
    ps->descriptors = descriptors;
    ps->capacity = n;
    return true;
}

/*
 * Polls every parked descriptor plus the eventfd, then sorts them into
 * ready and still parked.  Called with w->lock held; returns with it held.
 */
static void poll_parked_locked(struct io_workers *w, struct poll_set *ps, int timeout)
{
    struct io_task_queue batch = IO_TASK_QUEUE_INIT;
    size_t n = 0, woken = 0, wakeups;
    bool drained = false;
    struct io_task *t;

    w->polling = true;
    io_task_queue_splice(&batch, &w->parked);
    pthread_mutex_unlock(&w->lock);

    for (t = batch.head; t != NULL; t = t->next)
        n++;
    if (!poll_set_reserve(ps, n + 1)) {
        /* No memory for the arrays: give each descriptor a write turn
         * instead; one that still would block comes back here. */
        pthread_mutex_lock(&w->lock);
        w->polling = false;
        io_task_queue_splice(&w->ready, &batch);
        return;
    }
    ps->fds[0] = (struct pollfd){ .fd = w->wake_fd, .events = POLLIN };
    n = 1;
    for (t = batch.head; t != NULL; t = t->next, n++) {
        io_descriptor *d = descriptor_of(t);

        ps->descriptors[n] = d;
        ps->fds[n] = (struct pollfd){ .fd = d->os_fd, .events = POLLOUT };
        /* A close or release waits for it: no poll, a turn at once.  One
         * that starts waiting later writes the eventfd. */
        if (atomic_load(&d->detach_pending))
            timeout = 0;
    }
    if (poll(ps->fds, n, timeout) < 0) {
        for (size_t i = 0; i < n; i++)
            ps->fds[i].revents = 0;     /* EINTR: look again next round */
    }
    if (ps->fds[0].revents & POLLIN) {
        uint64_t count;

        drained = read(w->wake_fd, &count, sizeof(count)) == (ssize_t)sizeof(count);
    }

    pthread_mutex_lock(&w->lock);
    w->polling = false;
    if (drained)
        w->wake_pending = false;
    for (size_t i = 1; i < n; i++) {
        io_descriptor *d = ps->descriptors[i];

        /* POLLERR, POLLHUP and POLLNVAL too: the write turn finds out
         * what is wrong and tells the op's handler. */
        if (ps->fds[i].revents != 0 || atomic_load(&d->detach_pending)) {
            io_task_queue_push(&w->ready, &d->worker_link);
            woken++;
        } else {
            io_task_queue_push(&w->parked, &d->worker_link);
        }
    }
    /* This thread takes one ready descriptor itself; followers get the
     * rest, and one more takes over polling if some are still parked. */
    wakeups = woken > 0 ? woken - 1 + !io_task_queue_is_empty(&w->parked) : 0;
    for (; wakeups > 0 && w->idle > 0; wakeups--)
        pthread_cond_signal(&w->cond);
}

static void *worker_main(void *arg)
{
    io_context *ctx = arg;
    struct io_workers *w = &ctx->workers;
    struct iovec scratch[IOV_MAX];
    struct poll_set ps;
    struct io_spinner spinner = { 0, 0, 0 };
    unsigned turns_since_poll = 0;
    bool watched = false;
    struct io_task *t;

    poll_set_init(&ps);
    pthread_mutex_lock(&w->lock);
    while (!w->stopping) {
        bool nothing_ready = io_task_queue_is_empty(&w->ready);

        if (nothing_ready && !watched && io_spin_begin(&w->spin, &spinner)) {
            pthread_mutex_unlock(&w->lock);
            io_spin_watch(&w->spin, &spinner);
            pthread_mutex_lock(&w->lock);
            io_spin_end(&w->spin, &spinner);
            watched = true;
            continue;
        }
        watched = false;

        /* With nothing to write, the leader waits in poll() even when no
         * descriptor is parked (rule 20: workers block in poll(); new work
         * comes through the eventfd). */
        if (!w->polling
            && (nothing_ready
                || (!io_task_queue_is_empty(&w->parked)
                    && turns_since_poll >= IO_TURNS_BETWEEN_POLLS))) {
            poll_parked_locked(w, &ps, nothing_ready ? -1 : 0);
            turns_since_poll = 0;
            continue;
        }
        t = io_task_queue_pop(&w->ready);
        if (t != NULL) {
            pthread_mutex_unlock(&w->lock);
            io__descriptor_write_turn(descriptor_of(t), scratch);
            turns_since_poll++;
            pthread_mutex_lock(&w->lock);
            continue;
        }
        w->idle++;
        pthread_cond_wait(&w->cond, &w->lock);
        w->idle--;
    }
    pthread_mutex_unlock(&w->lock);
    poll_set_free(&ps);
    return NULL;
}

/*
 * Starts count workers.  They are born with SIGPIPE blocked (the mask is
 * inherited from this thread for the moment of pthread_create), so that an
 * EPIPE on a pipe leaves a signal to consume instead of killing the
 * process (rule 16).
 */
int io__workers_start(io_context *ctx, unsigned count)
{
    struct io_workers *w = &ctx->workers;
    sigset_t block, old;
    int err;

    *w = (struct io_workers){
        .ready = IO_TASK_QUEUE_INIT,
        .parked = IO_TASK_QUEUE_INIT,
        .wake_fd = -1,
    };
    io_spin_slot_init(&w->spin);
    w->threads = io__alloc(count * sizeof(*w->threads));
    if (w->threads == NULL)
        return ENOMEM;
    err = pthread_mutex_init(&w->lock, NULL);
    if (err != 0)
        goto out_free_threads;
    err = pthread_cond_init(&w->cond, NULL);
    if (err != 0)
        goto out_destroy_lock;
    w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w->wake_fd < 0) {
        err = errno;
        goto out_destroy_cond;
    }
    sigemptyset(&block);
    sigaddset(&block, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (err = 0; w->count < count && err == 0; w->count++)
        err = pthread_create(&w->threads[w->count], NULL, worker_main, ctx);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err == 0)
        return 0;
    w->count--;         /* the one that failed */
    io__workers_stop(ctx);
    close(w->wake_fd);
out_destroy_cond:
    pthread_cond_destroy(&w->cond);
out_destroy_lock:
    pthread_mutex_destroy(&w->lock);
out_free_threads:
    io__free(w->threads);
    return err;
}

/* Stops and joins every worker; their queues are dropped, and shutdown
 * (descriptor.c) takes over the descriptors that were in them. */
void io__workers_stop(io_context *ctx)
{
    struct io_workers *w = &ctx->workers;

    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    wake_eventfd(w);
    for (unsigned i = 0; i < w->count; i++)
        pthread_join(w->threads[i], NULL);
    w->count = 0;
    w->ready = (struct io_task_queue)IO_TASK_QUEUE_INIT;
    w->parked = (struct io_task_queue)IO_TASK_QUEUE_INIT;
}

void io__workers_free(io_context *ctx)
{
    struct io_workers *w = &ctx->workers;

    close(w->wake_fd);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    io__free(w->threads);
}

/* Called with w->lock held: says whether the caller must write the
 * eventfd (after unlocking) to get the poller out of poll(). */
static bool poller_needs_wake_locked(struct io_workers *w)
{
    if (!w->polling || w->wake_pending)
        return false;
    w->wake_pending = true;
    return true;
}

/* A descriptor with work: an idle worker takes it, or, when the only free
 * worker is in poll(), the eventfd brings that one out. */
void io__workers_schedule(io_context *ctx, io_descriptor *d)
{
    struct io_workers *w = &ctx->workers;
    bool wake = false;

    pthread_mutex_lock(&w->lock);
    io_task_queue_push(&w->ready, &d->worker_link);
    if (io_spin_slot_pushed(&w->spin))
        ;   /* a worker watching for work takes it: no wake-up */
    else if (w->idle > 0)
        pthread_cond_signal(&w->cond);
    else
        wake = poller_needs_wake_locked(w);
    pthread_mutex_unlock(&w->lock);
    if (wake)
        wake_eventfd(w);
}

/* A descriptor that would block joins the poll set: the poller must
 * rebuild its set to see it, or an idle worker becomes the poller. */
void io__workers_park(io_context *ctx, io_descriptor *d)
{
    struct io_workers *w = &ctx->workers;
    bool wake = false;

    pthread_mutex_lock(&w->lock);
    io_task_queue_push(&w->parked, &d->worker_link);
    if (w->polling)
        wake = poller_needs_wake_locked(w);
    else if (w->idle > 0)
        pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    if (wake)
        wake_eventfd(w);
}

/* A descriptor the workers hold is being closed or released: a poller
 * must look at it again now. */
void io__workers_wake_poller(io_context *ctx)
{
    struct io_workers *w = &ctx->workers;
    bool wake;

    pthread_mutex_lock(&w->lock);
    wake = poller_needs_wake_locked(w);
    pthread_mutex_unlock(&w->lock);
    if (wake)
        wake_eventfd(w);
}
