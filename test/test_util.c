/*
 * test_util.c - the helpers every Check suite links (test_util.h), and
 * the wrappers of the write system calls (-Wl,--wrap=writev,--wrap=sendmsg).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#include "test_util.h"

/* ------------------------------------------------------------------ */
/* write system calls                                                  */
/* ------------------------------------------------------------------ */

_Thread_local bool tu_app_thread;
_Thread_local bool tu_inside_run;

static atomic_int write_calls;            /* writev and sendmsg, any thread */
static atomic_int app_thread_write_calls; /* those made on a test thread */

static atomic_int gated_fd = -1;
static struct tu_call_gate *_Atomic write_gate;

extern ssize_t __real_writev(int fd, const struct iovec *iov, int iovcnt);
extern ssize_t __real_sendmsg(int fd, const struct msghdr *msg, int flags);
ssize_t __wrap_writev(int fd, const struct iovec *iov, int iovcnt);
ssize_t __wrap_sendmsg(int fd, const struct msghdr *msg, int flags);

static void count_write_call(void)
{
    atomic_fetch_add(&write_calls, 1);
    if (tu_app_thread)
        atomic_fetch_add(&app_thread_write_calls, 1);
}

/* Counts a write call on fd, and holds it at the gate if one is set. */
static void before_write_call(int fd)
{
    struct tu_call_gate *g;

    count_write_call();
    /* One call only: the gate is taken by the first that passes it. */
    if (fd == atomic_load(&gated_fd) && (g = atomic_exchange(&write_gate, NULL)) != NULL) {
        tu_latch_count_down(&g->entered);
        tu_latch_wait(&g->released);
    }
}

ssize_t __wrap_writev(int fd, const struct iovec *iov, int iovcnt)
{
    before_write_call(fd);
    return __real_writev(fd, iov, iovcnt);
}

ssize_t __wrap_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    before_write_call(fd);
    return __real_sendmsg(fd, msg, flags);
}

void tu_gate_next_write(int fd, struct tu_call_gate *g)
{
    tu_latch_init(&g->entered, 1);
    tu_latch_init(&g->released, 1);
    atomic_store(&gated_fd, fd);
    atomic_store(&write_gate, g);
}

void tu_ungate_write(void)
{
    atomic_store(&write_gate, NULL);
}

int tu_write_calls(void)
{
    return atomic_load(&write_calls);
}

int tu_app_thread_write_calls(void)
{
    return atomic_load(&app_thread_write_calls);
}

size_t tu_run_marked(size_t (*run)(io_context *), io_context *ctx)
{
    size_t n;

    tu_inside_run = true;
    n = run(ctx);
    tu_inside_run = false;
    return n;
}

/* ------------------------------------------------------------------ */
/* latches                                                             */
/* ------------------------------------------------------------------ */

void tu_latch_init(struct tu_latch *l, unsigned count)
{
    pthread_condattr_t attr;

    /* A deadline on the monotonic clock: a change of the wall clock must
     * not make a bounded wait end early or late. */
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cond, &attr);
    pthread_condattr_destroy(&attr);
    l->count = count;
}

