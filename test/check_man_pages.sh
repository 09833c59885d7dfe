#!/bin/sh
# check_man_pages.sh HEADER EXAMPLE [MAN_DIR] - the man pages built into
# MAN_DIR (man3/, man7/) are complete and clean:
#   - Doxygen read the header without a warning;
#   - every function HEADER declares IOCTX_API has a page in man3 (its own,
#     or a .so link to the page it shares), and the page shows its
#     prototype;
#   - every page renders with groff -ww (all warnings) without one: a
#     broken request, a .so to a page that is not there, a bad escape;
#   - the program in ioctx.7's EXAMPLES is EXAMPLE, token for token (the
#     page may break its lines differently).
# Exits 77 (ctest: skipped) where there are no pages (no doxygen, or
# IOCTX_MAN off: no MAN_DIR) or no groff to render them.
set -u

header=${1:?usage: check_man_pages.sh HEADER EXAMPLE [MAN_DIR]}
example=${2:?usage: check_man_pages.sh HEADER EXAMPLE [MAN_DIR]}
dir=${3:-}

if [ -z "$dir" ]; then
    echo "skipped: the man pages are not generated (doxygen missing, or IOCTX_MAN=OFF)"
    exit 77
fi
if ! command -v groff >/dev/null 2>&1; then
    echo "skipped: groff is not installed (Debian: apt-get install groff-base)"
    exit 77
fi

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
status=0
fail() {
    echo "FAILED: $*"
    status=1
}

if [ -s "$dir/doxygen/warnings.log" ]; then
    fail "Doxygen warned about $header:"
    cat "$dir/doxygen/warnings.log"
fi

# .so in a link page names man3/PAGE.3, relative to the top of the tree.
cd "$dir" || exit 1
[ -f man7/ioctx.7 ] || fail "no man7/ioctx.7 in $dir"
pages=0
for page in man3/*.3 man7/*.7; do
    [ -f "$page" ] || continue
    pages=$((pages + 1))
    groff -ww -mandoc -Tutf8 -P-cbou "$page" >"$tmp/rendered" 2>"$tmp/warnings"
    if [ -s "$tmp/warnings" ]; then
        fail "$page: groff warns:"
        cat "$tmp/warnings"
    fi
    name=$(basename "$page" .3)
    if [ "$page" = "man3/$name.3" ] && ! grep -q "[ *]$name(" "$tmp/rendered"; then
        fail "$page: no prototype of $name"
    fi
done

# The functions the header exports, as test/check_exports.sh reads them.
sed -n 's/^IOCTX_API[ ]\{1,\}.*[ *]\(io_[a-z0-9_]*\)(.*/\1/p' "$header" | sort -u >"$tmp/declared"
declared=$(wc -l <"$tmp/declared")
if [ "$declared" -lt 30 ] || ! grep -q -x io_context_create "$tmp/declared"; then
    fail "read only $declared IOCTX_API functions from $header; the parser is broken"
fi
while read -r name; do
    [ -f "man3/$name.3" ] || fail "$name, declared in $header, has no page man3/$name.3"
done <"$tmp/declared"

# The example, without roff's escapes and with every run of white space
# made one space.
sed -n '/^\.EX$/,/^\.EE$/p' man7/ioctx.7 | sed '1d;$d' \
    | sed -e 's/\\-/-/g' -e 's/\\&//g' -e 's/\\e/\\/g' | tr -s '[:space:]' ' ' >"$tmp/page_example"
tr -s '[:space:]' ' ' <"$example" >"$tmp/example"
if ! cmp -s "$tmp/page_example" "$tmp/example"; then
    fail "the example in man7/ioctx.7 is not $example; copy it again"
fi

[ "$status" -eq 0 ] && echo "check_man_pages: $pages pages render cleanly; each of the $declared functions has one"
exit "$status"
