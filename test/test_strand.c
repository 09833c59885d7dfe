/*
 * test_strand.c - io_strand: rule 8 (no concurrency, FIFO, parallel across
 * strands), running_in_this_thread, destroy with handlers queued, and the
 * strand parts of rules 1, 4, 5, 7 and 17.
 */
#include <errno.h>

#include "alloc.h"
#include "ioctx.h"
#include "test_util.h"

static io_context *new_context(void)
{
    io_context *ctx = NULL;

    ck_assert_int_eq(io_context_create(&ctx, NULL), 0);
    return ctx;
}

static io_strand *new_strand(io_context *ctx)
{
    io_strand *s = NULL;

    ck_assert_int_eq(io_strand_create(ctx, &s), 0);
    ck_assert_ptr_nonnull(s);
    return s;
}

static void do_nothing(void *arg)
{
    (void)arg;
}

START_TEST(null_arguments_give_einval)
{
    io_context *ctx = new_context();
    io_strand *s = new_strand(ctx);
    io_strand *untouched = s;

    ck_assert_int_eq(io_strand_create(NULL, &untouched), EINVAL);
    ck_assert_ptr_eq(untouched, s);
    ck_assert_int_eq(io_strand_create(ctx, NULL), EINVAL);
    ck_assert_int_eq(io_strand_post(NULL, do_nothing, NULL), EINVAL);
    ck_assert_int_eq(io_strand_post(s, NULL, NULL), EINVAL);
    ck_assert(!io_strand_running_in_this_thread(NULL));
    io_strand_destroy(NULL);
    /* The refused posts left no work behind. */
    ck_assert_uint_eq(io_context_run(ctx), 0);
    io_strand_destroy(s);
    io_context_destroy(ctx);
}
END_TEST

/* The order in which handlers of one strand ran. */
struct order_log {
    io_context *ctx;
    pthread_t expected_thread;  /* checked when check_thread is set */
    bool check_thread;
    io_strand *strand;
    io_strand *other_strand;
    int seen[16];
    atomic_int count;
    atomic_int wrong_strand_state;
    atomic_int destroy_at;      /* the value whose handler destroys the strand */
};

struct order_entry {
    struct order_log *log;
    int value;
};

static void init_log(struct order_log *log, io_context *ctx)
{
    *log = (struct order_log){ .ctx = ctx };
    log->strand = new_strand(ctx);
    atomic_init(&log->count, 0);
    atomic_init(&log->wrong_strand_state, 0);
    atomic_init(&log->destroy_at, -1);
}

static void log_value(void *arg)
{
    struct order_entry *e = arg;
    struct order_log *log = e->log;
    int i = atomic_fetch_add(&log->count, 1);

    if (!io_strand_running_in_this_thread(log->strand))
        atomic_fetch_add(&log->wrong_strand_state, 1);
    if (log->other_strand != NULL && io_strand_running_in_this_thread(log->other_strand))
        atomic_fetch_add(&log->wrong_strand_state, 1);
    if (log->check_thread && !pthread_equal(pthread_self(), log->expected_thread))
        atomic_fetch_add(&log->wrong_strand_state, 1);
    if (i < 16)
        log->seen[i] = e->value;
    if (atomic_load(&log->destroy_at) == e->value)
        io_strand_destroy(log->strand);
}

static void post_entries(struct order_log *log, struct order_entry *entries, int n)
{
    for (int i = 0; i < n; i++) {
        entries[i] = (struct order_entry){ log, i };
        ck_assert_int_eq(io_strand_post(log->strand, log_value, &entries[i]), 0);
    }
}

static void assert_ran_in_order(struct order_log *log, int n)
{
    ck_assert_int_eq(tu_int(&log->count), n);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(log->seen[i], i);
    ck_assert_int_eq(tu_int(&log->wrong_strand_state), 0);
}

START_TEST(post_never_runs_inline_and_keeps_fifo)
{
    struct order_log log;
    struct order_entry entries[5];

    init_log(&log, new_context());
    log.other_strand = new_strand(log.ctx);
    post_entries(&log, entries, 5);
    ck_assert_int_eq(tu_int(&log.count), 0);
    ck_assert(!io_strand_running_in_this_thread(log.strand));
    ck_assert_uint_eq(io_context_run(log.ctx), 5);
    assert_ran_in_order(&log, 5);
    ck_assert(!io_strand_running_in_this_thread(log.strand));
    io_strand_destroy(log.other_strand);
    io_strand_destroy(log.strand);
    io_context_destroy(log.ctx);
}
END_TEST

