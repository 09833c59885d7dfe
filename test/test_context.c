/*
 * test_context.c - io_context as a user sees it: what the calls return,
 * how many handlers run and on which thread (only inside run, poll and
 * destroy, never inside post), run and poll with and without work, stop,
 * restart and work counting, concurrent posts and runs, idle workers
 * waiting in poll(), and destroy running every queued handler.
 */
#include <dirent.h>
#include <errno.h>
#include <sys/socket.h>
#include <time.h>

#include "alloc.h"
#include "test_util.h"

START_TEST(null_arguments_give_einval)
{
    io_context_options opts = { .worker_threads = 2 };
    struct tu_counter c = { 0 };
    io_context *ctx = tu_new_default_context();
    io_context_stats stats;

    ck_assert_int_eq(io_context_create(NULL, NULL), EINVAL);
    ck_assert_int_eq(io_context_create(NULL, &opts), EINVAL);
    ck_assert_int_eq(io_context_post(NULL, tu_count, &c), EINVAL);
    ck_assert_int_eq(io_context_post(ctx, NULL, &c), EINVAL);
    /* A refused post never runs anything and counts as no work. */
    ck_assert_uint_eq(io_context_poll(ctx), 0);
    ck_assert_uint_eq(io_context_run(ctx), 0);
    ck_assert_int_eq(tu_int(&c.calls), 0);

    /* The void and size_t calls tolerate NULL. */
    ck_assert_uint_eq(io_context_run(NULL), 0);
    ck_assert_uint_eq(io_context_run_one(NULL), 0);
    ck_assert_uint_eq(io_context_poll(NULL), 0);
    ck_assert_uint_eq(io_context_poll_one(NULL), 0);
    ck_assert(!io_context_stopped(NULL));
    io_context_stop(NULL);
    io_context_restart(NULL);
    io_context_work_started(NULL);
    io_context_work_finished(NULL);
    io_context_get_stats(NULL, &stats);
    io_context_get_stats(ctx, NULL);
    io_context_destroy(NULL);
    io_context_destroy(ctx);
}
END_TEST

START_TEST(create_accepts_options_and_zero_workers)
{
    io_context_options zero = { .worker_threads = 0 };
    io_context_options four = { .worker_threads = 4 };
    io_context *a = NULL, *b = NULL;

    ck_assert_int_eq(io_context_create(&a, &zero), 0);
    ck_assert_int_eq(io_context_create(&b, &four), 0);
    ck_assert_ptr_ne(a, b);
    ck_assert(!io_context_stopped(a));
    io_context_destroy(a);
    io_context_destroy(b);
}
END_TEST

/* ENOMEM, with nothing half made and nothing run for the
 * refused call; the context keeps working. */
START_TEST(out_of_memory_gives_enomem_and_loses_nothing)
{
    size_t baseline = io__alloc_live();
    struct tu_counter c = { 0 };
    io_context *ctx = NULL;

    io__alloc_fail_after(1);
    ck_assert_int_eq(io_context_create(&ctx, NULL), ENOMEM);
    ck_assert_ptr_null(ctx);
    ck_assert_uint_eq(io__alloc_live(), baseline);

    ctx = tu_new_default_context();
    io__alloc_fail_after(1);
    ck_assert_int_eq(io_context_post(ctx, tu_count, &c), ENOMEM);
    ck_assert_uint_eq(io_context_poll(ctx), 0);
    ck_assert_int_eq(tu_int(&c.calls), 0);
    io_context_restart(ctx);
    ck_assert_int_eq(io_context_post(ctx, tu_count, &c), 0);
    ck_assert_uint_eq(io_context_run(ctx), 1);
    ck_assert_int_eq(tu_int(&c.calls), 1);
    io_context_destroy(ctx);
    ck_assert_uint_eq(io__alloc_live(), baseline);
}
END_TEST

/* None of the n handlers counted by c has run yet; one run call runs
 * them all, on this thread, inside run.  Then destroys ctx. */
