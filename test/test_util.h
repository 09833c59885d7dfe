/*
 * test_util.h - what the Check suites share (test_util.c): contexts and
 * descriptors whose creation is asserted, pipes and sockets with small
 * buffers, patterned data, threads that run a context or read an fd, the
 * record a write handler fills in, latches, a way to tell that another
 * thread is asleep in the kernel, and main: a suite only defines its
 * tests and lists them in tu_add_tests.
 *
 * Every suite is linked with writev and sendmsg wrapped (-Wl,--wrap): the
 * wrappers in test_util.c count the write system calls the library makes,
 * and those made on a thread the test owns (there must be none: run
 * threads never write to a descriptor, only workers do), and can hold a
 * worker inside sendmsg until the test lets it go.
 */
#ifndef IOCTX_TEST_UTIL_H
#define IOCTX_TEST_UTIL_H

#include <check.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ioctx.h"

/* Generous: TSan builds run these an order of magnitude slower, and the
 * test build multiplies it again (CK_TIMEOUT_MULTIPLIER). */
#define TU_TIMEOUT_S 60

/* How long a test waits for something that takes microseconds when the
 * library is right, before it says what did not happen. */
#define TU_WAIT_S 10

/* ------------------------------------------------------------------ */
/* small things                                                        */
/* ------------------------------------------------------------------ */

/* Functions, not atomic_load(): inside ck_assert a macro would be
 * expanded into the failure message. */
static inline int tu_int(atomic_int *p)
{
    return atomic_load(p);
}

static inline bool tu_bool(atomic_bool *p)
{
    return atomic_load(p);
}

static inline pid_t tu_gettid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

/* ------------------------------------------------------------------ */
/* whose thread is this                                                */
/* ------------------------------------------------------------------ */

/* Set on every thread the test owns: the test itself, and the run,
 * posting and reading threads it starts.  Clear on the library's own
 * workers, the only threads that may write. */
extern _Thread_local bool tu_app_thread;

/* Set around the test's own run calls (tu_run_marked, tu_runner): a
 * handler that finds it clear ran somewhere else than inside run. */
extern _Thread_local bool tu_inside_run;

/* run(ctx) (io_context_run, run_one, poll or poll_one) with
 * tu_inside_run set. */
size_t tu_run_marked(size_t (*run)(io_context *), io_context *ctx);

/* writev and sendmsg calls since the test began, on any thread and on
 * the test's own threads. */
int tu_write_calls(void);
int tu_app_thread_write_calls(void);

/* ------------------------------------------------------------------ */
/* latches                                                             */
/* ------------------------------------------------------------------ */

struct tu_latch {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned count;
};

void tu_latch_init(struct tu_latch *l, unsigned count);
void tu_latch_count_down(struct tu_latch *l);
void tu_latch_wait(struct tu_latch *l);
/* As tu_latch_wait, for at most seconds; false if the count is not 0 by
 * then.  For what a broken library would never do: the test can then
 * clean up and fail with a message instead of hanging. */
bool tu_latch_wait_for(struct tu_latch *l, unsigned seconds);
void tu_latch_destroy(struct tu_latch *l);

/* Holds the next writev or sendmsg on fd inside the wrapper, before the
 * real call: the calling worker counts down entered, then waits for
 * released.  So a test knows the worker is inside the system call, and
 * can act then. */
struct tu_call_gate {
    struct tu_latch entered;
    struct tu_latch released;
};

void tu_gate_next_write(int fd, struct tu_call_gate *g);
/* Takes the gate away if no call has passed it yet. */
void tu_ungate_write(void);

/* ------------------------------------------------------------------ */
/* other threads' state, from /proc                                    */
/* ------------------------------------------------------------------ */

/* The fields of /proc/self/task/TID/stat after the thread's name (the
 * state first, as proc(5) numbers them from 3), read into buf; NULL if
 * there is no such thread. */
