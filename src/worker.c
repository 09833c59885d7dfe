/*
 * worker.c - the worker threads: the only threads that write descriptors
 * (threads inside io_context_run never do), and the leader that waits in
 * the poller for the descriptors that would block.
 *
 * Workers know watches (poller.h), not descriptors: a worker gives a watch
 * its turn through watch->turn, and the owner of the watch decides there
 * what to write and whether to hand the watch back (schedule, park).
 *
 * Data and locking (struct io_workers, in the context):
 *   w->lock guards the ready queue (watches owed a turn), the poller's set
 *   of armed watches, the flags idle, polling and stopping, and w->spin
 *   (but spin.pushes, an atomic the watching worker reads without it).
 *   It is never held across a system call, nor together with any other
 *   lock.
 *
 * Leader/followers: at most one worker waits in the poller at a time, on
 * every armed watch plus a wake-up fd, also when none is armed (an idle
 * context has one worker in poll()); the others wait on w->cond.  When the
 * wait returns, the leader wakes only as many followers as there is work
 * for, so one writable fd wakes one thread.  Work that arrives while every
 * free worker is in the poller wakes it (io__poller_wake).  Before it
 * polls or waits, a worker that ran out of work watches for more for a
 * few microseconds (spin.h); work pushed meanwhile wakes no one.
 *
 * What a worker's turns finish reaches the run threads in batches: the
 * strands its turns schedule are pushed onto the context's ready queue
 * together (w->flush), every IO_TURNS_BETWEEN_FLUSHES turns and before it
 * spins, polls or sleeps.  With thousands of connections nearly every turn
 * schedules another strand, and a lock and a wake-up per turn add up
 * (4,096 connections: 6% more messages a second on 4% less CPU).
 *
 * A watch is in at most one place (the ready queue, the poller, or one
 * worker's turn) and only while its owner has handed it to the workers.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "internal.h"

/* While watches are ready, a worker still polls the armed ones (with a
 * zero timeout) every this many turns, so that a stream of ready work
 * cannot starve descriptors waiting for POLLOUT. */
#define IO_TURNS_BETWEEN_POLLS 8

/* What a worker's turns hand to the run threads waits at most this many
 * turns: long enough to push many strands with one lock, short enough
 * that a completion is not held back for long. */
#define IO_TURNS_BETWEEN_FLUSHES 8

static struct io_watch *watch_of(struct io_task *t)
{
    return io_container_of(t, struct io_watch, link);
}

/* Whether a timer entry is due.  Reads the clock only when one is
 * pending, so a context without timers pays nothing. */
static bool timers_due(struct io_workers *w)
{
    uint64_t earliest = io__timer_queue_earliest(&w->timers);

    return earliest != UINT64_MAX && io__clock_now() >= earliest;
}

/* How long the leader may sleep: until the earliest timer entry, or
 * without limit (-1) when none is pending.  Read after w->polling is set,
 * so that an earlier entry inserted from now on wakes the wait
 * (io__workers_timers_changed). */
static int64_t sleep_ns_locked(struct io_workers *w)
{
    uint64_t earliest = io__timer_queue_earliest(&w->timers), now;

    if (earliest == UINT64_MAX)
        return -1;
    now = io__clock_now();
    if (earliest <= now)
        return 0;
    return earliest - now > INT64_MAX ? INT64_MAX : (int64_t)(earliest - now);
}

/* The leader's wait (sleep: until the earliest timer; else only looks).
 * Called with w->lock held; returns with it held. */
static void poll_locked(struct io_workers *w, bool sleep)
{
    size_t woken, wakeups;

    w->polling = true;
    woken = io__poller_wait_locked(w->poller, &w->lock, sleep ? sleep_ns_locked(w) : 0,
                                   &w->ready);
    w->polling = false;
    /* This thread takes one ready watch itself; followers get the rest,
     * and one more takes over polling if some are still armed. */
    wakeups = woken > 0 ? woken - 1 + io__poller_has_armed_locked(w->poller) : 0;
    for (; wakeups > 0 && w->idle > 0; wakeups--)
        pthread_cond_signal(&w->cond);
}

