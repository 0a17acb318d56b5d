/*
 * cmd_doctor.c — relay-admin doctor: what Relay needs, checked one thing at
 * a time, each printed as one line with its status and, when something is
 * wrong, the fix.
 *
 * The checks run in the order a deployment depends on them: the config,
 * the files it names (directories, key, admin token), the store, the front
 * (the socket and the pool behind it), then each upstream. A check that
 * cannot run because an earlier one failed says so (SKIP) rather than
 * adding a second failure for the same cause. Nothing here changes
 * anything: files are only read, the store is opened shared (as Relay
 * opens it) and closed, the pool is asked for /relay/health.
 */
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <netdb.h>
#include <unistd.h>

#include "admin/admin.h"
#include "engine/probe.h"
#include "engine/upstream.h"
#include "store/base/rl_log.h"
#include "store/secret.h"

#define MiB ((uint64_t)1024 * 1024)
#define SPACE_MIN (64 * MiB)   /* below this the store cannot work: FAIL */
#define HEALTH_TIMEOUT_MS 5000 /* for the pool's answer to /relay/health */
#define SECRET_SHORT 16        /* a secret shorter than this is guessable */

typedef enum { CHECK_OK, CHECK_WARN, CHECK_FAIL, CHECK_SKIP } check_status;
static const char *const status_names[] = {"OK", "WARN", "FAIL", "SKIP"};

typedef struct doctor {
    const admin_ctx *ctx;
    unsigned checks, failed, warnings;
    uint64_t store_bytes; /* what the store holds, once it opened */
    char user[64];        /* who runs the checks */
} doctor;

/* Prints one check: its status, what was checked, what was found and, for
 * WARN and FAIL, the fix (NULL: none to give). */
static void report(doctor *d, check_status st, const char *check, const char *fix, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));
static void report(doctor *d, check_status st, const char *check, const char *fix, const char *fmt,
                   ...)
{
    char detail[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    d->failed += st == CHECK_FAIL;
    d->warnings += st == CHECK_WARN;
    if (d->ctx->json) {
        printf("%s{\"check\":", d->checks ? "," : "");
        admin_json_cstr(stdout, check);
        printf(",\"status\":\"%s\",\"detail\":", status_names[st]);
        admin_json_cstr(stdout, detail);
        printf(",\"fix\":");
        if (fix)
            admin_json_cstr(stdout, fix);
        else
            printf("null");
        printf("}");
    } else if (fix && (st == CHECK_WARN || st == CHECK_FAIL)) {
        printf("%-4s  %-16s %s -> fix: %s\n", status_names[st], check, detail, fix);
    } else {
        printf("%-4s  %-16s %s\n", status_names[st], check, detail);
    }
    d->checks++;
}

/* ---- the files the config names ---------------------------------------------- */

/* The nearest existing directory at or above path (cap bytes into out). */
static void existing_ancestor(const char *path, char *out, size_t cap)
{
    snprintf(out, cap, "%s", path);
    struct stat st;
    while (stat(out, &st) != 0) {
        char *slash = strrchr(out, '/');
        if (!slash || slash == out) {
            snprintf(out, cap, "/");
            return;
        }
        *slash = '\0';
    }
}

/* A directory Relay writes in (the store's home, the socket's): it must be
 * writable, or creatable under a writable ancestor. */
static void check_dir(doctor *d, const char *check, const char *dir, const char *what)
{
    char fix[4608], anc[4096];
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            snprintf(fix, sizeof fix, "move it away, or point the config at a directory");
            report(d, CHECK_FAIL, check, fix, "%s (%s) is not a directory", dir, what);
        } else if (access(dir, W_OK | X_OK) != 0) {
            snprintf(fix, sizeof fix,
                     "chown -R %s %s (Relay and relay-admin run as one user), or run doctor as "
                     "the user Relay runs as",
                     d->user, dir);
            report(d, CHECK_FAIL, check, fix, "%s (%s) is not writable by %s", dir, what, d->user);
        } else {
            report(d, CHECK_OK, check, NULL, "%s (%s) is writable", dir, what);
        }
        return;
    }
    existing_ancestor(dir, anc, sizeof anc);
    if (access(anc, W_OK | X_OK) != 0) {
        snprintf(fix, sizeof fix, "create %s and give it to %s, or choose a path %s can create",
                 dir, d->user, d->user);
        report(d, CHECK_FAIL, check, fix, "%s (%s) does not exist and %s may not create it in %s",
               dir, what, d->user, anc);
        return;
    }
    report(d, CHECK_OK, check, NULL, "%s (%s) does not exist yet; it is created at the first start",
           dir, what);
}