START_TEST(run_one_and_poll_one_run_one_strand_handler)
{
    struct order_log log;
    struct order_entry entries[4];

    init_log(&log, new_context());
    post_entries(&log, entries, 4);
    ck_assert_uint_eq(io_context_run_one(log.ctx), 1);
    ck_assert_int_eq(tu_int(&log.count), 1);
    ck_assert_uint_eq(io_context_poll_one(log.ctx), 1);
    ck_assert_int_eq(tu_int(&log.count), 2);
    ck_assert_uint_eq(io_context_poll(log.ctx), 2);
    assert_ran_in_order(&log, 4);
    io_strand_destroy(log.strand);
    io_context_destroy(log.ctx);
}
END_TEST

struct self_post {
    io_strand *strand;
    atomic_int depth;
    atomic_int max_depth;
    atomic_int calls;
};

static void repost_once(void *arg)
{
    struct self_post *sp = arg;
    int depth = atomic_fetch_add(&sp->depth, 1) + 1;

    if (depth > atomic_load(&sp->max_depth))
        atomic_store(&sp->max_depth, depth);
    if (atomic_fetch_add(&sp->calls, 1) == 0)
        ck_assert_int_eq(io_strand_post(sp->strand, repost_once, sp), 0);
    atomic_fetch_sub(&sp->depth, 1);
}

/* A post from inside the strand's own handler is queued, not nested. */
START_TEST(post_from_own_handler_runs_after_it_returns)
{
    io_context *ctx = new_context();
    struct self_post sp = { .strand = new_strand(ctx) };

    atomic_init(&sp.depth, 0);
    atomic_init(&sp.max_depth, 0);
    atomic_init(&sp.calls, 0);
    ck_assert_int_eq(io_strand_post(sp.strand, repost_once, &sp), 0);
    ck_assert_uint_eq(io_context_run(ctx), 2);
    ck_assert_int_eq(tu_int(&sp.calls), 2);
    ck_assert_int_eq(tu_int(&sp.max_depth), 1);
    io_strand_destroy(sp.strand);
    io_context_destroy(ctx);
}
END_TEST

struct nesting {
    io_context *ctx;
    io_strand *outer, *inner;
    atomic_int inner_saw_both;
    atomic_int plain_saw_none;
};

static void inner_handler(void *arg)
{
    struct nesting *n = arg;

    if (io_strand_running_in_this_thread(n->inner) && io_strand_running_in_this_thread(n->outer))
        atomic_fetch_add(&n->inner_saw_both, 1);
}

/* Asio's rule: a strand whose handler is on this thread's call stack is
 * running in this thread, also while a nested run_one runs another. */
static void outer_handler(void *arg)
{
    struct nesting *n = arg;

    ck_assert_int_eq(io_strand_post(n->inner, inner_handler, n), 0);
    ck_assert_uint_eq(io_context_run_one(n->ctx), 1);
    ck_assert(io_strand_running_in_this_thread(n->outer));
    ck_assert(!io_strand_running_in_this_thread(n->inner));
}

static void plain_handler(void *arg)
{
    struct nesting *n = arg;

    if (!io_strand_running_in_this_thread(n->inner) && !io_strand_running_in_this_thread(n->outer))
        atomic_fetch_add(&n->plain_saw_none, 1);
}

START_TEST(running_in_this_thread_follows_the_call_stack)
{
    struct nesting n = { .ctx = new_context() };
    io_context_stats stats;

    n.outer = new_strand(n.ctx);
    n.inner = new_strand(n.ctx);
    atomic_init(&n.inner_saw_both, 0);
    atomic_init(&n.plain_saw_none, 0);
    /* When the outer handler calls run_one, the inner handler is the only
     * one ready: the nested call must run it. */
    ck_assert_int_eq(io_strand_post(n.outer, outer_handler, &n), 0);
    /* The nested run_one counts the inner handler, the outer run the
     * outer one; the context saw both. */
    ck_assert_uint_eq(io_context_run(n.ctx), 1);
    io_context_get_stats(n.ctx, &stats);
    ck_assert_uint_eq(stats.handlers_run, 2);
    ck_assert_int_eq(tu_int(&n.inner_saw_both), 1);

    io_context_restart(n.ctx);
    ck_assert_int_eq(io_context_post(n.ctx, plain_handler, &n), 0);
    ck_assert_uint_eq(io_context_run(n.ctx), 1);
    ck_assert_int_eq(tu_int(&n.plain_saw_none), 1);
    io_strand_destroy(n.outer);
    io_strand_destroy(n.inner);
    io_context_destroy(n.ctx);
}
END_TEST

