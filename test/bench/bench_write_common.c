/*
 * bench_write_common.c - the workload shared by the bench_write* programs:
 * connections, producers with their buffer pools, verifying readers,
 * latency records and the result line.  See bench_write_common.h.
 *
 * The write ends belong to the program until it hands them to its library;
 * it then sets write_fds[c] to -1, and bw_fini() closes what is left.
 * The slow consumers' read ends stay open, unread, until bw_fini().
 *
 * Locking:
 *   p->lock guards a producer's free list (p->free, p->nfree, p->waiting);
 *   the producer takes buffers from it, completion handlers give them back.
 *   Each latency record is written once, by the handler of its message,
 *   and read by the main thread after every thread that ran handlers has
 *   been joined.  A reader owns its connections' read ends and states,
 *   and its counts, which the main thread reads after joining it.
 *   done_lock guards all_done, which the handler of the last message sets.
 */
#include "bench_write_common.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* A reader that sees no byte for this long declares the run stuck, so a
 * lost write fails the program instead of hanging it. */
#define BW_STALL_SECONDS 60
#define BW_STALL_TEXT "60 s"
#define BW_READ_CHUNK (256 * 1024)

/* A slow consumer: send (and receive) buffer asked for, and the write
 * that gets stuck in it. */
#define BW_SLOW_BUFFER 4096
#define BW_STUCK_SIZE (256 * 1024)

/* Descriptors beyond the connections' (stdio, the libraries' epoll and
 * wake-up fds, the interposer's none). */
#define BW_SPARE_FDS 64

struct bw_producer {
    struct bw_bench *bench;
    pthread_t thread;
    unsigned id;
    unsigned first_conn;
    bw_submit_fn submit;
    void *impl;
    uint64_t *seq;              /* next sequence number, per connection */
    struct bw_msg *msgs;        /* the pool: window messages */
    unsigned char *buffers;     /* their data */
    pthread_mutex_t lock;
    pthread_cond_t freed;
    struct bw_msg **free;       /* stack of free messages (LIFO: few buffers touched) */
    unsigned nfree;
    bool waiting;
    bool stuck;                 /* the owner of the stuck writes, not a producer */
};

/* What a reader knows of one connection. */
struct bw_rconn {
    int fd;
    unsigned conn;
    size_t off;                 /* offset in the current message */
    unsigned char header[BW_HEADER_SIZE];
    unsigned char seed;
    uint64_t *next_seq;         /* per producer */
    unsigned long long expected, got;
};

struct bw_reader {
    struct bw_bench *bench;
    pthread_t thread;
    unsigned id;
    unsigned long long reads;   /* read() calls */
    double cpu_seconds;         /* the thread's user+sys time, whole life */
};

struct bw_state {
    struct bw_producer *producers;
    struct bw_reader *readers;
    struct bw_rconn *rconns;
    float *latency_us;          /* per message, by bw_msg.index */
    unsigned long total;
    atomic_ulong completed;
    atomic_ulong failed;
    atomic_int first_error;
    pthread_mutex_t done_lock;
    pthread_cond_t done_cond;
    bool all_done;
    bool readers_started;
    double t0, t1;
    struct rusage ru0, ru1;
    uint64_t mallocs0, mallocs1, writes0, writes1;
    int64_t live0;              /* heap in use at the end of bw_init() */
    /* The slow consumers. */
    int *slow_read_fds;
    struct bw_producer stuck_owner;
    struct bw_msg *stuck_msgs;
    unsigned char *stuck_data;  /* one buffer for all: never changed */
    atomic_bool closing;
    atomic_ulong stuck_completed;
    atomic_ulong stuck_wrong;   /* before the close, or not ECANCELED */
    atomic_int stuck_first_error;
    double close_seconds;
};

double bw_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [--connections C] [--producers P] [--size S] [--messages M]\n"
            "       [--run-threads R] [--workers W] [--readers N] [--window F] [--burst B]\n"
            "       [--pipes] [--slow K] [--idle-bytes]\n"
            "  M is per producer; S >= %d (the header); F: messages in flight per producer;\n"
            "  B: consecutive messages to one connection; K: slow consumers (0 allowed)\n",
            prog, BW_HEADER_SIZE);
}

enum { OPT_CONNECTIONS, OPT_PRODUCERS, OPT_SIZE, OPT_MESSAGES, OPT_RUN_THREADS, OPT_WORKERS,
       OPT_READERS, OPT_WINDOW, OPT_BURST, OPT_SLOW, OPT_COUNT };