static void run_posted_handlers(io_context *ctx, struct tu_counter *c, int n)
{
    ck_assert_int_eq(tu_int(&c->calls), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), n);
    ck_assert_int_eq(tu_int(&c->calls), n);
    ck_assert_int_eq(tu_int(&c->outside_run), 0);
    io_context_destroy(ctx);
}

START_TEST(post_never_runs_the_handler_inside_post)
{
    struct tu_counter c = { 0 };
    io_context *ctx = tu_new_default_context();

    ck_assert_int_eq(io_context_post(ctx, tu_count, &c), 0);
    run_posted_handlers(ctx, &c, 1);
}
END_TEST

struct poster_arg {
    io_context *ctx;
    struct tu_counter *counter;
    int posts;
    int refused;
};

static void *post_from_thread(void *p)
{
    struct poster_arg *a = p;

    for (int i = 0; i < a->posts; i++)
        if (io_context_post(a->ctx, tu_count, a->counter) != 0)
            a->refused++;
    return NULL;
}

/* The post made on another thread: the handler runs on the thread
 * inside run, never on the thread that posted. */
START_TEST(handlers_run_only_on_threads_inside_run)
{
    struct tu_counter c = { 0 };
    io_context *ctx = tu_new_default_context();
    struct poster_arg a = { ctx, &c, 1000, 0 };
    pthread_t t;

    ck_assert_int_eq(pthread_create(&t, NULL, post_from_thread, &a), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(a.refused, 0);
    run_posted_handlers(ctx, &c, 1000);
}
END_TEST

START_TEST(run_without_work_returns_zero_and_stops)
{
    io_context *ctx = tu_new_default_context();

    ck_assert_uint_eq(io_context_run(ctx), 0);
    ck_assert(io_context_stopped(ctx));
    io_context_restart(ctx);
    ck_assert(!io_context_stopped(ctx));
    ck_assert_uint_eq(io_context_run_one(ctx), 0);
    ck_assert(io_context_stopped(ctx));
    io_context_restart(ctx);
    ck_assert_uint_eq(io_context_poll(ctx), 0);
    ck_assert(io_context_stopped(ctx));
    io_context_restart(ctx);
    ck_assert_uint_eq(io_context_poll_one(ctx), 0);
    ck_assert(io_context_stopped(ctx));
    io_context_destroy(ctx);
}
END_TEST

START_TEST(run_returns_the_number_of_handlers_it_ran)
{
    struct tu_counter c = { 0 };
    io_context *ctx = tu_new_default_context();
    io_context_stats stats;

    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(io_context_post(ctx, tu_count, &c), 0);
    ck_assert_uint_eq(io_context_run(ctx), 10);
    ck_assert_int_eq(tu_int(&c.calls), 10);
    /* As in Asio, running out of work leaves the context stopped. */
    ck_assert(io_context_stopped(ctx));
    io_context_get_stats(ctx, &stats);
    ck_assert_uint_eq(stats.handlers_run, 10);
    ck_assert_uint_eq(stats.ops_started, 0);
    ck_assert_uint_eq(stats.ops_completed, 0);
    ck_assert_uint_eq(stats.writev_calls, 0);
    ck_assert_uint_eq(stats.bytes_written, 0);
    ck_assert_uint_eq(stats.would_block, 0);
    io_context_destroy(ctx);
}
END_TEST

START_TEST(run_one_runs_exactly_one)
{
    struct tu_counter c = { 0 };
    io_context *ctx = tu_new_default_context();

    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(io_context_post(ctx, tu_count, &c), 0);
    for (int i = 1; i <= 3; i++) {
        ck_assert_uint_eq(tu_run_marked(io_context_run_one, ctx), 1);
        ck_assert_int_eq(tu_int(&c.calls), i);
    }
    ck_assert_int_eq(tu_int(&c.outside_run), 0);
    /* The last handler's return left no work: the context stopped. */
    ck_assert(io_context_stopped(ctx));
    io_context_restart(ctx);
    ck_assert_uint_eq(io_context_run_one(ctx), 0);
    io_context_destroy(ctx);
}
END_TEST

struct chain {
    io_context *ctx;
    atomic_int links_left;
    atomic_int calls;
};

static void post_next_link(void *arg)
{
    struct chain *ch = arg;

    atomic_fetch_add(&ch->calls, 1);
    if (atomic_fetch_sub(&ch->links_left, 1) > 1)
        ck_assert_int_eq(io_context_post(ch->ctx, post_next_link, ch), 0);
}

START_TEST(poll_runs_ready_handlers_without_blocking)
{
    struct tu_counter c = { 0 };
    struct chain ch;
    io_context *ctx = tu_new_default_context();

    /* With outstanding work and nothing ready, poll returns at once and
     * does not stop the context. */
    io_context_work_started(ctx);
    ck_assert_uint_eq(io_context_poll(ctx), 0);
    ck_assert_uint_eq(io_context_poll_one(ctx), 0);
    ck_assert(!io_context_stopped(ctx));

    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(io_context_post(ctx, tu_count, &c), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_poll_one, ctx), 1);
    ck_assert_int_eq(tu_int(&c.calls), 1);
    ck_assert_uint_eq(tu_run_marked(io_context_poll, ctx), 4);
    ck_assert_int_eq(tu_int(&c.calls), 5);
    ck_assert_int_eq(tu_int(&c.outside_run), 0);

    /* Handlers posted by handlers are ready too: poll runs the chain. */
    ch.ctx = ctx;
    atomic_init(&ch.links_left, 3);
    atomic_init(&ch.calls, 0);
    ck_assert_int_eq(io_context_post(ctx, post_next_link, &ch), 0);
    ck_assert_uint_eq(io_context_poll(ctx), 3);
    ck_assert_int_eq(tu_int(&ch.calls), 3);
    ck_assert(!io_context_stopped(ctx));

    io_context_work_finished(ctx);
    ck_assert(io_context_stopped(ctx));
    io_context_destroy(ctx);
}
END_TEST

