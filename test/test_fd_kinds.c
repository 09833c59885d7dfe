/*
 * test_fd_kinds.c - which fds a descriptor takes and what it does to them
 * (create: open fds only, O_NONBLOCK set, the caller's number kept,
 * nothing leaked when memory runs out), and that every kind of fd a
 * program writes to gets every byte: a regular file, /dev/null, a pty;
 * and that a worker inside a file's write leaves sockets to the others.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <termios.h>

#include "alloc.h"
#include "test_util.h"

START_TEST(create_rejects_fds_that_are_not_open)
{
    io_context *ctx = tu_new_context(0);
    io_descriptor *d = NULL;
    int fds[2];

    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(close(fds[0]), 0);
    ck_assert_int_eq(close(fds[1]), 0);
    ck_assert_int_eq(io_descriptor_create(ctx, fds[1], NULL, &d), EBADF);
    ck_assert_int_eq(io_descriptor_create(ctx, -1, NULL, &d), EBADF);
    ck_assert_ptr_null(d);
    ck_assert_uint_eq(io_context_run(ctx), 0);
    tu_destroy_context(ctx);
}
END_TEST

/* NULL arguments give EINVAL, and the calls that tolerate NULL do. */
START_TEST(null_arguments_give_einval)
{
    io_context *ctx = tu_new_context(0);
    io_descriptor *d = NULL;
    int fds[2];

    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(io_descriptor_create(NULL, fds[1], NULL, &d), EINVAL);
    ck_assert_ptr_null(d);
    ck_assert_int_eq(io_descriptor_create(ctx, fds[1], NULL, NULL), EINVAL);
    {
        /* Completions of one context cannot run on another's strand. */
        io_context *other = tu_new_context(0);
        io_strand *foreign;

        ck_assert_int_eq(io_strand_create(other, &foreign), 0);
        ck_assert_int_eq(io_descriptor_create(ctx, fds[1], foreign, &d), EINVAL);
        ck_assert_ptr_null(d);
        io_strand_destroy(foreign);
        tu_destroy_context(other);
    }
    ck_assert(!tu_is_closed(fds[1]));   /* a refused create took no charge */
    ck_assert(!tu_is_nonblocking(fds[1]));

    ck_assert_int_eq(io_descriptor_native_handle(NULL), -1);
    ck_assert_uint_eq(io_descriptor_queued_bytes(NULL), 0);
    ck_assert_int_eq(io_descriptor_cancel(NULL), EINVAL);
    ck_assert_int_eq(io_descriptor_close(NULL), EINVAL);
    errno = 0;
    ck_assert_int_eq(io_descriptor_release(NULL), -1);
    ck_assert_int_eq(errno, EINVAL);
    io_descriptor_destroy(NULL);
    ck_assert_uint_eq(io_context_run(ctx), 0);
    tu_destroy_context(ctx);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

/* create sets O_NONBLOCK; the fd stays the caller's number. */
START_TEST(create_sets_nonblocking_and_reports_the_fd)
{
    io_context *ctx = tu_new_context(0);
    io_descriptor *d;
    int fds[2];

    ck_assert_int_eq(pipe(fds), 0);
    ck_assert(!tu_is_nonblocking(fds[1]));
    d = tu_new_descriptor(ctx, fds[1], NULL);
    ck_assert(tu_is_nonblocking(fds[1]));
    ck_assert_int_eq(io_descriptor_native_handle(d), fds[1]);
    ck_assert(io_descriptor_is_open(d));
    ck_assert_uint_eq(io_descriptor_queued_bytes(d), 0);
    io_descriptor_destroy(d);
    tu_destroy_context(ctx);
    close(fds[0]);
}
END_TEST

/* ENOMEM at any allocation of create, with nothing leaked and the fd left
 * open; the create that succeeds gives a working descriptor. */
START_TEST(create_out_of_memory_gives_enomem_and_leaks_nothing)
{
    io_context *ctx = tu_new_context(0);
    size_t baseline = io__alloc_live();
    io_descriptor *d = NULL;
    struct tu_result r;
    bool eof;
    char c = 0;
    int fds[2], err;
    long n;

    ck_assert_int_eq(pipe(fds), 0);
    for (n = 1; n < 100; n++) {
        io__alloc_fail_after(n);
        err = io_descriptor_create(ctx, fds[1], NULL, &d);
        io__alloc_fail_after(0);
        if (err == 0)
            break;
        ck_assert_int_eq(err, ENOMEM);
        ck_assert_uint_eq(io__alloc_live(), baseline);
        ck_assert(!tu_is_closed(fds[1]));
    }
    ck_assert_int_eq(err, 0);
    ck_assert_int_gt(n, 1);            /* the first allocation did fail it */
    tu_results_init(&r, 1);
    ck_assert_int_eq(tu_write_all(d, "m", 1, &r), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 1);
    tu_assert_result_in_run(&r, 0, 1);
    ck_assert_uint_eq(tu_read_available(fds[0], (unsigned char *)&c, 1, &eof), 1);
    ck_assert_int_eq(c, 'm');
    io_descriptor_destroy(d);
    tu_destroy_context(ctx);
    close(fds[0]);
}
END_TEST

/* Writes len bytes of data to fd with one async_write of the given
 * buffers, runs it, and checks the handler's result. */
static void write_and_run(int fd, const struct iovec *iov, int count, size_t len)
{
    io_context *ctx = tu_new_context(0);
    io_descriptor *d = tu_new_descriptor(ctx, fd, NULL);
    struct tu_result r;

    tu_results_init(&r, 1);
    ck_assert_int_eq(io_descriptor_async_write(d, iov, (size_t)count, tu_record, &r, NULL), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 1);
    tu_assert_result_in_run(&r, 0, len);
    io_descriptor_destroy(d);
    tu_destroy_context(ctx);
}

START_TEST(regular_file_gets_every_byte)
{
    static const size_t sizes[3] = { 70001, 1, 30000 };
    unsigned char *data = tu_new_pattern(sizes[0] + sizes[1] + sizes[2], 10), *got;
    char path[] = "/tmp/ioctx-test-XXXXXX";
    struct iovec iov[3];
    size_t total;
    int fd, check;

    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    check = open(path, O_RDONLY);
    ck_assert_int_ge(check, 0);
    ck_assert_int_eq(unlink(path), 0);
    total = tu_split(iov, data, sizes, 3);
    got = malloc(total + 1);
    ck_assert_ptr_nonnull(got);
    write_and_run(fd, iov, 3, total);
    ck_assert_int_eq(pread(check, got, total + 1, 0), (ssize_t)total);
    ck_assert(memcmp(got, data, total) == 0);
    close(check);
    free(got);
    free(data);
}
END_TEST

START_TEST(dev_null_takes_a_mebibyte)
{
    size_t size = (size_t)1 << 20;
    unsigned char *data = calloc(1, size);
    struct iovec iov = io_buffer(data, size);
    int fd;

    ck_assert_ptr_nonnull(data);
    fd = open("/dev/null", O_WRONLY);
    ck_assert_int_ge(fd, 0);
    write_and_run(fd, &iov, 1, size);
    free(data);
}
END_TEST

/*
 * A write to a regular file may sleep in the kernel (a slow disk): with
 * two workers, the one inside it must not hold up a socket's write while
 * the other sleeps.  The file's writev is held at a gate until the
 * socket's handler has run; a library that left the socket to the busy
 * worker would never run it, and the wait would time out.
 */
START_TEST(a_worker_inside_a_file_write_leaves_a_socket_to_another)
{
    char path[] = "/tmp/ioctx-test-XXXXXX";
    io_context *ctx = tu_new_context(2);
    struct tu_result file_written, sock_written;
    struct tu_latch sock_done;
    struct tu_call_gate gate;
    struct tu_runner runner;
    io_descriptor *file, *sock;
    unsigned char byte;
    int fd, sv[2];

    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    file = tu_new_descriptor(ctx, fd, NULL);
    sock = tu_new_descriptor(ctx, sv[0], NULL);
    tu_results_init(&file_written, 1);
    tu_results_init(&sock_written, 1);
    tu_latch_init(&sock_done, 1);
    sock_written.done = &sock_done;

    io_context_work_started(ctx);
    tu_runner_start(&runner, ctx, io_context_run, NULL);
    tu_gate_next_write(fd, &gate);
    ck_assert_int_eq(tu_write_all(file, "f", 1, &file_written), 0);
    ck_assert(tu_latch_wait_for(&gate.entered, TU_WAIT_S));
    ck_assert_int_eq(tu_write_all(sock, "s", 1, &sock_written), 0);
    ck_assert_msg(tu_latch_wait_for(&sock_done, TU_WAIT_S),
                  "the socket's write waited for the worker inside the file's");
    tu_latch_count_down(&gate.released);
    io_context_work_finished(ctx);
    ck_assert_uint_eq(tu_runner_join(&runner), 2);

    tu_assert_result(&sock_written, 0, 1);
    tu_assert_result(&file_written, 0, 1);
    tu_read_exactly(sv[1], &byte, 1);
    ck_assert_int_eq(byte, 's');
    ck_assert_int_eq(pread(fd, &byte, 1, 0), 1);
    ck_assert_int_eq(byte, 'f');
    io_descriptor_destroy(file);
    io_descriptor_destroy(sock);
    close(sv[1]);
    tu_latch_destroy(&sock_done);
    tu_destroy_context(ctx);
}
END_TEST

/* A raw pty: what goes into the slave comes out of the master unchanged. */
START_TEST(pty_slave_writes_reach_the_master)
{
    size_t size = 32768;
    unsigned char *data = tu_new_pattern(size, 11);
    struct iovec iov = io_buffer(data, size);
    struct termios tio;
    struct tu_reader r;
    const char *name;
    int master, slave;

    master = posix_openpt(O_RDWR | O_NOCTTY);
    ck_assert_int_ge(master, 0);
    ck_assert_int_eq(grantpt(master), 0);
    ck_assert_int_eq(unlockpt(master), 0);
    name = ptsname(master);
    ck_assert_ptr_nonnull(name);
    slave = open(name, O_RDWR | O_NOCTTY);
    ck_assert_int_ge(slave, 0);
    ck_assert_int_eq(tcgetattr(slave, &tio), 0);
    cfmakeraw(&tio);
    ck_assert_int_eq(tcsetattr(slave, TCSANOW, &tio), 0);

    tu_reader_start(&r, master, size, size);
    write_and_run(slave, &iov, 1, size);
    tu_reader_finish(&r, data, size);
    close(master);
    free(data);
}
END_TEST

/* A descriptor is for writing: an fd that cannot be written is refused
 * at create, not in every handler later; the fd is left as it was. */
START_TEST(create_rejects_fds_not_open_for_writing)
{
    io_context *ctx = tu_new_context(1);
    io_descriptor *d = NULL;
    int fds[2], dir;

    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(io_descriptor_create(ctx, fds[0], NULL, &d), EBADF);
    ck_assert_ptr_null(d);
    ck_assert(!tu_is_nonblocking(fds[0]));
    dir = open("/", O_RDONLY | O_DIRECTORY);
    ck_assert_int_ge(dir, 0);
    ck_assert_int_eq(io_descriptor_create(ctx, dir, NULL, &d), EBADF);
    ck_assert_ptr_null(d);
    close(dir);
    close(fds[0]);
    close(fds[1]);
    tu_destroy_context(ctx);
}
END_TEST

/* One fd, one open descriptor per context: a second one is EEXIST; once
 * the first is closed or released the number is free again; another
 * context is not concerned. */
START_TEST(create_rejects_an_fd_already_held_in_the_context)
{
    io_context *ctx = tu_new_context(1), *other = tu_new_context(1);
    io_descriptor *d, *again = NULL, *elsewhere;
    int fds[2], fd;

    ck_assert_int_eq(pipe(fds), 0);
    d = tu_new_descriptor(ctx, fds[1], NULL);
    ck_assert_int_eq(io_descriptor_create(ctx, fds[1], NULL, &again), EEXIST);
    ck_assert_ptr_null(again);
    elsewhere = tu_new_descriptor(other, fds[1], NULL);
    io_descriptor_destroy(elsewhere);           /* closes fds[1] */
    ck_assert(io_descriptor_is_open(d));
    io_descriptor_destroy(d);                   /* EBADF inside: already closed */

    ck_assert_int_eq(pipe(fds), 0);
    d = tu_new_descriptor(ctx, fds[1], NULL);
    fd = io_descriptor_release(d);
    ck_assert_int_eq(fd, fds[1]);
    again = tu_new_descriptor(ctx, fd, NULL);   /* released: free again */
    io_descriptor_destroy(again);
    io_descriptor_destroy(d);
    close(fds[0]);
    tu_destroy_context(ctx);
    tu_destroy_context(other);
}
END_TEST

/* fds above what the map holds at first: it grows, and still tells. */
START_TEST(create_claims_high_fd_numbers)
{
    io_context *ctx = tu_new_context(1);
    io_descriptor *d, *again = NULL;
    struct rlimit rl;
    int fds[2], high;

    /* Room for fd 5000: the soft limit is often 1,024, the hard one more. */
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    ck_assert_msg(rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 5000,
                  "RLIMIT_NOFILE's hard limit is below 5,001");
    rl.rlim_cur = rl.rlim_max;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    ck_assert_int_eq(pipe(fds), 0);
    high = fcntl(fds[1], F_DUPFD, 5000);
    ck_assert_int_ge(high, 5000);
    d = tu_new_descriptor(ctx, high, NULL);
    ck_assert_int_eq(io_descriptor_create(ctx, high, NULL, &again), EEXIST);
    io_descriptor_destroy(d);
    again = tu_new_descriptor(ctx, fds[1], NULL);  /* a low one, after growth */
    io_descriptor_destroy(again);
    close(fds[0]);
    tu_destroy_context(ctx);
}
END_TEST

/* On a datagram or seqpacket socket each write is one message: queued
 * writes are never merged into one datagram, and a write that fits alone
 * is not refused for the company of another (EMSGSIZE). */
struct message_reader {
    pthread_t thread;
    int fd;
    int expect;             /* a datagram socket sees no end: count them */
    int count;
    size_t sizes[16];
};

static void *read_messages(void *arg)
{
    struct message_reader *m = arg;
    static unsigned char buf[200000];

    for (m->count = 0; m->count < m->expect; m->count++) {
        ssize_t n = recv(m->fd, buf, sizeof(buf), 0);

        if (n <= 0)
            break;
        m->sizes[m->count] = (size_t)n;
    }
    return NULL;
}

START_TEST(message_sockets_keep_one_message_per_write)
{
    static const int types[] = { SOCK_DGRAM, SOCK_SEQPACKET };
    static unsigned char data[120000];

    for (int k = 0; k < 2; k++) {
        enum { SMALL = 8 };
        io_context *ctx = tu_new_context(1);
        struct tu_result r[SMALL + 2];
        struct message_reader m = { 0 };
        io_descriptor *d;
        int sv[2], i;

        ck_assert_int_eq(socketpair(AF_UNIX, types[k], 0, sv), 0);
        d = tu_new_descriptor(ctx, sv[0], NULL);
        tu_results_init(r, SMALL + 2);
        /* Queued together before any worker turn could send them one by
         * one: the small ones behind a big one. */
        ck_assert_int_eq(tu_write_all(d, data, sizeof(data), &r[0]), 0);
        for (i = 1; i <= SMALL; i++)
            ck_assert_int_eq(tu_write_some(d, data, (size_t)(100 + 10 * i), &r[i]), 0);
        ck_assert_int_eq(tu_write_all(d, data, sizeof(data), &r[SMALL + 1]), 0);
        m.fd = sv[1];
        m.expect = SMALL + 2;
        /* Merged messages would leave the reader waiting: not for ever. */
        ck_assert_int_eq(setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO,
                                    &(struct timeval){ TU_WAIT_S, 0 }, sizeof(struct timeval)), 0);
        ck_assert_int_eq(pthread_create(&m.thread, NULL, read_messages, &m), 0);
        ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), SMALL + 2);
        pthread_join(m.thread, NULL);
        io_descriptor_destroy(d);
        tu_assert_result_in_run(&r[0], 0, sizeof(data));
        for (i = 1; i <= SMALL; i++)
            tu_assert_result_in_run(&r[i], 0, (size_t)(100 + 10 * i));
        tu_assert_result_in_run(&r[SMALL + 1], 0, sizeof(data));
        ck_assert_int_eq(m.count, SMALL + 2);
        ck_assert_uint_eq(m.sizes[0], sizeof(data));
        for (i = 1; i <= SMALL; i++)
            ck_assert_uint_eq(m.sizes[i], (size_t)(100 + 10 * i));
        ck_assert_uint_eq(m.sizes[SMALL + 1], sizeof(data));
        close(sv[1]);
        tu_destroy_context(ctx);
    }
}
END_TEST

void tu_add_tests(Suite *s)
{
    tu_add_tcase(s, "strict", TU_TESTS(create_rejects_fds_not_open_for_writing,
                                       create_rejects_an_fd_already_held_in_the_context,
                                       create_claims_high_fd_numbers));
    tu_add_tcase(s, "create", TU_TESTS(create_rejects_fds_that_are_not_open,
                                       null_arguments_give_einval,
                                       create_sets_nonblocking_and_reports_the_fd,
                                       create_out_of_memory_gives_enomem_and_leaks_nothing));
    tu_add_tcase(s, "kinds", TU_TESTS(message_sockets_keep_one_message_per_write,
                                      regular_file_gets_every_byte, dev_null_takes_a_mebibyte,
                                      pty_slave_writes_reach_the_master));
    tu_add_tcase(s, "workers", TU_TESTS(a_worker_inside_a_file_write_leaves_a_socket_to_another));
}
