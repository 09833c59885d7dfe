/*
 * alloc.h - the one gate through which the library takes memory.
 *
 * Every allocation goes through io__alloc(), so that tests can make any
 * chosen allocation fail and can count what is still allocated.
 */
#ifndef IOCTX_ALLOC_H
#define IOCTX_ALLOC_H

#include <stddef.h>

void *io__alloc(size_t size);
void io__free(void *ptr);

/* For tests: the number of io__alloc() blocks not yet freed. */
size_t io__alloc_live(void);

/* For tests: the bytes those blocks hold, as the allocator sized them
 * (malloc_usable_size: the request rounded up to the allocator's step). */
size_t io__alloc_live_bytes(void);

/* For tests: how many times io__alloc() has been called. */
size_t io__alloc_calls(void);

/* For tests: the n-th io__alloc() from now (1 = the next) returns NULL;
 * 0 turns failures off.  Counts across all threads. */
void io__alloc_fail_after(long n);

/* For tests: how many allocations io__alloc_fail_after() has failed. */
size_t io__alloc_injected_failures(void);

#endif /* IOCTX_ALLOC_H */