#define STOP_RUNNERS 4

struct stop_test {
    io_context *ctx;
    struct tu_runner runners[STOP_RUNNERS];
    atomic_int others_asleep;
};

/* Runs on one run thread; waits until the three others sleep in run (so
 * only a wake-up can get them out), then stops the context. */
static void stop_when_others_sleep(void *arg)
{
    struct stop_test *st = arg;
    pid_t self = tu_gettid();

    for (int i = 0; i < STOP_RUNNERS; i++) {
        struct tu_runner *r = &st->runners[i];

        if (atomic_load(&r->tid) != self && tu_wait_sleeping(atomic_load(&r->tid), &r->returned))
            atomic_fetch_add(&st->others_asleep, 1);
    }
    io_context_stop(st->ctx);
}

START_TEST(stop_from_a_handler_wakes_every_run_thread)
{
    struct stop_test st = { .ctx = tu_new_default_context() };
    pthread_barrier_t start;

    atomic_init(&st.others_asleep, 0);
    io_context_work_started(st.ctx);   /* run must not return for lack of work */
    pthread_barrier_init(&start, NULL, STOP_RUNNERS + 1);
    for (int i = 0; i < STOP_RUNNERS; i++)
        tu_runner_start(&st.runners[i], st.ctx, io_context_run, &start);
    pthread_barrier_wait(&start);
    ck_assert_int_eq(io_context_post(st.ctx, stop_when_others_sleep, &st), 0);
    ck_assert_uint_eq(tu_runners_join(st.runners, STOP_RUNNERS), 1);
    ck_assert_int_eq(tu_int(&st.others_asleep), STOP_RUNNERS - 1);
    ck_assert(io_context_stopped(st.ctx));
    pthread_barrier_destroy(&start);
    io_context_work_finished(st.ctx);
    io_context_destroy(st.ctx);
}
END_TEST

static void stop_context(void *arg)
{
    io_context_stop(arg);
}

/* Run returns as soon as the handler that stopped it returns; the
 * queued handlers wait for restart. */
