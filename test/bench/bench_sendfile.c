/*
 * bench_sendfile.c - serving one file to C concurrent clients over TCP
 * loopback, three ways (--mode):
 *
 *   sendfile  ioctx: one io_descriptor_async_sendfile of the whole file
 *             per client, then io_descriptor_async_shutdown; the kernel
 *             moves the file's pages, the program never sees them.
 *   pread     ioctx: the file in chunks (--chunk, 64 KiB) that a handler
 *             reads with pread() and writes with io_descriptor_async_write,
 *             --in-flight (4) chunks per client at a time, each buffer
 *             reused once its write's handler has run; then the shutdown.
 *             What a server without sendfile does: one copy into user
 *             space and one out of it.
 *   raw       no library: one thread per client makes blocking sendfile()
 *             calls until the file is sent, then shutdown(SHUT_WR).  The
 *             machine's limit for this workload.
 *
 * TCP rather than AF_UNIX: sendfile's page references and the MSG_MORE
 * that joins a header to a file are TCP's business.  The file is made
 * in --dir (default $TMPDIR or /tmp), unlinked at once, and read from
 * the page cache: its writing is not timed.  The clients are threads of
 * this program that read into one buffer each and count the bytes; every
 * client must get exactly the file's size, and every handler must report
 * success, or the run fails.
 *
 * Prints one line:
 *   MODE MB/s wall_s cpu_s write_calls clients size rounds
 * MB/s: bytes received by all clients (10^6) over the wall time, from
 * the first send started to the last client's EOF; cpu_s: the process's
 * user + system time over the same span (clients included); write_calls:
 * the write system calls the server made (ioctx: stats.writev_calls,
 * which counts sendfile and sendmsg calls; raw: its sendfile calls).
 *
 *   bench_sendfile --mode sendfile|pread|raw [--size BYTES] [--clients C]
 *                  [--run-threads R] [--workers W] [--chunk BYTES]
 *                  [--in-flight N] [--rounds N] [--dir DIR]
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_common.h"
#include "ioctx.h"

#define MAX_CLIENTS     1024
#define MAX_IN_FLIGHT   64
#define MAX_RUN_THREADS 256
#define CLIENT_BUFFER   ((size_t)256 << 10)

enum mode { MODE_SENDFILE, MODE_PREAD, MODE_RAW };
static const char *const mode_name[] = { "sendfile", "pread", "raw" };

struct sf_options {
    enum mode mode;
    uint64_t size;
    unsigned clients;
    unsigned run_threads;
    unsigned workers;
    size_t chunk;
    unsigned in_flight;
    unsigned rounds;                  /* times each client is sent the file */
    const char *dir;
};

/* What every server side shares. */
struct server {
    const struct sf_options *o;
    int file_fd;
    atomic_int first_error;           /* of any handler or call; 0: none */
    atomic_ullong raw_calls;          /* raw mode's sendfile calls */
};

static void note_error(struct server *s, int error)
{
    int none = 0;

    if (error != 0)
        atomic_compare_exchange_strong(&s->first_error, &none, error);
}

/* ------------------------------------------------------------------ */
/* clients                                                             */
/* ------------------------------------------------------------------ */

struct client {
    pthread_t thread;
    int fd;
    uint64_t received;
    int error;                        /* errno of a failed recv */
};

