/*
 * fuzz_api.c - a libFuzzer target: each input is decoded into a sequence
 * of calls over the whole public API, and the library's promises are
 * checked once the input has run.
 *
 * Per input: one context with one worker, a shared strand, three cancel
 * signals, up to three timers, and four streams: two pipes of one page
 * and two AF_UNIX stream socketpairs with the kernel's smallest buffers,
 * so that writes soon wait for the reader.  The library holds each write
 * end in a descriptor (the first pipe and the first socketpair on the
 * shared strand, the others on private ones); the harness holds the read
 * ends and reads them without blocking when the input says so.  Handlers
 * run only inside the poll calls this thread makes (never run: with a
 * write stuck it would block), and in io_context_destroy, so an input
 * makes the same calls each time it runs; what the worker has written by
 * each of them still depends on timing.
 *
 * The input: its first byte holds flags (bit 0: end with
 * io_context_destroy while work is pending, instead of draining first);
 * then each operation is an opcode byte (enum opcode, modulo its count)
 * and the bytes decode_one reads for it.  Bytes past the end read as 0.
 * IOCTX_FUZZ_TRACE=1 in the environment prints the decoded calls and the
 * handlers they led to, to stderr.
 *
 * Checked for every input, abort() with a message on a violation:
 *   - each initiating call that returned 0 had exactly one handler call,
 *     one that returned non-zero none; the only refusals are EBUSY for a
 *     cancel signal whose operation's handler has not run yet, and those
 *     the arguments call for;
 *   - handlers ran on this thread, inside poll or io_context_destroy, never
 *     inside another call of the library, on the strand they belong to,
 *     and a descriptor's in the order its operations were started (one
 *     ended by a cancel may overtake an earlier one that a worker's call
 *     still holds: see complete());
 *   - each error has a cause in the input (ECANCELED a cancel, EPIPE a
 *     closed read end or a shutdown, ETIMEDOUT a send timeout, EBADF a
 *     descriptor closed before the operation started), and the byte count
 *     fits the kind of operation and its error;
 *   - each read end got exactly the bytes the handlers reported, in the
 *     order the handlers ran, with the content of the pattern or file they were taken
 *     from, and then EOF; a read end the input closed got a prefix of
 *     them; nothing was written after a shutdown that succeeded;
 *   - water-mark events alternate, starting with "above", and the last
 *     one of each descriptor is "below";
 *   - the context's counters agree with the handlers;
 *   - no SIGPIPE (its action stays the default, which kills the process)
 *     and no fd left open.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "ioctx.h"

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

#define SLOTS            4          /* streams in use at once: pipes 0 and 1, socketpairs 2 and 3 */
#define MAX_STREAMS      12         /* with those a slot opens again once its descriptor is gone */
#define SIGNALS          3
#define TIMERS           3
#define SMALL_BUFFERS    8          /* a write has 0 to 8 buffers, or one of long_counts */
#define BYTE_BUDGET      (256u * 1024u)     /* asked by an input's writes and sendfiles */
#define PATTERN_SIZE     (64u * 1024u)      /* what writes take their bytes from */
#define FILE_SIZE        (48u * 1024u)      /* the file sendfile reads */
#define MAX_LONG_WRITES  16         /* writes of more than SMALL_BUFFERS buffers, per input */
#define SMALL_PIPE_SIZE  4096
#define READ_CHUNK       (64u * 1024u)
#define THEN_WRITE_SIZE  512u       /* what a handler told to write writes */
#define DRAIN_LIMIT_NS   (20ull * 1000000000ull)   /* then a handler is lost: fail, not hang */

/* What a handler does after its checks, told by the input. */
enum then_kind {
    THEN_NOTHING, THEN_CANCEL, THEN_CLOSE, THEN_RELEASE, THEN_DESTROY, THEN_EMIT, THEN_POST,
    THEN_WRITE, THEN_STOP, THEN_KINDS
};

static const char *const then_names[] = {
    "nothing", "cancel", "close", "release", "destroy", "emit", "post", "write", "stop",
};

struct then_action {
    enum then_kind kind;
    unsigned signal;            /* THEN_EMIT's */
    unsigned cancel_type;       /* IO_CANCEL_* */
};

enum op_kind {
    OP_WRITE, OP_WRITE_SOME, OP_SENDFILE, OP_SHUTDOWN, OP_CONTEXT_POST, OP_STRAND_POST,
    OP_TIMER_WAIT
};

static const char *const op_names[] = {
    "async_write", "async_write_some", "async_sendfile", "async_shutdown", "context_post",
    "strand_post", "timer_wait",
};

struct stream;
struct timer_record;

/* One initiating call and what its handler saw.  Kept until the input
 * ends: the checks at the end walk them. */
struct op_record {
    struct op_record *next_in_input;
    struct op_record *next_on_stream;   /* a descriptor's accepted ops, in start order */
    struct op_record *next_handled;     /* and in the order their handlers ran */
    enum op_kind kind;
    /* The descriptor of a descriptor op; for posts and timer waits the
     * one their then-action acts on. */
    struct stream *stream;
    struct timer_record *timer;         /* a timer wait's */
    bool timer_on_shared_strand;        /* the timer's, when the wait started */
    int signal;                         /* index into state.signals, or -1 */
    /* What could explain ECANCELED, EPIPE and EBADF, as it was at the start. */
    unsigned signal_emits;
    unsigned cancels_before;            /* of the stream, or of the timer */
    bool shutdown_before;
    bool started_closed;
    bool started_in_destroy;
    bool accepted;                      /* the initiating call returned 0 */
    size_t order;                       /* its place in the descriptor's start order */
    struct iovec *bufs;                 /* what it asked for: slices of pattern or file_content */
    size_t count;
    size_t total;                       /* bytes asked (a sendfile's count) */
    uint64_t offset;                    /* a sendfile's */
    uint64_t expiry;                    /* a timer wait's, at its start */
    struct then_action then;
    int calls;
    int error;
    size_t bytes;
};

/* A pipe or socketpair and the descriptor on its write end. */
struct stream {
    unsigned index;                     /* for messages */
    bool is_socket;
    bool on_shared_strand;
    io_descriptor *d;                   /* NULL once destroyed */
    bool open;                          /* neither closed nor released */
    int write_fd;                       /* the descriptor's; -1 once closed */
    int read_fd;                        /* the harness's; -1 once closed */
    bool read_end_closed_early;         /* by the input: the bytes it held are lost */
    bool eof;
    unsigned cancels;                   /* cancel, close, release and destroy calls */
    bool shutdown_started;
    bool send_timeout_set;
    size_t started;                     /* accepted ops, numbered in start order */
    bool above_high;                    /* the last water-mark event */
    unsigned watermark_events;
    unsigned char *got;                 /* every byte read from read_fd */
    size_t ngot, capgot;
    struct op_record *first_op, *last_op;
    struct op_record *first_unfinished; /* the first in start order whose handler has not run */
    struct op_record *first_handled, *last_handled;
};