void tu_latch_count_down(struct tu_latch *l)
{
    pthread_mutex_lock(&l->lock);
    if (l->count > 0 && --l->count == 0)
        pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

void tu_latch_wait(struct tu_latch *l)
{
    pthread_mutex_lock(&l->lock);
    while (l->count > 0)
        pthread_cond_wait(&l->cond, &l->lock);
    pthread_mutex_unlock(&l->lock);
}

bool tu_latch_wait_for(struct tu_latch *l, unsigned seconds)
{
    struct timespec deadline;
    bool open;

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += seconds;
    pthread_mutex_lock(&l->lock);
    while (l->count > 0 && pthread_cond_timedwait(&l->cond, &l->lock, &deadline) != ETIMEDOUT)
        ;
    open = l->count == 0;
    pthread_mutex_unlock(&l->lock);
    return open;
}

void tu_latch_destroy(struct tu_latch *l)
{
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
}

/* ------------------------------------------------------------------ */
/* other threads' state                                                */
/* ------------------------------------------------------------------ */

const char *tu_thread_stat(pid_t tid, char *buf, size_t size)
{
    char path[64], *close_paren;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
    f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    n = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The name, in parentheses, may itself hold blanks and parentheses. */
    close_paren = strrchr(buf, ')');
    if (close_paren == NULL || close_paren[1] == '\0' || close_paren[2] == '\0')
        return NULL;
    return close_paren + 2;
}

char tu_thread_state(pid_t tid)
{
    char buf[512];
    const char *fields = tu_thread_stat(tid, buf, sizeof(buf));

    if (fields == NULL)
        return 0;
    return fields[0] == 'Z' || fields[0] == 'X' ? 0 : fields[0];
}

bool tu_wait_sleeping(pid_t tid, atomic_bool *gone)
{
    int seen = 0;

    while (!atomic_load(gone)) {
        char state = tu_thread_state(tid);

        if (state == 0)
            return false;
        seen = state == 'S' ? seen + 1 : 0;
        if (seen >= 3)
            return true;
        sched_yield();
    }
    return false;
}

/* ------------------------------------------------------------------ */
/* contexts and the objects on them                                    */
/* ------------------------------------------------------------------ */

io_context *tu_new_context(unsigned workers)
{
    io_context_options opts = { .worker_threads = workers };
    io_context *ctx = NULL;

    ck_assert_int_eq(io_context_create(&ctx, &opts), 0);
    ck_assert_ptr_nonnull(ctx);
    return ctx;
}

io_context *tu_new_default_context(void)
{
    io_context *ctx = NULL;

    ck_assert_int_eq(io_context_create(&ctx, NULL), 0);
    ck_assert_ptr_nonnull(ctx);
    return ctx;
}

io_strand *tu_new_strand(io_context *ctx)
{
    io_strand *s = NULL;

    ck_assert_int_eq(io_strand_create(ctx, &s), 0);
    ck_assert_ptr_nonnull(s);
    return s;
}

io_descriptor *tu_new_descriptor(io_context *ctx, int fd, io_strand *strand)
{
    io_descriptor *d = NULL;

    ck_assert_int_eq(io_descriptor_create(ctx, fd, strand, &d), 0);
    ck_assert_ptr_nonnull(d);
    return d;
}

io_cancel_signal *tu_new_signal(void)
{
    io_cancel_signal *sig = NULL;

    ck_assert_int_eq(io_cancel_signal_create(&sig), 0);
    ck_assert_ptr_nonnull(sig);
    return sig;
}

io_context_stats tu_stats(io_context *ctx)
{
    io_context_stats st;

    io_context_get_stats(ctx, &st);
    return st;
}

void tu_destroy_context(io_context *ctx)
{
    ck_assert_int_eq(tu_app_thread_write_calls(), 0);
    io_context_destroy(ctx);
    ck_assert_int_eq(tu_app_thread_write_calls(), 0);
}

/* ------------------------------------------------------------------ */
/* fds                                                                 */
/* ------------------------------------------------------------------ */

size_t tu_small_pipe(int fds[2])
{
    int size;

    ck_assert_int_eq(pipe(fds), 0);
    size = fcntl(fds[1], F_SETPIPE_SZ, 4096);
    ck_assert_int_gt(size, 0);
    return (size_t)size;
}

void tu_stream_open(struct tu_stream *s, enum tu_stream_kind kind, unsigned workers)
{
    int fds[2];

    s->ctx = tu_new_context(workers);
    s->size = 0;
    if (kind == TU_SMALL_PIPE) {
        s->size = tu_small_pipe(fds);
    } else if (kind == TU_PIPE) {
        ck_assert_int_eq(pipe(fds), 0);
        s->size = (size_t)fcntl(fds[1], F_GETPIPE_SZ);
    } else if (kind == TU_SMALL_SOCKETPAIR) {
        tu_small_socketpair(fds);
    } else {
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    }
    /* A pipe's writing end is fds[1]; either end of a socketpair will do,
     * and tu_small_socketpair gives fds[0] the small send buffer. */
    s->fd = kind == TU_PIPE || kind == TU_SMALL_PIPE ? fds[1] : fds[0];
    s->peer = s->fd == fds[1] ? fds[0] : fds[1];
    s->flags = fcntl(s->fd, F_GETFL);
    s->d = tu_new_descriptor(s->ctx, s->fd, NULL);
}

void tu_stream_close(struct tu_stream *s)
{
    io_descriptor_destroy(s->d);
    tu_destroy_context(s->ctx);
    close(s->peer);
}

void tu_small_socketpair(int sv[2])
{
    int one = 1;

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &one, sizeof(one)), 0);
    ck_assert_int_eq(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &one, sizeof(one)), 0);
}

