/*
 * bench_common.h - what the C benchmarks share: the command line (so
 * that every peer runs the very same workload), the clock, and starting
 * a thread.
 */
#ifndef IOCTX_BENCH_COMMON_H
#define IOCTX_BENCH_COMMON_H

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct bench_options {
    unsigned long handlers;     /* in all */
    unsigned strands;
    unsigned threads;           /* run threads */
    unsigned posters;           /* posting threads */
};

static inline double bench_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Starts fn(arg) on *t, or says why not and exits: a benchmark missing a
 * thread measures nothing. */
static inline void bench_start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
    int err = pthread_create(t, NULL, fn, arg);

    if (err != 0) {
        fprintf(stderr, "pthread_create: %s\n", strerror(err));
        exit(1);
    }
}

/* Parses "--handlers N --strands S --threads T --posters P" (any order,
 * any subset).  Returns 0, or prints usage and returns -1. */
static inline int bench_parse(int argc, char **argv, struct bench_options *o)
{
    *o = (struct bench_options){ 2000000, 64, 2, 2 };
    for (int i = 1; i < argc; i += 2) {   /* option, value */
        unsigned long v = 0;
        char *end = NULL;

        if (i + 1 < argc) {
            errno = 0;
            v = strtoul(argv[i + 1], &end, 10);
        }
        if (i + 1 >= argc || errno != 0 || *end != '\0' || v == 0 || v > 1000000000ul)
            goto usage;
        if (strcmp(argv[i], "--handlers") == 0)
            o->handlers = v;
        else if (strcmp(argv[i], "--strands") == 0 && v <= 65536)
            o->strands = (unsigned)v;
        else if (strcmp(argv[i], "--threads") == 0 && v <= 1024)
            o->threads = (unsigned)v;
        else if (strcmp(argv[i], "--posters") == 0 && v <= 1024)
            o->posters = (unsigned)v;
        else
            goto usage;
    }
    o->handlers -= o->handlers % o->posters;
    return o->handlers > 0 ? 0 : -1;

usage:
    fprintf(stderr, "usage: %s [--handlers N] [--strands S] [--threads T] [--posters P]\n", argv[0]);
    return -1;
}

#endif /* IOCTX_BENCH_COMMON_H */
