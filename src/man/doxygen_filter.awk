# doxygen_filter.awk - Doxygen's INPUT_FILTER for include/ioctx.h: lets
# Doxygen read the header's plain comments, so that the header needs no
# Doxygen markup and stays the one source of the reference.
#
#   - A block comment that starts in column 0 and is followed directly by
#     a declaration (IOCTX_API, typedef, static inline, enum, #define) is
#     opened as /** instead of /*: it documents that declaration.  Other
#     block comments (the file's introduction, section banners, the
#     comment on IOCTX_API's #if) stay plain and are not documentation.
#   - A comment after a struct member (an indented declaration of
#     names, spaces and stars only, such as "uint64_t ops_started;")
#     becomes /**<, the member's documentation.
#   - In documentation, '"' becomes IOCTXDQ: Doxygen's man output prints
#     a double quote as a single one, and doxygen_to_man3.awk turns the
#     marker back into a double quote.
#
# Lines are neither added nor removed, so Doxygen's line numbers are the
# header's.

function flush(is_doc,   i) {
    if (is_doc) {
        sub(/^\/\*/, "/**", block[1])
        for (i = 1; i <= n; i++)
            gsub(/"/, "IOCTXDQ", block[i])
    }
    for (i = 1; i <= n; i++)
        print block[i]
    n = 0
}

{
    # A complete comment is held until the line after it shows what it
    # comments.
    if (n > 0 && closed) {
        flush($0 ~ /^(IOCTX_API|typedef|static inline|enum|#define)/)
        closed = 0
    }
    if (n == 0 && $0 ~ /^\/\*/ && $0 !~ /^\/\*\*/) {
        block[++n] = $0
        closed = index(substr($0, 3), "*/") > 0
        next
    }
    if (n > 0) {
        block[++n] = $0
        if (index($0, "*/"))
            closed = 1
        next
    }
    if ($0 ~ /^[ \t]+[A-Za-z_][A-Za-z0-9_ \t*]*;[ \t]*\/\* .*\*\/[ \t]*$/)
        sub(/;[ \t]*\/\* /, "; /**< ")
    print
}

END {
    if (n > 0)
        flush(0)
}