/* Stops the context, then posts entry[4] to its own strand: it must run
 * after entries 1..3, which were queued before it but not yet run. */
static void stop_and_log(void *arg)
{
    struct order_entry *e = arg;

    io_context_stop(e->log->ctx);
    log_value(e);
    ck_assert_int_eq(io_strand_post(e->log->strand, log_value, e + 4), 0);
}

/* Posts entries 0..3 to the strand, entry 0 stopping the context (and
 * posting entry 4 as it does). */
static void post_stopper_and_three(struct order_log *log, struct order_entry entries[5])
{
    for (int i = 0; i < 5; i++)
        entries[i] = (struct order_entry){ log, i };
    ck_assert_int_eq(io_strand_post(log->strand, stop_and_log, &entries[0]), 0);
    for (int i = 1; i < 4; i++)
        ck_assert_int_eq(io_strand_post(log->strand, log_value, &entries[i]), 0);
}

/* Rule 7 inside a strand: run returns after the stopping handler even
 * though the strand has more, and they run in order after restart. */
START_TEST(stop_inside_a_strand_leaves_the_rest_queued_in_order)
{
    struct order_log log;
    struct order_entry entries[5];

    init_log(&log, new_context());
    post_stopper_and_three(&log, entries);
    ck_assert_uint_eq(io_context_run(log.ctx), 1);
    ck_assert_int_eq(tu_int(&log.count), 1);
    io_context_restart(log.ctx);
    ck_assert_uint_eq(io_context_run(log.ctx), 4);
    assert_ran_in_order(&log, 5);
    io_strand_destroy(log.strand);
    io_context_destroy(log.ctx);
}
END_TEST

/* Rule 4: destroying a strand does not drop what was posted to it. */
START_TEST(destroy_keeps_queued_handlers)
{
    struct order_log log;
    struct order_entry entries[6];

    init_log(&log, new_context());
    post_entries(&log, entries, 6);
    io_strand_destroy(log.strand);
    ck_assert_uint_eq(io_context_run(log.ctx), 6);
    assert_ran_in_order(&log, 6);
    io_context_destroy(log.ctx);
}
END_TEST

START_TEST(destroy_from_its_own_handler)
{
    struct order_log log;
    struct order_entry entries[6];

    init_log(&log, new_context());
    atomic_store(&log.destroy_at, 2);
    post_entries(&log, entries, 6);
    ck_assert_uint_eq(io_context_run(log.ctx), 6);
    assert_ran_in_order(&log, 6);
    io_context_destroy(log.ctx);
}
END_TEST

/* Rule 17: strands left alive go with the context, after their queued
 * handlers ran in order, on their strand, on the destroying thread. */
START_TEST(context_destroy_runs_strand_handlers_then_frees_strands)
{
    struct order_log log;
    struct order_entry entries[8];

    init_log(&log, new_context());
    log.check_thread = true;
    log.expected_thread = pthread_self();
    post_entries(&log, entries, 8);
    (void)new_strand(log.ctx);    /* an idle strand nobody destroys */
    io_context_destroy(log.ctx);
    assert_ran_in_order(&log, 8);
}
END_TEST

/* Destroy ignores stop for strands too, or it would never finish. */
START_TEST(context_destroy_runs_strand_handlers_of_a_stopped_context)
{
    struct order_log log;
    struct order_entry entries[5];

    init_log(&log, new_context());
    post_stopper_and_three(&log, entries);
    ck_assert_uint_eq(io_context_run_one(log.ctx), 1);
    ck_assert(io_context_stopped(log.ctx));
    log.check_thread = true;
    log.expected_thread = pthread_self();
    io_context_destroy(log.ctx);
    assert_ran_in_order(&log, 5);
}
END_TEST

/* A destroyed strand's memory goes once its last handler has run, not at
 * context shutdown: a long-lived context must not grow. */