/* Whether the store in home holds data (so a missing key is a lost key). */
static int store_has_data(const char *home)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/cache.db", home);
    return access(path, F_OK) == 0;
}

/* What doctor says of one secret file, whatever secret_read finds. */
typedef struct secret_check {
    const char *check; /* the check's name */
    check_status missing_status;
    const char *missing; /* after the path, when it does not exist */
    const char *missing_fix;
    const char *refuser;      /* who refuses a file other users may read */
    const char *unusable_fix; /* for a file that is there but unusable */
    const char *short_fix;    /* for a guessable secret */
} secret_check;

/* Reports on the secret file at path as c says; secret_read's result. */
static rl_err check_secret_file(doctor *d, const secret_check *c, const char *path)
{
    secret k;
    rl_buf why;
    rl_buf_init(&why, 1024);
    char fix[4608], group_fix[4608];
    rl_err e = secret_read(path, &k, &why);
    snprintf(fix, sizeof fix, "chmod 600 %s", path);
    snprintf(group_fix, sizeof group_fix, "chmod 600 %s, unless its group is meant to read it",
             path);
    if (e == RL_NOTFOUND)
        report(d, c->missing_status, c->check, c->missing_fix, "%s %s", path, c->missing);
    else if (e == RL_FORBIDDEN)
        report(d, CHECK_FAIL, c->check, fix,
               "%s is accessible to other users (mode %03o): %s refuses it", path, k.mode & 0777,
               c->refuser);
    else if (e != RL_OK)
        report(d, CHECK_FAIL, c->check, c->unusable_fix, "%s",
               why.data ? why.data : rl_err_text(e));
    else if (secret_access_of(k.mode) == SECRET_GROUP)
        report(d, CHECK_WARN, c->check, group_fix, "%s is readable by its group (mode %03o)", path,
               k.mode & 0777);
    else if (k.len < SECRET_SHORT)
        report(d, CHECK_WARN, c->check, c->short_fix, "%s holds a short secret (%zu characters)",
               path, k.len);
    else
        report(d, CHECK_OK, c->check, NULL, "%s: mode %03o, %zu characters", path, k.mode & 0777,
               k.len);
    secret_release(&k);
    rl_buf_release(&why);
    return e;
}

typedef enum { KEY_USABLE, KEY_BAD, KEY_NOT_YET } key_state;

/* The store's key: [store] key_env's variable, or key_file. */
static key_state check_key(doctor *d, const relay_config *cfg)
{
    char fix[4608];
    if (*cfg->store.key_env) {
        const char *var = cfg->store.key_env;
        secret k;
        rl_buf why;
        rl_buf_init(&why, 1024);
        rl_err e = secret_from_env(var, &k, &why);
        snprintf(fix, sizeof fix,
                 "set %s in the environment of relay.fcgi and relay-admin (systemd: "
                 "Environment= or EnvironmentFile=; mod_fcgid: FcgidInitialEnv), or empty "
                 "[store] key_env to use key_file",
                 var);
        if (e != RL_OK)
            report(d, CHECK_FAIL, "store key", fix, "[store] key_env: %s", why.data);
        else if (k.len < SECRET_SHORT)
            report(d, CHECK_WARN, "store key", "use 32 random bytes, e.g. openssl rand -hex 32",
                   "$%s holds a short secret (%zu characters)", var, k.len);
        else
            report(d, CHECK_OK, "store key", NULL, "from $%s ([store] key_env), %zu characters",
                   var, k.len);
        secret_release(&k);
        rl_buf_release(&why);
        return e == RL_OK ? KEY_USABLE : KEY_BAD;
    }
    const char *path = cfg->store.key_file;
    int has_data = store_has_data(cfg->store.home);
    char missing[4608];
    snprintf(fix, sizeof fix, "put back the key file this store was made with (%s)", path);
    snprintf(missing, sizeof missing,
             "put back the key file this store was made with (a backup, %s.old), or move %s "
             "aside to start an empty store",
             path, cfg->store.home);
    const secret_check c = {
        .check = "store key",
        .missing_status = has_data ? CHECK_FAIL : CHECK_WARN,
        .missing = has_data ? "is missing, and the store needs it" : "does not exist yet",
        .missing_fix = has_data ? missing : "relay-admin init (or the first start) creates it",
        .refuser = "the store",
        .unusable_fix = fix,
        .short_fix = "relay-admin rekey (with Relay stopped)",
    };
    rl_err e = check_secret_file(d, &c, path);
    return e == RL_OK ? KEY_USABLE : e == RL_NOTFOUND && !has_data ? KEY_NOT_YET : KEY_BAD;
}

