/*
 * alloc.c - the one place where the library takes and gives back memory.
 *
 * Everything that allocates calls io__alloc(), so that a test can fail any
 * chosen allocation and prove that every caller turns it into ENOMEM
 * without losing anything, and can check that objects are freed when
 * ioctx.h says they are, not only at context shutdown.
 *
 * Data: five atomics, no lock.  Allocation is off the hot path (handler
 * nodes are recycled), so the two relaxed atomic operations cost nothing
 * that shows.
 */
#include <malloc.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "alloc.h"

static atomic_size_t live_blocks;
static atomic_size_t live_bytes;        /* what the allocator gave, usable */
static atomic_long fail_countdown;      /* 0: never fail */
static atomic_size_t injected_failures;
static atomic_size_t calls;

void *io__alloc(size_t size)
{
    void *p;

    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
    if (atomic_load_explicit(&fail_countdown, memory_order_relaxed) > 0
        && atomic_fetch_sub(&fail_countdown, 1) == 1) {
        atomic_fetch_add(&injected_failures, 1);
        return NULL;
    }
    p = malloc(size);
    if (p != NULL) {
        atomic_fetch_add_explicit(&live_blocks, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&live_bytes, malloc_usable_size(p), memory_order_relaxed);
    }
    return p;
}

void io__free(void *ptr)
{
    if (ptr == NULL)
        return;
    atomic_fetch_sub_explicit(&live_blocks, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&live_bytes, malloc_usable_size(ptr), memory_order_relaxed);
    free(ptr);
}

size_t io__alloc_live(void)
{
    return atomic_load(&live_blocks);
}

size_t io__alloc_live_bytes(void)
{
    return atomic_load(&live_bytes);
}

void io__alloc_fail_after(long n)
{
    atomic_store(&fail_countdown, n > 0 ? n : 0);
}

size_t io__alloc_calls(void)
{
    return atomic_load(&calls);
}

size_t io__alloc_injected_failures(void)
{
    return atomic_load(&injected_failures);
}
