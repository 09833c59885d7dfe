/*
 * bench_write_common.h - the write workload that every bench_write*
 * program runs, whichever library does the writing, so that only the
 * library differs from one program to the next.
 *
 * C connections (AF_UNIX SOCK_STREAM socketpairs, or pipes with --pipes);
 * P producer threads each submit M complete writes of S bytes, message i
 * of producer p going to connection (p * C / P + i / B) % C (B: --burst,
 * 1 by default); reader threads
 * drain the other ends and verify every byte.  A message starts with a
 * 16-byte header (producer id, connection, and a sequence number local to
 * that connection and producer), then a byte pattern derived from it, so
 * the readers check both the bytes and the order of each producer's
 * messages on each connection.
 *
 * Each producer owns a pool of --window message buffers (by default 256,
 * or 16 MiB if less): a buffer is
 * reused once the handler of its write has run, so at most window
 * messages per producer are in flight.  That bounds memory, gives every
 * library the same back-pressure, and keeps submit-to-handler latency a
 * measure of the pipeline rather than of an ever-growing backlog.
 *
 * --burst B sends B consecutive messages of a producer to one connection
 * before it moves to the next, so that up to B writes queue on a
 * connection at once.
 *
 * --slow K adds K slow consumers beside those C connections: socketpairs
 * (or pipes) with 4 KiB send buffers (SO_SNDBUF on the write end, and
 * SO_RCVBUF on the read end; F_SETPIPE_SZ for pipes) whose readers never
 * read, and one write of 256 KiB queued on each (bw_submit_stuck(), before
 * the timed section) that therefore never finishes.  The healthy workload
 * then runs as usual, and only its messages are measured.  After it, the
 * program stops its run threads and closes the K slow connections the way
 * its library does, between bw_close_stuck()'s two clock readings (not
 * including the handlers' run); it then runs the handlers, each of which
 * must report ECANCELED, exactly once per stuck write.
 *
 * --idle-bytes measures the heap in use (live bytes, counted by the
 * interposer, bench_interpose.c, in every thread) at the end of the run,
 * once every handler has run and before the library is torn down, less
 * what was in use at the end of bw_init() (before the program created its
 * context and wrapped the connections), divided by C + K: what the
 * library keeps per idle connection after the traffic.
 *
 * Command line (the same for every program; a program ignores what it has
 * no use for, e.g. --workers outside ioctx):
 *   --connections C --producers P --size S --messages M (per producer)
 *   --run-threads R --workers W --readers N --window F (in flight per producer)
 *   --burst B --pipes --slow K --idle-bytes
 * bw_init() raises RLIMIT_NOFILE's soft limit to the hard limit; a hard
 * limit below the 2 (C + K) descriptors needed makes it print a skip line.
 *
 * Each program prints one line on stdout:
 *   NAME msgs_per_s MB_per_s cpu_s writes_per_msg p50_us p99_us mallocs_per_op peak_rss_kb
 *        slow close_us idle_bytes_per_conn window messages reads_per_msg reader_cpu_s
 * ("na" where a number is unavailable): slow is K, close_us the time of
 * the K close calls in all (na when K is 0), idle_bytes_per_conn na
 * without --idle-bytes; window is F and messages M * P, the run's
 * messages in all, so that a line read alone says how to turn cpu_s into
 * CPU per message; reads_per_msg the readers' read() calls per message
 * and reader_cpu_s their CPU time (part of cpu_s): the same readers serve
 * every program, and how many messages they find per read depends on how
 * the program's threads share the cores with them.  Or "NAME skipped
 * REASON" and exit 77 when the system refuses the library (io_uring in a
 * sandbox), the program sits out an option (--slow for the blocking raw
 * writer and io_uring), or RLIMIT_NOFILE is too low.
 */
#ifndef IOCTX_BENCH_WRITE_COMMON_H
#define IOCTX_BENCH_WRITE_COMMON_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Exit status of a program whose library the system refuses (as in
 * liburing's tests and ctest's SKIP_RETURN_CODE). */
#define BW_EXIT_SKIP 77

/* Bytes of the header at the start of every message. */
#define BW_HEADER_SIZE 16

struct bw_options {
    unsigned connections;
    unsigned producers;
    unsigned run_threads;       /* threads running handlers, where the library has them */
    unsigned workers;           /* ioctx's worker threads */
    unsigned readers;           /* threads that drain and verify */
    unsigned window;            /* messages in flight per producer */
    unsigned long messages;     /* per producer */
    size_t size;                /* bytes per message, header included */
    unsigned burst;             /* consecutive messages to one connection */
    unsigned slow;              /* slow consumers with a stuck write each */
    bool pipes;                 /* pipes instead of socketpairs */
    bool idle_bytes;            /* measure the heap kept per connection */
};

struct bw_producer;

/* One message buffer of a producer's pool, handed to the library from
 * submit until bw_complete(). */
struct bw_msg {
    struct bw_msg *next;        /* the implementation's to use while it holds the message */
    struct bw_producer *owner;
    unsigned conn;              /* index into bw_bench.write_fds */
    /* Unique over all pools and stuck writes: 0 .. bw_slots() - 1. */
    unsigned slot;
    unsigned long index;        /* unique over all messages of the run */
    double submitted;           /* bw_now() just before the submit call */
    unsigned char *data;
    size_t size;
};

struct bw_state;

struct bw_bench {
    const char *name;
    struct bw_options o;
    /* o.connections write ends, then the o.slow slow consumers' ones, in
     * blocking mode: bw_conns() in all. */
    int *write_fds;
    struct bw_state *state;     /* the rest is private to bench_write_common.c */
};

