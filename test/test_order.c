/*
 * test_order.c - the order of writes and of their handlers: an
 * async_write carries on across a full pipe or socket until every byte is
 * in; writes of one descriptor reach the reader, and their handlers run,
 * in start order, one at a time, on the descriptor's strand; concurrent
 * async_writes never interleave; many descriptors on four workers each
 * get every byte in order; and a huge write does not starve the others.
 *
 * Backpressure is real: a test fills a small pipe or socket and waits
 * until the kernel says it is full before it starts a reader.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include "test_util.h"

/* One async_write of the sizes given (a pattern of key) to wfd, which
 * fills before a reader of rfd starts: the write carries on across EAGAIN
 * and across partial writes that end inside a buffer, until every byte
 * is in, and the reader gets them all. */
static void write_through_a_full_buffer(int wfd, int rfd, const size_t *sizes, int n, uint64_t key)
{
    io_context *ctx = tu_new_context(0);
    io_descriptor *d = tu_new_descriptor(ctx, wfd, NULL);
    struct iovec iov[4];
    struct tu_reader reader;
    struct tu_result r;
    unsigned char *data;
    size_t total = 0;

    ck_assert_int_le(n, 4);
    for (int i = 0; i < n; i++)
        total += sizes[i];
    data = tu_new_pattern(total, key);
    tu_split(iov, data, sizes, n);
    tu_results_init(&r, 1);
    ck_assert_int_eq(io_descriptor_async_write(d, iov, (size_t)n, tu_record, &r, NULL), 0);
    tu_wait_unwritable(wfd);
    ck_assert_int_eq(tu_int(&r.calls), 0);
    tu_reader_start(&reader, rfd, total, 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 1);
    tu_assert_result_in_run(&r, 0, total);
    ck_assert_int_eq(io_descriptor_close(d), 0);   /* the reader sees EOF */
    tu_reader_finish(&reader, data, total);
    ck_assert_int_gt(tu_write_calls(), 0);
    io_descriptor_destroy(d);
    tu_destroy_context(ctx);
    close(rfd);
    free(data);
}

START_TEST(async_write_on_a_full_pipe_waits_for_the_reader)
{
    static const size_t sizes[3] = { 100003, 7, 150001 };
    int fds[2];

    (void)tu_small_pipe(fds);
    write_through_a_full_buffer(fds[1], fds[0], sizes, 3, 1);
}
END_TEST

START_TEST(async_write_on_a_full_socket_waits_for_the_reader)
{
    static const size_t sizes[2] = { 300001, 224287 };
    int sv[2];

    tu_small_socketpair(sv);
    write_through_a_full_buffer(sv[0], sv[1], sizes, 2, 2);
}
END_TEST

#define SOME_OPS 10

/* Each write_some writes a prefix of its buffer (1 to all of it) in one
 * go; the prefixes reach the reader, and the handlers run, in start
 * order. */
START_TEST(async_write_some_writes_a_prefix_and_keeps_start_order)
{
    struct tu_order_log log;
    struct tu_result r[SOME_OPS];
    struct tu_reader reader;
    unsigned char *data, *want;
    size_t chunk, sum = 0;
    struct tu_stream io;

    tu_stream_open(&io, TU_SMALL_PIPE, 0);
    chunk = 2 * io.size;
    data = tu_new_pattern(SOME_OPS * chunk, 3);
    want = malloc(SOME_OPS * chunk);
    ck_assert_ptr_nonnull(want);
    tu_order_log_init(&log);
    tu_results_init_logged(r, SOME_OPS, &log);
    for (int i = 0; i < SOME_OPS; i++)
        ck_assert_int_eq(tu_write_some(io.d, data + i * chunk, chunk, &r[i]), 0);
    tu_wait_unwritable(io.fd);
    tu_reader_start(&reader, io.peer, SOME_OPS * chunk, 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), SOME_OPS);
    /* What the reader must get: the prefix each handler reported, in
     * start order. */
    for (int i = 0; i < SOME_OPS; i++) {
        size_t n = tu_assert_some(&r[i], chunk);

        memcpy(want + sum, data + i * chunk, n);
        sum += n;
    }
    tu_assert_in_order(&log, SOME_OPS);
    ck_assert_int_eq(io_descriptor_close(io.d), 0);
    tu_reader_finish(&reader, want, sum);
    ck_assert_uint_eq(tu_stats(io.ctx).bytes_written, sum);
    tu_stream_close(&io);
    free(want);
    free(data);
}
END_TEST