struct timer_record {
    io_timer *t;                        /* NULL until created, and once destroyed */
    bool on_shared_strand;
    unsigned cancels;                   /* expires_after, cancel and destroy calls */
};

struct signal_record {
    io_cancel_signal *sig;
    unsigned emits;
    /* Accepted ops given this signal whose handler has not run: only
     * while there is one may a call be refused with EBUSY. */
    unsigned unfinished;
};

/* One input's world.  libFuzzer runs inputs one at a time on one thread,
 * and the handlers run on that thread too. */
static struct {
    pthread_t thread;
    io_context *ctx;
    io_strand *strand;                  /* NULL once destroyed */
    struct signal_record signals[SIGNALS];
    struct stream streams[MAX_STREAMS];
    unsigned nstreams;
    unsigned slot_stream[SLOTS];        /* each slot's stream, by index */
    struct timer_record timers[TIMERS];
    struct op_record *records;          /* newest first */
    size_t outstanding;                 /* accepted ops whose handler has not run */
    size_t accepted_descriptor_ops;
    size_t budget_left;
    unsigned long_writes;
    bool in_poll;                       /* handlers may run now */
    bool in_call;                       /* inside another call of the library: none may */
    bool destroying;                    /* inside io_context_destroy */
    bool trace;
} state;

