/*
 * fileserve.c - a static file server: HTTP/1.0 GET on 127.0.0.1, the
 * files of one directory.
 *
 * What it shows: a whole response as three operations started back to
 * back on one descriptor, with no handler chaining them:
 *
 *     io_descriptor_async_write(d, header)           the status line and headers
 *     io_descriptor_async_sendfile(d, file, 0, size) the body, file to socket
 *     io_descriptor_async_shutdown(d)                FIN after the last byte
 *
 * The descriptor performs its operations in the order they were started,
 * so the header goes first, the file's bytes follow it (gathered into the
 * same packets: the header is sent with MSG_MORE when the sendfile is
 * already queued behind it), and the shutdown waits for both, whatever
 * their results.  The sendfile's handler closes the file; the shutdown's
 * handler, the last of the three, destroys the descriptor, which closes
 * the socket.  The body never passes through this program's memory.
 *
 * One acceptor thread (main) accepts a connection and reads the request
 * with plain blocking reads: a request is small, and ioctx does writes
 * only.  Then everything else is the library's: the run threads run the
 * handlers, the workers make the system calls.  A slow client therefore
 * holds up the acceptor only while it sends its request (at most
 * REQUEST_TIMEOUT_S), never while it receives its file.
 *
 * The path is taken inside the document root: a target that is not
 * absolute or has a ".." segment (after %XX decoding) is refused with
 * 400, a file that is missing or not a regular file gets 404, a method
 * other than GET 405.  Symbolic links inside the root are followed, as
 * most static servers do by default.
 *
 *   fileserve --root DIR [--requests N] [--run-threads R] [--workers W]
 *
 * Prints "fileserve on 127.0.0.1:PORT ..." once it listens (the port is
 * chosen by the kernel), serves until N connections have been answered
 * (or, without --requests, until SIGINT or SIGTERM), then prints
 * "served N requests, B bytes" with the count of each status, and exits
 * 0.  Bad usage exits 2; a failure to start, 1.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "ioctx.h"

/* The request line and headers must fit here; longer ones get 400. */
#define REQUEST_MAX       8192
/* A client that has not sent its whole request by then is dropped, so
 * that one idle connection cannot stop the acceptor for long. */
#define REQUEST_TIMEOUT_S 5
#define MAX_RUN_THREADS   64
#define MAX_WORKERS       64

struct options {
    const char *root;
    unsigned long requests;           /* 0: until SIGINT or SIGTERM */
    unsigned run_threads;
    unsigned workers;
};

/* The statuses this server answers with, in the summary's order. */
enum status { ST_OK, ST_BAD_REQUEST, ST_NOT_FOUND, ST_BAD_METHOD, ST_COUNT };

static const struct {
    int code;
    const char *reason;
    const char *body;                 /* NULL: the body is the file */
} status_line[ST_COUNT] = {
    [ST_OK] = { 200, "OK", NULL },
    [ST_BAD_REQUEST] = { 400, "Bad Request", "400 bad request\n" },
    [ST_NOT_FOUND] = { 404, "Not Found", "404 not found\n" },
    [ST_BAD_METHOD] = { 405, "Method Not Allowed", "405 only GET is served\n" },
};

/* What the run threads add up while the acceptor goes on: handlers of
 * different connections run at once, on different strands. */
struct totals {
    atomic_ulong answered[ST_COUNT];
    atomic_ulong unanswered;          /* sent no request, or the response could not start */
    atomic_ulong failed;              /* writes, sendfiles and shutdowns that ended with an error */
    atomic_ullong bytes;              /* header and body bytes the kernel took */
    atomic_int first_error;
};

/* One connection, from the first handler's start to the shutdown's. */
struct connection {
    struct totals *totals;
    io_descriptor *d;
    int file_fd;                      /* -1: no file body; closed by the sendfile's handler */
    enum status status;
    char header[256];
};

static void count_error(struct totals *t, int error)
{
    int none = 0;

    atomic_fetch_add(&t->failed, 1);
    atomic_compare_exchange_strong(&t->first_error, &none, error);
}

/* The header write's handler (for an error response, header and body). */
static void on_header_written(void *arg, int error, size_t bytes)
{
    struct connection *c = arg;

    atomic_fetch_add(&c->totals->bytes, bytes);
    if (error != 0)
        count_error(c->totals, error);
}

/* The body's handler.  The file may be closed now: the kernel is done
 * reading it for this operation. */
static void on_body_sent(void *arg, int error, size_t bytes)
{
    struct connection *c = arg;

    atomic_fetch_add(&c->totals->bytes, bytes);
    if (error != 0)
        count_error(c->totals, error);
    close(c->file_fd);
    c->file_fd = -1;
}

/* The last handler of a connection: its operations before it have all
 * ended, so the descriptor and the connection may go. */
