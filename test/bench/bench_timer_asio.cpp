// bench_timer_asio.cpp - the timer workload (bench_timer_common.h) on
// standalone Asio: asio::steady_timer.
//
// R threads (--run-threads, default 2) run the io_context; Asio has no
// worker threads (--workers does not apply): a run thread waits in epoll
// with the reactor's timerfd.  Every timer is built on a strand of its
// own, since ioctx runs a timer's handlers on a strand too.  Lateness:
// the handler reads steady_clock::now() first and subtracts the timer's
// expiry().  Start and cancel: expires_after + async_wait + cancel from
// the main thread; each handler must run, with operation_aborted, before
// the time stops.  Every background wait must end once, with
// operation_aborted, when its timer is destroyed.
#include <asio.hpp>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <memory>
#include <semaphore.h>
#include <thread>
#include <vector>

#include "bench_timer_common.h"

namespace {

using Timer = asio::steady_timer;
using std::chrono::nanoseconds;

// The wall clock in seconds (CLOCK_MONOTONIC, as the C programs').
double now_s()
{
    return std::chrono::duration<double>(Timer::clock_type::now().time_since_epoch()).count();
}

struct Bench {
    bt_options o;
    asio::io_context ctx;
    uint64_t rng = BT_SEED;
    sem_t done;                 // posted when a measurement's last handler has run
    std::vector<std::unique_ptr<Timer>> background, set;
    std::unique_ptr<Timer> measured;
    // The measured waits: only the handler of the wait in progress (or
    // the main thread, before the first) touches these.
    unsigned long waits_done = 0;
    bt_lateness late = { nullptr, 0, 0.0 };
    std::atomic<unsigned long> cancelled{0}, ended{0}, wrong{0};

    std::unique_ptr<Timer> new_timer() { return std::unique_ptr<Timer>(new Timer(asio::make_strand(ctx))); }

    void wait_done()
    {
        while (sem_wait(&done) != 0 && errno == EINTR)
            continue;
    }

    void start_measured()
    {
        measured->expires_after(nanoseconds(bt_measured_ns(&rng)));
        measured->async_wait([this](const asio::error_code &ec) {
            auto lateness = Timer::clock_type::now() - measured->expiry();

            late.ns[waits_done++] = std::chrono::duration_cast<nanoseconds>(lateness).count();
            if (ec || waits_done == o.waits) {
                if (ec)
                    wrong++;
                sem_post(&done);
            } else {
                start_measured();
            }
        });
    }

    void start_far(Timer &t, uint64_t delay_ns)
    {
        t.expires_after(nanoseconds(delay_ns));
        t.async_wait([this](const asio::error_code &ec) {
            if (ec != asio::error::operation_aborted)
                wrong++;
            ended++;
        });
    }

    int measure_lateness()
    {
        if (bt_lateness_init(&late, &o) != 0)
            return 1;
        start_measured();
        wait_done();
        bt_report_lateness("asio", &o, &late);
        return 0;
    }

    int measure_cancel()
    {
        double t0 = now_s(), c0 = bt_cpu();
        unsigned long not_cancelled = 0;

        for (unsigned long i = 0; i < o.ops; i++) {
            Timer &t = *set[i % o.timers];

            t.expires_after(nanoseconds(BT_CANCELLED_NS));
            t.async_wait([this](const asio::error_code &ec) {
                if (ec != asio::error::operation_aborted)
                    wrong++;
                if (++cancelled == o.ops)
                    sem_post(&done);
            });
            not_cancelled += t.cancel() != 1;
        }
        wait_done();
        bt_report_cancel("asio", &o, now_s() - t0, bt_cpu() - c0);
        if (not_cancelled != 0)
            std::fprintf(stderr, "asio: %lu waits were not cancelled\n", not_cancelled);
        return not_cancelled != 0;
    }

    void measure_idle()
    {
        start_far(*measured, BT_CANCELLED_NS);
        double t0 = now_s(), c0 = bt_cpu();
        std::this_thread::sleep_for(std::chrono::milliseconds(o.idle_ms));
        bt_report_idle("asio", &o, now_s() - t0, bt_cpu() - c0);
    }
};

}  // namespace

int main(int argc, char **argv)
{
    Bench b;
    int status = bt_parse(&b.o, argc, argv);
    if (status != 0)
        return status;
    if (sem_init(&b.done, 0, 0) != 0)
        return 1;

    auto guard = asio::make_work_guard(b.ctx);
    std::vector<std::thread> runners;
    for (unsigned i = 0; i < b.o.run_threads; i++)
        runners.emplace_back([&b] { b.ctx.run(); });

    b.measured = b.new_timer();
    for (unsigned long i = 0; i < b.o.timers; i++)
        b.set.push_back(b.new_timer());
    for (unsigned long i = 0; i + 1 < b.o.pending; i++) {
        b.background.push_back(b.new_timer());
        b.start_far(*b.background.back(), bt_background_ns(&b.rng));
    }
    status = b.measure_lateness();
    if (status == 0)
        status = b.measure_cancel();
    if (status == 0 && b.o.idle_ms > 0)
        b.measure_idle();

    // Destroying a timer cancels its waits.
    b.background.clear();
    b.set.clear();
    b.measured.reset();
    guard.reset();
    for (auto &t : runners)
        t.join();
    unsigned long far_waits = b.o.pending - 1 + (b.o.idle_ms > 0);
    if (status == 0 && (b.wrong != 0 || b.ended != far_waits)) {
        std::fprintf(stderr, "asio: %lu handlers with an unexpected result; %lu of %lu far waits ended\n",
                     b.wrong.load(), b.ended.load(), far_waits);
        status = 1;
    }
    bt_lateness_free(&b.late);
    sem_destroy(&b.done);
    return status;
}
