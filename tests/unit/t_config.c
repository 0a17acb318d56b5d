/* Unit tests for engine/config: defaults, validation, path resolution. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/config.h"
#include "tests/unit/tap.h"

static char dir[] = "/tmp/relay-t-config-XXXXXX";

static const char *write_ini(const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static rl_err load(const char *text, relay_config **cfg, rl_buf *why)
{
    rl_buf_reset(why);
    return config_load(write_ini("t.ini", text), cfg, why);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    relay_config *cfg = NULL;
    rl_buf why;
    rl_buf_init(&why, 0);

    is_int(load("[upstream.openai]\ntype = openai\n", &cfg, &why), RL_OK, "a minimal file loads");
    if (cfg) {
        is_int(cfg->fcgi.workers, 4, "workers default");
        is_int(cfg->fcgi.threads, 32, "threads default");
        ok(cfg->fcgi.workers * cfg->fcgi.threads >= 64, "defaults allow 64 concurrent streams");
        is_int(cfg->cache.policy, CACHE_POLICY_DETERMINISTIC, "policy default");
        is_int(cfg->cache.default_ttl, 86400, "ttl default");
        is_str(cfg->upstreams[0].base_url, "https://api.openai.com", "base_url default");
        char want[300];
        snprintf(want, sizeof want, "%s/var/store", dir);
        is_str(cfg->store.home, want, "relative paths resolve against the ini's directory");
        rl_buf v;
        rl_buf_init(&v, 0);
        is_int(config_get_text(cfg, "upstream.openai.base_url", &v), RL_OK,
               "get_text finds an upstream key");
        is_str(v.data, "https://api.openai.com", "get_text value");
        rl_buf_reset(&v);
        config_get_text(cfg, "cache.policy", &v);
        is_str(v.data, "deterministic", "get_text renders enums");
        is_int(config_get_text(cfg, "cache.nope", &v), RL_NOTFOUND, "get_text unknown key");
        rl_buf_release(&v);
        config_free(cfg);
    }

    is_int(load("[upstream.openai]\nbase_url = http://127.0.0.1:9/x///\n[fcgi]\nlisten = "
                "127.0.0.1:7000\n",
                &cfg, &why),
           RL_OK, "a TCP listen address and a URL with slashes load");
    if (cfg) {
        is_str(cfg->upstreams[0].base_url, "http://127.0.0.1:9/x", "trailing slashes are removed");
        is_str(cfg->fcgi.listen, "127.0.0.1:7000", "HOST:PORT is not treated as a path");
        config_free(cfg);
    }

    is_int(load("[upstream.openai]\n[cache]\npolicy = sometimes\n", &cfg, &why), RL_CONFIG,
           "an unknown enum value is refused");
    ok(why.data && strstr(why.data, "policy") && strstr(why.data, "deterministic"),
       "the reason names the key and the choices");
    is_int(load("[upstream.openai]\n[fcgi]\nworkers = lots\n", &cfg, &why), RL_CONFIG,
           "a non-number is refused");
    is_int(load("[upstream.openai]\n[fcgi]\nworkers = 0\n", &cfg, &why), RL_CONFIG,
           "a number out of range is refused");
    is_int(load("[upstream.openai]\n[fcgi]\nworkerz = 2\n", &cfg, &why), RL_CONFIG,
           "an unknown key is refused");
    ok(why.data && strstr(why.data, "workerz"), "the reason names the unknown key");
    is_int(load("[upstream.openai]\n[nonsense]\nx = 1\n", &cfg, &why), RL_CONFIG,
           "an unknown section is refused");
    is_int(load("[upstream.openai]\nbase_url = ftp://x\n", &cfg, &why), RL_CONFIG,
           "a non-http base_url is refused");
    is_int(load("[cache]\npolicy = always\n", &cfg, &why), RL_CONFIG,
           "a config without upstreams is refused");
    is_int(load("[upstream.openai]\n[fcgi]\nthreads = 2\nthreads = 3\n", &cfg, &why), RL_CONFIG,
           "a key set twice is refused");
    is_int(config_load("/nonexistent/relay.ini", &cfg, &why), RL_IO, "a missing file is RL_IO");

    /* [fcgi] max_threads: the default holds 2,000 streams on the default
     * 4 workers; left out it follows a larger threads; below threads it is
     * refused. */
    is_int(load("[upstream.openai]\ntype = openai\n", &cfg, &why), RL_OK, "defaults load");
    if (cfg) {
        is_int(cfg->fcgi.max_threads, 512, "max_threads default");
        ok(cfg->fcgi.workers * cfg->fcgi.max_threads >= 2000,
           "defaults allow 2,000 concurrent streams");
        store_options so;
        config_store_options(cfg, &so);
        is_int(so.max_threads, 4 * (512 + 2) + 16, "the thread table holds every thread");
        is_int(so.txn_threads, 4 * (32 + 2) + 16, "the lock tables, the threads kept ready");
        config_free(cfg);
        cfg = NULL;
    }
    is_int(load("[upstream.openai]\ntype = openai\n[fcgi]\nthreads = 600\n", &cfg, &why), RL_OK,
           "threads above the default max_threads load");
    if (cfg) {
        is_int(cfg->fcgi.max_threads, 600, "max_threads left out follows threads");
        config_free(cfg);
        cfg = NULL;
    }
    is_int(load("[upstream.openai]\ntype = openai\n[fcgi]\nthreads = 8\nmax_threads = 4\n", &cfg,
                &why),
           RL_CONFIG, "max_threads below threads is refused");
    ok(why.data && strstr(why.data, "[fcgi] max_threads: 4 is below threads (8)"),
       "the reason names the key and both values");
    is_int(load("[upstream.openai]\ntype = openai\n[fcgi]\nmax_threads = 5000\n", &cfg, &why),
           RL_CONFIG, "max_threads above 4096 is refused");

    /* Several upstreams: base_url defaults by type, mounts checked. */
    is_int(load("[upstream.a]\ntype = anthropic\n[upstream.g]\ntype = gemini\n"
                "[upstream.o]\ntype = ollama\nmount = /local\n",
                &cfg, &why),
           RL_OK, "several upstreams of several types load");
    if (cfg) {
        is_int(cfg->nupstreams, 3, "three upstreams");
        is_int(cfg->upstreams[0].type, UPSTREAM_TYPE_ANTHROPIC, "type anthropic");
        is_str(cfg->upstreams[0].base_url, "https://api.anthropic.com", "anthropic's default URL");
        is_str(cfg->upstreams[1].base_url, "https://generativelanguage.googleapis.com",
               "gemini's default URL");
        is_str(cfg->upstreams[2].base_url, "http://127.0.0.1:11434", "ollama's default URL");
        is_str(cfg->upstreams[2].mount, "/local", "a mount");
        is_str(cfg->upstreams[0].mount, "", "no mount by default");
        config_free(cfg);
    }
    is_int(load("[upstream.az]\ntype = azure\n", &cfg, &why), RL_CONFIG,
           "azure without base_url is refused");
    ok(why.data && strstr(why.data, "base_url") && strstr(why.data, "azure"),
       "the reason says base_url is required for azure");
    is_int(load("[upstream.c]\ntype = openai-compatible\nbase_url = http://127.0.0.1:8000\n", &cfg,
                &why),
           RL_OK, "openai-compatible with a base_url loads");
    if (cfg)
        config_free(cfg);
    is_int(load("[upstream.a]\nmount = anthropic\n", &cfg, &why), RL_CONFIG,
           "a mount without a leading slash is refused");
    is_int(load("[upstream.a]\nmount = /a/\n", &cfg, &why), RL_CONFIG,
           "a mount with a trailing slash is refused");
    is_int(load("[upstream.a]\nmount = /x\n[upstream.b]\nmount = /x\n", &cfg, &why), RL_CONFIG,
           "two upstreams on one mount are refused");
    is_int(load("[upstream.a]\ntype = bedrock\n", &cfg, &why), RL_CONFIG,
           "an unknown type is refused");

    /* Every value is checked, and the reason names the key. */
    static const struct {
        const char *ini, *key, *what;
    } refused[] = {
        {"[fcgi]\nlisten = 127.0.0.1:99999\n", "listen", "a port above 65535"},
        {"[fcgi]\nlisten = 127.0.0.1:0\n", "listen", "port 0"},
        {"[fcgi]\nlisten = 127.0.0.1:http\n", "listen", "a port that is not a number"},
        {"[fcgi]\nlisten = :9000\n", "listen", "a port without a host"},
        {"[fcgi]\nlisten = /tmp/"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "a"
         "aaaaaaaaaaaaaaaaaaaaaa.sock\n",
         "listen", "a socket path too long for sun_path"},
        {"[fcgi]\nlisten =\n", "listen", "an empty listen"},
        {"[store]\nhome =\n", "home", "an empty path"},
        {"[cache]\ndefault_ttl = 100\nmax_ttl = 10\n", "default_ttl", "default_ttl above max_ttl"},
        {"[cache]\nmax_ttl = 0\n", "max_ttl", "max_ttl 0"},
        {"[fcgi]\nmax_body = 10\n", "max_body", "a max_body below its range"},
        {"[store]\nmax_bytes = -1\n", "max_bytes", "a negative size"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char ini[512], what[256];
        snprintf(ini, sizeof ini, "[upstream.openai]\ntype = openai\n%s", refused[i].ini);
        snprintf(what, sizeof what, "%s is refused", refused[i].what);
        is_int(load(ini, &cfg, &why), RL_CONFIG, what);
        ok(why.data && strstr(why.data, refused[i].key), "... naming the key");
        if (!why.data || !strstr(why.data, refused[i].key))
            printf("#   why: %s\n", why.data ? why.data : "(none)");
    }
    static const struct {
        const char *section, *what;
    } bad_upstreams[] = {
        {"base_url = http://\n", "a base_url without a host"},
        {"base_url = http://:8000\n", "a base_url with a port but no host"},
        {"base_url = http://127.0.0.1:70000\n", "a base_url port above 65535"},
        {"base_url = http://127.0.0.1:x/\n", "a base_url port that is not a number"},
        {"base_url = http://user:pw@127.0.0.1\n", "credentials in base_url"},
        {"base_url = http://127.0.0.1/v1?x=1\n", "a base_url with a query"},
        {"base_url = http://127.0.0.1/a/../b\n", "a base_url with a dot segment"},
        {"base_url = http://[::1\n", "an unclosed IPv6 host"},
        {"mount = /a/../b\n", "a mount with a dot segment"},
        {"mount = /a//b\n", "a mount with an empty segment"},
        {"connect_timeout = 100\ntimeout = 50\n", "a connect_timeout above timeout"},
        {"idle_timeout = 100\ntimeout = 50\n", "an idle_timeout above timeout"},
    };
    for (size_t i = 0; i < sizeof bad_upstreams / sizeof bad_upstreams[0]; i++) {
        char ini[512], what[256];
        snprintf(ini, sizeof ini, "[upstream.o]\ntype = openai\n%s", bad_upstreams[i].section);
        snprintf(what, sizeof what, "%s is refused", bad_upstreams[i].what);
        is_int(load(ini, &cfg, &why), RL_CONFIG, what);
        ok(why.data && strstr(why.data, "[upstream.o]"), "... naming the section");
    }
    is_int(load("[upstream.o]\nbase_url = http://[::1]:8000/v1\n[fcgi]\nlisten = [::1]:9000\n",
                &cfg, &why),
           RL_OK, "IPv6 hosts with ports load");
    if (cfg)
        config_free(cfg);
    else
        printf("#   why: %s\n", why.data);

    /* The shipped relay.ini must load as is. */
    is_int(config_load("relay.ini", &cfg, &why), RL_OK, "the shipped relay.ini loads");
    if (cfg) {
        unsigned types = 0;
        for (size_t i = 0; i < cfg->nupstreams; i++)
            types |= 1u << cfg->upstreams[i].type;
        unsigned want_types =
            1u << UPSTREAM_TYPE_OPENAI | 1u << UPSTREAM_TYPE_ANTHROPIC | 1u << UPSTREAM_TYPE_GEMINI;
        ok((types & want_types) == want_types,
           "... and serves OpenAI, Anthropic and Gemini out of the box");
        config_free(cfg);
    } else
        printf("# %s\n", why.data);

    /* Policy per upstream: [cache]'s unless the section sets its own. */
    is_int(load("[cache]\npolicy = always\ndefault_ttl = 100\nmax_ttl = 1000\n"
                "[upstream.a]\ntype = openai\n"
                "[upstream.b]\ntype = anthropic\npolicy = never\ndefault_ttl = 5000\n"
                "max_ttl = 9000\ncache_tools = off\n",
                &cfg, &why),
           RL_OK, "per-upstream policy loads");
    if (cfg) {
        is_int(cfg->upstreams[0].policy, CACHE_POLICY_ALWAYS, "a: [cache] policy inherited");
        is_int(cfg->upstreams[0].default_ttl, 100, "a: [cache] default_ttl inherited");
        is_int(cfg->upstreams[0].max_ttl, 1000, "a: [cache] max_ttl inherited");
        is_int(cfg->upstreams[0].cache_tools, 1, "a: cache_tools defaults to on");
        is_int(cfg->upstreams[1].policy, CACHE_POLICY_NEVER, "b: its own policy");
        is_int(cfg->upstreams[1].default_ttl, 5000, "b: its own default_ttl (past [cache]'s max)");
        is_int(cfg->upstreams[1].max_ttl, 9000, "b: its own max_ttl");
        is_int(cfg->upstreams[1].cache_tools, 0, "b: cache_tools = off");
        config_free(cfg);
        cfg = NULL;
    }
    is_int(load("[upstream.a]\ndefault_ttl = 100\nmax_ttl = 50\n", &cfg, &why), RL_CONFIG,
           "an upstream's default_ttl above its max_ttl is refused");
    ok(strstr(why.data ? why.data : "", "[upstream.a] default_ttl"), "... naming the key");
    is_int(load("[upstream.a]\nmax_ttl = 50\n", &cfg, &why), RL_CONFIG,
           "an inherited default_ttl above the upstream's max_ttl is refused");
    is_int(load("[upstream.a]\ncache_tools = maybe\n", &cfg, &why), RL_CONFIG,
           "cache_tools takes on or off");

    rl_buf_release(&why);
    unlink(write_ini("t.ini", ""));
    rmdir(dir);
    return tap_done();
}
