/*
 * log_to_pipe.c - several producer threads write log lines through ONE
 * io_descriptor (io_descriptor_async_write) into a pipe read by a child
 * `wc -c`; run threads execute the write handlers, which free each line.
 * At the end the bytes the handlers reported must equal the bytes wc
 * counted: async_write writes every byte of every line, or fails.
 *
 *   log_to_pipe [--producers P] [--lines L] [--threads R]
 *
 * Prints lines/s, the context's stats and "bytes: OK", or "bytes: MISMATCH"
 * and what went wrong (exit 1).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ioctx.h"

struct options {
    unsigned producers;
    unsigned long lines;
    unsigned threads;
};

/* One log line: the buffer stays valid until its write handler frees it. */
struct log_line {
    size_t len;
    char text[];
};

/* Written only by the write handlers (on the descriptor's strand), read by
 * main after the run threads have returned. */
static atomic_ulong lines_written;
static atomic_ulong lines_failed;
static atomic_ullong bytes_reported;
static atomic_int first_error;

static void on_written(void *arg, int error, size_t bytes)
{
    struct log_line *line = arg;
    int none = 0;

    if (error != 0 || bytes != line->len) {
        atomic_fetch_add(&lines_failed, 1);
        if (error != 0)
            atomic_compare_exchange_strong(&first_error, &none, error);
    } else {
        atomic_fetch_add(&lines_written, 1);
    }
    atomic_fetch_add(&bytes_reported, (unsigned long long)bytes);
    free(line);
}

/* Formats "producer 3 line 1234: ...\n" into a malloc'd buffer; the filler
 * length varies with the line so that writes are not all the same size. */
static struct log_line *format_line(unsigned producer, unsigned long seq)
{
    static const char filler[] =
        "the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs";
    int pad = (int)((seq * 7 + producer * 13) % (sizeof(filler) - 1));
    struct log_line *line;
    int n;

    n = snprintf(NULL, 0, "producer %u line %lu: %.*s\n", producer, seq, pad, filler);
    if (n < 0)
        return NULL;
    line = malloc(sizeof(*line) + (size_t)n + 1);
    if (line == NULL)
        return NULL;
    snprintf(line->text, (size_t)n + 1, "producer %u line %lu: %.*s\n", producer, seq, pad, filler);
    line->len = (size_t)n;
    return line;
}

struct producer {
    pthread_t thread;
    io_descriptor *d;
    unsigned id;
    unsigned long lines;
    unsigned long queued_lines;
    unsigned long long queued_bytes;
    int error;
};

/* Every producer writes to the same descriptor at once: concurrent
 * async_write calls never interleave their bytes, so each line arrives
 * whole. */
static void *produce(void *arg)
{
    struct producer *p = arg;

    for (unsigned long i = 0; i < p->lines; i++) {
        struct log_line *line = format_line(p->id, i);
        struct iovec iov;
        size_t len;
        int err;

        if (line == NULL) {
            p->error = ENOMEM;
            break;
        }
        /* Read len now: once async_write returns 0 the handler may free
         * the line on another thread. */
        len = line->len;
        iov = io_buffer(line->text, len);
        err = io_descriptor_async_write(p->d, &iov, 1, on_written, line, NULL);
        if (err != 0) {
            free(line);     /* a failed initiation never runs its handler */
            p->error = err;
            break;
        }
        p->queued_lines++;
        p->queued_bytes += len;
    }
    return NULL;
}

struct runner {
    pthread_t thread;
    io_context *ctx;
};

static void *run(void *arg)
{
    struct runner *r = arg;

    io_context_run(r->ctx);
    return NULL;
}

static void start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
    int err = pthread_create(t, NULL, fn, arg);

    if (err != 0) {
        fprintf(stderr, "pthread_create: %s\n", strerror(err));
        exit(1);
    }
}

static void join_thread(pthread_t t)
{
    int err = pthread_join(t, NULL);

    if (err != 0) {
        fprintf(stderr, "pthread_join: %s\n", strerror(err));
        exit(1);
    }
}

static double now_seconds(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        perror("clock_gettime");
        exit(1);
    }
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool close_fd(int fd, const char *what)
{
    if (close(fd) != 0) {
        fprintf(stderr, "close(%s): %s\n", what, strerror(errno));
        return false;
    }
    return true;
}

/* The child `wc -c`: log_fd is the write end of its stdin, count_fd the
 * read end of its stdout. */
struct counter {
    pid_t pid;
    int log_fd;
    int count_fd;
};

/* wc -c prints one number, maybe padded with blanks. */
static int parse_wc_output(const char *text, unsigned long long *out)
{
    char *end;

    while (isspace((unsigned char)*text))
        text++;
    if (!isdigit((unsigned char)*text))
        return -1;
    errno = 0;
    *out = strtoull(text, &end, 10);
    if (errno != 0)
        return -1;
    while (isspace((unsigned char)*end))
        end++;
    return *end == '\0' ? 0 : -1;
}