static unsigned char pattern[PATTERN_SIZE];
static unsigned char file_content[FILE_SIZE];
static int file_fd = -1;               /* holds file_content; open for the whole process */

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static _Noreturn void fail(const char *fmt, ...)
{
    va_list ap;

    fputs("fuzz_api: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void trace(const char *fmt, ...)
{
    va_list ap;

    if (!state.trace)
        return;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void *checked_realloc(void *p, size_t size)
{
    p = realloc(p, size);
    if (p == NULL)
        fail("out of memory");
    return p;
}

static void close_owned_fd(int fd, const char *what)
{
    if (close(fd) != 0)
        fail("close(%d), %s: %s: the library closed an fd it did not own", fd, what,
             strerror(errno));
}

/* ------------------------------------------------------------------ */
/* the input                                                           */
/* ------------------------------------------------------------------ */

struct input {
    const uint8_t *data;
    size_t size, pos;
};

static unsigned next_byte(struct input *in)
{
    return in->pos < in->size ? in->data[in->pos++] : 0;
}

static unsigned next_u16(struct input *in)
{
    unsigned high = next_byte(in);

    return high << 8 | next_byte(in);
}

static struct stream *slot_stream(unsigned code)
{
    return &state.streams[state.slot_stream[code % SLOTS]];
}

/* Every byte asked of a write counts against the input's budget, which
 * keeps an input's run short whatever its lengths say. */
static size_t take_budget(size_t want)
{
    size_t n = want < state.budget_left ? want : state.budget_left;

    state.budget_left -= n;
    return n;
}

/* 0..127 bytes, 64 B steps to 6 KiB, 1 KiB steps to 32 KiB. */
static size_t decode_length(unsigned code)
{
    if (code < 128)
        return code;
    if (code < 224)
        return (size_t)(code - 127) * 64;
    return (size_t)(code - 223) * 1024;
}

static int decode_signal(unsigned code)
{
    return code % 8 < SIGNALS ? (int)(code % 8) : -1;
}

static unsigned decode_cancel_type(unsigned code)
{
    static const unsigned types[] = { IO_CANCEL_TERMINAL, IO_CANCEL_PARTIAL, IO_CANCEL_TOTAL };

    return types[code % 3];
}

/* Half the codes do nothing; the others name an action. */
static struct then_action decode_then(unsigned code)
{
    struct then_action then = { THEN_NOTHING, 0, 0 };

    if (code >= 128) {
        then.kind = (enum then_kind)(1 + code % (THEN_KINDS - 1));
        then.signal = (code >> 3) % SIGNALS;
        then.cancel_type = decode_cancel_type(code >> 5);
    }
    return then;
}

/*
 * A write's buffers, slices of pattern: a count byte (below 0xF0: 0 to
 * SMALL_BUFFERS buffers, each a length byte and an offset byte; from
 * 0xF0: one of long_counts, around IOV_MAX, from one length byte and one
 * offset byte for all).  A long write whose length byte has bit 7 set
 * has its first IOV_MAX buffers empty: nothing that one writev could
 * take.  Returns NULL for 0 buffers.
 */
static struct iovec *decode_buffers(struct input *in, size_t *count)
{
    static const size_t long_counts[] = { IOV_MAX - 1, IOV_MAX, IOV_MAX + 1, 2 * IOV_MAX + 3 };
    unsigned count_code = next_byte(in);
    struct iovec *bufs;
    size_t i;

    if (count_code < 0xF0 || state.long_writes >= MAX_LONG_WRITES) {
        *count = count_code % (SMALL_BUFFERS + 1);
    } else {
        *count = long_counts[(count_code - 0xF0) % (sizeof(long_counts) / sizeof(long_counts[0]))];
        state.long_writes++;
    }
    if (*count == 0)
        return NULL;
    bufs = checked_realloc(NULL, *count * sizeof(*bufs));
    if (*count <= SMALL_BUFFERS) {
        for (i = 0; i < *count; i++) {
            size_t len = take_budget(decode_length(next_byte(in)));
            size_t off = (size_t)next_byte(in) * 251u % (PATTERN_SIZE - len + 1);

            bufs[i] = io_buffer(pattern + off, len);
        }
    } else {
        unsigned len_code = next_byte(in);
        size_t start = (size_t)next_byte(in) * 251u;
        bool empty_head = (len_code & 0x80) != 0;

        for (i = 0; i < *count; i++) {
            size_t len = empty_head && i < IOV_MAX ? 0 : take_budget(len_code % 8 + empty_head);

            bufs[i] = io_buffer(pattern + (start + 7 * i) % (PATTERN_SIZE - 8), len);
        }
    }
    return bufs;
}

static size_t iovs_total(const struct iovec *bufs, size_t count)
{
    size_t total = 0, i;

    for (i = 0; i < count; i++)
        total += bufs[i].iov_len;
    return total;
}

/* ------------------------------------------------------------------ */
/* handlers                                                            */
/* ------------------------------------------------------------------ */

/* Around every call of the library but poll and context destroy: no
 * handler may run inside one. */
static void enter_call(void)
{
    state.in_call = true;
}

static void leave_call(void)
{
    state.in_call = false;
}

static void enter_handler(const char *what, bool on_shared_strand)
{
    if (!pthread_equal(pthread_self(), state.thread))
        fail("a %s handler ran on a thread that does not poll", what);
    if (!state.in_poll)
        fail("a %s handler ran outside poll and io_context_destroy", what);
    if (state.in_call)
        fail("a %s handler ran inside another call of the library", what);
    if (state.strand != NULL && io_strand_running_in_this_thread(state.strand) != on_shared_strand)
        fail("a %s handler ran %s the shared strand", what, on_shared_strand ? "off" : "on");
}

static bool is_descriptor_op(const struct op_record *op)
{
    return op->kind <= OP_SHUTDOWN;
}

static bool ends_by_cancel(int error)
{
    return error == ECANCELED || error == ETIMEDOUT || error == EBADF;
}

static void complete(struct op_record *op, int error, size_t bytes)
{
    if (!op->accepted)
        fail("the handler of a refused %s ran", op_names[op->kind]);
    if (++op->calls > 1)
        fail("the handler of %s #%zu on stream %u ran twice", op_names[op->kind], op->order,
             op->stream->index);
    op->error = error;
    op->bytes = bytes;
    state.outstanding--;
    if (op->signal >= 0)
        state.signals[op->signal].unfinished--;
    if (is_descriptor_op(op)) {
        struct stream *s = op->stream;

        trace("  handler: stream %u %s #%zu: error %d (%s), %zu of %zu bytes", s->index,
              op_names[op->kind], op->order, error, strerror(error), bytes, op->total);
        /* An op that ends by a cancel (its signal, the descriptor's
         * cancel, close, release or destroy, the send timeout, or a close
         * before it started) ends at once, ahead of an earlier op still in
         * a worker's system call, which ends when the call returns.  Any
         * other end, and any that wrote bytes, comes after every earlier
         * op's. */
        if (s->first_unfinished != op && (bytes > 0 || !ends_by_cancel(error)))
            fail("stream %u: the handler of %s #%zu (error %d, %zu bytes) ran before that of "
                 "%s #%zu", s->index, op_names[op->kind], op->order, error, bytes,
                 op_names[s->first_unfinished->kind], s->first_unfinished->order);
        while (s->first_unfinished != NULL && s->first_unfinished->calls > 0)
            s->first_unfinished = s->first_unfinished->next_on_stream;
        if (s->last_handled != NULL)
            s->last_handled->next_handled = op;
        else
            s->first_handled = op;
        s->last_handled = op;
    } else {
        trace("  handler: %s: error %d", op_names[op->kind], error);
    }
}

/* Whether something since op started could have cancelled it. */
static bool cancel_explains(const struct op_record *op)
{
    if (state.destroying)
        return true;
    if (op->signal >= 0 && state.signals[op->signal].emits > op->signal_emits)
        return true;
    if (op->timer != NULL)
        return op->timer->cancels > op->cancels_before;
    return op->stream->cancels > op->cancels_before;
}

/* NULL when the error is one the input explains, else why not. */
static const char *unexplained_error(const struct op_record *op)
{
    const struct stream *s = op->stream;

    if (op->started_in_destroy)
        return op->error == ECANCELED || op->error == EBADF ? NULL
                                                             : "not ECANCELED, started in destroy";
    if (op->started_closed)
        return op->error == EBADF ? NULL : "not EBADF, started after close or release";
    switch (op->error) {
    case 0:
        return NULL;
    case ECANCELED:
        return cancel_explains(op) ? NULL : "ECANCELED without a cancel";
    case ETIMEDOUT:
        return s->send_timeout_set ? NULL : "ETIMEDOUT without a send timeout";
    case EPIPE:
    case ECONNRESET:
        return s->read_end_closed_early || op->shutdown_before ? NULL
                                                               : "EPIPE with the reader there";
    case ENOTCONN:
        if (op->kind == OP_SHUTDOWN && s->read_end_closed_early)
            return NULL;
        return "ENOTCONN with the reader there";
    case ENODATA:
        return op->kind == OP_SENDFILE ? NULL : "ENODATA from no sendfile";
    case EBADF:
        return "EBADF, started while open";
    default:
        return "an error nothing here explains";
    }
}

/* NULL when bytes fits the kind of op and its error, else why not. */
static const char *unfitting_bytes(const struct op_record *op)
{
    size_t b = op->bytes, total = op->total;

    if (op->started_closed || op->started_in_destroy)
        return b == 0 ? NULL : "bytes written after close";
    switch (op->kind) {
    case OP_WRITE:
        if (op->error == 0)
            return b == total ? NULL : "success short of the total";
        return b == 0 || b < total ? NULL : "an error after every byte was written";
    case OP_WRITE_SOME:
        if (op->error != 0)
            return b == 0 ? NULL : "bytes with an error";
        if (total == 0)
            return b == 0 ? NULL : "bytes from nothing";
        return b >= 1 && b <= total ? NULL : "success with no byte, or more than asked";
    case OP_SENDFILE: {
        size_t available = op->offset < FILE_SIZE ? FILE_SIZE - (size_t)op->offset : 0;

        if (b > available)
            return "more than the file holds";
        if (op->error == 0)
            return b == total && total <= available ? NULL : "success short of the count";
        if (op->error == ENODATA)
            return total > available && b == available ? NULL : "ENODATA before the file's end";
        return b == 0 || b < total ? NULL : "an error after every byte was sent";
    }
    default:
        return NULL;
    }
}

static void check_descriptor_result(const struct op_record *op)
{
    const char *why = unexplained_error(op);

    if (why == NULL)
        why = unfitting_bytes(op);
    if (why != NULL)
        fail("stream %u: %s #%zu ended with error %d (%s), %zu of %zu bytes: %s",
             op->stream->index, op_names[op->kind], op->order, op->error, strerror(op->error),
             op->bytes, op->total, why);
}

static void do_then(const struct op_record *op);

static void on_write(void *arg, int error, size_t bytes)
{
    struct op_record *op = arg;

    enter_handler(op_names[op->kind], op->stream->on_shared_strand);
    complete(op, error, bytes);
    check_descriptor_result(op);
    do_then(op);
}

static void on_shutdown(void *arg, int error)
{
    on_write(arg, error, 0);
}

static void on_post(void *arg)
{
    struct op_record *op = arg;

    enter_handler(op_names[op->kind], op->kind == OP_STRAND_POST);
    complete(op, 0, 0);
    do_then(op);
}

static void on_timer(void *arg, int error)
{
    struct op_record *op = arg;
    uint64_t now = io_clock_now();

    enter_handler("timer", op->timer_on_shared_strand);
    complete(op, error, 0);
    if (error == 0 && now < op->expiry)
        fail("a timer wait ended %llu ns before its expiry",
             (unsigned long long)(op->expiry - now));
    if (error != 0 && !(error == ECANCELED && cancel_explains(op)))
        fail("a timer wait ended with error %d (%s) and nothing that explains it", error,
             strerror(error));
    do_then(op);
}

static void on_watermark(void *arg, bool above_high, size_t queued_bytes)
{
    struct stream *s = arg;

    enter_handler("water-mark", s->on_shared_strand);
    trace("  water mark: stream %u %s, %zu bytes queued", s->index, above_high ? "above" : "below",
          queued_bytes);
    if (above_high == s->above_high)
        fail("stream %u: water-mark event %u is %s again", s->index, s->watermark_events,
             above_high ? "above" : "below");
    if (above_high && queued_bytes == 0)
        fail("stream %u: above the high water mark with nothing queued", s->index);
    s->above_high = above_high;
    s->watermark_events++;
}

/* ------------------------------------------------------------------ */
/* starting operations                                                 */
/* ------------------------------------------------------------------ */

static struct op_record *new_record(enum op_kind kind, struct stream *s, int signal)
{
    struct op_record *op = checked_realloc(NULL, sizeof(*op));

    *op = (struct op_record){ .kind = kind, .stream = s, .signal = signal };
    op->next_in_input = state.records;
    state.records = op;
    if (signal >= 0)
        op->signal_emits = state.signals[signal].emits;
    op->cancels_before = s->cancels;
    op->shutdown_before = s->shutdown_started;
    op->started_closed = !s->open;
    op->started_in_destroy = state.destroying;
    return op;
}

static io_cancel_signal *signal_of(const struct op_record *op)
{
    return op->signal >= 0 ? state.signals[op->signal].sig : NULL;
}

/* After the initiating call: an accepted op is numbered and waited for;
 * a refused one must have been refused for a reason. */
static void note_start(struct op_record *op, int err)
{
    struct signal_record *sig = op->signal >= 0 ? &state.signals[op->signal] : NULL;

    if (err != 0) {
        trace("  refused: %d (%s)", err, strerror(err));
        if (err != EBUSY || sig == NULL)
            fail("%s refused with %d (%s)", op_names[op->kind], err, strerror(err));
        if (sig->unfinished == 0)
            fail("%s refused with EBUSY: every operation of its cancel signal had ended",
                 op_names[op->kind]);
        return;
    }
    op->accepted = true;
    state.outstanding++;
    if (sig != NULL)
        sig->unfinished++;
    if (is_descriptor_op(op)) {
        struct stream *s = op->stream;

        op->order = s->started++;
        if (s->last_op != NULL)
            s->last_op->next_on_stream = op;
        else
            s->first_op = op;
        s->last_op = op;
        if (s->first_unfinished == NULL)
            s->first_unfinished = op;
        state.accepted_descriptor_ops++;
        trace("  started: stream %u %s #%zu, %zu bytes", s->index, op_names[op->kind], op->order,
              op->total);
    }
}

static void start_write(struct stream *s, enum op_kind kind, struct iovec *bufs, size_t count,
                        int signal, struct then_action then)
{
    struct op_record *op;
    int err;

    if (s->d == NULL) {
        free(bufs);
        return;
    }
    op = new_record(kind, s, signal);
    op->bufs = bufs;
    op->count = count;
    op->total = iovs_total(bufs, count);
    op->then = then;
    enter_call();
    if (kind == OP_WRITE)
        err = io_descriptor_async_write(s->d, bufs, count, on_write, op, signal_of(op));
    else
        err = io_descriptor_async_write_some(s->d, bufs, count, on_write, op, signal_of(op));
    leave_call();
    note_start(op, err);
}

/* in_fd_bad and offset_bad make calls the library must refuse. */
static void start_sendfile(struct stream *s, uint64_t offset, size_t count, int signal,
                           struct then_action then, bool in_fd_bad, bool offset_bad)
{
    struct op_record *op;
    size_t available;
    int err;

    if (s->d == NULL)
        return;
    if (offset_bad)
        offset = (uint64_t)INT64_MAX + 1;
    if (!in_fd_bad && !offset_bad)
        count = take_budget(count);
    op = new_record(OP_SENDFILE, s, signal);
    op->offset = offset;
    op->total = count;
    op->then = then;
    available = offset < FILE_SIZE ? FILE_SIZE - (size_t)offset : 0;
    op->count = 1;
    op->bufs = checked_realloc(NULL, sizeof(*op->bufs));
    op->bufs[0] = io_buffer(file_content + (FILE_SIZE - available),
                            count < available ? count : available);
    enter_call();
    err = io_descriptor_async_sendfile(s->d, in_fd_bad ? -1 : file_fd, offset, count, on_write, op,
                                       signal_of(op));
    leave_call();
    if (in_fd_bad || offset_bad) {
        if (err != (offset_bad ? EINVAL : EBADF))
            fail("async_sendfile with a bad %s returned %d", offset_bad ? "offset" : "fd", err);
        trace("  refused as it should: %d", err);
        return;
    }
    note_start(op, err);
}

static void start_shutdown(struct stream *s, struct then_action then)
{
    struct op_record *op;
    int err;

    if (s->d == NULL)
        return;
    op = new_record(OP_SHUTDOWN, s, -1);
    op->then = then;
    enter_call();
    err = io_descriptor_async_shutdown(s->d, on_shutdown, op);
    leave_call();
    note_start(op, err);
    if (err == 0)
        s->shutdown_started = true;
}

static void start_post(enum op_kind kind, struct stream *target, struct then_action then)
{
    struct op_record *op = new_record(kind, target, -1);
    int err;

    op->then = then;
    enter_call();
    if (kind == OP_STRAND_POST)
        err = io_strand_post(state.strand, on_post, op);
    else
        err = io_context_post(state.ctx, on_post, op);
    leave_call();
    note_start(op, err);
}

static void start_timer_wait(struct timer_record *tr, struct stream *target, int signal,
                             struct then_action then)
{
    struct op_record *op;
    int err;

    if (tr->t == NULL)
        return;
    op = new_record(OP_TIMER_WAIT, target, signal);
    op->timer = tr;
    op->timer_on_shared_strand = tr->on_shared_strand;
    op->cancels_before = tr->cancels;
    op->then = then;
    enter_call();
    op->expiry = io_timer_expiry(tr->t);
    err = io_timer_async_wait(tr->t, on_timer, op, signal_of(op));
    leave_call();
    note_start(op, err);
}

/* ------------------------------------------------------------------ */
/* descriptors, streams and the context                                */
/* ------------------------------------------------------------------ */

/* Inside io_context_destroy, a handler may find its descriptor closed
 * by the context already: the call then answers as for a closed one. */
static bool closed_by_destroy(struct stream *s, bool found_closed)
{
    if (!state.destroying || !s->open || !found_closed)
        return false;
    s->open = false;
    s->write_fd = -1;
    return true;
}

/* Both end the pending ops; close also closes the fd. */
static void stream_cancel_or_close(struct stream *s, bool close_fd)
{
    const char *what = close_fd ? "close" : "cancel";
    int err;

    if (s->d == NULL)
        return;
    s->cancels++;
    enter_call();
    err = close_fd ? io_descriptor_close(s->d) : io_descriptor_cancel(s->d);
    leave_call();
    if (!closed_by_destroy(s, err == EBADF) && err != (s->open ? 0 : EBADF))
        fail("stream %u: %s returned %d while %s", s->index, what, err,
             s->open ? "open" : "closed");
    if (close_fd) {
        s->open = false;
        s->write_fd = -1;
    }
}

/* The fd comes back to the harness, blocking as it was made; the
 * harness closes it, so the reader sees EOF. */
static void stream_release(struct stream *s)
{
    int fd, flags;

    if (s->d == NULL)
        return;
    s->cancels++;
    enter_call();
    fd = io_descriptor_release(s->d);
    leave_call();
    if (closed_by_destroy(s, fd == -1))
        return;
    if (!s->open) {
        if (fd != -1 || errno != EBADF)
            fail("stream %u: release of a closed descriptor returned %d", s->index, fd);
        return;
    }
    if (fd != s->write_fd)
        fail("stream %u: release returned fd %d, not %d", s->index, fd, s->write_fd);
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || (flags & O_NONBLOCK) != 0)
        fail("stream %u: release left the fd's flags at %#x, not as they were", s->index, flags);
    close_owned_fd(fd, "released");
    s->open = false;
    s->write_fd = -1;
}

static void stream_destroy(struct stream *s)
{
    if (s->d == NULL)
        return;
    s->cancels++;
    enter_call();
    io_descriptor_destroy(s->d);
    leave_call();
    s->d = NULL;
    s->open = false;
    s->write_fd = -1;
}

static void emit(unsigned signal, unsigned cancel_type)
{
    state.signals[signal].emits++;
    enter_call();
    io_cancel_signal_emit(state.signals[signal].sig, cancel_type);
    leave_call();
}

static void do_then(const struct op_record *op)
{
    struct stream *s = op->stream;

    if (op->then.kind != THEN_NOTHING)
        trace("  then: %s on stream %u", then_names[op->then.kind], s->index);
    switch (op->then.kind) {
    case THEN_NOTHING:
    case THEN_KINDS:
        break;
    case THEN_CANCEL:
        stream_cancel_or_close(s, false);
        break;
    case THEN_CLOSE:
        stream_cancel_or_close(s, true);
        break;
    case THEN_RELEASE:
        stream_release(s);
        break;
    case THEN_DESTROY:
        stream_destroy(s);
        break;
    case THEN_EMIT:
        emit(op->then.signal, op->then.cancel_type);
        break;
    case THEN_POST:
        start_post(OP_CONTEXT_POST, s, (struct then_action){ THEN_NOTHING, 0, 0 });
        break;
    case THEN_STOP:
        /* The poll returns after this handler; the next one restarts. */
        enter_call();
        io_context_stop(state.ctx);
        leave_call();
        break;
    case THEN_WRITE: {
        size_t len = take_budget(THEN_WRITE_SIZE);
        struct iovec *buf = checked_realloc(NULL, sizeof(*buf));

        *buf = io_buffer(pattern + (op->order * 97u) % (PATTERN_SIZE - THEN_WRITE_SIZE), len);
        start_write(s, OP_WRITE, buf, 1, -1, (struct then_action){ THEN_NOTHING, 0, 0 });
        break;
    }
    }
}

/* A new pipe or socketpair in slot, the write end in a new descriptor:
 * pipes in slots 0 and 1, socketpairs in 2 and 3, the even slots on the
 * shared strand. */
static void open_stream(unsigned slot)
{
    struct stream *s = &state.streams[state.nstreams];
    int fds[2], one = 1, err;

    *s = (struct stream){ .index = state.nstreams, .is_socket = slot >= 2,
                          .on_shared_strand = slot % 2 == 0 };
    if (s->is_socket) {
        /* The kernel raises 1 to its minimum, a few KiB. */
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0
            || setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &one, sizeof(one)) != 0
            || setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &one, sizeof(one)) != 0)
            fail("socketpair: %s", strerror(errno));
        s->write_fd = fds[0];
        s->read_fd = fds[1];
    } else {
        if (pipe(fds) != 0)
            fail("pipe: %s", strerror(errno));
        (void)fcntl(fds[1], F_SETPIPE_SZ, SMALL_PIPE_SIZE);  /* a larger pipe only takes longer */
        s->write_fd = fds[1];
        s->read_fd = fds[0];
    }
    if (fcntl(s->read_fd, F_SETFL, O_NONBLOCK) != 0)
        fail("fcntl: %s", strerror(errno));
    err = io_descriptor_create(state.ctx, s->write_fd, s->on_shared_strand ? state.strand : NULL,
                               &s->d);
    if (err != 0)
        fail("io_descriptor_create: %s", strerror(err));
    s->open = true;
    state.slot_stream[slot % SLOTS] = state.nstreams++;
}

