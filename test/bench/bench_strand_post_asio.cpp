// bench_strand_post_asio.cpp - the workload of bench_strand_post.c on
// standalone Asio: io_context + strand + post, same thread counts, same
// handler.  Prints "asio <handlers per second>".
#include <asio.hpp>

#include <cstdio>
#include <thread>
#include <vector>

extern "C" {
#include "bench_common.h"
}

namespace {

struct StrandSlot {
    explicit StrandSlot(asio::io_context &ctx) : strand(asio::make_strand(ctx)) {}
    asio::strand<asio::io_context::executor_type> strand;
    unsigned long count = 0;      // only the strand's handlers touch it
    char pad[48];
};

}  // namespace

int main(int argc, char **argv)
{
    bench_options o;
    if (bench_parse(argc, argv, &o) != 0)
        return 2;

    asio::io_context ctx;
    std::vector<std::unique_ptr<StrandSlot>> slots;
    for (unsigned s = 0; s < o.strands; s++)
        slots.emplace_back(new StrandSlot(ctx));

    double start = bench_now();
    auto guard = asio::make_work_guard(ctx);
    std::vector<std::thread> runners, posters;
    for (unsigned t = 0; t < o.threads; t++)
        runners.emplace_back([&ctx] { ctx.run(); });
    for (unsigned p = 0; p < o.posters; p++)
        posters.emplace_back([&, p] {
            unsigned long n = o.handlers / o.posters;
            for (unsigned long i = 0; i < n; i++) {
                StrandSlot *slot = slots[(i + p) % o.strands].get();
                asio::post(slot->strand, [slot] { slot->count++; });
            }
        });
    for (auto &t : posters)
        t.join();
    guard.reset();
    for (auto &t : runners)
        t.join();
    double elapsed = bench_now() - start;

    unsigned long total = 0;
    for (auto &slot : slots)
        total += slot->count;
    if (total != o.handlers) {
        std::fprintf(stderr, "lost handlers: posted %lu, ran %lu\n", o.handlers, total);
        return 1;
    }
    std::printf("asio %.0f\n", static_cast<double>(total) / elapsed);
    return 0;
}
