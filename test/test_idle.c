/*
 * test_idle.c - an idle context costs no CPU: once its work is done, the
 * workers and the threads blocked in io_context_run sleep in the kernel
 * rather than spin or wake on a timer, so a server with nothing to write
 * leaves the cores to others.
 */
#include <dirent.h>
#include <errno.h>
#include <sys/resource.h>
#include <time.h>

#include "test_util.h"

/* 1% of one core over the measured second. */
#define IDLE_CPU_LIMIT_S 0.01
#define IDLE_MEASURE_MS 1000
/* Long enough for every worker's watch for more work (tens of
 * microseconds, spin.h) to have expired and for it to be asleep in the
 * poller; the run threads are seen asleep before this starts. */
#define IDLE_SETTLE_MS 200
#define IDLE_MAX_THREADS 64

static void sleep_ms(long ms)
{
    struct timespec left = { ms / 1000, (ms % 1000) * 1000000L };

    while (nanosleep(&left, &left) != 0 && errno == EINTR)
        continue;
}

static double process_cpu_seconds(void)
{
    struct rusage ru;

    ck_assert_int_eq(getrusage(RUSAGE_SELF, &ru), 0);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec)
           + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* One thread's CPU time so far, in clock ticks (utime + stime, fields 14
 * and 15 of /proc/self/task/TID/stat): coarse, but enough to say which
 * threads used the CPU when the process used too much. */
struct thread_cpu {
    pid_t tid;
    unsigned long long ticks;
};

