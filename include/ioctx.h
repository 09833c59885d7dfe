/*
 * ioctx.h - Asio-style asynchronous writes on POSIX stream descriptors.
 *
 * A server thread starts a write with io_descriptor_async_write_some() or
 * io_descriptor_async_write(); the call returns at once.  Worker threads of
 * the library wait in poll() and perform the writev(); each result becomes
 * a handler on a strand, and the handler runs on a thread that calls
 * io_context_run() (or run_one/poll/poll_one), never inside the call that
 * started the operation.
 *
 * Each function's comment says what it does, its errors, its
 * thread-safety, where its handler runs, and ends with its Asio
 * counterpart ("Asio: ...").
 *
 * Conventions shared by every function below:
 *   - Functions returning int return 0 on success or a positive errno value
 *     (EINVAL for a NULL object, NULL handler, or NULL bufs with count > 0;
 *     ENOMEM when memory runs out; the few others a function may return,
 *     such as EBUSY, EBADF or EEXIST, are named in its comment).  The
 *     exceptions are io_descriptor_native_handle() and
 *     io_descriptor_release().
 *   - Every initiating call that returns 0 leads to exactly one invocation
 *     of its handler before io_context_destroy() returns; one that returns
 *     non-zero never invokes its handler.
 *   - All functions are thread-safe, except each *_destroy, which must not
 *     race with any other call on that same object.
 *
 * After fork(), the child has none of a context's worker threads (fork
 * copies only the calling thread), keeps locked forever any lock one of
 * them held at that moment, and shares the parent's wake-up fd and, with
 * the epoll backend (Linux's default), its epoll instance.  So the child
 * must not call any function on an object it inherited (a context, or a
 * strand, descriptor, timer or cancel signal the parent made), not even a
 * destroy or close: its writes would never complete; io_context_destroy()
 * would join threads that do not exist in the child (undefined) and run
 * the parent's pending handlers there; and closing or destroying an
 * inherited descriptor, or its context, may wait forever for a worker, or
 * take the parent's fd out of the shared epoll set so that the parent's
 * writes waiting for room never complete.  A child that needs ioctx
 * creates its own context.  The inherited objects' memory is lost in the
 * child; their fds stay open there until the child calls close() on them
 * (which leaves the parent's alone) or exec (the library's own fds are
 * close-on-exec; the descriptors' fds are as the program opened them).
 * Asio's io_context::notify_fork(), which lets a child go on using an
 * inherited context, has no counterpart here.
 *
 * Each function's comment below says the rest: what it does, its errors,
 * its thread-safety, where its handler runs, and its Asio counterpart.
 */
#ifndef IOCTX_H
#define IOCTX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* The version of this header.  io_version() returns the library's, which
 * differs when a program runs against another build than it was compiled
 * with.  These three lines are the only place the version is written: the
 * build reads them (CMakeLists.txt) for the package and the SONAME. */
#define IOCTX_VERSION_MAJOR 0
#define IOCTX_VERSION_MINOR 1
#define IOCTX_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH: 0.1.0 is 100, 1.2.3 is 10203. */
#define IOCTX_VERSION \
    (IOCTX_VERSION_MAJOR * 10000u + IOCTX_VERSION_MINOR * 100u + IOCTX_VERSION_PATCH)

/* Marks what libioctx.so exports: the library is compiled with
 * -fvisibility=hidden, so its internal io__ functions stay inside it and
 * the ABI is exactly the functions declared here. */
#if defined(__GNUC__) && __GNUC__ >= 4
#define IOCTX_API __attribute__((visibility("default")))
#else
#define IOCTX_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct io_context       io_context;        /* opaque */
typedef struct io_strand        io_strand;         /* opaque */
typedef struct io_descriptor    io_descriptor;     /* opaque */
typedef struct io_cancel_signal io_cancel_signal;  /* opaque */
typedef struct io_timer         io_timer;          /* opaque */

/* A handler posted with io_context_post() or io_strand_post(). */
typedef void (*io_handler)(void *arg);