static void check_token(doctor *d, const relay_config *cfg)
{
    const char *path = cfg->admin.token_file;
    char fix[4608];
    snprintf(fix, sizeof fix, "remove %s and run relay-admin init to make a new one", path);
    const secret_check c = {
        .check = "admin token",
        .missing_status = CHECK_WARN,
        .missing = "does not exist: the admin API and the dashboard refuse every request",
        .missing_fix = "relay-admin init",
        .refuser = "the admin API",
        .unusable_fix = fix,
        .short_fix = fix,
    };
    (void)check_secret_file(d, &c, path);
}

/* ---- the store ------------------------------------------------------------------ */

/* The first error the store logged while it was opened, for the report. */
typedef struct first_error {
    char text[1024];
} first_error;

static void keep_first_error(void *ctx, const char *line)
{
    first_error *f = ctx;
    const char *msg = strstr(line, " error: ");
    if (!msg || f->text[0])
        return;
    snprintf(f->text, sizeof f->text, "%s", msg + 8);
}

/* Opens the store as Relay does, only when it exists: opening creates
 * one, and doctor changes nothing. */
static int check_store(doctor *d, key_state ks)
{
    const relay_config *cfg = d->ctx->cfg;
    if (ks == KEY_BAD) {
        report(d, CHECK_SKIP, "store", NULL, "%s: not opened without a usable key (see above)",
               cfg->store.home);
        return -1;
    }
    if (ks == KEY_NOT_YET || !store_has_data(cfg->store.home)) {
        report(d, CHECK_SKIP, "store", NULL,
               "no store in %s yet: relay-admin init or Relay's first start creates it",
               cfg->store.home);
        return -1;
    }
    /* Opening creates the environment's shared memory when no process has
     * it open, owned by whoever opens it: as another user (root, say) that
     * would leave segments Relay's user cannot attach. */
    struct stat st_home;
    if (stat(cfg->store.home, &st_home) == 0 && st_home.st_uid != geteuid()) {
        struct passwd *owner = getpwuid(st_home.st_uid);
        char fix[4608], name[64];
        snprintf(name, sizeof name, "%s", owner ? owner->pw_name : "its owner");
        snprintf(fix, sizeof fix, "run doctor as %s: sudo -u %s relay-admin -c %s doctor", name,
                 name, cfg->path);
        report(d, CHECK_WARN, "store", fix,
               "%s belongs to %s, and doctor runs as %s: not opened (shared memory it created "
               "would be %s's, which Relay cannot attach)",
               cfg->store.home, name, d->user, d->user);
        return -1;
    }
    store_options so;
    config_store_options(cfg, &so);
    first_error err = {""};
    store *s = NULL;
    rl_log_set_thread_sink(keep_first_error, &err);
    rl_err e = store_open(&so, &s);
    rl_log_set_thread_sink(NULL, NULL);
    if (e != RL_OK) {
        report(d, CHECK_FAIL, "store",
               "if the key is right, stop Relay and run relay-admin recover; relay-admin verify "
               "tells what is damaged",
               "%s does not open: %s", cfg->store.home, err.text[0] ? err.text : rl_err_text(e));
        return -1;
    }
    store_stats st = {0};
    (void)store_stats_get(s, &st);
    store_close(s);
    d->store_bytes = st.bytes;
    report(d, CHECK_OK, "store", NULL,
           "%s opens (recovered first if a process had died): %" PRIu64 " entries, %" PRIu64
           " bytes",
           cfg->store.home, st.entries, st.bytes);
    return 0;
}