/*
 * Reads wc's output until it closes its stdout, reaps it and parses the
 * count into *count (unless count is NULL).  wc prints only once it sees
 * EOF on its stdin, so close log_fd first.  Returns 0, or -1 after
 * reporting.
 */
static int counter_finish(struct counter *c, unsigned long long *count)
{
    char out[64];
    size_t used = 0;
    int wstatus, result = 0;

    while (used < sizeof(out) - 1) {
        ssize_t n = read(c->count_fd, out + used, sizeof(out) - 1 - used);

        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("read(wc output)");
            result = -1;
            break;
        }
        used += (size_t)n;
    }
    out[used] = '\0';
    if (!close_fd(c->count_fd, "count pipe read end"))
        result = -1;
    while (waitpid(c->pid, &wstatus, 0) < 0) {
        if (errno != EINTR) {
            perror("waitpid");
            return -1;
        }
    }
    if (WIFSIGNALED(wstatus)) {
        fprintf(stderr, "wc -c: killed by signal %d\n", WTERMSIG(wstatus));
        return -1;
    }
    if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
        fprintf(stderr, "wc -c: exited with status %d\n", WEXITSTATUS(wstatus));
        return -1;
    }
    if (result == 0 && count != NULL && parse_wc_output(out, count) != 0) {
        fprintf(stderr, "wc -c: unexpected output '%s'\n", out);
        result = -1;
    }
    return result;
}

/*
 * Starts `wc -c` with its stdin and stdout on two new pipes.  Both pipes
 * are O_CLOEXEC: wc must not inherit the write end of its own stdin, or it
 * would never see EOF.  dup2() clears FD_CLOEXEC on the copy, so exactly
 * stdin and stdout survive the exec.  Returns 0, or -1 after reporting.
 */
static int counter_start(struct counter *c)
{
    int log_pipe[2], count_pipe[2];
    bool ok;

    if (pipe2(log_pipe, O_CLOEXEC) != 0) {
        perror("pipe2");
        return -1;
    }
    if (pipe2(count_pipe, O_CLOEXEC) != 0) {
        perror("pipe2");
        goto out_close_log_pipe;
    }
    c->pid = fork();
    if (c->pid < 0) {
        perror("fork");
        goto out_close_count_pipe;
    }
    if (c->pid == 0) {
        if (dup2(log_pipe[0], STDIN_FILENO) < 0 || dup2(count_pipe[1], STDOUT_FILENO) < 0) {
            perror("dup2");
            _exit(127);
        }
        execlp("wc", "wc", "-c", (char *)NULL);
        perror("execlp(wc)");
        _exit(127);
    }
    /* The parent keeps only the write end of the log pipe and the read end
     * of the count pipe. */
    c->log_fd = log_pipe[1];
    c->count_fd = count_pipe[0];
    ok = close_fd(log_pipe[0], "log pipe read end");
    ok = close_fd(count_pipe[1], "count pipe write end") && ok;
    if (!ok) {
        close_fd(c->log_fd, "log pipe write end");
        counter_finish(c, NULL);    /* reap the child */
        return -1;
    }
    return 0;

out_close_count_pipe:
    close_fd(count_pipe[0], "count pipe read end");
    close_fd(count_pipe[1], "count pipe write end");
out_close_log_pipe:
    close_fd(log_pipe[0], "log pipe read end");
    close_fd(log_pipe[1], "log pipe write end");
    return -1;
}

static void usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s [options]\n"
            "  --producers P  threads writing log lines (default 4)\n"
            "  --lines L      lines each producer writes (default 10000)\n"
            "  --threads R    threads in io_context_run (default 2)\n"
            "  --help         this text\n",
            prog);
}

