#!/bin/sh
# readme_example.sh README FILE NAME - the C block that follows the line
# "<!-- example: NAME -->" in README is FILE, to the byte, so that an
# example README shows is one that a test compiles and runs, and cannot
# drift from it.
set -eu

readme=$1 file=$2 name=$3
marker="<!-- example: $name -->"
block=$(awk -v marker="$marker" '
    $0 == marker { found = 1; next }
    found && !open && /^```c$/ { open = 1; next }
    open && /^```$/ { exit }
    open { print }' "$readme")
[ -n "$block" ] || { echo "no C block after '$marker' in $readme" >&2; exit 1; }
printf '%s\n' "$block" | diff -u "$file" - >&2 \
    || { echo "README's example differs from $file (diff above): update one from the other" >&2; exit 1; }
echo "README's example is $file"
