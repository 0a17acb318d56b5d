#!/usr/bin/env bash
# Tests tests/check.sh on a small tree of C files that break each rule once
# (and on lines that only look like they do), in a temporary directory: every
# finding expected is printed with its file, line and rule, and nothing else
# is. TAP output; exit 1 when a test point fails. Run by make check.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/tests" "$tmp/store/base" "$tmp/engine" "$tmp/fcgi" "$tmp/admin" "$tmp/store"
cp "$here/check.sh" "$tmp/tests/"

put() { printf '%s\n' "$2" > "$tmp/$1"; }

# Each file: what it breaks, on which line (see "expect" below).
put store/base/b.c '#include "store/base/b.h"
#include <openssl/crypto.h>
#include <linux/futex.h>
#include "store/store.h"
#include <string.h>
#include <sys/random.h>'
put store/s.c '#include <db.h>
#include <jansson.h>
#include "engine/engine.h"
#include "store/store_int.h"'
put store/store_int.h '#include <db.h>'
put store/store.h '#include <stdint.h>
typedef struct DB_ENV env_t;
/* a DB_ENV in a comment is fine */
#include "store/store_int.h"'
put engine/e.c '#include <curl/curl.h>
#include <fcgiapp.h>
#include "fcgi/front.h"
#include "store/store_int.h"
#include <jansson.h>
#include "engine/prov_json.h"
#include <yaml.h>
#include "local.h"'
put engine/prov_json.h '#include <jansson.h>'
put engine/e.h '#include <jansson.h>
json_t *f(void);'
put fcgi/f.c '#include <fcgiapp.h>
#include "store/store.h"
#include "engine/prov_json.h"
#include "admin/admin.h"'
put admin/a.c '#include <openssl/crypto.h>
#include "engine/engine.h"
#include "store/store.h"
#include <sys/stat.h>
#include <netinet/tcp.h>'
put engine/calls.c 'void f(void)
{
    char b[8], *s = 0;
    int n = sscanf(s, "%d", &n);
    n = atoi(s) + (int)strlen(s);
    strncpy(b, s, 8);
    x.system("a"); p->popen("b"); my_sprintf(b); fgets(b, 8, 0);
    /* strcpy(b, s) in a comment, and
       sprintf(b, s) across lines */ n = 0; // gets(b)
    const char *t = "strcat(b, s)", c = '\''"'\'';
    t = "\"sprintf(\" stays in the string"; strtok(s, " ");
    gmtime(&n); system("x"); rand();
}'
put tests/t.c '#include <jansson.h>
#include "store/store_int.h"
void t(void) { system("x"); gmtime(0); sprintf(0, "x"); }'

expect='store/base/b.c:2: include-base
store/base/b.c:3: include-base
store/base/b.c:4: include-layer
store/s.c:2: include-library
store/s.c:3: include-layer
store/store.h:2: header-type
store/store.h:4: include-internal
engine/e.c:2: include-library
engine/e.c:3: include-layer
engine/e.c:4: include-internal
engine/e.c:7: include-unknown
engine/e.c:8: include-layer
engine/e.h:1: header-library
engine/e.h:2: header-type
fcgi/f.c:2: include-layer
fcgi/f.c:3: include-internal
fcgi/f.c:4: include-layer
admin/a.c:1: include-library
engine/calls.c:4: banned sscanf
engine/calls.c:5: banned atoi
engine/calls.c:6: banned strncpy
engine/calls.c:11: banned strtok
engine/calls.c:12: banned gmtime
engine/calls.c:12: banned system
engine/calls.c:12: banned rand
tests/t.c:3: banned sprintf'

files=(store/base/b.c store/s.c store/store_int.h store/store.h engine/e.c engine/prov_json.h
    engine/e.h fcgi/f.c admin/a.c engine/calls.c tests/t.c)
out=$(cd "$tmp" && bash tests/check.sh "${files[@]}" 2>&1)
rc=$?
# "FILE:LINE: RULE" (and the function, for banned) of each finding
got=$(printf '%s\n' "$out" | grep -E '^[a-z/_.]+:[0-9]+: [a-z-]+:' | grep -v ': format:' \
    | sed -E 's/^([^:]+:[0-9]+: [a-z-]+): ([a-z_]+)\(\).*/\1 \2/; s/^([^:]+:[0-9]+: [a-z-]+):.*/\1/')

n=0
fails=0
point() {
    n=$((n + 1))
    if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fails=$((fails + 1)); fi
}
while IFS= read -r e; do
    printf '%s\n' "$got" | grep -qxF "$e"
    point $? "finds $e"
done <<< "$expect"
unexpected=$(comm -13 <(printf '%s\n' "$expect" | sort) <(printf '%s\n' "$got" | sort))
[ -z "$unexpected" ]
point $? "no other finding${unexpected:+: $(echo $unexpected)}"
[ "$rc" -ne 0 ]
point $? "exit status is non-zero when a rule is broken (was $rc)"
printf '%s\n' "$out" | grep -qE '^store/s\.c:2: include-library: <jansson\.h> \(jansson\) is included only in engine/'
point $? "a finding names the file, the line, the rule and the library's folder"

# A tree that keeps every rule passes.
cp "$here/../.clang-format" "$tmp/"
put engine/good.c '#include "engine/prov_json.h"
#include "store/store.h"
#include <curl/curl.h>
#include <string.h>

int g(char *b, const char *s)
{
    return snprintf(b, 8, "%s", s); /* not sprintf(b, s) */
}'
out=$(cd "$tmp" && bash tests/check.sh engine/good.c engine/prov_json.h store/store_int.h 2>&1)
[ "$out" = "check: ok" ]
point $? "a file that keeps the rules passes (got: $(echo $out))"

echo "1..$n"
[ "$fails" -eq 0 ]
