/* Writes one message into a pipe through ioctx and reads it back. */
#include <ioctx.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void written(void *arg, int error, size_t bytes)   /* runs inside io_context_run */
{
    *(size_t *)arg = error == 0 ? bytes : 0;
}

int main(void)
{
    static const char msg[] = "hello from a worker thread\n";
    struct iovec iov = io_buffer(msg, strlen(msg));
    char got[sizeof(msg)] = "";
    size_t sent = 0;
    io_context *ctx;
    io_strand *strand;
    io_descriptor *out;
    int fds[2];

    if (pipe(fds) != 0 || io_context_create(&ctx, NULL) != 0
        || io_strand_create(ctx, &strand) != 0
        || io_descriptor_create(ctx, fds[1], strand, &out) != 0)
        return 1;
    /* Returns at once; a worker thread makes the writev(). */
    if (io_descriptor_async_write(out, &iov, 1, written, &sent, NULL) != 0)
        return 1;
    io_context_run(ctx);              /* runs written() on the strand; returns when idle */
    io_context_destroy(ctx);          /* destroys strand and out too: closes fds[1] */
    if (read(fds[0], got, sizeof(got)) != (ssize_t)strlen(msg) || strcmp(got, msg) != 0
        || sent != strlen(msg))
        return 1;
    /* IOCTX_VERSION is the header's, io_version() the library's. */
    printf("ioctx %s (header %u): %zu bytes through a pipe\n", io_version_string(),
           IOCTX_VERSION, sent);
    return io_version() == IOCTX_VERSION ? 0 : 1;
}