static size_t read_some(struct stream *s, size_t max)
{
    ssize_t n;

    if (s->read_fd < 0 || s->eof)
        return 0;
    if (s->capgot - s->ngot < max) {
        s->capgot = s->capgot * 2 > s->ngot + max ? s->capgot * 2 : s->ngot + max;
        s->got = checked_realloc(s->got, s->capgot);
    }
    n = read(s->read_fd, s->got + s->ngot, max);
    if (n > 0) {
        s->ngot += (size_t)n;
        return (size_t)n;
    }
    if (n == 0)
        s->eof = true;
    else if (errno != EAGAIN && errno != EINTR)
        fail("stream %u: read: %s", s->index, strerror(errno));
    return 0;
}

static size_t read_available(struct stream *s)
{
    size_t total = 0, n;

    while ((n = read_some(s, READ_CHUNK)) > 0)
        total += n;
    return total;
}

static size_t read_every_stream(void)
{
    size_t total = 0;
    unsigned i;

    for (i = 0; i < state.nstreams; i++)
        total += read_available(&state.streams[i]);
    return total;
}

static void close_read_end(struct stream *s)
{
    if (s->read_fd < 0)
        return;
    close_owned_fd(s->read_fd, "read end");
    s->read_fd = -1;
}

/* The context stops when it runs out of work; restarting it before
 * each poll keeps polls working.  No other thread runs or polls it. */