/* The handler of a write: error is 0 or a positive errno value (never
 * EAGAIN, EWOULDBLOCK or EINTR); bytes_transferred counts the bytes the
 * kernel accepted for this operation. */
typedef void (*io_write_handler)(void *arg, int error, size_t bytes_transferred);

/* The handler of a timer wait (and of other operations that carry no
 * byte count): error is 0, ECANCELED, or another positive errno value. */
typedef void (*io_wait_handler)(void *arg, int error);

/* A descriptor's water-mark event: above_high is true when its queued
 * bytes rose above the high mark, false when they fell back to the low
 * mark or below; queued_bytes is the count right after that change. */
typedef void (*io_watermark_handler)(void *arg, bool above_high, size_t queued_bytes);

typedef struct io_context_options {
    unsigned worker_threads;   /* threads that block in poll() and call writev(); 0 = 1 */
} io_context_options;

typedef struct io_context_stats {
    uint64_t ops_started;      /* descriptor ops accepted (writes, sendfile, shutdown) */
    uint64_t ops_completed;    /* descriptor ops whose handler has been queued */
    uint64_t writev_calls;     /* write system calls (writev, sendmsg, sendfile) made by workers */
    uint64_t bytes_written;    /* bytes accepted by the kernel (sendfile's too) */
    uint64_t would_block;      /* writev() calls that returned EAGAIN */
    uint64_t handlers_run;     /* handlers of every kind run by run/poll/destroy */
} io_context_stats;

/* Cancellation types for io_cancel_signal_emit(), as in Asio's
 * cancellation_type: terminal, partial and total. */
enum {
    IO_CANCEL_TERMINAL = 1u << 0,
    IO_CANCEL_PARTIAL  = 1u << 1,
    IO_CANCEL_TOTAL    = 1u << 2,
};

/* The C form of Asio's buffer(): one iovec over caller-owned memory, which
 * must stay valid until the handler of the write that uses it has run. */
static inline struct iovec io_buffer(const void *data, size_t size)
{
    struct iovec iov;

    iov.iov_base = (void *)data;   /* writev never writes through it */
    iov.iov_len = size;
    return iov;
}

/* ------------------------------------------------------------------ */
/* version                                                             */
/* ------------------------------------------------------------------ */

/* The version of the library this program runs with, encoded as
 * IOCTX_VERSION is; compare the two to tell header and library apart.
 * Thread-safe.  Asio: none (libuv: uv_version()). */
IOCTX_API unsigned io_version(void);

/* The same version as "MAJOR.MINOR.PATCH", a static string.  Thread-safe.
 * Asio: none (libuv: uv_version_string()). */
IOCTX_API const char *io_version_string(void);

/* ------------------------------------------------------------------ */
/* context                                                             */
/* ------------------------------------------------------------------ */

/*
 * Creates a context and starts its worker threads (opts may be NULL: one
 * worker).  One worker gathers best at light load; with many busy
 * descriptors, one per core keeps up (a second worker is woken only when
 * descriptors queue up for a turn, so more workers cost little when few
 * write).  Returns 0 and sets *out, or EINVAL (out is NULL), ENOMEM, or
 * the errno of a failed thread or wake-up fd creation; nothing is leaked
 * on failure.  Thread-safe.  Asio: constructing an io_context (whose run
 * threads also do the I/O; here only the workers write).
 */
IOCTX_API int    io_context_create(io_context **out, const io_context_options *opts);

/*
 * Shuts the context down: stops the workers, completes every pending
 * operation with ECANCELED, then runs every queued handler (and every
 * handler those post) on the calling thread before it frees anything.
 * Strands and descriptors not yet destroyed are destroyed with it; their
 * fds are closed.  Must not race with any other call on ctx, and must not
 * be called from a handler of ctx.  NULL is ignored.  Asio:
 * io_context::~io_context(), which destroys pending handlers without
 * calling them; here each runs once.
 */
IOCTX_API void   io_context_destroy(io_context *ctx);