const char *tu_thread_stat(pid_t tid, char *buf, size_t size);

/* 'S' while the thread sleeps in the kernel (a futex wait, say), 'R' while
 * it runs, 0 once it has exited. */
char tu_thread_state(pid_t tid);

/* Waits until thread tid sleeps in the kernel or *gone becomes true (the
 * thread left the call the test cares about).  Returns true if it sleeps.
 * The thread is seen sleeping three times in a row, so a thread passing
 * through a brief mutex wait is not taken for one that blocks. */
bool tu_wait_sleeping(pid_t tid, atomic_bool *gone);

/* ------------------------------------------------------------------ */
/* contexts and the objects on them, created or the test fails         */
/* ------------------------------------------------------------------ */

/* With workers worker threads (0 means the library's default, one). */
io_context *tu_new_context(unsigned workers);
/* Created with NULL options, as most programs do. */
io_context *tu_new_default_context(void);
io_strand *tu_new_strand(io_context *ctx);
io_descriptor *tu_new_descriptor(io_context *ctx, int fd, io_strand *strand);
io_cancel_signal *tu_new_signal(void);
io_context_stats tu_stats(io_context *ctx);

/* Destroys ctx; no thread of the test wrote to a descriptor, before or
 * during the destroy. */
void tu_destroy_context(io_context *ctx);

/* ------------------------------------------------------------------ */
/* fds                                                                 */
/* ------------------------------------------------------------------ */

/* A pipe that holds one page: a few KiB of writes make it block.
 * Returns what it holds. */
size_t tu_small_pipe(int fds[2]);

/* A context with workers threads and one descriptor on the writing end
 * (fd) of a new pipe or socketpair; peer is the reading end, the test's.
 * The small kinds hold a few KiB (tu_small_pipe, tu_small_socketpair),
 * so that writes soon have to wait for a reader. */
enum tu_stream_kind { TU_PIPE, TU_SMALL_PIPE, TU_SOCKETPAIR, TU_SMALL_SOCKETPAIR };

struct tu_stream {
    io_context *ctx;
    io_descriptor *d;
    int fd;
    int peer;
    size_t size;                /* what a pipe holds; 0 for a socket */
    int flags;                  /* fd's status flags before create */
};

void tu_stream_open(struct tu_stream *s, enum tu_stream_kind kind, unsigned workers);
/* Destroys the descriptor and the context (tu_destroy_context) and
 * closes peer. */
void tu_stream_close(struct tu_stream *s);

/* sv[0] for the descriptor, sv[1] for the reader; the kernel raises the
 * requested 1 byte of send and receive buffer to its minimum, a few KiB. */
void tu_small_socketpair(int sv[2]);

/* Fills the send buffer of socket fd (made non-blocking) with plain
 * send() until the kernel says EAGAIN.  Returns the bytes sent. */
size_t tu_fill_socket(int fd);

/* Clears O_NONBLOCK behind the library's back: a worker's write then
 * blocks until a reader makes room. */
void tu_make_blocking(int fd);
bool tu_is_nonblocking(int fd);
bool tu_is_closed(int fd);

/* Waits until fd (a pipe's write end or a socket) is no longer writable:
 * a worker has filled its buffer and must now wait for POLLOUT, so the
 * test exercises that wait.  The kernel's own answer is the probe, so it
 * holds whether the worker saw EAGAIN or stopped after a short write. */
void tu_wait_unwritable(int fd);

/* Reads what fd holds now, without blocking (fd is made non-blocking).
 * Keeps the first cap bytes in buf and returns how many there were in
 * all; *eof (may be NULL) tells whether every writer is gone. */
size_t tu_read_available(int fd, unsigned char *buf, size_t cap, bool *eof);

/* Reads exactly len bytes from a blocking fd. */
void tu_read_exactly(int fd, void *buf, size_t len);

