/*
 * bench_interpose.c - counts malloc calls and write system calls for the
 * bench_write* programs, whichever library makes them.
 *
 * Linked into each program (an object, not an archive member), it defines
 * malloc, calloc, realloc, the aligned allocators and free, plus write,
 * writev and sendmsg (what ioctx, libuv and Asio write streams with).  An
 * executable's definitions take precedence over libc's for every shared
 * library too (libuv, libstdc++'s operator new), so calls made inside a
 * peer library are counted as well.
 * The allocators forward to glibc's __libc_* entry points, the writes to
 * the system call itself.  Writes count only on the descriptors passed to
 * bench_watch_fd() (the connections' write ends), not on a library's
 * wake-up eventfd.
 *
 * Counters live in per-thread slots, one cache line each, so counting
 * does not make the threads contend.
 *
 * Once bench_track_live_bytes() is called (--idle-bytes), the allocators
 * and free also add and subtract malloc_usable_size() of each block, so
 * that bench_live_bytes() is the heap in use by every thread, whichever
 * arena serves it.  Off by default: it adds a call to every free, and the
 * write benchmark's timings should not pay for it.  Blocks allocated
 * before the call and freed after it make the count low by their size;
 * bw_init() calls it before it allocates anything.
 *
 * Only where IOCTX_BENCH_INTERPOSE is defined: ASan and TSan replace the
 * allocator and the write calls themselves (TSan also learns ordering
 * from them), so sanitizer builds get the stubs at the end, and the
 * programs print "na" for what the interposer would have counted.
 */
#include "bench_write_common.h"

#ifdef IOCTX_BENCH_INTERPOSE

#include <errno.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define SLOTS 256
/* 4,096 connections need 8,192 fds and more, and 8,000 slow consumers
 * beside them 16,000 more: room for all that RLIMIT_NOFILE is likely to
 * allow. */
#define WATCHED_FDS 65536

struct slot {
    atomic_uint_fast64_t mallocs;
    atomic_uint_fast64_t writes;
    atomic_int_fast64_t live_bytes;     /* may go below 0: freed elsewhere */
    char pad[64 - 3 * sizeof(atomic_uint_fast64_t)];
};

static struct slot slots[SLOTS];
static atomic_uint next_slot;
static _Thread_local struct slot *my_slot;
static atomic_bool watched[WATCHED_FDS];
static atomic_bool tracking_live;

/* glibc's own allocator, under the names it exports for interposers. */
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);
extern void __libc_free(void *p);

/* Past SLOTS threads, slots are shared: the adds stay atomic for that. */
static struct slot *this_slot(void)
{
    if (my_slot == NULL)
        my_slot = &slots[atomic_fetch_add_explicit(&next_slot, 1, memory_order_relaxed) % SLOTS];
    return my_slot;
}

static void count_malloc(void)
{
    atomic_fetch_add_explicit(&this_slot()->mallocs, 1, memory_order_relaxed);
}

static bool is_tracking_live(void)
{
    return atomic_load_explicit(&tracking_live, memory_order_relaxed);
}

/* Adds (sign 1) or subtracts (sign -1) the size of block p, if any. */
static void count_live(const void *p, int sign)
{
    if (p != NULL)
        atomic_fetch_add_explicit(&this_slot()->live_bytes,
                                  sign * (int_fast64_t)malloc_usable_size((void *)p),
                                  memory_order_relaxed);
}

static void *counted(void *p)
{
    if (is_tracking_live())
        count_live(p, 1);
    return p;
}

static void count_write(int fd)
{
    if (fd >= 0 && fd < WATCHED_FDS && atomic_load_explicit(&watched[fd], memory_order_relaxed))
        atomic_fetch_add_explicit(&this_slot()->writes, 1, memory_order_relaxed);
}

void *malloc(size_t size)
{
    count_malloc();
    return counted(__libc_malloc(size));
}

void *calloc(size_t n, size_t size)
{
    count_malloc();
    return counted(__libc_calloc(n, size));
}

void *realloc(void *p, size_t size)
{
    size_t old;
    void *q;

    count_malloc();
    if (!is_tracking_live())
        return __libc_realloc(p, size);
    old = p != NULL ? malloc_usable_size(p) : 0;
    q = __libc_realloc(p, size);
    if (q != NULL || size == 0) {       /* p is gone (realloc(p, 0) frees it) */
        atomic_fetch_sub_explicit(&this_slot()->live_bytes, (int_fast64_t)old, memory_order_relaxed);
        count_live(q, 1);
    }
    return q;
}

void *memalign(size_t align, size_t size)
{
    count_malloc();
    return counted(__libc_memalign(align, size));
}

void *aligned_alloc(size_t align, size_t size)
{
    count_malloc();
    return counted(__libc_memalign(align, size));
}

int posix_memalign(void **out, size_t align, size_t size)
{
    void *p;

    if (align < sizeof(void *) || (align & (align - 1)) != 0)
        return EINVAL;
    count_malloc();
    p = counted(__libc_memalign(align, size));
    if (p == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}

void free(void *p)
{
    if (is_tracking_live())
        count_live(p, -1);
    __libc_free(p);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    count_write(fd);
    return syscall(SYS_write, fd, buf, n);
}

ssize_t writev(int fd, const struct iovec *iov, int count)
{
    count_write(fd);
    return syscall(SYS_writev, fd, iov, count);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    count_write(fd);
    return syscall(SYS_sendmsg, fd, msg, flags);
}

bool bench_counting_available(void)
{
    return true;
}

uint64_t bench_malloc_count(void)
{
    uint64_t n = 0;

    for (size_t i = 0; i < SLOTS; i++)
        n += atomic_load_explicit(&slots[i].mallocs, memory_order_relaxed);
    return n;
}

uint64_t bench_write_count(void)
{
    uint64_t n = 0;

    for (size_t i = 0; i < SLOTS; i++)
        n += atomic_load_explicit(&slots[i].writes, memory_order_relaxed);
    return n;
}

void bench_watch_fd(int fd)
{
    if (fd >= 0 && fd < WATCHED_FDS)
        atomic_store(&watched[fd], true);
}

void bench_track_live_bytes(void)
{
    atomic_store(&tracking_live, true);
}

int64_t bench_live_bytes(void)
{
    int64_t n = 0;

    for (size_t i = 0; i < SLOTS; i++)
        n += (int64_t)atomic_load_explicit(&slots[i].live_bytes, memory_order_relaxed);
    return n;
}

#else /* no interposer: sanitizer builds */

bool bench_counting_available(void)
{
    return false;
}

uint64_t bench_malloc_count(void)
{
    return 0;
}

uint64_t bench_write_count(void)
{
    return 0;
}

void bench_watch_fd(int fd)
{
    (void)fd;
}

void bench_track_live_bytes(void)
{
}

int64_t bench_live_bytes(void)
{
    return 0;
}

#endif