/* ------------------------------------------------------------------ */
/* many threads, one descriptor: no interleaving                       */
/* ------------------------------------------------------------------ */

#define TAG_THREADS 8
#define TAG_MSGS 500
#define TAG_MAX_LOG2 18            /* payloads of 1 B to 256 KiB - 1 */
#define TAG_RUNNERS 2
#define TAG_SEED UINT64_C(0x10c7a5eed)

struct wire_header {
    uint32_t thread;
    uint32_t seq;
    uint32_t length;               /* of the payload that follows */
};

struct tag_test {
    io_descriptor *d;
    uint32_t lengths[TAG_THREADS][TAG_MSGS];
    atomic_int handled[TAG_THREADS][TAG_MSGS];
    atomic_int bad_results;        /* error != 0 or bytes != message size */
    atomic_int outside_run;
    atomic_int refused;
};

/* One message, freed by its handler: the buffers live until then. */
struct tag_msg {
    struct tag_test *test;
    struct wire_header header;
    unsigned char payload[];
};

struct tag_poster {
    struct tag_test *test;
    uint32_t index;
};

struct tag_reader {
    pthread_t thread;
    int fd;
    const struct tag_test *test;
    uint32_t next_seq[TAG_THREADS];
    int messages;
    char failure[160];
};

/* Log-uniform: a power of two picked uniformly, then a length uniformly
 * within it. */
static uint32_t log_uniform_length(uint64_t *state)
{
    uint64_t r = tu_splitmix64(state);
    uint32_t base = UINT32_C(1) << (r % TAG_MAX_LOG2);

    return base + (uint32_t)((r >> 8) % base);
}

static uint64_t tag_key(uint32_t thread, uint32_t seq)
{
    return ((uint64_t)(thread + 1) << 40) | seq;
}

static void on_tagged_write(void *arg, int error, size_t bytes)
{
    struct tag_msg *m = arg;
    struct tag_test *t = m->test;

    atomic_fetch_add(&t->handled[m->header.thread][m->header.seq], 1);
    if (error != 0 || bytes != sizeof(m->header) + m->header.length)
        atomic_fetch_add(&t->bad_results, 1);
    if (!tu_inside_run)
        atomic_fetch_add(&t->outside_run, 1);
    free(m);
}

static void *post_tagged_writes(void *p)
{
    struct tag_poster *tp = p;
    struct tag_test *t = tp->test;

    for (uint32_t seq = 0; seq < TAG_MSGS; seq++) {
        uint32_t len = t->lengths[tp->index][seq];
        struct tag_msg *m = malloc(sizeof(*m) + len);
        struct iovec iov[2];

        if (m == NULL) {
            atomic_fetch_add(&t->refused, 1);
            continue;
        }
        m->test = t;
        m->header = (struct wire_header){ tp->index, seq, len };
        tu_fill_pattern(m->payload, len, tag_key(tp->index, seq));
        iov[0] = io_buffer(&m->header, sizeof(m->header));
        iov[1] = io_buffer(m->payload, len);
        if (io_descriptor_async_write(t->d, iov, 2, on_tagged_write, m, NULL) != 0) {
            atomic_fetch_add(&t->refused, 1);
            free(m);
        }
    }
    return NULL;
}

static bool tag_check_message(struct tag_reader *r, unsigned char *got, unsigned char *want)
{
    struct wire_header h;
    size_t n = tu_read_up_to(r->fd, &h, sizeof(h));

    if (n == 0)
        return false;                       /* EOF between messages: the end */
    if (n != sizeof(h)) {
        snprintf(r->failure, sizeof(r->failure), "the stream ends inside a header");
    } else if (h.thread >= TAG_THREADS || h.seq >= TAG_MSGS) {
        snprintf(r->failure, sizeof(r->failure), "after %d messages: a header for thread %u message %u",
                 r->messages, h.thread, h.seq);
    } else if (h.seq != r->next_seq[h.thread]) {
        snprintf(r->failure, sizeof(r->failure), "thread %u: message %u arrived where %u was due",
                 h.thread, h.seq, r->next_seq[h.thread]);
    } else if (h.length != r->test->lengths[h.thread][h.seq]) {
        snprintf(r->failure, sizeof(r->failure), "thread %u message %u: length %u, sent %u",
                 h.thread, h.seq, h.length, r->test->lengths[h.thread][h.seq]);
    } else if (tu_read_up_to(r->fd, got, h.length) != h.length) {
        snprintf(r->failure, sizeof(r->failure), "the stream ends inside thread %u message %u",
                 h.thread, h.seq);
    } else {
        tu_fill_pattern(want, h.length, tag_key(h.thread, h.seq));
        if (memcmp(got, want, h.length) != 0) {
            snprintf(r->failure, sizeof(r->failure),
                     "thread %u message %u: wrong payload (interleaved with another write?)",
                     h.thread, h.seq);
            return false;
        }
        r->next_seq[h.thread]++;
        r->messages++;
        return true;
    }
    return false;
}