size_t tu_fill_socket(int fd)
{
    static const unsigned char chunk[512];
    size_t sent = 0;

    ck_assert_int_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    for (;;) {
        ssize_t n = send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL);

        if (n > 0) {
            sent += (size_t)n;
        } else {
            ck_assert_msg(n < 0 && (errno == EAGAIN || errno == EINTR), "send: %s",
                          n == 0 ? "0 bytes" : strerror(errno));
            if (errno == EAGAIN)
                return sent;
        }
    }
}

void tu_make_blocking(int fd)
{
    ck_assert_int_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK), 0);
}

bool tu_is_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);

    ck_assert_int_ne(flags, -1);
    return (flags & O_NONBLOCK) != 0;
}

bool tu_is_closed(int fd)
{
    return fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

void tu_wait_unwritable(int fd)
{
    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLOUT };

        ck_assert_int_ge(poll(&p, 1, 0), 0);
        if ((p.revents & POLLOUT) == 0)
            return;
        sched_yield();
    }
}

size_t tu_read_available(int fd, unsigned char *buf, size_t cap, bool *eof)
{
    unsigned char scratch[512];
    size_t got = 0;
    bool ended = false;

    ck_assert_int_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    for (;;) {
        unsigned char *dst = got < cap ? buf + got : scratch;
        size_t want = got < cap ? cap - got : sizeof(scratch);
        ssize_t n = read(fd, dst, want);

        if (n > 0) {
            got += (size_t)n;
        } else if (n == 0) {
            ended = true;
            break;
        } else if (errno == EAGAIN) {
            break;
        } else if (errno != EINTR) {
            ck_abort_msg("read: %s", strerror(errno));
        }
    }
    if (eof != NULL)
        *eof = ended;
    return got;
}

size_t tu_read_up_to(int fd, void *buf, size_t len)
{
    size_t got = 0;

    errno = 0;
    while (got < len) {
        ssize_t n = read(fd, (unsigned char *)buf + got, len - got);

        if (n > 0)
            got += (size_t)n;
        else if (n == 0 || errno != EINTR)
            break;
    }
    return got;
}

void tu_read_exactly(int fd, void *buf, size_t len)
{
    size_t got = tu_read_up_to(fd, buf, len);

    ck_assert_msg(got == len, "read %zu of %zu bytes: %s", got, len,
                  errno != 0 ? strerror(errno) : "EOF");
}

size_t tu_read_until_eof(int fd, unsigned char *buf, size_t cap)
{
    unsigned char scratch[512];
    size_t got = 0;

    for (;;) {
        unsigned char *dst = got < cap ? buf + got : scratch;
        size_t want = got < cap ? cap - got : sizeof(scratch);
        ssize_t n = read(fd, dst, want);

        if (n > 0)
            got += (size_t)n;
        else if (n == 0)
            return got;
        else if (errno != EINTR)
            ck_abort_msg("read: %s", strerror(errno));
    }
}

