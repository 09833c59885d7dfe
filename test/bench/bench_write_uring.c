/*
 * bench_write_uring.c - the write workload (bench_write_common.h) on
 * io_uring (liburing).
 *
 * One ring, owned by one thread that submits and reaps.  Producers append
 * their message to a mutex-protected queue and, unless a wake-up is
 * already pending, write an eventfd on which the ring keeps a read in
 * flight.  The ring thread moves messages to their connection's queue and
 * keeps at most one writev in flight per connection, which keeps each
 * connection's messages in order and never interleaved; a short write is
 * resubmitted for the rest.  The ring thread's handling of a message's
 * last completion is its handler.  --run-threads and --workers do not
 * apply.  writes_per_msg counts the writev submissions (SQEs): the kernel
 * makes the writes, batched into few io_uring_enter calls.
 *
 * Where the kernel refuses io_uring (EPERM or ENOSYS in a sandbox, or
 * kernel.io_uring_disabled), prints "uring skipped ..." and exits 77.
 * It also sits out --slow: a stuck writev would have to be cancelled with
 * IORING_OP_ASYNC_CANCEL before its fd is closed, which this peer does
 * not do.
 */
#include <errno.h>
#include <liburing.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "bench_write_common.h"

/* What the ring thread knows of one connection; only it touches this. */
struct uring_conn {
    int fd;
    struct bw_msg_list waiting;     /* behind the one in flight */
    struct bw_msg *inflight;
    size_t done;                    /* bytes of inflight already written */
    struct iovec iov;               /* what its writev writes */
};

struct uring_bench {
    struct bw_bench *bench;
    struct io_uring ring;
    bool ring_ready;
    int efd;
    uint64_t efd_value;             /* target of the eventfd read */
    struct uring_conn *conns;
    unsigned long long writes;      /* writev SQEs, ring thread only */
    struct bw_handoff queue;        /* from the producers */
    atomic_bool wake_pending;
};

static void submit(void *impl, struct bw_msg *m)
{
    struct uring_bench *ub = impl;
    uint64_t one = 1;

    bw_handoff_push(&ub->queue, m);
    /* One eventfd write per batch: the ring thread clears the flag before
     * it takes the queue, so a message appended later writes again. */
    if (!atomic_exchange(&ub->wake_pending, true) && write(ub->efd, &one, sizeof(one)) < 0) {
        perror("uring: eventfd write");
        exit(1);
    }
}

static void fatal(const char *what, int err)
{
    fprintf(stderr, "uring: %s: %s\n", what, strerror(err));
    exit(1);
}

/* An SQE, submitting what is queued if the submission queue is full. */
static struct io_uring_sqe *get_sqe(struct uring_bench *ub)
{
    struct io_uring_sqe *sqe;

    while ((sqe = io_uring_get_sqe(&ub->ring)) == NULL) {
        int ret = io_uring_submit(&ub->ring);

        if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
            fatal("io_uring_submit", -ret);
    }
    return sqe;
}

static void arm_wakeup(struct uring_bench *ub)
{
    struct io_uring_sqe *sqe = get_sqe(ub);

    io_uring_prep_read(sqe, ub->efd, &ub->efd_value, sizeof(ub->efd_value), 0);
    io_uring_sqe_set_data(sqe, NULL);
}

/* Queues a writev of the rest of c->inflight. */
static void write_rest(struct uring_bench *ub, struct uring_conn *c)
{
    struct io_uring_sqe *sqe = get_sqe(ub);

    c->iov.iov_base = c->inflight->data + c->done;
    c->iov.iov_len = c->inflight->size - c->done;
    io_uring_prep_writev(sqe, c->fd, &c->iov, 1, 0);
    io_uring_sqe_set_data(sqe, c);
    ub->writes++;
}

static void start(struct uring_bench *ub, struct uring_conn *c, struct bw_msg *m)
{
    c->inflight = m;
    c->done = 0;
    write_rest(ub, c);
}

