/*
 * cancel.c - io_cancel_signal: per-operation cancellation, the signal
 * object alone.
 *
 * A signal is attached to at most one pending operation at a time.  It
 * knows that operation only as a token (void *) and its owner only as a
 * struct io_cancel_target: three callbacks, so that this file calls no
 * other module and any owner of operations (descriptors today) can take
 * signals.  What an emit does to the operation is the owner's business.
 *
 * Data and locking:
 *   sig->lock guards sig->op (the token of the pending operation, or NULL)
 *   and sig->target (its owner).  Both change only while the owner's own
 *   lock is held too: attach in the initiating call, detach when the
 *   operation completes, whoever completes it.  So an owner that holds its
 *   lock and finds the signal attached to one of its operations knows the
 *   operation is pending and stays so while the lock is held.
 *
 *   Lock order: the owner's lock, then sig->lock; never the reverse.  emit
 *   therefore cannot call the owner under sig->lock: it pins the owner (a
 *   reference, through the target), lets go of sig->lock, and calls the
 *   owner, which takes its own lock and looks again (io__cancel_signal_op).
 */
#include <errno.h>

#include "internal.h"

struct io_cancel_signal {
    pthread_mutex_t lock;
    void *op;
    struct io_cancel_target *target;
};

int io_cancel_signal_create(io_cancel_signal **out)
{
    io_cancel_signal *sig;
    int err;

    if (out == NULL)
        return EINVAL;
    sig = io__alloc(sizeof(*sig));
    if (sig == NULL)
        return ENOMEM;
    sig->op = NULL;
    sig->target = NULL;
    err = pthread_mutex_init(&sig->lock, NULL);
    if (err != 0) {
        io__free(sig);
        return err;
    }
    *out = sig;
    return 0;
}

/* Returns the signal's owner with a reference held, or NULL when nothing
 * is attached. */
static struct io_cancel_target *pin_target(io_cancel_signal *sig)
{
    struct io_cancel_target *target;

    pthread_mutex_lock(&sig->lock);
    target = sig->target;
    if (target != NULL)
        target->ops->pin(target);
    pthread_mutex_unlock(&sig->lock);
    return target;
}

/* Passes type (0: only detach) to the owner of the attached operation. */
static void deliver(io_cancel_signal *sig, unsigned type)
{
    struct io_cancel_target *target = pin_target(sig);

    if (target == NULL)
        return;
    target->ops->emit(target, sig, type);
    target->ops->unpin(target);
}

/* A signal destroyed while attached lets its operation go on without it. */
void io_cancel_signal_destroy(io_cancel_signal *sig)
{
    if (sig == NULL)
        return;
    deliver(sig, 0);
    pthread_mutex_destroy(&sig->lock);
    io__free(sig);
}

void io_cancel_signal_emit(io_cancel_signal *sig, unsigned type)
{
    if (sig != NULL && type != 0)
        deliver(sig, type);
}

int io__cancel_signal_attach(io_cancel_signal *sig, struct io_cancel_target *target, void *op)
{
    int err = 0;

    pthread_mutex_lock(&sig->lock);
    if (sig->op != NULL) {
        err = EBUSY;
    } else {
        sig->op = op;
        sig->target = target;
    }
    pthread_mutex_unlock(&sig->lock);
    return err;
}

bool io__cancel_signal_is_busy(io_cancel_signal *sig)
{
    bool busy;

    pthread_mutex_lock(&sig->lock);
    busy = sig->op != NULL;
    pthread_mutex_unlock(&sig->lock);
    return busy;
}

void io__cancel_signal_detach(io_cancel_signal *sig)
{
    pthread_mutex_lock(&sig->lock);
    sig->op = NULL;
    sig->target = NULL;
    pthread_mutex_unlock(&sig->lock);
}

void *io__cancel_signal_op(io_cancel_signal *sig, const struct io_cancel_target *target)
{
    void *op;

    pthread_mutex_lock(&sig->lock);
    op = sig->target == target ? sig->op : NULL;
    pthread_mutex_unlock(&sig->lock);
    return op;
}
