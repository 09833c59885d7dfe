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
 * context has one worker in poll()); the others wait on w->cond.  Work
 * that arrives while every free worker is in the poller wakes it
 * (io__poller_wake).  Before it polls or waits, a worker that ran out of
 * work watches for more for a few microseconds (spin.h); work pushed
 * meanwhile wakes no one.
 *
 * A follower is woken only when the ready watches are more than the
 * workers already awake clear soon (IO_READY_PER_AWAKE_WORKER each): a
 * turn takes a microsecond or two, so a second worker woken for a short
 * queue costs a wake-up and a cache line ping-pong, and splits the
 * writes one worker would have coalesced (64 connections, 16 messages in
 * flight per producer: 15% fewer messages a second with 2 workers than
 * with 1).  With thousands of busy connections the queue is long and
 * every worker joins in.  A worker in a turn that may block in the kernel
 * (watch->may_block) does not count as awake: one slow file write must
 * not hold up the sockets behind it while another worker sleeps.
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

/* Ready watches that one awake worker is left to clear before another
 * is woken to help. */
#define IO_READY_PER_AWAKE_WORKER 32

/* The leader ends a sleep before a timer by as much as its sleeps have
 * lately overslept (the scheduler's wake-up latency, tens of
 * microseconds on a virtual machine), and watches for work until the
 * timer is due: the handler then runs on time instead of that much late.
 * At most this much early, and at most one IO_TIMER_WATCH_SHARE-th of
 * the time to the timer, so that the watches take at most that share of
 * a core whatever the timers are.  Only for timer waits: a send timeout
 * can be a wake-up latency late, and a server may have many. */
#define IO_TIMER_EARLY_MAX_NS 150000
#define IO_TIMER_WATCH_SHARE 8

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

/* How long the leader may sleep: until the earliest timer entry, less
 * the margin it then watches for (w->timer_margin_ns), or without limit
 * (-1) when none is pending.  Read after w->polling is set, so that an
 * earlier entry inserted from now on wakes the wait
 * (io__workers_timers_changed).  *wake_at: when the sleep is to end (0:
 * no timeout). */
static int64_t sleep_ns_locked(struct io_workers *w, uint64_t *wake_at)
{
    uint64_t earliest = io__timer_queue_earliest(&w->timers), now, margin;

    *wake_at = 0;
    if (earliest == UINT64_MAX)
        return -1;
    now = io__clock_now();
    if (earliest <= now)
        return 0;
    margin = (earliest - now) / IO_TIMER_WATCH_SHARE;
    if (margin > w->timer_late_ns)
        margin = w->timer_late_ns;
    w->timer_margin_ns = io__timer_queue_earliest_punctual(&w->timers) ? margin : 0;
    *wake_at = earliest - w->timer_margin_ns;
    return *wake_at - now > INT64_MAX ? INT64_MAX : (int64_t)(*wake_at - now);
}

/* Learns how late a timed sleep ends: quick to follow a longer lateness,
 * slow to forget it, so that the estimate sits near the upper end of
 * what the sleeps see. */
static void learn_lateness_locked(struct io_workers *w, uint64_t late_ns)
{
    if (late_ns > IO_TIMER_EARLY_MAX_NS)
        late_ns = IO_TIMER_EARLY_MAX_NS;
    if (late_ns > w->timer_late_ns)
        w->timer_late_ns += (late_ns - w->timer_late_ns) / 4;
    else
        w->timer_late_ns -= (w->timer_late_ns - late_ns) / 16;
}

/* Whether the earliest timer entry falls due within the margin the last
 * sleep left for it; *at: when. */
static bool timer_near_locked(struct io_workers *w, uint64_t *at)
{
    uint64_t earliest = io__timer_queue_earliest(&w->timers);

    if (earliest == UINT64_MAX || w->timer_margin_ns == 0
        || !io__timer_queue_earliest_punctual(&w->timers))
        return false;
    *at = earliest;
    return earliest <= io__clock_now() + w->timer_margin_ns;
}

/* Whether the ready watches are more than the workers awake (or about to
 * be) clear soon.  Called with w->lock held. */
static bool backlog_locked(const struct io_workers *w)
{
    return w->ready_count > IO_READY_PER_AWAKE_WORKER * (w->awake + w->signalled);
}

/* Wakes one idle follower not already signalled; false when there is
 * none.  Called with w->lock held. */
static bool signal_follower_locked(struct io_workers *w)
{
    if (w->idle <= w->signalled)
        return false;
    w->signalled++;
    pthread_cond_signal(&w->cond);
    return true;
}