/* Parses the stream message by message until EOF.  After a mismatch it
 * cannot resynchronise, so it only drains, letting the writers finish. */
static void *read_tagged_stream(void *p)
{
    struct tag_reader *r = p;
    size_t cap = (size_t)1 << TAG_MAX_LOG2;
    unsigned char *got = malloc(cap), *want = malloc(cap);

    tu_app_thread = true;
    if (got == NULL || want == NULL) {
        snprintf(r->failure, sizeof(r->failure), "reader: out of memory");
        free(got);
        free(want);
        return NULL;
    }
    while (tag_check_message(r, got, want))
        ;
    while (read(r->fd, got, cap) > 0)
        ;
    free(got);
    free(want);
    return NULL;
}

/* 8 threads start 500 async_writes each on one socket, 4 workers write,
 * 2 threads run the handlers.  The reader sees every message whole
 * (header and payload together, nothing of another message inside) and
 * each thread's messages in the order it sent them; every handler runs
 * once, inside run. */
START_TEST(concurrent_async_writes_never_interleave)
{
    struct tag_test *t = calloc(1, sizeof(*t));
    struct tag_poster posters[TAG_THREADS];
    struct tag_reader reader;
    io_context *ctx = tu_new_context(4);
    uint64_t rng = TAG_SEED;
    size_t total = 0;
    int sv[2];

    ck_assert_ptr_nonnull(t);
    for (int i = 0; i < TAG_THREADS; i++)
        for (int j = 0; j < TAG_MSGS; j++) {
            t->lengths[i][j] = log_uniform_length(&rng);
            total += sizeof(struct wire_header) + t->lengths[i][j];
        }
    printf("order: tagged writes, seed %#llx, %zu bytes\n", (unsigned long long)TAG_SEED, total);
    fflush(stdout);   /* a failing test ends without flushing */
    ck_assert_uint_lt(total, (size_t)100 << 20);

    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    t->d = tu_new_descriptor(ctx, sv[0], NULL);
    reader = (struct tag_reader){ .fd = sv[1], .test = t };
    ck_assert_int_eq(pthread_create(&reader.thread, NULL, read_tagged_stream, &reader), 0);
    for (uint32_t i = 0; i < TAG_THREADS; i++)
        posters[i] = (struct tag_poster){ .test = t, .index = i };
    ck_assert_uint_eq(tu_run_while(ctx, TAG_RUNNERS, post_tagged_writes, posters, sizeof(posters[0]),
                                   TAG_THREADS), TAG_THREADS * TAG_MSGS);
    ck_assert_int_eq(io_descriptor_close(t->d), 0);
    ck_assert_int_eq(pthread_join(reader.thread, NULL), 0);

    ck_assert_msg(reader.failure[0] == '\0', "%s", reader.failure);
    ck_assert_int_eq(reader.messages, TAG_THREADS * TAG_MSGS);
    ck_assert_int_eq(tu_int(&t->refused), 0);
    ck_assert_int_eq(tu_int(&t->bad_results), 0);
    ck_assert_int_eq(tu_int(&t->outside_run), 0);
    for (int i = 0; i < TAG_THREADS; i++)
        for (int j = 0; j < TAG_MSGS; j++)
            ck_assert_msg(atomic_load(&t->handled[i][j]) == 1, "thread %d message %d: handler ran %d times",
                          i, j, atomic_load(&t->handled[i][j]));
    ck_assert_uint_eq(tu_stats(ctx).bytes_written, total);
    io_descriptor_destroy(t->d);
    tu_destroy_context(ctx);
    close(sv[1]);
    free(t);
}
END_TEST