/* Reads up to len bytes from a blocking fd; fewer only at EOF or on an
 * error.  Asserts nothing: for threads other than the test's. */
size_t tu_read_up_to(int fd, void *buf, size_t len);

/* Reads fd, blocking, until EOF, keeping the first cap bytes; returns how
 * many there were.  It returns once every writer is gone, so a library
 * that never closes its end makes the test time out. */
size_t tu_read_until_eof(int fd, unsigned char *buf, size_t cap);

/* A thread that reads fd (blocking) until EOF, or until stop_at bytes
 * when stop_at is not 0.  buf keeps the first cap bytes; got counts all. */
struct tu_reader {
    pthread_t thread;
    int fd;
    unsigned char *buf;
    size_t cap;
    size_t stop_at;
    size_t got;
    int error;
};

void tu_reader_start(struct tu_reader *r, int fd, size_t cap, size_t stop_at);
/* Joins the reader; it must have read without an error. */
void tu_reader_join(struct tu_reader *r);
/* Joins the reader, checks that it got exactly the len bytes of want,
 * and frees its buffer. */
void tu_reader_finish(struct tu_reader *r, const void *want, size_t len);

/* ------------------------------------------------------------------ */
/* data                                                                */
/* ------------------------------------------------------------------ */

uint64_t tu_mix64(uint64_t x);
/* The next number of the splitmix64 sequence that *state is in. */
uint64_t tu_splitmix64(uint64_t *state);

/* Bytes that depend on key and on their offset, so that a lost, repeated
 * or misplaced stretch shows. */
void tu_fill_pattern(unsigned char *p, size_t len, uint64_t key);
/* A malloc'd buffer of len such bytes. */
unsigned char *tu_new_pattern(size_t len, uint64_t key);

/* iov[i] covers the next sizes[i] bytes of data; returns the total. */
size_t tu_split(struct iovec *iov, unsigned char *data, const size_t *sizes, int n);

/* ------------------------------------------------------------------ */
/* run threads                                                         */
/* ------------------------------------------------------------------ */

/* A thread of the test that calls run(ctx) once, with tu_inside_run set. */
struct tu_runner {
    pthread_t thread;
    io_context *ctx;
    size_t (*run)(io_context *);
    pthread_barrier_t *start;   /* waited on before run, when not NULL */
    atomic_int tid;             /* 0 until the thread has begun */
    atomic_bool returned;       /* once run has returned */
    size_t ran;                 /* what run returned */
};

void tu_runner_start(struct tu_runner *r, io_context *ctx, size_t (*run)(io_context *),
                     pthread_barrier_t *start);
/* Returns what run returned. */
size_t tu_runner_join(struct tu_runner *r);
/* The runner's thread id, once it has begun. */
pid_t tu_runner_tid(struct tu_runner *r);

/* n threads in io_context_run(ctx), and the handlers they ran in all. */
void tu_runners_start(struct tu_runner *r, int n, io_context *ctx);
size_t tu_runners_join(struct tu_runner *r, int n);

/* Runs ctx on nrun run threads while fn runs on n threads of the test,
 * the i-th with arg (char *)args + i * size: under a unit of work, so
 * that run waits for what they start; once they have returned, run
 * returns when that is done.  Returns the handlers the run threads ran. */
size_t tu_run_while(io_context *ctx, int nrun, void *(*fn)(void *), void *args, size_t size,
                    int n);

/* ------------------------------------------------------------------ */
/* handlers                                                            */
/* ------------------------------------------------------------------ */

/* An io_handler that counts its calls: arg is a struct tu_counter. */
struct tu_counter {
    atomic_int calls;
    atomic_int outside_run;     /* calls without tu_inside_run */
};

void tu_count(void *counter);

/* Code that must never run on two threads at once (the handlers of one
 * strand) enters and leaves it; overlaps counts the entries that found
 * another inside.  Enter yields, so that an overlap has time to show. */
struct tu_serial {
    atomic_int in_flight;
    atomic_int overlaps;
};