static void on_shut_down(void *arg, int error)
{
    struct connection *c = arg;

    if (error != 0)
        count_error(c->totals, error);
    atomic_fetch_add(&c->totals->answered[c->status], 1);
    io_descriptor_destroy(c->d);      /* closes the socket: the FIN already went */
    free(c);
}

/* The value of a hex digit, or -1. */
static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes %XX escapes of target in place, so that "%2e%2e" is seen as
 * the ".." it means; false for a bad escape or an encoded NUL, which no
 * file name can hold. */
static bool percent_decode(char *target)
{
    char *out = target;

    for (const char *in = target; *in != '\0'; in++) {
        int high, low;

        if (*in != '%') {
            *out++ = *in;
            continue;
        }
        high = hex_value(in[1]);
        low = high < 0 ? -1 : hex_value(in[2]);
        if (low < 0 || high * 16 + low == 0)
            return false;
        *out++ = (char)(high * 16 + low);
        in += 2;
    }
    *out = '\0';
    return true;
}

/* Whether a decoded path stays inside the root: it is absolute and no
 * segment is "..".  Only then may it be opened relative to the root. */
static bool stays_inside_root(const char *path)
{
    if (path[0] != '/')
        return false;
    for (const char *seg = path; seg != NULL; seg = strchr(seg + 1, '/')) {
        const char *s = seg + 1;
        size_t len = strcspn(s, "/");

        if (len == 2 && s[0] == '.' && s[1] == '.')
            return false;
    }
    return true;
}

/* Opens the file a GET names, relative to root_fd.  Returns the status
 * to answer with; for ST_OK, *fd and *size are the file's. */
static enum status open_target(int root_fd, char *target, int *fd, uint64_t *size)
{
    const char *relative;
    struct stat st;

    target[strcspn(target, "?#")] = '\0';       /* a query names no other file */
    if (!percent_decode(target) || !stays_inside_root(target))
        return ST_BAD_REQUEST;
    relative = target + strspn(target, "/");
    if (*relative == '\0')
        return ST_NOT_FOUND;                    /* no directory listing or index */
    *fd = openat(root_fd, relative, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (*fd < 0)
        return ST_NOT_FOUND;
    if (fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(*fd);
        *fd = -1;
        return ST_NOT_FOUND;
    }
    *size = (uint64_t)st.st_size;
    return ST_OK;
}

/* Reads from sock until the blank line that ends the headers.  Returns
 * the bytes read (the request is NUL-terminated in buf), 0 if the client
 * sent nothing before it closed or timed out, or -1 if it sent something
 * that is no request: too long, cut off, or holding a NUL. */
static ssize_t read_request(int sock, char *buf, size_t size)
{
    size_t len = 0;

    while (len < size - 1) {
        ssize_t n = recv(sock, buf + len, size - 1 - len, 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return len == 0 ? 0 : -1;
        if (memchr(buf + len, '\0', (size_t)n) != NULL)
            return -1;
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL || strstr(buf, "\n\n") != NULL)
            return (ssize_t)len;
    }
    return -1;
}

/* Parses "METHOD TARGET HTTP/x.y" and opens the target.  Returns the
 * status to answer with; the request line is cut into pieces. */
static enum status handle_request(int root_fd, char *request, int *fd, uint64_t *size)
{
    char *line_end = request + strcspn(request, "\r\n");
    char *method, *target, *version, *rest;

