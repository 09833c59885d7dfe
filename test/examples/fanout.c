/*
 * fanout.c - a publish/subscribe server on 127.0.0.1.  P publisher threads
 * send every message to every subscriber with io_descriptor_async_write(),
 * called from the publisher threads themselves: several threads write to
 * one descriptor at once and the library keeps each message whole, with no
 * queue of our own.  A message is allocated once and shared by all of its
 * writes through a reference count: one copy of the data, not one per
 * subscriber.  The subscribers are client threads of this program, on TCP
 * loopback, that verify every byte they receive.
 *
 * What it shows:
 *   - concurrent async_write on one descriptor never interleaves: each
 *     subscriber checks the header, the per-publisher sequence numbers (from
 *     0, no gap, no reorder) and the checksum of every message;
 *   - back-pressure with io_descriptor_queued_bytes(): before each write, a
 *     subscriber whose backlog passes --cap is closed, once; its pending
 *     writes end with ECANCELED and a racing one with EBADF;
 *   - flow control with write-buffer water marks
 *     (io_descriptor_set_watermarks()): each subscriber's descriptor has a
 *     high mark of a quarter of the cap and a low mark of a quarter of
 *     that.  Publishers wait, without polling, while a subscriber that is
 *     still taking data is above its high mark, and go on at its "below"
 *     event, so healthy ones keep up.  One that has taken nothing for
 *     --stall (50 ms) while holding them back, as a probe posted to its
 *     strand confirms, no longer does, so it falls behind and is dropped
 *     at the cap.  An event comes through a run thread, which may lag:
 *     publishers also wait while the writes to a subscriber whose
 *     handlers have not run come near the cap, so that the lag cannot
 *     push a healthy one past it.  Every "above" must get its "below", by
 *     the close at the latest; the summary counts them;
 *   - a send timeout (io_descriptor_set_send_timeout(), --send-timeout) for
 *     what the cap cannot catch, a subscriber that stops reading a stream
 *     too thin to take its backlog anywhere near the cap: when its writes
 *     make no progress for the timeout they end with ETIMEDOUT, and the
 *     first handler to see that closes it, once; writes started after the
 *     timeout fired end with ECANCELED, or EBADF if they race with the
 *     close;
 *   - a peer that hangs up: writes end with EPIPE or ECONNRESET, never
 *     SIGPIPE (the program sets SIGPIPE to its default action, which kills);
 *   - shutdown by counting work: the run threads return once every write
 *     has ended, then closing the descriptors gives the subscribers EOF.
 *
 * Subscriber 0 is slow on purpose (--slow): it reads 64 KiB, then stops
 * reading until the server drops it, then drains to EOF.  The next one
 * (--disconnect) closes its socket after 200 messages.  The next one
 * (--frozen; by default when there is a send timeout and a healthy
 * subscriber to spare) takes only the low-volume stream, 40 messages a
 * second from all publishers together, numbered in their headers; it
 * reads 4 KiB, stops reading until the server drops it, then drains to
 * EOF.  Its backlog at the timeout is a few hundred KiB at most, far
 * below the cap, so the send timeout must be what drops it, no sooner
 * than the timeout after the last message it took was published, and it
 * must have received its stream from the start with no gap.  Every other
 * subscriber must receive every message of every publisher.  With
 * --messages, N must be large enough for the slow one to pass the cap and
 * for a write to reach the one that hung up (a few thousand), and the
 * run, --duration or --messages, must outlast the send timeout by enough
 * for it to drop the frozen one while publishing goes on; or the run
 * says so and fails.
 *
 *   fanout [--subscribers S] [--publishers P] [--run-threads R] [--workers W]
 *          [--duration SEC | --messages N] [--sizes LIST] [--cap BYTES]
 *          [--stall MS] [--send-timeout MS] [--[no-]slow] [--[no-]disconnect]
 *          [--[no-]frozen] [--progress] [--seed N]
 *
 * Prints a summary table and "verified: OK" (exit 0), or one line per
 * failure (exit 1).  Bad usage exits 2.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "ioctx.h"

#define MAX_SIZES         32
#define MAX_PAYLOAD       ((size_t)16 << 20)
#define SLOW_READ_BYTES   ((size_t)64 << 10)   /* what the slow subscriber reads, then stops */
#define FROZEN_READ_BYTES ((size_t)4 << 10)    /* what the frozen subscriber reads, then stops */
#define DISCONNECT_AFTER  200                  /* messages before the disconnecting one hangs up */
#define READ_CHUNK        ((size_t)128 << 10)
#define WIRE_MAGIC        0x4f4e4146u          /* "FANO" */
/* A subscriber's high water mark is cap / this: publishers wait while
 * one holds more... */
#define FLOW_WINDOW_DIV   4
/* ...until it is back down to its low mark, high / this: a wait lets a
 * good part of the backlog drain, rather than resuming at the first
 * message written and stopping again at the next one published... */
#define FLOW_RESUME_DIV   4
/* ...unless it has taken nothing for this long (--stall) while holding
 * them back: then it counts as stalled.  On a loaded machine a healthy
 * subscriber's reader may not run for that long, and is then taken for a
 * stalled one: the ctest run gives it more. */
#define STALL_MS_DEFAULT  50u
#define SEND_TIMEOUT_MS_DEFAULT 2000u
/* The low-volume stream's rate, all publishers together, whatever the
 * machine's speed.  Every Nth message would follow the full stream, whose
 * rate varies eightfold and more with the build and the load (the ctest
 * run publishes 52,000 messages a second built RelWithDebInfo on the
 * 2-core development machine, 6,600 under TSan): an N that keeps the
 * backlog far below the cap in the fast build sends the slow one too
 * little to fill even a small socket buffer soon. */
#define LOW_VOLUME_PER_SECOND 40u
/* Loopback TCP gives a socket the largest send buffer tcp_wmem allows (4
 * MiB by default) at once, and the kernel takes that much for a peer that
 * reads nothing before a write has to wait: the low-volume stream would
 * need most of a minute to fill it, and the send timeout counts only from
 * the last byte taken.  A low-volume subscription needs little buffer:
 * the server asks for this much send buffer on its socket and the
 * subscriber for this much receive buffer (the kernel doubles both), so
 * the kernel holds about 12 KiB of the stream. */
#define LOW_VOLUME_SOCKET_BUFFER 4096

struct options {
    unsigned subscribers;
    unsigned publishers;
    unsigned run_threads;
    unsigned workers;
    double duration;
    unsigned long messages;       /* per publisher; 0: publish for duration seconds */
    size_t sizes[MAX_SIZES];      /* payload sizes, picked at random */
    unsigned nsizes;
    size_t cap;
    uint64_t stall_ns;
    uint64_t send_timeout_ns;     /* 0: none */
    bool slow;
    bool disconnect;
    bool frozen;
    bool progress;
    uint64_t seed;
};

/* What precedes every payload on the wire (host byte order: one host). */
struct wire_header {
    uint32_t magic;
    uint32_t publisher;
    uint64_t seq;
    uint32_t length;              /* payload bytes */
    uint32_t low_volume_seq;      /* from 1 in the publisher's low-volume stream; 0: not in it */
    uint64_t checksum;            /* of the payload */
};
_Static_assert(sizeof(struct wire_header) == 32, "wire header has no padding");

enum role { ROLE_HEALTHY, ROLE_SLOW, ROLE_DISCONNECT, ROLE_FROZEN };

/* A subscriber leaves SUB_LIVE once, by a compare-and-swap: the thread that
 * wins closes the descriptor, so it is closed exactly once. */
enum sub_state { SUB_LIVE, SUB_DROPPED_SLOW, SUB_DROPPED_TIMEOUT, SUB_DISCONNECTED, SUB_FAILED };

/* A gate that opens once and stays open. */
struct latch {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool open;
};

/* Log-scale latency histogram: 8 buckets per power of two (12.5 %). */
#define LAT_SUB_BITS 3
#define LAT_BUCKETS  (64u << LAT_SUB_BITS)

struct histogram {
    atomic_ullong count[LAT_BUCKETS];
    atomic_ullong max;
};

struct fanout;

struct subscriber {
    struct fanout *f;
    unsigned index;
    enum role role;

    /* Server side. */
    io_descriptor *d;
    io_strand *strand;                  /* runs its descriptor's handlers, and its probes */
    atomic_int state;                   /* enum sub_state */
    atomic_ullong writes_ok;            /* messages the kernel took whole */
    atomic_ullong stalled_at;           /* writes_ok when judged stalled, or ~0 */
    /* Written by its handlers only, on its strand: when its latest write
     * ended whole, and whether (and since when) its backlog is above its
     * high water mark, as the water-mark events tell. */
    atomic_ullong last_progress_ns;
    atomic_bool above_high;
    atomic_ullong above_since_ns;
    /* Bytes of the writes started to it whose handlers have not run yet:
     * at least its backlog, and known at once to the publisher that
     * starts a write (see wait_for_room()); and when they last rose over
     * the unhandled limit. */
    atomic_ullong unhandled_bytes;
    atomic_ullong unhandled_since_ns;
    /* A probe through its strand (see confirm_stall()): whether one is in
     * flight, when it was posted, and when the last one that ran was. */
    atomic_bool probe_in_flight;
    atomic_ullong probe_posted_ns;
    atomic_ullong probe_confirmed_ns;
    /* Its water-mark events: written by its handler only, on its strand;
     * read once io_context_destroy() has run the last of them. */
    unsigned long long watermark_rises;
    unsigned long long watermark_falls;
    /* When the latest message its socket took bytes of was published: its
     * last progress came later.  Written by its handlers only. */
    atomic_ullong last_taken_published_ns;
    atomic_ullong timed_out_bytes;      /* what its writes that ended with ETIMEDOUT left unsent */
    /* Written by the thread that moved state away from SUB_LIVE. */
    size_t drop_queued;
    int drop_error;
    unsigned long long drop_writes;
    uint64_t drop_ns;
    struct latch dropped;               /* opened when the server drops it */

    /* Client side: only its own thread touches these until main joins it. */
    pthread_t thread;
    uint64_t *next_seq;                 /* per publisher */
    uint64_t *low_volume_received;      /* per publisher */
    unsigned long long received_msgs;
    unsigned long long received_bytes;
    size_t leftover;                    /* bytes of a message cut short at EOF */
    bool closed_itself;
    bool failed;
    char failure[200];
};