/*
 * Runs handlers on the calling thread until the context is stopped or has
 * no work left (no pending operation, no queued or running handler, no
 * outstanding io_context_work_started()); blocks while there is work but
 * nothing is ready.  A return because no work is left also leaves the
 * context stopped.  May be called from many threads at once.  Returns the
 * number of handlers this call ran (0 for NULL).  Called from inside a
 * handler of the same context (this and run_one, poll, poll_one) it
 * returns 0 at once, where it would wait for itself; Asio leaves that
 * undefined.  Asio: io_context::run().
 */
IOCTX_API size_t io_context_run(io_context *ctx);

/*
 * Like io_context_run(), but runs at most one handler: blocks until one is
 * ready, the context is stopped, or no work is left.  Returns 0 or 1.
 * Asio: io_context::run_one().
 */
IOCTX_API size_t io_context_run_one(io_context *ctx);

/*
 * Runs every handler that is ready, on the calling thread and without
 * blocking, until none is ready or the context is stopped.  Returns the
 * number run.  Stops the context if it has no work left, as run does.
 * Thread-safe.  Asio: io_context::poll().
 */
IOCTX_API size_t io_context_poll(io_context *ctx);

/*
 * Runs at most one ready handler without blocking.  Returns 0 or 1.
 * Thread-safe.  Asio: io_context::poll_one().
 */
IOCTX_API size_t io_context_poll_one(io_context *ctx);

/*
 * Stops the context: every run and poll call returns as soon as its
 * current handler returns, and threads blocked in run wake at once.
 * Workers keep performing pending writes; their completions wait in the
 * queue.  Thread-safe; may be called from a handler.  NULL is ignored.
 * Asio: io_context::stop().
 */
IOCTX_API void   io_context_stop(io_context *ctx);

/* True once the context is stopped (by io_context_stop() or by a run that
 * found no work left), until io_context_restart().  False for NULL.
 * Thread-safe.  Asio: io_context::stopped(). */
IOCTX_API bool   io_context_stopped(io_context *ctx);

/*
 * Clears the stopped state so that run and poll may be called again.  Call
 * it only when no thread is inside run or poll of ctx.  NULL is ignored.
 * Asio: io_context::restart().
 */
IOCTX_API void   io_context_restart(io_context *ctx);

/*
 * Counts one unit of outstanding work that keeps io_context_run() from
 * returning for lack of work.  Pair each call with
 * io_context_work_finished(), from any thread.  NULL is ignored.  Asio:
 * creating an executor_work_guard (make_work_guard(ctx)).
 */
IOCTX_API void   io_context_work_started(io_context *ctx);

/*
 * Ends one unit of work counted by io_context_work_started().  When no
 * work is left the context stops and every blocked run thread returns.
 * As in Asio, a post from another thread that races with the last unit
 * of work ending may find the context already stopped (its handler waits
 * for restart, or runs in destroy): keep a work_started outstanding for
 * as long as other threads may post.  NULL is ignored.  Thread-safe.
 * Asio: executor_work_guard::reset().
 */
IOCTX_API void   io_context_work_finished(io_context *ctx);

/*
 * Queues fn(arg) to run on a thread inside run/poll (or in destroy),
 * never inside this call.  Returns 0, EINVAL (ctx or fn is NULL) or
 * ENOMEM.  Thread-safe, also from handlers.  Asio: asio::post(ctx, fn).
 */
IOCTX_API int    io_context_post(io_context *ctx, io_handler fn, void *arg);

/*
 * Copies a snapshot of the context's counters into *out.  Each counter is
 * read atomically; the set is not one atomic snapshot while threads run.
 * Does nothing if ctx or out is NULL.  Thread-safe.  Asio: none.
 */
IOCTX_API void   io_context_get_stats(io_context *ctx, io_context_stats *out);

/* ------------------------------------------------------------------ */
/* strand                                                              */
/* ------------------------------------------------------------------ */

/*
 * Creates a strand on ctx: handlers posted to one strand never run
 * concurrently and run in the order they were posted; different strands
 * run in parallel.  Returns 0, EINVAL or ENOMEM.  Thread-safe.  Asio:
 * asio::make_strand(ctx).
 */
