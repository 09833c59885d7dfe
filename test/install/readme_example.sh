#!/bin/sh
# readme_example.sh README FILE - the C block that follows the line
# "<!-- example: FILE's name under test/ -->" in README is FILE, to the
# byte, so that the example README shows is the one the install test
# compiles and runs and cannot drift from it.
set -eu

readme=$1 file=$2
marker="<!-- example: test/install/$(basename "$file") -->"
block=$(awk -v marker="$marker" '
    $0 == marker { found = 1; next }
    found && !open && /^```c$/ { open = 1; next }
    open && /^```$/ { exit }
    open { print }' "$readme")
[ -n "$block" ] || { echo "no C block after '$marker' in $readme" >&2; exit 1; }
printf '%s\n' "$block" | diff -u "$file" - >&2 \
    || { echo "README's example differs from $file (diff above): update one from the other" >&2; exit 1; }
echo "README's example is $file"
