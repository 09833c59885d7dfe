/*
 * cancel.c - io_cancel_signal: per-operation cancellation (rules 18, 19).
 *
 * Data and locking:
 *   sig->lock guards sig->op (the pending write it is attached to, or
 *   NULL) and sig->d (that write's descriptor).  Both change only while
 *   the descriptor's lock is held too: attach in the initiating call,
 *   detach when the op completes, whoever completes it.  So a thread that
 *   holds d->lock and sees sig->d == d knows the op is pending and stays so.
 *
 *   The one lock nesting in the library: d->lock, then sig->lock; never
 *   the reverse.  emit therefore cannot take d->lock under sig->lock: it
 *   pins the descriptor with a reference, lets go of sig->lock, takes
 *   d->lock, and looks again (descriptor.c, io__descriptor_emit).
 *
 * What an emit does to the op is decided by descriptor.c, which owns the
 * op's state; an op inside a worker's system call is only marked, and the
 * worker completes it when the call returns, so no op ends twice.
 */
#include <errno.h>

#include "internal.h"

struct io_cancel_signal {
    pthread_mutex_t lock;
    struct io_write_op *op;
    io_descriptor *d;
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
    sig->d = NULL;
    err = pthread_mutex_init(&sig->lock, NULL);
    if (err != 0) {
        io__free(sig);
        return err;
    }
    *out = sig;
    return 0;
}

/* Returns the signal's descriptor with a reference held, or NULL when
 * nothing is attached. */
static io_descriptor *pin_descriptor(io_cancel_signal *sig)
{
    io_descriptor *d;

    pthread_mutex_lock(&sig->lock);
    d = sig->d;
    if (d != NULL)
        io__descriptor_retain(d);
    pthread_mutex_unlock(&sig->lock);
    return d;
}

/* A signal destroyed while attached lets its op go on without it. */
void io_cancel_signal_destroy(io_cancel_signal *sig)
{
    io_descriptor *d;

    if (sig == NULL)
        return;
    d = pin_descriptor(sig);
    if (d != NULL) {
        io__descriptor_emit(d, sig, 0);     /* type 0: only detaches */
        io__descriptor_release_ref(d);
    }
    pthread_mutex_destroy(&sig->lock);
    io__free(sig);
}

void io_cancel_signal_emit(io_cancel_signal *sig, unsigned type)
{
    io_descriptor *d;

    if (sig == NULL || type == 0)
        return;
    d = pin_descriptor(sig);
    if (d == NULL)
        return;
    io__descriptor_emit(d, sig, type);
    io__descriptor_release_ref(d);
}

int io__cancel_signal_attach(io_cancel_signal *sig, io_descriptor *d, struct io_write_op *op)
{
    int err = 0;

    pthread_mutex_lock(&sig->lock);
    if (sig->op != NULL) {
        err = EBUSY;
    } else {
        sig->op = op;
        sig->d = d;
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
    sig->d = NULL;
    pthread_mutex_unlock(&sig->lock);
}

struct io_write_op *io__cancel_signal_op_on(io_cancel_signal *sig, io_descriptor *d)
{
    struct io_write_op *op;

    pthread_mutex_lock(&sig->lock);
    op = sig->d == d ? sig->op : NULL;
    pthread_mutex_unlock(&sig->lock);
    return op;
}