static unsigned long long thread_ticks(pid_t tid)
{
    char buf[512];
    const char *fields = tu_thread_stat(tid, buf, sizeof(buf));
    unsigned long long utime, stime;

    /* state, ppid, pgrp, session, tty_nr, tpgid, flags, minflt, cminflt,
     * majflt, cmajflt, then utime and stime. */
    if (fields == NULL
        || sscanf(fields, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        return 0;
    return utime + stime;
}

/* Every thread of the process and its CPU ticks; returns how many. */
static int threads_cpu(struct thread_cpu *t, int max)
{
    DIR *dir = opendir("/proc/self/task");
    struct dirent *e;
    int n = 0;

    ck_assert_ptr_nonnull(dir);
    while ((e = readdir(dir)) != NULL && n < max) {
        if (e->d_name[0] == '.')
            continue;
        t[n].tid = (pid_t)atoi(e->d_name);
        t[n].ticks = thread_ticks(t[n].tid);
        n++;
    }
    closedir(dir);
    return n;
}

/* "tid (what it is) ticks" for each thread that used CPU between before
 * and after: the test's own, its run threads, and the others, which are
 * the library's workers (or a sanitizer's thread). */
static void describe_busy_threads(char *out, size_t size, const struct thread_cpu *before, int nbefore,
                                  const struct thread_cpu *after, int nafter, const pid_t *runners,
                                  int nrunners)
{
    size_t used = 0;

    out[0] = '\0';
    for (int i = 0; i < nafter && used < size; i++) {
        unsigned long long start = 0;
        const char *what = after[i].tid == tu_gettid() ? "test" : "worker or other";

        for (int j = 0; j < nbefore; j++)
            if (before[j].tid == after[i].tid)
                start = before[j].ticks;
        for (int j = 0; j < nrunners; j++)
            if (runners[j] == after[i].tid)
                what = "run thread";
        if (after[i].ticks > start)
            used += (size_t)snprintf(out + used, size - used, " %d (%s) %llu", (int)after[i].tid, what,
                                     after[i].ticks - start);
    }
}

/* Waits until the two run threads sleep and the workers' watches have
 * expired, then measures the whole process over a second: it must use
 * less than 1% of a core. */
static void assert_idle(struct tu_runner *runners)
{
    struct thread_cpu before[IDLE_MAX_THREADS], after[IDLE_MAX_THREADS];
    pid_t runner_tids[2];
    double cpu0, cpu;
    int nbefore, nafter;
    char busy[512];

    for (int i = 0; i < 2; i++) {
        runner_tids[i] = tu_runner_tid(&runners[i]);
        ck_assert_msg(tu_wait_sleeping(runner_tids[i], &runners[i].returned),
                      "run thread %d returned instead of waiting for work", i);
    }
    /* The workers cannot be watched as the run threads are: give their
     * watches for more work time to expire (IDLE_SETTLE_MS). */
    sleep_ms(IDLE_SETTLE_MS);

    /* This sleep is the measured interval, not a wait for anything. */
    nbefore = threads_cpu(before, IDLE_MAX_THREADS);
    cpu0 = process_cpu_seconds();
    sleep_ms(IDLE_MEASURE_MS);
    cpu = process_cpu_seconds() - cpu0;
    nafter = threads_cpu(after, IDLE_MAX_THREADS);

    describe_busy_threads(busy, sizeof(busy), before, nbefore, after, nafter, runner_tids, 2);
    ck_assert_msg(cpu < IDLE_CPU_LIMIT_S,
                  "an idle context used %.4f s of CPU in %d ms; threads with CPU ticks (of %ld/s):%s",
                  cpu, IDLE_MEASURE_MS, sysconf(_SC_CLK_TCK), busy);
}

/* Two workers, two threads in run kept there by a unit of work, one
 * descriptor on a socketpair that has written once and has nothing
 * pending: over a second, the whole process uses less than 1% of a core. */
START_TEST(idle_context_uses_no_cpu)
{
    static const char message[] = "one write, so that the workers have been busy once";
    char got[sizeof(message)];
    struct tu_runner runners[2];
    struct tu_result written;
    struct tu_latch handled;
    struct tu_stream s;

    tu_stream_open(&s, TU_SOCKETPAIR, 2);
    io_context_work_started(s.ctx);
    tu_runners_start(runners, 2, s.ctx);
    tu_results_init(&written, 1);
    tu_latch_init(&handled, 1);
    written.done = &handled;
    ck_assert_int_eq(tu_write_all(s.d, message, sizeof(message), &written), 0);
    ck_assert_msg(tu_latch_wait_for(&handled, TU_WAIT_S), "the write's handler did not run");
    tu_assert_result(&written, 0, sizeof(message));
    tu_read_exactly(s.peer, got, sizeof(got));
    ck_assert_mem_eq(got, message, sizeof(message));

    assert_idle(runners);

    io_context_work_finished(s.ctx);
    ck_assert_uint_eq(tu_runners_join(runners, 2), 1);
    tu_latch_destroy(&handled);
    tu_stream_close(&s);
}
END_TEST

static void count_wait(void *arg, int error)
{
    ck_assert_int_eq(error, ECANCELED);
    atomic_fetch_add((atomic_int *)arg, 1);
}

/* The same with 1,000 timer waits due in an hour and a write stuck on a
 * full socket under an hour's send timeout: the workers sleep until the
 * earliest expiry, and nothing wakes periodically meanwhile. */
START_TEST(idle_context_with_far_off_timers_uses_no_cpu)
{
    enum { TIMERS = 1000 };
    const uint64_t hour = 3600ull * 1000 * 1000 * 1000;
    io_timer *timers[TIMERS];
    struct tu_runner runners[2];
    struct tu_result stuck;
    struct tu_stream s;
    atomic_int cancelled;

    atomic_init(&cancelled, 0);
    tu_stream_open(&s, TU_SMALL_SOCKETPAIR, 2);
    tu_fill_socket(s.fd);
    tu_results_init(&stuck, 1);
    ck_assert_int_eq(io_descriptor_set_send_timeout(s.d, hour), 0);
    ck_assert_int_eq(tu_write_some(s.d, "x", 1, &stuck), 0);
    for (int i = 0; i < TIMERS; i++) {
        ck_assert_int_eq(io_timer_create(s.ctx, NULL, &timers[i]), 0);
        io_timer_expires_after(timers[i], hour + (uint64_t)i * 1000);
        ck_assert_int_eq(io_timer_async_wait(timers[i], count_wait, &cancelled, NULL), 0);
    }
    tu_runners_start(runners, 2, s.ctx);

    assert_idle(runners);

    for (int i = 0; i < TIMERS; i++)
        io_timer_destroy(timers[i]);
    ck_assert_int_eq(io_descriptor_cancel(s.d), 0);
    ck_assert_uint_eq(tu_runners_join(runners, 2), TIMERS + 1);
    ck_assert_int_eq(tu_int(&cancelled), TIMERS);
    tu_assert_result(&stuck, ECANCELED, 0);
    tu_stream_close(&s);
}
END_TEST

void tu_add_tests(Suite *s)
{
    tu_add_tcase(s, "idle", TU_TESTS(idle_context_uses_no_cpu,
                                     idle_context_with_far_off_timers_uses_no_cpu));
}