static size_t poll_context(bool just_one)
{
    size_t ran;

    if (io_context_stopped(state.ctx))
        io_context_restart(state.ctx);
    state.in_poll = true;
    ran = just_one ? io_context_poll_one(state.ctx) : io_context_poll(state.ctx);
    state.in_poll = false;
    return ran;
}

/* Waits for up to timeout_ns for a read end to become readable. */
static void wait_for_readers(uint64_t timeout_ns)
{
    struct pollfd fds[MAX_STREAMS];
    struct timespec timeout = { (time_t)(timeout_ns / 1000000000u),
                                (long)(timeout_ns % 1000000000u) };
    nfds_t n = 0;
    unsigned i;

    for (i = 0; i < state.nstreams; i++)
        if (state.streams[i].read_fd >= 0 && !state.streams[i].eof)
            fds[n++] = (struct pollfd){ .fd = state.streams[i].read_fd, .events = POLLIN };
    (void)ppoll(fds, n, &timeout, NULL);
}

/* ------------------------------------------------------------------ */
/* decoding                                                            */
/* ------------------------------------------------------------------ */

enum opcode {
    CODE_WRITE, CODE_WRITE_SOME, CODE_EMIT, CODE_CANCEL, CODE_CLOSE, CODE_RELEASE, CODE_DESTROY,
    CODE_CONTEXT_POST, CODE_STRAND_POST, CODE_POLL, CODE_POLL_ONE, CODE_READ_SOME, CODE_READ_ALL,
    CODE_CLOSE_READ_END, CODE_SHUTDOWN, CODE_SENDFILE, CODE_SEND_TIMEOUT, CODE_WATERMARKS,
    CODE_TIMER_CREATE, CODE_TIMER_EXPIRES_AFTER, CODE_TIMER_WAIT, CODE_TIMER_CANCEL,
    CODE_TIMER_DESTROY, CODE_REOPEN, CODE_SECOND_OWNER, CODE_PAUSE, CODE_INSPECT, CODE_COUNT
};