/* ------------------------------------------------------------------ */
/* strands                                                             */
/* ------------------------------------------------------------------ */

#define SERIAL_OPS 200
#define SERIAL_LEN 512
#define SERIAL_RUNNERS 4

/* With a private strand: 4 run threads, yet no two completions of one
 * descriptor run at once, and they run in start order. */
START_TEST(completions_of_one_descriptor_never_run_concurrently)
{
    struct tu_order_log log;
    struct tu_result *r = calloc(SERIAL_OPS, sizeof(*r));
    unsigned char *data = tu_new_pattern(SERIAL_OPS * SERIAL_LEN, 4);
    struct tu_runner runners[SERIAL_RUNNERS];
    struct tu_reader reader;
    struct tu_stream io;

    ck_assert_ptr_nonnull(r);
    tu_stream_open(&io, TU_SMALL_SOCKETPAIR, 4);
    tu_order_log_init(&log);
    tu_results_init_logged(r, SERIAL_OPS, &log);
    tu_reader_start(&reader, io.peer, SERIAL_OPS * SERIAL_LEN, 0);
    io_context_work_started(io.ctx);
    tu_runners_start(runners, SERIAL_RUNNERS, io.ctx);
    for (int i = 0; i < SERIAL_OPS; i++)
        ck_assert_int_eq(tu_write_all(io.d, data + i * SERIAL_LEN, SERIAL_LEN, &r[i]), 0);
    io_context_work_finished(io.ctx);
    ck_assert_uint_eq(tu_runners_join(runners, SERIAL_RUNNERS), SERIAL_OPS);
    for (int i = 0; i < SERIAL_OPS; i++)
        tu_assert_result_in_run(&r[i], 0, SERIAL_LEN);
    tu_assert_in_order(&log, SERIAL_OPS);
    ck_assert_int_eq(io_descriptor_close(io.d), 0);
    tu_reader_finish(&reader, data, SERIAL_OPS * SERIAL_LEN);
    tu_stream_close(&io);
    free(data);
    free(r);
}
END_TEST

/* With a user strand: the handler runs on it; a descriptor with a
 * private strand does not. */
START_TEST(completions_run_on_the_strand_given_to_create)
{
    io_context *ctx = tu_new_context(0);
    io_strand *strand = tu_new_strand(ctx);
    io_descriptor *mine, *other;
    unsigned char buf[4];
    struct tu_result r[2];
    bool eof;
    int a[2], b[2];

    ck_assert_int_eq(pipe(a), 0);
    ck_assert_int_eq(pipe(b), 0);
    mine = tu_new_descriptor(ctx, a[1], strand);
    other = tu_new_descriptor(ctx, b[1], NULL);
    tu_results_init(r, 2);
    r[0].on_strand = strand;
    r[1].off_strand = strand;
    ck_assert_int_eq(tu_write_all(mine, "s", 1, &r[0]), 0);
    ck_assert_int_eq(tu_write_all(other, "p", 1, &r[1]), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 2);
    tu_assert_result_in_run(&r[0], 0, 1);
    tu_assert_result_in_run(&r[1], 0, 1);
    ck_assert_uint_eq(tu_read_available(a[0], buf, sizeof(buf), &eof), 1);
    ck_assert_uint_eq(tu_read_available(b[0], buf, sizeof(buf), &eof), 1);
    io_descriptor_destroy(mine);
    io_descriptor_destroy(other);
    io_strand_destroy(strand);
    tu_destroy_context(ctx);
    close(a[0]);
    close(b[0]);
}
END_TEST

/* ------------------------------------------------------------------ */
/* several workers, several descriptors                                */
/* ------------------------------------------------------------------ */

#define FAN_SOCKETS 16
#define FAN_WRITERS 4
#define FAN_CHUNKS 32
#define FAN_CHUNK 4096
#define FAN_BYTES (FAN_CHUNKS * FAN_CHUNK)
#define FAN_RUNNERS 2

struct fan_socket {
    io_descriptor *d;
    int peer;
    unsigned char *data;          /* FAN_BYTES, written chunk by chunk */
    unsigned char *got;           /* FAN_BYTES + FAN_CHUNK of room */
    size_t got_len;
    struct tu_order_log log;
    struct tu_result r[FAN_CHUNKS];
};