static int parse_count(const char *text, unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v == 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        { "producers", required_argument, NULL, 'p' },
        { "lines", required_argument, NULL, 'l' },
        { "threads", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    unsigned long v;
    int c;

    *o = (struct options){ 4, 10000, 2 };
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout, argv[0]);
            exit(0);
        }
        if (c == '?' || parse_count(optarg, c == 'l' ? 10000000ul : 1024ul, &v) != 0) {
            if (c != '?')
                fprintf(stderr, "%s: bad value '%s' for --%s\n", argv[0], optarg,
                        c == 'p' ? "producers" : c == 'l' ? "lines" : "threads");
            usage(stderr, argv[0]);
            return -1;
        }
        if (c == 'p')
            o->producers = (unsigned)v;
        else if (c == 'l')
            o->lines = v;
        else
            o->threads = (unsigned)v;
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0], argv[optind]);
        usage(stderr, argv[0]);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct options o;
    struct counter wc;
    struct producer *producers = NULL;
    struct runner *runners = NULL;
    io_context *ctx = NULL;
    io_descriptor *d;
    io_context_stats stats;
    unsigned long long queued_bytes = 0, reported, counted = 0;
    unsigned long queued_lines = 0, total_lines;
    double start, elapsed;
    bool counted_ok;
    int err, status = 0;

    if (parse_options(argc, argv, &o) != 0)
        return 2;
    total_lines = o.lines * o.producers;

    /* Fork before io_context_create() starts any thread: the child is a
     * copy of a single-threaded process and holds none of the library's
     * fds. */
    if (counter_start(&wc) != 0)
        return 1;
    producers = calloc(o.producers, sizeof(*producers));
    runners = calloc(o.threads, sizeof(*runners));
    if (producers == NULL || runners == NULL) {
        fprintf(stderr, "%s: out of memory\n", argv[0]);
        goto out_close_log_fd;
    }
    err = io_context_create(&ctx, NULL);
    if (err != 0) {
        fprintf(stderr, "io_context_create: %s\n", strerror(err));
        goto out_close_log_fd;
    }
    /* NULL strand: the descriptor gets a private strand, so its handlers
     * run one at a time, in the order the writes were started. */
    err = io_descriptor_create(ctx, wc.log_fd, NULL, &d);
    if (err != 0) {
        fprintf(stderr, "io_descriptor_create: %s\n", strerror(err));
        goto out_close_log_fd;
    }
    /* From here on the descriptor owns wc.log_fd. */

    printf("%u producers x %lu lines through one descriptor into `wc -c` (pid %ld); "
           "%u threads in io_context_run\n",
           o.producers, o.lines, (long)wc.pid, o.threads);
    start = now_seconds();
    io_context_work_started(ctx);   /* the run threads wait for the producers */
    for (unsigned t = 0; t < o.threads; t++) {
        runners[t].ctx = ctx;
        start_thread(&runners[t].thread, run, &runners[t]);
    }
    for (unsigned p = 0; p < o.producers; p++) {
        producers[p] = (struct producer){ .d = d, .id = p, .lines = o.lines };
        start_thread(&producers[p].thread, produce, &producers[p]);
    }
    for (unsigned p = 0; p < o.producers; p++) {
        join_thread(producers[p].thread);
        queued_lines += producers[p].queued_lines;
        queued_bytes += producers[p].queued_bytes;
        if (producers[p].error != 0) {
            fprintf(stderr, "producer %u: io_descriptor_async_write: %s\n", p,
                    strerror(producers[p].error));
            status = 1;
        }
    }
    /* Pending writes are work too: run returns once every handler ran. */
    io_context_work_finished(ctx);
    for (unsigned t = 0; t < o.threads; t++)
        join_thread(runners[t].thread);
    elapsed = now_seconds() - start;

    /* Closing the write end is what lets wc see EOF and print its count. */
    err = io_descriptor_close(d);
    if (err != 0) {
        fprintf(stderr, "io_descriptor_close: %s\n", strerror(err));
        status = 1;
    }
    io_context_get_stats(ctx, &stats);
    io_context_destroy(ctx);        /* also destroys d; closes the fd if close failed */
    counted_ok = counter_finish(&wc, &counted) == 0;

    reported = atomic_load(&bytes_reported);
    printf("lines written: %lu of %lu\n", atomic_load(&lines_written), total_lines);
    printf("bytes: %llu queued, %llu reported by handlers\n", queued_bytes, reported);
    if (counted_ok)
        printf("wc -c counted: %llu\n", counted);
    else
        printf("wc -c counted: (no count)\n");
    printf("elapsed: %.3f s: %.0f lines/s\n", elapsed, (double)atomic_load(&lines_written) / elapsed);
    printf("stats: writev_calls %" PRIu64 ", would_block %" PRIu64 ", bytes_written %" PRIu64 "\n",
           stats.writev_calls, stats.would_block, stats.bytes_written);
    if (atomic_load(&lines_failed) != 0) {
        printf("writes: FAILED (%lu lines; first error: %s)\n", atomic_load(&lines_failed),
               atomic_load(&first_error) != 0 ? strerror(atomic_load(&first_error)) : "short write");
        status = 1;
    }
    if (counted_ok && queued_lines == total_lines && reported == queued_bytes && counted == reported) {
        printf("bytes: OK (every line written whole, wc saw every byte)\n");
    } else {
        printf("bytes: MISMATCH (%lu of %lu lines queued, %llu bytes queued, "
               "%llu reported, wc %s%llu)\n",
               queued_lines, total_lines, queued_bytes, reported,
               counted_ok ? "" : "failed, ", counted);
        status = 1;
    }
    goto out;

out_close_log_fd:
    status = 1;
    io_context_destroy(ctx);        /* NULL is ignored */
    close_fd(wc.log_fd, "log pipe write end");
    counter_finish(&wc, NULL);      /* reap the child */
out:
    free(producers);
    free(runners);
    return status;
}
