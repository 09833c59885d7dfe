#!/bin/sh
# run.sh BUILD_DIR CMAKE GENERATOR MAKE_PROGRAM CC VERSION - installs the
# library built in BUILD_DIR into a temporary prefix, checks the installed
# files, then builds consumer.c against that prefix twice, the ways a user
# would, and runs it:
#   1. cc consumer.c $(pkg-config --cflags --libs ioctx), and once more
#      statically, from pkg-config --static;
#   2. find_package(ioctx CONFIG REQUIRED) in the CMake project next to
#      this script, linking ioctx::ioctx and ioctx::ioctx_static.
# Registered with ctest in builds without sanitizers: a sanitized library
# cannot be linked into a plain program.
set -eu

build=$1 cmake=$2 generator=$3 make_program=$4 cc=$5 version=$6
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

fail() {
    echo "install test: $*" >&2
    exit 1
}

# step DESCRIPTION COMMAND... : runs the command with its output in a log,
# shown only when it fails.
step() {
    what=$1
    shift
    echo "==> $what"
    "$@" >"$tmp/step.log" 2>&1 || { cat "$tmp/step.log" >&2; fail "$what failed"; }
}

# run_step PROGRAM: runs a consumer, finding libioctx.so.0 in the prefix;
# its output is worth seeing either way.
run_step() {
    step "run $(basename "$1")" env LD_LIBRARY_PATH="$libdir" "$1"
    sed 's/^/    /' "$tmp/step.log"
}

step "cmake --install into a temporary prefix" "$cmake" --install "$build" --prefix "$prefix"

# GNUInstallDirs picks lib or lib/<multiarch>: find where it went.
pc=$(find "$prefix" -name ioctx.pc -path '*/pkgconfig/*')
[ -n "$pc" ] || fail "no pkgconfig/ioctx.pc under $prefix"
libdir=$(dirname "$(dirname "$pc")")
soname=libioctx.so.${version%%.*}
[ -f "$prefix/include/ioctx.h" ] || fail "include/ioctx.h not installed"
[ -f "$libdir/libioctx.a" ] || fail "libioctx.a not installed"
[ -f "$libdir/libioctx.so.$version" ] && [ ! -L "$libdir/libioctx.so.$version" ] \
    || fail "libioctx.so.$version not installed as a file"
[ "$(readlink "$libdir/$soname")" = "libioctx.so.$version" ] || fail "$soname is not a link to libioctx.so.$version"
[ "$(readlink "$libdir/libioctx.so")" = "$soname" ] || fail "libioctx.so is not a link to $soname"
readelf -d "$libdir/libioctx.so.$version" | grep -q "(SONAME).*\[$soname\]" || fail "SONAME is not $soname"
for f in ioctxConfig.cmake ioctxConfigVersion.cmake ioctxTargets.cmake; do
    [ -f "$libdir/cmake/ioctx/$f" ] || fail "cmake/ioctx/$f not installed"
done

# 1. pkg-config, seeing only this prefix's .pc files.
export PKG_CONFIG_LIBDIR="$libdir/pkgconfig"
[ "$(pkg-config --modversion ioctx)" = "$version" ] || fail "pkg-config --modversion is not $version"
pkg-config --static --libs ioctx | grep -q -- -pthread || fail "pkg-config --static --libs lacks -pthread"
# Strict C11 with every warning: the header must be clean in a user's build.
cflags="-std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Wpedantic -Werror"
# shellcheck disable=SC2046,SC2086 # pkg-config output is split on purpose
step "cc consumer.c \$(pkg-config --cflags --libs ioctx)" \
    "$cc" $cflags -o "$tmp/consumer_pc" "$here/consumer.c" $(pkg-config --cflags --libs ioctx)
readelf -d "$tmp/consumer_pc" | grep -q "(NEEDED).*\[$soname\]" || fail "consumer_pc does not need $soname"
run_step "$tmp/consumer_pc"
# The same flags with -lioctx naming the archive: what a static link of a
# program with Libs.private gets.
# shellcheck disable=SC2046,SC2086
step "cc consumer.c \$(pkg-config --static --cflags --libs ioctx), libioctx.a" \
    "$cc" $cflags -o "$tmp/consumer_pc_static" "$here/consumer.c" \
    $(pkg-config --static --cflags --libs ioctx | sed 's/-lioctx\b/-l:libioctx.a/')
! readelf -d "$tmp/consumer_pc_static" | grep -q 'libioctx' || fail "consumer_pc_static still needs libioctx.so"
run_step "$tmp/consumer_pc_static"

# 2. find_package(ioctx CONFIG REQUIRED), with the build tree's generator.
step "configure the consumer project (find_package)" \
    "$cmake" -S "$here" -B "$tmp/consumer" -G "$generator" -DCMAKE_MAKE_PROGRAM="$make_program" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix"
grep -q "^ioctx_DIR:PATH=$libdir/cmake/ioctx\$" "$tmp/consumer/CMakeCache.txt" \
    || fail "find_package found an ioctx other than $prefix: $(grep '^ioctx_DIR' "$tmp/consumer/CMakeCache.txt")"
step "build the consumer project" "$cmake" --build "$tmp/consumer" --config Release
for exe in consumer consumer_static; do
    # Multi-config generators put it under Release/.
    path=$(find "$tmp/consumer" -name "$exe" -type f -perm -u+x | head -n 1)
    [ -n "$path" ] || fail "the consumer project built no $exe"
    run_step "$path"
done
echo "install test: installed ioctx $version and used it through pkg-config and find_package"
