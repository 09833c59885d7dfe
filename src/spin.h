/*
 * spin.h - a short watch for more work by a worker about to sleep.
 *
 * Why: a worker that sleeps costs whoever next has work for it a wake-up
 * (eventfd write, poll() return, eventfd read), and costs the write the
 * scheduler's wake-up latency, tens of microseconds on a loaded machine.
 * At light load that is a large part of a write's submit-to-handler time.
 * So a worker that has just run out of work watches for more for a few
 * tens of microseconds first, yielding the CPU each round, and while it
 * watches, io__workers_schedule skips the wake-up.  A worker whose watches
 * keep finding nothing skips the next ones (doubling, up to
 * IO_SPIN_BACKOFF_MAX), so an idle server does not burn CPU.
 *
 * Measured (bench_write, 1 connection, 1 message in flight, 64 B, medians
 * of 9): p99 submit-to-handler 30 us with the watch against 64-86 us
 * without (Asio 53 us).  Run threads watching too gave 23 us, but under a
 * 64-connection flood it doubled p99 and raised write calls per message
 * (handlers finished sooner, so workers gathered smaller batches), so run
 * threads sleep at once.  A 10 us watch was too short to help.
 *
 * Data and locking:
 *   struct io_spin_slot sits in struct io_workers.  active and claimed are
 *   guarded by the workers' lock; pushes is an atomic, bumped under the
 *   lock by each push that owes a wake-up and read by the watching worker
 *   with no lock held.  At most one worker watches at a time, so a push
 *   skips at most one wake-up.  struct io_spinner belongs to one worker,
 *   on its stack; nobody else touches it.
 *
 * The leader also watches this way, with no backoff, in the last
 * microseconds before a timer falls due (worker.c): a sleep would end
 * late by the same wake-up latency.
 *
 * The watcher always looks at the queue again under the lock after its
 * watch, so a push that it did not see in time is never lost: it was made
 * under the lock, before the watcher took the lock back.
 */
#ifndef IOCTX_SPIN_H
#define IOCTX_SPIN_H

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* How long a watch lasts: about one round trip of a handler waking the
 * thread that starts the next write, on the 2-core machine we measure on. */
#define IO_SPIN_NS 50000
#define IO_SPIN_BACKOFF_MAX 64

struct io_spin_slot {
    atomic_uint pushes;
    bool active;
    bool claimed;
};

struct io_spinner {
    unsigned seen;          /* slot->pushes when the watch began */
    unsigned skip;          /* watches still to skip */
    unsigned backoff;       /* what the next empty watch sets skip to */
};

static inline void io_spin_slot_init(struct io_spin_slot *s)
{
    atomic_init(&s->pushes, 0);
    s->active = false;
    s->claimed = false;
}

/* A push that owes a thread a wake-up: returns true when a spinning thread
 * takes it over, so the caller wakes no one.  Called under the lock. */
static inline bool io_spin_slot_pushed(struct io_spin_slot *s)
{
    atomic_fetch_add_explicit(&s->pushes, 1, memory_order_release);
    if (!s->active || s->claimed)
        return false;
    s->claimed = true;
    return true;
}

/* io_spin_begin for a watch that does not depend on the past ones (a
 * watch until a known moment): no skip, and io_spin_stop ends it. */
static inline bool io_spin_begin_unconditionally(struct io_spin_slot *s, struct io_spinner *me)
{
    if (s->active)
        return false;
    s->active = true;
    s->claimed = false;
    me->seen = atomic_load_explicit(&s->pushes, memory_order_relaxed);
    return true;
}

/* Whether this thread should watch now; if so it is the slot's spinner
 * until io_spin_end().  Called under the lock. */
static inline bool io_spin_begin(struct io_spin_slot *s, struct io_spinner *me)
{
    if (s->active)
        return false;
    if (me->skip > 0) {
        me->skip--;
        return false;
    }
    return io_spin_begin_unconditionally(s, me);
}

static inline uint64_t io_spin_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* io_spin_watch until deadline (io_spin_now_ns's clock) instead. */
static inline void io_spin_watch_until(struct io_spin_slot *s, const struct io_spinner *me,
                                       uint64_t deadline)
{
    while (atomic_load_explicit(&s->pushes, memory_order_acquire) == me->seen) {
        if (io_spin_now_ns() >= deadline)
            return;
        sched_yield();
    }
}

/* The watch itself, with no lock held: until a push or IO_SPIN_NS.  A
 * stopping context needs no check here: the watch is over within
 * IO_SPIN_NS, and the worker then sees w->stopping under the lock.
 * sched_yield lets any thread waiting for this CPU run. */
static inline void io_spin_watch(struct io_spin_slot *s, const struct io_spinner *me)
{
    io_spin_watch_until(s, me, io_spin_now_ns() + IO_SPIN_NS);
}

/* Cuts a watch in progress short: the watcher returns at once.  Called
 * under the lock. */
static inline void io_spin_poke(struct io_spin_slot *s)
{
    if (s->active)
        atomic_fetch_add_explicit(&s->pushes, 1, memory_order_release);
}

/* Ends an io_spin_begin_unconditionally watch.  Called under the lock. */
static inline void io_spin_stop(struct io_spin_slot *s)
{
    s->active = false;
}

/* Ends the watch and learns from it.  Called under the lock. */
static inline void io_spin_end(struct io_spin_slot *s, struct io_spinner *me)
{
    s->active = false;
    if (atomic_load_explicit(&s->pushes, memory_order_relaxed) != me->seen) {
        me->backoff = 0;
    } else {
        me->backoff = me->backoff == 0 ? 1 : me->backoff * 2;
        if (me->backoff > IO_SPIN_BACKOFF_MAX)
            me->backoff = IO_SPIN_BACKOFF_MAX;
        me->skip = me->backoff;
    }
}

#endif