/* One write of a message to one subscriber: the handler's argument. */
struct write_slot {
    struct message *msg;
    struct subscriber *sub;
};

/* One reference per accepted async_write plus one held by the publisher
 * while it issues them; whoever drops the last one frees the message. */
struct message {
    atomic_uint refs;
    uint64_t published_ns;
    bool low_volume;                    /* also sent to the frozen subscriber */
    size_t wire_len;
    unsigned char *wire;                /* header + payload, after slots[] */
    struct write_slot slots[];          /* one per subscriber */
};

struct publisher {
    pthread_t thread;
    struct fanout *f;
    unsigned id;
    uint64_t rng;
    uint64_t published;                 /* messages sent to every live subscriber */
    uint32_t low_volume_published;      /* of them, in the low-volume stream */
    uint64_t next_low_volume_ns;        /* when the next one goes into it */
    unsigned long long writes_started;
    int error;
};

struct runner {
    pthread_t thread;
    io_context *ctx;
};

struct fanout {
    const struct options *o;
    io_context *ctx;
    struct subscriber *subs;
    struct publisher *pubs;
    struct sockaddr_in addr;            /* where the server listens */
    size_t max_wire;
    size_t high_mark;                   /* backlog that makes a subscriber hold publishers back */
    size_t low_mark;                    /* ...until it is back down to this */
    size_t unhandled_limit;             /* unhandled bytes that hold publishers back too */
    uint64_t low_volume_interval_ns;    /* per publisher */
    atomic_bool stopping;

    /* Subscribers above their high mark, and over the unhandled limit.  A
     * publisher that sees some waits on flow_cond; whatever brings one
     * back changes its state first, then signals under flow_lock, so that
     * no wake-up is lost. */
    atomic_uint subscribers_above;
    atomic_uint subscribers_unhandled;
    pthread_mutex_t flow_lock;
    pthread_cond_t flow_cond;
    atomic_ullong waits_above_high;     /* publisher waits for a subscriber above its high mark */
    atomic_ullong waits_unhandled;      /* ...for one over the unhandled limit */
    atomic_ullong waited_ns;
    atomic_ullong stalls;               /* subscribers let go for taking nothing */
    atomic_ullong probes;               /* stalls the clock suggested, sent to be confirmed */

    /* Publishers that finished; main waits on done_cond (its timer). */
    pthread_mutex_t done_lock;
    pthread_cond_t done_cond;
    unsigned publishers_done;

    atomic_ullong published;
    atomic_ullong writes_ok;
    atomic_ullong bytes_ok;
    atomic_ullong skipped;              /* writes not started: subscriber gone */
    atomic_ullong err_timedout;
    atomic_ullong err_canceled;
    atomic_ullong err_badf;
    atomic_ullong err_pipe;
    atomic_ullong err_connreset;
    atomic_ullong err_other;

    /* Anything that should not happen; the first one is described. */
    atomic_ullong unexpected;
    pthread_mutex_t note_lock;
    char first_unexpected[200];

    struct histogram latency;
};

/* ------------------------------------------------------------------ */
/* small helpers                                                       */
/* ------------------------------------------------------------------ */

static void fatal(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("fanout: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void check_pthread(int err, const char *what)
{
    if (err != 0)
        fatal("%s: %s", what, strerror(err));
}

static void lock(pthread_mutex_t *m)
{
    check_pthread(pthread_mutex_lock(m), "pthread_mutex_lock");
}

static void unlock(pthread_mutex_t *m)
{
    check_pthread(pthread_mutex_unlock(m), "pthread_mutex_unlock");
}

/* A condition variable that times out on CLOCK_MONOTONIC, so that a clock
 * step cannot stretch or cut the waits. */
static void cond_init_monotonic(pthread_cond_t *c)
{
    pthread_condattr_t attr;

    check_pthread(pthread_condattr_init(&attr), "pthread_condattr_init");
    check_pthread(pthread_condattr_setclock(&attr, CLOCK_MONOTONIC), "pthread_condattr_setclock");
    check_pthread(pthread_cond_init(c, &attr), "pthread_cond_init");
    check_pthread(pthread_condattr_destroy(&attr), "pthread_condattr_destroy");
}

/* Waits until *deadline at most; returns false on time-out. */
static bool cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *deadline)
{
    int err = pthread_cond_timedwait(c, m, deadline);

    if (err == ETIMEDOUT)
        return false;
    check_pthread(err, "pthread_cond_timedwait");
    return true;
}

static void start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
    check_pthread(pthread_create(t, NULL, fn, arg), "pthread_create");
}