START_TEST(stop_leaves_queued_handlers_until_restart)
{
    struct tu_counter c = { 0 };
    io_context *ctx = tu_new_default_context();

    ck_assert_int_eq(io_context_post(ctx, stop_context, ctx), 0);
    ck_assert_int_eq(io_context_post(ctx, tu_count, &c), 0);
    ck_assert_int_eq(io_context_post(ctx, tu_count, &c), 0);
    ck_assert_uint_eq(io_context_run(ctx), 1);
    ck_assert(io_context_stopped(ctx));
    ck_assert_int_eq(tu_int(&c.calls), 0);

    /* Stopped: every run and poll call returns 0 without running. */
    ck_assert_uint_eq(io_context_run(ctx), 0);
    ck_assert_uint_eq(io_context_run_one(ctx), 0);
    ck_assert_uint_eq(io_context_poll(ctx), 0);
    ck_assert_uint_eq(io_context_poll_one(ctx), 0);
    ck_assert_int_eq(tu_int(&c.calls), 0);

    io_context_restart(ctx);
    ck_assert(!io_context_stopped(ctx));
    ck_assert_uint_eq(io_context_run(ctx), 2);
    ck_assert_int_eq(tu_int(&c.calls), 2);
    io_context_destroy(ctx);
}
END_TEST

START_TEST(stop_before_run_then_restart)
{
    struct tu_counter c = { 0 };
    io_context *ctx = tu_new_default_context();

    io_context_stop(ctx);
    ck_assert(io_context_stopped(ctx));
    ck_assert_int_eq(io_context_post(ctx, tu_count, &c), 0);
    ck_assert_uint_eq(io_context_run(ctx), 0);
    io_context_restart(ctx);
    ck_assert_uint_eq(io_context_run(ctx), 1);
    ck_assert_int_eq(tu_int(&c.calls), 1);
    io_context_destroy(ctx);
}
END_TEST

struct work_test {
    struct tu_latch handler_ran;
    struct tu_counter counter;
};

static void count_and_signal(void *arg)
{
    struct work_test *w = arg;

    tu_count(&w->counter);
    tu_latch_count_down(&w->handler_ran);
}

static void *finish_work(void *ctx)
{
    io_context_work_finished(ctx);
    return NULL;
}

/* work_started keeps run alive with nothing queued, until another thread
 * calls work_finished. */
START_TEST(work_started_keeps_run_alive_until_work_finished)
{
    struct work_test w = { .counter = { 0 } };
    struct tu_runner r;
    io_context *ctx = tu_new_default_context();
    pthread_t finisher;

    tu_latch_init(&w.handler_ran, 1);
    io_context_work_started(ctx);
    tu_runner_start(&r, ctx, io_context_run, NULL);
    ck_assert_int_eq(io_context_post(ctx, count_and_signal, &w), 0);
    tu_latch_wait(&w.handler_ran);
    /* The queue is empty again; run must now block, not return. */
    ck_assert(tu_wait_sleeping(tu_runner_tid(&r), &r.returned));
    ck_assert(!tu_bool(&r.returned));
    ck_assert(!io_context_stopped(ctx));

    ck_assert_int_eq(pthread_create(&finisher, NULL, finish_work, ctx), 0);
    ck_assert_int_eq(pthread_join(finisher, NULL), 0);
    ck_assert_uint_eq(tu_runner_join(&r), 1);
    ck_assert(io_context_stopped(ctx));
    tu_latch_destroy(&w.handler_ran);
    io_context_destroy(ctx);
}
END_TEST

START_TEST(run_one_blocks_until_a_handler_is_ready)
{
    struct tu_counter c = { 0 };
    struct tu_runner r;
    io_context *ctx = tu_new_default_context();

    io_context_work_started(ctx);
    tu_runner_start(&r, ctx, io_context_run_one, NULL);
    ck_assert(tu_wait_sleeping(tu_runner_tid(&r), &r.returned));
    ck_assert_int_eq(io_context_post(ctx, tu_count, &c), 0);
    ck_assert_uint_eq(tu_runner_join(&r), 1);
    ck_assert_int_eq(tu_int(&c.calls), 1);
    ck_assert_int_eq(tu_int(&c.outside_run), 0);
    ck_assert(!io_context_stopped(ctx));   /* work_started is still counted */
    io_context_work_finished(ctx);
    io_context_destroy(ctx);
}
END_TEST

struct running_handler_test {
    io_context *ctx;
    struct tu_runner runners[2];
    atomic_bool other_returned_early;
    struct tu_counter counter;
};