static int parse(struct bw_options *o, int argc, char **argv)
{
    static const struct {
        const char *name;
        unsigned long min, max;
    } opts[OPT_COUNT] = {
        [OPT_CONNECTIONS] = { "--connections", 1, 65536 },
        [OPT_PRODUCERS] = { "--producers", 1, 1024 },
        [OPT_SIZE] = { "--size", BW_HEADER_SIZE, 1ul << 30 },
        [OPT_MESSAGES] = { "--messages", 1, 1ul << 30 },
        [OPT_RUN_THREADS] = { "--run-threads", 1, 1024 },
        [OPT_WORKERS] = { "--workers", 1, 1024 },
        [OPT_READERS] = { "--readers", 1, 1024 },
        [OPT_WINDOW] = { "--window", 1, 1ul << 20 },
        [OPT_BURST] = { "--burst", 1, 1ul << 20 },
        [OPT_SLOW] = { "--slow", 0, 65536 },
    };
    unsigned long v[OPT_COUNT] = { 64, 4, 64, 100000, 2, 1, 2, 0, 1, 0 };

    *o = (struct bw_options){ 0 };
    for (int i = 1; i < argc; i++) {
        size_t k = 0;
        char *end = NULL;

        if (strcmp(argv[i], "--pipes") == 0) {
            o->pipes = true;
            continue;
        }
        if (strcmp(argv[i], "--idle-bytes") == 0) {
            o->idle_bytes = true;
            continue;
        }
        while (k < OPT_COUNT && strcmp(argv[i], opts[k].name) != 0)
            k++;
        if (k == OPT_COUNT || i + 1 >= argc)
            return -1;
        errno = 0;
        v[k] = strtoul(argv[++i], &end, 10);
        if (errno != 0 || *end != '\0' || v[k] < opts[k].min || v[k] > opts[k].max)
            return -1;
    }
    o->connections = (unsigned)v[OPT_CONNECTIONS];
    o->producers = (unsigned)v[OPT_PRODUCERS];
    o->size = v[OPT_SIZE];
    o->messages = v[OPT_MESSAGES];
    o->run_threads = (unsigned)v[OPT_RUN_THREADS];
    o->workers = (unsigned)v[OPT_WORKERS];
    o->readers = (unsigned)(v[OPT_READERS] < v[OPT_CONNECTIONS] ? v[OPT_READERS] : v[OPT_CONNECTIONS]);
    o->burst = (unsigned)v[OPT_BURST];
    o->slow = (unsigned)v[OPT_SLOW];
    /* By default 256 messages or 16 MiB per producer, whichever is less
     * (but at least 4 messages). */
    if (v[OPT_WINDOW] == 0) {
        v[OPT_WINDOW] = (16ul << 20) / o->size;
        v[OPT_WINDOW] = v[OPT_WINDOW] > 256 ? 256 : v[OPT_WINDOW] < 4 ? 4 : v[OPT_WINDOW];
    }
    o->window = (unsigned)v[OPT_WINDOW];
    if (o->messages * o->producers > (1ul << 31) || (unsigned long)o->producers * o->window > (1ul << 24))
        return -1;
    return 0;
}

unsigned bw_conns(const struct bw_bench *b)
{
    return b->o.connections + b->o.slow;
}

unsigned bw_slots(const struct bw_bench *b)
{
    return b->o.producers * b->o.window + b->o.slow;
}

static unsigned char message_seed(unsigned producer, unsigned conn, uint64_t seq)
{
    return (unsigned char)(seq * 167u + producer * 59u + conn * 13u + 1u);
}

static void fill_message(struct bw_msg *m, unsigned producer, uint64_t seq)
{
    uint32_t ids[2] = { producer, m->conn };
    unsigned char seed = message_seed(producer, m->conn, seq);

    memcpy(m->data, ids, sizeof(ids));
    memcpy(m->data + sizeof(ids), &seq, sizeof(seq));
    for (size_t j = BW_HEADER_SIZE; j < m->size; j++)
        m->data[j] = (unsigned char)(seed + j);
}

static int setup_producer(struct bw_bench *b, struct bw_producer *p, unsigned id)
{
    const struct bw_options *o = &b->o;

    p->bench = b;
    p->id = id;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->freed, NULL);
    p->first_conn = (unsigned)((unsigned long)id * o->connections / o->producers);
    p->seq = calloc(o->connections, sizeof(*p->seq));
    p->msgs = calloc(o->window, sizeof(*p->msgs));
    p->free = calloc(o->window, sizeof(*p->free));
    p->buffers = malloc(o->window * o->size);
    if (p->seq == NULL || p->msgs == NULL || p->free == NULL || p->buffers == NULL)
        return ENOMEM;
    for (unsigned k = 0; k < o->window; k++) {
        struct bw_msg *m = &p->msgs[k];

        m->owner = p;
        m->slot = id * o->window + k;
        m->data = p->buffers + (size_t)k * o->size;
        m->size = o->size;
        p->free[o->window - 1 - k] = m;    /* slot 0 is taken first */
    }
    p->nfree = o->window;
    return 0;
}