static void join_thread(pthread_t t)
{
    check_pthread(pthread_join(t, NULL), "pthread_join");
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        fatal("clock_gettime: %s", strerror(errno));
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct timespec timespec_of(uint64_t ns)
{
    struct timespec ts = { (time_t)(ns / 1000000000u), (long)(ns % 1000000000u) };

    return ts;
}

static void latch_init(struct latch *l)
{
    check_pthread(pthread_mutex_init(&l->lock, NULL), "pthread_mutex_init");
    check_pthread(pthread_cond_init(&l->cond, NULL), "pthread_cond_init");
    l->open = false;
}

static void latch_destroy(struct latch *l)
{
    check_pthread(pthread_cond_destroy(&l->cond), "pthread_cond_destroy");
    check_pthread(pthread_mutex_destroy(&l->lock), "pthread_mutex_destroy");
}

static void latch_open(struct latch *l)
{
    lock(&l->lock);
    l->open = true;
    check_pthread(pthread_cond_broadcast(&l->cond), "pthread_cond_broadcast");
    unlock(&l->lock);
}

static void latch_wait(struct latch *l)
{
    lock(&l->lock);
    while (!l->open)
        check_pthread(pthread_cond_wait(&l->cond, &l->lock), "pthread_cond_wait");
    unlock(&l->lock);
}

static const char *errno_name(int err)
{
    static _Thread_local char other[32];

    switch (err) {
    case 0: return "0";
    case ECANCELED: return "ECANCELED";
    case EBADF: return "EBADF";
    case EPIPE: return "EPIPE";
    case ECONNRESET: return "ECONNRESET";
    case ENOMEM: return "ENOMEM";
    case EINVAL: return "EINVAL";
    case EBUSY: return "EBUSY";
    case EIO: return "EIO";
    case ENOTCONN: return "ENOTCONN";
    case ETIMEDOUT: return "ETIMEDOUT";
    default:
        snprintf(other, sizeof(other), "errno %d", err);
        return other;
    }
}

static void format_bytes(char *out, size_t size, unsigned long long bytes)
{
    if (bytes >= (1ull << 20))
        snprintf(out, size, "%.1f MiB", (double)bytes / (double)(1ull << 20));
    else if (bytes >= (1ull << 10))
        snprintf(out, size, "%.1f KiB", (double)bytes / 1024.0);
    else
        snprintf(out, size, "%llu B", bytes);
}

static void format_ns(char *out, size_t size, uint64_t ns)
{
    if (ns >= 1000000000u)
        snprintf(out, size, "%.2f s", (double)ns / 1e9);
    else if (ns >= 1000000u)
        snprintf(out, size, "%.2f ms", (double)ns / 1e6);
    else if (ns >= 1000u)
        snprintf(out, size, "%.1f us", (double)ns / 1e3);
    else
        snprintf(out, size, "%" PRIu64 " ns", ns);
}

/* ------------------------------------------------------------------ */
/* payload, checksum, latency histogram                                */
/* ------------------------------------------------------------------ */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9u;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* The payload of (publisher, seq): anyone can regenerate it. */
static void fill_payload(unsigned char *p, size_t len, uint64_t seed, unsigned pub, uint64_t seq)
{
    uint64_t s = mix64(seed ^ mix64(((uint64_t)pub << 48) ^ seq)) | 1;
    size_t i;

    for (i = 0; i + 8 <= len; i += 8) {
        uint64_t w = xorshift64(&s);

        memcpy(p + i, &w, 8);
    }
    if (i < len) {
        uint64_t w = xorshift64(&s);

        memcpy(p + i, &w, len - i);
    }
}

/* A word-at-a-time multiplicative hash: cheap enough for the subscribers
 * to run on every byte, and any misplaced byte changes it. */
static uint64_t checksum(const unsigned char *p, size_t len)
{
    uint64_t h = 0x9e3779b97f4a7c15u ^ len;
    size_t i;

    for (i = 0; i + 8 <= len; i += 8) {
        uint64_t w;

        memcpy(&w, p + i, 8);
        h = ((h << 5 | h >> 59) ^ w) * 0x100000001b3u;
    }
    for (; i < len; i++)
        h = ((h << 5 | h >> 59) ^ p[i]) * 0x100000001b3u;
    return mix64(h);
}

static unsigned floor_log2(uint64_t v)
{
    unsigned r = 0;

    for (unsigned step = 32; step > 0; step /= 2) {
        if (v >> step) {
            v >>= step;
            r += step;
        }
    }
    return r;
}

static unsigned lat_bucket(uint64_t ns)
{
    unsigned msb;

    if (ns < (1u << LAT_SUB_BITS))
        return (unsigned)ns;
    msb = floor_log2(ns);
    return ((msb - LAT_SUB_BITS + 1) << LAT_SUB_BITS) |
           (unsigned)((ns >> (msb - LAT_SUB_BITS)) & ((1u << LAT_SUB_BITS) - 1));
}

/* The largest value that falls in bucket b. */
static uint64_t lat_bucket_high(unsigned b)
{
    unsigned msb, sub;
    uint64_t low;

    if (b < (1u << LAT_SUB_BITS))
        return b;
    msb = (b >> LAT_SUB_BITS) + LAT_SUB_BITS - 1;
    sub = b & ((1u << LAT_SUB_BITS) - 1);
    low = (uint64_t)((1u << LAT_SUB_BITS) | sub) << (msb - LAT_SUB_BITS);
    return low + ((uint64_t)1 << (msb - LAT_SUB_BITS)) - 1;
}

static void lat_record(struct histogram *h, uint64_t ns)
{
    unsigned long long max = atomic_load_explicit(&h->max, memory_order_relaxed);

    atomic_fetch_add_explicit(&h->count[lat_bucket(ns)], 1, memory_order_relaxed);
    while (ns > max && !atomic_compare_exchange_weak_explicit(&h->max, &max, ns,
                                                              memory_order_relaxed,
                                                              memory_order_relaxed))
        ;
}

/* The value at quantile q (0 < q <= 1), as the top of its bucket. */
static uint64_t lat_quantile(struct histogram *h, uint64_t total, double q)
{
    uint64_t rank = (uint64_t)(q * (double)total), seen = 0;
    uint64_t max = atomic_load(&h->max);

    if ((double)rank < q * (double)total || rank == 0)
        rank++;
    for (unsigned b = 0; b < LAT_BUCKETS; b++) {
        seen += atomic_load(&h->count[b]);
        if (seen >= rank) {
            uint64_t high = lat_bucket_high(b);

            return high < max ? high : max;
        }
    }
    return max;
}

/* ------------------------------------------------------------------ */
/* server: drops, write handlers, publishers                           */
/* ------------------------------------------------------------------ */

static void note_unexpected(struct fanout *f, const char *fmt, ...)
{
    va_list ap;

    atomic_fetch_add(&f->unexpected, 1);
    lock(&f->note_lock);
    if (f->first_unexpected[0] == '\0') {
        va_start(ap, fmt);
        vsnprintf(f->first_unexpected, sizeof(f->first_unexpected), fmt, ap);
        va_end(ap);
    }
    unlock(&f->note_lock);
}

/*
 * Moves s out of SUB_LIVE into state and closes its descriptor, unless
 * another thread did so first.  Called from publishers (slow) and from write
 * handlers (a send timeout, a hang-up); io_descriptor_close() is safe
 * against the writes other publishers are starting on s at that very
 * moment: theirs complete with EBADF.
 */
static void drop_subscriber(struct fanout *f, struct subscriber *s, enum sub_state state,
                            int error, size_t queued)
{
    int live = SUB_LIVE;
    int err;

    if (!atomic_compare_exchange_strong(&s->state, &live, (int)state))
        return;
    s->drop_queued = queued;
    s->drop_error = error;
    s->drop_writes = atomic_load(&s->writes_ok);
    s->drop_ns = now_ns();
    err = io_descriptor_close(s->d);
    if (err != 0)
        note_unexpected(f, "io_descriptor_close(subscriber %u): %s", s->index, errno_name(err));
    latch_open(&s->dropped);
}

static void message_put(struct message *m)
{
    if (atomic_fetch_sub(&m->refs, 1) == 1)
        free(m);
}

/* Wakes the publishers waiting for room.  Whoever calls it has changed
 * what they wait on before: taking flow_lock then ensures that a waiter
 * either saw the change or is asleep and gets the broadcast. */
static void flow_broadcast(struct fanout *f)
{
    lock(&f->flow_lock);
    check_pthread(pthread_cond_broadcast(&f->flow_cond), "pthread_cond_broadcast");
    unlock(&f->flow_lock);
}

/*
 * Counts the bytes of a write to s about to start, before its handler can
 * run.  The time of a rise over the limit is stored before the count that
 * makes it, so that a publisher that sees the count over the limit never
 * pairs it with the time of an earlier rise (it would take a subscriber
 * that was idle for a while for a stalled one).
 */
static void unhandled_add(struct fanout *f, struct subscriber *s, size_t bytes)
{
    unsigned long long before = atomic_load(&s->unhandled_bytes);
    bool rises;

    do {
        rises = before <= f->unhandled_limit && before + bytes > f->unhandled_limit;
        if (rises)
            atomic_store(&s->unhandled_since_ns, now_ns());
    } while (!atomic_compare_exchange_weak(&s->unhandled_bytes, &before, before + bytes));
    if (rises)
        atomic_fetch_add(&f->subscribers_unhandled, 1);
}

/* Takes back the bytes of a write to s that ended (or never started). */
static void unhandled_sub(struct fanout *f, struct subscriber *s, size_t bytes)
{
    unsigned long long before = atomic_fetch_sub(&s->unhandled_bytes, bytes);

    if (before > f->unhandled_limit && before - bytes <= f->unhandled_limit) {
        atomic_fetch_sub(&f->subscribers_unhandled, 1);
        flow_broadcast(f);
    }
}

static void note_write_error(struct fanout *f, struct subscriber *s, int error)
{
    bool live = atomic_load(&s->state) == SUB_LIVE;

    switch (error) {
    case ETIMEDOUT:
        /* Every write pending when the timeout fired ends so, and the
         * first handler drops the subscriber; writes started after it
         * fired end with ECANCELED, or EBADF. */
        atomic_fetch_add(&f->err_timedout, 1);
        drop_subscriber(f, s, SUB_DROPPED_TIMEOUT, error, 0);
        break;
    case ECANCELED:
    case EBADF:
        /* Only our close cancels, and it changes the state first. */
        atomic_fetch_add(error == ECANCELED ? &f->err_canceled : &f->err_badf, 1);
        if (live)
            note_unexpected(f, "subscriber %u: %s while live", s->index, errno_name(error));
        break;
    case EPIPE:
    case ECONNRESET:
        atomic_fetch_add(error == EPIPE ? &f->err_pipe : &f->err_connreset, 1);
        if (s->role != ROLE_DISCONNECT && live)
            note_unexpected(f, "subscriber %u: %s but it never hung up", s->index, errno_name(error));
        drop_subscriber(f, s, SUB_DISCONNECTED, error, 0);
        break;
    default:
        atomic_fetch_add(&f->err_other, 1);
        note_unexpected(f, "subscriber %u: write failed: %s", s->index, errno_name(error));
        drop_subscriber(f, s, SUB_FAILED, error, 0);
        break;
    }
}

/* Runs on a run thread, on the subscriber descriptor's strand. */
static void on_written(void *arg, int error, size_t bytes)
{
    struct write_slot *w = arg;
    struct message *m = w->msg;
    struct subscriber *s = w->sub;
    struct fanout *f = s->f;

    if (bytes > 0 && m->published_ns > atomic_load_explicit(&s->last_taken_published_ns,
                                                            memory_order_relaxed))
        atomic_store_explicit(&s->last_taken_published_ns, m->published_ns, memory_order_relaxed);
    if (error == 0) {
        uint64_t now = now_ns();

        lat_record(&f->latency, now - m->published_ns);
        atomic_store_explicit(&s->last_progress_ns, now, memory_order_relaxed);
        if (bytes != m->wire_len)
            note_unexpected(f, "subscriber %u: async_write wrote %zu of %zu bytes", s->index,
                            bytes, m->wire_len);
        atomic_fetch_add_explicit(&s->writes_ok, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&f->writes_ok, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&f->bytes_ok, bytes, memory_order_relaxed);
    } else {
        if (error == ETIMEDOUT)
            atomic_fetch_add(&s->timed_out_bytes, m->wire_len - bytes);
        note_write_error(f, s, error);
    }
    unhandled_sub(f, s, m->wire_len);
    message_put(m);
}

/*
 * The water-mark handler: runs on the subscriber descriptor's strand, in
 * order with its write handlers.  "Above" makes the subscriber hold
 * publishers back (see holds_back()); "below" releases them.  Checks what
 * the library promises: the events alternate, starting with "above", and
 * each carries a count on its side of the marks.  One out of turn is
 * counted but changes nothing, so that the flags and the count of
 * subscribers above stay consistent for the run to go on.
 */
static void on_watermark(void *arg, bool above_high, size_t queued)
{
    struct subscriber *s = arg;
    struct fanout *f = s->f;
    const char *event = above_high ? "above" : "below";

    if (above_high)
        s->watermark_rises++;
    else
        s->watermark_falls++;
    if (above_high ? queued <= f->high_mark : queued > f->low_mark)
        note_unexpected(f, "subscriber %u: \"%s\" water-mark event with %zu bytes queued "
                        "(low %zu, high %zu)", s->index, event, queued, f->low_mark, f->high_mark);
    if (above_high == atomic_load(&s->above_high)) {
        note_unexpected(f, "subscriber %u: two \"%s\" water-mark events in a row", s->index, event);
        return;
    }
    if (above_high) {
        atomic_store(&s->above_since_ns, now_ns());
        atomic_store(&s->above_high, true);
        atomic_fetch_add(&f->subscribers_above, 1);
        return;
    }
    atomic_store(&s->above_high, false);
    atomic_fetch_sub(&f->subscribers_above, 1);
    flow_broadcast(f);
}

static struct message *message_create(struct fanout *f, unsigned pub, uint64_t seq, size_t length,
                                      uint32_t low_volume_seq)
{
    unsigned n = f->o->subscribers;
    size_t wire_len = sizeof(struct wire_header) + length;
    struct wire_header h;
    struct message *m;

    m = malloc(sizeof(*m) + n * sizeof(m->slots[0]) + wire_len);
    if (m == NULL)
        return NULL;
    atomic_init(&m->refs, 1);
    m->low_volume = low_volume_seq != 0;
    m->wire_len = wire_len;
    m->wire = (unsigned char *)&m->slots[n];
    for (unsigned i = 0; i < n; i++)
        m->slots[i] = (struct write_slot){ m, &f->subs[i] };
    fill_payload(m->wire + sizeof(h), length, f->o->seed, pub, seq);
    h = (struct wire_header){
        .magic = WIRE_MAGIC,
        .publisher = pub,
        .seq = seq,
        .length = (uint32_t)length,
        .low_volume_seq = low_volume_seq,
        .checksum = checksum(m->wire + sizeof(h), length),
    };
    memcpy(m->wire, &h, sizeof(h));
    return m;
}

/* The frozen subscriber takes the low-volume stream only, the others
 * every message. */
static bool subscribes_to(const struct subscriber *s, const struct message *m)
{
    return s->role != ROLE_FROZEN || m->low_volume;
}

/*
 * Starts one async_write of m per live subscriber to it, from this
 * publisher thread, while other publishers do the same on the same
 * descriptors.
 */
static void publish_one(struct fanout *f, struct publisher *p, struct message *m)
{
    struct iovec iov = io_buffer(m->wire, m->wire_len);

    m->published_ns = now_ns();
    for (unsigned i = 0; i < f->o->subscribers; i++) {
        struct subscriber *s = &f->subs[i];
        size_t queued;
        int err;

        if (!subscribes_to(s, m))
            continue;
        if (atomic_load(&s->state) != SUB_LIVE) {
            atomic_fetch_add_explicit(&f->skipped, 1, memory_order_relaxed);
            continue;
        }
        queued = io_descriptor_queued_bytes(s->d);
        if (queued > f->o->cap) {
            drop_subscriber(f, s, SUB_DROPPED_SLOW, 0, queued);
            continue;
        }
        atomic_fetch_add(&m->refs, 1);
        unhandled_add(f, s, m->wire_len);
        err = io_descriptor_async_write(s->d, &iov, 1, on_written, &m->slots[i], NULL);
        if (err != 0) {
            /* A failed initiation never runs its handler. */
            unhandled_sub(f, s, m->wire_len);
            message_put(m);
            note_unexpected(f, "publisher %u: io_descriptor_async_write: %s", p->id, errno_name(err));
            continue;
        }
        p->writes_started++;
    }
    message_put(m);
}

/* Runs on the subscriber's strand after every handler queued there
 * before it was posted: its progress up to then is known. */
static void on_probe(void *arg)
{
    struct subscriber *s = arg;

    atomic_store(&s->probe_confirmed_ns, atomic_load(&s->probe_posted_ns));
    atomic_store(&s->probe_in_flight, false);
    flow_broadcast(s->f);
}

/*
 * Whether s, quiet by the clock since before stalls_at, has really taken
 * nothing for that long.  Its progress is known from its write handlers,
 * and they may simply be late: under load a run thread may not run for
 * longer than --stall, and taking that for a stall let healthy
 * subscribers go, with nothing but the cap to stop them.  So the first time it looks stalled, a
 * probe is posted to its strand; it runs after every handler of a write
 * that ended before it was posted, and if the subscriber's progress has
 * still not moved past stalls_at by then, it has taken nothing.  Until
 * the probe has run, s keeps holding publishers back; the probe wakes
 * them.
 */
static bool confirm_stall(struct fanout *f, struct subscriber *s, uint64_t now, uint64_t stalls_at)
{
    bool idle = false;
    int err;

    if (atomic_load(&s->probe_confirmed_ns) >= stalls_at)
        return true;
    if (!atomic_compare_exchange_strong(&s->probe_in_flight, &idle, true))
        return false;
    atomic_store(&s->probe_posted_ns, now);
    atomic_fetch_add(&f->probes, 1);
    err = io_strand_post(s->strand, on_probe, s);
    if (err != 0) {
        note_unexpected(f, "subscriber %u: io_strand_post: %s", s->index, errno_name(err));
        atomic_store(&s->probe_in_flight, false);
        return true;            /* nothing would wake the publishers: let it go */
    }
    return false;
}

/* Why a subscriber holds publishers back, the weightier reason first. */
enum hold { HOLD_NONE, HOLD_ABOVE_HIGH, HOLD_UNHANDLED };

/*
 * Whether s holds publishers back, and why: live, above its high mark
 * (its water-mark events say so) or over the unhandled limit, and still
 * taking data.  One that has taken nothing for stall_ns since the later
 * of the rise that made it hold them back and its last whole write
 * (confirmed by a probe) is marked stalled, for every publisher, until it
 * takes something again.  While it holds them back, *wake_by becomes no
 * later than the moment it would count as stalled by the clock.
 */
static enum hold holds_back(struct fanout *f, struct subscriber *s, uint64_t now,
                            uint64_t *wake_by)
{
    bool above = atomic_load(&s->above_high);
    bool unhandled = atomic_load(&s->unhandled_bytes) > f->unhandled_limit;
    unsigned long long writes, stalled_at;
    uint64_t holding_since, quiet_since, stalls_at;

    if ((!above && !unhandled) || atomic_load(&s->state) != SUB_LIVE)
        return HOLD_NONE;
    writes = atomic_load(&s->writes_ok);
    stalled_at = atomic_load(&s->stalled_at);
    if (stalled_at == writes)
        return HOLD_NONE;
    holding_since = UINT64_MAX;
    if (above)
        holding_since = atomic_load(&s->above_since_ns);
    if (unhandled && atomic_load(&s->unhandled_since_ns) < holding_since)
        holding_since = atomic_load(&s->unhandled_since_ns);
    quiet_since = atomic_load(&s->last_progress_ns);
    if (holding_since > quiet_since)
        quiet_since = holding_since;
    stalls_at = quiet_since + f->o->stall_ns;
    if (now < stalls_at) {
        if (stalls_at < *wake_by)
            *wake_by = stalls_at;
    } else if (confirm_stall(f, s, now, stalls_at)) {
        if (atomic_compare_exchange_strong(&s->stalled_at, &stalled_at, writes))
            atomic_fetch_add(&f->stalls, 1);
        return HOLD_NONE;
    }
    return unhandled ? HOLD_UNHANDLED : HOLD_ABOVE_HIGH;
}

/*
 * Flow control.  Publishers are faster than the network, so after each
 * message they wait while any subscriber that is still taking data is
 * above its high water mark (a quarter of the cap), until its "below"
 * event, at the low mark: healthy subscribers then never get near the
 * cap.  While no subscriber is above, a publisher reads two counters and
 * goes on.
 *
 * An event reaches the publishers through a run thread, after the write
 * handlers queued before it, and on a busy machine that can be
 * milliseconds after the crossing: long enough for the publishers to
 * push a healthy subscriber from the high mark past the cap.  So they
 * also wait while the writes to one whose handlers have not run pass the
 * unhandled limit, the cap less one message per publisher: that counter
 * is at least the backlog, and a publisher knows it the moment it starts
 * a write.  This bounds what the events cannot.  In the default run it
 * seldom holds them; with the ctest run's 1 MiB cap, about one wait in
 * five is for it.
 *
 * A subscriber that stops reading takes nothing while they wait; after
 * --stall (confirmed through its strand: see confirm_stall()) it no
 * longer holds them back, its backlog grows with every message, and it
 * is dropped at the cap.  (A rule on queue sizes alone
 * cannot tell it from a healthy one that is merely last.)  The frozen
 * subscriber's backlog grows too slowly to reach the high mark, as a
 * rule; if it does, it takes nothing either and is let go after --stall
 * the same way, until the send timeout drops it.  Nothing is polled:
 * "below" events and handlers that bring a subscriber back under the
 * unhandled limit wake the waiters, and a waiter sleeps no longer than
 * until the first moment a subscriber holding it back would count as
 * stalled.
 */
static void wait_for_room(struct fanout *f)
{
    unsigned n = f->o->subscribers;
    uint64_t began = 0;

    if (atomic_load(&f->subscribers_above) == 0 && atomic_load(&f->subscribers_unhandled) == 0)
        return;
    lock(&f->flow_lock);
    while (!atomic_load(&f->stopping)) {
        uint64_t now = now_ns(), wake_by = UINT64_MAX;
        enum hold why = HOLD_NONE;
        struct timespec deadline;

        for (unsigned i = 0; i < n; i++) {
            enum hold h = holds_back(f, &f->subs[i], now, &wake_by);

            if (h > why)
                why = h;
        }
        if (why == HOLD_NONE)
            break;
        if (began == 0) {
            began = now;
            atomic_fetch_add(why == HOLD_UNHANDLED ? &f->waits_unhandled : &f->waits_above_high, 1);
        }
        deadline = timespec_of(wake_by);
        cond_wait_until(&f->flow_cond, &f->flow_lock, &deadline);
    }
    unlock(&f->flow_lock);
    if (began != 0)
        atomic_fetch_add(&f->waited_ns, now_ns() - began);
}

static void *publish(void *arg)
{
    struct publisher *p = arg;
    struct fanout *f = p->f;
    const struct options *o = f->o;

    for (uint64_t seq = 0;; seq++) {
        uint32_t low_volume_seq = 0;
        struct message *m;
        uint64_t now;
        size_t length;

        if (o->messages != 0 ? seq == o->messages : atomic_load(&f->stopping))
            break;
        length = o->sizes[xorshift64(&p->rng) % o->nsizes];
        now = now_ns();
        if (now >= p->next_low_volume_ns) {
            low_volume_seq = ++p->low_volume_published;
            p->next_low_volume_ns = now + f->low_volume_interval_ns;
        }
        m = message_create(f, p->id, seq, length, low_volume_seq);
        if (m == NULL) {
            p->error = ENOMEM;
            break;
        }
        publish_one(f, p, m);
        wait_for_room(f);
        p->published = seq + 1;
        atomic_fetch_add_explicit(&f->published, 1, memory_order_relaxed);
    }
    lock(&f->done_lock);
    f->publishers_done++;
    check_pthread(pthread_cond_signal(&f->done_cond), "pthread_cond_signal");
    unlock(&f->done_lock);
    return NULL;
}

static void *run(void *arg)
{
    struct runner *r = arg;

    io_context_run(r->ctx);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* subscribers (the clients)                                           */
/* ------------------------------------------------------------------ */

static void sub_fail(struct subscriber *s, const char *fmt, ...)
{
    va_list ap;

    if (s->failed)
        return;
    s->failed = true;
    va_start(ap, fmt);
    vsnprintf(s->failure, sizeof(s->failure), fmt, ap);
    va_end(ap);
}

static bool size_is_known(const struct options *o, size_t length)
{
    for (unsigned i = 0; i < o->nsizes; i++)
        if (o->sizes[i] == length)
            return true;
    return false;
}

static bool header_ok(struct subscriber *s, const struct wire_header *h)
{
    const struct options *o = s->f->o;
    uint64_t low_volume_next;

    if (h->magic != WIRE_MAGIC) {
        sub_fail(s, "bad header after %llu messages (magic %#" PRIx32 ")", s->received_msgs,
                 h->magic);
        return false;
    }
    if (h->publisher >= o->publishers || !size_is_known(o, h->length)) {
        sub_fail(s, "bad header after %llu messages (publisher %" PRIu32 ", length %" PRIu32 ")",
                 s->received_msgs, h->publisher, h->length);
        return false;
    }
    low_volume_next = s->low_volume_received[h->publisher] + 1;
    if (s->role == ROLE_FROZEN) {
        /* Its stream only: each low-volume number in turn, the sequence
         * numbers rising. */
        if (h->low_volume_seq != low_volume_next || h->seq < s->next_seq[h->publisher]) {
            sub_fail(s, "publisher %" PRIu32 ": got seq %" PRIu64 " (low-volume %" PRIu32
                     "), expected low-volume %" PRIu64 " with seq %" PRIu64 " or later",
                     h->publisher, h->seq, h->low_volume_seq, low_volume_next,
                     s->next_seq[h->publisher]);
            return false;
        }
        return true;
    }
    if (h->seq != s->next_seq[h->publisher]) {
        sub_fail(s, "publisher %" PRIu32 ": got seq %" PRIu64 ", expected %" PRIu64,
                 h->publisher, h->seq, s->next_seq[h->publisher]);
        return false;
    }
    if (h->low_volume_seq != 0 && h->low_volume_seq != low_volume_next) {
        sub_fail(s, "publisher %" PRIu32 " seq %" PRIu64 ": low-volume %" PRIu32 ", expected %" PRIu64,
                 h->publisher, h->seq, h->low_volume_seq, low_volume_next);
        return false;
    }
    return true;
}

/* Verifies the whole messages in buf[0..used) and returns the bytes they
 * take; after a failure, swallows everything. */
static size_t verify_messages(struct subscriber *s, const unsigned char *buf, size_t used)
{
    size_t off = 0;

    while (!s->failed && used - off >= sizeof(struct wire_header)) {
        struct wire_header h;

        memcpy(&h, buf + off, sizeof(h));
        if (!header_ok(s, &h))
            break;
        if (used - off - sizeof(h) < h.length)
            return off;
        if (checksum(buf + off + sizeof(h), h.length) != h.checksum) {
            sub_fail(s, "publisher %" PRIu32 " seq %" PRIu64 ": bad checksum", h.publisher, h.seq);
            break;
        }
        s->next_seq[h.publisher] = h.seq + 1;
        if (h.low_volume_seq != 0)
            s->low_volume_received[h.publisher]++;
        s->received_msgs++;
        off += sizeof(h) + h.length;
    }
    return s->failed ? used : off;
}

/* receive_buffer: SO_RCVBUF, or 0 for the kernel's default. */
static int connect_to_server(const struct sockaddr_in *addr, unsigned index, int receive_buffer)
{
    uint32_t hello = index;
    size_t sent = 0;
    int fd;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fatal("subscriber %u: socket: %s", index, strerror(errno));
    /* Before connect(): the window is agreed on then. */
    if (receive_buffer != 0 &&
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer)) != 0)
        fatal("subscriber %u: setsockopt(SO_RCVBUF): %s", index, strerror(errno));
    if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) != 0)
        fatal("subscriber %u: connect: %s", index, strerror(errno));
    /* MSG_NOSIGNAL: SIGPIPE stays at its default, and only the library's
     * writes are under test. */
    while (sent < sizeof(hello)) {
        ssize_t n = send(fd, (const char *)&hello + sent, sizeof(hello) - sent, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fatal("subscriber %u: send: %s", index, strerror(errno));
        sent += (size_t)n;
    }
    return fd;
}

