# doxygen_to_man3.awk - turns Doxygen's man page of include/ioctx.h (one
# page for the whole header) into one section-3 page per function, laid
# out as man pages are: NAME, SYNOPSIS (the #include, the types the
# function uses, its prototype), DESCRIPTION, RETURN VALUE, ASIO
# EQUIVALENT, SEE ALSO.  Related functions share a page (share_page below);
# the others' names get a link page (.so) to it.
#
#   awk -v out=DIR -v version=X.Y.Z -f doxygen_to_man3.awk DOXYGEN/man3/ioctx.h.3
#
# writes DIR/NAME.3.  The struct pages Doxygen wrote next to ioctx.h.3
# (io_context_stats.3, ...) are read for the members of each struct.
#
# The text is the header's: each comment's sentences are kept in order,
# one per line, except two kinds that become sections of their own:
# sentences that start with "Returns" (RETURN VALUE) and the one that
# starts with "Asio:" (ASIO EQUIVALENT), which every comment ends with.
# The functions of the header that the text names go to SEE ALSO.

BEGIN {
    # Functions documented together because their comments lean on each
    # other ("Like io_context_run(), but ..."), and what the shared page's
    # NAME line says of them (the first one's comment speaks for it alone).
    share_page("io_version io_version_string",
               "the version of the library this program runs with")
    share_page("io_context_run io_context_run_one io_context_poll io_context_poll_one",
               "runs a context's handlers on the calling thread")
    share_page("io_context_stop io_context_stopped io_context_restart",
               "stops a context, tells whether it is stopped, makes it runnable again")
    share_page("io_context_work_started io_context_work_finished",
               "counts work that keeps io_context_run() from returning")
    share_page("io_descriptor_native_handle io_descriptor_is_open",
               "a descriptor's fd, and whether it is open")
    share_page("io_timer_expires_at io_timer_expires_after io_timer_expiry",
               "sets and reads a timer's expiry")
    # The columns a SYNOPSIS line may take: man's 78-column line on an
    # 80-column terminal, less its 7-column indent.
    width = 71
    if (out == "" || version == "") {
        print "usage: awk -v out=DIR -v version=X.Y.Z -f doxygen_to_man3.awk ioctx.h.3" > "/dev/stderr"
        failed = 1
        exit 1
    }
}

# share_page(FUNCTIONS, BRIEF): one page for FUNCTIONS, named after the
# first, with BRIEF on its NAME line.
function share_page(functions, brief_line,   first) {
    first = functions
    sub(/ .*/, "", first)
    pages[first] = functions
    group_brief[first] = brief_line
}

# --- reading Doxygen's page -------------------------------------------------

FNR == 1 {
    doxygen_dir = FILENAME
    sub(/[^\/]*$/, "", doxygen_dir)
}

/^\.SH / {
    section = unquote(substr($0, 5))
    entity = ""
    next
}
section ~ /^SYNOPSIS/ && /^\.SS / {
    section = "SYNOPSIS " unquote(substr($0, 5))
    next
}

# The summary lists the structs (their members are on their own pages)
# and gives each enum's values, which its detailed entry leaves out.
section == "SYNOPSIS Data Structures" && /^\.RI "struct / {
    name = plain(unquote(substr($0, 5)))
    sub(/^struct /, "", name)
    read_struct(name)
    next
}
section == "SYNOPSIS Enumerations" && /^\.RI "enum / {
    enum_decl[++n_enum_decls] = plain(unquote(substr($0, 5)))
    next
}

# The detailed entries: ".SS" and the declaration, then its comment.
section ~ / Documentation$/ && /^\.SS / {
    entity = ++n_entities
    entity_kind[entity] = section
    entity_decl[entity] = plain(unquote(substr($0, 5)))
    entity_body[entity] = ""
    if (section == "Enumeration Type Documentation")
        entity_enum[entity] = ++n_enums
    next
}
entity != "" {
    if ($0 ~ /^\\fBEnumerator\\fP/)   # the enum's values, without their numbers
        entity = ""
    else
        entity_body[entity] = entity_body[entity] $0 "\n"
}

