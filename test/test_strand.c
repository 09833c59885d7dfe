/*
 * test_strand.c - io_strand: handlers of one strand never run at once
 * and run in post order, different strands run in parallel, a busy
 * strand does not starve the others; running_in_this_thread; stop inside
 * a strand; and the strand's lifetime: destroy with handlers queued or
 * running, from its own handler, with the context, and out of memory.
 */
#include <errno.h>

#include "alloc.h"
#include "test_util.h"

static void do_nothing(void *arg)
{
    (void)arg;
}

START_TEST(null_arguments_give_einval)
{
    io_context *ctx = tu_new_default_context();
    io_strand *s = tu_new_strand(ctx);
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

struct order_log;

struct order_entry {
    struct order_log *log;
    int value;
};

/* The order in which handlers of one strand ran: each logs the value of
 * its entry. */
struct order_log {
    io_context *ctx;
    pthread_t expected_thread;  /* checked when check_thread is set */
    bool check_thread;
    io_strand *strand;
    io_strand *other_strand;
    struct order_entry entries[16];
    int seen[16];
    atomic_int count;
    atomic_int wrong_strand_state;
    atomic_int destroy_at;      /* the value whose handler destroys the strand */
};

static void init_log(struct order_log *log, io_context *ctx)
{
    *log = (struct order_log){ .ctx = ctx };
    log->strand = tu_new_strand(ctx);
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

/* Posts entries 0..n-1 to the log's strand. */
static void post_entries(struct order_log *log, int n)
{
    for (int i = 0; i < n; i++) {
        log->entries[i] = (struct order_entry){ log, i };
        ck_assert_int_eq(io_strand_post(log->strand, log_value, &log->entries[i]), 0);
    }
}

static void assert_ran_in_order(struct order_log *log, int n)
{
    ck_assert_int_eq(tu_int(&log->count), n);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(log->seen[i], i);
    ck_assert_int_eq(tu_int(&log->wrong_strand_state), 0);
}

/* One run call runs the n entries posted, in order. */
static void run_in_order(struct order_log *log, int n)
{
    ck_assert_uint_eq(io_context_run(log->ctx), n);
    assert_ran_in_order(log, n);
}

/* For a log whose strand the test has not destroyed. */
static void destroy_log(struct order_log *log)
{
    io_strand_destroy(log->strand);
    io_context_destroy(log->ctx);
}

START_TEST(post_never_runs_inline_and_keeps_fifo)
{
    struct order_log log;

    init_log(&log, tu_new_default_context());
    log.other_strand = tu_new_strand(log.ctx);
    post_entries(&log, 5);
    ck_assert_int_eq(tu_int(&log.count), 0);
    ck_assert(!io_strand_running_in_this_thread(log.strand));
    run_in_order(&log, 5);
    ck_assert(!io_strand_running_in_this_thread(log.strand));
    io_strand_destroy(log.other_strand);
    destroy_log(&log);
}
END_TEST

START_TEST(run_one_and_poll_one_run_one_strand_handler)
{
    struct order_log log;

    init_log(&log, tu_new_default_context());
    post_entries(&log, 4);
    ck_assert_uint_eq(io_context_run_one(log.ctx), 1);
    ck_assert_int_eq(tu_int(&log.count), 1);
    ck_assert_uint_eq(io_context_poll_one(log.ctx), 1);
    ck_assert_int_eq(tu_int(&log.count), 2);
    ck_assert_uint_eq(io_context_poll(log.ctx), 2);
    assert_ran_in_order(&log, 4);
    destroy_log(&log);
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
    io_context *ctx = tu_new_default_context();
    struct self_post sp = { .strand = tu_new_strand(ctx) };

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
    io_context *ctx, *other;
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
 * running in this thread, also while a nested run_one runs another (of
 * another context: run_one on its own context returns 0 in a handler). */
static void outer_handler(void *arg)
{
    struct nesting *n = arg;

    ck_assert_int_eq(io_strand_post(n->inner, inner_handler, n), 0);
    ck_assert_uint_eq(io_context_run_one(n->ctx), 0);
    ck_assert_uint_eq(io_context_run_one(n->other), 1);
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
    struct nesting n = { .ctx = tu_new_default_context(), .other = tu_new_default_context() };
    io_context_stats stats;

    n.outer = tu_new_strand(n.ctx);
    n.inner = tu_new_strand(n.other);
    atomic_init(&n.inner_saw_both, 0);
    atomic_init(&n.plain_saw_none, 0);
    /* When the outer handler calls run_one, the inner handler is the only
     * one ready: the nested call must run it. */
    ck_assert_int_eq(io_strand_post(n.outer, outer_handler, &n), 0);
    /* The nested run_one counts the inner handler, the outer run the
     * outer one; each context saw its own. */
    ck_assert_uint_eq(io_context_run(n.ctx), 1);
    io_context_get_stats(n.ctx, &stats);
    ck_assert_uint_eq(stats.handlers_run, 1);
    io_context_get_stats(n.other, &stats);
    ck_assert_uint_eq(stats.handlers_run, 1);
    ck_assert_int_eq(tu_int(&n.inner_saw_both), 1);

    io_context_restart(n.ctx);
    ck_assert_int_eq(io_context_post(n.ctx, plain_handler, &n), 0);
    ck_assert_uint_eq(io_context_run(n.ctx), 1);
    ck_assert_int_eq(tu_int(&n.plain_saw_none), 1);
    io_strand_destroy(n.outer);
    io_strand_destroy(n.inner);
    io_context_destroy(n.ctx);
    io_context_destroy(n.other);
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
static void post_stopper_and_three(struct order_log *log)
{
    struct order_entry *entries = log->entries;

    for (int i = 0; i < 5; i++)
        entries[i] = (struct order_entry){ log, i };
    ck_assert_int_eq(io_strand_post(log->strand, stop_and_log, &entries[0]), 0);
    for (int i = 1; i < 4; i++)
        ck_assert_int_eq(io_strand_post(log->strand, log_value, &entries[i]), 0);
}

/* Stop inside a strand: run returns after the stopping handler even
 * though the strand has more, and they run in order after restart. */
START_TEST(stop_inside_a_strand_leaves_the_rest_queued_in_order)
{
    struct order_log log;

    init_log(&log, tu_new_default_context());
    post_stopper_and_three(&log);
    ck_assert_uint_eq(io_context_run(log.ctx), 1);
    ck_assert_int_eq(tu_int(&log.count), 1);
    io_context_restart(log.ctx);
    ck_assert_uint_eq(io_context_run(log.ctx), 4);
    assert_ran_in_order(&log, 5);
    destroy_log(&log);
}
END_TEST

/* Destroying a strand does not drop what was posted to it. */
START_TEST(destroy_keeps_queued_handlers)
{
    struct order_log log;

    init_log(&log, tu_new_default_context());
    post_entries(&log, 6);
    io_strand_destroy(log.strand);
    run_in_order(&log, 6);
    io_context_destroy(log.ctx);
}
END_TEST

START_TEST(destroy_from_its_own_handler)
{
    struct order_log log;

    init_log(&log, tu_new_default_context());
    atomic_store(&log.destroy_at, 2);
    post_entries(&log, 6);
    run_in_order(&log, 6);
    io_context_destroy(log.ctx);
}
END_TEST

/* Strands left alive go with the context, after their queued
 * handlers ran in order, on their strand, on the destroying thread. */
START_TEST(context_destroy_runs_strand_handlers_then_frees_strands)
{
    struct order_log log;

    init_log(&log, tu_new_default_context());
    log.check_thread = true;
    log.expected_thread = pthread_self();
    post_entries(&log, 8);
    (void)tu_new_strand(log.ctx);    /* an idle strand nobody destroys */
    io_context_destroy(log.ctx);
    assert_ran_in_order(&log, 8);
}
END_TEST

/* Destroy ignores stop for strands too, or it would never finish. */
START_TEST(context_destroy_runs_strand_handlers_of_a_stopped_context)
{
    struct order_log log;

    init_log(&log, tu_new_default_context());
    post_stopper_and_three(&log);
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
    io_context *ctx = tu_new_default_context();
    size_t baseline = io__alloc_live();
    struct order_log log;

    init_log(&log, ctx);
    post_entries(&log, 5);
    io_strand_destroy(log.strand);
    ck_assert_uint_gt(io__alloc_live(), baseline);
    ck_assert_uint_eq(io_context_run(ctx), 5);
    assert_ran_in_order(&log, 5);
    ck_assert_uint_eq(io__alloc_live(), baseline);

    /* And an idle one goes at once. */
    (void)tu_new_strand(ctx);
    io_strand_destroy(tu_new_strand(ctx));
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

/* The user destroys the strand on one thread while a run thread is inside
 * its handler: the handlers still queued run, then the strand is freed
 * (ASan checks that nothing touches it afterwards). */
START_TEST(destroy_while_another_thread_runs_its_handler)
{
    io_context *ctx = tu_new_default_context();
    size_t baseline = io__alloc_live();
    struct held_strand h = { .strand = tu_new_strand(ctx) };
    struct tu_runner runners[2];

    atomic_init(&h.calls, 0);
    tu_latch_init(&h.first_running, 1);
    tu_latch_init(&h.destroyed, 1);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(io_strand_post(h.strand, first_waits_for_destroy, &h), 0);
    tu_runners_start(runners, 2, ctx);
    tu_latch_wait(&h.first_running);
    io_strand_destroy(h.strand);
    tu_latch_count_down(&h.destroyed);
    ck_assert_uint_eq(tu_runners_join(runners, 2), 100);
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
    io_context *ctx = tu_new_default_context();
    io_strand *busy = tu_new_strand(ctx), *other = tu_new_strand(ctx);
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

/* ENOMEM from create and post, nothing half made, nothing
 * run for a refused post, and the strand still works afterwards. */
START_TEST(out_of_memory_gives_enomem_and_loses_nothing)
{
    io_context *ctx = tu_new_default_context();
    size_t baseline = io__alloc_live();
    struct tu_counter c = { 0 };
    io_strand *s = NULL;

    io__alloc_fail_after(1);
    ck_assert_int_eq(io_strand_create(ctx, &s), ENOMEM);
    ck_assert_ptr_null(s);
    ck_assert_uint_eq(io__alloc_live(), baseline);
    s = tu_new_strand(ctx);
    io__alloc_fail_after(1);
    ck_assert_int_eq(io_strand_post(s, tu_count, &c), ENOMEM);
    ck_assert_int_eq(io_strand_post(s, tu_count, &c), 0);
    ck_assert_uint_eq(io_context_run(ctx), 1);
    ck_assert_int_eq(tu_int(&c.calls), 1);
    io_strand_destroy(s);
    ck_assert_uint_eq(io__alloc_live(), baseline);
    io_context_destroy(ctx);
}
END_TEST

/* Two strands, two run threads: a handler of A waits for a handler of B
 * to be running at the same time.  If strands were serialised with each
 * other this would never happen (and the test would time out). */
struct partner {
    struct tu_latch *both_running;
    atomic_bool ran;
};

static void wait_for_partner(void *arg)
{
    struct partner *p = arg;

    atomic_store(&p->ran, true);
    tu_latch_count_down(p->both_running);
    tu_latch_wait(p->both_running);
}

START_TEST(different_strands_run_in_parallel)
{
    io_context *ctx = tu_new_default_context();
    io_strand *a = tu_new_strand(ctx), *b = tu_new_strand(ctx);
    struct tu_latch both_running;
    struct partner pa = { .both_running = &both_running }, pb = { .both_running = &both_running };
    struct tu_runner runners[2];

    tu_latch_init(&both_running, 2);
    atomic_init(&pa.ran, false);
    atomic_init(&pb.ran, false);
    ck_assert_int_eq(io_strand_post(a, wait_for_partner, &pa), 0);
    ck_assert_int_eq(io_strand_post(b, wait_for_partner, &pb), 0);
    tu_runners_start(runners, 2, ctx);
    ck_assert_uint_eq(tu_runners_join(runners, 2), 2);
    ck_assert(tu_bool(&pa.ran) && tu_bool(&pb.ran));
    tu_latch_destroy(&both_running);
    io_strand_destroy(a);
    io_strand_destroy(b);
    io_context_destroy(ctx);
}
END_TEST

#define POSTERS 4
#define POSTS_PER_POSTER 50000
#define STRANDS 16
#define RUNNERS 4

/* Per strand: whether two of its handlers ever ran at once, and the last
 * sequence number seen from each poster. */
struct strand_check {
    io_strand *strand;
    struct tu_serial serial;
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

    tu_serial_enter(&c->serial);
    if (!io_strand_running_in_this_thread(c->strand))
        atomic_fetch_add(&c->not_running_in_thread, 1);
    if (p->seq != c->last_seq[p->poster] + 1)
        atomic_fetch_add(&c->out_of_order, 1);
    c->last_seq[p->poster] = p->seq;
    tu_serial_leave(&c->serial);
}

struct poster {
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

START_TEST(many_threads_many_strands_fifo_and_never_concurrent)
{
    io_context *ctx = tu_new_default_context();
    struct strand_check checks[STRANDS];
    struct poster posters[POSTERS];
    int seq_next[STRANDS][POSTERS] = { { 0 } };

    for (int s = 0; s < STRANDS; s++) {
        checks[s] = (struct strand_check){ .strand = tu_new_strand(ctx) };
        tu_serial_init(&checks[s].serial);
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
    ck_assert_uint_eq(tu_run_while(ctx, RUNNERS, post_tagged, posters, sizeof(posters[0]), POSTERS),
                      POSTERS * POSTS_PER_POSTER);
    for (int p = 0; p < POSTERS; p++)
        ck_assert_int_eq(posters[p].refused, 0);
    for (int s = 0; s < STRANDS; s++) {
        ck_assert_int_eq(tu_int(&checks[s].serial.overlaps), 0);
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

void tu_add_tests(Suite *s)
{
    tu_add_tcase(s, "errors", TU_TESTS(null_arguments_give_einval));
    tu_add_tcase(s, "order", TU_TESTS(post_never_runs_inline_and_keeps_fifo,
                                      run_one_and_poll_one_run_one_strand_handler,
                                      post_from_own_handler_runs_after_it_returns,
                                      running_in_this_thread_follows_the_call_stack,
                                      stop_inside_a_strand_leaves_the_rest_queued_in_order,
                                      a_busy_strand_does_not_starve_the_others));
    tu_add_tcase(s, "lifetime", TU_TESTS(destroy_keeps_queued_handlers,
                                         destroy_from_its_own_handler,
                                         destroyed_strand_is_freed_after_its_last_handler,
                                         destroy_while_another_thread_runs_its_handler,
                                         context_destroy_runs_strand_handlers_then_frees_strands,
                                         context_destroy_runs_strand_handlers_of_a_stopped_context,
                                         out_of_memory_gives_enomem_and_loses_nothing));
    tu_add_tcase(s, "concurrency", TU_TESTS(different_strands_run_in_parallel,
                                            many_threads_many_strands_fifo_and_never_concurrent));
}