/*
 * A subscriber: connects, says which one it is, then reads and verifies
 * until EOF.  The slow one stops reading after SLOW_READ_BYTES and the
 * frozen one after FROZEN_READ_BYTES; each waits, without a timer, for
 * the server to drop it.  The disconnecting one closes after
 * DISCONNECT_AFTER messages.
 */
static void *subscribe(void *arg)
{
    struct subscriber *s = arg;
    size_t size = s->f->max_wire + READ_CHUNK, used = 0;
    size_t stop_after = s->role == ROLE_SLOW ? SLOW_READ_BYTES :
                        s->role == ROLE_FROZEN ? FROZEN_READ_BYTES : 0;
    unsigned long long total = 0;
    bool stalled = stop_after != 0;
    unsigned char *buf;
    int fd;

    buf = malloc(size);
    if (buf == NULL)
        fatal("subscriber %u: out of memory", s->index);
    fd = connect_to_server(&s->f->addr, s->index,
                           s->role == ROLE_FROZEN ? LOW_VOLUME_SOCKET_BUFFER : 0);
    for (;;) {
        size_t want = size - used, consumed;
        ssize_t n;

        if (stalled && total >= stop_after) {
            latch_wait(&s->dropped);
            stalled = false;
        }
        if (stalled && want > stop_after - total)
            want = (size_t)(stop_after - total);
        n = read(fd, buf + used, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            sub_fail(s, "read: %s", errno_name(errno));
            break;
        }
        if (n == 0)
            break;
        total += (size_t)n;
        used += (size_t)n;
        consumed = verify_messages(s, buf, used);
        memmove(buf, buf + consumed, used - consumed);
        used -= consumed;
        if (s->role == ROLE_DISCONNECT && s->received_msgs >= DISCONNECT_AFTER) {
            s->closed_itself = true;
            break;
        }
    }
    s->received_bytes = total;
    s->leftover = used;
    if (close(fd) != 0)
        sub_fail(s, "close: %s", errno_name(errno));
    free(buf);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* setup                                                               */
/* ------------------------------------------------------------------ */

/* Listens on 127.0.0.1 with a port the kernel picks; fills f->addr. */
static int listen_loopback(struct fanout *f)
{
    struct sockaddr_in addr = { .sin_family = AF_INET };
    socklen_t len = sizeof(addr);
    int fd;

    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fatal("socket: %s", strerror(errno));
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
        fatal("bind(127.0.0.1:0): %s", strerror(errno));
    if (listen(fd, (int)f->o->subscribers) != 0)
        fatal("listen: %s", strerror(errno));
    if (getsockname(fd, (struct sockaddr *)&addr, &len) != 0)
        fatal("getsockname: %s", strerror(errno));
    f->addr = addr;
    return fd;
}

static void read_hello(int fd, uint32_t *hello)
{
    size_t got = 0;

    while (got < sizeof(*hello)) {
        ssize_t n = read(fd, (char *)hello + got, sizeof(*hello) - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fatal("read(hello): %s", strerror(errno));
        if (n == 0)
            fatal("read(hello): EOF");
        got += (size_t)n;
    }
}

/* Accepts every subscriber and hands its socket to an io_descriptor with
 * the send timeout and the water marks.  The hello tells which one connected: accept order is
 * not connect order. */
static void accept_subscribers(struct fanout *f, int listen_fd)
{
    static const int one = 1, low_volume_buffer = LOW_VOLUME_SOCKET_BUFFER;

    for (unsigned i = 0; i < f->o->subscribers; i++) {
        struct subscriber *s;
        uint32_t index;
        int fd, err;

        do
            fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        while (fd < 0 && errno == EINTR);
        if (fd < 0)
            fatal("accept4: %s", strerror(errno));
        read_hello(fd, &index);
        if (index >= f->o->subscribers || f->subs[index].d != NULL)
            fatal("unexpected hello %" PRIu32, index);
        s = &f->subs[index];
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
            fatal("setsockopt(TCP_NODELAY): %s", strerror(errno));
        if (s->role == ROLE_FROZEN &&
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &low_volume_buffer, sizeof(low_volume_buffer)) != 0)
            fatal("setsockopt(SO_SNDBUF): %s", strerror(errno));
        /* A strand of our own, not the descriptor's private one: the
         * stall probes are posted to it. */
        err = io_strand_create(f->ctx, &s->strand);
        if (err != 0)
            fatal("io_strand_create: %s", strerror(err));
        err = io_descriptor_create(f->ctx, fd, s->strand, &s->d);
        if (err != 0)
            fatal("io_descriptor_create: %s", strerror(err));
        err = io_descriptor_set_send_timeout(s->d, f->o->send_timeout_ns);
        if (err != 0)
            fatal("io_descriptor_set_send_timeout: %s", strerror(err));
        err = io_descriptor_set_watermarks(s->d, f->low_mark, f->high_mark, on_watermark, s);
        if (err != 0)
            fatal("io_descriptor_set_watermarks: %s", strerror(err));
    }
}

/* ------------------------------------------------------------------ */
/* options                                                             */
/* ------------------------------------------------------------------ */

static void usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s [options]\n"
            "  --subscribers S   subscriber connections (default 32, max 256)\n"
            "  --publishers P    publisher threads (default 4)\n"
            "  --run-threads R   threads in io_context_run (default 2)\n"
            "  --workers W       library worker threads (default 2)\n"
            "  --duration SEC    publish for SEC seconds (default 9.5)\n"
            "  --messages N      publish N messages per publisher, not for SEC\n"
            "  --sizes LIST      payload sizes, comma list, K/M suffixes\n"
            "                    (default 64,256,1K,4K,16K)\n"
            "  --cap BYTES       drop a subscriber whose backlog passes BYTES;\n"
            "                    its high water mark is BYTES/4, its low one\n"
            "                    BYTES/16: publishers wait from its rise above\n"
            "                    the high one to its fall to the low one, and\n"
            "                    while its writes not yet handled come near\n"
            "                    BYTES (unless it took nothing for --stall);\n"
            "                    K/M/G suffixes (default 8M)\n"
            "  --stall MS        a subscriber holding publishers back that took\n"
            "                    nothing for MS ms counts as stalled and no longer\n"
            "                    does (default %u)\n"
            "  --send-timeout MS a subscriber whose writes made no progress for\n"
            "                    MS ms is dropped (their handlers see ETIMEDOUT);\n"
            "                    longer than --stall; 0: none (default %u)\n"
            "  --slow            subscriber 0 stops reading after 64 KiB (default)\n"
            "  --no-slow         no slow subscriber\n"
            "  --disconnect      the next subscriber hangs up after %d messages (default)\n"
            "  --no-disconnect   no subscriber hangs up\n"
            "  --frozen          the next one takes only the low-volume stream (%u\n"
            "                    messages/s) and stops reading after 4 KiB: the send\n"
            "                    timeout drops it, long before the cap could (default\n"
            "                    with a send timeout and a healthy subscriber to spare)\n"
            "  --no-frozen       no frozen subscriber\n"
            "  --progress        a progress line on stderr every second (default\n"
            "                    when stderr is a terminal)\n"
            "  --seed N          seed of the sizes and payloads (default 1)\n"
            "  --help            this text\n",
            prog, STALL_MS_DEFAULT, SEND_TIMEOUT_MS_DEFAULT, DISCONNECT_AFTER,
            LOW_VOLUME_PER_SECOND);
}

