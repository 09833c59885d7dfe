/*
 * test_faults.c - the library loses nothing under faults: allocation
 * failure at every step of a scenario, errors from the kernel (ECONNRESET,
 * an fd closed behind the library's back, signals interrupting the
 * workers), and no fd left for the wake-up eventfd.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "alloc.h"
#include "ioctx.h"
#include "test_util.h"

/* What one call's handler saw (calls stays 0 for a refused call), and
 * whether the call was accepted. */
struct result {
    struct tu_result seen;
    bool accepted;
};

static void init_results(struct result *r, int n)
{
    for (int i = 0; i < n; i++) {
        tu_results_init(&r[i].seen, 1);
        r[i].accepted = false;
    }
}

static void on_post(void *arg)
{
    atomic_fetch_add(&((struct result *)arg)->seen.calls, 1);
}

/* A call either succeeded or said ENOMEM; records which. */
static void expect_ok_or_enomem(struct result *r, int err)
{
    ck_assert_msg(err == 0 || err == ENOMEM, "unexpected %d (%s)", err, strerror(err));
    r->accepted = err == 0;
}

#define SCENARIO_CALLS 12

/*
 * One run of the scenario with allocations failing from the n-th on (once).
 * Every call returns 0 or ENOMEM; only accepted calls' handlers run, each
 * once; nothing stays allocated.  Returns whether a failure was injected.
 */
static bool run_scenario(long n)
{
    static const char text[] = "0123456789abcdef";
    size_t baseline = io__alloc_live(), failures = io__alloc_injected_failures();
    io_context_options two = { .worker_threads = 2 };
    struct result r[SCENARIO_CALLS];
    io_cancel_signal *sig = NULL;
    io_descriptor *d = NULL;
    io_strand *strand = NULL;
    io_context *ctx = NULL;
    struct tu_reader reader;
    struct iovec iov = io_buffer(text, sizeof(text) - 1);
    int sv[2], err, k = 0;

    init_results(r, SCENARIO_CALLS);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    tu_reader_start(&reader, sv[1], 0, 0);

    io__alloc_fail_after(n);
    err = io_context_create(&ctx, &two);
    ck_assert(err == 0 || err == ENOMEM);
    if (err == 0) {
        err = io_strand_create(ctx, &strand);
        ck_assert(err == 0 || err == ENOMEM);
        err = io_descriptor_create(ctx, sv[0], strand, &d);
        ck_assert(err == 0 || err == ENOMEM);
        if (err != 0) {
            /* A refused create leaves the fd as it was: blocking, open. */
            ck_assert_int_eq(fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0);
            d = NULL;
        }
        err = io_cancel_signal_create(&sig);
        ck_assert(err == 0 || err == ENOMEM);
        if (err != 0)
            sig = NULL;
        expect_ok_or_enomem(&r[k], io_context_post(ctx, on_post, &r[k]));
        k++;
        if (strand != NULL) {
            expect_ok_or_enomem(&r[k], io_strand_post(strand, on_post, &r[k]));
            k++;
        }
        if (d != NULL) {
            expect_ok_or_enomem(&r[k], io_descriptor_async_write(d, &iov, 1, tu_record, &r[k].seen, sig));
            k++;
            expect_ok_or_enomem(&r[k], io_descriptor_async_write_some(d, &iov, 1, tu_record, &r[k].seen, NULL));
            k++;
            expect_ok_or_enomem(&r[k], io_descriptor_async_write(d, &iov, 1, tu_record, &r[k].seen, NULL));
            k++;
        }
        expect_ok_or_enomem(&r[k], io_context_post(ctx, on_post, &r[k]));
        k++;
        io_context_run(ctx);
        io_descriptor_destroy(d);
        io_cancel_signal_destroy(sig);
        io_strand_destroy(strand);
        io_context_destroy(ctx);
    }
    if (d == NULL)
        close(sv[0]);       /* never handed to the library */
    tu_reader_join(&reader);
    free(reader.buf);
    close(sv[1]);
    io__alloc_fail_after(0);

    for (int i = 0; i < k; i++) {
        ck_assert_msg(tu_int(&r[i].seen.calls) == (r[i].accepted ? 1 : 0),
                      "n=%ld call %d: accepted %d, handler ran %d times", n, i,
                      r[i].accepted, tu_int(&r[i].seen.calls));
        if (r[i].accepted && atomic_load(&r[i].seen.bytes) != SIZE_MAX)
            ck_assert_int_eq(tu_int(&r[i].seen.error), 0);
    }
    ck_assert_msg(io__alloc_live() == baseline, "n=%ld: %zu blocks leaked", n,
                  io__alloc_live() - baseline);
    return io__alloc_injected_failures() != failures;
}

