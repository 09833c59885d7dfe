/*
 * test_stress.c - randomized stress: every promise of the library at once,
 * under load.
 *
 * 16 issuer threads do random operations on 32 AF_UNIX stream socketpairs
 * ("slots") with small send buffers, so that writes would block and the
 * workers poll: async_write and async_write_some of log-uniform sizes
 * (1 B .. 64 KiB), cancel-signal emits of random types, descriptor cancel,
 * close, release and destroy, io_context_post and io_strand_post.  A
 * controller thread starts run threads, stops the context, waits for them
 * to return, restarts it and starts new ones, for as long as the issuers
 * work.  Reader threads read the other end of every slot to EOF and keep
 * every byte.
 *
 * Checked at the end, once everything has run:
 *   - each accepted call's handler ran once, each refused one never;
 *   - errors are 0, ECANCELED, or EBADF exactly for writes started after
 *     close or release; byte counts fit the kind of op and its error;
 *   - each reader got, in start order, the first bytes_transferred bytes of
 *     every op of its slot: ops on a slot get a sequence number under the
 *     slot's lock, which is held across every call on its descriptor, and
 *     an op's data is a pattern of (slot, sequence, offset);
 *   - handlers never ran concurrently on a strand or a descriptor, strand
 *     posts of one thread ran in order, successful writes completed in
 *     start order, and every handler ran inside a run call;
 *   - io_context_get_stats agrees with the handlers' own counts;
 *   - no fd is left open.
 *
 * Threads other than the test's own cannot use ck_assert: they record a
 * violation, and the test asserts there was none.  Nothing sleeps: the
 * controller waits on a condition variable for the issuers' progress.
 *
 * Replay: IOCTX_STRESS_SEED (default below) and IOCTX_STRESS_OPS (total
 * operations over all issuers) are printed at the start.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/socket.h>

#include "test_util.h"

#define N_ISSUERS     16
#define N_SLOTS       32
#define N_STRANDS     4
#define N_SIGNALS     64
#define N_READERS     4
#define MAX_RUNNERS   4
#define MAX_IOV       3
#define DEFAULT_SEED  20240611u
#define DEFAULT_OPS   50000u
/* close/release/destroy calls expected over a whole run: enough to retire
 * most slots, few enough that some stay open to the end. */
#define RETIREMENTS   24u

enum op_kind {
    K_WRITE, K_WRITE_SOME, K_EMIT, K_CTX_POST, K_STRAND_POST, K_CANCEL,
    K_CLOSE, K_RELEASE, K_DESTROY, K_STOP, K_SKIPPED, K_COUNT
};

static const char *const kind_names[K_COUNT] = {
    "write", "write_some", "emit", "ctx_post", "strand_post", "cancel",
    "close", "release", "destroy", "stop", "skipped",
};

/* Random weights out of 1000 for one issuer step; retirements and stop
 * are drawn apart (see issue_one). */
static const struct { enum op_kind kind; unsigned weight; } weights[] = {
    { K_WRITE, 340 }, { K_WRITE_SOME, 260 }, { K_EMIT, 160 },
    { K_CTX_POST, 100 }, { K_STRAND_POST, 100 }, { K_CANCEL, 40 },
};

enum slot_state { SLOT_OPEN, SLOT_CLOSED, SLOT_DESTROYED };

/* A growing array of pointers, owned by one thread at a time. */
struct ptr_list {
    void **items;
    size_t n, cap;
};

struct slot;

struct write_op {
    struct slot *slot;
    uint64_t seq;
    size_t size;
    bool write_all;
    bool refused;               /* the initiating call returned non-zero */
    bool expect_ebadf;          /* started after close or release */
    _Atomic(unsigned char *) data;  /* freed by the handler */
    atomic_int calls;
    atomic_int error;
    atomic_size_t bytes;
};

struct slot {
    int index;
    int fds[2];                 /* [0] the descriptor's, [1] the reader's */
    int strand;                 /* index of a shared strand, -1: private */
    /* Held across every call on d: start order is sequence order, and
     * destroy never races with another call on d. */
    pthread_mutex_t lock;
    io_descriptor *d;
    enum slot_state state;
    struct ptr_list ops;        /* struct write_op *, by sequence number */
    /* Touched only by the descriptor's handlers, which its strand
     * serialises. */
    atomic_int in_handler;
    const struct write_op *last_ok;
    /* The reader's, until it is joined. */
    unsigned char *got;
    size_t ngot, capgot;
    bool reader_closed;
};

