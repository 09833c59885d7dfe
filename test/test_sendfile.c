/*
 * test_sendfile.c - io_descriptor_async_sendfile: the file's bytes reach
 * the reader exactly, the file's own offset is untouched, the transfer
 * keeps its place among writes and is never interleaved, a short file
 * ends it with ENODATA and the bytes sent, a cancel mid-transfer reports
 * exactly what the reader got, a destination sendfile(2) refuses goes
 * through a copy, and bad input is refused before anything happens.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "alloc.h"
#include "test_util.h"

/* A temporary file holding len bytes of pattern key, unlinked already. */
static int temp_file(size_t len, uint64_t key)
{
    char path[] = "/tmp/ioctx-sendfile-XXXXXX";
    unsigned char *data = tu_new_pattern(len, key);
    int fd = mkstemp(path);
    size_t done = 0;

    ck_assert_int_ge(fd, 0);
    unlink(path);
    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);

        ck_assert_int_gt(n, 0);
        done += (size_t)n;
    }
    free(data);
    return fd;
}

static int start_sendfile(io_descriptor *d, int fd, uint64_t offset, size_t count,
                          struct tu_result *r, io_cancel_signal *sig)
{
    return io_descriptor_async_sendfile(d, fd, offset, count, tu_record, r, sig);
}

/* A part of the file, from an offset, to a socket and to a pipe: the
 * reader gets exactly those bytes, the file's offset has not moved, and
 * the stats count the calls and bytes. */
START_TEST(sends_the_range_and_leaves_the_file_offset)
{
    enum { LEN = 1 << 20, OFF = 1000, COUNT = 600000 };
    static const enum tu_stream_kind kinds[] = { TU_SOCKETPAIR, TU_PIPE };
    unsigned char *want = tu_new_pattern(LEN, 5);
    int file = temp_file(LEN, 5);

    for (int k = 0; k < 2; k++) {
        struct tu_stream io;
        struct tu_result r;
        struct tu_reader reader;

        ck_assert_int_eq(lseek(file, 123, SEEK_SET), 123);
        tu_stream_open(&io, kinds[k], 1);
        tu_results_init(&r, 1);
        tu_reader_start(&reader, io.peer, COUNT, COUNT);
        ck_assert_int_eq(start_sendfile(io.d, file, OFF, COUNT, &r, NULL), 0);
        ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 1);
        tu_assert_result_in_run(&r, 0, COUNT);
        tu_reader_finish(&reader, want + OFF, COUNT);
        ck_assert_int_eq(lseek(file, 0, SEEK_CUR), 123);
        ck_assert_uint_eq(tu_stats(io.ctx).bytes_written, COUNT);
        ck_assert_uint_ge(tu_stats(io.ctx).writev_calls, 1);
        ck_assert_uint_eq(tu_stats(io.ctx).ops_completed, 1);
        tu_stream_close(&io);
    }
    close(file);
    free(want);
}
END_TEST

/* write, sendfile, write: the reader sees them in that order; count 0
 * completes with 0 and 0 bytes without a system call. */
START_TEST(keeps_its_place_among_writes)
{
    enum { LEN = 300000 };
    unsigned char *file_bytes = tu_new_pattern(LEN, 9), *got = malloc(LEN + 10);
    int file = temp_file(LEN, 9);
    struct tu_stream io;
    struct tu_result r[4];
    struct tu_order_log log;
    struct tu_reader reader;

    tu_stream_open(&io, TU_SOCKETPAIR, 1);
    tu_order_log_init(&log);
    tu_results_init_logged(r, 4, &log);
    tu_reader_start(&reader, io.peer, LEN + 10, LEN + 10);
    ck_assert_int_eq(tu_write_all(io.d, "head:", 5, &r[0]), 0);
    ck_assert_int_eq(start_sendfile(io.d, file, 0, LEN, &r[1], NULL), 0);
    ck_assert_int_eq(start_sendfile(io.d, file, 0, 0, &r[2], NULL), 0);
    ck_assert_int_eq(tu_write_all(io.d, ":tail", 5, &r[3]), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 4);
    tu_assert_result_in_run(&r[0], 0, 5);
    tu_assert_result_in_run(&r[1], 0, LEN);
    tu_assert_result_in_run(&r[2], 0, 0);
    tu_assert_result_in_run(&r[3], 0, 5);
    tu_assert_in_order(&log, 4);
    memcpy(got, "head:", 5);
    memcpy(got + 5, file_bytes, LEN);
    memcpy(got + 5 + LEN, ":tail", 5);
    tu_reader_finish(&reader, got, LEN + 10);
    tu_stream_close(&io);
    close(file);
    free(got);
    free(file_bytes);
}
END_TEST

/* A sendfile from one thread while another starts small writes: the
 * file's bytes arrive in one piece, never split by a write. */
struct writer {
    io_descriptor *d;
    struct tu_result r[200];
};

static void *write_dashes(void *arg)
{
    struct writer *w = arg;

    for (int i = 0; i < 200; i++)
        ck_assert_int_eq(tu_write_all(w->d, "-----", 5, &w->r[i]), 0);
    return NULL;
}