/* A handler that is still running is work.  While it runs, the
 * queue is empty and nothing else is counted, yet the other run thread
 * must wait, because this handler may post more. */
static void post_after_other_runner_blocks(void *arg)
{
    struct running_handler_test *t = arg;
    pid_t self = tu_gettid();

    for (int i = 0; i < 2; i++) {
        struct tu_runner *r = &t->runners[i];

        if (atomic_load(&r->tid) == self)
            continue;
        tu_wait_sleeping(atomic_load(&r->tid), &r->returned);
        if (atomic_load(&r->returned))
            atomic_store(&t->other_returned_early, true);
    }
    ck_assert_int_eq(io_context_post(t->ctx, tu_count, &t->counter), 0);
}

START_TEST(run_waits_for_running_handlers_before_returning)
{
    struct running_handler_test t = { .ctx = tu_new_default_context(), .counter = { 0 } };
    pthread_barrier_t start;

    atomic_init(&t.other_returned_early, false);
    pthread_barrier_init(&start, NULL, 3);
    ck_assert_int_eq(io_context_post(t.ctx, post_after_other_runner_blocks, &t), 0);
    tu_runner_start(&t.runners[0], t.ctx, io_context_run, &start);
    tu_runner_start(&t.runners[1], t.ctx, io_context_run, &start);
    pthread_barrier_wait(&start);
    ck_assert_uint_eq(tu_runners_join(t.runners, 2), 2);
    ck_assert(!tu_bool(&t.other_returned_early));
    ck_assert_int_eq(tu_int(&t.counter.calls), 1);
    ck_assert_int_eq(tu_int(&t.counter.outside_run), 0);
    pthread_barrier_destroy(&start);
    io_context_destroy(t.ctx);
}
END_TEST

#define MANY_THREADS 4
/* A handler that waits, up to TU_WAIT_S, until the other one has begun:
 * it returns only if both run at the same time. */
struct meeting {
    struct tu_latch arrived;
    atomic_int met;
};

static void meet(void *arg, int error, size_t bytes)
{
    struct meeting *m = arg;

    (void)error;
    (void)bytes;
    tu_latch_count_down(&m->arrived);
    if (tu_latch_wait_for(&m->arrived, TU_WAIT_S))
        atomic_fetch_add(&m->met, 1);
}

/*
 * Completions that a worker hands over together (its turns on three
 * descriptors, the one worker held in the first one's sendmsg meanwhile)
 * are spread over the idle run threads: the two handlers that wait for
 * each other both run.  Waking one thread for the whole batch, with no
 * other woken while work is left on the queue, would leave the second
 * handler queued behind the first.
 */
START_TEST(a_batch_of_completions_wakes_the_run_threads_it_needs)
{
    io_context *ctx = tu_new_context(1);
    struct meeting m = { .met = 0 };
    struct tu_call_gate gate;
    struct tu_runner runners[2];
    struct tu_result held;
    io_descriptor *d[3];
    int sv[3][2];

    tu_latch_init(&m.arrived, 2);
    tu_results_init(&held, 1);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i]), 0);
        d[i] = tu_new_descriptor(ctx, sv[i][0], NULL);
    }
    io_context_work_started(ctx);
    tu_runners_start(runners, 2, ctx);
    tu_gate_next_write(sv[0][0], &gate);
    ck_assert_int_eq(tu_write_all(d[0], "h", 1, &held), 0);
    ck_assert(tu_latch_wait_for(&gate.entered, TU_WAIT_S));
    for (int i = 1; i < 3; i++) {
        struct iovec iov = io_buffer("m", 1);

        ck_assert_int_eq(io_descriptor_async_write(d[i], &iov, 1, meet, &m, NULL), 0);
    }
    tu_latch_count_down(&gate.released);
    io_context_work_finished(ctx);
    ck_assert_uint_eq(tu_runners_join(runners, 2), 3);

    ck_assert_int_eq(tu_int(&m.met), 2);
    tu_assert_result(&held, 0, 1);
    for (int i = 0; i < 3; i++) {
        io_descriptor_destroy(d[i]);
        close(sv[i][1]);
    }
    tu_latch_destroy(&m.arrived);
    tu_destroy_context(ctx);
}
END_TEST

