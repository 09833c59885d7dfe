#!/bin/sh
# check_exports.sh NM LIBRARY HEADER - the dynamic symbols LIBRARY defines
# are exactly the functions HEADER declares: every declared function is
# exported, and nothing else is (no io__ internals, no helper leaking out
# of -fvisibility=hidden).  ctest runs it on libioctx.so.
set -eu

nm=$1 lib=$2 header=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Every function declared at file scope, whether or not it carries
# IOCTX_API: a declaration that lost the macro must show up as missing.
# static inline helpers (io_buffer) and typedefs are not symbols.
sed -n 's/^\(IOCTX_API[ ]\{1,\}\)\{0,1\}\(const[ ]\{1,\}\)\{0,1\}[a-z_][a-z0-9_]*[ *]\{1,\}\(io_[a-z0-9_]*\)(.*/\3/p' \
    "$header" | sort -u >"$tmp/declared"

# The filter drops linker-defined symbols that some linkers (older GNU
# ld) put in the dynamic table of every shared object: not ours to
# declare.  Debian 12's binutils and LLVM's nm show none of them.  (grep
# exits 1 when nothing is left; the comparison below reports that.)
"$nm" -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//' \
    | grep -v -x -e _init -e _fini -e _edata -e _end -e __bss_start \
    | sort -u >"$tmp/exported" || true

declared=$(wc -l <"$tmp/declared")
if [ "$declared" -lt 30 ] || ! grep -q -x io_context_create "$tmp/declared"; then
    echo "check_exports: read only $declared function declarations from $header; the parser is broken" >&2
    exit 1
fi

status=0
missing=$(comm -23 "$tmp/declared" "$tmp/exported")
extra=$(comm -13 "$tmp/declared" "$tmp/exported")
if [ -n "$missing" ]; then
    echo "declared in $header but not exported by $lib (IOCTX_API missing?):" >&2
    printf '  %s\n' $missing >&2
    status=1
fi
if [ -n "$extra" ]; then
    echo "exported by $lib but not declared in $header:" >&2
    printf '  %s\n' $extra >&2
    status=1
fi
[ "$status" -eq 0 ] && echo "check_exports: $lib exports exactly the $declared functions of $header"
exit "$status"