static int parse_count(const char *text, unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long v;

    if (!isdigit((unsigned char)*text))
        return -1;
    errno = 0;
    v = strtoul(text, &end, 10);
    if (errno != 0 || *end != '\0' || v == 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

/* A byte count with an optional K, M or G suffix (powers of 1024). */
static int parse_bytes(const char *text, unsigned long long max, unsigned long long *out)
{
    unsigned long long v, unit = 1;
    char *end;

    if (!isdigit((unsigned char)*text))
        return -1;
    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno != 0)
        return -1;
    switch (*end) {
    case 'k': case 'K': unit = 1ull << 10; end++; break;
    case 'm': case 'M': unit = 1ull << 20; end++; break;
    case 'g': case 'G': unit = 1ull << 30; end++; break;
    default: break;
    }
    if (*end != '\0' || v > max / unit)
        return -1;
    *out = v * unit;
    return 0;
}

static int parse_sizes(const char *text, struct options *o)
{
    unsigned n = 0;

    for (const char *p = text;; p++) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        unsigned long long v;
        char item[32];

        if (len == 0 || len >= sizeof(item) || n == MAX_SIZES)
            return -1;
        memcpy(item, p, len);
        item[len] = '\0';
        if (parse_bytes(item, MAX_PAYLOAD, &v) != 0)
            return -1;
        o->sizes[n++] = (size_t)v;
        if (comma == NULL)
            break;
        p = comma;
    }
    o->nsizes = n;
    return 0;
}

