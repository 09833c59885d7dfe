/*
 * bench_strand_post.c - post-through-strand throughput of ioctx.
 *
 * P poster threads post N handlers in all, round-robin over S strands,
 * while T threads drain them in io_context_run.  Each handler bumps its
 * strand's counter (no atomics: the strand is the lock).  Prints one line,
 * "ioctx <handlers per second>", and fails if a handler was lost.
 * bench_strand_post_asio.cpp runs the very same workload on Asio.
 */
#include "bench_common.h"
#include "ioctx.h"

struct strand_slot {
    io_strand *strand;
    unsigned long count;        /* only the strand's handlers touch it */
    char pad[48];               /* one slot a cache line */
};

struct shared {
    io_context *ctx;
    struct strand_slot *slots;
    struct bench_options o;
};

static void bump(void *arg)
{
    ((struct strand_slot *)arg)->count++;
}

struct poster {
    pthread_t thread;
    struct shared *sh;
    unsigned id;
    int error;
};

static void *post_share(void *arg)
{
    struct poster *p = arg;
    unsigned long n = p->sh->o.handlers / p->sh->o.posters;
    unsigned strands = p->sh->o.strands;

    for (unsigned long i = 0; i < n && p->error == 0; i++) {
        struct strand_slot *slot = &p->sh->slots[(i + p->id) % strands];

        p->error = io_strand_post(slot->strand, bump, slot);
    }
    return NULL;
}

static void *run(void *ctx)
{
    io_context_run(ctx);
    return NULL;
}

int main(int argc, char **argv)
{
    struct shared sh;
    struct poster *posters;
    pthread_t *runners;
    unsigned long total = 0;
    double start, elapsed;
    int status = 0;

    if (bench_parse(argc, argv, &sh.o) != 0)
        return 2;
    sh.slots = calloc(sh.o.strands, sizeof(*sh.slots));
    posters = calloc(sh.o.posters, sizeof(*posters));
    runners = calloc(sh.o.threads, sizeof(*runners));
    if (sh.slots == NULL || posters == NULL || runners == NULL || io_context_create(&sh.ctx, NULL) != 0)
        return 1;
    for (unsigned s = 0; s < sh.o.strands; s++)
        if (io_strand_create(sh.ctx, &sh.slots[s].strand) != 0)
            return 1;

    start = bench_now();
    io_context_work_started(sh.ctx);
    for (unsigned t = 0; t < sh.o.threads; t++)
        bench_start_thread(&runners[t], run, sh.ctx);
    for (unsigned p = 0; p < sh.o.posters; p++) {
        posters[p] = (struct poster){ .sh = &sh, .id = p };
        bench_start_thread(&posters[p].thread, post_share, &posters[p]);
    }
    for (unsigned p = 0; p < sh.o.posters; p++) {
        pthread_join(posters[p].thread, NULL);
        status |= posters[p].error;
    }
    io_context_work_finished(sh.ctx);
    for (unsigned t = 0; t < sh.o.threads; t++)
        pthread_join(runners[t], NULL);
    elapsed = bench_now() - start;

    for (unsigned s = 0; s < sh.o.strands; s++)
        total += sh.slots[s].count;
    io_context_destroy(sh.ctx);
    free(sh.slots);
    free(posters);
    free(runners);
    if (status != 0 || total != sh.o.handlers) {
        fprintf(stderr, "lost handlers: posted %lu, ran %lu\n", sh.o.handlers, total);
        return 1;
    }
    printf("ioctx %.0f\n", (double)total / elapsed);
    return 0;
}
