#!/usr/bin/env bash
# make check: the rules of DESIGN.md and STYLE.md that a machine can check,
# then formatting. Every finding is one line "FILE:LINE: RULE: what, and
# what to do instead"; the exit status is 1 when there is any.
#
#   tests/check.sh            every C file in git (tracked, or new and not ignored)
#   tests/check.sh FILE...    those files only (formatting too)
#
# Rules (the tables below are the rules; change a table, not the code):
#   include-library  a third-party header only in the folder DESIGN.md's
#                    table gives its library (LIBRARIES)
#   include-base     store/base/ includes only libc and store/base/ headers
#   include-layer    our folders include each other one way (LAYERS):
#                    fcgi -> engine -> store; admin -> engine, store;
#                    store/base is everyone's base and includes no folder
#   include-unknown  a <header> that is neither libc, the OS (linux/), the
#                    compiler's (sanitizer/) nor a library of LIBRARIES:
#                    classify it here before using it
#   header-library   our headers (*.h) include no third-party header, so
#                    no library type reaches another folder; except a
#                    folder-internal header (INTERNAL), which only its own
#                    folder's files may include (include-internal)
#   header-type      no third-party type name in a header that is not
#                    internal (a forward declaration would leak it too)
#   banned           functions listed in BANNED, each with the reason
#   format           clang-format (.clang-format) would change the file
#
# tests/ is not layered (a test may include anything it tests), but the
# banned functions marked "all" apply there too. Comments and string
# literals are ignored, so a comment may name a banned function.
set -uo pipefail
cd "$(dirname "$0")/.."