static struct bw_msg *take_buffer(struct bw_producer *p)
{
    struct bw_msg *m;

    pthread_mutex_lock(&p->lock);
    while (p->nfree == 0) {
        p->waiting = true;
        pthread_cond_wait(&p->freed, &p->lock);
    }
    m = p->free[--p->nfree];
    pthread_mutex_unlock(&p->lock);
    return m;
}

/* Signals after unlocking: a producer woken while the lock is still held
 * would wake only to wait for the lock (two more futex calls and a context
 * switch per message at W = 1, for every library alike). */
static void give_back(struct bw_msg *m)
{
    struct bw_producer *p = m->owner;
    bool wake;

    pthread_mutex_lock(&p->lock);
    p->free[p->nfree++] = m;
    wake = p->waiting;
    p->waiting = false;
    pthread_mutex_unlock(&p->lock);
    if (wake)
        pthread_cond_signal(&p->freed);
}

/* Messages of producer p on connection c: i in [0, M) with
 * (first + i / B) % C == c.  Bursts j = d, d + C, d + 2C ... (d the
 * distance from first to c) of B messages each, the last one of all
 * (j = bursts - 1) cut to what is left of M. */
static unsigned long messages_to(const struct bw_options *o, unsigned first, unsigned c)
{
    unsigned long d = (c + o->connections - first) % o->connections;
    unsigned long bursts = (o->messages + o->burst - 1) / o->burst, n;

    if (d >= bursts)
        return 0;
    n = ((bursts - 1 - d) / o->connections + 1) * o->burst;
    if ((bursts - 1) % o->connections == d)
        n -= bursts * o->burst - o->messages;
    return n;
}

/* A socketpair (or a pipe, with --pipes): *rd for the reader, *wr for the
 * library.  Returns 0, or 1 after saying why. */
static int open_connection(const struct bw_bench *b, const char *what, int *rd, int *wr)
{
    const struct bw_options *o = &b->o;
    int fds[2];

    if (o->pipes ? pipe(fds) : socketpair(AF_UNIX, SOCK_STREAM, 0, fds)) {
        fprintf(stderr, "%s: %s%s: %s\n", b->name, what, o->pipes ? "pipe" : "socketpair",
                strerror(errno));
        return 1;
    }
    *rd = o->pipes ? fds[0] : fds[1];
    *wr = o->pipes ? fds[1] : fds[0];
    return 0;
}

static int open_connections(struct bw_bench *b)
{
    struct bw_state *s = b->state;
    const struct bw_options *o = &b->o;

    for (unsigned c = 0; c < o->connections; c++) {
        struct bw_rconn *rc = &s->rconns[c];
        int rd, wr;

        if (open_connection(b, "", &rd, &wr) != 0)
            return 1;
        b->write_fds[c] = wr;
        bench_watch_fd(wr);
        rc->fd = rd;
        if (fcntl(rd, F_SETFL, fcntl(rd, F_GETFL) | O_NONBLOCK) != 0)
            return 1;
        rc->conn = c;
        rc->next_seq = calloc(o->producers, sizeof(*rc->next_seq));
        if (rc->next_seq == NULL)
            return 1;
        for (unsigned p = 0; p < o->producers; p++)
            rc->expected += (unsigned long long)messages_to(o, s->producers[p].first_conn, c) * o->size;
    }
    return 0;
}

/* Shrinks the buffers of a slow consumer's connection to about
 * BW_SLOW_BUFFER bytes (the kernel's minimum if that is more). */
static int shrink_buffers(bool pipes, int rd, int wr)
{
    int size = BW_SLOW_BUFFER;

    if (pipes)
        return fcntl(wr, F_SETPIPE_SZ, size) < 0 ? -1 : 0;
    if (setsockopt(wr, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)) != 0)
        return -1;
    return setsockopt(rd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
}

/* The slow consumers: connections o.connections and up, and their stuck
 * writes.  Their write ends are not watched: writes_per_msg is the
 * healthy traffic's, and the stuck writes' own calls (one or two each,
 * some of them after bw_submit_stuck() returns) would blur it. */