#define POSTS_PER_THREAD 50000

/* Concurrent posts from 4 threads, drained by 4 run
 * threads at the same time; every handler runs exactly once and the run
 * calls account for each of them. */
START_TEST(concurrent_posts_and_runs_run_each_handler_once)
{
    struct tu_counter c = { 0 };
    io_context *ctx = tu_new_default_context();
    struct poster_arg posters[MANY_THREADS];
    io_context_stats stats;

    for (int i = 0; i < MANY_THREADS; i++)
        posters[i] = (struct poster_arg){ ctx, &c, POSTS_PER_THREAD, 0 };
    ck_assert_uint_eq(tu_run_while(ctx, MANY_THREADS, post_from_thread, posters, sizeof(posters[0]),
                                   MANY_THREADS), MANY_THREADS * POSTS_PER_THREAD);
    for (int i = 0; i < MANY_THREADS; i++)
        ck_assert_int_eq(posters[i].refused, 0);
    ck_assert_int_eq(tu_int(&c.calls), MANY_THREADS * POSTS_PER_THREAD);
    ck_assert_int_eq(tu_int(&c.outside_run), 0);
    io_context_get_stats(ctx, &stats);
    ck_assert_uint_eq(stats.handlers_run, MANY_THREADS * POSTS_PER_THREAD);
    io_context_destroy(ctx);
}
END_TEST

struct shutdown_test {
    io_context *ctx;
    pthread_t destroying_thread;
    atomic_int first, second, wrong_thread;
};

static void check_thread(struct shutdown_test *t)
{
    if (!pthread_equal(pthread_self(), t->destroying_thread))
        atomic_fetch_add(&t->wrong_thread, 1);
}

static void second_handler(void *arg)
{
    struct shutdown_test *t = arg;

    check_thread(t);
    atomic_fetch_add(&t->second, 1);
}

static void first_handler_posts_another(void *arg)
{
    struct shutdown_test *t = arg;

    check_thread(t);
    atomic_fetch_add(&t->first, 1);
    ck_assert_int_eq(io_context_post(t->ctx, second_handler, t), 0);
}

/* Destroy runs every queued handler, and the handlers they post, each
 * once, on the calling thread, even when the context is stopped and
 * work_started is outstanding. */
START_TEST(destroy_runs_queued_handlers_and_what_they_post)
{
    struct shutdown_test t = { .ctx = tu_new_default_context(), .destroying_thread = pthread_self() };

    atomic_init(&t.first, 0);
    atomic_init(&t.second, 0);
    atomic_init(&t.wrong_thread, 0);
    io_context_work_started(t.ctx);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(io_context_post(t.ctx, first_handler_posts_another, &t), 0);
    io_context_stop(t.ctx);
    ck_assert_int_eq(tu_int(&t.first), 0);
    io_context_destroy(t.ctx);
    ck_assert_int_eq(tu_int(&t.first), 3);
    ck_assert_int_eq(tu_int(&t.second), 3);
    ck_assert_int_eq(tu_int(&t.wrong_thread), 0);
}
END_TEST

/* A handler may call stop while destroy drains the queue; destroy still
 * runs everything. */
START_TEST(destroy_ignores_stop_from_its_handlers)
{
    struct tu_counter c = { 0 };
    io_context *ctx = tu_new_default_context();

    ck_assert_int_eq(io_context_post(ctx, stop_context, ctx), 0);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(io_context_post(ctx, tu_count, &c), 0);
    io_context_destroy(ctx);
    ck_assert_int_eq(tu_int(&c.calls), 4);
}
END_TEST

struct stats_reader {
    io_context *ctx;
    atomic_bool done;
    uint64_t last;
    bool went_backwards;
};

static void *read_stats_until_done(void *p)
{
    struct stats_reader *s = p;
    io_context_stats stats;

    while (!atomic_load(&s->done)) {
        io_context_get_stats(s->ctx, &stats);
        if (stats.handlers_run < s->last)
            s->went_backwards = true;
        s->last = stats.handlers_run;
        sched_yield();
    }
    return NULL;
}

