/*
 * cancel.c - io_cancel_signal: per-operation cancellation, the signal
 * object alone.
 *
 * A signal is attached to at most one pending operation at a time.  It
 * knows that operation and its owner only as pointers, and the owner's
 * three callbacks (struct io_cancel_owner_ops), so that this file calls no
 * other module and any owner of operations (descriptors today) can take
 * signals.  What an emit does to the operation is the owner's business.
 *
 * Data and locking:
 *   sig->lock guards sig->at: the pending operation (at.op, or NULL), its
 *   owner and the owner's callbacks.  Both change only while the owner's own
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
    struct io_cancel_attachment at;
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
    sig->at = (struct io_cancel_attachment){ NULL, NULL, NULL };
    err = pthread_mutex_init(&sig->lock, NULL);
    if (err != 0) {
        io__free(sig);
        return err;
    }
    *out = sig;
    return 0;
}

/* Returns what the signal is attached to, its owner pinned; at.op is
 * NULL when nothing is attached. */
static struct io_cancel_attachment pin_owner(io_cancel_signal *sig)
{
    struct io_cancel_attachment at;

    pthread_mutex_lock(&sig->lock);
    at = sig->at;
    if (at.op != NULL)
        at.ops->pin(at.owner);
    pthread_mutex_unlock(&sig->lock);
    return at;
}

/* Passes type (0: only detach) to the owner of the attached operation. */
static void deliver(io_cancel_signal *sig, unsigned type)
{
    struct io_cancel_attachment at = pin_owner(sig);

    if (at.op == NULL)
        return;
    at.ops->emit(at.owner, sig, type);
    at.ops->unpin(at.owner);
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

int io__cancel_signal_attach(io_cancel_signal *sig, struct io_cancel_attachment a)
{
    int err = 0;

    pthread_mutex_lock(&sig->lock);
    if (sig->at.op != NULL)
        err = EBUSY;
    else
        sig->at = a;
    pthread_mutex_unlock(&sig->lock);
    return err;
}

bool io__cancel_signal_is_busy(io_cancel_signal *sig)
{
    bool busy;

    pthread_mutex_lock(&sig->lock);
    busy = sig->at.op != NULL;
    pthread_mutex_unlock(&sig->lock);
    return busy;
}

void io__cancel_signal_detach(io_cancel_signal *sig)
{
    pthread_mutex_lock(&sig->lock);
    sig->at = (struct io_cancel_attachment){ NULL, NULL, NULL };
    pthread_mutex_unlock(&sig->lock);
}

void *io__cancel_signal_op(io_cancel_signal *sig, const void *owner)
{
    void *op;

    pthread_mutex_lock(&sig->lock);
    op = sig->at.owner == owner ? sig->at.op : NULL;
    pthread_mutex_unlock(&sig->lock);
    return op;
}