IOCTX_API int    io_strand_create(io_context *ctx, io_strand **out);

/*
 * Drops the caller's handle.  Handlers already posted still run, in order;
 * the strand's memory goes after the last of them (and after the last
 * descriptor using it is gone).  May be called from one of the strand's
 * own handlers.  Must not race with other calls on this strand.  NULL is
 * ignored.  Asio: destroying the last copy of a strand object.
 */
IOCTX_API void   io_strand_destroy(io_strand *strand);

/*
 * Queues fn(arg) on the strand; it runs on a thread inside run/poll (or in
 * destroy), after every handler posted to the strand before it, and never
 * inside this call.  Returns 0, EINVAL (strand or fn is NULL) or ENOMEM.
 * Thread-safe, also from handlers.  Asio: asio::post(strand, fn) (the
 * older strand::post()).
 */
IOCTX_API int    io_strand_post(io_strand *strand, io_handler fn, void *arg);

/* True exactly when the calling thread is running one of the strand's
 * handlers.  False for NULL.  Thread-safe.  Asio:
 * strand::running_in_this_thread(). */
IOCTX_API bool   io_strand_running_in_this_thread(const io_strand *strand);

/* ------------------------------------------------------------------ */
/* descriptor                                                          */
/* ------------------------------------------------------------------ */

/*
 * Takes charge of fd (a pipe, socket, tty, regular file or character
 * device): remembers its file status flags and sets O_NONBLOCK.  All
 * completions of the descriptor run on strand, or on a private strand when
 * strand is NULL.  Writes go through the context's worker threads: a
 * socket with sendmsg(MSG_NOSIGNAL), anything else with writev; SIGPIPE
 * is never raised.  Returns 0, EINVAL (ctx or out is NULL, or strand
 * belongs to another context), EBADF (fd is not open, or not open for
 * writing: a pipe's read end, a directory), EEXIST (an open descriptor of
 * this context already holds fd: two would be two owners and two closes)
 * or ENOMEM.
 * Thread-safe.  Asio: posix::stream_descriptor(strand_or_ctx, fd).
 */
IOCTX_API int    io_descriptor_create(io_context *ctx, int fd, io_strand *strand, io_descriptor **out);

/* The fd, or -1 once closed or released (or for NULL).  Thread-safe.
 * Asio: descriptor::native_handle(). */
IOCTX_API int    io_descriptor_native_handle(const io_descriptor *d);

/* True until the descriptor is closed, released or destroyed.
 * Thread-safe.  Asio: descriptor::is_open(). */
IOCTX_API bool   io_descriptor_is_open(const io_descriptor *d);

/*
 * Starts one write of the count buffers (the iovec array is copied, the
 * data is not: it must stay valid until the handler runs).  Completes
 * after one successful write of at least one byte (possibly fewer than
 * asked; with more than IOV_MAX buffers only the first IOV_MAX may be
 * written), or with an error and 0 bytes.  Operations on one descriptor
 * are performed, and their handlers run, in the order they were started;
 * one cancelled while it waits (a cancel signal, cancel, close, the send
 * timeout) is taken out at once and its handler may run before those of
 * earlier operations.
 * Returns 0, EINVAL (also for buffers whose lengths add up to more than
 * SSIZE_MAX: no byte is written), ENOMEM, or EBUSY (cancel is attached to
 * another pending operation).  The handler runs on the descriptor's strand, on a
 * thread inside run/poll (or in destroy), never inside this call; its
 * error is 0, ECANCELED, EBADF or what the system call said.  Thread-safe,
 * also concurrently on one descriptor.  cancel may be NULL; it supports
 * all three cancellation types.  Asio:
 * posix::stream_descriptor::async_write_some().
 */
IOCTX_API int    io_descriptor_async_write_some(io_descriptor *d, const struct iovec *bufs, size_t count,
                                                io_write_handler handler, void *arg,
                                                io_cancel_signal *cancel /* may be NULL */);