START_TEST(every_allocation_can_fail_and_nothing_is_lost)
{
    long n = 1;

    while (run_scenario(n))
        n++;
    fprintf(stderr, "faults: scenario passed with the allocation failing at each of %ld steps\n",
            n - 1);
    ck_assert_int_ge(n, 8);     /* the scenario really allocates that often */
}
END_TEST

/* A TCP pair on loopback: the peer closes with our data unread, so the
 * kernel resets the connection. */
static void tcp_pair(int *client, int *server)
{
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(addr);
    int listener = socket(AF_INET, SOCK_STREAM, 0);

    ck_assert_int_ge(listener, 0);
    ck_assert_int_eq(bind(listener, (struct sockaddr *)&addr, sizeof(addr)), 0);
    ck_assert_int_eq(listen(listener, 1), 0);
    ck_assert_int_eq(getsockname(listener, (struct sockaddr *)&addr, &len), 0);
    *client = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(*client, 0);
    ck_assert_int_eq(connect(*client, (struct sockaddr *)&addr, sizeof(addr)), 0);
    *server = accept(listener, NULL, NULL);
    ck_assert_int_ge(*server, 0);
    close(listener);
}

/* ECONNRESET reaches the handler; the context keeps serving others. */
START_TEST(connection_reset_reaches_the_handler)
{
    io_context *ctx;
    io_descriptor *d, *other;
    struct result r[3];
    struct pollfd pfd;
    int client, server, sv[2];
    char got[8];

    signal(SIGPIPE, SIG_DFL);
    init_results(r, 3);
    tcp_pair(&client, &server);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(write(client, "unread", 6), 6);
    pfd = (struct pollfd){ .fd = server, .events = POLLIN };
    ck_assert_int_eq(poll(&pfd, 1, -1), 1);         /* the data is there, unread */
    close(server);                                   /* -> RST */
    pfd = (struct pollfd){ .fd = client, .events = POLLIN };
    ck_assert_int_eq(poll(&pfd, 1, -1), 1);         /* the reset has arrived */

    ctx = tu_new_default_context();
    d = tu_new_descriptor(ctx, client, NULL);
    other = tu_new_descriptor(ctx, sv[0], NULL);
    {
        struct iovec iov = io_buffer("data", 4);

        ck_assert_int_eq(io_descriptor_async_write(d, &iov, 1, tu_record, &r[0].seen, NULL), 0);
        ck_assert_int_eq(io_descriptor_async_write_some(d, &iov, 1, tu_record, &r[1].seen, NULL), 0);
        ck_assert_int_eq(io_descriptor_async_write(other, &iov, 1, tu_record, &r[2].seen, NULL), 0);
    }
    ck_assert_uint_eq(io_context_run(ctx), 3);
    ck_assert_int_eq(tu_int(&r[0].seen.error), ECONNRESET);
    ck_assert_int_eq(tu_int(&r[1].seen.error), EPIPE);    /* the reset is reported once */
    ck_assert_uint_eq(atomic_load(&r[0].seen.bytes), 0);
    ck_assert_uint_eq(atomic_load(&r[1].seen.bytes), 0);
    ck_assert_int_eq(tu_int(&r[2].seen.error), 0);
    ck_assert_int_eq(read(sv[1], got, sizeof(got)), 4);
    io_context_destroy(ctx);
    close(sv[1]);
}
END_TEST

/* An fd closed behind the library's back: the write says EBADF; the
 * context keeps serving the other descriptors. */
