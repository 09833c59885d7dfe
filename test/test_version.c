/*
 * test_version.c - the header's version macros, the library's runtime
 * version and the version the build gave the package agree.
 */
#include "ioctx.h"
#include "test_util.h"

START_TEST(runtime_version_equals_the_header_macros)
{
    ck_assert_uint_eq(IOCTX_VERSION, IOCTX_VERSION_MAJOR * 10000u
                                     + IOCTX_VERSION_MINOR * 100u + IOCTX_VERSION_PATCH);
    ck_assert_uint_eq(io_version(), IOCTX_VERSION);
}
END_TEST

START_TEST(version_string_spells_the_same_numbers)
{
    char expected[32];

    snprintf(expected, sizeof(expected), "%d.%d.%d",
             IOCTX_VERSION_MAJOR, IOCTX_VERSION_MINOR, IOCTX_VERSION_PATCH);
    ck_assert_str_eq(io_version_string(), expected);
    /* What CMake read from the header: the SONAME, ioctx.pc and
     * ioctxConfigVersion.cmake carry this version. */
    ck_assert_str_eq(io_version_string(), IOCTX_BUILD_VERSION);
    /* A static string: the same one every time. */
    ck_assert_ptr_eq(io_version_string(), io_version_string());
}
END_TEST

void tu_add_tests(Suite *s)
{
    tu_add_tcase(s, "version", TU_TESTS(runtime_version_equals_the_header_macros,
                                        version_string_spells_the_same_numbers));
}