struct shared_strand {
    io_strand *strand;
    atomic_int in_handler;
    uint64_t last_post[N_ISSUERS];  /* only inside the strand's handlers */
};

struct post_op {
    int strand;                 /* -1: io_context_post */
    int poster;
    uint64_t n;                 /* per (poster, strand), from 1 */
    bool refused;
    atomic_int calls;
};

struct issuer {
    pthread_t thread;
    int index;
    uint64_t rng;
    unsigned steps;
    unsigned count[K_COUNT];
    unsigned refused;
    uint64_t strand_posts[N_STRANDS];
    struct ptr_list posts;      /* struct post_op * */
};

static struct {
    uint64_t seed;
    unsigned total_ops;
    io_context *ctx;
    struct slot slots[N_SLOTS];
    struct shared_strand strands[N_STRANDS];
    io_cancel_signal *signals[N_SIGNALS];
    struct issuer issuers[N_ISSUERS];

    atomic_uint issued;         /* issuer steps done */
    pthread_mutex_t progress_lock;
    pthread_cond_t progress;
    bool issuers_done;          /* under progress_lock */
    unsigned epochs;            /* the controller's, read after join */

    atomic_ulong handlers_run;  /* by the handlers themselves */
    atomic_ulong run_returned;  /* sum of what run/run_one returned */

    atomic_int violations;
    char first_violation[512];
} st;

/* ------------------------------------------------------------------ */
/* helpers                                                             */
/* ------------------------------------------------------------------ */

/* Records a broken promise seen on a thread that cannot ck_assert; the first
 * message is kept for the final assertion. */
