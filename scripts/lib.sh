# scripts/lib.sh - shared by scripts/test.sh, demo.sh and bench.sh; sourced,
# not run.  Installs what is missing from Debian's packages and builds one
# configuration of the project.

# ensure_packages PKG... : installs, with apt-get, the packages not yet
# installed; as root directly, otherwise through sudo.
ensure_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "==> installing missing packages: ${missing[*]}"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "error: not root and no sudo to install ${missing[*]}" >&2; return 1; }
        sudo=(sudo)
    fi
    # A fresh machine may have no package lists yet.
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q \
        || echo "warning: apt-get update failed; trying the install with the lists we have" >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# The packages every build needs: compiler and sanitizer runtimes (gcc),
# CMake, pkg-config and the Check framework.
IOCTX_BUILD_PACKAGES=(gcc libc6-dev make cmake pkg-config check)

# configure_config NAME SANITIZE [CMAKE ARGS...] : configures build/NAME
# with warnings as errors and the given sanitizer ('' for none).
configure_config() {
    local name=$1 sanitize=$2
    shift 2
    echo "==> configuring build/$name (sanitizer: ${sanitize:-none})"
    # --log-level=NOTICE hides CMake's chatter but keeps the project's own
    # notices (which benchmark peers were skipped, and why).
    cmake --log-level=NOTICE -S "$IOCTX_ROOT" -B "$IOCTX_ROOT/build/$name" -DIOCTX_WERROR=ON \
        -DIOCTX_SANITIZE="$sanitize" "$@"
}

# build_config NAME SANITIZE [CMAKE ARGS...] : configures build/NAME as
# configure_config does and builds all of it, printing only warnings and
# errors; when that fails, it builds again with one job and make's
# output shown, so that the error is not lost among other jobs' lines.
build_config() {
    local name=$1
    configure_config "$@" || return 1
    echo "==> building build/$name"
    cmake --build "$IOCTX_ROOT/build/$name" -j "$(nproc)" -- --no-print-directory >/dev/null \
        || cmake --build "$IOCTX_ROOT/build/$name" -j 1 -- --no-print-directory
}