/* What a descriptor says of itself agrees with what the harness knows:
 * open or not, its fd, and no more bytes queued than its pending ops
 * asked for. */
static void inspect(const struct stream *s)
{
    const struct op_record *op;
    size_t pending = 0, queued;
    bool open;
    int fd;

    if (s->d == NULL)
        return;
    for (op = s->first_unfinished; op != NULL; op = op->next_on_stream)
        if (op->calls == 0)
            pending += op->total;
    enter_call();
    open = io_descriptor_is_open(s->d);
    fd = io_descriptor_native_handle(s->d);
    queued = io_descriptor_queued_bytes(s->d);
    leave_call();
    trace("inspect stream %u: %s, fd %d, %zu bytes queued", s->index, open ? "open" : "closed", fd,
          queued);
    if (open != s->open || fd != (s->open ? s->write_fd : -1))
        fail("stream %u: is_open says %d and native_handle %d; it is %s with fd %d", s->index,
             open, fd, s->open ? "open" : "closed", s->write_fd);
    if (queued > pending)
        fail("stream %u: %zu bytes queued, but its pending ops asked for %zu", s->index, queued,
             pending);
}

static void decode_watermarks(struct input *in)
{
    struct stream *s = slot_stream(next_byte(in));
    size_t low = (size_t)next_byte(in) * 32, high_step = (size_t)next_byte(in) * 64;
    unsigned mode = next_byte(in) % 4;
    size_t high = low + 1 + high_step;
    io_watermark_handler handler = mode == 0 ? NULL : on_watermark;
    int err, want;

    if (s->d == NULL)
        return;
    if (mode == 3)
        high = low;     /* not above low: refused */
    want = mode == 3 ? EINVAL : s->open ? 0 : EBADF;
    trace("set_watermarks stream %u low %zu high %zu%s", s->index, low, high,
          handler == NULL ? " (removed)" : "");
    enter_call();
    err = io_descriptor_set_watermarks(s->d, low, high, handler, s);
    leave_call();
    if (err != want)
        fail("stream %u: set_watermarks returned %d, not %d", s->index, err, want);
}

static void decode_timer_op(struct input *in, enum opcode code)
{
    unsigned index_code = next_byte(in);
    struct timer_record *tr = &state.timers[index_code % TIMERS];

    if (code == CODE_TIMER_CREATE) {
        int err;

        if (tr->t != NULL)
            return;
        tr->on_shared_strand = (index_code & 4) != 0;
        trace("timer_create %u%s", index_code % TIMERS,
              tr->on_shared_strand ? " on the strand" : "");
        err = io_timer_create(state.ctx, tr->on_shared_strand ? state.strand : NULL, &tr->t);
        if (err != 0)
            fail("io_timer_create: %s", strerror(err));
        return;
    }
    if (code == CODE_TIMER_WAIT) {
        int signal = decode_signal(next_byte(in));
        struct then_action then = decode_then(next_byte(in));

        trace("timer_async_wait %u signal %d then %s", index_code % TIMERS, signal,
              then_names[then.kind]);
        start_timer_wait(tr, slot_stream(next_byte(in)), signal, then);
        return;
    }
    if (code == CODE_TIMER_EXPIRES_AFTER) {
        uint64_t delay_ns = (uint64_t)next_byte(in) * 20000u;   /* up to 5.1 ms */

        if (tr->t == NULL)
            return;
        trace("timer_expires_after %u %llu ns", index_code % TIMERS, (unsigned long long)delay_ns);
        tr->cancels++;
        enter_call();
        (void)io_timer_expires_after(tr->t, delay_ns);
        leave_call();
        return;
    }
    if (tr->t == NULL)
        return;
    tr->cancels++;
    trace("timer_%s %u", code == CODE_TIMER_CANCEL ? "cancel" : "destroy", index_code % TIMERS);
    enter_call();
    if (code == CODE_TIMER_CANCEL) {
        (void)io_timer_cancel(tr->t);
    } else {
        io_timer_destroy(tr->t);
        tr->t = NULL;
    }
    leave_call();
}