static void violation(const char *fmt, ...)
{
    va_list ap;

    if (atomic_fetch_add(&st.violations, 1) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(st.first_violation, sizeof(st.first_violation), fmt, ap);
    va_end(ap);
}

static unsigned rnd(uint64_t *state, unsigned n)
{
    return (unsigned)(tu_splitmix64(state) % n);
}

/* 1 .. 65535 bytes, each power of two range equally likely. */
static size_t random_size(uint64_t *state)
{
    unsigned e = rnd(state, 16);

    return ((size_t)1 << e) + rnd(state, 1u << e);
}

/* The key of the data of op seq on a slot (tu_fill_pattern). */
static uint64_t pattern_key(int slot, uint64_t seq)
{
    return ((uint64_t)slot << 48) ^ seq ^ st.seed;
}

static unsigned env_or(const char *name, unsigned long long dflt, uint64_t *out64)
{
    const char *v = getenv(name);
    unsigned long long x = dflt;

    if (v != NULL && *v != '\0')
        x = strtoull(v, NULL, 0);
    if (out64 != NULL)
        *out64 = x;
    return (unsigned)x;
}

static int count_open_fds(void)
{
    DIR *dir = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    ck_assert_ptr_nonnull(dir);
    while ((e = readdir(dir)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(dir);
    return n;
}

/* ------------------------------------------------------------------ */
/* handlers                                                            */
/* ------------------------------------------------------------------ */

static void enter_strand(int k)
{
    struct shared_strand *ss = &st.strands[k];

    if (atomic_fetch_add(&ss->in_handler, 1) != 0)
        violation("strand %d: two handlers at once", k);
    if (!io_strand_running_in_this_thread(ss->strand))
        violation("strand %d: handler not running in its strand", k);
}

static void leave_strand(int k)
{
    atomic_fetch_sub(&st.strands[k].in_handler, 1);
}

static void check_handler_thread(void)
{
    if (!tu_inside_run)
        violation("a handler ran outside io_context_run/run_one");
}

static void on_write(void *arg, int error, size_t bytes)
{
    struct write_op *op = arg;
    struct slot *s = op->slot;

    check_handler_thread();
    if (atomic_fetch_add(&s->in_handler, 1) != 0)
        violation("slot %d: two of its handlers at once", s->index);
    if (s->strand >= 0)
        enter_strand(s->strand);
    /* Only cancelled ops may complete out of start order. */
    if (error == 0) {
        if (s->last_ok != NULL && op->seq <= s->last_ok->seq)
            violation("slot %d: the handler of op %" PRIu64 " (%s, %zu bytes, error 0) ran "
                      "after that of op %" PRIu64 " (%s, error 0)", s->index, op->seq,
                      op->write_all ? "write" : "write_some", bytes, s->last_ok->seq,
                      s->last_ok->write_all ? "write" : "write_some");
        s->last_ok = op;
    }
    free(atomic_exchange(&op->data, NULL));
    atomic_store(&op->error, error);
    atomic_store(&op->bytes, bytes);
    atomic_fetch_add(&op->calls, 1);
    atomic_fetch_add(&st.handlers_run, 1);
    if (s->strand >= 0)
        leave_strand(s->strand);
    atomic_fetch_sub(&s->in_handler, 1);
}

static void on_post(void *arg)
{
    struct post_op *p = arg;

    check_handler_thread();
    if (p->strand >= 0) {
        struct shared_strand *ss = &st.strands[p->strand];

        enter_strand(p->strand);
        if (p->n <= ss->last_post[p->poster])
            violation("strand %d: post %" PRIu64 " of issuer %d ran after %" PRIu64,
                      p->strand, p->n, p->poster, ss->last_post[p->poster]);
        ss->last_post[p->poster] = p->n;
        leave_strand(p->strand);
    }
    atomic_fetch_add(&p->calls, 1);
    atomic_fetch_add(&st.handlers_run, 1);
}

/* ------------------------------------------------------------------ */
/* issuers                                                             */
/* ------------------------------------------------------------------ */

static void list_push(struct ptr_list *l, void *item)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->items = realloc(l->items, l->cap * sizeof(*l->items));
        if (l->items == NULL)
            abort();
    }
    l->items[l->n++] = item;
}

/* Cuts [0, size) into 1..MAX_IOV buffers, some possibly empty. */
static size_t split_iov(struct issuer *is, unsigned char *data, size_t size,
                        struct iovec *iov)
{
    size_t count = 1 + rnd(&is->rng, MAX_IOV), cut[MAX_IOV + 1];

    cut[0] = 0;
    cut[count] = size;
    for (size_t i = 1; i < count; i++)
        cut[i] = rnd(&is->rng, (unsigned)size + 1);
    for (size_t i = 1; i < count; i++)          /* sort the inner cuts */
        for (size_t j = i + 1; j < count; j++)
            if (cut[j] < cut[i]) {
                size_t t = cut[i];

                cut[i] = cut[j];
                cut[j] = t;
            }
    for (size_t i = 0; i < count; i++)
        iov[i] = io_buffer(data + cut[i], cut[i + 1] - cut[i]);
    return count;
}

static enum op_kind do_write(struct issuer *is, bool write_all)
{
    struct slot *s = &st.slots[rnd(&is->rng, N_SLOTS)];
    struct write_op *op = calloc(1, sizeof(*op));
    io_cancel_signal *sig = NULL;
    struct iovec iov[MAX_IOV];
    unsigned char *data;
    size_t count;
    int err;

    if (op == NULL)
        abort();
    op->slot = s;
    op->write_all = write_all;
    op->size = random_size(&is->rng);
    data = malloc(op->size);
    if (data == NULL)
        abort();
    atomic_init(&op->data, data);
    atomic_init(&op->calls, 0);
    atomic_init(&op->error, -1);
    atomic_init(&op->bytes, SIZE_MAX);
    if (rnd(&is->rng, 100) < 40)
        sig = st.signals[rnd(&is->rng, N_SIGNALS)];
    count = split_iov(is, data, op->size, iov);

    pthread_mutex_lock(&s->lock);
    if (s->state == SLOT_DESTROYED) {
        pthread_mutex_unlock(&s->lock);
        free(data);
        free(op);
        return K_SKIPPED;
    }
    op->seq = s->ops.n;
    op->expect_ebadf = s->state == SLOT_CLOSED;
    tu_fill_pattern(data, op->size, pattern_key(s->index, op->seq));
    list_push(&s->ops, op);
    err = write_all ? io_descriptor_async_write(s->d, iov, count, on_write, op, sig)
                    : io_descriptor_async_write_some(s->d, iov, count, on_write, op, sig);
    if (err != 0) {
        op->refused = true;
        free(atomic_exchange(&op->data, NULL));
        is->refused++;
        if (err != EBUSY || sig == NULL)
            violation("slot %d: async_write%s returned %d", s->index,
                      write_all ? "" : "_some", err);
    }
    pthread_mutex_unlock(&s->lock);
    return write_all ? K_WRITE : K_WRITE_SOME;
}

static enum op_kind do_post(struct issuer *is, bool on_strand)
{
    struct post_op *p = calloc(1, sizeof(*p));
    int err;

    if (p == NULL)
        abort();
    p->poster = is->index;
    p->strand = on_strand ? (int)rnd(&is->rng, N_STRANDS) : -1;
    atomic_init(&p->calls, 0);
    list_push(&is->posts, p);
    if (on_strand) {
        p->n = ++is->strand_posts[p->strand];
        err = io_strand_post(st.strands[p->strand].strand, on_post, p);
    } else {
        err = io_context_post(st.ctx, on_post, p);
    }
    if (err != 0) {
        p->refused = true;
        is->refused++;
        violation("%s returned %d", on_strand ? "io_strand_post" : "io_context_post", err);
    }
    return on_strand ? K_STRAND_POST : K_CTX_POST;
}

static enum op_kind do_cancel(struct issuer *is)
{
    struct slot *s = &st.slots[rnd(&is->rng, N_SLOTS)];
    enum op_kind kind = K_CANCEL;

    pthread_mutex_lock(&s->lock);
    if (s->state == SLOT_DESTROYED) {
        kind = K_SKIPPED;
    } else {
        int err = io_descriptor_cancel(s->d), want = s->state == SLOT_OPEN ? 0 : EBADF;

        if (err != want)
            violation("slot %d: cancel returned %d, expected %d", s->index, err, want);
    }
    pthread_mutex_unlock(&s->lock);
    return kind;
}

/* close or release of an open slot: the descriptor stays, its fd goes. */
static void close_open_slot(struct slot *s, bool release)
{
    if (!release) {
        int err = io_descriptor_close(s->d);

        if (err != 0)
            violation("slot %d: close returned %d", s->index, err);
    } else {
        int fd = io_descriptor_release(s->d);

        if (fd != s->fds[0])
            violation("slot %d: release returned %d, not fd %d", s->index, fd, s->fds[0]);
        else if ((fcntl(fd, F_GETFL) & O_NONBLOCK) != 0)
            violation("slot %d: release left O_NONBLOCK set", s->index);
        if (fd >= 0)
            close(fd);
    }
    if (io_descriptor_is_open(s->d) || io_descriptor_native_handle(s->d) != -1)
        violation("slot %d: still open after %s", s->index, release ? "release" : "close");
    s->state = SLOT_CLOSED;
}

/* close, release or destroy; a slot never comes back (the reader reads
 * it to EOF). */
static enum op_kind do_retire(struct issuer *is, enum op_kind kind)
{
    struct slot *s = &st.slots[rnd(&is->rng, N_SLOTS)];

    pthread_mutex_lock(&s->lock);
    if (s->state == SLOT_DESTROYED) {
        kind = K_SKIPPED;
    } else if (kind == K_DESTROY) {
        io_descriptor_destroy(s->d);
        s->d = NULL;
        s->state = SLOT_DESTROYED;
    } else if (s->state == SLOT_OPEN) {
        close_open_slot(s, kind == K_RELEASE);
    } else if (kind == K_CLOSE) {
        int err = io_descriptor_close(s->d);

        if (err != EBADF)
            violation("slot %d: second close returned %d", s->index, err);
    } else {
        int fd;

        errno = 0;
        fd = io_descriptor_release(s->d);
        if (fd != -1 || errno != EBADF)
            violation("slot %d: release when closed gave %d, errno %d", s->index, fd, errno);
    }
    pthread_mutex_unlock(&s->lock);
    return kind;
}

static enum op_kind issue_one(struct issuer *is)
{
    unsigned w;

    /* Rare events are drawn per step from the whole run's step count, so
     * their number does not grow with IOCTX_STRESS_OPS. */
    if (rnd(&is->rng, st.total_ops) < RETIREMENTS)
        return do_retire(is, (enum op_kind)(K_CLOSE + rnd(&is->rng, 3)));
    if (rnd(&is->rng, 1000) < 2) {
        io_context_stop(st.ctx);
        return K_STOP;
    }
    w = rnd(&is->rng, 1000);
    for (size_t i = 0; i < sizeof(weights) / sizeof(weights[0]); i++) {
        if (w < weights[i].weight) {
            switch (weights[i].kind) {
            case K_WRITE:       return do_write(is, true);
            case K_WRITE_SOME:  return do_write(is, false);
            case K_CTX_POST:    return do_post(is, false);
            case K_STRAND_POST: return do_post(is, true);
            case K_CANCEL:      return do_cancel(is);
            default:
                io_cancel_signal_emit(st.signals[rnd(&is->rng, N_SIGNALS)],
                                      1u << rnd(&is->rng, 3));
                return K_EMIT;
            }
        }
        w -= weights[i].weight;
    }
    return K_SKIPPED;
}

static void *issue(void *arg)
{
    struct issuer *is = arg;

    for (unsigned i = 0; i < is->steps; i++) {
        unsigned n;

        is->count[issue_one(is)]++;
        n = atomic_fetch_add(&st.issued, 1) + 1;
        if (n % 64 == 0) {
            pthread_mutex_lock(&st.progress_lock);
            pthread_cond_broadcast(&st.progress);
            pthread_mutex_unlock(&st.progress_lock);
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* run threads and their controller                                    */
/* ------------------------------------------------------------------ */

/* The other way to run: run_one until it finds no work. */
static size_t run_one_until_idle(io_context *ctx)
{
    size_t n = 0, one;

    while ((one = io_context_run_one(ctx)) != 0)
        n += one;
    return n;
}

/* n run threads, each with run or with run_one_until_idle. */
static void start_runners(struct tu_runner *r, int n, uint64_t *rng)
{
    for (int i = 0; i < n; i++)
        tu_runner_start(&r[i], st.ctx, rnd(rng, 2) == 0 ? io_context_run : run_one_until_idle, NULL);
}

static void join_runners(struct tu_runner *r, int n)
{
    atomic_fetch_add(&st.run_returned, tu_runners_join(r, n));
}

/* Waits until the issuers have made target steps; true once they are
 * all done. */
static bool wait_progress(unsigned target)
{
    bool done;

    pthread_mutex_lock(&st.progress_lock);
    while (atomic_load(&st.issued) < target && !st.issuers_done)
        pthread_cond_wait(&st.progress, &st.progress_lock);
    done = st.issuers_done;
    pthread_mutex_unlock(&st.progress_lock);
    return done;
}

/*
 * Epochs of 1..MAX_RUNNERS run threads, each ended by io_context_stop and
 * the return of all of them, then io_context_restart: restart never meets
 * a thread inside run.  The issuers' work_started keeps run from
 * returning for lack of work; once they are done the last run threads
 * drain the context and return because no work is left.
 */
static void *control(void *arg)
{
    uint64_t rng = *(uint64_t *)arg;
    struct tu_runner r[MAX_RUNNERS];
    unsigned step = st.total_ops / 32 + 1;
    int n;

    for (;;) {
        bool done;

        n = 1 + (int)rnd(&rng, MAX_RUNNERS);
        start_runners(r, n, &rng);
        done = wait_progress(atomic_load(&st.issued) + step + rnd(&rng, step));
        io_context_stop(st.ctx);
        join_runners(r, n);
        if (!io_context_stopped(st.ctx))
            violation("run returned while work was outstanding and not stopped");
        io_context_restart(st.ctx);
        st.epochs++;
        if (done)
            break;
    }
    start_runners(r, 2, &rng);
    io_context_work_finished(st.ctx);
    join_runners(r, 2);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* readers                                                             */
/* ------------------------------------------------------------------ */

/* Reads once from s; false at EOF or on error (the fd is then closed). */
static bool read_some(struct slot *s)
{
    ssize_t n;

    if (s->capgot - s->ngot < 65536) {
        s->capgot = 2 * s->capgot + 65536;
        s->got = realloc(s->got, s->capgot);
        if (s->got == NULL)
            abort();
    }
    n = read(s->fds[1], s->got + s->ngot, s->capgot - s->ngot);
    if (n > 0) {
        s->ngot += (size_t)n;
        return true;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return true;
    if (n < 0)
        violation("slot %d: reader: %s", s->index, strerror(errno));
    close(s->fds[1]);
    s->reader_closed = true;
    return false;
}

static void *read_slots(void *arg)
{
    int r = (int)(intptr_t)arg, n = 0, open;
    struct pollfd pfd[N_SLOTS];
    struct slot *slot_of[N_SLOTS];

    for (int i = r; i < N_SLOTS; i += N_READERS) {
        pfd[n] = (struct pollfd){ .fd = st.slots[i].fds[1], .events = POLLIN };
        slot_of[n++] = &st.slots[i];
    }
    open = n;
    while (open > 0) {
        if (poll(pfd, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            violation("reader %d: poll: %s", r, strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            if (pfd[i].fd < 0 || pfd[i].revents == 0)
                continue;
            if (!read_some(slot_of[i])) {
                pfd[i].fd = -1;
                open--;
            }
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* setup and checks                                                    */
/* ------------------------------------------------------------------ */

static void open_slot(struct slot *s, int index, uint64_t *rng)
{
    int sndbuf = 2048 + (int)rnd(rng, 14336);   /* the kernel doubles it */

    memset(s, 0, sizeof(*s));
    s->index = index;
    atomic_init(&s->in_handler, 0);
    pthread_mutex_init(&s->lock, NULL);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, s->fds), 0);
    ck_assert_int_eq(setsockopt(s->fds[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
    ck_assert_int_eq(fcntl(s->fds[1], F_SETFL, fcntl(s->fds[1], F_GETFL) | O_NONBLOCK), 0);
    s->strand = rnd(rng, 2) == 0 ? -1 : (int)rnd(rng, N_STRANDS);
    ck_assert_int_eq(io_descriptor_create(st.ctx, s->fds[0],
                                          s->strand >= 0 ? st.strands[s->strand].strand : NULL,
                                          &s->d), 0);
    s->state = SLOT_OPEN;
}

static void setup_all(uint64_t *rng)
{
    io_context_options opts = { .worker_threads = 2 };

    ck_assert_int_eq(io_context_create(&st.ctx, &opts), 0);
    for (int i = 0; i < N_STRANDS; i++) {
        ck_assert_int_eq(io_strand_create(st.ctx, &st.strands[i].strand), 0);
        atomic_init(&st.strands[i].in_handler, 0);
    }
    for (int i = 0; i < N_SIGNALS; i++)
        ck_assert_int_eq(io_cancel_signal_create(&st.signals[i]), 0);
    for (int i = 0; i < N_SLOTS; i++)
        open_slot(&st.slots[i], i, rng);
    for (int i = 0; i < N_ISSUERS; i++) {
        struct issuer *is = &st.issuers[i];

        is->index = i;
        is->rng = st.seed ^ (0x1000193ull * (uint64_t)(i + 1));
        is->steps = st.total_ops / N_ISSUERS + (i < (int)(st.total_ops % N_ISSUERS));
    }
    pthread_mutex_init(&st.progress_lock, NULL);
    pthread_cond_init(&st.progress, NULL);
}

struct totals {
    unsigned count[K_COUNT];
    unsigned refused, cancelled, ebadf;
    uint64_t writes, posts;     /* accepted */
    uint64_t reported_bytes;    /* sum of the write handlers' bytes */
};

static void check_write_op(const struct write_op *op, struct totals *t)
{
    int calls = tu_int((atomic_int *)&op->calls);
    int err = atomic_load(&op->error);
    size_t bytes = atomic_load(&op->bytes);
    int slot = op->slot->index;

    if (op->refused) {
        ck_assert_msg(calls == 0, "slot %d op %" PRIu64 ": refused, yet its handler ran %d times",
                      slot, op->seq, calls);
        return;
    }
    ck_assert_msg(calls == 1, "slot %d op %" PRIu64 ": handler ran %d times", slot, op->seq, calls);
    if (op->expect_ebadf)
        ck_assert_msg(err == EBADF && bytes == 0, "slot %d op %" PRIu64
                      ": started when closed, got error %d, %zu bytes", slot, op->seq, err, bytes);
    else
        ck_assert_msg(err == 0 || err == ECANCELED, "slot %d op %" PRIu64 ": error %d (%s)",
                      slot, op->seq, err, strerror(err));
    if (err == 0 && op->write_all)
        ck_assert_msg(bytes == op->size, "slot %d op %" PRIu64 ": write of %zu reported %zu",
                      slot, op->seq, op->size, bytes);
    else if (err == 0)
        ck_assert_msg(bytes >= 1 && bytes <= op->size, "slot %d op %" PRIu64
                      ": write_some of %zu reported %zu", slot, op->seq, op->size, bytes);
    else if (err == ECANCELED && op->write_all)
        ck_assert_msg(bytes < op->size, "slot %d op %" PRIu64
                      ": cancelled write of %zu reported %zu", slot, op->seq, op->size, bytes);
    else
        ck_assert_msg(bytes == 0, "slot %d op %" PRIu64 ": error %d with %zu bytes",
                      slot, op->seq, err, bytes);
    t->writes++;
    t->reported_bytes += bytes;
    t->cancelled += err == ECANCELED;
    t->ebadf += err == EBADF;
}

static void check_handlers(struct totals *t)
{
    for (int i = 0; i < N_SLOTS; i++)
        for (size_t k = 0; k < st.slots[i].ops.n; k++)
            check_write_op(st.slots[i].ops.items[k], t);
    for (int i = 0; i < N_ISSUERS; i++) {
        struct issuer *is = &st.issuers[i];

        for (size_t k = 0; k < is->posts.n; k++) {
            struct post_op *p = is->posts.items[k];
            int calls = tu_int(&p->calls);

            ck_assert_msg(calls == (p->refused ? 0 : 1), "issuer %d post %zu: ran %d times",
                          i, k, calls);
            t->posts += !p->refused;
        }
        for (int k = 0; k < K_COUNT; k++)
            t->count[k] += is->count[k];
        t->refused += is->refused;
    }
}

/* The reader of s got exactly the reported prefix of each op, in start
 * order. */
static void check_stream(struct slot *s, unsigned char *want)
{
    size_t pos = 0;

    ck_assert_msg(s->reader_closed, "slot %d: reader never saw EOF", s->index);
    for (size_t k = 0; k < s->ops.n; k++) {
        struct write_op *op = s->ops.items[k];
        size_t bytes = atomic_load(&op->bytes);

        if (op->refused || bytes == 0)
            continue;
        ck_assert_msg(pos + bytes <= s->ngot, "slot %d: reader got %zu bytes, op %zu ends at %zu",
                      s->index, s->ngot, k, pos + bytes);
        tu_fill_pattern(want, bytes, pattern_key(s->index, op->seq));
        if (memcmp(s->got + pos, want, bytes) != 0) {
            size_t off = 0;

            while (s->got[pos + off] == want[off])
                off++;
            ck_abort_msg("slot %d: op %zu (%s, %zu of %zu bytes, error %d) differs at byte %zu "
                         "of it, stream offset %zu", s->index, k,
                         op->write_all ? "write" : "write_some", bytes, op->size,
                         atomic_load(&op->error), off, pos + off);
        }
        pos += bytes;
    }
    ck_assert_msg(pos == s->ngot, "slot %d: reader got %zu bytes, handlers reported %zu",
                  s->index, s->ngot, pos);
}

static void free_all(void)
{
    for (int i = 0; i < N_SLOTS; i++) {
        struct slot *s = &st.slots[i];

        for (size_t k = 0; k < s->ops.n; k++)
            free(s->ops.items[k]);
        free(s->ops.items);
        free(s->got);
        pthread_mutex_destroy(&s->lock);
    }
    for (int i = 0; i < N_ISSUERS; i++) {
        for (size_t k = 0; k < st.issuers[i].posts.n; k++)
            free(st.issuers[i].posts.items[k]);
        free(st.issuers[i].posts.items);
    }
    pthread_cond_destroy(&st.progress);
    pthread_mutex_destroy(&st.progress_lock);
}

static void print_summary(const struct totals *t, const io_context_stats *stats,
                          uint64_t received)
{
    char line[768];
    int len = 0;

    for (int k = 0; k < K_COUNT; k++)
        len += snprintf(line + len, sizeof(line) - (size_t)len, "%s=%u ",
                        kind_names[k], t->count[k]);
    fprintf(stderr, "stress: %srefused=%u cancelled=%u ebadf=%u epochs=%u bytes=%" PRIu64
            " writev=%" PRIu64 " would_block=%" PRIu64 "\n", line, t->refused, t->cancelled,
            t->ebadf, st.epochs, received, stats->writev_calls, stats->would_block);
}

/* ------------------------------------------------------------------ */
/* the test                                                            */
/* ------------------------------------------------------------------ */

START_TEST(random_operations_keep_every_invariant)
{
    pthread_t readers[N_READERS], controller;
    struct totals t = { 0 };
    io_context_stats stats;
    uint64_t rng, control_rng, received = 0;
    unsigned char *want;
    int fds_before;

    env_or("IOCTX_STRESS_SEED", DEFAULT_SEED, &st.seed);
    st.total_ops = env_or("IOCTX_STRESS_OPS", DEFAULT_OPS, NULL);
    ck_assert_uint_gt(st.total_ops, 0);
    fprintf(stderr, "stress: seed=%" PRIu64 " ops=%u (replay: IOCTX_STRESS_SEED=%" PRIu64
            " IOCTX_STRESS_OPS=%u)\n", st.seed, st.total_ops, st.seed, st.total_ops);
    rng = st.seed;
    control_rng = tu_splitmix64(&rng);
    fds_before = count_open_fds();
    setup_all(&rng);

    io_context_work_started(st.ctx);
    for (int i = 0; i < N_READERS; i++)
        ck_assert_int_eq(pthread_create(&readers[i], NULL, read_slots, (void *)(intptr_t)i), 0);
    ck_assert_int_eq(pthread_create(&controller, NULL, control, &control_rng), 0);
    for (int i = 0; i < N_ISSUERS; i++)
        ck_assert_int_eq(pthread_create(&st.issuers[i].thread, NULL, issue, &st.issuers[i]), 0);
    for (int i = 0; i < N_ISSUERS; i++)
        ck_assert_int_eq(pthread_join(st.issuers[i].thread, NULL), 0);
    pthread_mutex_lock(&st.progress_lock);
    st.issuers_done = true;
    pthread_cond_broadcast(&st.progress);
    pthread_mutex_unlock(&st.progress_lock);
    ck_assert_int_eq(pthread_join(controller, NULL), 0);

    io_context_get_stats(st.ctx, &stats);
    if (tu_int(&st.violations) != 0)     /* asserted last: see what else broke */
        fprintf(stderr, "stress: %d violations, first: %s\n", tu_int(&st.violations),
                st.first_violation);
    check_handlers(&t);
    ck_assert_uint_eq(stats.ops_started, t.writes);
    ck_assert_uint_eq(stats.ops_completed, t.writes);
    ck_assert_uint_eq(stats.handlers_run, t.writes + t.posts);
    ck_assert_uint_eq(atomic_load(&st.handlers_run), t.writes + t.posts);
    ck_assert_uint_eq(atomic_load(&st.run_returned), t.writes + t.posts);
    ck_assert_uint_eq(stats.bytes_written, t.reported_bytes);

    for (int i = 0; i < N_SIGNALS; i++)
        io_cancel_signal_destroy(st.signals[i]);
    for (int i = 0; i < N_STRANDS; i++)
        io_strand_destroy(st.strands[i].strand);
    io_context_destroy(st.ctx);     /* closes the fds of open slots: EOF */
    for (int i = 0; i < N_READERS; i++)
        ck_assert_int_eq(pthread_join(readers[i], NULL), 0);

    want = malloc(65536);
    ck_assert_ptr_nonnull(want);
    for (int i = 0; i < N_SLOTS; i++) {
        check_stream(&st.slots[i], want);
        received += st.slots[i].ngot;
    }
    free(want);
    ck_assert_uint_eq(stats.bytes_written, received);
    print_summary(&t, &stats, received);
    free_all();
    ck_assert_int_eq(count_open_fds(), fds_before);
    ck_assert_msg(tu_int(&st.violations) == 0, "%d violations, first: %s",
                  tu_int(&st.violations), st.first_violation);
}
END_TEST

void tu_add_tests(Suite *s)
{
    TCase *tc = tu_add_tcase(s, "random", TU_TESTS(random_operations_keep_every_invariant));

    /* Longer than the other suites: a TSan run on two cores takes tens of
     * seconds, and CK_TIMEOUT_MULTIPLIER scales this further. */
    tcase_set_timeout(tc, 120);
}