static void *read_stream(void *p)
{
    struct tu_reader *r = p;
    unsigned char scratch[4096];

    tu_app_thread = true;
    while (r->stop_at == 0 || r->got < r->stop_at) {
        unsigned char *dst = r->got < r->cap ? r->buf + r->got : scratch;
        size_t want = r->got < r->cap ? r->cap - r->got : sizeof(scratch);
        ssize_t n;

        if (r->stop_at != 0 && want > r->stop_at - r->got)
            want = r->stop_at - r->got;
        n = read(r->fd, dst, want);
        if (n > 0) {
            r->got += (size_t)n;
        } else if (n == 0) {
            break;
        } else if (errno != EINTR) {
            r->error = errno;
            break;
        }
    }
    return NULL;
}

void tu_reader_start(struct tu_reader *r, int fd, size_t cap, size_t stop_at)
{
    *r = (struct tu_reader){ .fd = fd, .cap = cap, .stop_at = stop_at };
    r->buf = malloc(cap > 0 ? cap : 1);
    ck_assert_ptr_nonnull(r->buf);
    ck_assert_int_eq(pthread_create(&r->thread, NULL, read_stream, r), 0);
}

void tu_reader_join(struct tu_reader *r)
{
    ck_assert_int_eq(pthread_join(r->thread, NULL), 0);
    ck_assert_msg(r->error == 0, "reader: %s", strerror(r->error));
}

void tu_reader_finish(struct tu_reader *r, const void *want, size_t len)
{
    tu_reader_join(r);
    ck_assert_uint_eq(r->got, len);
    ck_assert_uint_le(len, r->cap);
    ck_assert_msg(memcmp(r->buf, want, len) == 0, "the reader got other bytes than were written");
    free(r->buf);
    r->buf = NULL;
}

/* ------------------------------------------------------------------ */
/* data                                                                */
/* ------------------------------------------------------------------ */

uint64_t tu_mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

uint64_t tu_splitmix64(uint64_t *state)
{
    *state += UINT64_C(0x9e3779b97f4a7c15);
    return tu_mix64(*state);
}

void tu_fill_pattern(unsigned char *p, size_t len, uint64_t key)
{
    for (size_t off = 0; off < len; off += 8) {
        uint64_t w = tu_mix64(key * UINT64_C(0x9e3779b97f4a7c15) + off);

        memcpy(p + off, &w, len - off < 8 ? len - off : 8);
    }
}

unsigned char *tu_new_pattern(size_t len, uint64_t key)
{
    unsigned char *p = malloc(len > 0 ? len : 1);

    ck_assert_ptr_nonnull(p);
    tu_fill_pattern(p, len, key);
    return p;
}

size_t tu_split(struct iovec *iov, unsigned char *data, const size_t *sizes, int n)
{
    size_t off = 0;

    for (int i = 0; i < n; i++) {
        iov[i] = io_buffer(data + off, sizes[i]);
        off += sizes[i];
    }
    return off;
}

/* ------------------------------------------------------------------ */
/* run threads                                                         */
/* ------------------------------------------------------------------ */

static void *run_in_thread(void *p)
{
    struct tu_runner *r = p;

    tu_app_thread = true;
    atomic_store(&r->tid, tu_gettid());
    if (r->start != NULL)
        pthread_barrier_wait(r->start);
    r->ran = tu_run_marked(r->run, r->ctx);
    atomic_store(&r->returned, true);
    return NULL;
}

void tu_runner_start(struct tu_runner *r, io_context *ctx, size_t (*run)(io_context *),
                     pthread_barrier_t *start)
{
    r->ctx = ctx;
    r->run = run;
    r->start = start;
    r->ran = 0;
    atomic_init(&r->tid, 0);
    atomic_init(&r->returned, false);
    ck_assert_int_eq(pthread_create(&r->thread, NULL, run_in_thread, r), 0);
}

