/*
 * bench_timer_common.h - what the bench_timer* programs share, so that
 * every library runs the very same timer workload: the command line,
 * the random expiries, the CPU clock and the result lines.
 *
 * Each program first starts P - 1 background timers, each with one wait
 * due between 30 and 60 minutes from now (random), which stay pending
 * through every measurement, then measures:
 *
 * 1. Lateness of expiry.  W waits on one more timer, one after another:
 *    each handler records how late it runs (the clock in the handler
 *    minus the wait's expiry) and starts the next wait 1 to 2 ms ahead,
 *    at a random offset within the millisecond, so that expiries fall
 *    anywhere on the clock.  One timer is due at a time: light load.
 *
 * 2. Cost of start and cancel.  N times, on T timers in turn: set the
 *    expiry 1 hour ahead, start a wait and cancel it, from a thread
 *    that runs no handlers; the run threads run the cancelled handlers
 *    meanwhile.  Wall time from the first start until the last handler
 *    has run, and the process's CPU time over the same span, per start.
 *    Since the background waits are all due earlier, a start moves the
 *    earliest expiry only when P is 1.
 *
 * 3. Idle CPU.  With the P - 1 background waits and one more pending, no
 *    handler due, the process's CPU time over --idle-ms, as a percentage
 *    of one core.  Skipped with --idle-ms 0.
 *
 * Command line (the same for every program; a program ignores what it
 * has no use for, e.g. --workers outside ioctx):
 *   --pending P --waits W --ops N --timers T --run-threads R --workers K --idle-ms MS
 *
 * Result lines, one per measurement, on stdout:
 *   NAME lateness P W p50_us p99_us max_us cpu_us_per_wait
 *   NAME cancel P N T ns_per_op cpu_ns_per_op
 *   NAME idle P MS cpu_percent_of_a_core
 */
#ifndef IOCTX_BENCH_TIMER_COMMON_H
#define IOCTX_BENCH_TIMER_COMMON_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct bt_options {
    unsigned long pending;      /* P: background timers + 1 */
    unsigned long waits;        /* W: measured waits, one after another */
    unsigned long ops;          /* N: starts (and cancels) */
    unsigned long timers;       /* T: timers the starts go round */
    unsigned run_threads;       /* threads running handlers, where the library has them */
    unsigned workers;           /* ioctx's worker threads */
    unsigned idle_ms;           /* 0: no idle measurement */
};

/* Nanoseconds of the background waits' distance (30 to 60 minutes) and of
 * the cancelled waits' (1 hour). */
#define BT_BACKGROUND_MIN_NS (1800ull * 1000000000ull)
#define BT_CANCELLED_NS (3600ull * 1000000000ull)

/* Parses the command line into *o.  Returns 0, or prints the usage and
 * returns 2 (the exit status). */
int bt_parse(struct bt_options *o, int argc, char **argv);

/* A pseudo-random number from *state (a seed the same in every program,
 * BT_SEED, gives every library the same expiries). */
#define BT_SEED 0x9e3779b97f4a7c15ull
uint64_t bt_random(uint64_t *state);

/* The delay of a background wait: 30 to 60 minutes, in nanoseconds. */
uint64_t bt_background_ns(uint64_t *state);

/* The delay of the next measured wait: 1 to 2 ms, in nanoseconds. */
uint64_t bt_measured_ns(uint64_t *state);

/* The process's CPU time (user + system, every thread) in seconds; the
 * wall clock is bench_common.h's bench_now(). */
double bt_cpu(void);

/* Records of the lateness measurement: bt_lateness_init() allocates W
 * slots (returns 0, or 1 having said why); the handler of measured wait i
 * stores its lateness, in nanoseconds, in ns[i] (negative: early). */
struct bt_lateness {
    int64_t *ns;
    unsigned long count;
    double cpu0;                /* the process's CPU time at bt_lateness_init() */
};
int bt_lateness_init(struct bt_lateness *l, const struct bt_options *o);
void bt_lateness_free(struct bt_lateness *l);

/* The result lines (bench_timer_common.h's header comment).  The
 * lateness line sorts l->ns. */
void bt_report_lateness(const char *name, const struct bt_options *o, struct bt_lateness *l);
void bt_report_cancel(const char *name, const struct bt_options *o, double wall_s, double cpu_s);
void bt_report_idle(const char *name, const struct bt_options *o, double wall_s, double cpu_s);

#ifdef __cplusplus
}
#endif

#endif /* IOCTX_BENCH_TIMER_COMMON_H */