static int open_slow(struct bw_bench *b)
{
    struct bw_state *s = b->state;
    const struct bw_options *o = &b->o;

    s->stuck_owner = (struct bw_producer){ .bench = b, .id = o->producers, .stuck = true };
    s->slow_read_fds = malloc((o->slow + 1) * sizeof(*s->slow_read_fds));
    s->stuck_msgs = calloc(o->slow + 1, sizeof(*s->stuck_msgs));
    s->stuck_data = calloc(1, BW_STUCK_SIZE);
    if (s->slow_read_fds == NULL || s->stuck_msgs == NULL || s->stuck_data == NULL)
        return ENOMEM;
    for (unsigned k = 0; k < o->slow; k++)
        s->slow_read_fds[k] = -1;
    for (unsigned k = 0; k < o->slow; k++) {
        unsigned c = o->connections + k;
        int rd, wr;

        if (open_connection(b, "slow ", &rd, &wr) != 0)
            return 1;
        b->write_fds[c] = wr;
        s->slow_read_fds[k] = rd;
        if (shrink_buffers(o->pipes, rd, wr) != 0) {
            fprintf(stderr, "%s: shrinking a slow consumer's buffers: %s\n", b->name, strerror(errno));
            return 1;
        }
        s->stuck_msgs[k] = (struct bw_msg){
            .owner = &s->stuck_owner, .conn = c, .slot = o->producers * o->window + k,
            .data = s->stuck_data, .size = BW_STUCK_SIZE,
        };
    }
    return 0;
}

/* Raises the soft RLIMIT_NOFILE to the hard one.  Returns 0, or
 * BW_EXIT_SKIP (having printed the skip line) if that is still fewer
 * descriptors than the run needs. */
static int enough_fds(const struct bw_bench *b)
{
    unsigned long long need = 2ull * (b->o.connections + b->o.slow) + b->o.readers + BW_SPARE_FDS;
    struct rlimit rl;
    char why[160];

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;                   /* then socketpair() will say */
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
        return 0;
    snprintf(why, sizeof(why), "(needs %llu file descriptors; RLIMIT_NOFILE's hard limit is %llu)", need,
             (unsigned long long)rl.rlim_max);
    return bw_skip(b->name, why);
}

int bw_init(struct bw_bench *b, const char *name, int argc, char **argv)
{
    struct bw_state *s;
    struct bw_options *o = &b->o;
    int status;

    b->name = name;
    b->write_fds = NULL;
    b->state = NULL;
    if (parse(o, argc, argv) != 0) {
        usage(argv[0]);
        return 2;
    }
    if (o->idle_bytes)
        bench_track_live_bytes();
    status = enough_fds(b);
    if (status != 0)
        return status;
    /* Readers never go away early, but a failed run must not die of it. */
    signal(SIGPIPE, SIG_IGN);
    s = b->state = calloc(1, sizeof(*s));
    if (s == NULL)
        return 1;
    pthread_mutex_init(&s->done_lock, NULL);
    pthread_cond_init(&s->done_cond, NULL);
    s->total = o->messages * o->producers;
    s->rconns = calloc(o->connections, sizeof(*s->rconns));
    b->write_fds = malloc(bw_conns(b) * sizeof(*b->write_fds));
    if (s->rconns == NULL || b->write_fds == NULL)
        goto out_nomem;
    for (unsigned c = 0; c < o->connections; c++)
        s->rconns[c].fd = -1;
    for (unsigned c = 0; c < bw_conns(b); c++)
        b->write_fds[c] = -1;
    s->producers = calloc(o->producers, sizeof(*s->producers));
    s->readers = calloc(o->readers, sizeof(*s->readers));
    s->latency_us = calloc(s->total, sizeof(*s->latency_us));
    if (s->producers == NULL || s->readers == NULL || s->latency_us == NULL)
        goto out_nomem;
    for (unsigned p = 0; p < o->producers; p++)
        if (setup_producer(b, &s->producers[p], p) != 0)
            goto out_nomem;
    status = open_connections(b);
    if (status == 0)
        status = open_slow(b);
    if (status == ENOMEM)
        goto out_nomem;
    s->live0 = bench_live_bytes();
    return status;

out_nomem:
    fprintf(stderr, "%s: out of memory\n", name);
    return 1;
}

static void stuck(struct bw_bench *b, const char *why, const struct bw_rconn *rc)
{
    fprintf(stderr, "%s: FAILED: connection %u: %s (%llu of %llu bytes read)\n",
            b->name, rc->conn, why, rc->got, rc->expected);
    /* The writers may now wait forever on a full connection: stop here. */
    _exit(1);
}

static void check_header(struct bw_bench *b, struct bw_rconn *rc)
{
    uint32_t ids[2];
    uint64_t seq;

    memcpy(ids, rc->header, sizeof(ids));
    memcpy(&seq, rc->header + sizeof(ids), sizeof(seq));
    if (ids[1] != rc->conn || ids[0] >= b->o.producers)
        stuck(b, "bad message header (bytes lost or interleaved)", rc);
    if (seq != rc->next_seq[ids[0]]) {
        fprintf(stderr, "%s: producer %u: sequence %llu where %llu was due\n", b->name,
                (unsigned)ids[0], (unsigned long long)seq, (unsigned long long)rc->next_seq[ids[0]]);
        stuck(b, "message out of order", rc);
    }
    rc->next_seq[ids[0]]++;
    rc->seed = message_seed(ids[0], rc->conn, seq);
}