struct fan_test {
    struct fan_socket sockets[FAN_SOCKETS];
    int reader_error;
    int refused[FAN_WRITERS];
};

struct fan_writer {
    struct fan_test *test;
    int index;
};

/* Writer w owns sockets w, w + 4, ...; it starts their chunks in turn. */
static void *write_fan(void *p)
{
    struct fan_writer *w = p;

    for (int c = 0; c < FAN_CHUNKS; c++)
        for (int s = w->index; s < FAN_SOCKETS; s += FAN_WRITERS) {
            struct fan_socket *fs = &w->test->sockets[s];

            if (tu_write_all(fs->d, fs->data + c * FAN_CHUNK, FAN_CHUNK, &fs->r[c]) != 0)
                w->test->refused[w->index]++;
        }
    return NULL;
}

/* One thread reads all 16 peers with poll() until each reaches EOF. */
static void *read_fan(void *p)
{
    struct fan_test *f = p;
    struct pollfd pfd[FAN_SOCKETS];
    int open = FAN_SOCKETS;

    tu_app_thread = true;
    for (int s = 0; s < FAN_SOCKETS; s++)
        pfd[s] = (struct pollfd){ .fd = f->sockets[s].peer, .events = POLLIN };
    while (open > 0 && f->reader_error == 0) {
        if (poll(pfd, FAN_SOCKETS, -1) < 0) {
            if (errno != EINTR)
                f->reader_error = errno;
            continue;
        }
        for (int s = 0; s < FAN_SOCKETS; s++) {
            struct fan_socket *fs = &f->sockets[s];
            ssize_t n;

            if (pfd[s].fd < 0 || pfd[s].revents == 0)
                continue;
            if (fs->got_len == FAN_BYTES + FAN_CHUNK) {
                f->reader_error = EOVERFLOW;
                break;
            }
            n = read(pfd[s].fd, fs->got + fs->got_len, FAN_BYTES + FAN_CHUNK - fs->got_len);
            if (n > 0) {
                fs->got_len += (size_t)n;
            } else if (n == 0) {
                pfd[s].fd = -1;
                open--;
            } else if (errno != EAGAIN && errno != EINTR) {
                f->reader_error = errno;
            }
        }
    }
    return NULL;
}

/* With worker_threads = 4: 16 small sockets written at once from 4
 * threads; every byte arrives, in order per socket, and only workers
 * write. */