START_TEST(destroyed_strand_is_freed_after_its_last_handler)
{
    io_context *ctx = new_context();
    size_t baseline = io__alloc_live();
    struct order_log log;
    struct order_entry entries[5];

    init_log(&log, ctx);
    post_entries(&log, entries, 5);
    io_strand_destroy(log.strand);
    ck_assert_uint_gt(io__alloc_live(), baseline);
    ck_assert_uint_eq(io_context_run(ctx), 5);
    assert_ran_in_order(&log, 5);
    ck_assert_uint_eq(io__alloc_live(), baseline);

    /* And an idle one goes at once. */
    (void)new_strand(ctx);
    io_strand_destroy(new_strand(ctx));
    ck_assert_uint_eq(io__alloc_live(), baseline + 1);
    io_context_destroy(ctx);
}
END_TEST

struct held_strand {
    io_strand *strand;
    struct tu_latch first_running;
    struct tu_latch destroyed;
    atomic_int calls;
};

static void first_waits_for_destroy(void *arg)
{
    struct held_strand *h = arg;

    if (atomic_fetch_add(&h->calls, 1) == 0) {
        tu_latch_count_down(&h->first_running);
        tu_latch_wait(&h->destroyed);
    }
}

static void *run_until_done(void *ctx)
{
    io_context_run(ctx);
    return NULL;
}

/* The user destroys the strand on one thread while a run thread is inside
 * its handler: the handlers still queued run, then the strand is freed
 * (ASan checks that nothing touches it afterwards). */
START_TEST(destroy_while_another_thread_runs_its_handler)
{
    io_context *ctx = new_context();
    size_t baseline = io__alloc_live();
    struct held_strand h = { .strand = new_strand(ctx) };
    pthread_t runners[2];

    atomic_init(&h.calls, 0);
    tu_latch_init(&h.first_running, 1);
    tu_latch_init(&h.destroyed, 1);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(io_strand_post(h.strand, first_waits_for_destroy, &h), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&runners[i], NULL, run_until_done, ctx), 0);
    tu_latch_wait(&h.first_running);
    io_strand_destroy(h.strand);
    tu_latch_count_down(&h.destroyed);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_join(runners[i], NULL), 0);
    ck_assert_int_eq(tu_int(&h.calls), 100);
    ck_assert_uint_eq(io__alloc_live(), baseline);
    tu_latch_destroy(&h.first_running);
    tu_latch_destroy(&h.destroyed);
    io_context_destroy(ctx);
}
END_TEST

struct fairness {
    atomic_int busy_calls;
    atomic_int busy_calls_before_other;
};

static void busy_handler(void *arg)
{
    atomic_fetch_add(&((struct fairness *)arg)->busy_calls, 1);
}

static void other_handler(void *arg)
{
    struct fairness *f = arg;

    atomic_store(&f->busy_calls_before_other, atomic_load(&f->busy_calls));
}

/* One run thread, one strand with a long queue, another strand with one
 * handler: the busy strand must give the thread up before its queue is
 * empty, or the other strand would wait behind all of it. */
START_TEST(a_busy_strand_does_not_starve_the_others)
{
    io_context *ctx = new_context();
    io_strand *busy = new_strand(ctx), *other = new_strand(ctx);
    struct fairness f;

    atomic_init(&f.busy_calls, 0);
    atomic_init(&f.busy_calls_before_other, -1);
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(io_strand_post(busy, busy_handler, &f), 0);
    ck_assert_int_eq(io_strand_post(other, other_handler, &f), 0);
    ck_assert_uint_eq(io_context_run(ctx), 1001);
    ck_assert_int_ge(tu_int(&f.busy_calls_before_other), 1);
    ck_assert_int_lt(tu_int(&f.busy_calls_before_other), 1000);
    io_strand_destroy(busy);
    io_strand_destroy(other);
    io_context_destroy(ctx);
}
END_TEST

