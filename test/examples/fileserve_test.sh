#!/bin/sh
# fileserve_test.sh FILESERVE [LARGE_BYTES] - the file server example
# against a real client: files of 0 B, 1 B, 1 MiB and LARGE_BYTES
# (default 64 MiB) are fetched with curl, 16 requests at once (4 rounds
# of the 4 files), and every download must have the original's SHA-256.
# Then a missing file must get 404, and a path that climbs out of the
# root 400.  The server answers exactly those 18 connections and exits;
# its summary must count them.  Exits 77 (ctest: skipped) without curl.
set -u

fileserve=${1:?usage: fileserve_test.sh FILESERVE [LARGE_BYTES]}
large=${2:-67108864}
requests=18

if ! command -v curl >/dev/null 2>&1; then
    echo "skipped: curl is not installed (Debian: apt-get install curl)"
    exit 77
fi

dir=$(mktemp -d) || exit 1
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
    echo "FAILED: $*"
    echo "--- server output:"
    cat "$dir/server.out" "$dir/server.err" 2>/dev/null
    exit 1
}

mkdir "$dir/root" "$dir/got" || exit 1
: >"$dir/root/empty"
printf x >"$dir/root/one"
head -c 1048576 /dev/urandom >"$dir/root/mebibyte" || exit 1
head -c "$large" /dev/urandom >"$dir/root/large" || exit 1
files="empty one mebibyte large"

"$fileserve" --root "$dir/root" --requests "$requests" >"$dir/server.out" 2>"$dir/server.err" &
server=$!

# The port is in the first line, once the server listens.
port=""
tries=0
while [ -z "$port" ]; do
    port=$(sed -n 's/^fileserve on 127\.0\.0\.1:\([0-9][0-9]*\),.*/\1/p' "$dir/server.out")
    [ -n "$port" ] && break
    kill -0 "$server" 2>/dev/null || fail "the server exited before it listened"
    tries=$((tries + 1))
    [ "$tries" -lt 200 ] || fail "no port after 10 s"
    sleep 0.05
done
url="http://127.0.0.1:$port"

# 16 at once; each curl's status is checked by its own wait.
pids=""
for round in 1 2 3 4; do
    for f in $files; do
        curl --silent --show-error --fail --max-time 120 -o "$dir/got/$f.$round" "$url/$f" &
        pids="$pids $!"
    done
done
for pid in $pids; do
    wait "$pid" || fail "a download failed (curl exit $?)"
done

for f in $files; do
    want=$(sha256sum <"$dir/root/$f")
    for round in 1 2 3 4; do
        got=$(sha256sum <"$dir/got/$f.$round")
        [ "$got" = "$want" ] || fail "$f, round $round: SHA-256 $got, not $want"
    done
done
echo "16 downloads at once: every SHA-256 matches (0 B, 1 B, 1 MiB, $large B, 4 of each)"

code=$(curl --silent --max-time 30 -o /dev/null -w '%{http_code}' "$url/no-such-file")
[ "$code" = 404 ] || fail "a missing file got $code, not 404"
# --path-as-is: curl would otherwise resolve the ".." itself.
code=$(curl --silent --max-time 30 --path-as-is -o /dev/null -w '%{http_code}' "$url/../../etc/passwd")
[ "$code" = 400 ] || fail "a path out of the root got $code, not 400"
echo "missing file: 404; path out of the root: 400"

wait "$server"
status=$?
server=""
[ "$status" -eq 0 ] || fail "the server exited with $status"
grep -q "^served $requests requests, .*: 16 200, 1 400, 1 404, 0 405, 0 unanswered)" "$dir/server.out" \
    || fail "the server's summary does not count the $requests connections"
if grep -q "ended with an error" "$dir/server.out"; then
    fail "the server saw errors, where every client read to the end"
fi
cat "$dir/server.out"
echo "verified: OK"