/*
 * Starts a write of every byte of the count buffers, or fails.  Once its
 * first byte is written no other operation's bytes reach the descriptor
 * until it completes, so concurrent async_write calls never interleave
 * (Asio forbids them; here they are allowed and run in start order).
 * Errors and threading as io_descriptor_async_write_some(); a failed
 * write reports the bytes written before the error.  cancel supports
 * IO_CANCEL_TERMINAL and IO_CANCEL_PARTIAL always, and IO_CANCEL_TOTAL
 * before the first byte is written.  Asio: asio::async_write(descriptor,
 * buffers, handler).
 */
IOCTX_API int    io_descriptor_async_write(io_descriptor *d, const struct iovec *bufs, size_t count,
                                           io_write_handler handler, void *arg,
                                           io_cancel_signal *cancel /* may be NULL */);

/* Bytes of the descriptor's pending operations not yet written (0 for
 * NULL).  A snapshot: it may change as soon as it is returned.
 * Thread-safe.  Asio: none (libuv: uv_stream_get_write_queue_size()). */
IOCTX_API size_t io_descriptor_queued_bytes(const io_descriptor *d);

/*
 * Queues, in order with the descriptor's other operations, the transfer
 * of count bytes of in_fd from offset, without copying them through user
 * space where the kernel can (sendfile(2); otherwise pread and write).
 * in_fd's own file offset is not changed; it must stay open until the
 * handler runs.  Behaves as io_descriptor_async_write for order, no
 * interleaving, cancellation, io_descriptor_queued_bytes (count), the
 * send timeout and errors; completes with 0 and count, or an error and
 * the bytes sent so far: ENODATA when the file ended first.  count 0
 * completes with 0 and 0 bytes without a system call.  After writes that
 * precede it on a TCP socket, their bytes and the file's go out together
 * (MSG_MORE), not as a lone small packet.  Returns 0, EINVAL (d or
 * handler NULL, offset above INT64_MAX), EBADF (in_fd not open for
 * reading: checked before anything else), ENOMEM, or EBUSY.  Thread-safe.
 * Asio: none (nginx: sendfile; Netty: FileRegion).
 */
IOCTX_API int    io_descriptor_async_sendfile(io_descriptor *d, int in_fd, uint64_t offset,
                                              size_t count, io_write_handler handler, void *arg,
                                              io_cancel_signal *cancel /* may be NULL */);

/*
 * Waits behind every operation started before it (whatever their
 * results), then on a socket shuts down the sending side
 * (shutdown(SHUT_WR): the peer reads EOF after the last byte) and
 * completes with 0 or shutdown's error; on other kinds of fd it does
 * nothing to the fd and completes with 0.  Operations started after it
 * (another shutdown and zero-byte writes too) complete with EPIPE
 * without a system call, in order after it.  Cancel, close, release,
 * destroy and the send timeout complete it before it has run, as they
 * do writes (ECANCELED, ETIMEDOUT); the descriptor was then not shut
 * down, and later operations are performed as usual.  On a descriptor
 * already closed or released it completes with EBADF.  Returns 0,
 * EINVAL or ENOMEM.  The handler runs on the descriptor's strand.
 * Thread-safe.  Asio: none (libuv: uv_shutdown()).
 */
IOCTX_API int    io_descriptor_async_shutdown(io_descriptor *d, io_wait_handler handler, void *arg);

/*
 * Sets write-buffer water marks, low < high (else EINVAL): when
 * io_descriptor_queued_bytes() rises above high, handler(arg, true, q)
 * is queued on the descriptor's strand; the next time it falls to low or
 * below, for any reason (writes done, cancel, close, release, the send
 * timeout, destroy), handler(arg, false, q) is queued; and so on.  Events
 * alternate and start with true, and every true is followed by exactly
 * one false before the descriptor's memory goes.  Each is queued at the
 * moment of its crossing, in order with the write handlers: a false runs
 * after the handlers of the writes whose end brought the bytes down.
 * Setting or removing marks while a true is outstanding queues its false
 * first (to the handler that got the true); then the new marks are
 * checked at once.  A NULL handler removes them (low and high ignored).
 * Returns 0, EINVAL, ENOMEM, or EBADF once closed or released.
 * Thread-safe.  Asio: none (Netty: WriteBufferWaterMark and
 * channelWritabilityChanged).
 */