# A library's headers (shell patterns), its name, and the one folder that
# may include them (DESIGN.md, "the only place that includes").
LIBRARIES='
fcgiapp.h fcgio.h fcgi_stdio.h fcgi_config.h fastcgi.h   libfcgi   fcgi
curl/*                                                   libcurl   engine
ini.h                                                    inih      engine
jansson.h jansson_config.h                               jansson   engine
openssl/*                                                OpenSSL   engine
db.h db_cxx.h                                            libdb     store
'

# A folder, and the folders whose headers it may include ("" headers).
# The flow is one way: nothing includes fcgi/ or admin/ but themselves, and
# fcgi/ reaches the store only through engine/ (admin/ may use both).
LAYERS='
store/base   store/base
store        store store/base
engine       engine store store/base
fcgi         fcgi engine store/base
admin        admin engine store store/base
'

# Folder-internal headers, which may include their folder's library: the
# library stays in the folder DESIGN.md names, because only that folder's
# own files may include them (checked), and the folder's public headers
# (store.h, prov.h) stay free of it. Splitting one module's code over
# several files should not force the library's types behind void pointers.
INTERNAL='
store/store_int.h    the store modules share the open Berkeley DB handles and store_op_run
store/env_int.h      env.c and env_heal.c share the opening of handle sets (Berkeley DB types)
engine/prov_json.h   the provider adapters share jansson helpers; prov.h stays jansson-free
engine/prov_canon.h  the provider adapters share the key normalisations of a parsed body
engine/xlate_ollama_int.h  the three files of the Ollama translator share jansson helpers
engine/xlate_anthropic_int.h  the Anthropic dialect request and answer files share its block readers (jansson values)
engine/xlate_responses_int.h  the two files of the Responses dialect (request, answers) share jansson helpers
engine/cluster_view_int.h  the cluster status as a jansson value for the stats API; cluster_view.h stays jansson-free
engine/xlate_gemini_int.h  the three files of the Gemini dialect share jansson helpers and its parts writer
'

# Type names of the libraries, which must not appear in a header that is
# not internal (an extended regular expression, whole words).
LIBRARY_TYPES='DB|DB_ENV|DB_TXN|DBT|DBC|DB_LSN|json_t|json_error_t|CURL|CURLM|CURLcode|CURLSH|curl_[a-z_]+|FCGX_[A-Za-z_]+|EVP_[A-Z_]+|SSL|SSL_CTX|SHA256_CTX|ini_handler'

# Functions not to call: the name, where the ban holds (all: every C file;
# product: fcgi/ engine/ store/ admin/; threaded: fcgi/ engine/ store/,
# whose code runs on many threads of one process), and why / what instead.
BANNED='
strcpy    all       unbounded write: snprintf or rl_buf, or memcpy of a known length
strcat    all       unbounded write: rl_buf, or snprintf into a sized buffer
sprintf   all       unbounded write: snprintf or rl_buf_printf
vsprintf  all       unbounded write: vsnprintf
gets      all       unbounded write (removed from C11): fgets
strncpy   all       leaves no terminating NUL when it truncates and pads with NULs: snprintf, or memcpy of a known length
strncat   all       its bound is the room left, not the size, a classic off-by-one: rl_buf or snprintf
atoi      all       no error report (junk is 0, overflow is undefined): strtol with an end pointer and errno
atol      all       no error report (junk is 0, overflow is undefined): strtol with an end pointer and errno
atoll     all       no error report (junk is 0, overflow is undefined): strtoll with an end pointer and errno
atof      all       no error report: strtod with an end pointer and errno
sscanf    all       a number out of range is undefined behaviour (C11 7.21.6.2p10) and %s has no bound: strtol/strtoull and explicit lengths
vsscanf   all       as sscanf: strtol/strtoull and explicit lengths
scanf     all       as sscanf, on stdin: fgets then strtol
fscanf    all       as sscanf: fgets then strtol
vfscanf   all       as sscanf: fgets then strtol
strtok    all       hidden static state, not reentrant: strtok_r, or scan with memchr/strcspn
tmpnam    all       the name can be taken before it is created: mkstemp or mkdtemp
tempnam   all       the name can be taken before it is created: mkstemp or mkdtemp
mktemp    all       the name can be taken before it is created: mkstemp or mkdtemp
alloca    product   unbounded stack use on threads with small stacks: a pool or malloc
system    product   runs a shell: Relay starts no commands (tests may)
popen     product   runs a shell: Relay starts no commands (tests may)
rand      product   predictable: Relay'"'"'s random bytes are secrets or keys, use getrandom
srand     product   predictable: Relay'"'"'s random bytes are secrets or keys, use getrandom
gmtime    threaded  one static result shared by every thread: gmtime_r
localtime threaded  one static result shared by every thread: localtime_r
ctime     threaded  one static result shared by every thread: strftime with gmtime_r
asctime   threaded  one static result shared by every thread: strftime
'

if [ $# -gt 0 ]; then
    files=("$@")
else
    mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.c' '*.h' \
        | grep -v '^tests/node_modules/')
fi
status=0

if ! awk -v libraries="$LIBRARIES" -v layers="$LAYERS" -v internal="$INTERNAL" \
    -v types="$LIBRARY_TYPES" -v banned="$BANNED" '
function fail(rule, msg) {
    printf "%s:%d: %s: %s\n", FILENAME, FNR, rule, msg
    found++
}
# The line with comments and the insides of string and character literals
# blanked, so that neither can match a rule; keeps the block-comment state
# across lines.
function strip(s,    out, i, c, n, q) {
    out = ""
    n = length(s)
    for (i = 1; i <= n; i++) {
        c = substr(s, i, 1)
        if (in_comment) {
            if (c == "*" && substr(s, i + 1, 1) == "/") { in_comment = 0; i++ }
            out = out " "
            continue
        }
        if (c == "/" && substr(s, i + 1, 1) == "*") { in_comment = 1; i++; out = out "  "; continue }
        if (c == "/" && substr(s, i + 1, 1) == "/") break
        if (c == "\"" || c == "\047") {
            q = c
            out = out q
            for (i++; i <= n; i++) {
                c = substr(s, i, 1)
                if (c == "\\") { i++; out = out "  "; continue }
                if (c == q) break
                out = out " "
            }
            out = out q
            continue
        }
        out = out c
    }
    return out
}
# The folder a path is in: the longest of our folders that prefixes it.
function folder_of(p) {
    if (p ~ /^store\/base\//) return "store/base"
    if (p ~ /^(store|engine|fcgi|admin|tests)\//) { sub(/\/.*/, "", p); return p }
    return ""
}
function libc_header(h) {
    return h in libc || h ~ /^(sys|arpa|netinet|net)\//
}
function library_of(h,    i, n, pats) {
    for (i = 1; i <= nlib; i++) {
        n = split(lib_pats[i], pats, " ")
        for (; n > 0; n--) {
            if (pats[n] ~ /\*$/ && index(h, substr(pats[n], 1, length(pats[n]) - 1)) == 1) return i
            if (h == pats[n]) return i
        }
    }
    return 0
}
BEGIN {
    n = split(libraries, rows, "\n")
    for (i = 1; i <= n; i++) {
        m = split(rows[i], f, " ")
        if (m < 3) continue
        nlib++
        lib_dir[nlib] = f[m]
        lib_name[nlib] = f[m - 1]
        lib_pats[nlib] = f[1]
        for (j = 2; j <= m - 2; j++) lib_pats[nlib] = lib_pats[nlib] " " f[j]
    }
    n = split(layers, rows, "\n")
    for (i = 1; i <= n; i++) {
        m = split(rows[i], f, " ")
        for (j = 2; j <= m; j++) may[f[1], f[j]] = 1
        if (m) layered[f[1]] = 1
    }
    n = split(internal, rows, "\n")
    for (i = 1; i <= n; i++)
        if (split(rows[i], f, " ")) is_internal[f[1]] = 1
    n = split(banned, rows, "\n")
    for (i = 1; i <= n; i++) {
        if (split(rows[i], f, " ") < 3) continue
        ban_where[f[1]] = f[2]
        why = rows[i]
        sub(/^[ \t]*[^ \t]+[ \t]+[^ \t]+[ \t]+/, "", why)
        ban_why[f[1]] = why
        ban_re = ban_re (ban_re == "" ? "" : "|") f[1]
    }
    # C11 and POSIX headers, and glibc'"'"'s own (sys/, arpa/, netinet/ and
    # net/ are libc too, see libc_header).
    split("assert.h complex.h ctype.h errno.h fenv.h float.h inttypes.h iso646.h limits.h " \
          "locale.h math.h setjmp.h signal.h stdalign.h stdarg.h stdatomic.h stdbool.h " \
          "stddef.h stdint.h stdio.h stdlib.h stdnoreturn.h string.h tgmath.h threads.h " \
          "time.h uchar.h wchar.h wctype.h aio.h cpio.h dirent.h dlfcn.h fcntl.h fnmatch.h " \
          "ftw.h glob.h grp.h iconv.h langinfo.h libgen.h monetary.h mqueue.h netdb.h " \
          "nl_types.h poll.h pthread.h pwd.h regex.h sched.h search.h semaphore.h spawn.h " \
          "strings.h syslog.h tar.h termios.h ulimit.h unistd.h utime.h utmpx.h wordexp.h " \
          "getopt.h features.h malloc.h endian.h err.h execinfo.h ifaddrs.h byteswap.h", l, " ")
    for (i in l) libc[l[i]] = 1
}
FNR == 1 {
    in_comment = 0
    dir = folder_of(FILENAME)
    header = FILENAME ~ /\.h$/
    product = dir in layered
}
{
    raw = $0
    was_comment = in_comment
    line = strip(raw)
}
!was_comment && raw ~ /^[ \t]*#[ \t]*include[ \t]*[<"]/ {
    inc = raw
    sub(/^[ \t]*#[ \t]*include[ \t]*/, "", inc)
    quoted = substr(inc, 1, 1) == "\""
    inc = substr(inc, 2)
    sub(/[>"].*$/, "", inc)
    if (!product) next
    if (!quoted) {
        lib = library_of(inc)
        if (lib) {
            if (dir == "store/base")
                fail("include-base", "<" inc "> (" lib_name[lib] "): store/base/ includes only libc and store/base/ headers")
            else if (dir != lib_dir[lib])
                fail("include-library", "<" inc "> (" lib_name[lib] ") is included only in " lib_dir[lib] "/ (DESIGN.md)")
            else if (header && !(FILENAME in is_internal))
                fail("header-library", "<" inc "> (" lib_name[lib] ") in a header: keep library types out of our headers, or make it folder-internal (tests/check.sh INTERNAL)")
        } else if (dir == "store/base" && !libc_header(inc))
            fail("include-base", "<" inc ">: store/base/ includes only libc and store/base/ headers")
        else if (!libc_header(inc) && inc !~ /^(linux|sanitizer)\//)
            fail("include-unknown", "<" inc ">: not libc, the OS, the compiler or a library of tests/check.sh LIBRARIES; classify it there")
        next
    }
    to = folder_of(inc)
    if (to == "")
        fail("include-layer", "\"" inc "\": name the folder (\"engine/x.h\")")
    else if (!((dir, to) in may))
        fail("include-layer", "\"" inc "\": " dir "/ does not include " to "/ (dependencies flow fcgi -> engine -> store; admin -> engine, store)")
    else if ((inc in is_internal) && folder_of(inc) != dir)
        fail("include-internal", "\"" inc "\" is internal to " folder_of(inc) "/")
    else if ((inc in is_internal) && header && !(FILENAME in is_internal))
        fail("include-internal", "\"" inc "\" in a public header would hand its library to every includer")
    next
}
product && header && !(FILENAME in is_internal) && line ~ ("(^|[^A-Za-z0-9_])(" types ")([^A-Za-z0-9_]|$)") {
    fail("header-type", "a library type in a header that is not internal: keep it behind an opaque type of ours")
}
line ~ ("(^|[^A-Za-z0-9_.>])(" ban_re ")[ \t]*\\(") {
    rest = line
    while (match(rest, "(^|[^A-Za-z0-9_.>])(" ban_re ")[ \t]*\\(")) {
        name = substr(rest, RSTART, RLENGTH)
        sub(/^[^A-Za-z_]*/, "", name)
        sub(/[ \t]*\($/, "", name)
        if (!(name in ban_where)) {
            # the match began with the previous character: drop it, retry
            rest = substr(rest, RSTART + 1)
            continue
        }
        w = ban_where[name]
        if (w == "all" || (w == "product" && product) ||
            (w == "threaded" && (dir == "fcgi" || dir == "engine" || dir ~ /^store/)))
            fail("banned", name "(): " ban_why[name])
        rest = substr(rest, RSTART + RLENGTH)
    }
}
END { exit found > 0 }
' "${files[@]}"; then
    echo "check: the rules above are broken (tests/check.sh explains each rule)"
    status=1
fi

if command -v clang-format >/dev/null; then
    if ! clang-format --dry-run --Werror "${files[@]}" 2>/dev/null; then
        clang-format --dry-run "${files[@]}" 2>&1 | grep -E '^[^ ].*:[0-9]+:[0-9]+: (warning|error)' \
            | sed -E 's/:([0-9]+):[0-9]+: (warning|error): .*/:\1: format: clang-format would change this (clang-format -i FILE)/' \
            | sort -u -t: -k1,1
        echo "check: clang-format would change files (clang-format -i FILE)"
        status=1
    fi
else
    echo "check: clang-format not installed; formatting not checked"
    [ "${CI:-}" = true ] && status=1
fi
[ $status -eq 0 ] && echo "check: ok"
exit $status