static void check_space(doctor *d)
{
    const relay_config *cfg = d->ctx->cfg;
    char dir[4096], fix[4608];
    existing_ancestor(cfg->store.home, dir, sizeof dir);
    struct statvfs vfs;
    if (statvfs(dir, &vfs) != 0) {
        report(d, CHECK_WARN, "free space", NULL, "cannot tell the free space of %s: %s", dir,
               strerror(errno));
        return;
    }
    uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    uint64_t room =
        cfg->store.max_bytes > d->store_bytes ? cfg->store.max_bytes - d->store_bytes : 0;
    snprintf(fix, sizeof fix, "free space on the file system of %s, or move [store] home", dir);
    if (avail < SPACE_MIN)
        report(d, CHECK_FAIL, "free space", fix,
               "%" PRIu64 " MiB free on the file system of %s: the store's logs need room, and "
               "a full disk leaves Relay serving uncached",
               avail / MiB, dir);
    else if (avail < room)
        report(d, CHECK_WARN, "free space", "free space, or lower [store] max_bytes",
               "%" PRIu64 " MiB free on the file system of %s: the cache cannot grow to [store] "
               "max_bytes (%" PRIu64 " MiB more)",
               avail / MiB, dir, room / MiB);
    else
        report(d, CHECK_OK, "free space", NULL, "%" PRIu64 " MiB free on the file system of %s",
               avail / MiB, dir);
}

/* ---- the front ------------------------------------------------------------------ */

/* The mod_fcgid site that runs Relay with this relay.ini, if Apache has
 * one enabled: Apache starts relay.fcgi itself then, and [fcgi] listen is
 * not used. 1 with its file in out. */
static int fcgid_site(const char *ini, char *out, size_t cap)
{
    static const char *const dirs[] = {"/etc/apache2/sites-enabled", "/etc/apache2/conf-enabled"};
    char want[4200], line[4400], path[4400];
    snprintf(want, sizeof want, "RELAY_INI %s", ini);
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        DIR *dp = opendir(dirs[i]);
        struct dirent *de;
        while (dp && (de = readdir(dp)) != NULL) {
            if (de->d_name[0] == '.')
                continue;
            snprintf(path, sizeof path, "%s/%s", dirs[i], de->d_name);
            FILE *f = fopen(path, "re");
            int found = 0;
            while (f && !found && fgets(line, sizeof line, f))
                found = strstr(line, "FcgidInitialEnv") && strstr(line, want);
            if (f)
                fclose(f);
            if (found) {
                snprintf(out, cap, "%s", path);
                closedir(dp);
                return 1;
            }
        }
        if (dp)
            closedir(dp);
    }
    return 0;
}

/* Connects to [fcgi] listen: a unix socket path or HOST:PORT. The fd, or
 * -1 with errno set. */
static int connect_listen(const char *listen)
{
    if (listen[0] == '/') {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        if (strlen(listen) >= sizeof a.sun_path) {
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(a.sun_path, listen, strlen(listen) + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
            int err = errno;
            close(fd);
            errno = err;
            return -1;
        }
        return fd;
    }
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (!colon || (size_t)(colon - listen) >= sizeof host) {
        errno = EINVAL;
        return -1;
    }
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0) {
        errno = EHOSTUNREACH;
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            int err = errno;
            close(fd);
            fd = -1;
            errno = err;
        }
    }
    freeaddrinfo(res);
    return fd;
}

/* Asks the pool on fd for /relay/health, as the web server would. */
static void check_health(doctor *d, int fd, const char *listen)
{
    rl_buf got;
    rl_buf_init(&got, 65536);
    int r = admin_fcgi_get(fd, "/relay/health", HEALTH_TIMEOUT_MS, &got);
    const char *body = got.data ? strstr(got.data, "\r\n\r\n") : NULL;
    if (r == -2) {
        report(d, CHECK_WARN, "pool", "are all its threads busy? see the log, [fcgi] threads",
               "a pool accepts on %s but did not answer /relay/health within %d s", listen,
               HEALTH_TIMEOUT_MS / 1000);
    } else if (r != 0 || !body) {
        report(d, CHECK_FAIL, "pool", "see relay.fcgi's log (journalctl -u relay)",
               "a pool accepts on %s but did not answer /relay/health", listen);
    } else {
        body += 4;
        /* "degraded\nstore: ...\nstats: ...\n" on one line: "degraded (store:
         * ...; stats: ...)" */
        char text[1024];
        size_t n = 0, first = strcspn(body, "\n");
        n += (size_t)snprintf(text, sizeof text, "%.*s", (int)first, body);
        for (const char *p = body + first; *p && n < sizeof text; p += strcspn(p, "\n")) {
            p++;
            size_t len = strcspn(p, "\n");
            if (len)
                n += (size_t)snprintf(text + n, sizeof text - n, "%s%.*s", n == first ? " (" : "; ",
                                      (int)len, p);
        }
        if (n > first && n < sizeof text - 1)
            snprintf(text + n, sizeof text - n, ")");
        if (strncmp(body, "ok", 2) == 0)
            report(d, CHECK_OK, "pool", NULL, "a pool answers /relay/health on %s: %s", listen,
                   text);
        else
            report(d, CHECK_WARN, "pool", "see the store and key lines above",
                   "a pool answers /relay/health on %s: %s", listen, text);
    }
    rl_buf_release(&got);
}