static void count_call(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

/* Rules 1 and 4: ENOMEM from create and post, nothing half made, nothing
 * run for a refused post, and the strand still works afterwards. */
START_TEST(out_of_memory_gives_enomem_and_loses_nothing)
{
    io_context *ctx = new_context();
    size_t baseline = io__alloc_live();
    io_strand *s = NULL;
    atomic_int calls;

    atomic_init(&calls, 0);
    io__alloc_fail_after(1);
    ck_assert_int_eq(io_strand_create(ctx, &s), ENOMEM);
    ck_assert_ptr_null(s);
    ck_assert_uint_eq(io__alloc_live(), baseline);
    s = new_strand(ctx);
    io__alloc_fail_after(1);
    ck_assert_int_eq(io_strand_post(s, count_call, &calls), ENOMEM);
    ck_assert_int_eq(io_strand_post(s, count_call, &calls), 0);
    ck_assert_uint_eq(io_context_run(ctx), 1);
    ck_assert_int_eq(tu_int(&calls), 1);
    io_strand_destroy(s);
    ck_assert_uint_eq(io__alloc_live(), baseline);
    io_context_destroy(ctx);
}
END_TEST

/* Two strands, two run threads: a handler of A waits for a handler of B
 * to be running at the same time.  If strands were serialised with each
 * other this would never happen (and the test would time out). */
struct parallel_test {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool a_running, b_running;
};

static void wait_for_partner(struct parallel_test *p, bool *mine, bool *partner)
{
    pthread_mutex_lock(&p->lock);
    *mine = true;
    pthread_cond_broadcast(&p->cond);
    while (!*partner)
        pthread_cond_wait(&p->cond, &p->lock);
    pthread_mutex_unlock(&p->lock);
}

static void handler_a(void *arg)
{
    struct parallel_test *p = arg;

    wait_for_partner(p, &p->a_running, &p->b_running);
}

static void handler_b(void *arg)
{
    struct parallel_test *p = arg;

    wait_for_partner(p, &p->b_running, &p->a_running);
}

static void *run_context(void *ctx)
{
    io_context_run(ctx);
    return NULL;
}

START_TEST(different_strands_run_in_parallel)
{
    struct parallel_test p = { .a_running = false, .b_running = false };
    io_context *ctx = new_context();
    io_strand *a = new_strand(ctx), *b = new_strand(ctx);
    pthread_t threads[2];

    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.cond, NULL);
    ck_assert_int_eq(io_strand_post(a, handler_a, &p), 0);
    ck_assert_int_eq(io_strand_post(b, handler_b, &p), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, run_context, ctx), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
    ck_assert(p.a_running && p.b_running);
    pthread_cond_destroy(&p.cond);
    pthread_mutex_destroy(&p.lock);
    io_strand_destroy(a);
    io_strand_destroy(b);
    io_context_destroy(ctx);
}
END_TEST

#define POSTERS 4
#define POSTS_PER_POSTER 50000
#define STRANDS 16
#define RUNNERS 4

/* Per strand: how many of its handlers are running now, the most ever at
 * once, and the last sequence number seen from each poster. */
struct strand_check {
    io_strand *strand;
    atomic_int in_flight;
    atomic_int overlaps;            /* handlers that found another running */
    int last_seq[POSTERS];          /* touched only by the strand's handlers */
    atomic_int out_of_order;
    atomic_int not_running_in_thread;
};

struct tagged_post {
    struct strand_check *check;
    int poster;
    int seq;
};

static void check_strand_handler(void *arg)
{
    struct tagged_post *p = arg;
    struct strand_check *c = p->check;
    if (atomic_fetch_add(&c->in_flight, 1) != 0)
        atomic_fetch_add(&c->overlaps, 1);
    if (!io_strand_running_in_this_thread(c->strand))
        atomic_fetch_add(&c->not_running_in_thread, 1);
    if (p->seq != c->last_seq[p->poster] + 1)
        atomic_fetch_add(&c->out_of_order, 1);
    c->last_seq[p->poster] = p->seq;
    atomic_fetch_sub(&c->in_flight, 1);
}

struct poster {
    pthread_t thread;
    struct tagged_post *posts;      /* built before the thread starts */
    int refused;
};

static void *post_tagged(void *arg)
{
    struct poster *p = arg;

    for (int i = 0; i < POSTS_PER_POSTER; i++) {
        struct tagged_post *post = &p->posts[i];

        if (io_strand_post(post->check->strand, check_strand_handler, post) != 0)
            p->refused++;
    }
    return NULL;
}

struct counted_runner {
    pthread_t thread;
    io_context *ctx;
    size_t ran;
};

static void *run_and_count(void *arg)
{
    struct counted_runner *r = arg;

    r->ran = io_context_run(r->ctx);
    return NULL;
}