size_t tu_runner_join(struct tu_runner *r)
{
    ck_assert_int_eq(pthread_join(r->thread, NULL), 0);
    return r->ran;
}

pid_t tu_runner_tid(struct tu_runner *r)
{
    while (atomic_load(&r->tid) == 0)
        sched_yield();
    return atomic_load(&r->tid);
}

void tu_runners_start(struct tu_runner *r, int n, io_context *ctx)
{
    for (int i = 0; i < n; i++)
        tu_runner_start(&r[i], ctx, io_context_run, NULL);
}

size_t tu_runners_join(struct tu_runner *r, int n)
{
    size_t ran = 0;

    for (int i = 0; i < n; i++)
        ran += tu_runner_join(&r[i]);
    return ran;
}

struct test_thread {
    pthread_t thread;
    void *(*fn)(void *);
    void *arg;
};

static void *run_as_test_thread(void *p)
{
    struct test_thread *t = p;

    tu_app_thread = true;
    return t->fn(t->arg);
}

size_t tu_run_while(io_context *ctx, int nrun, void *(*fn)(void *), void *args, size_t size,
                    int n)
{
    struct tu_runner *runners = calloc((size_t)nrun, sizeof(*runners));
    struct test_thread *threads = calloc((size_t)n, sizeof(*threads));
    size_t ran;

    ck_assert(runners != NULL && threads != NULL);
    io_context_work_started(ctx);
    tu_runners_start(runners, nrun, ctx);
    for (int i = 0; i < n; i++) {
        threads[i] = (struct test_thread){ .fn = fn, .arg = (char *)args + (size_t)i * size };
        ck_assert_int_eq(pthread_create(&threads[i].thread, NULL, run_as_test_thread, &threads[i]), 0);
    }
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(pthread_join(threads[i].thread, NULL), 0);
    io_context_work_finished(ctx);
    ran = tu_runners_join(runners, nrun);
    free(runners);
    free(threads);
    return ran;
}

/* ------------------------------------------------------------------ */
/* handlers                                                            */
/* ------------------------------------------------------------------ */

void tu_count(void *counter)
{
    struct tu_counter *c = counter;

    atomic_fetch_add(&c->calls, 1);
    if (!tu_inside_run)
        atomic_fetch_add(&c->outside_run, 1);
}

void tu_serial_init(struct tu_serial *s)
{
    atomic_init(&s->in_flight, 0);
    atomic_init(&s->overlaps, 0);
}

void tu_serial_enter(struct tu_serial *s)
{
    if (atomic_fetch_add(&s->in_flight, 1) != 0)
        atomic_fetch_add(&s->overlaps, 1);
    sched_yield();
}

void tu_serial_leave(struct tu_serial *s)
{
    atomic_fetch_sub(&s->in_flight, 1);
}

void tu_order_log_init(struct tu_order_log *log)
{
    atomic_init(&log->count, 0);
    tu_serial_init(&log->serial);
    memset(log->order, -1, sizeof(log->order));
}

void tu_results_init_logged(struct tu_result *r, int n, struct tu_order_log *log)
{
    for (int i = 0; i < n; i++) {
        r[i] = (struct tu_result){ .index = i, .log = log };
        atomic_init(&r[i].calls, 0);
        atomic_init(&r[i].error, -1);
        atomic_init(&r[i].bytes, SIZE_MAX);
        atomic_init(&r[i].outside_run, 0);
        atomic_init(&r[i].strand_wrong, 0);
    }
}

void tu_results_init(struct tu_result *r, int n)
{
    tu_results_init_logged(r, n, NULL);
}

static void log_handler(struct tu_order_log *log, int index)
{
    int i;

    tu_serial_enter(&log->serial);
    i = atomic_fetch_add(&log->count, 1);
    if (i < TU_LOG_MAX)
        log->order[i] = index;
    tu_serial_leave(&log->serial);
}

