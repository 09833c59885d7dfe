// bench_write_asio.cpp - the write workload (bench_write_common.h) on
// standalone Asio.
//
// Asio forbids a second async_write on a descriptor before the first has
// completed, so each connection gets what every Asio user has to write: a
// strand and a write queue.  A producer posts the message to the
// connection's strand; there it is appended to a deque, and async_write of
// the front starts when none is in flight; its completion handler (on the
// strand) is the message's handler and starts the next one.  R threads
// (--run-threads) run the io_context, which both writes (Asio has no
// worker threads: the reactor writes on the run threads) and runs the
// handlers; --workers does not apply.  writes_per_msg: the interposer's
// count of write system calls on the connections.
//
// --slow: once every message's handler has run, io_context::stop() stops
// the run threads; close() on each slow connection's stream_descriptor
// (its stuck async_write completes with operation_aborted, which is
// ECANCELED) is timed; then run() on the main thread runs those handlers
// and returns when no work is left.
#include <asio.hpp>

#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include "bench_write_common.h"

namespace {

struct Connection {
    Connection(asio::io_context &ctx, int fd) : strand(asio::make_strand(ctx)), stream(ctx, fd) {}

    asio::strand<asio::io_context::executor_type> strand;
    asio::posix::stream_descriptor stream;
    std::deque<bw_msg *> queue;     // only the strand touches it; front is in flight
};

void write_front(Connection *c)
{
    bw_msg *m = c->queue.front();

    asio::async_write(c->stream, asio::buffer(m->data, m->size),
                      asio::bind_executor(c->strand, [c, m](const asio::error_code &ec, std::size_t n) {
                          bw_complete(m, ec ? ec.value() : 0, n);
                          c->queue.pop_front();
                          if (!c->queue.empty())
                              write_front(c);
                      }));
}

using Connections = std::vector<std::unique_ptr<Connection>>;

void submit(void *impl, bw_msg *m)
{
    Connection *c = (*static_cast<Connections *>(impl))[m->conn].get();

    asio::post(c->strand, [c, m] {
        c->queue.push_back(m);
        if (c->queue.size() == 1)
            write_front(c);
    });
}

void close_one(void *impl, unsigned conn)
{
    asio::error_code ec;

    (*static_cast<Connections *>(impl))[conn]->stream.close(ec);
    if (ec) {
        std::fprintf(stderr, "asio: close: %s\n", ec.message().c_str());
        std::exit(1);
    }
}

}  // namespace

int main(int argc, char **argv)
{
    bw_bench b;
    int status = bw_init(&b, "asio", argc, argv);

    if (status != 0) {
        bw_fini(&b);
        return status;
    }
    {
        asio::io_context ctx;
        Connections conns;

        for (unsigned c = 0; c < bw_conns(&b); c++) {
            conns.emplace_back(new Connection(ctx, b.write_fds[c]));
            b.write_fds[c] = -1;    // the stream_descriptor closes it
        }
        auto guard = asio::make_work_guard(ctx);
        std::vector<std::thread> runners;
        for (unsigned t = 0; t < b.o.run_threads; t++)
            runners.emplace_back([&ctx] { ctx.run(); });
        bw_submit_stuck(&b, submit, &conns);
        if (bw_start(&b) != 0)
            std::exit(1);           // the run threads wait for the guard
        bw_produce(&b, submit, &conns);
        bw_wait_completed(&b);
        bw_stop(&b);
        ctx.stop();
        for (auto &t : runners)
            t.join();
        bw_close_stuck(&b, close_one, &conns);
        guard.reset();
        ctx.restart();
        ctx.run();                  // the stuck writes' handlers
        status = bw_report(&b, bw_interposed_writes(&b));
    }
    bw_fini(&b);
    return status;
}