START_TEST(is_never_interleaved_with_concurrent_writes)
{
    enum { LEN = 1 << 20 };
    char path[] = "/tmp/ioctx-sendfile-XXXXXX";
    int file = mkstemp(path);
    unsigned char *block = malloc(LEN), *got = malloc(LEN + 1000);
    struct tu_stream io;
    struct writer w;
    struct tu_result r;
    struct tu_reader reader;
    pthread_t thread;
    size_t first = SIZE_MAX, last = 0;

    ck_assert(file >= 0 && block != NULL && got != NULL);
    unlink(path);
    memset(block, 'F', LEN);
    ck_assert_int_eq(write(file, block, LEN), LEN);
    tu_stream_open(&io, TU_SMALL_SOCKETPAIR, 2);
    w.d = io.d;
    tu_results_init(w.r, 200);
    tu_results_init(&r, 1);
    tu_reader_start(&reader, io.peer, LEN + 1000, LEN + 1000);
    ck_assert_int_eq(pthread_create(&thread, NULL, write_dashes, &w), 0);
    ck_assert_int_eq(start_sendfile(io.d, file, 0, LEN, &r, NULL), 0);
    pthread_join(thread, NULL);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 201);
    tu_assert_result_in_run(&r, 0, LEN);
    tu_reader_join(&reader);
    ck_assert_uint_eq(reader.got, LEN + 1000);
    for (size_t i = 0; i < LEN + 1000; i++) {
        if (reader.buf[i] == 'F') {
            first = first == SIZE_MAX ? i : first;
            last = i;
        }
    }
    ck_assert_uint_eq(last - first + 1, LEN);
    free(reader.buf);
    tu_stream_close(&io);
    close(file);
    free(got);
    free(block);
}
END_TEST

/* The file ends first: ENODATA, and the bytes that were sent. */
START_TEST(short_file_ends_with_enodata)
{
    int file = temp_file(100, 3);
    unsigned char *want = tu_new_pattern(100, 3), got[100];
    struct tu_stream io;
    struct tu_result r;

    tu_stream_open(&io, TU_SOCKETPAIR, 1);
    tu_results_init(&r, 1);
    ck_assert_int_eq(start_sendfile(io.d, file, 40, 200, &r, NULL), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 1);
    tu_assert_result_in_run(&r, ENODATA, 60);
    tu_read_exactly(io.peer, got, 60);
    ck_assert_mem_eq(got, want + 40, 60);
    ck_assert_uint_eq(io_descriptor_queued_bytes(io.d), 0);
    tu_stream_close(&io);
    close(file);
    free(want);
}
END_TEST

/* Cancelled while it waits for a reader that stopped: ECANCELED and
 * exactly the bytes the reader can read. */
START_TEST(cancel_mid_transfer_reports_what_the_reader_got)
{
    enum { LEN = 4 << 20 };
    static const unsigned types[] = { IO_CANCEL_TERMINAL, IO_CANCEL_PARTIAL };
    unsigned char *want = tu_new_pattern(LEN, 4), *got = malloc(LEN);
    int file = temp_file(LEN, 4);

    ck_assert_ptr_nonnull(got);
    for (int k = 0; k < 3; k++) {
        struct tu_stream io;
        struct tu_result r;
        io_cancel_signal *sig = tu_new_signal();
        size_t avail;

        tu_stream_open(&io, TU_SMALL_SOCKETPAIR, 1);
        tu_results_init(&r, 1);
        ck_assert_int_eq(start_sendfile(io.d, file, 0, LEN, &r, sig), 0);
        tu_wait_unwritable(io.fd);
        if (k < 2)
            io_cancel_signal_emit(sig, types[k]);
        else
            ck_assert_int_eq(io_descriptor_cancel(io.d), 0);
        ck_assert_uint_eq(tu_run_marked(io_context_run, io.ctx), 1);
        tu_assert_result_in_run(&r, ECANCELED, tu_result_bytes(&r));
        avail = tu_read_available(io.peer, got, LEN, NULL);
        ck_assert_uint_eq(avail, tu_result_bytes(&r));
        ck_assert_uint_gt(avail, 0);
        ck_assert_mem_eq(got, want, avail);
        io_cancel_signal_destroy(sig);
        tu_stream_close(&io);
    }
    close(file);
    free(got);
    free(want);
}
END_TEST

/* sendfile(2) refuses an O_APPEND destination: the bytes go through a
 * copy instead, all of them. */
START_TEST(falls_back_to_a_copy_where_sendfile_cannot_write)
{
    enum { LEN = 200000 };
    char path[] = "/tmp/ioctx-append-XXXXXX";
    int file = temp_file(LEN, 6), out = mkstemp(path);
    unsigned char *want = tu_new_pattern(LEN, 6), *got = malloc(LEN);
    io_context *ctx = tu_new_context(1);
    io_descriptor *d;
    struct tu_result r;

    ck_assert(out >= 0 && got != NULL);
    unlink(path);
    ck_assert_int_eq(fcntl(out, F_SETFL, O_APPEND), 0);
    d = tu_new_descriptor(ctx, out, NULL);
    tu_results_init(&r, 1);
    ck_assert_int_eq(start_sendfile(d, file, 0, LEN, &r, NULL), 0);
    ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 1);
    tu_assert_result_in_run(&r, 0, LEN);
    ck_assert_int_eq(pread(out, got, LEN, 0), LEN);
    ck_assert_mem_eq(got, want, LEN);
    io_descriptor_destroy(d);
    tu_destroy_context(ctx);
    close(file);
    free(got);
    free(want);
}
END_TEST

