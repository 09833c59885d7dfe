/*
 * alloc.c - the one place where the library takes and gives back memory.
 *
 * Everything that allocates calls io__alloc(), so that a fault-injection
 * build can fail any chosen allocation and tests can prove that every
 * caller turns that into ENOMEM without losing anything.  No state, no
 * lock.
 */
#include <stdlib.h>

#include "internal.h"

void *io__alloc(size_t size)
{
    return malloc(size);
}

void io__free(void *ptr)
{
    free(ptr);
}

void io__node_queue_free(struct io_task_queue *nodes)
{
    struct io_task *t;

    while ((t = io_task_queue_pop(nodes)) != NULL)
        io__free(io_container_of(t, struct io_handler_node, task));
}