IOCTX_API int    io_descriptor_set_watermarks(io_descriptor *d, size_t low, size_t high,
                                              io_watermark_handler handler, void *arg);

/*
 * Sets the send timeout (0: none, the default).  When the descriptor has
 * pending operations and no write system call has accepted a byte for
 * timeout_ns, counted from the later of the moment it got its first
 * pending operation and the last call that accepted bytes, every
 * operation then pending completes with ETIMEDOUT (0 bytes, or the bytes
 * an async_write had written); an operation inside a worker's call at
 * that moment completes when the call returns.  The descriptor stays
 * open, and later operations are performed as usual, the clock starting
 * again.  A new value takes effect at once, for the wait in progress too
 * (one already due fires at once).  A descriptor with a timeout costs
 * one timer entry, not one per operation; one without costs nothing.
 * Returns 0, EINVAL, ENOMEM, or EBADF once closed or released.
 * Thread-safe.  Asio: none (folly: AsyncSocket::setSendTimeout(); nginx:
 * send_timeout).
 */
IOCTX_API int    io_descriptor_set_send_timeout(io_descriptor *d, uint64_t timeout_ns);

/*
 * Completes every pending operation with ECANCELED (bytes 0, or the bytes
 * already written for an async_write).  An operation inside a worker's
 * write system call at that moment completes when the call returns: with
 * ECANCELED and its bytes so far, or normally if the call finished it.
 * The handlers run on the descriptor's strand as usual.  Returns 0,
 * EINVAL, or EBADF once closed or released (as Asio).  Thread-safe.
 * Asio: descriptor::cancel().
 */
IOCTX_API int    io_descriptor_cancel(io_descriptor *d);

/*
 * Cancels as io_descriptor_cancel() does, then closes the fd.  When a
 * worker is writing the descriptor, waits for that system call to return
 * first (briefly: workers never wait for run threads), so that the fd is
 * closed when this returns and no worker can write a reused fd number.
 * Later operations complete with EBADF.  Returns 0, EINVAL, or EBADF if
 * already closed or released.  Thread-safe.  Asio: descriptor::close().
 */
IOCTX_API int    io_descriptor_close(io_descriptor *d);

/*
 * Cancels as io_descriptor_cancel() does, restores the file status flags
 * the fd had at io_descriptor_create(), and returns the fd without closing
 * it.  Returns -1 with errno set (EINVAL, or EBADF if already closed or
 * released).  Later operations complete with EBADF.  Thread-safe.  Asio:
 * descriptor::release().
 */
IOCTX_API int    io_descriptor_release(io_descriptor *d);

/*
 * Closes the descriptor if still open and drops the caller's handle; its
 * memory lives on until its last handler has run.  May be called from one
 * of its own handlers.  Must not race with other calls on d.  NULL is
 * ignored.  Asio: posix::stream_descriptor::~basic_stream_descriptor().
 */
IOCTX_API void   io_descriptor_destroy(io_descriptor *d);

/* ------------------------------------------------------------------ */
/* per-operation cancellation                                          */
/* ------------------------------------------------------------------ */

/*
 * Creates a cancel signal.  Pass it to one async write at a time; it
 * detaches when that operation completes and may then be reused.  Returns
 * 0, EINVAL or ENOMEM.  Thread-safe.  Asio: a cancellation_signal, passed
 * as bind_cancellation_slot(signal.slot(), handler).
 */
IOCTX_API int    io_cancel_signal_create(io_cancel_signal **out);

/* Frees a signal that is attached to no pending operation.  NULL is
 * ignored.  Must not race with other calls on sig.  Asio:
 * cancellation_signal::~cancellation_signal(). */
IOCTX_API void   io_cancel_signal_destroy(io_cancel_signal *sig);