static int parse_duration(const char *text, double *out)
{
    char *end;
    double v;

    if (!isdigit((unsigned char)*text) && *text != '.')
        return -1;
    errno = 0;
    v = strtod(text, &end);
    if (errno != 0 || *end != '\0' || !(v > 0.0) || v > 86400.0)
        return -1;
    *out = v;
    return 0;
}

static size_t max_wire_of(const struct options *o)
{
    size_t max = 0;

    for (unsigned i = 0; i < o->nsizes; i++)
        if (o->sizes[i] > max)
            max = o->sizes[i];
    return sizeof(struct wire_header) + max;
}

enum {
    OPT_SUBSCRIBERS = 256, OPT_PUBLISHERS, OPT_RUN_THREADS, OPT_WORKERS, OPT_DURATION,
    OPT_MESSAGES, OPT_SIZES, OPT_CAP, OPT_SLOW, OPT_NO_SLOW, OPT_DISCONNECT,
    OPT_NO_DISCONNECT, OPT_FROZEN, OPT_NO_FROZEN, OPT_PROGRESS, OPT_SEED, OPT_STALL,
    OPT_SEND_TIMEOUT, OPT_HELP,
};

static int bad_value(const char *prog, const char *opt, const char *value)
{
    fprintf(stderr, "%s: bad value '%s' for --%s\n", prog, value, opt);
    usage(stderr, prog);
    return -1;
}