/* get_stats is thread-safe: it may be called while handlers run. */
START_TEST(get_stats_is_safe_while_running)
{
    struct tu_counter c = { 0 };
    struct stats_reader reader = { .ctx = tu_new_default_context() };
    io_context_stats stats;
    pthread_t t;

    atomic_init(&reader.done, false);
    for (int i = 0; i < 20000; i++)
        ck_assert_int_eq(io_context_post(reader.ctx, tu_count, &c), 0);
    ck_assert_int_eq(pthread_create(&t, NULL, read_stats_until_done, &reader), 0);
    ck_assert_uint_eq(io_context_run(reader.ctx), 20000);
    atomic_store(&reader.done, true);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert(!reader.went_backwards);
    io_context_get_stats(reader.ctx, &stats);
    ck_assert_uint_eq(stats.handlers_run, 20000);
    io_context_destroy(reader.ctx);
}
END_TEST

/* Counts the threads of this process, and in *in_poll those blocked in
 * poll() or ppoll() (the first field of /proc/self/task/TID/syscall is the
 * number of the system call a blocked thread is in). */
static int count_threads(int *in_poll)
{
    struct dirent *e;
    int threads = 0;
    DIR *dir = opendir("/proc/self/task");

    ck_assert_ptr_nonnull(dir);
    *in_poll = 0;
    while ((e = readdir(dir)) != NULL) {
        char path[300];
        long nr = -1;
        FILE *f;

        if (e->d_name[0] == '.')
            continue;
        threads++;
        snprintf(path, sizeof(path), "/proc/self/task/%s/syscall", e->d_name);
        f = fopen(path, "r");
        if (f == NULL)
            continue;       /* the thread has just exited */
        if (fscanf(f, "%ld", &nr) == 1 && (nr == SYS_ppoll
#ifdef SYS_poll
                                           || nr == SYS_poll
#endif
                                           ))
            (*in_poll)++;
        fclose(f);
    }
    closedir(dir);
    return threads;
}

/* worker_threads threads, and an idle context waits in poll()
 * (on the wake-up fd), not on a condition variable.  Leader/followers: one
 * worker polls, the others wait for it to hand over. */
START_TEST(idle_workers_wait_in_poll)
{
    io_context_options opts = { .worker_threads = 3 };
    int with_workers, in_poll;
    io_context *ctx;

    /* Counted against the threads left after destroy: a sanitizer may
     * start a thread of its own at the first pthread_create. */
    ck_assert_int_eq(io_context_create(&ctx, &opts), 0);
    while ((with_workers = count_threads(&in_poll)) > 0 && in_poll == 0)
        sched_yield();      /* a worker may still be on its way to poll() */
    ck_assert_int_eq(in_poll, 1);
    io_context_destroy(ctx);
    /* pthread_join returns when a thread's tid is cleared, a moment
     * before the kernel takes its entry out of /proc/self/task. */
    for (time_t deadline = time(NULL) + TU_WAIT_S;
         with_workers - count_threads(&in_poll) < 3 && time(NULL) < deadline;)
        sched_yield();
    ck_assert_int_eq(with_workers - count_threads(&in_poll), 3);
    ck_assert_int_eq(in_poll, 0);
}
END_TEST

/* pthread_create is wrapped here (-Wl,--wrap): a test can make the n-th
 * call from now fail with EAGAIN, as when no stack can be had. */
int __real_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg);

static atomic_int thread_creates_until_failure;

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg)
{
    if (atomic_load(&thread_creates_until_failure) > 0
        && atomic_fetch_sub(&thread_creates_until_failure, 1) == 1)
        return EAGAIN;
    return __real_pthread_create(t, a, fn, arg);
}

/* A worker that cannot be started: create says ENOMEM (pthread_create's
 * EAGAIN is a want of memory or of a thread), the workers already
 * started are stopped and nothing is left allocated. */