/* Submits m (m->data, m->size bytes) to connection m->conn; the
 * implementation calls bw_complete(m, ...) once the write is done. */
typedef void (*bw_submit_fn)(void *impl, struct bw_msg *m);

/* Closes connection conn (a slow one) the way the library does. */
typedef void (*bw_close_fn)(void *impl, unsigned conn);

double bw_now(void);

/* Connections in all (o.connections + o.slow), and message slots in all
 * (o.producers * o.window + o.slow). */
unsigned bw_conns(const struct bw_bench *b);
unsigned bw_slots(const struct bw_bench *b);

/* Parses the command line, ignores SIGPIPE, creates the connections,
 * pools and latency records.  Returns 0, or the exit status to return
 * (2 for a usage error, 1 for a failure), having said why. */
int bw_init(struct bw_bench *b, const char *name, int argc, char **argv);

/* Submits the stuck write of each slow connection with submit(impl, m)
 * (its bw_msg comes from here; the implementation completes it with
 * bw_complete() as any other) and waits until the library has written
 * the first bytes of every one, so that all are stuck when the timed
 * section starts.  Does nothing without --slow.  Call it before bw_start(),
 * with the library's threads running. */
void bw_submit_stuck(struct bw_bench *b, bw_submit_fn submit, void *impl);

/* Starts the readers, then the timed section (clock, CPU time, malloc and
 * write counters). */
int bw_start(struct bw_bench *b);

/* Runs the P producers, each calling submit(impl, m) for its messages,
 * and returns once all have submitted all (not once they completed). */
int bw_produce(struct bw_bench *b, bw_submit_fn submit, void *impl);

/* The completion handler's part: checks the result, records the
 * submit-to-handler latency and gives the buffer back to its producer.
 * Thread-safe. */
void bw_complete(struct bw_msg *m, int error, size_t bytes);

/* Messages in all, and whether every one has been completed (the stuck
 * writes are not counted). */
unsigned long bw_total(const struct bw_bench *b);
bool bw_all_completed(const struct bw_bench *b);
/* Waits until every message has been completed. */
void bw_wait_completed(struct bw_bench *b);

/* Waits for the readers to have verified every byte, then ends the timed
 * section. */
int bw_stop(struct bw_bench *b);

/* Closes the K slow connections with close_one(impl, conn), on the
 * calling thread, and times the calls (from the first call to the last
 * one's return).  A stuck write's handler that runs before this is a
 * failure.  Call it after bw_stop(), with the library's run threads
 * stopped, so that no handler runs during the timing; then run the
 * handlers before bw_report(). */
void bw_close_stuck(struct bw_bench *b, bw_close_fn close_one, void *impl);

/* The run, for a library that does all its work on one thread of its own
 * (libuv's loop, an io_uring ring): runs thread_main(impl) on a new
 * thread, submits the stuck writes, starts the readers and the timed
 * section, runs the producers, waits for that thread to return (once
 * every message is completed) and ends the timed section.  Returns 0 (or
 * exits if a thread cannot be started); the caller closes the slow
 * connections and prints the result line. */
int bw_run_beside(struct bw_bench *b, void *(*thread_main)(void *), bw_submit_fn submit, void *impl);

/* Messages in order, linked through next: what waits for a connection,
 * or what producers hand over to a library's own thread. */
struct bw_msg_list {
    struct bw_msg *head, *tail;
};

void bw_list_push(struct bw_msg_list *l, struct bw_msg *m);
/* The first message, taken off the list; NULL if it is empty. */
struct bw_msg *bw_list_pop(struct bw_msg_list *l);

/* A list that producers push to (submit) and the library's thread takes
 * whole (bw_handoff_take), under a lock. */
struct bw_handoff {
    pthread_mutex_t lock;
    struct bw_msg_list list;
};

#define BW_HANDOFF_INIT { PTHREAD_MUTEX_INITIALIZER, { NULL, NULL } }

void bw_handoff_push(struct bw_handoff *h, struct bw_msg *m);
/* Every message pushed so far, in order, linked through next. */
struct bw_msg *bw_handoff_take(struct bw_handoff *h);

/* Write system calls made on the connections' write ends during the timed
 * section, as counted by the interposer (bench_interpose.c); -1 where the
 * build has none (sanitizer builds). */
long long bw_interposed_writes(const struct bw_bench *b);

/* Prints the result line.  writes: the write system calls (or
 * submissions) made during the timed section, -1 if unknown.  With
 * --idle-bytes, call it once the library is idle and before it is torn
 * down.  Returns the exit status: 0, or 1 if a write failed, a byte was
 * missing or wrong, or the stuck writes' handlers did not each run once
 * with ECANCELED. */
int bw_report(struct bw_bench *b, long long writes);

/* Prints "NAME skipped WHY" and returns BW_EXIT_SKIP. */
int bw_skip(const char *name, const char *why);

/* Closes what is left and frees everything. */
void bw_fini(struct bw_bench *b);

/* The counting interposer (bench_interpose.c). */
bool bench_counting_available(void);
uint64_t bench_malloc_count(void);
uint64_t bench_write_count(void);
void bench_watch_fd(int fd);
/* Live heap bytes (malloc_usable_size of every block allocated and not
 * freed since bench_track_live_bytes() was called), over all threads. */
void bench_track_live_bytes(void);
int64_t bench_live_bytes(void);

#ifdef __cplusplus
}
#endif

#endif /* IOCTX_BENCH_WRITE_COMMON_H */
