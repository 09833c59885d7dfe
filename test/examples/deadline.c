/*
 * deadline.c - a deadline for one write: a timer whose handler emits the
 * write's cancel signal.  This is Asio's cancel_after in C.
 *
 * The descriptor and the timer share one strand, so the write's handler
 * and the deadline's never run at once, and whichever runs first decides:
 * a write that completes first cancels the timer (its handler then sees
 * ECANCELED and does nothing); a deadline that expires first emits the
 * signal, and the write completes with ECANCELED and the bytes it got
 * through.  (io_descriptor_set_send_timeout is the other tool: one
 * timeout for a whole descriptor, restarted by progress.)
 *
 * The program writes twice to a socket whose reader reads only the first
 * message: the first write beats its deadline, the second, too big for
 * the socket's buffers, misses it.  Prints both outcomes and "verified:
 * OK", or what went wrong (exit 1).
 */
#include <errno.h>
#include <ioctx.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEADLINE_NS (200ull * 1000 * 1000)

/* One write with a deadline; what its handlers saw. */
struct deadline_write {
    const char *name;
    io_timer *timer;
    io_cancel_signal *cancel;
    int error;
    size_t bytes;
};

/* The deadline's handler: 0 means it expired before the write ended. */
static void on_deadline(void *arg, int error)
{
    struct deadline_write *w = arg;

    if (error == 0)
        io_cancel_signal_emit(w->cancel, IO_CANCEL_TERMINAL);
}

static void on_written(void *arg, int error, size_t bytes)
{
    struct deadline_write *w = arg;

    w->error = error;
    w->bytes = bytes;
    io_timer_cancel(w->timer);      /* no-op if the deadline already fired */
    printf("%s: %s after %zu bytes\n", w->name, error == 0 ? "written" : strerror(error), bytes);
}

/* Starts an async_write of len bytes that must be done within the
 * deadline.  Returns 0 or an errno value. */
static int write_with_deadline(io_descriptor *d, struct deadline_write *w, const void *data,
                               size_t len)
{
    struct iovec iov = io_buffer(data, len);
    int err;

    io_timer_expires_after(w->timer, DEADLINE_NS);
    err = io_timer_async_wait(w->timer, on_deadline, w, NULL);
    if (err == 0)
        err = io_descriptor_async_write(d, &iov, 1, on_written, w, w->cancel);
    if (err != 0)
        io_timer_cancel(w->timer);
    return err;
}

static int fail(const char *what, int err)
{
    fprintf(stderr, "deadline: %s: %s\n", what, strerror(err));
    return 1;
}

int main(void)
{
    static char big[4 << 20];
    static const char small[] = "in time";
    struct deadline_write w[2] = { { .name = "small write" }, { .name = "big write" } };
    char got[sizeof(small)];
    io_context *ctx;
    io_strand *strand;
    io_descriptor *d;
    int sv[2], err;

    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return fail("socketpair", errno);
    if ((err = io_context_create(&ctx, NULL)) != 0)
        return fail("io_context_create", err);
    if ((err = io_strand_create(ctx, &strand)) != 0 || (err = io_descriptor_create(ctx, sv[0], strand, &d)) != 0)
        return fail("create", err);
    for (int i = 0; i < 2; i++) {
        if ((err = io_timer_create(ctx, strand, &w[i].timer)) != 0
            || (err = io_cancel_signal_create(&w[i].cancel)) != 0)
            return fail("create", err);
    }

    memset(big, 'x', sizeof(big));
    if ((err = write_with_deadline(d, &w[0], small, sizeof(small))) != 0
        || (err = write_with_deadline(d, &w[1], big, sizeof(big))) != 0)
        return fail("write_with_deadline", err);
    /* The reader takes the first message and then stops reading. */
    if (read(sv[1], got, sizeof(got)) != (ssize_t)sizeof(got))
        return fail("read", errno);
    io_context_run(ctx);

    for (int i = 0; i < 2; i++) {
        io_timer_destroy(w[i].timer);
        io_cancel_signal_destroy(w[i].cancel);
    }
    io_descriptor_destroy(d);
    io_strand_destroy(strand);
    io_context_destroy(ctx);
    close(sv[1]);
    if (w[0].error != 0 || w[0].bytes != sizeof(small)) {
        fprintf(stderr, "deadline: the small write should have been in time\n");
        return 1;
    }
    if (w[1].error != ECANCELED || w[1].bytes >= sizeof(big)) {
        fprintf(stderr, "deadline: the big write should have missed its deadline\n");
        return 1;
    }
    printf("verified: OK\n");
    return 0;
}
