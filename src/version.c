/*
 * version.c - the version of the library that is running, which a program
 * compares with the IOCTX_VERSION of the header it was compiled with.
 *
 * Data and locking: none; both answers are constants compiled in from
 * include/ioctx.h.
 */
#include "ioctx.h"

/* Two levels, so that the macros are expanded before they are quoted. */
#define STRINGIFY(x) #x
#define VERSION_STRING(major, minor, patch) \
    STRINGIFY(major) "." STRINGIFY(minor) "." STRINGIFY(patch)

unsigned io_version(void)
{
    return IOCTX_VERSION;
}

const char *io_version_string(void)
{
    return VERSION_STRING(IOCTX_VERSION_MAJOR, IOCTX_VERSION_MINOR, IOCTX_VERSION_PATCH);
}