START_TEST(many_threads_many_strands_fifo_and_never_concurrent)
{
    io_context *ctx = new_context();
    struct strand_check checks[STRANDS];
    struct poster posters[POSTERS];
    struct counted_runner runners[RUNNERS];
    int seq_next[STRANDS][POSTERS] = { { 0 } };
    size_t total = 0;

    for (int s = 0; s < STRANDS; s++) {
        checks[s] = (struct strand_check){ .strand = new_strand(ctx) };
        atomic_init(&checks[s].in_flight, 0);
        atomic_init(&checks[s].overlaps, 0);
        atomic_init(&checks[s].out_of_order, 0);
        atomic_init(&checks[s].not_running_in_thread, 0);
    }
    /* Sequence numbers are assigned here, before any thread starts, so
     * that the posters share nothing but the strands. */
    for (int p = 0; p < POSTERS; p++) {
        posters[p] = (struct poster){ .posts = NULL };
        posters[p].posts = calloc(POSTS_PER_POSTER, sizeof(struct tagged_post));
        ck_assert_ptr_nonnull(posters[p].posts);
        for (int i = 0; i < POSTS_PER_POSTER; i++) {
            int s = (i * 7 + p) % STRANDS;

            posters[p].posts[i] = (struct tagged_post){ &checks[s], p, ++seq_next[s][p] };
        }
    }
    io_context_work_started(ctx);
    for (int r = 0; r < RUNNERS; r++) {
        runners[r] = (struct counted_runner){ .ctx = ctx };
        ck_assert_int_eq(pthread_create(&runners[r].thread, NULL, run_and_count, &runners[r]), 0);
    }
    for (int p = 0; p < POSTERS; p++)
        ck_assert_int_eq(pthread_create(&posters[p].thread, NULL, post_tagged, &posters[p]), 0);
    for (int p = 0; p < POSTERS; p++) {
        ck_assert_int_eq(pthread_join(posters[p].thread, NULL), 0);
        ck_assert_int_eq(posters[p].refused, 0);
    }
    io_context_work_finished(ctx);
    for (int r = 0; r < RUNNERS; r++) {
        ck_assert_int_eq(pthread_join(runners[r].thread, NULL), 0);
        total += runners[r].ran;
    }
    ck_assert_uint_eq(total, POSTERS * POSTS_PER_POSTER);
    for (int s = 0; s < STRANDS; s++) {
        ck_assert_int_eq(tu_int(&checks[s].overlaps), 0);
        ck_assert_int_eq(tu_int(&checks[s].out_of_order), 0);
        ck_assert_int_eq(tu_int(&checks[s].not_running_in_thread), 0);
        for (int p = 0; p < POSTERS; p++)
            ck_assert_int_eq(checks[s].last_seq[p], seq_next[s][p]);
        io_strand_destroy(checks[s].strand);
    }
    for (int p = 0; p < POSTERS; p++)
        free(posters[p].posts);
    io_context_destroy(ctx);
}
END_TEST

static Suite *strand_suite(void)
{
    Suite *s = suite_create("strand");
    TCase *tc;

    tc = tu_tcase(s, "errors");
    tcase_add_test(tc, null_arguments_give_einval);

    tc = tu_tcase(s, "order");
    tcase_add_test(tc, post_never_runs_inline_and_keeps_fifo);
    tcase_add_test(tc, run_one_and_poll_one_run_one_strand_handler);
    tcase_add_test(tc, post_from_own_handler_runs_after_it_returns);
    tcase_add_test(tc, running_in_this_thread_follows_the_call_stack);
    tcase_add_test(tc, stop_inside_a_strand_leaves_the_rest_queued_in_order);

    tcase_add_test(tc, a_busy_strand_does_not_starve_the_others);

    tc = tu_tcase(s, "lifetime");
    tcase_add_test(tc, destroy_keeps_queued_handlers);
    tcase_add_test(tc, destroy_from_its_own_handler);
    tcase_add_test(tc, destroyed_strand_is_freed_after_its_last_handler);
    tcase_add_test(tc, destroy_while_another_thread_runs_its_handler);
    tcase_add_test(tc, context_destroy_runs_strand_handlers_then_frees_strands);
    tcase_add_test(tc, context_destroy_runs_strand_handlers_of_a_stopped_context);
    tcase_add_test(tc, out_of_memory_gives_enomem_and_loses_nothing);

    tc = tu_tcase(s, "concurrency");
    tcase_add_test(tc, different_strands_run_in_parallel);
    tcase_add_test(tc, many_threads_many_strands_fifo_and_never_concurrent);
    return s;
}

int main(void)
{
    return tu_run_suite(strand_suite());
}