/* Sees to it that some worker looks at ready soon: one awake does before
 * it sleeps (unless the backlog wants more), else an idle follower is
 * woken here.  Called with w->lock held; returns true when the caller
 * must wake the leader out of the poller (after unlocking). */
static bool wake_for_ready_locked(struct io_workers *w)
{
    if (io_task_queue_is_empty(&w->ready))
        return false;
    if (w->awake + w->signalled > 0 && !backlog_locked(w))
        return false;
    if (signal_follower_locked(w))
        return false;
    return w->polling && w->poll_asleep;
}

/* The leader's wait (sleep: until the earliest timer; else only looks).
 * Called with w->lock held; returns with it held. */
static void poll_locked(struct io_workers *w, bool sleep)
{
    uint64_t wake_at = 0;
    int64_t timeout_ns;
    size_t woken;

    w->polling = true;
    w->poll_asleep = sleep;
    if (sleep)
        w->awake--;
    timeout_ns = sleep ? sleep_ns_locked(w, &wake_at) : 0;
    woken = io__poller_wait_locked(w->poller, &w->lock, timeout_ns, &w->ready);
    if (sleep)
        w->awake++;
    if (wake_at != 0) {
        uint64_t now = io__clock_now();

        if (now >= wake_at)
            learn_lateness_locked(w, now - wake_at);
    }
    w->polling = false;
    w->ready_count += (unsigned)woken;
    /* This thread takes the ready watches; followers help with a
     * backlog, and one takes over polling if some are still armed. */
    while (backlog_locked(w) && signal_follower_locked(w))
        continue;
    if (woken > 0 && io__poller_has_armed_locked(w->poller))
        (void)signal_follower_locked(w);
}

static void *worker_main(void *arg)
{
    struct io_workers *w = arg;
    struct iovec scratch[IOV_MAX];
    struct io_spinner spinner = { 0, 0, 0 };
    unsigned turns_since_poll = 0, unflushed = 0;
    bool watched = false;
    struct io_task *t;
    uint64_t due;

#ifdef PR_SET_TIMERSLACK
    /* Linux lets a sleep with a timeout end up to the thread's timer
     * slack late, 50 us by default: the leader sleeps until the earliest
     * timer, and every handler would be that much late.  1 ns, as a
     * timerfd would be (bench_timer: p50 lateness 52 us against 97). */
    (void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
#endif
    pthread_mutex_lock(&w->lock);
    w->awake++;
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
            w->timer_margin_ns = 0;
            pthread_mutex_unlock(&w->lock);
            io__timer_queue_expire(&w->timers, io__clock_now());
            unflushed++;
            pthread_mutex_lock(&w->lock);
            continue;
        }

        /* The sleep before a timer ended early on purpose: watch for
         * work until the timer is due. */
        if (!w->polling && nothing_ready && timer_near_locked(w, &due)
            && io_spin_begin_unconditionally(&w->spin, &spinner)) {
            pthread_mutex_unlock(&w->lock);
            io_spin_watch_until(&w->spin, &spinner, due);
            pthread_mutex_lock(&w->lock);
            io_spin_stop(&w->spin);
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
            /* Read before the turn, which may hand the watch on. */
            bool may_block = atomic_load_explicit(&watch->may_block, memory_order_relaxed);
            bool wake = false;

            w->ready_count--;
            if (may_block) {
                w->awake--;
                wake = wake_for_ready_locked(w);
            }
            pthread_mutex_unlock(&w->lock);
            if (wake)
                io__poller_wake(w->poller);
            watch->turn(watch, scratch);
            turns_since_poll++;
            unflushed++;
            pthread_mutex_lock(&w->lock);
            if (may_block)
                w->awake++;
            continue;
        }
        w->idle++;
        w->awake--;
        pthread_cond_wait(&w->cond, &w->lock);
        w->idle--;
        w->awake++;
        /* Woken by a signal, or spuriously: either way one fewer is on
         * its way (every signal finds an idle worker, so a count left
         * too high cannot stay so). */
        if (w->signalled > 0)
            w->signalled--;
    }
    w->awake--;
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
    io_spin_poke(&w->spin);
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
    w->ready_count++;
    if (io_spin_slot_pushed(&w->spin))
        return false;   /* a worker watching for work takes it: no wake-up */
    return wake_for_ready_locked(w);
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
    else
        (void)signal_follower_locked(w);
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
    io_spin_poke(&w->spin);     /* a watch until the old earliest ends */
    pthread_mutex_unlock(&w->lock);
    if (wake)
        io__poller_wake(w->poller);
}