    *line_end = '\0';
    method = strtok_r(request, " ", &rest);
    target = strtok_r(NULL, " ", &rest);
    version = strtok_r(NULL, " ", &rest);
    if (method == NULL || target == NULL || version == NULL || strtok_r(NULL, " ", &rest) != NULL
        || strncmp(version, "HTTP/1.", 7) != 0)
        return ST_BAD_REQUEST;
    if (strcmp(method, "GET") != 0)
        return ST_BAD_METHOD;
    return open_target(root_fd, target, fd, size);
}

/* Starts the response on the accepted socket: header (and an error's
 * body), the file, the shutdown.  Takes sock in every case. */
static void respond(io_context *ctx, struct totals *totals, int sock, enum status status, int file_fd,
                    uint64_t size)
{
    struct connection *c = calloc(1, sizeof(*c));
    const char *body = status_line[status].body;
    size_t body_len = body != NULL ? strlen(body) : 0;
    struct iovec iov[2];
    int err, header_len;

    if (c == NULL || io_descriptor_create(ctx, sock, NULL, &c->d) != 0) {
        free(c);
        close(sock);
        if (file_fd >= 0)
            close(file_fd);
        atomic_fetch_add(&totals->unanswered, 1);
        return;
    }
    *c = (struct connection){ .totals = totals, .d = c->d, .file_fd = file_fd, .status = status };
    header_len = snprintf(c->header, sizeof(c->header),
                          "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %" PRIu64
                          "\r\nConnection: close\r\n\r\n",
                          status_line[status].code, status_line[status].reason,
                          body != NULL ? "text/plain" : "application/octet-stream",
                          body != NULL ? (uint64_t)body_len : size);
    iov[0] = io_buffer(c->header, (size_t)header_len);
    iov[1] = io_buffer(body, body_len);         /* static text, never freed */

    /* Three operations, started at once: the descriptor runs them in
     * this order, each after the one before has ended. */
    err = io_descriptor_async_write(c->d, iov, body != NULL ? 2 : 1, on_header_written, c, NULL);
    if (err == 0 && file_fd >= 0) {
        err = io_descriptor_async_sendfile(c->d, file_fd, 0, (size_t)size, on_body_sent, c, NULL);
        if (err != 0) {
            close(file_fd);                     /* refused: its handler never runs */
            c->file_fd = -1;
        }
    }
    /* Even after a refusal: the shutdown's handler is the one that frees
     * c, and it runs after every handler of the operations started. */
    if (err != 0)
        count_error(totals, err);
    err = io_descriptor_async_shutdown(c->d, on_shut_down, c);
    if (err != 0) {
        /* Out of memory: no handler will free c.  Destroy cancels what
         * was started; its handlers still run and still use c, so c is
         * leaked rather than freed under them. */
        count_error(totals, err);
        atomic_fetch_add(&totals->unanswered, 1);
        io_descriptor_destroy(c->d);
    }
}

/* SIGINT and SIGTERM end the accept loop through this pipe's read end. */
static int stop_pipe[2] = { -1, -1 };

static void on_stop_signal(int sig)
{
    int saved = errno;
    char byte = (char)sig;

    if (write(stop_pipe[1], &byte, 1) < 0) {
        /* Full: a stop is already pending. */
    }
    errno = saved;
}

/* Waits for a connection or a stop.  Returns the accepted socket, or -1
 * once a stop signal came. */
static int accept_or_stop(int listener)
{
    for (;;) {
        struct pollfd p[2] = { { listener, POLLIN, 0 }, { stop_pipe[0], POLLIN, 0 } };
        int sock;

        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            perror("poll");
            return -1;
        }
        if (p[1].revents != 0)
            return -1;
        sock = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (sock >= 0)
            return sock;
        if (errno != EINTR && errno != ECONNABORTED && errno != EAGAIN) {
            perror("accept4");
            return -1;
        }
    }
}

/* Accepts and answers connections until o->requests of them have been
 * taken (or a stop signal).  Returns how many were taken. */
static unsigned long serve(const struct options *o, io_context *ctx, struct totals *totals, int listener,
                           int root_fd)
{
    static const struct timeval request_timeout = { REQUEST_TIMEOUT_S, 0 };
    char request[REQUEST_MAX];
    unsigned long taken = 0;

    while (o->requests == 0 || taken < o->requests) {
        int sock = accept_or_stop(listener);
        enum status status = ST_BAD_REQUEST;
        uint64_t size = 0;
        int file_fd = -1;
        ssize_t len;

        if (sock < 0)
            break;
        taken++;
        setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &request_timeout, sizeof(request_timeout));
        len = read_request(sock, request, sizeof(request));
        if (len == 0) {
            close(sock);
            atomic_fetch_add(&totals->unanswered, 1);
            continue;
        }
        if (len > 0)
            status = handle_request(root_fd, request, &file_fd, &size);
        respond(ctx, totals, sock, status, file_fd, size);
    }
    return taken;
}

static void *run_handlers(void *ctx)
{
    io_context_run(ctx);
    return NULL;
}

static void usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s --root DIR [options]\n"
            "  --root DIR        serve the regular files under DIR\n"
            "  --requests N      answer N connections, then exit (default: until\n"
            "                    SIGINT or SIGTERM)\n"
            "  --run-threads R   threads in io_context_run (default 2, max %d)\n"
            "  --workers W       library worker threads (default 1, max %d)\n"
            "  --help            this text\n",
            prog, MAX_RUN_THREADS, MAX_WORKERS);
}

/* A positive decimal number up to max into *out; false if it is not one. */
static bool parse_positive(const char *text, unsigned long max, unsigned long *out)
{
    char *end;

    if (*text < '0' || *text > '9')
        return false;
    errno = 0;
    *out = strtoul(text, &end, 10);
    return errno == 0 && *end == '\0' && *out > 0 && *out <= max;
}