static void decode_one(struct input *in)
{
    enum opcode code = (enum opcode)(next_byte(in) % CODE_COUNT);

    switch (code) {
    case CODE_WRITE:
    case CODE_WRITE_SOME: {
        struct stream *s = slot_stream(next_byte(in));
        size_t count;
        struct iovec *bufs = decode_buffers(in, &count);
        int signal = decode_signal(next_byte(in));
        struct then_action then = decode_then(next_byte(in));

        trace("%s stream %u, %zu buffers, %zu bytes, signal %d, then %s",
              code == CODE_WRITE ? "async_write" : "async_write_some", s->index, count,
              iovs_total(bufs, count), signal, then_names[then.kind]);
        start_write(s, code == CODE_WRITE ? OP_WRITE : OP_WRITE_SOME, bufs, count, signal, then);
        break;
    }
    case CODE_EMIT: {
        unsigned signal = next_byte(in) % SIGNALS, type = decode_cancel_type(next_byte(in));

        trace("emit signal %u type %u", signal, type);
        emit(signal, type);
        break;
    }
    case CODE_CANCEL:
    case CODE_CLOSE:
    case CODE_RELEASE:
    case CODE_DESTROY: {
        struct stream *s = slot_stream(next_byte(in));
        static const char *const names[] = { "cancel", "close", "release", "destroy" };

        trace("%s stream %u", names[code - CODE_CANCEL], s->index);
        if (code == CODE_CANCEL || code == CODE_CLOSE)
            stream_cancel_or_close(s, code == CODE_CLOSE);
        else if (code == CODE_RELEASE)
            stream_release(s);
        else
            stream_destroy(s);
        break;
    }
    case CODE_CONTEXT_POST:
    case CODE_STRAND_POST: {
        struct then_action then = decode_then(next_byte(in));
        struct stream *target = slot_stream(next_byte(in));

        trace("%s then %s on stream %u", code == CODE_STRAND_POST ? "strand_post" : "context_post",
              then_names[then.kind], target->index);
        start_post(code == CODE_STRAND_POST ? OP_STRAND_POST : OP_CONTEXT_POST, target, then);
        break;
    }
    case CODE_POLL:
    case CODE_POLL_ONE:
        trace("%s", code == CODE_POLL ? "poll" : "poll_one");
        (void)poll_context(code == CODE_POLL_ONE);
        break;
    case CODE_READ_SOME: {
        struct stream *s = slot_stream(next_byte(in));
        size_t want = ((size_t)next_byte(in) + 1) * 64, got = read_some(s, want);

        trace("read stream %u up to %zu: %zu", s->index, want, got);
        break;
    }
    case CODE_READ_ALL: {
        struct stream *s = slot_stream(next_byte(in));
        size_t got = read_available(s);

        trace("read all of stream %u: %zu", s->index, got);
        break;
    }
    case CODE_CLOSE_READ_END: {
        struct stream *s = slot_stream(next_byte(in));

        trace("close the read end of stream %u", s->index);
        if (s->read_fd >= 0)
            s->read_end_closed_early = true;
        close_read_end(s);
        break;
    }
    case CODE_SHUTDOWN: {
        struct stream *s = slot_stream(next_byte(in));
        struct then_action then = decode_then(next_byte(in));

        trace("async_shutdown stream %u then %s", s->index, then_names[then.kind]);
        start_shutdown(s, then);
        break;
    }
    case CODE_SENDFILE: {
        struct stream *s = slot_stream(next_byte(in));
        uint64_t offset = next_u16(in);
        size_t count = next_u16(in);
        unsigned mode = next_byte(in);
        struct then_action then = decode_then(next_byte(in));

        trace("async_sendfile stream %u offset %llu count %zu mode %u then %s", s->index,
              (unsigned long long)offset, count, mode % 8, then_names[then.kind]);
        start_sendfile(s, offset, count, decode_signal(mode), then, mode % 8 == 6, mode % 8 == 7);
        break;
    }
    case CODE_SEND_TIMEOUT: {
        struct stream *s = slot_stream(next_byte(in));
        uint64_t timeout_ns = (uint64_t)next_byte(in) * 100000u;     /* up to 25.5 ms */
        int err;

        if (s->d == NULL)
            break;
        trace("set_send_timeout stream %u %llu ns", s->index, (unsigned long long)timeout_ns);
        if (timeout_ns != 0)
            s->send_timeout_set = true;
        enter_call();
        err = io_descriptor_set_send_timeout(s->d, timeout_ns);
        leave_call();
        if (err != (s->open ? 0 : EBADF))
            fail("stream %u: set_send_timeout returned %d", s->index, err);
        break;
    }
    case CODE_WATERMARKS:
        decode_watermarks(in);
        break;
    case CODE_TIMER_CREATE:
    case CODE_TIMER_EXPIRES_AFTER:
    case CODE_TIMER_WAIT:
    case CODE_TIMER_CANCEL:
    case CODE_TIMER_DESTROY:
        decode_timer_op(in, code);
        break;
    case CODE_REOPEN: {
        unsigned slot = next_byte(in) % SLOTS;

        if (slot_stream(slot)->open || state.nstreams == MAX_STREAMS)
            break;
        open_stream(slot);
        trace("reopen slot %u: stream %u", slot, state.slot_stream[slot]);
        break;
    }
    case CODE_SECOND_OWNER: {
        struct stream *s = slot_stream(next_byte(in));
        io_descriptor *second = NULL;
        int err;

        if (!s->open)
            break;
        trace("second descriptor on the fd of stream %u", s->index);
        err = io_descriptor_create(state.ctx, s->write_fd, NULL, &second);
        if (err != EEXIST)
            fail("stream %u: a second descriptor on a held fd: %d, not EEXIST", s->index, err);
        break;
    }
    case CODE_PAUSE: {
        uint64_t pause_ns = (uint64_t)next_byte(in) * 10000u;       /* up to 2.55 ms */

        trace("pause %llu ns", (unsigned long long)pause_ns);
        wait_for_readers(pause_ns);
        break;
    }
    case CODE_INSPECT:
        inspect(slot_stream(next_byte(in)));
        break;
    case CODE_COUNT:
        break;
    }
}

/* ------------------------------------------------------------------ */
/* one input                                                           */
/* ------------------------------------------------------------------ */

static void begin_input(void)
{
    io_context_options opts = { .worker_threads = 1 };
    bool trace_on = state.trace;
    unsigned i;
    int err;

    memset(&state, 0, sizeof(state));
    state.trace = trace_on;
    state.thread = pthread_self();
    state.budget_left = BYTE_BUDGET;
    err = io_context_create(&state.ctx, &opts);
    if (err == 0)
        err = io_strand_create(state.ctx, &state.strand);
    for (i = 0; i < SIGNALS && err == 0; i++)
        err = io_cancel_signal_create(&state.signals[i].sig);
    if (err != 0)
        fail("creating the context, strand and signals: %s", strerror(err));
    for (i = 0; i < SLOTS; i++)
        open_stream(i);
}

static void report_outstanding(void)
{
    const struct op_record *op;

    for (op = state.records; op != NULL; op = op->next_in_input)
        if (op->accepted && op->calls == 0)
            fprintf(stderr, "fuzz_api: no handler yet: %s #%zu, stream %u, %zu bytes asked\n",
                    op_names[op->kind], op->order, op->stream->index, op->total);
}

/* Reads and polls until every accepted op's handler has run. */
static void drain(void)
{
    uint64_t deadline = io_clock_now() + DRAIN_LIMIT_NS;

    while (state.outstanding > 0) {
        if (read_every_stream() + poll_context(false) == 0)
            wait_for_readers(1000000u);
        if (io_clock_now() > deadline) {
            report_outstanding();
            fail("%zu handlers still not run after %llu s of reading and polling",
                 state.outstanding, DRAIN_LIMIT_NS / 1000000000ull);
        }
    }
    (void)read_every_stream();
}

/* Every op has ended: nothing is queued, and the counters say what the
 * handlers said. */
static void check_quiet_context(void)
{
    io_context_stats stats;
    uint64_t reported = 0;
    const struct op_record *op;
    unsigned i;

    for (i = 0; i < state.nstreams; i++) {
        struct stream *s = &state.streams[i];

        if (s->d != NULL && io_descriptor_queued_bytes(s->d) != 0)
            fail("stream %u: %zu bytes still queued once every handler has run", s->index,
                 io_descriptor_queued_bytes(s->d));
    }
    for (op = state.records; op != NULL; op = op->next_in_input)
        if (op->accepted && is_descriptor_op(op))
            reported += op->bytes;
    io_context_get_stats(state.ctx, &stats);
    if (stats.ops_started != state.accepted_descriptor_ops
        || stats.ops_completed != stats.ops_started)
        fail("stats: %llu ops started and %llu completed; %zu were accepted",
             (unsigned long long)stats.ops_started, (unsigned long long)stats.ops_completed,
             state.accepted_descriptor_ops);
    if (stats.bytes_written != reported)
        fail("stats: %llu bytes written, the handlers reported %llu",
             (unsigned long long)stats.bytes_written, (unsigned long long)reported);
}

