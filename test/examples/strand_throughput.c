/*
 * strand_throughput.c - several run threads drain the handlers that
 * poster threads spread over many strands; every handler checks that its
 * strand runs in post order and never on two threads at once.  The
 * workload of bench_strand_post, with those checks, and so its command
 * line (bench_common.h):
 *
 *   strand_throughput [--handlers N] [--strands S] [--threads T] [--posters P]
 *
 * Prints handlers per second and "order: OK", or what went wrong (exit 1).
 */
#define _GNU_SOURCE
#include <stdatomic.h>

#include "bench_common.h"
#include "ioctx.h"

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

int main(int argc, char **argv)
{
    struct bench_options o;
    struct strand_state *states;
    struct poster *posters;
    struct runner *runners;
    io_context *ctx;
    unsigned long ran = 0, per_poster;
    double start, elapsed;
    int err, status = 0;

    if (bench_parse(argc, argv, &o) != 0)
        return 2;
    per_poster = o.handlers / o.posters;
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
    start = bench_now();
    io_context_work_started(ctx);   /* the runners wait for the posters */
    for (unsigned t = 0; t < o.threads; t++) {
        runners[t].ctx = ctx;
        bench_start_thread(&runners[t].thread, run, &runners[t]);
    }
    for (unsigned p = 0; p < o.posters; p++)
        bench_start_thread(&posters[p].thread, post_all, &posters[p]);
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
    elapsed = bench_now() - start;

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