/* Reads to EOF, counting. */
static void *client_read(void *arg)
{
    struct client *c = arg;
    char *buf = malloc(CLIENT_BUFFER);

    if (buf == NULL) {
        c->error = ENOMEM;
        return NULL;
    }
    for (;;) {
        ssize_t n = recv(c->fd, buf, CLIENT_BUFFER, 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            c->error = n < 0 ? errno : 0;     /* 0: EOF, the server is done */
            break;
        }
        c->received += (uint64_t)n;
    }
    free(buf);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* one connection on the server side                                   */
/* ------------------------------------------------------------------ */

struct connection;

/* A buffer of the pread mode: one write in flight at a time. */
struct chunk {
    struct connection *conn;
    char *data;
};

struct connection {
    struct server *s;
    int fd;                           /* the accepted socket */
    io_descriptor *d;
    io_strand *strand;                /* the pread mode's: its handlers and start share it */
    pthread_t thread;                 /* the raw mode's sender */
    /* The pread mode's progress; only the strand's handlers touch it. */
    uint64_t next_offset;
    unsigned writes_pending;
    struct chunk chunks[MAX_IN_FLIGHT];
};

/* The last handler of every connection in the ioctx modes. */
static void on_shut_down(void *arg, int error)
{
    struct connection *conn = arg;

    note_error(conn->s, error);
    io_descriptor_destroy(conn->d);
    conn->d = NULL;
}

static void on_file_sent(void *arg, int error, size_t bytes)
{
    struct connection *conn = arg;

    note_error(conn->s, error);
    if (error == 0 && bytes != conn->s->o->size)
        note_error(conn->s, EIO);
}

/* Starts the ioctx sendfile mode on one connection: the operations run
 * in order, so all are started at once. */
static int start_sendfile(struct connection *conn)
{
    const struct sf_options *o = conn->s->o;
    int err = 0;

    for (unsigned r = 0; r < o->rounds && err == 0; r++)
        err = io_descriptor_async_sendfile(conn->d, conn->s->file_fd, 0, (size_t)o->size, on_file_sent,
                                           conn, NULL);
    return err != 0 ? err : io_descriptor_async_shutdown(conn->d, on_shut_down, conn);
}

static void on_chunk_written(void *arg, int error, size_t bytes);

/* Reads the connection's next chunk into ch and starts its write; false
 * when the file is all read (or a read failed: the error is noted). */
static bool send_next_chunk(struct connection *conn, struct chunk *ch)
{
    const struct sf_options *o = conn->s->o;
    uint64_t file_offset = conn->next_offset % o->size;
    uint64_t left = o->size - file_offset;      /* a chunk never wraps to the file's start */
    size_t len = left < o->chunk ? (size_t)left : o->chunk;
    struct iovec iov;
    ssize_t n;
    int err;

    if (conn->next_offset == o->size * o->rounds)
        return false;
    do
        n = pread(conn->s->file_fd, ch->data, len, (off_t)file_offset);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        note_error(conn->s, n == 0 ? ENODATA : errno);
        return false;
    }
    conn->next_offset += (uint64_t)n;
    iov = io_buffer(ch->data, (size_t)n);
    err = io_descriptor_async_write(conn->d, &iov, 1, on_chunk_written, ch, NULL);
    if (err != 0) {
        note_error(conn->s, err);
        return false;
    }
    conn->writes_pending++;
    return true;
}

/* Runs on the connection's strand: its buffer is free again, so it
 * carries the next chunk; the last write to end starts the shutdown. */
static void on_chunk_written(void *arg, int error, size_t bytes)
{
    struct chunk *ch = arg;
    struct connection *conn = ch->conn;

    (void)bytes;
    conn->writes_pending--;
    note_error(conn->s, error);
    if (error == 0 && send_next_chunk(conn, ch))
        return;
    if (conn->writes_pending == 0) {
        int err = io_descriptor_async_shutdown(conn->d, on_shut_down, conn);

        note_error(conn->s, err);
    }
}

/* The pread mode's start, posted to the connection's strand so that the
 * first writes are started in file order and no handler of them runs
 * before all are counted. */
static void start_chunks(void *arg)
{
    struct connection *conn = arg;
    unsigned started = 0;

    for (unsigned i = 0; i < conn->s->o->in_flight; i++)
        if (send_next_chunk(conn, &conn->chunks[i]))
            started++;
    if (started == 0) {
        int err = io_descriptor_async_shutdown(conn->d, on_shut_down, conn);

        note_error(conn->s, err);
    }
}

/* The raw mode: one thread, blocking sendfile() until the file is sent
 * (--rounds times). */
