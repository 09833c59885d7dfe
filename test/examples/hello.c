/* Writes a line to stdout: a worker thread makes the writev(), and the
 * handler runs inside io_context_run(). */
#include <ioctx.h>
#include <stdio.h>
#include <unistd.h>

static void written(void *arg, int error, size_t bytes)
{
    fprintf(stderr, "written: error %d, %zu bytes\n", error, bytes);
    *(int *)arg = error;
}

int main(void)
{
    static const char line[] = "hello from a worker thread\n";
    struct iovec iov = io_buffer(line, sizeof(line) - 1);
    int err, result = -1;
    io_descriptor *out;
    io_context *ctx;

    if (io_context_create(&ctx, NULL) != 0)
        return 1;
    err = io_descriptor_create(ctx, STDOUT_FILENO, NULL, &out);
    if (err == 0)
        err = io_descriptor_async_write(out, &iov, 1, written, &result, NULL);
    if (err == 0)
        io_context_run(ctx);    /* runs written(); returns when no work is left */
    io_context_destroy(ctx);    /* frees out too, which closes stdout */
    return err == 0 && result == 0 ? 0 : 1;
}