/* Checks n bytes read from rc; messages may straddle reads. */
static void verify(struct bw_bench *b, struct bw_rconn *rc, const unsigned char *p, size_t n)
{
    size_t size = b->o.size;

    rc->got += n;
    if (rc->got > rc->expected)
        stuck(b, "more bytes than were written", rc);
    while (n > 0) {
        size_t k;

        if (rc->off < BW_HEADER_SIZE) {
            k = BW_HEADER_SIZE - rc->off < n ? BW_HEADER_SIZE - rc->off : n;
            memcpy(rc->header + rc->off, p, k);
            rc->off += k;
            if (rc->off == BW_HEADER_SIZE)
                check_header(b, rc);
        } else {
            unsigned char bad = 0, seed = (unsigned char)(rc->seed + rc->off);

            k = size - rc->off < n ? size - rc->off : n;
            for (size_t j = 0; j < k; j++)
                bad |= (unsigned char)(p[j] ^ (unsigned char)(seed + j));
            if (bad != 0)
                stuck(b, "wrong payload byte", rc);
            rc->off += k;
        }
        if (rc->off == size)
            rc->off = 0;
        p += k;
        n -= k;
    }
}

static double seconds(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* The calling thread's user + system time so far; 0 if unknown. */
static double thread_cpu_seconds(void)
{
    struct rusage ru;

    if (getrusage(RUSAGE_THREAD, &ru) != 0)
        return 0;
    return seconds(ru.ru_utime) + seconds(ru.ru_stime);
}

/* Readers wait with epoll, so a wake-up costs what is ready, not the
 * number of connections: with thousands of them a poll() scan would cost
 * more than the writes being measured, the same for every program. */
static void *read_all(void *arg)
{
    enum { BATCH = 256 };
    struct bw_reader *r = arg;
    struct bw_bench *b = r->bench;
    unsigned nconn = 0, left, idle = 0;
    struct bw_rconn **rcs = calloc(b->o.connections, sizeof(*rcs));
    unsigned char *buf = malloc(BW_READ_CHUNK);
    struct epoll_event events[BATCH];
    int ep = epoll_create1(EPOLL_CLOEXEC);

    if (rcs == NULL || buf == NULL || ep < 0) {
        fprintf(stderr, "%s: reader: %s\n", b->name, ep < 0 ? strerror(errno) : "out of memory");
        _exit(1);
    }
    for (unsigned c = r->id; c < b->o.connections; c += b->o.readers) {
        struct epoll_event ev = { .events = EPOLLIN };

        if (b->state->rconns[c].expected == 0)
            continue;               /* no message goes there: nothing to wait for */
        rcs[nconn] = &b->state->rconns[c];
        ev.data.ptr = rcs[nconn];
        if (epoll_ctl(ep, EPOLL_CTL_ADD, rcs[nconn]->fd, &ev) != 0) {
            perror("epoll_ctl");
            _exit(1);
        }
        nconn++;
    }
    left = nconn;
    while (left > 0) {
        int ready = epoll_wait(ep, events, BATCH, 1000);

        if (ready < 0 && errno != EINTR) {
            perror("epoll_wait");
            _exit(1);
        }
        if (ready <= 0) {
            if (ready == 0 && ++idle >= BW_STALL_SECONDS)
                for (unsigned i = 0; i < nconn; i++)
                    if (rcs[i]->got < rcs[i]->expected)
                        stuck(b, "no byte for " BW_STALL_TEXT, rcs[i]);
            continue;
        }
        idle = 0;
        for (int i = 0; i < ready; i++) {
            struct bw_rconn *rc = events[i].data.ptr;
            ssize_t n = read(rc->fd, buf, BW_READ_CHUNK);

            r->reads++;
            if (n > 0)
                verify(b, rc, buf, (size_t)n);
            else if (n == 0)
                stuck(b, "end of file before every byte", rc);
            else if (errno != EAGAIN && errno != EINTR)
                stuck(b, strerror(errno), rc);
            if (rc->got == rc->expected) {
                if (rc->off != 0)
                    stuck(b, "ends inside a message", rc);
                epoll_ctl(ep, EPOLL_CTL_DEL, rc->fd, NULL);
                left--;
            }
        }
    }
    /* A reader lives from bw_start() to bw_stop(): its whole CPU time is
     * the run's (and part of the process's). */
    r->cpu_seconds = thread_cpu_seconds();
    close(ep);
    free(buf);
    free(rcs);
    return NULL;
}

static uint64_t mallocs_now(void)
{
    return bench_counting_available() ? bench_malloc_count() : 0;
}

int bw_start(struct bw_bench *b)
{
    struct bw_state *s = b->state;

    for (unsigned r = 0; r < b->o.readers; r++) {
        s->readers[r] = (struct bw_reader){ .bench = b, .id = r };
        if (pthread_create(&s->readers[r].thread, NULL, read_all, &s->readers[r]) != 0) {
            fprintf(stderr, "%s: cannot start a reader\n", b->name);
            return 1;
        }
    }
    s->readers_started = true;
    getrusage(RUSAGE_SELF, &s->ru0);
    s->mallocs0 = mallocs_now();
    s->writes0 = bench_write_count();
    s->t0 = bw_now();
    return 0;
}

static void *produce(void *arg)
{
    struct bw_producer *p = arg;
    const struct bw_options *o = &p->bench->o;
    unsigned conn = p->first_conn, left = o->burst;

    for (unsigned long i = 0; i < o->messages; i++) {
        struct bw_msg *m = take_buffer(p);

        m->conn = conn;
        m->index = p->id * o->messages + i;
        fill_message(m, p->id, p->seq[conn]++);
        m->submitted = bw_now();
        p->submit(p->impl, m);
        if (--left == 0) {
            left = o->burst;
            if (++conn == o->connections)
                conn = 0;
        }
    }
    return NULL;
}

int bw_produce(struct bw_bench *b, bw_submit_fn submit, void *impl)
{
    struct bw_state *s = b->state;
    unsigned started;

    for (started = 0; started < b->o.producers; started++) {
        struct bw_producer *p = &s->producers[started];

        p->submit = submit;
        p->impl = impl;
        if (pthread_create(&p->thread, NULL, produce, p) != 0)
            break;
    }
    for (unsigned i = 0; i < started; i++)
        pthread_join(s->producers[i].thread, NULL);
    if (started < b->o.producers) {
        fprintf(stderr, "%s: cannot start a producer\n", b->name);
        _exit(1);                   /* the readers wait for its messages */
    }
    return 0;
}

/* The handler of a stuck write: it must run after bw_close_stuck() began,
 * and say ECANCELED. */
static void stuck_complete(struct bw_state *s, int error)
{
    if (!atomic_load(&s->closing) || error != ECANCELED) {
        int none = 0;

        atomic_compare_exchange_strong(&s->stuck_first_error, &none, error != 0 ? error : -1);
        atomic_fetch_add(&s->stuck_wrong, 1);
    }
    atomic_fetch_add(&s->stuck_completed, 1);
}

void bw_complete(struct bw_msg *m, int error, size_t bytes)
{
    struct bw_state *s = m->owner->bench->state;
    double latency;

    if (m->owner->stuck) {
        stuck_complete(s, error);
        return;
    }
    latency = bw_now() - m->submitted;
    if (error != 0 || bytes != m->size) {
        int none = 0;

        atomic_compare_exchange_strong(&s->first_error, &none, error != 0 ? error : -1);
        atomic_fetch_add(&s->failed, 1);
    }
    s->latency_us[m->index] = (float)(latency * 1e6);
    give_back(m);                   /* m may be reused from here on */
    if (atomic_fetch_add_explicit(&s->completed, 1, memory_order_acq_rel) + 1 == s->total) {
        pthread_mutex_lock(&s->done_lock);
        s->all_done = true;
        pthread_cond_broadcast(&s->done_cond);
        pthread_mutex_unlock(&s->done_lock);
    }
}

unsigned long bw_total(const struct bw_bench *b)
{
    return b->state->total;
}

bool bw_all_completed(const struct bw_bench *b)
{
    return atomic_load_explicit(&b->state->completed, memory_order_acquire) == b->state->total;
}

void bw_wait_completed(struct bw_bench *b)
{
    struct bw_state *s = b->state;

    pthread_mutex_lock(&s->done_lock);
    while (!s->all_done)
        pthread_cond_wait(&s->done_cond, &s->done_lock);
    pthread_mutex_unlock(&s->done_lock);
}

void bw_submit_stuck(struct bw_bench *b, bw_submit_fn submit, void *impl)
{
    struct bw_state *s = b->state;
    unsigned n = b->o.slow, idle = 0;
    struct pollfd *fds;

    if (n == 0)
        return;
    fds = calloc(n, sizeof(*fds));
    if (fds == NULL) {
        fprintf(stderr, "%s: out of memory\n", b->name);
        exit(1);
    }
    for (unsigned k = 0; k < n; k++) {
        fds[k] = (struct pollfd){ .fd = s->slow_read_fds[k], .events = POLLIN };
        submit(impl, &s->stuck_msgs[k]);
    }
    /* Bytes on a read end: the library has started that write.  Those
     * seen are swapped out of the array's live part. */
    while (n > 0) {
        int ready = poll(fds, n, 1000);

        if (ready < 0 && errno != EINTR) {
            perror("poll");
            exit(1);
        }
        if (ready == 0 && ++idle >= BW_STALL_SECONDS) {
            fprintf(stderr, "%s: FAILED: %u stuck writes not started after " BW_STALL_TEXT "\n", b->name, n);
            exit(1);
        }
        for (unsigned k = 0; ready > 0 && k < n;) {
            if (fds[k].revents != 0) {
                fds[k] = fds[--n];
                ready--;
            } else {
                k++;
            }
        }
    }
    free(fds);
}

void bw_close_stuck(struct bw_bench *b, bw_close_fn close_one, void *impl)
{
    struct bw_state *s = b->state;
    double t0;

    atomic_store(&s->closing, true);
    t0 = bw_now();
    for (unsigned k = 0; k < b->o.slow; k++)
        close_one(impl, b->o.connections + k);
    s->close_seconds = bw_now() - t0;
}

int bw_stop(struct bw_bench *b)
{
    struct bw_state *s = b->state;

    for (unsigned r = 0; r < b->o.readers; r++)
        pthread_join(s->readers[r].thread, NULL);
    s->readers_started = false;
    s->t1 = bw_now();
    s->writes1 = bench_write_count();
    s->mallocs1 = mallocs_now();
    getrusage(RUSAGE_SELF, &s->ru1);
    return 0;
}

int bw_run_beside(struct bw_bench *b, void *(*thread_main)(void *), bw_submit_fn submit, void *impl)
{
    pthread_t thread;

    /* Started first: the stuck writes need it. */
    if (pthread_create(&thread, NULL, thread_main, impl) != 0) {
        fprintf(stderr, "%s: cannot start the library's thread\n", b->name);
        exit(1);
    }
    bw_submit_stuck(b, submit, impl);
    if (bw_start(b) != 0)
        exit(1);                    /* the library's thread waits for messages that will not come */
    bw_produce(b, submit, impl);
    pthread_join(thread, NULL);
    bw_stop(b);
    return 0;
}

void bw_list_push(struct bw_msg_list *l, struct bw_msg *m)
{
    m->next = NULL;
    if (l->tail != NULL)
        l->tail->next = m;
    else
        l->head = m;
    l->tail = m;
}

struct bw_msg *bw_list_pop(struct bw_msg_list *l)
{
    struct bw_msg *m = l->head;

    if (m != NULL) {
        l->head = m->next;
        if (l->head == NULL)
            l->tail = NULL;
    }
    return m;
}

void bw_handoff_push(struct bw_handoff *h, struct bw_msg *m)
{
    pthread_mutex_lock(&h->lock);
    bw_list_push(&h->list, m);
    pthread_mutex_unlock(&h->lock);
}

struct bw_msg *bw_handoff_take(struct bw_handoff *h)
{
    struct bw_msg *m;

    pthread_mutex_lock(&h->lock);
    m = h->list.head;
    h->list = (struct bw_msg_list){ NULL, NULL };
    pthread_mutex_unlock(&h->lock);
    return m;
}

long long bw_interposed_writes(const struct bw_bench *b)
{
    if (!bench_counting_available())
        return -1;
    return (long long)(b->state->writes1 - b->state->writes0);
}

/* The k-th smallest of v[0..n) (quickselect with Hoare's partition;
 * reorders v). */
static float select_kth(float *v, size_t n, size_t k)
{
    ptrdiff_t lo = 0, hi = (ptrdiff_t)n - 1, want = (ptrdiff_t)k;

    while (lo < hi) {
        float pivot = v[lo + (hi - lo) / 2];
        ptrdiff_t i = lo - 1, j = hi + 1;

        for (;;) {
            float t;

            do
                i++;
            while (v[i] < pivot);
            do
                j--;
            while (v[j] > pivot);
            if (i >= j)
                break;
            t = v[i];
            v[i] = v[j];
            v[j] = t;
        }
        if (want <= j)
            hi = j;
        else
            lo = j + 1;
    }
    return v[want];
}

static void format_or_na(char *buf, size_t size, const char *fmt, double v, bool known)
{
    if (known)
        snprintf(buf, size, fmt, v);
    else
        snprintf(buf, size, "na");
}

int bw_report(struct bw_bench *b, long long writes)
{
    struct bw_state *s = b->state;
    double elapsed = s->t1 - s->t0, total = (double)s->total;
    double cpu = seconds(s->ru1.ru_utime) + seconds(s->ru1.ru_stime)
                 - seconds(s->ru0.ru_utime) - seconds(s->ru0.ru_stime);
    unsigned long completed = atomic_load(&s->completed), failed = atomic_load(&s->failed);
    unsigned long stuck = atomic_load(&s->stuck_completed), wrong = atomic_load(&s->stuck_wrong);
    int64_t live = bench_live_bytes() - s->live0;   /* first: printf may allocate */
    char wpm[32], mpo[32], close_us[32], idle[32];
    unsigned long long reads = 0;
    double reader_cpu = 0;
    float p50, p99;

    if (failed != 0 || completed != s->total) {
        int err = atomic_load(&s->first_error);

        fprintf(stderr, "%s: FAILED: %lu of %lu writes completed, %lu failed (first: %s)\n",
                b->name, completed, s->total, failed,
                err > 0 ? strerror(err) : err < 0 ? "short write" : "none");
        return 1;
    }
    if (stuck != b->o.slow || wrong != 0) {
        int err = atomic_load(&s->stuck_first_error);

        fprintf(stderr, "%s: FAILED: %lu handlers ran for %u stuck writes, %lu of them %s (first: %s)\n",
                b->name, stuck, b->o.slow, wrong, "before the close or not ECANCELED",
                err > 0 ? strerror(err) : err < 0 ? "success" : "none");
        return 1;
    }
    for (unsigned r = 0; r < b->o.readers; r++) {
        reads += s->readers[r].reads;
        reader_cpu += s->readers[r].cpu_seconds;
    }
    p50 = select_kth(s->latency_us, s->total, (s->total - 1) / 2);
    p99 = select_kth(s->latency_us, s->total, (size_t)((double)(s->total - 1) * 0.99));
    format_or_na(wpm, sizeof(wpm), "%.4f", (double)writes / total, writes >= 0);
    format_or_na(mpo, sizeof(mpo), "%.3f", (double)(s->mallocs1 - s->mallocs0) / total,
                 bench_counting_available());
    format_or_na(close_us, sizeof(close_us), "%.1f", s->close_seconds * 1e6, b->o.slow > 0);
    format_or_na(idle, sizeof(idle), "%.0f", (double)live / bw_conns(b),
                 b->o.idle_bytes && bench_counting_available());
    printf("%s %.0f %.2f %.3f %s %.1f %.1f %s %ld %u %s %s %u %lu %.3f %.3f\n", b->name, total / elapsed,
           total * (double)b->o.size / elapsed / 1e6, cpu, wpm, p50, p99, mpo, s->ru1.ru_maxrss,
           b->o.slow, close_us, idle, b->o.window, s->total, (double)reads / total, reader_cpu);
    fflush(stdout);
    return 0;
}

int bw_skip(const char *name, const char *why)
{
    printf("%s skipped %s\n", name, why);
    fflush(stdout);
    return BW_EXIT_SKIP;
}

void bw_fini(struct bw_bench *b)
{
    struct bw_state *s = b->state;

    if (s == NULL)
        return;
    if (s->readers_started)
        for (unsigned r = 0; r < b->o.readers; r++)
            pthread_join(s->readers[r].thread, NULL);
    for (unsigned c = 0; s->rconns != NULL && b->write_fds != NULL && c < b->o.connections; c++) {
        if (b->write_fds[c] >= 0)
            close(b->write_fds[c]);
        if (s->rconns[c].fd >= 0)
            close(s->rconns[c].fd);
        free(s->rconns[c].next_seq);
    }
    for (unsigned k = 0; s->slow_read_fds != NULL && k < b->o.slow; k++) {
        if (b->write_fds[b->o.connections + k] >= 0)
            close(b->write_fds[b->o.connections + k]);
        if (s->slow_read_fds[k] >= 0)
            close(s->slow_read_fds[k]);
    }
    pthread_mutex_destroy(&s->done_lock);
    pthread_cond_destroy(&s->done_cond);
    free(s->slow_read_fds);
    free(s->stuck_msgs);
    free(s->stuck_data);
    for (unsigned p = 0; s->producers != NULL && p < b->o.producers; p++) {
        struct bw_producer *pr = &s->producers[p];

        if (pr->bench != NULL) {
            pthread_mutex_destroy(&pr->lock);
            pthread_cond_destroy(&pr->freed);
        }
        free(pr->seq);
        free(pr->msgs);
        free(pr->free);
        free(pr->buffers);
    }
    free(s->producers);
    free(s->readers);
    free(s->rconns);
    free(s->latency_us);
    free(s);
    free(b->write_fds);
    b->state = NULL;
    b->write_fds = NULL;
}