START_TEST(fd_closed_behind_the_library_gives_ebadf)
{
    io_context *ctx;
    io_descriptor *d, *other;
    struct result r[2];
    int a[2], b[2];
    char got[8];

    init_results(r, 2);
    ck_assert_int_eq(pipe(a), 0);
    ck_assert_int_eq(pipe(b), 0);
    ctx = tu_new_default_context();
    d = tu_new_descriptor(ctx, a[1], NULL);
    other = tu_new_descriptor(ctx, b[1], NULL);
    ck_assert_int_eq(close(a[1]), 0);   /* behind the library's back */
    {
        struct iovec iov = io_buffer("data", 4);

        ck_assert_int_eq(io_descriptor_async_write(d, &iov, 1, tu_record, &r[0].seen, NULL), 0);
        ck_assert_int_eq(io_descriptor_async_write(other, &iov, 1, tu_record, &r[1].seen, NULL), 0);
    }
    ck_assert_uint_eq(io_context_run(ctx), 2);
    ck_assert_int_eq(tu_int(&r[0].seen.error), EBADF);
    ck_assert_int_eq(tu_int(&r[1].seen.error), 0);
    ck_assert_int_eq(read(b[0], got, sizeof(got)), 4);
    io_descriptor_release(d);           /* the fd is gone already: do not close it again */
    io_context_destroy(ctx);
    close(a[0]);
    close(b[0]);
}
END_TEST

static atomic_int signals_caught;

static void count_signal(int sig)
{
    (void)sig;
    atomic_fetch_add(&signals_caught, 1);
}

struct storm {
    pthread_t thread;
    atomic_bool stop;
    pid_t spared[8];            /* the test's own threads */
    int nspared;
};

/* Sends SIGUSR1 to every thread of the process but the test's own, in a
 * loop, until told to stop: the workers' poll() and writev() get EINTR. */
static void *signal_storm(void *arg)
{
    struct storm *st = arg;
    pid_t self = tu_gettid();

    while (!atomic_load(&st->stop)) {
        DIR *dir = opendir("/proc/self/task");
        struct dirent *e;

        ck_assert_ptr_nonnull(dir);
        while ((e = readdir(dir)) != NULL) {
            pid_t tid = (pid_t)atoi(e->d_name);
            bool spared = tid <= 0 || tid == self;

            for (int i = 0; i < st->nspared; i++)
                spared = spared || tid == st->spared[i];
            if (!spared)
                syscall(SYS_tgkill, getpid(), tid, SIGUSR1);
        }
        closedir(dir);
        sched_yield();
    }
    return NULL;
}

#define EINTR_WRITES 400
#define EINTR_LEN 2048

/* One stream of EINTR_WRITES writes and its reader's buffer. */
struct eintr_stream {
    io_descriptor *d;
    int read_end;
    struct result r[EINTR_WRITES];
    unsigned char *got;
    size_t total;
};

/*
 * EINTR never reaches a handler: with signals (installed handler, no
 * SA_RESTART) raining on the workers, every write completes whole and the
 * readers get every byte in order.  Two streams: a socket with a tiny send
 * buffer (the workers' poll() is interrupted) and a pipe made blocking
 * behind the library's back (a worker sleeps in writev and is interrupted
 * there, often before it wrote a byte).
 */