/* Whether the user (uid, in groups) has the permission bit (4 r, 2 w, 1 x)
 * on st, as the kernel decides it for a non-root user. */
static int permits(const struct stat *st, uid_t uid, const gid_t *groups, int ngroups, int bit)
{
    if (uid == 0)
        return 1;
    if (st->st_uid == uid)
        return (st->st_mode >> 6) & bit;
    for (int i = 0; i < ngroups; i++)
        if (groups[i] == st->st_gid)
            return (st->st_mode >> 3) & bit;
    return st->st_mode & bit;
}

/* Whether the user called name may connect to the socket at path: search
 * (x) on every directory above it and write on the socket. 1, or 0 with
 * what stops it in why. */
static int user_can_connect(const struct passwd *pw, const char *path, char *why, size_t cap)
{
    gid_t groups[256];
    int ngroups = 256;
    if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &ngroups) < 0)
        ngroups = 0;
    char dir[4096];
    struct stat st;
    for (const char *p = strchr(path + 1, '/'); p; p = strchr(p + 1, '/')) {
        snprintf(dir, sizeof dir, "%.*s", (int)(p - path), path);
        if (stat(dir, &st) == 0 && !permits(&st, pw->pw_uid, groups, ngroups, 1)) {
            snprintf(why, cap, "it may not enter %s (mode %03o)", dir, st.st_mode & 0777);
            return 0;
        }
    }
    if (stat("/", &st) == 0 && !permits(&st, pw->pw_uid, groups, ngroups, 1)) {
        snprintf(why, cap, "it may not enter /");
        return 0;
    }
    if (stat(path, &st) == 0 && !permits(&st, pw->pw_uid, groups, ngroups, 2)) {
        struct group *g = getgrgid(st.st_gid);
        snprintf(why, cap, "the socket is mode %03o, group %s", st.st_mode & 0777,
                 g ? g->gr_name : "?");
        return 0;
    }
    return 1;
}

/* The web servers' users: nginx's and Apache's workers run as www-data,
 * Caddy's package runs it as caddy. */
static void check_front_users(doctor *d, const char *path)
{
    static const struct {
        const char *user, *who;
    } users[] = {{"www-data", "nginx's and Apache's workers"}, {"caddy", "Caddy's service"}};
    int any = 0;
    for (size_t i = 0; i < sizeof users / sizeof users[0]; i++) {
        struct passwd *pw = getpwnam(users[i].user);
        if (!pw)
            continue;
        any = 1;
        char why[4608], check[32], fix[4608];
        snprintf(check, sizeof check, "socket: %s", users[i].user);
        snprintf(fix, sizeof fix,
                 "if your front runs as %s: run Relay with group %s (systemd Group=), and let it "
                 "enter every directory above the socket",
                 users[i].user, users[i].user);
        if (user_can_connect(pw, path, why, sizeof why))
            report(d, CHECK_OK, check, NULL, "%s (%s) may connect to %s", users[i].user,
                   users[i].who, path);
        else
            report(d, CHECK_WARN, check, fix, "%s (%s) may not connect to %s: %s", users[i].user,
                   users[i].who, path, why);
    }
    if (!any)
        report(d, CHECK_SKIP, "socket: users", NULL,
               "no www-data or caddy user here: the front's user is yours to check");
}