END {
    if (failed)
        exit 1
    for (e = 1; e <= n_entities; e++)
        classify(e)
    if (n_functions == 0) {
        print "doxygen_to_man3.awk: no functions in " FILENAME "; has Doxygen's man output changed?" > "/dev/stderr"
        exit 1
    }
    for (i = 1; i <= n_functions; i++)
        split_comment(function_name[i])
    for (p in pages) {
        n = split(pages[p], member, " ")
        primary = ""
        for (j = 1; j <= n; j++) {
            if (!(member[j] in function_index))
                continue
            if (primary == "")
                primary = member[j]
            page_of[member[j]] = primary
            page_members[primary] = page_members[primary] " " member[j]
        }
    }
    for (i = 1; i <= n_functions; i++) {
        f = function_name[i]
        if (!(f in page_of)) {
            page_of[f] = f
            page_members[f] = " " f
        }
    }
    for (i = 1; i <= n_functions; i++) {
        f = function_name[i]
        if (page_of[f] == f)
            write_page(f)
        else
            write_link(f, page_of[f])
    }
}

# read_struct(NAME): the members of struct NAME and their comments, from
# Doxygen's page of the struct: ".RI" with the member, then ".br" and
# ".RI" with its comment where it has one.
function read_struct(name,   file, line, n, last) {
    file = doxygen_dir name ".3"
    struct_name[++n_structs] = name
    n = 0
    while ((getline line < file) > 0) {
        if (line ~ /^\.SH "Field Documentation"/)
            break
        if (line ~ /^\.ti -1c/) {
            last = "member"
            continue
        }
        if (line !~ /^\.RI "/)
            continue
        if (last == "member") {
            struct_member[n_structs, ++n] = plain(unquote(substr(line, 5)))
            struct_comment[n_structs, n] = ""
            last = "comment"
        } else if (last == "comment") {
            struct_comment[n_structs, n] = trim(unquote(substr(line, 5)))
            last = ""
        }
    }
    close(file)
    if (n == 0) {
        print "doxygen_to_man3.awk: no members of struct " name " in " file > "/dev/stderr"
        failed = 1
        exit 1
    }
    struct_members[n_structs] = n
}

# classify(E): files entry E as a function (function_*), or as a type,
# enum or macro that a page shows when its prototypes or text name it
# (shown_*).  Types without a comment (the opaque handles) are not shown;
# the structs are, from their members' comments.
function classify(e,   decl, body, name, i, n, v, values, value, keys, prefix, tag) {
    decl = entity_decl[e]
    body = entity_body[e]
    if (entity_kind[e] == "Function Documentation") {
        if (!match(decl, /[A-Za-z_][A-Za-z0-9_]* \(/))
            return
        name = substr(decl, RSTART, RLENGTH - 2)
        function_name[++n_functions] = name
        function_index[name] = n_functions
        function_decl[name] = decl
        function_body[name] = body
        return
    }
    if (entity_kind[e] == "Typedef Documentation") {
        if (decl ~ /^typedef struct [A-Za-z_0-9]+ [A-Za-z_0-9]+$/) {
            split(decl, v, " ")
            struct_typedef[v[3]] = v[4]
            return
        }
        if (trim(body) == "" || !match(decl, /\(\* *[A-Za-z_][A-Za-z0-9_]*\)/))
            return
        name = substr(decl, RSTART, RLENGTH)
        gsub(/[(* )]/, "", name)
        add_shown(name, name, typedef_synopsis(decl, name), body)
        return
    }
    if (entity_kind[e] == "Macro Definition Documentation") {
        if (trim(body) == "")
            return
        split(decl, v, " ")
        name = v[2]
        value = decl
        sub(/^#define +[A-Za-z_0-9]+ +/, "", value)
        add_shown(name, name, macro_synopsis(name, value), body)
        return
    }
    if (entity_kind[e] == "Enumeration Type Documentation") {
        decl = enum_decl[entity_enum[e]]
        sub(/^enum *\{ */, "", decl)
        sub(/ *\} *$/, "", decl)
        n = split(decl, values, ", ")
        keys = ""
        prefix = ""
        for (i = 1; i <= n; i++) {
            name = values[i]
            sub(/ .*/, "", name)
            keys = keys (i > 1 ? " " : "") name
            prefix = i == 1 ? name : common_prefix(prefix, name)
        }
        # The text may name them all at once, as "IO_CANCEL_*".
        tag = keys
        gsub(/ /, ", ", tag)
        if (n > 1 && prefix != "")
            keys = keys " " prefix "*"
        add_shown(keys, tag, enum_synopsis(values, n), body)
    }
}

function add_shown(keys, tag, synopsis, body) {
    shown_keys[++n_shown] = keys
    shown_tag[n_shown] = tag
    shown_synopsis[n_shown] = synopsis
    shown_body[n_shown] = body
}

# --- one function's comment -------------------------------------------------

# split_comment(F): function_desc[F] (roff lines), function_returns[F] and
# function_asio[F] (sentences), and function_brief[F] for NAME.
function split_comment(f,   n, lines, i, line, para, in_nf) {
    function_desc[f] = ""
    function_returns[f] = ""
    function_asio[f] = ""
    function_brief[f] = ""
    n = split(function_body[f], lines, "\n")
    para = ""
    in_nf = 0
    for (i = 1; i <= n; i++) {
        line = lines[i]
        if (in_nf) {
            function_desc[f] = function_desc[f] line "\n"
            if (line ~ /^\.fi/)
                in_nf = 0
        } else if (line ~ /^\.PP/ || trim(line) == "") {
            para = flush_paragraph(f, para)
        } else if (line ~ /^\./) {
            # Other requests (a code block: .nf ... .fi) pass through.
            para = flush_paragraph(f, para)
            function_desc[f] = function_desc[f] line "\n"
            in_nf = line ~ /^\.nf/
        } else {
            para = para " " line
        }
    }
    flush_paragraph(f, para)
}

function flush_paragraph(f, para,   s, sentence, text) {
    para = trim(para)
    if (para == "")
        return ""
    if (function_brief[f] == "")
        function_brief[f] = brief(para)
    text = ""
    s = para
    while (s != "") {
        # Doxygen writes every period as "\&."; one followed by a space ends
        # a sentence.
        if (match(s, /\\&\. +/)) {
            sentence = substr(s, 1, RSTART + 2)
            s = substr(s, RSTART + RLENGTH)
        } else {
            sentence = s
            s = ""
        }
        sentence = trim(sentence)
        if (sentence ~ /^Returns /)
            function_returns[f] = function_returns[f] line_safe(sentence) "\n"
        else if (sentence ~ /^Asio: /)
            function_asio[f] = function_asio[f] line_safe(substr(sentence, 7)) "\n"
        else
            text = text line_safe(sentence) "\n"
    }
    if (text != "")
        function_desc[f] = function_desc[f] (function_desc[f] == "" ? "" : ".PP\n") text
    return ""
}

# references(REFS, TEXT): the list REFS (" g h ... ") with each function
# of the header that TEXT names as Doxygen marks it ("\fBg()\fP") added,
# for SEE ALSO.  The text keeps "g()": "(3)" would not read right inside
# an expression such as "io_clock_now() + delay_ns".
function references(refs, text,   name) {
    while (match(text, /\\fB[A-Za-z_][A-Za-z0-9_]*\(\)\\fP/)) {
        name = substr(text, RSTART + 3, RLENGTH - 8)
        if ((name in function_index) && index(refs, " " name " ") == 0)
            refs = refs name " "
        text = substr(text, RSTART + RLENGTH)
    }
    return refs
}

# brief(PARAGRAPH): NAME's description: the first sentence without its
# parentheses, up to its first colon or semicolon, in lower case as NAME
# lines are ("Creates a context and starts its worker threads").
function brief(para,   s) {
    s = para
    if (match(s, /\\&\. /))
        s = substr(s, 1, RSTART - 1)
    s = without_parentheses(plain(s))
    sub(/\.$/, "", s)
    if (match(s, /[:;] /))
        s = substr(s, 1, RSTART - 1)
    if (substr(s, 2, 1) ~ /[a-z ]/)
        s = tolower(substr(s, 1, 1)) substr(s, 2)
    return trim(s)
}

# --- writing pages ----------------------------------------------------------

function write_page(page,   file, n, member, i, f, names, shown, grouped, refs, r, see, nsee, proto,
                    shown_list, n_shown_here, name) {
    file = out "/" page ".3"
    n = split(trim(page_members[page]), member, " ")
    grouped = n > 1
    names = ""
    proto = ""
    refs = " "
    for (i = 1; i <= n; i++) {
        f = member[i]
        names = names (i > 1 ? ", " : "") f
        proto = proto " " function_decl[f] " " plain(function_body[f])
        refs = references(refs, function_body[f])
    }

    print ".\\\" Generated from include/ioctx.h by Doxygen and man/doxygen_to_man3.awk:" > file
    print ".\\\" edit the header's comment, not this page." > file
    print ".TH " page " 3 \"\" \"ioctx " version "\" \"ioctx Manual\"" > file
    # Ragged right and no hyphens: the text is full of identifiers, which
    # must not be split or stretched apart.
    print ".ad l" > file
    print ".nh" > file
    print ".SH NAME" > file
    print names " \\- " (page in group_brief ? group_brief[page] : function_brief[page]) > file

    print ".SH SYNOPSIS" > file
    print ".nf" > file
    print ".B #include <ioctx.h>" > file
    print ".PP" > file
    shown = ""
    for (i = 1; i <= n_structs; i++) {
        name = struct_name[i]
        if (has_word(proto, name) || (name in struct_typedef && has_word(proto, struct_typedef[name]))) {
            printf "%s", struct_synopsis(i) > file
            print ".PP" > file
        }
    }
    for (i = 1; i <= n_shown; i++)
        if (names_any(proto, shown_keys[i])) {
            printf "%s", shown_synopsis[i] > file
            print ".PP" > file
            shown = shown " " i
        }
    for (i = 1; i <= n; i++)
        printf "%s", prototype_synopsis(function_decl[member[i]]) > file
    print ".fi" > file

    print ".SH DESCRIPTION" > file
    print_sections(file, member, n, grouped, "desc")
    # What the types and constants in SYNOPSIS mean, as the header says.
    n_shown_here = split(trim(shown), shown_list, " ")
    for (i = 1; i <= n_shown_here; i++) {
        print ".TP" > file
        print ".B " quote(shown_tag[shown_list[i]]) > file
        printf "%s", sentences(plain_paragraph(shown_body[shown_list[i]])) > file
        refs = references(refs, shown_body[shown_list[i]])
    }

    if (any_section(member, n, "returns")) {
        print ".SH RETURN VALUE" > file
        print_sections(file, member, n, grouped, "returns")
    }
    if (any_section(member, n, "asio")) {
        print ".SH ASIO EQUIVALENT" > file
        print_sections(file, member, n, grouped, "asio")
    }

    # The functions the text names, less the page's own.
    print ".SH SEE ALSO" > file
    n = split(trim(refs), see, " ")
    nsee = 0
    for (r = 1; r <= n; r++)
        if (index(page_members[page] " ", " " see[r] " ") == 0)
            see[++nsee] = see[r]
    print ".BR ioctx (7)" (nsee > 0 ? "," : "") > file
    for (r = 1; r <= nsee; r++)
        print ".BR " see[r] " (3)" (r < nsee ? "," : "") > file
    close(file)
}

function write_link(f, page,   file) {
    file = out "/" f ".3"
    print ".so man3/" page ".3" > file
    close(file)
}

# print_sections(FILE, MEMBERS, N, GROUPED, WHICH): one function's text as
# it is; several functions' each under its name (a tagged paragraph).
function print_sections(file, member, n, grouped, which,   i, text) {
    for (i = 1; i <= n; i++) {
        text = which == "desc" ? function_desc[member[i]] \
             : which == "returns" ? function_returns[member[i]] : function_asio[member[i]]
        if (text == "")
            continue
        if (grouped) {
            gsub(/\n\.PP\n/, "\n.IP\n", text)
            print ".TP" > file
            print ".BR " member[i] " ()" > file
        }
        printf "%s", text > file
    }
}

function any_section(member, n, which,   i) {
    for (i = 1; i <= n; i++)
        if ((which == "returns" ? function_returns[member[i]] : function_asio[member[i]]) != "")
            return 1
    return 0
}

# --- SYNOPSIS ---------------------------------------------------------------

# prototype_synopsis(DECL): "int io_x (io_context * ctx, int fd)" as
#   .BI "int io_x(io_context *" ctx ", int " fd );
# broken after a comma where it would pass the width, the next line
# lined up after the "(".
function prototype_synopsis(decl,   head, params, inline_attr) {
    inline_attr = decl ~ /\) \[inline\]/
    sub(/\) \[.*$/, ")", decl)
    if (inline_attr && decl ~ /^static /)
        sub(/^static /, "static inline ", decl)
    match(decl, /[A-Za-z_][A-Za-z0-9_]* \(/)
    head = substr(decl, 1, RSTART + RLENGTH - 3)
    params = substr(decl, RSTART + RLENGTH)
    sub(/\)$/, "", params)
    gsub(/\* /, "*", head)
    return parameters_synopsis(head "(", params, ");")
}

# typedef_synopsis(DECL, NAME): "typedef void(* io_x) (void *arg)" as
# "typedef void (*io_x)(void *arg);", laid out as a prototype.
function typedef_synopsis(decl, name,   head, params) {
    head = decl
    sub(/\(\*.*$/, "", head)
    params = decl
    sub(/^[^)]*\) *\(/, "", params)
    sub(/\)$/, "", params)
    return parameters_synopsis(trim(head) " (*" name ")(", params, ");")
}

function parameters_synopsis(head, params, tail,   n, p, i, type, name, line, args, column, text, indent,
                             bold) {
    n = split_parameters(params, p)
    indent = sprintf("%" length(head) "s", "")
    line = ""
    args = ""
    bold = head
    column = length(head)
    for (i = 1; i <= n; i++) {
        gsub(/\* /, "*", p[i])
        p[i] = trim(p[i])
        name = ""
        type = p[i]
        if (p[i] != "void" && p[i] !~ /\(/ && match(p[i], /[A-Za-z_][A-Za-z0-9_]*$/)) {
            name = substr(p[i], RSTART)
            type = substr(p[i], 1, RSTART - 1)
            if (type !~ /\*$/)
                type = trim(type) " "
        }
        text = type name (i < n ? "," : tail)
        if (i > 1 && column + 1 + length(text) > width) {
            args = args " " quote(bold)
            line = line ".BI" args "\n"
            args = ""
            bold = indent
            column = length(indent)
        } else if (i > 1) {
            bold = bold " "
            column++
        }
        bold = bold type
        if (name != "") {
            args = args " " quote(bold) " " name
            bold = ""
        }
        bold = bold (i < n ? "," : tail)
        column += length(text)
    }
    if (n == 0)
        bold = bold "void" tail
    args = args " " quote(bold)
    return line (args ~ /^ "[^"]*"$/ ? ".B" : ".BI") args "\n"
}

# split_parameters(S, P): S's parameters at its top-level commas.
function split_parameters(s, p,   n, depth, i, c, cur) {
    n = 0
    depth = 0
    cur = ""
    s = trim(s)
    if (s == "")
        return 0
    for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (c == "(")
            depth++
        else if (c == ")")
            depth--
        if (c == "," && depth == 0) {
            p[++n] = cur
            cur = ""
        } else {
            cur = cur c
        }
    }
    p[++n] = cur
    return n
}

# struct_synopsis(I): the definition of the I-th struct, each member with
# its comment after it, or every comment above its member where one
# does not fit on a line.
function struct_synopsis(i,   s, j, member, comment, line, name, above) {
    name = struct_name[i]
    s = (name in struct_typedef ? "typedef " : "") "struct " name " {\n"
    above = 0
    for (j = 1; j <= struct_members[i]; j++)
        if (length(plain(sprintf("%-28s/* %s */", "    " struct_member[i, j] ";", struct_comment[i, j]))) > width)
            above = 1
    for (j = 1; j <= struct_members[i]; j++) {
        member = "    " struct_member[i, j] ";"
        comment = struct_comment[i, j]
        if (comment == "")
            line = member
        else if (above)
            line = "    /* " comment " */\n" member
        else
            line = sprintf("%-28s/* %s */", member, comment)
        s = s line "\n"
    }
    return s "}" (name in struct_typedef ? " " struct_typedef[name] : "") ";\n"
}

function enum_synopsis(values, n,   s, i) {
    s = "enum {\n"
    for (i = 1; i <= n; i++)
        s = s "    " values[i] ",\n"
    return s "};\n"
}

# macro_synopsis(NAME, VALUE): "#define NAME VALUE", continued on lines
# ending in a backslash where it does not fit on one.
function macro_synopsis(name, value,   s, line, n, word, i) {
    gsub(/  +/, " ", value)
    line = "#define " name
    s = ""
    n = split(value, word, " ")
    for (i = 1; i <= n; i++) {
        if (length(line) + 1 + length(word[i]) + 2 > width) {
            s = s line " \\e\n"
            line = "   "
        }
        line = line " " word[i]
    }
    return s line "\n"
}

# --- text helpers -----------------------------------------------------------

# sentences(TEXT): roff lines, one sentence each.
function sentences(text,   s, r) {
    r = ""
    while (match(text, /\\&\. +/)) {
        r = r line_safe(trim(substr(text, 1, RSTART + 2))) "\n"
        text = substr(text, RSTART + RLENGTH)
    }
    if (trim(text) != "")
        r = r line_safe(trim(text)) "\n"
    return r
}

# plain_paragraph(BODY): a comment's roff lines joined into one paragraph.
function plain_paragraph(body,   n, lines, i, s) {
    n = split(body, lines, "\n")
    s = ""
    for (i = 1; i <= n; i++)
        if (lines[i] !~ /^\./ && trim(lines[i]) != "")
            s = s " " lines[i]
    return trim(s)
}

# line_safe(S): a text line that troff cannot take for a request, with
# the filter's marker turned back into a double quote.
function line_safe(s) {
    gsub(/IOCTXDQ/, "\\(dq", s)
    if (s ~ /^[.']/)
        s = "\\&" s
    return s
}

# plain(S): S without Doxygen's font changes and escapes.
function plain(s) {
    gsub(/\\f[BIPRC]/, "", s)
    gsub(/\\&/, "", s)
    gsub(/\\-/, "-", s)
    gsub(/IOCTXDQ/, "\"", s)
    return s
}

function unquote(s) {
    s = trim(s)
    if (s ~ /^".*"$/)
        s = substr(s, 2, length(s) - 2)
    return s
}

function quote(s) {
    gsub(/\\/, "\\e", s)
    gsub(/"/, "\\(dq", s)
    return "\"" s "\""
}

function trim(s) {
    sub(/^[ \t\n]+/, "", s)
    sub(/[ \t\n]+$/, "", s)
    return s
}

# has_word(TEXT, WORD): WORD occurs in TEXT as a whole identifier.
function has_word(text, word,   i, before, after) {
    if (word == "")
        return 0
    while ((i = index(text, word)) > 0) {
        before = i > 1 ? substr(text, i - 1, 1) : " "
        after = substr(text, i + length(word), 1)
        if (before !~ /[A-Za-z0-9_]/ && after !~ /[A-Za-z0-9_]/)
            return 1
        text = substr(text, i + length(word))
    }
    return 0
}

function names_any(text, keys,   k, n, i) {
    n = split(keys, k, " ")
    for (i = 1; i <= n; i++)
        if (has_word(text, k[i]))
            return 1
    return 0
}

function common_prefix(a, b,   i) {
    for (i = 1; i <= length(a) && substr(a, i, 1) == substr(b, i, 1); i++)
        ;
    return substr(a, 1, i - 1)
}

# without_parentheses(S): S less each " (...)" aside, nested ones and all;
# "f()" stays.
function without_parentheses(s,   r, i, c, depth) {
    r = ""
    depth = 0
    for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (depth == 0 && c == " " && substr(s, i + 1, 1) == "(") {
            depth = 1
            i++
        } else if (depth > 0) {
            depth += (c == "(") - (c == ")")
        } else {
            r = r c
        }
    }
    return r
}
