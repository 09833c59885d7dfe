/*
 * handler_node.c - the nodes that carry posted handlers.
 *
 * A node comes from its owner's cache (context or strand) when one is
 * spare, else from the allocator; after its handler ran it goes back to
 * the same cache, or to the allocator when the cache is full.  The cache
 * belongs to the owner's lock; these functions are told which lock that
 * is and never hold it across a call to the allocator.
 */
#include "internal.h"

static size_t run_handler_node(struct io_task *t, struct io_run *run)
{
    struct io_handler_node *node = io_container_of(t, struct io_handler_node, task);

    (void)run;
    node->fn(node->arg);
    return 1;
}

/* No recycle: the node goes back to the cache of whoever queued it. */
const struct io_task_type io_handler_node_type = { run_handler_node, NULL };

struct io_handler_node *io__handler_node_get_locked(struct io_node_cache *cache,
                                                    pthread_mutex_t *lock,
                                                    io_handler fn, void *arg)
{
    struct io_handler_node *node = io_node_cache_take(cache);

    if (node == NULL) {
        pthread_mutex_unlock(lock);
        node = io__alloc(sizeof(*node));
        if (node == NULL)
            return NULL;
        pthread_mutex_lock(lock);
    }
    node->task.type = &io_handler_node_type;
    node->fn = fn;
    node->arg = arg;
    return node;
}

void io__handler_nodes_free(struct io_task_queue *nodes)
{
    struct io_task *t;

    while ((t = io_task_queue_pop(nodes)) != NULL)
        io__free(io_container_of(t, struct io_handler_node, task));
}