static void destroy_context(void)
{
    unsigned i;

    state.destroying = true;
    state.in_poll = true;
    io_context_destroy(state.ctx);
    state.in_poll = false;
    state.destroying = false;
    state.ctx = NULL;
    state.strand = NULL;
    /* What destroy closed and freed with the context. */
    for (i = 0; i < state.nstreams; i++) {
        struct stream *s = &state.streams[i];

        if (s->open)
            s->write_fd = -1;
        s->d = NULL;
        s->open = false;
    }
    for (i = 0; i < TIMERS; i++)
        state.timers[i].t = NULL;
}

static void drain_and_destroy(void)
{
    unsigned i;

    drain();
    check_quiet_context();
    for (i = 0; i < state.nstreams; i++)
        stream_destroy(&state.streams[i]);
    for (i = 0; i < TIMERS; i++) {
        io_timer_destroy(state.timers[i].t);
        state.timers[i].t = NULL;
    }
    io_strand_destroy(state.strand);
    state.strand = NULL;
    destroy_context();
}

/* Nothing started after a shutdown that succeeded wrote a byte. */
static void check_nothing_after_shutdown(const struct stream *s)
{
    const struct op_record *op;
    bool shut = false;

    for (op = s->first_op; op != NULL; op = op->next_on_stream) {
        if (shut && (op->bytes != 0 || op->error == 0))
            fail("stream %u: %s #%zu ended with error %d and %zu bytes after a shutdown", s->index,
                 op_names[op->kind], op->order, op->error, op->bytes);
        if (op->kind == OP_SHUTDOWN && op->error == 0)
            shut = true;
    }
}

/* The bytes read from s are those its handlers reported, in the order
 * the handlers ran, with the content of what each op asked to write. */
static void check_stream_bytes(const struct stream *s)
{
    const struct op_record *op;
    size_t pos = 0, i;

    for (op = s->first_handled; op != NULL; op = op->next_handled) {
        size_t left = op->bytes;

        for (i = 0; i < op->count && left > 0; i++) {
            size_t n = op->bufs[i].iov_len < left ? op->bufs[i].iov_len : left;

            if (pos + n > s->ngot) {
                if (s->read_end_closed_early)
                    n = s->ngot - pos;      /* the rest went with the read end */
                else
                    fail("stream %u: %zu bytes read, but the handlers up to %s #%zu reported more",
                         s->index, s->ngot, op_names[op->kind], op->order);
            }
            if (n > 0 && memcmp(s->got + pos, op->bufs[i].iov_base, n) != 0)
                fail("stream %u: bytes %zu.. differ from those of %s #%zu", s->index, pos,
                     op_names[op->kind], op->order);
            pos += n;
            left -= n;
            if (pos == s->ngot && s->read_end_closed_early)
                return;
        }
    }
    if (pos != s->ngot)
        fail("stream %u: %zu bytes read, the handlers reported %zu", s->index, s->ngot, pos);
}

static void check_and_free_input(void)
{
    struct op_record *op, *next;
    unsigned i;

    if (state.outstanding != 0) {
        report_outstanding();
        fail("%zu handlers did not run by the end of io_context_destroy", state.outstanding);
    }
    for (i = 0; i < state.nstreams; i++) {
        struct stream *s = &state.streams[i];

        if (s->read_fd >= 0) {
            (void)read_available(s);
            if (!s->eof)
                fail("stream %u: no EOF once the descriptor and the context are gone", s->index);
        }
        check_nothing_after_shutdown(s);
        check_stream_bytes(s);
        if (s->above_high)
            fail("stream %u: an 'above' water-mark event never got its 'below'", s->index);
        close_read_end(s);
        free(s->got);
    }
    for (i = 0; i < SIGNALS; i++)
        io_cancel_signal_destroy(state.signals[i].sig);
    for (op = state.records; op != NULL; op = next) {
        next = op->next_in_input;
        free(op->bufs);
        free(op);
    }
    state.records = NULL;
}

/* Work still pending when the context goes: destroy must end it all. */
static void end_with_pending_work(void)
{
    destroy_context();
}

static int count_open_fds(void)
{
    DIR *dir = opendir("/proc/self/fd");
    int n = 0;

    if (dir == NULL)
        return -1;      /* no /proc: the check is skipped */
    while (readdir(dir) != NULL)
        n++;
    closedir(dir);
    return n;
}

/* Once per process: the data, the file for sendfile, and SIGPIPE at its
 * default action and unblocked here, so that one raised on this thread
 * would kill the process (the library's workers block it themselves). */
static void prepare_process(void)
{
    static bool prepared;
    const char *dir = getenv("TMPDIR");
    char path[4096];
    sigset_t pipe_only;
    size_t i, done = 0;

    if (prepared)
        return;
    prepared = true;
    state.trace = getenv("IOCTX_FUZZ_TRACE") != NULL;
    signal(SIGPIPE, SIG_DFL);
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_UNBLOCK, &pipe_only, NULL);
    /* Every shift of a stretch changes it, within 64 KiB. */
    for (i = 0; i < PATTERN_SIZE; i++)
        pattern[i] = (unsigned char)(i * 131u + (i >> 8) * 7u);
    for (i = 0; i < FILE_SIZE; i++)
        file_content[i] = (unsigned char)(i * 37u + (i >> 8) * 11u + 101u);
    if (dir == NULL || *dir == '\0')
        dir = "/tmp";
    snprintf(path, sizeof(path), "%s/ioctx-fuzz-XXXXXX", dir);
    file_fd = mkstemp(path);
    if (file_fd < 0)
        fail("mkstemp %s: %s", path, strerror(errno));
    unlink(path);
    while (done < FILE_SIZE) {
        ssize_t n = write(file_fd, file_content + done, FILE_SIZE - done);

        if (n <= 0)
            fail("writing the sendfile file: %s", strerror(errno));
        done += (size_t)n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = { data, size, 0 };
    int fds_before, fds_after;
    sigset_t pending;
    bool end_abruptly;

    prepare_process();
    fds_before = count_open_fds();
    begin_input();
    end_abruptly = (next_byte(&in) & 1) != 0;
    trace("-- input of %zu bytes%s", size, end_abruptly ? ", ending with work pending" : "");
    while (in.pos < in.size)
        decode_one(&in);
    if (end_abruptly)
        end_with_pending_work();
    else
        drain_and_destroy();
    check_and_free_input();
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE))
        fail("a SIGPIPE is pending");
    fds_after = count_open_fds();
    if (fds_before != fds_after)
        fail("%d fds open before the input, %d after", fds_before, fds_after);
    return 0;
}