static void *worker_main(void *arg)
{
    struct io_workers *w = arg;
    struct iovec scratch[IOV_MAX];
    struct io_spinner spinner = { 0, 0, 0 };
    unsigned turns_since_poll = 0, unflushed = 0;
    bool watched = false;
    struct io_task *t;

#ifdef PR_SET_TIMERSLACK
    /* Linux lets a sleep with a timeout end up to the thread's timer
     * slack late, 50 us by default: the leader sleeps until the earliest
     * timer, and every handler would be that much late.  1 ns, as a
     * timerfd would be (bench_timer: p50 lateness 52 us against 97). */
    (void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
#endif
    pthread_mutex_lock(&w->lock);
    while (!w->stopping) {
        bool nothing_ready = io_task_queue_is_empty(&w->ready);

        /* Before this worker waits for anything, the run threads get
         * what its turns finished. */
        if (unflushed > 0 && (nothing_ready || unflushed >= IO_TURNS_BETWEEN_FLUSHES)) {
            pthread_mutex_unlock(&w->lock);
            w->flush();
            unflushed = 0;
            pthread_mutex_lock(&w->lock);
            continue;
        }

        if (nothing_ready && !watched && io_spin_begin(&w->spin, &spinner)) {
            pthread_mutex_unlock(&w->lock);
            io_spin_watch(&w->spin, &spinner);
            pthread_mutex_lock(&w->lock);
            io_spin_end(&w->spin, &spinner);
            watched = true;
            continue;
        }
        watched = false;

        /* Timer entries that fell due go to their owners first: a stream
         * of writes must not hold back a deadline. */
        if (timers_due(w)) {
            pthread_mutex_unlock(&w->lock);
            io__timer_queue_expire(&w->timers, io__clock_now());
            unflushed++;
            pthread_mutex_lock(&w->lock);
            continue;
        }

        /* With nothing to write, the leader waits in the poller even when
         * no watch is armed: workers block in poll(), and new work comes
         * through the wake-up fd. */
        if (!w->polling
            && (nothing_ready
                || (io__poller_has_armed_locked(w->poller)
                    && turns_since_poll >= IO_TURNS_BETWEEN_POLLS))) {
            poll_locked(w, nothing_ready);
            turns_since_poll = 0;
            continue;
        }
        t = io_task_queue_pop(&w->ready);
        if (t != NULL) {
            struct io_watch *watch = watch_of(t);

            pthread_mutex_unlock(&w->lock);
            watch->turn(watch, scratch);
            turns_since_poll++;
            unflushed++;
            pthread_mutex_lock(&w->lock);
            continue;
        }
        w->idle++;
        pthread_cond_wait(&w->cond, &w->lock);
        w->idle--;
    }
    pthread_mutex_unlock(&w->lock);
    w->flush();
    return NULL;
}

/*
 * Starts count workers.  They are born with SIGPIPE blocked (the mask is
 * inherited from this thread for the moment of pthread_create), so that an
 * EPIPE on a pipe leaves a signal to consume instead of killing the
 * process.
 */
int io__workers_start(struct io_workers *w, unsigned count, void (*flush)(void))
{
    sigset_t block, old;
    int err;

    *w = (struct io_workers){ .ready = IO_TASK_QUEUE_INIT, .flush = flush };
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
    err = io__timer_queue_init(&w->timers);
    if (err != 0)
        goto out_destroy_cond;
    err = io__poller_create(&w->poller);
    if (err != 0)
        goto out_free_timers;
    sigemptyset(&block);
    sigaddset(&block, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (err = 0; w->count < count && err == 0; w->count++)
        err = pthread_create(&w->threads[w->count], NULL, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err == 0)
        return 0;
    w->count--;         /* the one that failed */
    io__workers_stop(w);
    io__poller_free(w->poller);
    /* pthread_create says EAGAIN for want of memory (a stack) as for a
     * thread limit; either way the context cannot have its resources,
     * and callers check for ENOMEM. */
    if (err == EAGAIN)
        err = ENOMEM;
out_free_timers:
    io__timer_queue_free(&w->timers);
out_destroy_cond:
    pthread_cond_destroy(&w->cond);
out_destroy_lock:
    pthread_mutex_destroy(&w->lock);
out_free_threads:
    io__free(w->threads);
    return err;
}

void io__workers_stop(struct io_workers *w)
{
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    io__poller_wake(w->poller);
    for (unsigned i = 0; i < w->count; i++)
        pthread_join(w->threads[i], NULL);
    w->count = 0;
}

void io__workers_free(struct io_workers *w)
{
    io__poller_free(w->poller);
    io__timer_queue_free(&w->timers);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    io__free(w->threads);
}

/* Queues watch for a turn: a worker watching for work takes it, else an
 * idle worker is woken.  Called with w->lock held; returns true when the
 * caller must wake the leader out of the poller (after unlocking). */
static bool push_ready_locked(struct io_workers *w, struct io_watch *watch)
{
    io_task_queue_push(&w->ready, &watch->link);
    if (io_spin_slot_pushed(&w->spin))
        return false;   /* a worker watching for work takes it: no wake-up */
    if (w->idle > 0) {
        pthread_cond_signal(&w->cond);
        return false;
    }
    return w->polling;
}

void io__workers_schedule(struct io_workers *w, struct io_watch *watch)
{
    bool wake;

    pthread_mutex_lock(&w->lock);
    wake = push_ready_locked(w, watch);
    pthread_mutex_unlock(&w->lock);
    if (wake)
        io__poller_wake(w->poller);
}

/* A watch that would block is armed.  A leader in the poller sees it
 * (the poll() backend only after a wake-up: it rebuilds its set), or an
 * idle worker becomes the leader.  One whose owner waits for the workers
 * gets its turn at once instead. */
int io__workers_park(struct io_workers *w, struct io_watch *watch)
{
    bool wake = false;
    int err = 0;

    pthread_mutex_lock(&w->lock);
    if (atomic_load(&watch->urgent))
        wake = push_ready_locked(w, watch);
    else if ((err = io__poller_arm_locked(w->poller, watch)) != 0)
        ;   /* the owner ends its ops with err */
    else if (w->polling)
        wake = !io__poller_wait_sees_new_arms();
    else if (w->idle > 0)
        pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    if (wake)
        io__poller_wake(w->poller);
    return err;
}

bool io__workers_reclaim(struct io_workers *w, struct io_watch *watch)
{
    bool reclaimed, wake;

    pthread_mutex_lock(&w->lock);
    reclaimed = io__poller_disarm_locked(w->poller, watch);
    /* A wait that holds it (poll() backend) returns it, urgent, at once. */
    wake = !reclaimed && w->polling;
    pthread_mutex_unlock(&w->lock);
    if (wake)
        io__poller_wake(w->poller);
    return reclaimed;
}

void io__workers_forget(struct io_workers *w, struct io_watch *watch)
{
    pthread_mutex_lock(&w->lock);
    io__poller_forget_locked(w->poller, watch);
    pthread_mutex_unlock(&w->lock);
}

void io__workers_timers_changed(struct io_workers *w)
{
    bool wake;

    pthread_mutex_lock(&w->lock);
    wake = w->polling;
    pthread_mutex_unlock(&w->lock);
    if (wake)
        io__poller_wake(w->poller);
}
