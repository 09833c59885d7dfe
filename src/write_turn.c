/*
 * write_turn.c - a worker's turn on a descriptor: gather the queued ops
 * into one system call (writev, or sendmsg on sockets; sendfile for an
 * async_sendfile, shutdown for an async_shutdown, each alone), make it,
 * and decide from its answer what comes next: another call, a wait for
 * POLLOUT, or the end of the turn.
 *
 * Data and locking: called with d->lock held, and only by the worker that
 * holds the descriptor (d->scheduled), which is the only thread that ever
 * writes d->watch.fd.  The lock is dropped around each system call; the
 * ops given to the call are IN_CALL meanwhile, and no other thread moves
 * them (op_queue.c), so the call may read their buffers without the lock.
 *
 * SIGPIPE: sockets are written with MSG_NOSIGNAL; for pipes and the rest,
 * workers run with SIGPIPE blocked and consume the one an EPIPE leaves
 * pending, so that the process never sees it, whatever its disposition.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* One turn writes at most this much, then the descriptor goes to the back
 * of the ready queue, so a huge write cannot starve the others. */
#define IO_TURN_BYTES_MAX ((size_t)1 << 20)

/* A pipe's EPIPE leaves a SIGPIPE pending on this thread (workers keep it
 * blocked); take it away so that nothing is ever delivered. */
static void consume_sigpipe(void)
{
    static const struct timespec no_wait = { 0, 0 };
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    while (sigtimedwait(&set, NULL, &no_wait) < 0 && errno == EINTR)
        ;
}

/* Counts a call's result and makes its error the handlers' own: EAGAIN
 * for either spelling, and no SIGPIPE left behind.  Returns n. */
static ssize_t account(io_descriptor *d, ssize_t n, int *err)
{
    io_context *ctx = io__descriptor_ctx(d);

    atomic_fetch_add_explicit(&ctx->stats.writev_calls, 1, memory_order_relaxed);
    if (n >= 0) {
        atomic_fetch_add_explicit(&ctx->stats.bytes_written, (uint64_t)n, memory_order_relaxed);
        return n;
    }
    *err = errno;
    if (*err == EAGAIN || *err == EWOULDBLOCK) {
        *err = EAGAIN;
        atomic_fetch_add_explicit(&ctx->stats.would_block, 1, memory_order_relaxed);
    } else if (*err == EPIPE && !io__descriptor_is_socket(d)) {
        consume_sigpipe();
    }
    return -1;
}

/* One write system call (MSG_MORE on a socket when more follows at
 * once).  Returns the bytes written, or -1 with *err set; EINTR is
 * retried here and never reaches the caller. */
static ssize_t write_once(io_descriptor *d, int fd, struct iovec *vec, size_t count, bool more,
                          int *err)
{
    ssize_t n;

    do {
        if (io__descriptor_is_socket(d)) {
            struct msghdr msg = { .msg_iov = vec, .msg_iovlen = count };

            n = sendmsg(fd, &msg, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
        } else {
            n = writev(fd, vec, (int)count);
        }
    } while (n < 0 && errno == EINTR);
    return account(d, n, err);
}

/* A file's bytes through user space, for an fd sendfile() cannot write:
 * one pread and one write of at most a buffer.  What the write leaves is
 * read again next time (the op keeps an offset, not the data). */
static ssize_t copy_once(io_descriptor *d, int fd, const struct io_write_op *op, size_t *len,
                         int *err)
{
    char buf[64 * 1024];
    struct iovec iov = { buf, *len < sizeof(buf) ? *len : sizeof(buf) };
    ssize_t n;

    do
        n = pread(op->in_fd, buf, iov.iov_len, (off_t)(op->offset + op->done));
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        *err = n == 0 ? ENODATA : errno;
        return -1;
    }
    iov.iov_len = (size_t)n;
    *len = iov.iov_len;         /* what was offered: less is a full fd */
    return write_once(d, fd, &iov, 1, false, err);
}

/* One sendfile call for op's next *len bytes (ENODATA: the file ended
 * first), or the copy when the kernel cannot send this pair of fds,
 * which offers less (*len says how much). */
static ssize_t sendfile_once(io_descriptor *d, int fd, const struct io_write_op *op, size_t *len,
                             int *err)
{
    off_t offset = (off_t)(op->offset + op->done);     /* in_fd's own offset stays */
    ssize_t n;

    do
        n = sendfile(fd, op->in_fd, &offset, *len);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EINVAL || errno == ENOSYS))
        return copy_once(d, fd, op, len, err);
    if (n == 0) {
        *err = ENODATA;
        return -1;
    }
    return account(d, n, err);
}

/*
 * Writes that went with MSG_MORE wait in the kernel (up to 200 ms on
 * TCP) for the sendfile behind them.  When that sendfile sends nothing
 * after all (the file ended, it failed, it was cancelled, the turn
 * ended first), turning TCP_NODELAY on pushes them out; it is then set
 * back as it was.  Sockets other than TCP refuse the option: they hold
 * nothing back either.
 */