static int parse_options(int argc, char **argv, struct options *o)
{
    /* Long options only; the letters are getopt's return values. */
    static const struct option longopts[] = {
        { "root", required_argument, NULL, 'd' },        { "requests", required_argument, NULL, 'n' },
        { "run-threads", required_argument, NULL, 'r' }, { "workers", required_argument, NULL, 'w' },
        { "help", no_argument, NULL, 'h' },              { NULL, 0, NULL, 0 },
    };
    unsigned long v = 0;
    int c;

    *o = (struct options){ .run_threads = 2, .workers = 1 };
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        bool ok = true;

        switch (c) {
        case 'd': o->root = optarg; break;
        case 'n': ok = parse_positive(optarg, ULONG_MAX, &o->requests); break;
        case 'r':
            ok = parse_positive(optarg, MAX_RUN_THREADS, &v);
            o->run_threads = (unsigned)v;
            break;
        case 'w':
            ok = parse_positive(optarg, MAX_WORKERS, &v);
            o->workers = (unsigned)v;
            break;
        case 'h': usage(stdout, argv[0]); exit(0);
        default: ok = false; break;
        }
        if (!ok) {
            if (c != '?')
                fprintf(stderr, "%s: bad value '%s'\n", argv[0], optarg);
            usage(stderr, argv[0]);
            return -1;
        }
    }
    if (o->root == NULL || optind != argc) {
        fprintf(stderr, "%s: %s\n", argv[0], o->root == NULL ? "--root is required" : "stray argument");
        usage(stderr, argv[0]);
        return -1;
    }
    return 0;
}

/* A listening TCP socket on 127.0.0.1 at a port the kernel picks;
 * *port is that port.  -1 with the reason printed. */
static int listen_on_loopback(unsigned *port)
{
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 128) != 0
        || getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        perror("listening socket");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(addr.sin_port);
    return fd;
}

int main(int argc, char **argv)
{
    struct sigaction stop = { .sa_handler = on_stop_signal };
    pthread_t runners[MAX_RUN_THREADS];
    struct totals totals = { 0 };
    struct options o;
    io_context *ctx;
    unsigned long answered = 0, taken;
    unsigned port;
    int root_fd, listener, err;

    if (parse_options(argc, argv, &o) != 0)
        return 2;
    root_fd = open(o.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0) {
        fprintf(stderr, "%s: %s: %s\n", argv[0], o.root, strerror(errno));
        return 1;
    }
    if (pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0 || (listener = listen_on_loopback(&port)) < 0)
        return 1;
    sigemptyset(&stop.sa_mask);
    sigaction(SIGINT, &stop, NULL);
    sigaction(SIGTERM, &stop, NULL);
    /* SIGPIPE keeps its default action, which would kill the process: a
     * client that hangs up mid-file shows that ioctx never raises it. */

    err = io_context_create(&ctx, &(io_context_options){ .worker_threads = o.workers });
    if (err != 0) {
        fprintf(stderr, "io_context_create: %s\n", strerror(err));
        return 1;
    }
    /* The run threads must not return between two connections, when no
     * operation is pending: this unit of work holds them until the
     * acceptor is done. */
    io_context_work_started(ctx);
    for (unsigned t = 0; t < o.run_threads; t++) {
        err = pthread_create(&runners[t], NULL, run_handlers, ctx);
        if (err != 0) {
            fprintf(stderr, "pthread_create: %s\n", strerror(err));
            return 1;
        }
    }
    printf("fileserve on 127.0.0.1:%u, root %s, %u run threads, %u workers\n", port, o.root,
           o.run_threads, o.workers);
    fflush(stdout);

    taken = serve(&o, ctx, &totals, listener, root_fd);
    close(listener);

    /* Run returns once every response has ended: every shutdown's
     * handler has run, and with it every descriptor is destroyed. */
    io_context_work_finished(ctx);
    for (unsigned t = 0; t < o.run_threads; t++)
        pthread_join(runners[t], NULL);
    io_context_destroy(ctx);
    close(root_fd);

    for (int s = 0; s < ST_COUNT; s++)
        answered += atomic_load(&totals.answered[s]);
    printf("served %lu requests, %llu bytes (connections %lu: %lu 200, %lu 400, %lu 404, %lu 405, "
           "%lu unanswered)\n",
           answered, (unsigned long long)atomic_load(&totals.bytes), taken,
           atomic_load(&totals.answered[ST_OK]), atomic_load(&totals.answered[ST_BAD_REQUEST]),
           atomic_load(&totals.answered[ST_NOT_FOUND]), atomic_load(&totals.answered[ST_BAD_METHOD]),
           atomic_load(&totals.unanswered));
    /* A client that hangs up early ends its response with an error; that
     * is the client's doing, not a failure of the server. */
    if (atomic_load(&totals.failed) != 0)
        printf("operations that ended with an error: %lu (first: %s)\n", atomic_load(&totals.failed),
               strerror(atomic_load(&totals.first_error)));
    return 0;
}