START_TEST(failed_worker_start_gives_enomem_and_leaks_nothing)
{
    io_context_options opts = { .worker_threads = 3 };
    size_t live = io__alloc_live();

    for (int n = 1; n <= 3; n++) {
        io_context *ctx = NULL;

        atomic_store(&thread_creates_until_failure, n);
        ck_assert_int_eq(io_context_create(&ctx, &opts), ENOMEM);
        atomic_store(&thread_creates_until_failure, 0);
        ck_assert_ptr_null(ctx);
        ck_assert_uint_eq(io__alloc_live(), live);
    }
}
END_TEST

/* run, run_one, poll and poll_one called from a handler of the same
 * context (plain, on a strand, or inside destroy) return 0 at once and
 * run nothing; the outer run goes on and runs what is queued. */
struct nested {
    io_context *ctx;
    atomic_int calls;
    atomic_int nonzero;     /* nested calls that did not return 0 */
};

static void call_run_inside(void *arg)
{
    struct nested *n = arg;

    if (io_context_run(n->ctx) != 0 || io_context_run_one(n->ctx) != 0
        || io_context_poll(n->ctx) != 0 || io_context_poll_one(n->ctx) != 0)
        atomic_fetch_add(&n->nonzero, 1);
    atomic_fetch_add(&n->calls, 1);
}

START_TEST(run_from_a_handler_of_the_same_context_returns_zero)
{
    struct nested n = { .ctx = tu_new_context(1) };
    io_strand *strand = tu_new_strand(n.ctx);
    struct tu_counter after = { 0 };

    atomic_init(&n.calls, 0);
    atomic_init(&n.nonzero, 0);
    ck_assert_int_eq(io_context_post(n.ctx, call_run_inside, &n), 0);
    ck_assert_int_eq(io_strand_post(strand, call_run_inside, &n), 0);
    ck_assert_int_eq(io_context_post(n.ctx, tu_count, &after), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, n.ctx), 3);
    ck_assert_int_eq(tu_int(&n.calls), 2);
    ck_assert_int_eq(tu_int(&after.calls), 1);
    /* Inside destroy too. */
    ck_assert_int_eq(io_context_post(n.ctx, call_run_inside, &n), 0);
    io_strand_destroy(strand);
    tu_inside_run = true;
    tu_destroy_context(n.ctx);
    tu_inside_run = false;
    ck_assert_int_eq(tu_int(&n.calls), 3);
    ck_assert_int_eq(tu_int(&n.nonzero), 0);
}
END_TEST

void tu_add_tests(Suite *s)
{
    tu_add_tcase(s, "nested", TU_TESTS(run_from_a_handler_of_the_same_context_returns_zero));
    tu_add_tcase(s, "errors", TU_TESTS(null_arguments_give_einval,
                                       failed_worker_start_gives_enomem_and_leaks_nothing,
                                       create_accepts_options_and_zero_workers,
                                       out_of_memory_gives_enomem_and_loses_nothing));
    tu_add_tcase(s, "where handlers run", TU_TESTS(post_never_runs_the_handler_inside_post,
                                                   handlers_run_only_on_threads_inside_run));
    tu_add_tcase(s, "run and poll", TU_TESTS(run_without_work_returns_zero_and_stops,
                                             run_returns_the_number_of_handlers_it_ran,
                                             run_one_runs_exactly_one,
                                             poll_runs_ready_handlers_without_blocking,
                                             run_one_blocks_until_a_handler_is_ready,
                                             run_waits_for_running_handlers_before_returning));
    tu_add_tcase(s, "stop and work", TU_TESTS(stop_from_a_handler_wakes_every_run_thread,
                                              stop_leaves_queued_handlers_until_restart,
                                              stop_before_run_then_restart,
                                              work_started_keeps_run_alive_until_work_finished));
    tu_add_tcase(s, "concurrency", TU_TESTS(concurrent_posts_and_runs_run_each_handler_once,
                                            get_stats_is_safe_while_running,
                                            idle_workers_wait_in_poll,
                                            a_batch_of_completions_wakes_the_run_threads_it_needs));
    tu_add_tcase(s, "shutdown", TU_TESTS(destroy_runs_queued_handlers_and_what_they_post,
                                         destroy_ignores_stop_from_its_handlers));
}