static void check_front(doctor *d)
{
    const relay_config *cfg = d->ctx->cfg;
    const char *listen = cfg->fcgi.listen;
    char site[4400], fix[4608];
    int is_path = listen[0] == '/';
    struct stat st;
    if (is_path && lstat(listen, &st) != 0) {
        if (fcgid_site(cfg->path, site, sizeof site)) {
            report(d, CHECK_OK, "front", NULL,
                   "Apache mod_fcgid starts relay.fcgi itself (%s); [fcgi] listen is not used",
                   site);
            return;
        }
        snprintf(fix, sizeof fix,
                 "start the pool: systemctl start relay, make run, or relay.fcgi -c %s", cfg->path);
        report(d, CHECK_FAIL, "front", fix, "no socket at %s ([fcgi] listen): no pool is running",
               listen);
        return;
    }
    if (is_path && !S_ISSOCK(st.st_mode)) {
        snprintf(fix, sizeof fix, "remove %s; the pool creates its socket when it starts", listen);
        report(d, CHECK_FAIL, "front", fix, "%s ([fcgi] listen) exists but is not a socket",
               listen);
        return;
    }
    int fd = connect_listen(listen);
    if (fd < 0) {
        int err = errno;
        snprintf(fix, sizeof fix, "%s",
                 err == EACCES ? "run doctor as the user Relay runs as"
                               : "start the pool: systemctl start relay, or make run");
        report(d, CHECK_FAIL, "front", fix, "cannot connect to %s ([fcgi] listen): %s%s", listen,
               strerror(err),
               err == ECONNREFUSED ? " (nothing listens: a pool that stopped left it)" : "");
        return;
    }
    report(d, CHECK_OK, "front", NULL, "%s ([fcgi] listen) accepts connections", listen);
    check_health(d, fd, listen);
    close(fd);
    if (is_path)
        check_front_users(d, listen);
}

/* ---- the upstreams ---------------------------------------------------------------- */

typedef struct probe_ctx {
    doctor *d;
    const char *name;
} probe_ctx;

static void on_finding(void *ctx, const probe_finding *f)
{
    probe_ctx *p = ctx;
    static const check_status map[] = {CHECK_OK, CHECK_WARN, CHECK_FAIL, CHECK_SKIP};
    char check[96];
    snprintf(check, sizeof check, "upstream %s: %s", p->name, f->name);
    report(p->d, map[f->status], check, f->fix, "%s", f->detail);
}

static void check_upstreams(doctor *d)
{
    const relay_config *cfg = d->ctx->cfg;
    if (upstream_global_init() != RL_OK) {
        report(d, CHECK_FAIL, "upstreams", NULL, "libcurl does not initialise");
        return;
    }
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        probe_ctx p = {d, cfg->upstreams[i].name};
        /* Relay holds no upstream keys yet: the authenticated step says
         * it skipped. */
        (void)probe_upstream(&cfg->upstreams[i], NULL, on_finding, &p);
    }
    upstream_global_cleanup();
}

/* ---- the command ------------------------------------------------------------------- */

int cmd_doctor(admin_ctx *ctx, store *s, int argc, char **argv)
{
    (void)s;
    if (argc > 1) {
        fprintf(stderr, "relay-admin doctor: unexpected argument %s\n", argv[1]);
        return EXIT_USAGE;
    }
    doctor d = {.ctx = ctx};
    struct passwd *pw = getpwuid(geteuid());
    snprintf(d.user, sizeof d.user, "%s", pw ? pw->pw_name : "this user");
    if (ctx->json)
        printf("{\"checks\":[");
    const relay_config *cfg = ctx->cfg;
    if (!cfg) {
        report(&d, CHECK_FAIL, "config", "correct what the message names", "%s does not load: %s",
               ctx->config_path, ctx->config_error);
    } else {
        report(&d, CHECK_OK, "config", NULL,
               "%s loads: %zu upstream(s); every path resolved (store %s, socket %s)", cfg->path,
               cfg->nupstreams, cfg->store.home, cfg->fcgi.listen);
        check_dir(&d, "store home", cfg->store.home, "[store] home");
        if (cfg->fcgi.listen[0] == '/') {
            char dir[4096];
            const char *slash = strrchr(cfg->fcgi.listen, '/');
            snprintf(dir, sizeof dir, "%.*s",
                     slash == cfg->fcgi.listen ? 1 : (int)(slash - cfg->fcgi.listen),
                     cfg->fcgi.listen);
            check_dir(&d, "socket dir", dir, "where [fcgi] listen is created");
        }
        key_state ks = check_key(&d, cfg);
        check_token(&d, cfg);
        check_store(&d, ks);
        check_space(&d);
        check_front(&d);
        check_upstreams(&d);
    }
    if (ctx->json) {
        printf("],\"ok\":%s,\"failed\":%u,\"warnings\":%u}\n", d.failed ? "false" : "true",
               d.failed, d.warnings);
    } else {
        printf("\n%u checks: %u failed, %u warnings%s\n", d.checks, d.failed, d.warnings,
               d.failed ? "" : " (nothing stops Relay)");
    }
    return d.failed ? EXIT_FAIL : EXIT_OK;
}