static void take_handed_over(struct uring_bench *ub)
{
    struct bw_msg *m, *next;

    atomic_store(&ub->wake_pending, false);
    for (m = bw_handoff_take(&ub->queue); m != NULL; m = next) {
        struct uring_conn *c = &ub->conns[m->conn];

        next = m->next;
        if (c->inflight == NULL)
            start(ub, c, m);
        else
            bw_list_push(&c->waiting, m);
    }
}

static void on_write(struct uring_bench *ub, struct uring_conn *c, int res)
{
    struct bw_msg *m = c->inflight;
    int error = 0;

    if (res == -EAGAIN || res == -EINTR) {
        write_rest(ub, c);
        return;
    }
    if (res > 0) {
        c->done += (size_t)res;
        if (c->done < m->size) {
            write_rest(ub, c);
            return;
        }
    } else {
        error = res < 0 ? -res : EIO;
    }
    bw_complete(m, error, c->done);     /* m belongs to its producer again */
    m = bw_list_pop(&c->waiting);
    if (m == NULL)
        c->inflight = NULL;
    else
        start(ub, c, m);
}

static void *ring_main(void *arg)
{
    struct uring_bench *ub = arg;

    arm_wakeup(ub);
    while (!bw_all_completed(ub->bench)) {
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        int ret = io_uring_submit_and_wait(&ub->ring, 1);

        if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
            fatal("io_uring_submit_and_wait", -ret);
        io_uring_for_each_cqe(&ub->ring, head, cqe) {
            struct uring_conn *c = io_uring_cqe_get_data(cqe);

            seen++;
            if (c != NULL) {
                on_write(ub, c, cqe->res);
                continue;
            }
            if (cqe->res < 0 && cqe->res != -EINTR && cqe->res != -EAGAIN)
                fatal("eventfd read", -cqe->res);
            take_handed_over(ub);
            arm_wakeup(ub);
        }
        io_uring_cq_advance(&ub->ring, seen);
    }
    return NULL;
}

/* 0, BW_EXIT_SKIP where the kernel refuses io_uring, or 1. */
static int setup(struct bw_bench *b, struct uring_bench *ub)
{
    unsigned entries = 8;
    int ret;

    ub->bench = b;
    if (b->o.slow > 0)
        return bw_skip("uring", "(--slow: cancelling a stuck writev before its close is not implemented)");
    /* At most one write per connection and the eventfd read in flight,
     * so the completion queue (twice this) cannot overflow. */
    while (entries < b->o.connections + 2)
        entries *= 2;
    ret = io_uring_queue_init(entries, &ub->ring, 0);
    if (ret < 0) {
        char why[128];

        snprintf(why, sizeof(why), "(io_uring_queue_init: %s; the kernel or a sandbox refuses io_uring)",
                 strerror(-ret));
        return bw_skip("uring", why);
    }
    ub->ring_ready = true;
    ub->efd = eventfd(0, EFD_CLOEXEC);
    ub->conns = calloc(b->o.connections, sizeof(*ub->conns));
    if (ub->efd < 0 || ub->conns == NULL)
        return 1;
    for (unsigned c = 0; c < b->o.connections; c++)
        ub->conns[c].fd = b->write_fds[c];     /* left blocking: io_uring polls for us */
    return 0;
}

int main(int argc, char **argv)
{
    struct bw_bench b;
    struct uring_bench ub = { .efd = -1, .queue = BW_HANDOFF_INIT };
    int status = bw_init(&b, "uring", argc, argv);

    if (status == 0)
        status = setup(&b, &ub);
    if (status == 0)
        status = bw_run_beside(&b, ring_main, submit, &ub);
    if (status == 0)
        status = bw_report(&b, (long long)ub.writes);
    if (ub.ring_ready)
        io_uring_queue_exit(&ub.ring);
    if (ub.efd >= 0)
        close(ub.efd);
    free(ub.conns);
    bw_fini(&b);
    return status;
}
