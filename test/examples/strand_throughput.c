/*
 * strand_throughput.c - several run threads drain a million handlers that
 * poster threads spread over many strands; every handler checks that its
 * strand runs in post order and never on two threads at once.
 *
 *   strand_throughput [--handlers N] [--strands S] [--threads T] [--posters P]
 *
 * Prints handlers per second and "order: OK", or what went wrong (exit 1).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ioctx.h"

struct options {
    unsigned long handlers;
    unsigned strands;
    unsigned threads;
    unsigned posters;
};

struct strand_state {
    io_strand *strand;
    atomic_int in_flight;
    unsigned long *last_seq;        /* per poster; only the strand's handlers touch it */
};

struct post {
    struct strand_state *state;
    unsigned poster;
    unsigned long seq;
};

static atomic_ulong violations;

static void check_order(void *arg)
{
    struct post *p = arg;
    struct strand_state *st = p->state;

    if (atomic_fetch_add(&st->in_flight, 1) != 0)
        atomic_fetch_add(&violations, 1);
    if (!io_strand_running_in_this_thread(st->strand))
        atomic_fetch_add(&violations, 1);
    if (p->seq != st->last_seq[p->poster] + 1)
        atomic_fetch_add(&violations, 1);
    st->last_seq[p->poster] = p->seq;
    atomic_fetch_sub(&st->in_flight, 1);
}

struct poster {
    pthread_t thread;
    struct post *posts;
    unsigned long count;
    int error;
};

static void *post_all(void *arg)
{
    struct poster *p = arg;

    for (unsigned long i = 0; i < p->count && p->error == 0; i++)
        p->error = io_strand_post(p->posts[i].state->strand, check_order, &p->posts[i]);
    return NULL;
}

struct runner {
    pthread_t thread;
    io_context *ctx;
    size_t ran;
};

static void *run(void *arg)
{
    struct runner *r = arg;

    r->ran = io_context_run(r->ctx);
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

static double now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(FILE *out, const char *prog)
{
    fprintf(out,
            "usage: %s [options]\n"
            "  --handlers N   handlers to post in all (default 1000000)\n"
            "  --strands S    strands to spread them over (default 64)\n"
            "  --threads T    threads in io_context_run (default 4)\n"
            "  --posters P    threads posting (default 2)\n"
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
        { "handlers", required_argument, NULL, 'n' },
        { "strands", required_argument, NULL, 's' },
        { "threads", required_argument, NULL, 't' },
        { "posters", required_argument, NULL, 'p' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    unsigned long v;
    int c;

    *o = (struct options){ 1000000, 64, 4, 2 };
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout, argv[0]);
            exit(0);
        }
        if (c == '?' || parse_count(optarg, c == 'n' ? 100000000ul : 1024ul, &v) != 0) {
            if (c != '?')
                fprintf(stderr, "%s: bad value '%s' for --%s\n", argv[0], optarg,
                        c == 'n' ? "handlers" : c == 's' ? "strands" : c == 't' ? "threads" : "posters");
            usage(stderr, argv[0]);
            return -1;
        }
        if (c == 'n')
            o->handlers = v;
        else if (c == 's')
            o->strands = (unsigned)v;
        else if (c == 't')
            o->threads = (unsigned)v;
        else
            o->posters = (unsigned)v;
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
    struct strand_state *states;
    struct poster *posters;
    struct runner *runners;
    io_context *ctx;
    unsigned long ran = 0, per_poster;
    double start, elapsed;
    int err, status = 0;

    if (parse_options(argc, argv, &o) != 0)
        return 2;
    per_poster = o.handlers / o.posters;
    o.handlers = per_poster * o.posters;
    if (o.handlers == 0) {
        fprintf(stderr, "%s: --handlers must be at least --posters\n", argv[0]);
        return 2;
    }
    err = io_context_create(&ctx, NULL);
    if (err != 0) {
        fprintf(stderr, "io_context_create: %s\n", strerror(err));
        return 1;
    }
    states = calloc(o.strands, sizeof(*states));
    posters = calloc(o.posters, sizeof(*posters));
    runners = calloc(o.threads, sizeof(*runners));
    if (states == NULL || posters == NULL || runners == NULL)
        goto out_of_memory;
    for (unsigned s = 0; s < o.strands; s++) {
        states[s].last_seq = calloc(o.posters, sizeof(unsigned long));
        if (states[s].last_seq == NULL || io_strand_create(ctx, &states[s].strand) != 0)
            goto out_of_memory;
    }
    /* Each poster spreads its handlers round-robin over the strands; the
     * sequence numbers count per (strand, poster). */
    for (unsigned p = 0; p < o.posters; p++) {
        posters[p].count = per_poster;
        posters[p].posts = calloc(per_poster, sizeof(struct post));
        if (posters[p].posts == NULL)
            goto out_of_memory;
        for (unsigned long i = 0; i < per_poster; i++) {
            unsigned s = (unsigned)((i + p) % o.strands);

            posters[p].posts[i] = (struct post){ &states[s], p, i / o.strands + 1 };
        }
    }

    printf("posting %lu handlers from %u threads over %u strands; %u threads in io_context_run\n",
           o.handlers, o.posters, o.strands, o.threads);
    start = now_seconds();
    io_context_work_started(ctx);   /* the runners wait for the posters */
    for (unsigned t = 0; t < o.threads; t++) {
        runners[t].ctx = ctx;
        start_thread(&runners[t].thread, run, &runners[t]);
    }
    for (unsigned p = 0; p < o.posters; p++)
        start_thread(&posters[p].thread, post_all, &posters[p]);
    for (unsigned p = 0; p < o.posters; p++) {
        pthread_join(posters[p].thread, NULL);
        if (posters[p].error != 0) {
            fprintf(stderr, "io_strand_post: %s\n", strerror(posters[p].error));
            status = 1;
        }
    }
    io_context_work_finished(ctx);
    for (unsigned t = 0; t < o.threads; t++) {
        pthread_join(runners[t].thread, NULL);
        ran += runners[t].ran;
    }
    elapsed = now_seconds() - start;

    printf("handlers run: %lu in %.3f s: %.0f handlers/s\n", ran, elapsed, (double)ran / elapsed);
    if (ran != o.handlers) {
        printf("count: FAILED (%lu posted, %lu run)\n", o.handlers, ran);
        status = 1;
    }
    if (atomic_load(&violations) != 0) {
        printf("order: FAILED (%lu violations)\n", atomic_load(&violations));
        status = 1;
    } else {
        printf("order: OK (FIFO per strand, never two handlers of a strand at once)\n");
    }
    goto out;

out_of_memory:
    fprintf(stderr, "%s: out of memory\n", argv[0]);
    status = 1;
out:
    io_context_destroy(ctx);    /* also frees the strands */
    for (unsigned s = 0; states != NULL && s < o.strands; s++)
        free(states[s].last_seq);
    for (unsigned p = 0; posters != NULL && p < o.posters; p++)
        free(posters[p].posts);
    free(states);
    free(posters);
    free(runners);
    return status;
}