void tu_record(void *arg, int error, size_t bytes)
{
    struct tu_result *r = arg;

    if (!tu_inside_run)
        atomic_fetch_add(&r->outside_run, 1);
    if (r->on_strand != NULL && !io_strand_running_in_this_thread(r->on_strand))
        atomic_fetch_add(&r->strand_wrong, 1);
    if (r->off_strand != NULL && io_strand_running_in_this_thread(r->off_strand))
        atomic_fetch_add(&r->strand_wrong, 1);
    if (r->log != NULL)
        log_handler(r->log, r->index);
    atomic_store(&r->error, error);
    atomic_store(&r->bytes, bytes);
    if (r->destroy != NULL)
        io_descriptor_destroy(r->destroy);
    atomic_fetch_add(&r->calls, 1);
    if (r->done != NULL)
        tu_latch_count_down(r->done);
}

int tu_start_write(io_descriptor *d, bool all, const void *data, size_t len,
                   struct tu_result *r, io_cancel_signal *sig)
{
    struct iovec iov = io_buffer(data, len);

    return all ? io_descriptor_async_write(d, &iov, 1, tu_record, r, sig)
               : io_descriptor_async_write_some(d, &iov, 1, tu_record, r, sig);
}

void tu_assert_result(struct tu_result *r, int error, size_t bytes)
{
    int calls = tu_int(&r->calls), got = tu_result_error(r);

    ck_assert_msg(calls == 1, "op %d: handler ran %d times", r->index, calls);
    ck_assert_msg(got == error, "op %d: error %d (%s), expected %d (%s)",
                  r->index, got, strerror(got), error, strerror(error));
    ck_assert_msg(tu_result_bytes(r) == bytes, "op %d: %zu bytes, expected %zu",
                  r->index, tu_result_bytes(r), bytes);
}

void tu_assert_result_in_run(struct tu_result *r, int error, size_t bytes)
{
    tu_assert_result(r, error, bytes);
    ck_assert_msg(tu_int(&r->outside_run) == 0, "op %d: handler ran outside run", r->index);
    ck_assert_msg(tu_int(&r->strand_wrong) == 0, "op %d: handler ran on the wrong strand",
                  r->index);
}

size_t tu_assert_some(struct tu_result *r, size_t asked)
{
    size_t bytes = tu_result_bytes(r);

    tu_assert_result_in_run(r, 0, bytes);
    ck_assert_msg(bytes >= 1 && bytes <= asked, "op %d: %zu bytes of %zu", r->index, bytes, asked);
    return bytes;
}

void tu_assert_in_order(struct tu_order_log *log, int n)
{
    ck_assert_int_eq(tu_int(&log->count), n);
    for (int i = 0; i < n && i < TU_LOG_MAX; i++)
        ck_assert_msg(log->order[i] == i, "handler %d ran in place %d", log->order[i], i);
    ck_assert_int_eq(tu_int(&log->serial.overlaps), 0);
}

/* ------------------------------------------------------------------ */
/* the suite                                                           */
/* ------------------------------------------------------------------ */

/* Runs in the forked test process, on the thread that runs the test. */
static void setup(void)
{
    tu_app_thread = true;
    tu_inside_run = false;
    atomic_store(&write_calls, 0);
    atomic_store(&app_thread_write_calls, 0);
}

TCase *tu_add_tcase(Suite *s, const char *name, const TTest *const *tests)
{
    TCase *tc = tcase_create(name);

    tcase_set_timeout(tc, TU_TIMEOUT_S);
    tcase_add_checked_fixture(tc, setup, NULL);
    for (; *tests != NULL; tests++)
        tcase_add_test(tc, *tests);
    suite_add_tcase(s, tc);
    return tc;
}

int main(void)
{
    const char *name = program_invocation_short_name;
    Suite *s;
    SRunner *sr;
    int failed;

    if (strncmp(name, "test_", 5) == 0)
        name += 5;
    s = suite_create(name);
    tu_add_tests(s);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
