/*
 * bench_timer_common.c - the timer workload's command line, expiries,
 * clocks and result lines (bench_timer_common.h).
 */
#include "bench_timer_common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const struct {
    const char *name;
    unsigned long min, max, def;
} bt_opts[] = {
    { "--pending", 1, 10000000, 1000 },
    { "--waits", 1, 10000000, 2000 },
    { "--ops", 1, 1000000000, 100000 },
    { "--timers", 1, 10000000, 1000 },
    { "--run-threads", 1, 1024, 2 },
    { "--workers", 1, 1024, 1 },
    { "--idle-ms", 0, 600000, 0 },
};
#define BT_NOPTS (sizeof(bt_opts) / sizeof(bt_opts[0]))

int bt_parse(struct bt_options *o, int argc, char **argv)
{
    unsigned long v[BT_NOPTS];
    size_t k;

    for (k = 0; k < BT_NOPTS; k++)
        v[k] = bt_opts[k].def;
    for (int i = 1; i < argc; i += 2) {
        char *end = NULL;

        for (k = 0; k < BT_NOPTS && strcmp(argv[i], bt_opts[k].name) != 0; k++)
            continue;
        if (k == BT_NOPTS || i + 1 >= argc)
            goto usage;
        errno = 0;
        v[k] = strtoul(argv[i + 1], &end, 10);
        if (errno != 0 || *end != '\0' || v[k] < bt_opts[k].min || v[k] > bt_opts[k].max)
            goto usage;
    }
    *o = (struct bt_options){
        .pending = v[0], .waits = v[1], .ops = v[2], .timers = v[3],
        .run_threads = (unsigned)v[4], .workers = (unsigned)v[5], .idle_ms = (unsigned)v[6],
    };
    return 0;

usage:
    fprintf(stderr, "usage: %s [--pending P] [--waits W] [--ops N] [--timers T]\n"
            "       [--run-threads R] [--workers K] [--idle-ms MS]\n"
            "  P: pending timers (P - 1 in the background); W: measured waits, one after\n"
            "  another; N: starts and cancels on T timers; MS: idle time measured (0: none)\n",
            argv[0]);
    return 2;
}

/* splitmix64: small, and the same sequence on every platform. */
uint64_t bt_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t bt_background_ns(uint64_t *state)
{
    return BT_BACKGROUND_MIN_NS + bt_random(state) % BT_BACKGROUND_MIN_NS;
}

uint64_t bt_measured_ns(uint64_t *state)
{
    return 1000000 + bt_random(state) % 1000000;
}

double bt_cpu(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec)
         + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int bt_lateness_init(struct bt_lateness *l, const struct bt_options *o)
{
    l->count = o->waits;
    l->ns = calloc(o->waits, sizeof(*l->ns));
    l->cpu0 = bt_cpu();
    if (l->ns == NULL) {
        fprintf(stderr, "out of memory for %lu lateness records\n", o->waits);
        return 1;
    }
    return 0;
}

void bt_lateness_free(struct bt_lateness *l)
{
    free(l->ns);
    l->ns = NULL;
}

static int compare_ns(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

/* The q-quantile of the sorted records, in microseconds (nearest rank). */
static double quantile_us(const struct bt_lateness *l, double q)
{
    return (double)l->ns[(size_t)((double)(l->count - 1) * q + 0.5)] / 1e3;
}

void bt_report_lateness(const char *name, const struct bt_options *o, struct bt_lateness *l)
{
    double cpu_us = (bt_cpu() - l->cpu0) * 1e6 / (double)l->count;

    qsort(l->ns, l->count, sizeof(*l->ns), compare_ns);
    printf("%s lateness %lu %lu %.1f %.1f %.1f %.1f\n", name, o->pending, l->count, quantile_us(l, 0.5),
           quantile_us(l, 0.99), quantile_us(l, 1.0), cpu_us);
}

void bt_report_cancel(const char *name, const struct bt_options *o, double wall_s, double cpu_s)
{
    printf("%s cancel %lu %lu %lu %.1f %.1f\n", name, o->pending, o->ops, o->timers,
           wall_s * 1e9 / (double)o->ops, cpu_s * 1e9 / (double)o->ops);
}

void bt_report_idle(const char *name, const struct bt_options *o, double wall_s, double cpu_s)
{
    printf("%s idle %lu %u %.3f\n", name, o->pending, o->idle_ms, 100.0 * cpu_s / wall_s);
}