/* EINVAL first (NULLs, an offset past INT64_MAX), then EBADF for a file
 * not open for reading, count 0 too; ENOMEM loses nothing. */
START_TEST(bad_input_is_refused_in_order)
{
    struct tu_stream io;
    struct tu_result r;
    int fds[2], file = temp_file(10, 1);

    tu_stream_open(&io, TU_SOCKETPAIR, 1);
    tu_results_init(&r, 1);
    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(io_descriptor_async_sendfile(NULL, -1, 0, 1, tu_record, &r, NULL), EINVAL);
    ck_assert_int_eq(io_descriptor_async_sendfile(io.d, -1, 0, 1, NULL, &r, NULL), EINVAL);
    ck_assert_int_eq(start_sendfile(io.d, -1, (uint64_t)INT64_MAX + 1, 1, &r, NULL), EINVAL);
    ck_assert_int_eq(start_sendfile(io.d, -1, 0, 1, &r, NULL), EBADF);
    ck_assert_int_eq(start_sendfile(io.d, -1, 0, 0, &r, NULL), EBADF);
    ck_assert_int_eq(start_sendfile(io.d, fds[1], 0, 0, &r, NULL), EBADF);
    io__alloc_fail_after(1);
    ck_assert_int_eq(start_sendfile(io.d, file, 0, 10, &r, NULL), ENOMEM);
    io__alloc_fail_after(0);
    ck_assert_uint_eq(tu_stats(io.ctx).ops_started, 0);
    ck_assert_uint_eq(tu_run_marked(io_context_poll, io.ctx), 0);
    ck_assert_int_eq(tu_int(&r.calls), 0);
    close(fds[0]);
    close(fds[1]);
    close(file);
    tu_stream_close(&io);
}
END_TEST

/* A connected TCP pair on loopback: sv[0] for the descriptor. */
static void tcp_pair(int sv[2])
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    int listener = socket(AF_INET, SOCK_STREAM, 0);

    ck_assert_int_ge(listener, 0);
    ck_assert_int_eq(bind(listener, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(listener, 1), 0);
    ck_assert_int_eq(getsockname(listener, (struct sockaddr *)&a, &len), 0);
    sv[1] = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_eq(connect(sv[1], (struct sockaddr *)&a, sizeof(a)), 0);
    sv[0] = accept(listener, NULL, NULL);
    ck_assert_int_ge(sv[0], 0);
    close(listener);
}

/* A header written right before a sendfile goes with MSG_MORE, to share
 * packets with the file; when the sendfile then sends nothing (count 0,
 * a file already at its end), the header must not stay held back in the
 * kernel (200 ms on TCP): once the handlers ran, nothing is left unsent. */
START_TEST(header_before_an_empty_sendfile_is_not_held_back)
{
    int file = temp_file(10, 7);

    for (int how = 0; how < 2; how++) {
        io_context *ctx = tu_new_context(1);
        struct tu_result r[2];
        io_descriptor *d;
        char got[6];
        int sv[2], unsent = -1;

        tcp_pair(sv);
        d = tu_new_descriptor(ctx, sv[0], NULL);
        tu_results_init(r, 2);
        ck_assert_int_eq(tu_write_all(d, "header", 6, &r[0]), 0);
        ck_assert_int_eq(start_sendfile(d, file, how == 0 ? 0 : 10, how == 0 ? 0 : 5, &r[1], NULL), 0);
        ck_assert_uint_eq(tu_run_marked(io_context_run, ctx), 2);
        tu_assert_result_in_run(&r[0], 0, 6);
        tu_assert_result_in_run(&r[1], how == 0 ? 0 : ENODATA, 0);
        ck_assert_int_eq(ioctl(sv[0], SIOCOUTQNSD, &unsent), 0);
        ck_assert_int_eq(unsent, 0);
        tu_read_exactly(sv[1], got, 6);
        ck_assert_mem_eq(got, "header", 6);
        io_descriptor_destroy(d);
        close(sv[1]);
        tu_destroy_context(ctx);
    }
    close(file);
}
END_TEST

void tu_add_tests(Suite *s)
{
    tu_add_tcase(s, "content", TU_TESTS(sends_the_range_and_leaves_the_file_offset,
                                        keeps_its_place_among_writes,
                                        is_never_interleaved_with_concurrent_writes,
                                        short_file_ends_with_enodata,
                                        header_before_an_empty_sendfile_is_not_held_back,
                                        falls_back_to_a_copy_where_sendfile_cannot_write));
    tu_add_tcase(s, "cancel", TU_TESTS(cancel_mid_transfer_reports_what_the_reader_got));
    tu_add_tcase(s, "input", TU_TESTS(bad_input_is_refused_in_order));
}