void tu_serial_init(struct tu_serial *s);
void tu_serial_enter(struct tu_serial *s);
void tu_serial_leave(struct tu_serial *s);

#define TU_LOG_MAX 256

/* The handlers of one descriptor: the order they ran in, and whether two
 * of them ever ran at once (they share the descriptor's strand). */
struct tu_order_log {
    atomic_int count;
    struct tu_serial serial;
    int order[TU_LOG_MAX];      /* each slot written once, read after run */
};

void tu_order_log_init(struct tu_order_log *log);

/* What a write handler saw, and where it ran. */
struct tu_result {
    atomic_int calls;
    atomic_int error;               /* -1 until it ran */
    atomic_size_t bytes;            /* SIZE_MAX until it ran */
    atomic_int outside_run;         /* runs without tu_inside_run */
    atomic_int strand_wrong;
    int index;                      /* its place in the array, for messages */
    struct tu_order_log *log;       /* NULL: not logged */
    const io_strand *on_strand;     /* must be running in the handler */
    const io_strand *off_strand;    /* must not be running in the handler */
    io_descriptor *destroy;         /* the handler destroys it */
    struct tu_latch *done;          /* counted down after each run */
};

/* r[0..n-1], indexed 0..n-1, logged to log when it is not NULL. */
void tu_results_init(struct tu_result *r, int n);
void tu_results_init_logged(struct tu_result *r, int n, struct tu_order_log *log);

/* An io_write_handler: arg is a struct tu_result. */
void tu_record(void *arg, int error, size_t bytes);

/* Starts an async_write (all) or an async_write_some of len bytes from
 * data, recorded in r; returns what the initiating call returned. */
int tu_start_write(io_descriptor *d, bool all, const void *data, size_t len,
                   struct tu_result *r, io_cancel_signal *sig);

static inline int tu_write_all(io_descriptor *d, const void *data, size_t len, struct tu_result *r)
{
    return tu_start_write(d, true, data, len, r, NULL);
}

static inline int tu_write_some(io_descriptor *d, const void *data, size_t len, struct tu_result *r)
{
    return tu_start_write(d, false, data, len, r, NULL);
}

/* The handler ran once, with this error and byte count. */
void tu_assert_result(struct tu_result *r, int error, size_t bytes);
/* The same, and it ran inside a marked run call, on the strand it had to. */
void tu_assert_result_in_run(struct tu_result *r, int error, size_t bytes);
/* As tu_assert_result_in_run for a write_some: error 0 and 1..asked
 * bytes.  Returns the count. */
size_t tu_assert_some(struct tu_result *r, size_t asked);
/* The n handlers ran in start order, never two at once. */
void tu_assert_in_order(struct tu_order_log *log, int n);

static inline int tu_result_error(struct tu_result *r)
{
    return atomic_load(&r->error);
}

static inline size_t tu_result_bytes(struct tu_result *r)
{
    return atomic_load(&r->bytes);
}

/* ------------------------------------------------------------------ */
/* the suite                                                           */
/* ------------------------------------------------------------------ */

/* A NULL-terminated list of START_TEST names, for tu_add_tcase. */
#define TU_TESTS(...) ((const TTest *const[]){ __VA_ARGS__, NULL })

/* A test case named name in s, with the tests given, TU_TIMEOUT_S, and a
 * fixture that marks the test's thread as the test's and starts the
 * write call counts from 0.  Returns it for more (loop tests, another
 * timeout). */
TCase *tu_add_tcase(Suite *s, const char *name, const TTest *const *tests);

/* Each suite defines it: adds the suite's test cases to s.  main, in
 * test_util.c, names the suite after the program (test_NAME runs suite
 * NAME, as CK_RUN_SUITE knows it) and runs it, one process per test. */
void tu_add_tests(Suite *s);

#endif /* IOCTX_TEST_UTIL_H */