START_TEST(four_workers_serve_sixteen_sockets)
{
    struct fan_test *f = calloc(1, sizeof(*f));
    struct fan_writer writers[FAN_WRITERS];
    io_context *ctx = tu_new_context(4);
    pthread_t reader;

    ck_assert_ptr_nonnull(f);
    for (int s = 0; s < FAN_SOCKETS; s++) {
        struct fan_socket *fs = &f->sockets[s];
        int sv[2];

        tu_small_socketpair(sv);
        ck_assert_int_eq(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
        fs->d = tu_new_descriptor(ctx, sv[0], NULL);
        fs->peer = sv[1];
        fs->data = tu_new_pattern(FAN_BYTES, 100 + (uint64_t)s);
        fs->got = malloc(FAN_BYTES + FAN_CHUNK);
        ck_assert_ptr_nonnull(fs->got);
        tu_order_log_init(&fs->log);
        tu_results_init_logged(fs->r, FAN_CHUNKS, &fs->log);
    }
    ck_assert_int_eq(pthread_create(&reader, NULL, read_fan, f), 0);
    for (int w = 0; w < FAN_WRITERS; w++)
        writers[w] = (struct fan_writer){ .test = f, .index = w };
    ck_assert_uint_eq(tu_run_while(ctx, FAN_RUNNERS, write_fan, writers, sizeof(writers[0]),
                                   FAN_WRITERS), FAN_SOCKETS * FAN_CHUNKS);
    for (int s = 0; s < FAN_SOCKETS; s++)
        ck_assert_int_eq(io_descriptor_close(f->sockets[s].d), 0);
    ck_assert_int_eq(pthread_join(reader, NULL), 0);

    ck_assert_int_eq(f->reader_error, 0);
    for (int w = 0; w < FAN_WRITERS; w++)
        ck_assert_int_eq(f->refused[w], 0);
    for (int s = 0; s < FAN_SOCKETS; s++) {
        struct fan_socket *fs = &f->sockets[s];

        for (int c = 0; c < FAN_CHUNKS; c++)
            tu_assert_result_in_run(&fs->r[c], 0, FAN_CHUNK);
        tu_assert_in_order(&fs->log, FAN_CHUNKS);
        ck_assert_msg(fs->got_len == FAN_BYTES, "socket %d: %zu bytes", s, fs->got_len);
        ck_assert_msg(memcmp(fs->got, fs->data, FAN_BYTES) == 0, "socket %d: wrong bytes", s);
        io_descriptor_destroy(fs->d);
        close(fs->peer);
        free(fs->data);
        free(fs->got);
    }
    tu_destroy_context(ctx);
    free(f);
}
END_TEST

#define HUGE_CHUNKS 64

/*
 * One worker is held in a blocking writev (the pipe's O_NONBLOCK cleared
 * behind the library's back) while a 64 MiB write to /dev/null and then a
 * 1-byte write to a socket queue up behind it.  Once it is let go, the
 * bounded turn must hand the worker to the small write long before the
 * huge one is done: the completions come held, small, huge.
 */
START_TEST(a_huge_write_does_not_starve_other_descriptors)
{
    size_t psz, chunk = (size_t)1 << 20;
    unsigned char *hold_data, *chunk_data, *got;
    io_context *ctx = tu_new_context(1);
    struct iovec huge[HUGE_CHUNKS];
    io_descriptor *held, *big, *small;
    int hold[2], sv[2], null_fd;
    struct tu_order_log log;
    struct tu_result r[3];
    char byte;

    psz = tu_small_pipe(hold);
    hold_data = tu_new_pattern(2 * psz, 21);
    chunk_data = calloc(1, chunk);
    got = malloc(2 * psz);
    ck_assert(chunk_data != NULL && got != NULL);
    null_fd = open("/dev/null", O_WRONLY);
    ck_assert_int_ge(null_fd, 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    held = tu_new_descriptor(ctx, hold[1], NULL);
    big = tu_new_descriptor(ctx, null_fd, NULL);
    small = tu_new_descriptor(ctx, sv[0], NULL);
    tu_make_blocking(hold[1]);
    tu_order_log_init(&log);
    tu_results_init_logged(r, 3, &log);

    /* The first psz bytes fill the pipe; the worker blocks on the rest. */
    ck_assert_int_eq(tu_write_all(held, hold_data, 2 * psz, &r[0]), 0);
    for (int i = 0; i < HUGE_CHUNKS; i++)
        huge[i] = io_buffer(chunk_data, chunk);
    ck_assert_int_eq(io_descriptor_async_write(big, huge, HUGE_CHUNKS, tu_record, &r[2], NULL), 0);
    ck_assert_int_eq(tu_write_all(small, "s", 1, &r[1]), 0);
    tu_read_exactly(hold[0], got, 2 * psz);
    ck_assert(memcmp(got, hold_data, 2 * psz) == 0);

    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 3);
    tu_assert_result_in_run(&r[0], 0, 2 * psz);
    tu_assert_result_in_run(&r[1], 0, 1);
    tu_assert_result_in_run(&r[2], 0, HUGE_CHUNKS * chunk);
    tu_assert_in_order(&log, 3);
    ck_assert_int_eq(read(sv[1], &byte, 1), 1);
    ck_assert_int_eq(byte, 's');
    ck_assert_int_eq(tu_app_thread_write_calls(), 0);

    io_descriptor_destroy(held);
    io_descriptor_destroy(big);
    io_descriptor_destroy(small);
    tu_destroy_context(ctx);
    close(hold[0]);
    close(sv[1]);
    free(hold_data);
    free(chunk_data);
    free(got);
}
END_TEST

void tu_add_tests(Suite *s)
{
    tu_add_tcase(s, "backpressure", TU_TESTS(async_write_on_a_full_pipe_waits_for_the_reader,
                                             async_write_on_a_full_socket_waits_for_the_reader,
                                             async_write_some_writes_a_prefix_and_keeps_start_order));
    tu_add_tcase(s, "concurrency", TU_TESTS(concurrent_async_writes_never_interleave,
                                            completions_of_one_descriptor_never_run_concurrently,
                                            completions_run_on_the_strand_given_to_create,
                                            four_workers_serve_sixteen_sockets,
                                            a_huge_write_does_not_starve_other_descriptors));
}