static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        { "subscribers", required_argument, NULL, OPT_SUBSCRIBERS },
        { "publishers", required_argument, NULL, OPT_PUBLISHERS },
        { "run-threads", required_argument, NULL, OPT_RUN_THREADS },
        { "workers", required_argument, NULL, OPT_WORKERS },
        { "duration", required_argument, NULL, OPT_DURATION },
        { "messages", required_argument, NULL, OPT_MESSAGES },
        { "sizes", required_argument, NULL, OPT_SIZES },
        { "cap", required_argument, NULL, OPT_CAP },
        { "slow", no_argument, NULL, OPT_SLOW },
        { "no-slow", no_argument, NULL, OPT_NO_SLOW },
        { "disconnect", no_argument, NULL, OPT_DISCONNECT },
        { "no-disconnect", no_argument, NULL, OPT_NO_DISCONNECT },
        { "frozen", no_argument, NULL, OPT_FROZEN },
        { "no-frozen", no_argument, NULL, OPT_NO_FROZEN },
        { "progress", no_argument, NULL, OPT_PROGRESS },
        { "seed", required_argument, NULL, OPT_SEED },
        { "stall", required_argument, NULL, OPT_STALL },
        { "send-timeout", required_argument, NULL, OPT_SEND_TIMEOUT },
        { "help", no_argument, NULL, OPT_HELP },
        { NULL, 0, NULL, 0 },
    };
    const char *prog = argv[0];
    unsigned long v;
    unsigned long long b;
    int frozen_choice = -1;             /* -1: on where it can be */
    int c, index;

    *o = (struct options){
        .subscribers = 32, .publishers = 4, .run_threads = 2, .workers = 2,
        .duration = 9.5, .sizes = { 64, 256, 1024, 4096, 16384 }, .nsizes = 5,
        .cap = (size_t)8 << 20, .stall_ns = STALL_MS_DEFAULT * 1000000ull,
        .send_timeout_ns = SEND_TIMEOUT_MS_DEFAULT * 1000000ull, .slow = true, .disconnect = true,
        .seed = 1,
    };
    o->progress = isatty(STDERR_FILENO) == 1;
    while ((c = getopt_long(argc, argv, "", longopts, &index)) != -1) {
        const char *name = c >= OPT_SUBSCRIBERS ? longopts[index].name : "";

        switch (c) {
        case OPT_SUBSCRIBERS:
        case OPT_PUBLISHERS:
        case OPT_RUN_THREADS:
        case OPT_WORKERS:
            if (parse_count(optarg, c == OPT_SUBSCRIBERS ? 256ul : c == OPT_PUBLISHERS ? 1024ul : 256ul,
                            &v) != 0)
                return bad_value(prog, name, optarg);
            if (c == OPT_SUBSCRIBERS)
                o->subscribers = (unsigned)v;
            else if (c == OPT_PUBLISHERS)
                o->publishers = (unsigned)v;
            else if (c == OPT_RUN_THREADS)
                o->run_threads = (unsigned)v;
            else
                o->workers = (unsigned)v;
            break;
        case OPT_DURATION:
            if (parse_duration(optarg, &o->duration) != 0)
                return bad_value(prog, name, optarg);
            break;
        case OPT_MESSAGES:
            if (parse_count(optarg, 1000000000ul, &v) != 0)
                return bad_value(prog, name, optarg);
            o->messages = v;
            break;
        case OPT_SIZES:
            if (parse_sizes(optarg, o) != 0)
                return bad_value(prog, name, optarg);
            break;
        case OPT_CAP:
            if (parse_bytes(optarg, (unsigned long long)SIZE_MAX / 2, &b) != 0 || b == 0)
                return bad_value(prog, name, optarg);
            o->cap = (size_t)b;
            break;
        case OPT_STALL:
            if (parse_count(optarg, 60000ul, &v) != 0)
                return bad_value(prog, name, optarg);
            o->stall_ns = (uint64_t)v * 1000000u;
            break;
        case OPT_SEND_TIMEOUT:
            if (strcmp(optarg, "0") == 0)
                v = 0;                  /* none */
            else if (parse_count(optarg, 3600000ul, &v) != 0)
                return bad_value(prog, name, optarg);
            o->send_timeout_ns = (uint64_t)v * 1000000u;
            break;
        case OPT_SEED:
            if (parse_bytes(optarg, UINT64_MAX, &b) != 0)
                return bad_value(prog, name, optarg);
            o->seed = b;
            break;
        case OPT_SLOW: o->slow = true; break;
        case OPT_NO_SLOW: o->slow = false; break;
        case OPT_DISCONNECT: o->disconnect = true; break;
        case OPT_NO_DISCONNECT: o->disconnect = false; break;
        case OPT_FROZEN: frozen_choice = 1; break;
        case OPT_NO_FROZEN: frozen_choice = 0; break;
        case OPT_PROGRESS: o->progress = true; break;
        case OPT_HELP:
            usage(stdout, prog);
            exit(0);
        default:                        /* getopt_long printed what was wrong */
            usage(stderr, prog);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", prog, argv[optind]);
        usage(stderr, prog);
        return -1;
    }
    /* Nothing but the send timeout drops the frozen subscriber. */
    o->frozen = frozen_choice >= 0 ? frozen_choice == 1 :
                o->send_timeout_ns != 0 && o->subscribers >= 2u + o->slow + o->disconnect;
    if (o->frozen && o->send_timeout_ns == 0) {
        fprintf(stderr, "%s: --frozen needs a --send-timeout: nothing else drops it\n", prog);
        usage(stderr, prog);
        return -1;
    }
    if (o->subscribers < 1u + o->slow + o->disconnect + o->frozen) {
        fprintf(stderr, "%s: --subscribers must be at least %u with%s%s%s (one healthy one)\n", prog,
                1u + o->slow + o->disconnect + o->frozen, o->slow ? " --slow" : "",
                o->disconnect ? " --disconnect" : "", o->frozen ? " --frozen" : "");
        usage(stderr, prog);
        return -1;
    }
    /* Publishers stop waiting for the slow subscriber after --stall, and
     * only then does its backlog grow to the cap: a send timeout no longer
     * than that drops it first. */
    if (o->slow && o->send_timeout_ns != 0 && o->send_timeout_ns <= o->stall_ns) {
        fprintf(stderr, "%s: --send-timeout must be longer than --stall with --slow\n", prog);
        usage(stderr, prog);
        return -1;
    }
    /* Each publisher may add a message to a subscriber between two checks:
     * a cap below that would drop healthy subscribers. */
    if (o->cap / 2 / o->publishers < max_wire_of(o)) {
        fprintf(stderr, "%s: --cap must be at least 2 x publishers x largest message (%zu B)\n",
                prog, 2 * o->publishers * max_wire_of(o));
        usage(stderr, prog);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* main: timer, summary, verdict                                       */
/* ------------------------------------------------------------------ */

static unsigned subscribers_alive(struct fanout *f)
{
    unsigned alive = 0;

    for (unsigned i = 0; i < f->o->subscribers; i++)
        alive += atomic_load(&f->subs[i].state) == SUB_LIVE;
    return alive;
}

/*
 * Waits for the end of publishing (the deadline, or every publisher done
 * with --messages) with a timed wait on done_cond, ticking once a second
 * for the progress line; then tells the publishers to stop.
 */
static void wait_for_end(struct fanout *f, uint64_t start)
{
    const struct options *o = f->o;
    uint64_t end = start + (uint64_t)(o->duration * 1e9), tick = start + 1000000000u;
    unsigned long long last_msgs = 0, last_bytes = 0;

    lock(&f->done_lock);
    for (;;) {
        uint64_t now = now_ns(), wake;
        struct timespec deadline;

        if (o->messages != 0 ? f->publishers_done == o->publishers : now >= end)
            break;
        if (now >= tick) {
            unsigned long long msgs = atomic_load(&f->published), bytes = atomic_load(&f->bytes_ok);

            if (o->progress)
                fprintf(stderr, "[%5.1f s] %llu msg/s, %.1f MB/s, %u/%u subscribers alive\n",
                        (double)(now - start) / 1e9, msgs - last_msgs,
                        (double)(bytes - last_bytes) / 1e6, subscribers_alive(f), o->subscribers);
            last_msgs = msgs;
            last_bytes = bytes;
            tick += 1000000000u;
            continue;
        }
        wake = o->messages == 0 && end < tick ? end : tick;
        deadline = timespec_of(wake);
        cond_wait_until(&f->done_cond, &f->done_lock, &deadline);
    }
    unlock(&f->done_lock);
    atomic_store(&f->stopping, true);
    flow_broadcast(f);
}

static const char *state_name(const struct subscriber *s, char *buf, size_t size)
{
    char queued[32];

    switch (atomic_load(&s->state)) {
    case SUB_LIVE:
        return "live";
    case SUB_DROPPED_SLOW:
        format_bytes(queued, sizeof(queued), s->drop_queued);
        snprintf(buf, size, "slow (queued %s)", queued);
        return buf;
    case SUB_DROPPED_TIMEOUT:
        format_bytes(queued, sizeof(queued), atomic_load(&s->timed_out_bytes));
        snprintf(buf, size, "timed out (queued %s)", queued);
        return buf;
    case SUB_DISCONNECTED:
        snprintf(buf, size, "disconnected (%s)", errno_name(s->drop_error));
        return buf;
    default:
        snprintf(buf, size, "failed (%s)", errno_name(s->drop_error));
        return buf;
    }
}

/* The frozen subscriber's drop: by the send timeout, and not before the
 * timeout had passed since its last progress.  One line per problem. */
static unsigned verify_frozen(struct fanout *f, struct subscriber *s, bool frozen_caught)
{
    const struct options *o = f->o;
    uint64_t since_last_taken;
    char why[64];

    if (!frozen_caught) {
        printf("FAIL subscriber %u stopped reading but the send timeout never dropped it while "
               "publishing (raise --messages or --duration, or lower --send-timeout)\n",
               s->index);
        return 1;
    }
    if (atomic_load(&s->state) != SUB_DROPPED_TIMEOUT) {
        printf("FAIL subscriber %u: frozen one ended %s, not by the send timeout (lower "
               "--send-timeout or raise --cap)\n",
               s->index, state_name(s, why, sizeof(why)));
        return 1;
    }
    since_last_taken = s->drop_ns - atomic_load(&s->last_taken_published_ns);
    if (since_last_taken < o->send_timeout_ns) {
        printf("FAIL subscriber %u: dropped by the send timeout %.1f ms after the last message it "
               "took was published, before the %.0f ms timeout had passed\n",
               s->index, (double)since_last_taken / 1e6, (double)o->send_timeout_ns / 1e6);
        return 1;
    }
    return 0;
}

/* Whether every "above" of s got its "below": once its descriptor is
 * destroyed and the context has run the last events, the library
 * promises so. */
static bool watermarks_paired(const struct subscriber *s)
{
    return s->watermark_rises == s->watermark_falls && !atomic_load(&s->above_high);
}

/* Prints one line per problem and returns how many there were. */
static unsigned verify(struct fanout *f, bool slow_caught, bool frozen_caught)
{
    const struct options *o = f->o;
    unsigned problems = 0;
    char why[64];

    for (unsigned p = 0; p < o->publishers; p++) {
        if (f->pubs[p].error != 0) {
            printf("FAIL publisher %u: %s\n", p, errno_name(f->pubs[p].error));
            problems++;
        }
    }
    if (atomic_load(&f->unexpected) != 0) {
        printf("FAIL %llu unexpected events; first: %s\n", atomic_load(&f->unexpected),
               f->first_unexpected);
        problems++;
    }
    if (o->slow && !slow_caught) {
        printf("FAIL subscriber 0 stopped reading but was never dropped (raise --messages or "
               "--duration, or lower --cap)\n");
        problems++;
    }
    for (unsigned i = 0; i < o->subscribers; i++) {
        struct subscriber *s = &f->subs[i];
        int state = atomic_load(&s->state);

        if (!watermarks_paired(s)) {
            printf("FAIL subscriber %u: %llu \"above\" water-mark events, %llu \"below\", after "
                   "its descriptor was destroyed\n",
                   i, s->watermark_rises, s->watermark_falls);
            problems++;
        }
        if (s->failed) {
            printf("FAIL subscriber %u: %s\n", i, s->failure);
            problems++;
            continue;
        }
        switch (s->role) {
        case ROLE_HEALTHY:
            if (state != SUB_LIVE) {
                printf("FAIL subscriber %u: healthy but dropped: %s%s\n", i,
                       state_name(s, why, sizeof(why)),
                       state == SUB_DROPPED_TIMEOUT ?
                       " (its reader or the workers did not run for --send-timeout: on a "
                       "loaded machine, raise it)" : "");
                problems++;
                break;
            }
            if (s->leftover != 0) {
                printf("FAIL subscriber %u: EOF inside a message (%zu bytes)\n", i, s->leftover);
                problems++;
            }
            for (unsigned p = 0; p < o->publishers; p++) {
                if (s->next_seq[p] != f->pubs[p].published) {
                    printf("FAIL subscriber %u: got %" PRIu64 " of the %" PRIu64
                           " messages of publisher %u\n",
                           i, s->next_seq[p], f->pubs[p].published, p);
                    problems++;
                }
            }
            break;
        case ROLE_SLOW:
            if (state != SUB_DROPPED_SLOW && slow_caught) {
                printf("FAIL subscriber %u: slow one ended %s\n", i, state_name(s, why, sizeof(why)));
                problems++;
            }
            break;
        case ROLE_DISCONNECT:
            if (!s->closed_itself) {
                printf("FAIL subscriber %u: EOF before it hung up (%llu messages; raise "
                       "--messages or --duration)\n",
                       i, s->received_msgs);
                problems++;
            } else if (state != SUB_DISCONNECTED ||
                       (s->drop_error != EPIPE && s->drop_error != ECONNRESET)) {
                printf("FAIL subscriber %u: hung up, but the server saw it %s (no write failed "
                       "after it: publishing ended first)\n",
                       i, state_name(s, why, sizeof(why)));
                problems++;
            }
            break;
        case ROLE_FROZEN:
            problems += verify_frozen(f, s, frozen_caught);
            break;
        }
    }
    return problems;
}

static void print_watermark_summary(struct fanout *f)
{
    unsigned long long rises = 0, falls = 0;
    unsigned unpaired = 0;
    char high[32], low[32];

    for (unsigned i = 0; i < f->o->subscribers; i++) {
        rises += f->subs[i].watermark_rises;
        falls += f->subs[i].watermark_falls;
        unpaired += !watermarks_paired(&f->subs[i]);
    }
    format_bytes(high, sizeof(high), f->high_mark);
    format_bytes(low, sizeof(low), f->low_mark);
    printf("%-26s %llu above, %llu below (high %s, low %s): ", "water-mark events", rises, falls,
           high, low);
    if (unpaired == 0)
        printf("each above got its below\n");
    else
        printf("%u of %u subscribers unpaired\n", unpaired, f->o->subscribers);
}

static void print_summary(struct fanout *f, const io_context_stats *st, double publishing,
                          double elapsed)
{
    const struct options *o = f->o;
    unsigned long long published = atomic_load(&f->published), writes = atomic_load(&f->writes_ok);
    unsigned long long delivered = 0, healthy_msgs = 0;
    unsigned dropped = 0, at_cap = 0, timed_out = 0;
    char p50[32], p99[32], max[32], why[64], cap[32], limit[32];

    for (unsigned i = 0; i < o->subscribers; i++) {
        int state = atomic_load(&f->subs[i].state);

        delivered += f->subs[i].received_bytes;
        dropped += state != SUB_LIVE;
        at_cap += state == SUB_DROPPED_SLOW;
        timed_out += state == SUB_DROPPED_TIMEOUT;
        if (state == SUB_LIVE)
            healthy_msgs += f->subs[i].received_msgs;
    }
    format_ns(p50, sizeof(p50), lat_quantile(&f->latency, writes, 0.50));
    format_ns(p99, sizeof(p99), lat_quantile(&f->latency, writes, 0.99));
    format_ns(max, sizeof(max), atomic_load(&f->latency.max));
    format_bytes(cap, sizeof(cap), o->cap);

    printf("%-26s %llu (%.0f/s over %.2f s)\n", "messages published", published,
           (double)published / publishing, publishing);
    printf("%-26s %llu B, sum over %u subscribers (%llu messages to live ones)\n",
           "bytes delivered", delivered, o->subscribers, healthy_msgs);
    printf("%-26s %.1f MB/s (%.2f s until the last EOF)\n", "throughput",
           (double)delivered / 1e6 / elapsed, elapsed);
    printf("%-26s %" PRIu64 ": %.3f per subscriber write (%llu writes), %.2f per message\n",
           "writev calls", st->writev_calls, writes != 0 ? (double)st->writev_calls / (double)writes : 0.0,
           writes, published != 0 ? (double)st->writev_calls / (double)published : 0.0);
    printf("%-26s would_block %" PRIu64 ", ops started %" PRIu64 ", completed %" PRIu64 "\n",
           "library stats", st->would_block, st->ops_started, st->ops_completed);
    printf("%-26s (would_block: write calls the kernel refused for want of room; the\n"
           "%-26s  workers then waited for the socket to drain instead of retrying)\n", "", "");
    printf("%-26s p50 %s, p99 %s, max %s\n", "publish-to-handler", p50, p99, max);
    print_watermark_summary(f);
    format_bytes(limit, sizeof(limit), f->unhandled_limit);
    printf("%-26s %llu times, %.2f s in all: %llu above a high mark, %llu over the unhandled "
           "limit (%s); %llu stalled let go (%llu probed)\n",
           "publishers held back", atomic_load(&f->waits_above_high) + atomic_load(&f->waits_unhandled),
           (double)atomic_load(&f->waited_ns) / 1e9, atomic_load(&f->waits_above_high),
           atomic_load(&f->waits_unhandled), limit, atomic_load(&f->stalls), atomic_load(&f->probes));
    printf("%-26s %u of %u\n", "subscribers dropped", dropped, o->subscribers);
    printf("%-26s %u (cap %s)\n", "  dropped at the cap", at_cap, cap);
    if (o->send_timeout_ns != 0)
        printf("%-26s %u (timeout %.0f ms)\n", "  dropped by send timeout", timed_out,
               (double)o->send_timeout_ns / 1e6);
    else
        printf("%-26s %u (no send timeout)\n", "  dropped by send timeout", timed_out);
    for (unsigned i = 0; i < o->subscribers; i++) {
        struct subscriber *s = &f->subs[i];
        int state = atomic_load(&s->state);
        char since_last[64] = "";

        if (state == SUB_LIVE)
            continue;
        if (state == SUB_DROPPED_TIMEOUT)
            snprintf(since_last, sizeof(since_last), " (the last it took published %.2f s before)",
                     (double)(s->drop_ns - atomic_load(&s->last_taken_published_ns)) / 1e9);
        printf("  #%-3u %-28s after %llu messages written%s; it verified %llu%s\n", i,
               state_name(s, why, sizeof(why)), s->drop_writes, since_last, s->received_msgs,
               s->closed_itself ? " and hung up" :
               s->leftover != 0 ? " + a cut-off one" : "");
    }
    printf("%-26s ETIMEDOUT %llu, ECANCELED %llu, EBADF %llu, EPIPE %llu, ECONNRESET %llu, "
           "other %llu\n",
           "write errors", atomic_load(&f->err_timedout), atomic_load(&f->err_canceled),
           atomic_load(&f->err_badf),
           atomic_load(&f->err_pipe), atomic_load(&f->err_connreset), atomic_load(&f->err_other));
    printf("%-26s (all expected: ETIMEDOUT and ECANCELED are the pending writes of the\n"
           "%-26s  subscribers dropped on purpose, EPIPE and ECONNRESET those to the one\n"
           "%-26s  that hung up, EBADF a write racing a drop; \"other\" must be 0)\n", "", "", "");
    printf("%-26s %llu (to subscribers already gone)\n", "writes skipped", atomic_load(&f->skipped));
}

int main(int argc, char **argv)
{
    static struct fanout f;
    struct options o;
    struct runner *runners;
    io_context_options copts;
    io_context_stats stats;
    uint64_t start, stopped, finished;
    unsigned problems, disconnect_index, frozen_index;
    bool slow_caught = true, frozen_caught = true;
    char cap[32];
    int listen_fd, err;

    if (parse_options(argc, argv, &o) != 0)
        return 2;
    /* The default action of SIGPIPE kills the process: a write to a peer
     * that hung up must not raise it (ioctx never raises SIGPIPE), and this
     * proves it even when our parent ignored the signal. */
    if (signal(SIGPIPE, SIG_DFL) == SIG_ERR)
        fatal("signal(SIGPIPE): %s", strerror(errno));
    f.o = &o;
    f.max_wire = max_wire_of(&o);
    f.high_mark = o.cap / FLOW_WINDOW_DIV;
    f.low_mark = f.high_mark / FLOW_RESUME_DIV;
    /* Each publisher may add a message after its last look: with this
     * limit a healthy subscriber's backlog stays within the cap. */
    f.unhandled_limit = o.cap - o.publishers * f.max_wire;
    f.low_volume_interval_ns = (uint64_t)o.publishers * 1000000000u / LOW_VOLUME_PER_SECOND;
    check_pthread(pthread_mutex_init(&f.flow_lock, NULL), "pthread_mutex_init");
    check_pthread(pthread_mutex_init(&f.done_lock, NULL), "pthread_mutex_init");
    check_pthread(pthread_mutex_init(&f.note_lock, NULL), "pthread_mutex_init");
    cond_init_monotonic(&f.flow_cond);
    cond_init_monotonic(&f.done_cond);

    f.subs = calloc(o.subscribers, sizeof(*f.subs));
    f.pubs = calloc(o.publishers, sizeof(*f.pubs));
    runners = calloc(o.run_threads, sizeof(*runners));
    if (f.subs == NULL || f.pubs == NULL || runners == NULL)
        fatal("out of memory");
    disconnect_index = o.slow ? 1 : 0;
    frozen_index = disconnect_index + (o.disconnect ? 1 : 0);
    for (unsigned i = 0; i < o.subscribers; i++) {
        struct subscriber *s = &f.subs[i];

        s->f = &f;
        s->index = i;
        s->role = o.slow && i == 0 ? ROLE_SLOW :
                  o.disconnect && i == disconnect_index ? ROLE_DISCONNECT :
                  o.frozen && i == frozen_index ? ROLE_FROZEN : ROLE_HEALTHY;
        atomic_init(&s->state, SUB_LIVE);
        atomic_init(&s->writes_ok, 0);
        atomic_init(&s->stalled_at, ~0ull);
        atomic_init(&s->last_progress_ns, 0);
        atomic_init(&s->above_high, false);
        atomic_init(&s->above_since_ns, 0);
        atomic_init(&s->unhandled_bytes, 0);
        atomic_init(&s->unhandled_since_ns, 0);
        atomic_init(&s->probe_in_flight, false);
        atomic_init(&s->probe_posted_ns, 0);
        atomic_init(&s->probe_confirmed_ns, 0);
        atomic_init(&s->last_taken_published_ns, 0);
        atomic_init(&s->timed_out_bytes, 0);
        latch_init(&s->dropped);
        s->next_seq = calloc(o.publishers, sizeof(*s->next_seq));
        s->low_volume_received = calloc(o.publishers, sizeof(*s->low_volume_received));
        if (s->next_seq == NULL || s->low_volume_received == NULL)
            fatal("out of memory");
    }

    copts.worker_threads = o.workers;
    err = io_context_create(&f.ctx, &copts);
    if (err != 0)
        fatal("io_context_create: %s", strerror(err));
    listen_fd = listen_loopback(&f);
    for (unsigned i = 0; i < o.subscribers; i++)
        start_thread(&f.subs[i].thread, subscribe, &f.subs[i]);
    accept_subscribers(&f, listen_fd);
    if (close(listen_fd) != 0)
        fatal("close(listening socket): %s", strerror(errno));

    format_bytes(cap, sizeof(cap), o.cap);
    printf("fanout on 127.0.0.1:%u: %u subscribers, %u publishers, %u run threads, %u workers, "
           "cap %s, send timeout %.0f ms, ",
           ntohs(f.addr.sin_port), o.subscribers, o.publishers, o.run_threads, o.workers, cap,
           (double)o.send_timeout_ns / 1e6);
    if (o.messages != 0)
        printf("%lu messages per publisher\n", o.messages);
    else
        printf("%.1f s\n", o.duration);
    fflush(stdout);

    start = now_ns();
    /* A subscriber over the unhandled limit before any write to it ended
     * has been quiet since publishing began. */
    for (unsigned i = 0; i < o.subscribers; i++)
        atomic_store(&f.subs[i].last_progress_ns, start);
    io_context_work_started(f.ctx);     /* run threads wait for the publishers */
    for (unsigned t = 0; t < o.run_threads; t++) {
        runners[t].ctx = f.ctx;
        start_thread(&runners[t].thread, run, &runners[t]);
    }
    for (unsigned p = 0; p < o.publishers; p++) {
        f.pubs[p] = (struct publisher){
            .f = &f, .id = p, .rng = mix64(o.seed ^ (0x9e3779b97f4a7c15u * (p + 1))) | 1,
        };
        start_thread(&f.pubs[p].thread, publish, &f.pubs[p]);
    }
    wait_for_end(&f, start);
    for (unsigned p = 0; p < o.publishers; p++)
        join_thread(f.pubs[p].thread);
    stopped = now_ns();

    /* A slow subscriber the cap never caught still waits to be dropped:
     * let it read, or its writes would never end.  So does a frozen one
     * the send timeout has not dropped yet: the run fails, as the timeout
     * had to fire while the others were served, and reading ends its
     * writes now rather than at the timeout. */
    if (o.slow && atomic_load(&f.subs[0].state) == SUB_LIVE) {
        slow_caught = false;
        latch_open(&f.subs[0].dropped);
    }
    if (o.frozen && atomic_load(&f.subs[frozen_index].state) == SUB_LIVE) {
        frozen_caught = false;
        latch_open(&f.subs[frozen_index].dropped);
    }
    /* Pending writes are work too: run returns once every handler ran. */
    io_context_work_finished(f.ctx);
    for (unsigned t = 0; t < o.run_threads; t++)
        join_thread(runners[t].thread);
    io_context_get_stats(f.ctx, &stats);
    /* Closing the rest gives the subscribers their EOF. */
    for (unsigned i = 0; i < o.subscribers; i++) {
        io_descriptor_destroy(f.subs[i].d);
        io_strand_destroy(f.subs[i].strand);
    }
    for (unsigned i = 0; i < o.subscribers; i++)
        join_thread(f.subs[i].thread);
    finished = now_ns();
    io_context_destroy(f.ctx);

    print_summary(&f, &stats, (double)(stopped - start) / 1e9, (double)(finished - start) / 1e9);
    problems = verify(&f, slow_caught, frozen_caught);
    if (problems == 0)
        printf("verified: OK\n");
    else
        printf("verified: FAILED (%u problems)\n", problems);

    for (unsigned i = 0; i < o.subscribers; i++) {
        latch_destroy(&f.subs[i].dropped);
        free(f.subs[i].next_seq);
        free(f.subs[i].low_volume_received);
    }
    free(f.subs);
    free(f.pubs);
    free(runners);
    return problems == 0 ? 0 : 1;
}