/*
 * Requests cancellation of the operation the signal is attached to, with
 * type one of IO_CANCEL_*.  Does nothing when nothing is attached or the
 * operation does not support that type now.  The cancelled operation's
 * handler runs on its descriptor's strand as usual, never inside this
 * call.  Thread-safe, also from handlers and while a worker writes the
 * operation; never completes an operation twice.  Asio:
 * cancellation_signal::emit().
 */
IOCTX_API void   io_cancel_signal_emit(io_cancel_signal *sig, unsigned type);

/* ------------------------------------------------------------------ */
/* clock and timers                                                    */
/* ------------------------------------------------------------------ */

/* The timers' clock: CLOCK_MONOTONIC in nanoseconds.  Thread-safe.
 * Asio: steady_timer::clock_type::now(). */
IOCTX_API uint64_t io_clock_now(void);

/*
 * Creates a timer on ctx.  Its expiry starts at 0, already expired.  The
 * handlers of its waits run on strand, or on a private strand of the
 * timer when strand is NULL.  Returns 0, EINVAL (ctx or out is NULL, or
 * strand belongs to another context) or ENOMEM.  Thread-safe.  Asio:
 * steady_timer(strand_or_ctx).
 */
IOCTX_API int      io_timer_create(io_context *ctx, io_strand *strand, io_timer **out);

/*
 * Sets the expiry to expiry_ns, a point of io_clock_now().  Every wait
 * pending on the timer completes with ECANCELED; returns how many (a wait
 * that had already expired is not one of them: it completes with 0).
 * 0 for NULL.  Thread-safe.  Asio: basic_waitable_timer::expires_at().
 */
IOCTX_API size_t   io_timer_expires_at(io_timer *t, uint64_t expiry_ns);

/* io_timer_expires_at(t, io_clock_now() + delay_ns), saturating.  Asio:
 * basic_waitable_timer::expires_after(). */
IOCTX_API size_t   io_timer_expires_after(io_timer *t, uint64_t delay_ns);

/* The timer's expiry (0 for NULL).  Thread-safe.  Asio:
 * basic_waitable_timer::expiry(). */
IOCTX_API uint64_t io_timer_expiry(const io_timer *t);

/*
 * Starts a wait: handler(arg, 0) runs once io_clock_now() has reached the
 * expiry (never before), or handler(arg, ECANCELED) if the wait is
 * cancelled first: by io_timer_cancel(), io_timer_expires_at() or
 * _after(), an emit of cancel (any type), io_timer_destroy() or
 * io_context_destroy().  Several waits may be pending on one timer.
 * Waits that expire run in expiry order, ties in the order they were
 * started, as one strand sees them.  A pending wait keeps
 * io_context_run() from returning.  The worker threads watch the clock:
 * they sleep until the earliest expiry, and nothing wakes periodically.
 * Returns 0, EINVAL, ENOMEM, or EBUSY (cancel is attached to another
 * pending operation).  Runs the handler on the timer's strand, never
 * inside this call.  Thread-safe.  Asio:
 * basic_waitable_timer::async_wait().
 */
IOCTX_API int      io_timer_async_wait(io_timer *t, io_wait_handler handler, void *arg,
                                       io_cancel_signal *cancel /* may be NULL */);

/*
 * Completes every pending wait of the timer with ECANCELED and returns
 * how many.  A wait whose expiry came first is not cancelled: it
 * completes with 0 and is not counted.  0 for NULL.  Thread-safe.  Asio:
 * basic_waitable_timer::cancel().
 */
IOCTX_API size_t   io_timer_cancel(io_timer *t);

/*
 * Cancels the pending waits (ECANCELED) and drops the caller's handle;
 * the timer's memory lives on until the last handler of its waits has
 * run.  May be called from one of those handlers.  Must not race with
 * other calls on t.  NULL is ignored.  Asio:
 * basic_waitable_timer::~basic_waitable_timer().
 */
IOCTX_API void     io_timer_destroy(io_timer *t);

#ifdef __cplusplus
}
#endif

#endif /* IOCTX_H */