static void *raw_send(void *arg)
{
    struct connection *conn = arg;
    uint64_t size = conn->s->o->size;
    unsigned long long calls = 0;

    for (unsigned r = 0; r < conn->s->o->rounds; r++) {
        off_t offset = 0;

        while ((uint64_t)offset < size) {
            ssize_t n = sendfile(conn->fd, conn->s->file_fd, &offset, (size_t)(size - (uint64_t)offset));

            calls++;
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                note_error(conn->s, n == 0 ? ENODATA : errno);
                r = conn->s->o->rounds;
                break;
            }
        }
    }
    shutdown(conn->fd, SHUT_WR);
    close(conn->fd);
    atomic_fetch_add(&conn->s->raw_calls, calls);
    return NULL;
}

/* The run threads: the handlers above run here. */
static void *run_handlers(void *ctx)
{
    io_context_run(ctx);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* setup                                                               */
/* ------------------------------------------------------------------ */

static void die(const char *what)
{
    fprintf(stderr, "bench_sendfile: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* A file of size bytes in dir, already unlinked, filled with a pattern
 * that is not all one value (so that no layer can take it for a hole). */
static int make_file(const char *dir, uint64_t size)
{
    char path[4096];
    char *block = malloc((size_t)1 << 20);
    int fd;

    snprintf(path, sizeof(path), "%s/bench_sendfile.XXXXXX", dir);
    fd = mkstemp(path);
    if (fd < 0 || block == NULL)
        die("making the file");
    unlink(path);
    for (size_t i = 0; i < ((size_t)1 << 20); i++)
        block[i] = (char)(i * 131 + (i >> 12));
    for (uint64_t done = 0; done < size;) {
        size_t len = size - done < ((size_t)1 << 20) ? (size_t)(size - done) : ((size_t)1 << 20);
        ssize_t n = pwrite(fd, block, len, (off_t)done);

        if (n <= 0)
            die("writing the file");
        done += (uint64_t)n;
    }
    /* Written back now, not by the kernel's flusher in the middle of the
     * timed transfer; the pages stay cached. */
    if (fdatasync(fd) != 0)
        die("fdatasync");
    free(block);
    return fd;
}

/* Connects every client to a loopback listener and accepts its server
 * side into conns[i].fd. */
static void connect_clients(struct client *clients, struct connection *conns, unsigned n)
{
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(addr);
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof(addr)) != 0
        || listen(listener, (int)n) != 0 || getsockname(listener, (struct sockaddr *)&addr, &len) != 0)
        die("listening socket");
    for (unsigned i = 0; i < n; i++) {
        clients[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (clients[i].fd < 0 || connect(clients[i].fd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
            die("connect");
        conns[i].fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (conns[i].fd < 0)
            die("accept");
    }
    close(listener);
}

static double cpu_seconds(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6
           + (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ------------------------------------------------------------------ */
/* options                                                             */
/* ------------------------------------------------------------------ */

static void usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s --mode sendfile|pread|raw [options]\n"
            "  --size BYTES      the file's size, K/M/G suffixes (default 64M)\n"
            "  --clients C       concurrent clients, each sent the whole file (default 8)\n"
            "  --run-threads R   threads in io_context_run (default 2)\n"
            "  --workers W       library worker threads (default 1)\n"
            "  --chunk BYTES     the pread mode's chunk (default 64K)\n"
            "  --in-flight N     the pread mode's chunks in flight per client (default 4)\n"
            "  --rounds N        send each client the file N times over, back to back\n"
            "                    (default 1): a longer run at the same file size\n"
            "  --dir DIR         where the file is made (default $TMPDIR or /tmp)\n",
            prog);
}

/* A positive count up to max, with an optional K, M or G suffix (powers
 * of 1024) where units is true.  False if text is not one. */
static bool parse_amount(const char *text, uint64_t max, bool units, uint64_t *out)
{
    unsigned long long v, unit = 1;
    char *end;

    if (*text < '0' || *text > '9')
        return false;
    errno = 0;
    v = strtoull(text, &end, 10);
    if (units && *end != '\0' && end[1] == '\0') {
        const char *suffix = strchr("KMG", *end & ~0x20);

        if (suffix != NULL) {
            unit = 1ull << (10 * (1 + (suffix - "KMG")));
            end++;
        }
    }
    if (errno != 0 || *end != '\0' || v == 0 || v > max / unit)
        return false;
    *out = v * unit;
    return true;
}

/* The options that take a plain count: --clients, --run-threads,
 * --workers, --in-flight, --rounds.  False for another letter or a bad
 * value. */
static bool parse_count(struct sf_options *o, int letter, const char *text)
{
    const struct {
        int letter;
        uint64_t max;
        unsigned *field;
    } counts[] = {
        { 'c', MAX_CLIENTS, &o->clients },   { 'r', MAX_RUN_THREADS, &o->run_threads },
        { 'w', 256, &o->workers },           { 'f', MAX_IN_FLIGHT, &o->in_flight },
        { 'n', 1000000, &o->rounds },
    };
    uint64_t v;

    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
        if (counts[i].letter == letter) {
            if (!parse_amount(text, counts[i].max, false, &v))
                return false;
            *counts[i].field = (unsigned)v;
            return true;
        }
    return false;
}

static int parse_options(int argc, char **argv, struct sf_options *o)
{
    static const struct option longopts[] = {
        { "mode", required_argument, NULL, 'm' },      { "size", required_argument, NULL, 's' },
        { "clients", required_argument, NULL, 'c' },   { "run-threads", required_argument, NULL, 'r' },
        { "workers", required_argument, NULL, 'w' },   { "chunk", required_argument, NULL, 'k' },
        { "in-flight", required_argument, NULL, 'f' }, { "dir", required_argument, NULL, 'd' },
        { "rounds", required_argument, NULL, 'n' },    { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *tmp = getenv("TMPDIR");
    bool have_mode = false;
    uint64_t v = 0;
    int c;

    *o = (struct sf_options){ .size = (uint64_t)64 << 20, .clients = 8, .run_threads = 2, .workers = 1,
                              .chunk = (size_t)64 << 10, .in_flight = 4, .rounds = 1,
                              .dir = tmp != NULL && *tmp != '\0' ? tmp : "/tmp" };
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        bool ok = true;

        switch (c) {
        case 'm':
            ok = false;
            for (int m = MODE_SENDFILE; m <= MODE_RAW; m++)
                if (strcmp(optarg, mode_name[m]) == 0) {
                    o->mode = (enum mode)m;
                    ok = have_mode = true;
                }
            break;
        case 's': ok = parse_amount(optarg, (uint64_t)1 << 40, true, &o->size); break;
        case 'k':
            ok = parse_amount(optarg, (uint64_t)64 << 20, true, &v);
            o->chunk = (size_t)v;
            break;
        case 'd': o->dir = optarg; break;
        case 'h': usage(stdout, argv[0]); exit(0);
        default: ok = parse_count(o, c, optarg); break;
        }
        if (!ok) {
            if (c != '?')
                fprintf(stderr, "%s: bad value '%s'\n", argv[0], optarg);
            usage(stderr, argv[0]);
            return -1;
        }
    }
    if (!have_mode || optind != argc) {
        usage(stderr, argv[0]);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* the run                                                             */
/* ------------------------------------------------------------------ */

/* Creates each connection's descriptor (and the pread mode's strand and
 * buffers). */
static void make_descriptors(io_context *ctx, struct connection *conns, const struct sf_options *o)
{
    for (unsigned i = 0; i < o->clients; i++) {
        struct connection *conn = &conns[i];
        int err = 0;

        if (o->mode == MODE_PREAD) {
            err = io_strand_create(ctx, &conn->strand);
            for (unsigned k = 0; err == 0 && k < o->in_flight; k++) {
                conn->chunks[k] = (struct chunk){ conn, malloc(o->chunk) };
                if (conn->chunks[k].data == NULL)
                    err = ENOMEM;
            }
        }
        if (err == 0)
            err = io_descriptor_create(ctx, conn->fd, conn->strand, &conn->d);
        if (err != 0) {
            errno = err;
            die("creating a descriptor");
        }
    }
}

int main(int argc, char **argv)
{
    struct sf_options o;
    struct server s = { 0 };
    struct client *clients;
    struct connection *conns;
    pthread_t runners[MAX_RUN_THREADS];
    io_context *ctx = NULL;
    io_context_stats stats = { 0 };
    unsigned long long calls;
    double start, elapsed, cpu0, cpu;
    uint64_t total = 0;
    int status = 0;

    if (parse_options(argc, argv, &o) != 0)
        return 2;
    s.o = &o;
    s.file_fd = make_file(o.dir, o.size);
    clients = calloc(o.clients, sizeof(*clients));
    conns = calloc(o.clients, sizeof(*conns));
    if (clients == NULL || conns == NULL)
        die("allocating");
    connect_clients(clients, conns, o.clients);
    for (unsigned i = 0; i < o.clients; i++)
        conns[i].s = &s;
    if (o.mode != MODE_RAW) {
        int err = io_context_create(&ctx, &(io_context_options){ .worker_threads = o.workers });

        if (err != 0) {
            errno = err;
            die("io_context_create");
        }
        make_descriptors(ctx, conns, &o);
        /* Held until every connection's operations are started, so that
         * the run threads cannot find the context idle before that. */
        io_context_work_started(ctx);
        for (unsigned t = 0; t < o.run_threads; t++)
            bench_start_thread(&runners[t], run_handlers, ctx);
    }
    for (unsigned i = 0; i < o.clients; i++)
        bench_start_thread(&clients[i].thread, client_read, &clients[i]);

    cpu0 = cpu_seconds();
    start = bench_now();
    for (unsigned i = 0; i < o.clients; i++) {
        int err = 0;

        if (o.mode == MODE_SENDFILE)
            err = start_sendfile(&conns[i]);
        else if (o.mode == MODE_PREAD)
            err = io_strand_post(conns[i].strand, start_chunks, &conns[i]);
        else
            bench_start_thread(&conns[i].thread, raw_send, &conns[i]);
        if (err != 0) {
            /* The client would wait for an EOF that nothing sends. */
            note_error(&s, err);
            io_descriptor_close(conns[i].d);
        }
    }
    for (unsigned i = 0; i < o.clients; i++)
        pthread_join(clients[i].thread, NULL);
    elapsed = bench_now() - start;
    cpu = cpu_seconds() - cpu0;

    if (o.mode == MODE_RAW) {
        for (unsigned i = 0; i < o.clients; i++)
            pthread_join(conns[i].thread, NULL);
        calls = atomic_load(&s.raw_calls);
    } else {
        io_context_work_finished(ctx);
        for (unsigned t = 0; t < o.run_threads; t++)
            pthread_join(runners[t], NULL);
        io_context_get_stats(ctx, &stats);
        calls = (unsigned long long)stats.writev_calls;
        for (unsigned i = 0; i < o.clients; i++)
            io_strand_destroy(conns[i].strand);
        io_context_destroy(ctx);
    }

    for (unsigned i = 0; i < o.clients; i++) {
        total += clients[i].received;
        if (clients[i].error != 0 || clients[i].received != o.size * o.rounds) {
            fprintf(stderr, "bench_sendfile %s: FAILED: client %u received %llu of %llu bytes%s%s\n",
                    mode_name[o.mode], i, (unsigned long long)clients[i].received,
                    (unsigned long long)(o.size * o.rounds), clients[i].error != 0 ? ": " : "",
                    clients[i].error != 0 ? strerror(clients[i].error) : "");
            status = 1;
        }
        close(clients[i].fd);
        for (unsigned k = 0; k < o.in_flight && o.mode == MODE_PREAD; k++)
            free(conns[i].chunks[k].data);
    }
    if (atomic_load(&s.first_error) != 0) {
        fprintf(stderr, "bench_sendfile %s: FAILED: %s\n", mode_name[o.mode],
                strerror(atomic_load(&s.first_error)));
        status = 1;
    }
    close(s.file_fd);
    free(clients);
    free(conns);
    if (status != 0)
        return status;
    printf("%s %.1f %.3f %.2f %llu %u %llu %u\n", mode_name[o.mode], (double)total / elapsed / 1e6,
           elapsed, cpu, calls, o.clients, (unsigned long long)o.size, o.rounds);
    return 0;
}