static void push_held_bytes(int fd)
{
    int nodelay = 0, on = 1;
    socklen_t len = sizeof(nodelay);

    if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len) != 0 || nodelay)
        return;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof(nodelay));
}

/* The call for what was gathered: writev (sendmsg), sendfile, or the
 * shutdown of the sending side (on sockets; nothing on other kinds). */
static ssize_t call(io_descriptor *d, int fd, struct iovec *vec, struct io_gathered *g, int *err)
{
    if (g->alone == NULL)
        return write_once(d, fd, vec, g->buffers, g->sendfile_next, err);
    if (g->alone->kind == IO_OP_SENDFILE)
        return sendfile_once(d, fd, g->alone, &g->bytes, err);
    *err = io__descriptor_is_socket(d) && shutdown(fd, SHUT_WR) != 0 ? errno : 0;
    return 0;
}

/* Whether a turn should wait for POLLOUT after a call that wrote less than
 * it offered.  Only sockets and pipes: a file or tty may write short for
 * other reasons and poll() says nothing useful about them. */
static bool parks_after_short_write(const io_descriptor *d)
{
    return (io__descriptor_is_socket(d) || d->kind == IO_FD_PIPE) && !d->detaching
           && !io_task_queue_is_empty(&d->ops);
}

/* Whether a call that could write nothing (EAGAIN, or 0 from a non-empty
 * write) is followed by a wait for POLLOUT; never for a descriptor that a
 * close or release waits for, nor with nothing left to write. */
static bool parks_after_no_room(const io_descriptor *d)
{
    return !d->detaching && !io_task_queue_is_empty(&d->ops);
}

/* The calls of a turn; *held says whether the last one that wrote went
 * with MSG_MORE. */
static enum io_turn_end write_calls_locked(io_descriptor *d, struct iovec *scratch,
                                           struct io_task_queue *done, bool *held)
{
    size_t budget = IO_TURN_BYTES_MAX;
    struct io_gathered g;
    bool one_op = false;
    int fd, err = 0;
    ssize_t n;

    for (;;) {
        if (d->detaching)
            return IO_TURN_DETACH;
        io__op_queue_end_finished_head_locked(d, done);
        if (io_task_queue_is_empty(&d->ops))
            return IO_TURN_IDLE;
        if (budget == 0)
            return IO_TURN_READY;
        /* On a message socket a call is a message: one op each, whole. */
        if (d->kind == IO_FD_MESSAGE_SOCKET)
            g = io__op_queue_gather_locked(d, scratch, SIZE_MAX, true);
        else
            g = io__op_queue_gather_locked(d, scratch, budget, one_op);
        one_op = false;
        fd = d->watch.fd;
        io__op_queue_hand_over_locked(d, done);
        pthread_mutex_unlock(&d->lock);
        n = call(d, fd, scratch, &g, &err);
        pthread_mutex_lock(&d->lock);

        if (g.alone != NULL && g.alone->kind == IO_OP_SHUTDOWN) {
            io__op_queue_shutdown_ran_locked(d, err, done);
        } else if (n > 0) {
            *held = g.alone == NULL && g.sendfile_next;
            io__op_queue_call_returned_locked(d, (struct io_call_result){ (size_t)n, 0 }, done);
            budget -= (size_t)n < budget ? (size_t)n : budget;
            /* A socket or pipe that took less than it was offered is
             * full: the next call would only return EAGAIN.  Waiting for
             * POLLOUT now saves that call (a 1 MiB message: 5 calls
             * instead of 9). */
            if ((size_t)n < g.bytes && parks_after_short_write(d))
                return IO_TURN_PARKED;
        } else if (n == 0 || err == EAGAIN) {
            io__op_queue_call_returned_locked(d, (struct io_call_result){ 0, 0 }, done);
            if (parks_after_no_room(d))
                return IO_TURN_PARKED;
        } else if (g.ops > 1 && (err == EFAULT || err == EINVAL)) {
            /* A bad buffer may be any op's: give the head op a call of
             * its own, so that one op's EFAULT is not blamed on the
             * others.  Other errors are the descriptor's (EPIPE,
             * ECONNRESET, EIO) and go to the head op as they are: a
             * retry would lose a reset that the kernel reports once. */
            io__op_queue_call_returned_locked(d, (struct io_call_result){ 0, 0 }, done);
            one_op = true;
        } else {
            io__op_queue_call_returned_locked(d, (struct io_call_result){ 0, err }, done);
        }
    }
}

enum io_turn_end io__write_turn_locked(io_descriptor *d, struct iovec *scratch,
                                      struct io_task_queue *done)
{
    bool held = false;
    enum io_turn_end end = write_calls_locked(d, scratch, done, &held);

    if (held) {
        int fd = d->watch.fd;

        /* What ended goes to the strand before d->lock is let go: a write
         * started meanwhile with nothing to write and nothing queued ends
         * at once, and must not reach the strand ahead of the ops it
         * follows (found by fuzz_api). */
        io__op_queue_hand_over_locked(d, done);
        pthread_mutex_unlock(&d->lock);
        push_held_bytes(fd);
        pthread_mutex_lock(&d->lock);
    }
    return end;
}