START_TEST(signals_interrupting_workers_never_reach_handlers)
{
    struct sigaction sa = { .sa_handler = count_signal };
    struct eintr_stream *streams = calloc(2, sizeof(*streams));
    size_t want = EINTR_WRITES * EINTR_LEN;
    struct storm st = { .nspared = 0 };
    unsigned char *data;
    io_context *ctx;
    int sv[2], fds[2];

    ck_assert_ptr_nonnull(streams);
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
    atomic_init(&signals_caught, 0);
    atomic_init(&st.stop, false);
    data = tu_new_pattern(want, 70);
    tu_small_socketpair(sv);
    (void)tu_small_pipe(fds);
    st.spared[st.nspared++] = tu_gettid();
    ctx = tu_new_context(2);
    streams[0].d = tu_new_descriptor(ctx, sv[0], NULL);
    streams[1].d = tu_new_descriptor(ctx, fds[1], NULL);
    tu_make_blocking(fds[1]);
    streams[0].read_end = sv[1];
    streams[1].read_end = fds[0];
    ck_assert_int_eq(pthread_create(&st.thread, NULL, signal_storm, &st), 0);
    /* The storm has reached the workers before the first write, so that a
     * fast transfer cannot finish before any signal lands (1 run in 300). */
    while (tu_int(&signals_caught) == 0)
        sched_yield();

    for (int k = 0; k < 2; k++) {
        init_results(streams[k].r, EINTR_WRITES);
        streams[k].got = malloc(want);
        ck_assert_ptr_nonnull(streams[k].got);
        for (int i = 0; i < EINTR_WRITES; i++) {
            struct iovec iov = io_buffer(data + (size_t)i * EINTR_LEN, EINTR_LEN);

            ck_assert_int_eq(io_descriptor_async_write(streams[k].d, &iov, 1, tu_record,
                                                       &streams[k].r[i].seen, NULL), 0);
        }
    }
    /* Read both on this (spared) thread while the storm goes on. */
    while (streams[0].total < want || streams[1].total < want) {
        struct pollfd pfd[2] = { { .fd = sv[1], .events = POLLIN }, { .fd = fds[0], .events = POLLIN } };

        if (poll(pfd, 2, -1) < 0) {
            ck_assert_int_eq(errno, EINTR);
            continue;
        }
        for (int k = 0; k < 2; k++) {
            struct eintr_stream *es = &streams[k];
            ssize_t n;

            if (!(pfd[k].revents & POLLIN) || es->total == want)
                continue;
            /* Small reads, so that the pipe is often full when a worker
             * starts a write and sleeps in it. */
            n = read(es->read_end, es->got + es->total, k == 1 ? 512 : want - es->total);
            if (n > 0)
                es->total += (size_t)n;
            else
                ck_assert_msg(n < 0 && errno == EINTR, "read: %s", strerror(errno));
        }
    }
    ck_assert_uint_eq(io_context_run(ctx), 2 * EINTR_WRITES);
    atomic_store(&st.stop, true);
    ck_assert_int_eq(pthread_join(st.thread, NULL), 0);

    ck_assert_int_gt(tu_int(&signals_caught), 0);
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < EINTR_WRITES; i++) {
            ck_assert_int_eq(tu_int(&streams[k].r[i].seen.calls), 1);
            ck_assert_int_eq(tu_int(&streams[k].r[i].seen.error), 0);
            ck_assert_uint_eq(atomic_load(&streams[k].r[i].seen.bytes), EINTR_LEN);
        }
        ck_assert(memcmp(streams[k].got, data, want) == 0);
        io_descriptor_destroy(streams[k].d);
        free(streams[k].got);
    }
    io_context_destroy(ctx);
    close(sv[1]);
    close(fds[0]);
    free(data);
    free(streams);
}
END_TEST

/* With no fd left for the fds the workers wait on (an eventfd, and an
 * epoll fd with that backend), create says so (EMFILE) and leaves nothing
 * behind, also when it got some of them; as soon as enough fds are free it
 * works again. */
START_TEST(no_fd_left_for_the_wakeup_fd)
{
    size_t baseline = io__alloc_live(), freed = 0;
    struct rlimit old, tight;
    int fillers[64], nfill = 0, fd, err;
    io_context *ctx = NULL;

    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
    /* The limit just above the highest fd in use, then fill the holes. */
    fd = open("/dev/null", O_RDONLY);
    ck_assert_int_ge(fd, 0);
    close(fd);
    tight = old;
    tight.rlim_cur = (rlim_t)fd + 8;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &tight), 0);
    while (nfill < 64 && (fd = open("/dev/null", O_RDONLY)) >= 0)
        fillers[nfill++] = fd;
    ck_assert_int_eq(errno, EMFILE);

    /* One fd more each round: no backend needs more than two. */
    while ((err = io_context_create(&ctx, NULL)) != 0) {
        ck_assert_int_eq(err, EMFILE);
        ck_assert_ptr_null(ctx);
        ck_assert_uint_eq(io__alloc_live(), baseline);
        ck_assert_uint_lt(freed, 2);
        close(fillers[--nfill]);
        freed++;
    }
    ck_assert_uint_ge(freed, 1);
    io_context_destroy(ctx);
    while (nfill > 0)
        close(fillers[--nfill]);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
    ck_assert_uint_eq(io__alloc_live(), baseline);
}
END_TEST

void tu_add_tests(Suite *s)
{
    tu_add_tcase(s, "memory", TU_TESTS(every_allocation_can_fail_and_nothing_is_lost));
    tu_add_tcase(s, "kernel", TU_TESTS(connection_reset_reaches_the_handler,
                                       fd_closed_behind_the_library_gives_ebadf,
                                       signals_interrupting_workers_never_reach_handlers,
                                       no_fd_left_for_the_wakeup_fd));
}
