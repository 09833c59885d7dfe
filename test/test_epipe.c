/*
 * test_epipe.c - a write to a pipe without a reader, or to a socket
 * without a peer, fails with EPIPE (a socket may say ECONNRESET) and
 * never raises SIGPIPE: SIGPIPE stays at its default here, so a signal
 * would kill the test process and fail the test.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/socket.h>

#include "test_util.h"

/* How many threads of this process have a SIGPIPE pending, from the
 * SigPnd mask of each in /proc (a blocked signal waits there for ever). */
static int threads_with_sigpipe_pending(void)
{
    char path[300], line[256];
    int count = 0;
    DIR *dir = opendir("/proc/self/task");
    struct dirent *e;

    ck_assert_ptr_nonnull(dir);
    while ((e = readdir(dir)) != NULL) {
        FILE *f;

        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
        f = fopen(path, "r");
        if (f == NULL)
            continue;   /* the thread just exited */
        while (fgets(line, sizeof(line), f) != NULL) {
            unsigned long long mask;

            if (sscanf(line, "SigPnd: %llx", &mask) == 1 && (mask & (1ull << (SIGPIPE - 1))))
                count++;
        }
        fclose(f);
    }
    closedir(dir);
    return count;
}

/* An async_write and an async_write_some to fd, whose reader is gone:
 * both fail with no byte written.  Returns the error of each in err. */
static void write_without_reader(int fd, int err[2])
{
    io_context *ctx = tu_new_context(0);
    io_descriptor *d = tu_new_descriptor(ctx, fd, NULL);
    struct tu_result r[2];

    tu_results_init(r, 2);
    ck_assert_int_eq(tu_write_all(d, "x", 1, &r[0]), 0);
    ck_assert_int_eq(tu_write_some(d, "yz", 2, &r[1]), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 2);
    for (int i = 0; i < 2; i++) {
        err[i] = tu_result_error(&r[i]);
        tu_assert_result_in_run(&r[i], err[i], 0);
    }
    /* Checked with the workers still running: the one that got EPIPE
     * keeps SIGPIPE blocked, so a signal it raised would wait there. */
    ck_assert_int_eq(threads_with_sigpipe_pending(), 0);
    io_descriptor_destroy(d);
    tu_destroy_context(ctx);
}

/* Each EPIPE left a SIGPIPE pending on the worker, and the library must
 * have taken it away. */
START_TEST(write_to_a_pipe_without_reader_gives_epipe)
{
    int fds[2], err[2];

    signal(SIGPIPE, SIG_DFL);
    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(close(fds[0]), 0);
    write_without_reader(fds[1], err);
    ck_assert_int_eq(err[0], EPIPE);
    ck_assert_int_eq(err[1], EPIPE);
}
END_TEST

/* MSG_NOSIGNAL: not even a blocked SIGPIPE is left pending on a worker. */
START_TEST(write_to_a_socket_without_peer_gives_epipe)
{
    int sv[2], err[2];

    signal(SIGPIPE, SIG_DFL);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ck_assert_int_eq(close(sv[1]), 0);
    write_without_reader(sv[0], err);
    for (int i = 0; i < 2; i++)
        ck_assert_msg(err[i] == EPIPE || err[i] == ECONNRESET, "op %d: error %d (%s)", i, err[i],
                      strerror(err[i]));
}
END_TEST

void tu_add_tests(Suite *s)
{
    tu_add_tcase(s, "errors", TU_TESTS(write_to_a_pipe_without_reader_gives_epipe,
                                       write_to_a_socket_without_peer_gives_epipe));
}
