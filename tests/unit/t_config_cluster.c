/* Unit tests for relay.ini's [cluster] (engine/config.c), the site address
 * parser (store/cluster_addr.c) and the private-address classifier
 * (engine/config_values.c). Names resolve through /etc/hosts (localhost)
 * or fail at once (.invalid, RFC 6761): nothing waits on a DNS server. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "engine/config.h"
#include "engine/config_cluster.h"
#include "engine/config_values.h"
#include "store/cluster.h"
#include "tests/unit/tap.h"

static char dir[] = "/tmp/relay-t-config-cluster-XXXXXX";

static const char *write_ini(const char *text)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/t.ini", dir);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

/* Loads an upstream and then text (sections of the test's own). */
static rl_err load(const char *text, relay_config **cfg, rl_buf *why)
{
    char ini[8192];
    snprintf(ini, sizeof ini, "[upstream.openai]\ntype = openai\n%s", text);
    rl_buf_reset(why);
    return config_load(write_ini(ini), cfg, why);
}

/* Loads text, which must be refused with a reason containing want. */
static void refused(const char *text, const char *want, const char *what)
{
    relay_config *cfg = NULL;
    rl_buf why;
    rl_buf_init(&why, 0);
    char label[300];
    snprintf(label, sizeof label, "%s is refused", what);
    is_int(load(text, &cfg, &why), RL_CONFIG, label);
    snprintf(label, sizeof label, "... saying \"%s\"", want);
    if (!ok(why.data && strstr(why.data, want), label))
        printf("#   why: %s\n", why.data ? why.data : "(none)");
    config_free(cfg);
    rl_buf_release(&why);
}

static void test_addr_split(void)
{
    static const struct {
        const char *addr;
        int rc;
        const char *host;
        unsigned port;
    } cases[] = {
        {"relay1:7600", 0, "relay1", 7600},
        {"relay1.example.com:1", 0, "relay1.example.com", 1},
        {"10.0.0.1:65535", 0, "10.0.0.1", 65535},
        {"[::1]:7600", 0, "::1", 7600},
        {"[fe80::1%eth0]:7600", 0, "fe80::1%eth0", 7600},
        {"relay1:0", -1, NULL, 0},
        {"relay1:65536", -1, NULL, 0},
        {"relay1:1000000", -1, NULL, 0},
        {"relay1:", -1, NULL, 0},
        {"relay1:+80", -1, NULL, 0},
        {"relay1:80 ", -1, NULL, 0},
        {"relay1:8a", -1, NULL, 0},
        {":7600", -1, NULL, 0},
        {"relay1", -1, NULL, 0},
        {"", -1, NULL, 0},
        {"::1:7600", -1, NULL, 0}, /* IPv6 without brackets */
        {"[::1]", -1, NULL, 0},
        {"[::1]7600", -1, NULL, 0},
        {"[]:7600", -1, NULL, 0},
        {"[::1:7600", -1, NULL, 0},
        {"re lay:7600", -1, NULL, 0},
        {"a:1,b:2", -1, NULL, 0},
        {"a/b:7600", -1, NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char host[CLUSTER_ADDR_MAX] = "", what[200];
        unsigned port = 0;
        snprintf(what, sizeof what, "cluster_addr_split(\"%s\") %s", cases[i].addr,
                 cases[i].rc ? "is refused" : "splits");
        is_int(cluster_addr_split(cases[i].addr, host, sizeof host, &port), cases[i].rc, what);
        if (cases[i].rc == 0) {
            is_str(host, cases[i].host, "... the host");
            is_int(port, cases[i].port, "... the port");
        }
    }
    char small[6];
    unsigned port;
    is_int(cluster_addr_split("abcde:1", small, sizeof small, &port), 0, "a host that fits cap");
    is_int(cluster_addr_split("abcdef:1", small, sizeof small, &port), -1,
           "a host longer than cap is refused");
}

static void test_classifier(void)
{
    static const struct {
        const char *addr;
        int private;
    } cases[] = {
        {"127.0.0.1", 1},
        {"127.255.255.254", 1},
        {"10.0.0.1", 1},
        {"10.255.255.255", 1},
        {"11.0.0.1", 0},
        {"9.255.255.255", 0},
        {"172.16.0.1", 1},
        {"172.31.255.255", 1},
        {"172.15.255.255", 0},
        {"172.32.0.1", 0},
        {"192.168.0.1", 1},
        {"192.169.0.1", 0},
        {"192.167.255.255", 0},
        {"169.254.1.1", 1},
        {"169.255.0.1", 0},
        {"100.64.0.1", 1},
        {"100.127.255.255", 1},
        {"100.63.255.255", 0},
        {"100.128.0.1", 0},
        {"8.8.8.8", 0},
        {"203.0.113.5", 0},
        {"0.0.0.0", 0},
        {"255.255.255.255", 0},
        {"::1", 1},
        {"::", 0},
        {"::2", 0},
        {"fc00::1", 1},
        {"fdff:ffff::1", 1},
        {"fe00::1", 0},
        {"fe80::1", 1},
        {"febf::1", 1},
        {"fec0::1", 0},
        {"2001:db8::1", 0},
        {"2606:4700::1111", 0},
        {"::ffff:10.1.2.3", 1},
        {"::ffff:127.0.0.1", 1},
        {"::ffff:100.100.1.1", 1},
        {"::ffff:8.8.8.8", 0},
        {"::10.1.2.3", 0}, /* IPv4-compatible: deprecated, not mapped */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof ss);
        int v6 = strchr(cases[i].addr, ':') != NULL;
        int parsed;
        if (v6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            s6->sin6_family = AF_INET6;
            parsed = inet_pton(AF_INET6, cases[i].addr, &s6->sin6_addr);
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            s4->sin_family = AF_INET;
            parsed = inet_pton(AF_INET, cases[i].addr, &s4->sin_addr);
        }
        char what[120];
        snprintf(what, sizeof what, "%s is %s", cases[i].addr,
                 cases[i].private ? "private" : "not private");
        if (!ok(parsed == 1 && config_addr_is_private((struct sockaddr *)&ss) == cases[i].private,
                what))
            printf("#   parsed %d\n", parsed);
    }
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    is_int(config_addr_is_private((struct sockaddr *)&un), 0, "another family is not private");
}

static void test_defaults(void)
{
    relay_config *cfg = NULL;
    rl_buf why;
    rl_buf_init(&why, 0);
    is_int(load("", &cfg, &why), RL_OK, "a file without [cluster] loads");
    if (cfg) {
        is_str(cfg->cluster.site, "", "site: none (no cluster)");
        is_str(cfg->cluster.peers, "", "peers: none");
        char want[300];
        snprintf(want, sizeof want, "%s/var/store-cluster", dir);
        is_str(cfg->cluster.home, want, "home: [store] home with -cluster, absolute");
        is_int(cfg->cluster.create_group, 0, "create_group: no");
        is_int(cfg->cluster.priority, 100, "priority: 100");
        is_int(cfg->cluster.ack_policy, CLUSTER_ACK_QUORUM, "ack_policy: quorum");
        is_int(cfg->cluster.partition_grace, 5, "partition_grace: 5 s");
        is_int(cfg->cluster.forward_timeout_ms, 500, "forward_timeout_ms: 500");
        is_int(cfg->cluster.master_timeout_ms, 2000, "master_timeout_ms: 2000");
        is_int(cfg->cluster.allow_public, 0, "allow_public: no");
        rl_buf v;
        rl_buf_init(&v, 0);
        is_int(config_get_text(cfg, "cluster.home", &v), RL_OK, "get_text cluster.home");
        is_str(v.data, want, "... the resolved default");
        rl_buf_reset(&v);
        config_get_text(cfg, "cluster.ack_policy", &v);
        is_str(v.data, "quorum", "get_text cluster.ack_policy");
        rl_buf_release(&v);
        config_free(cfg);
        cfg = NULL;
    }
    is_int(load("[store]\nhome = /srv/relay/store//\n", &cfg, &why), RL_OK,
           "a [store] home with trailing slashes loads");
    if (cfg)
        is_str(cfg->cluster.home, "/srv/relay/store-cluster",
               "... its cluster home beside it, not inside it");
    config_free(cfg);
    rl_buf_release(&why);
}

static void test_full(void)
{
    relay_config *cfg = NULL;
    rl_buf why;
    rl_buf_init(&why, 0);
    is_int(load("[store]\nkey_env = RELAY_KEY\n"
                "[cluster]\nsite = 127.0.0.1:7601\n"
                "peers =  127.0.0.2:7602 [::1]:7603\tlocalhost:7604 [fd00::2]:7605 \n"
                "home = shared\ncreate_group = yes\npriority = 0\nack_policy = all_available\n"
                "partition_grace = 7\nforward_timeout_ms = 10\nmaster_timeout_ms = 300\n",
                &cfg, &why),
           RL_OK, "a full [cluster] loads (IPv4, [IPv6], a name, blanks around peers)");
    if (!cfg) {
        printf("#   why: %s\n", why.data);
        rl_buf_release(&why);
        return;
    }
    char want[300];
    snprintf(want, sizeof want, "%s/shared", dir);
    is_str(cfg->cluster.home, want, "a relative home resolves against the ini's directory");
    is_int(cfg->cluster.create_group, 1, "create_group = yes");
    is_int(cfg->cluster.ack_policy, CLUSTER_ACK_ALL_AVAILABLE, "ack_policy = all_available");

    store_options local, so;
    store_cluster sc;
    config_store_options(cfg, &local);
    memset(&so, 0xa5, sizeof so);
    config_cluster_options(cfg, 1, &so, &sc);
    is_str(sc.site, "127.0.0.1:7601", "sc.site");
    ok(sc.peers == cfg->cluster.peers, "sc.peers is borrowed from cfg");
    is_int(sc.create_group, 1, "sc.create_group");
    is_int(sc.priority, 0, "sc.priority");
    is_int(sc.ack, CLUSTER_ACK_ALL_AVAILABLE, "sc.ack");
    is_int(sc.listener, 1, "sc.listener");
    is_int(sc.forward_timeout_ms, 10, "sc.forward_timeout_ms");
    is_int(sc.partition_grace_ms, 7000, "sc.partition_grace_ms: seconds x 1000");
    is_int(sc.master_timeout_ms, 300, "sc.master_timeout_ms");
    is_str(so.home, want, "so.home: [cluster] home");
    ok(so.key_file == local.key_file && so.key_env == local.key_env,
       "so: [store]'s secret (key_file, key_env)");
    is_str(so.key_env, "RELAY_KEY", "... key_env");
    is_int(so.max_bytes, 0, "so.max_bytes: no cap");
    is_int(so.max_entries, 0, "so.max_entries: no cap");
    is_int(so.max_entry_bytes, 1024 * 1024, "so.max_entry_bytes: 1 MiB");
    is_int(so.cache_mb, 16, "so.cache_mb: 16");
    is_int(so.max_threads, local.max_threads, "so.max_threads as the local store's");
    is_int(so.txn_threads, local.txn_threads, "so.txn_threads as the local store's");
    is_int(so.hold_max_age, 0, "so.hold_max_age: the store's default");
    ok(so.lock == NULL, "so.lock: the shared open");
    ok(so.cluster == &sc, "so.cluster points at sc");
    ok(local.cluster == NULL, "the local store is not replicated");
    config_cluster_options(cfg, 0, &so, &sc);
    is_int(sc.listener, 0, "listener 0 for a process that only forwards");
    config_free(cfg);
    rl_buf_release(&why);
}

/* Each numeric key's bounds are accepted, one past them refused. */
static void test_ranges(void)
{
    static const struct {
        const char *key;
        long min, max;
    } keys[] = {
        {"priority", 0, 1000},
        {"partition_grace", 0, 3600},
        {"forward_timeout_ms", 10, 60000},
        {"master_timeout_ms", 300, 600000},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        long v[4] = {keys[i].min, keys[i].max, keys[i].min - 1, keys[i].max + 1};
        for (int j = 0; j < 4; j++) {
            char ini[200], what[200];
            snprintf(ini, sizeof ini, "[cluster]\n%s = %ld\n", keys[i].key, v[j]);
            snprintf(what, sizeof what, "%s = %ld", keys[i].key, v[j]);
            if (j >= 2) {
                char want[100];
                snprintf(want, sizeof want, "[cluster] %s: expected a whole number", keys[i].key);
                refused(ini, want, what);
                continue;
            }
            relay_config *cfg = NULL;
            rl_buf why;
            rl_buf_init(&why, 0);
            snprintf(what + strlen(what), sizeof what - strlen(what), " loads");
            is_int(load(ini, &cfg, &why), RL_OK, what);
            config_free(cfg);
            rl_buf_release(&why);
        }
    }
    refused("[cluster]\nack_policy = majority\n", "one_peer all all_available none",
            "an unknown ack_policy");
    refused("[cluster]\ncreate_group = maybe\n", "[cluster] create_group", "create_group = maybe");
    refused("[cluster]\nallow_public = on\n", "[cluster] allow_public", "allow_public = on");
}

static void test_refusals(void)
{
    static const char public_tail[] =
        "is a public address; repmgr neither encrypts nor authenticates: use a private network "
        "or VPN, or set allow_public = yes";
    char want[300];
    snprintf(want, sizeof want, "[cluster] site: 203.0.113.5 %s", public_tail);
    refused("[cluster]\nsite = 203.0.113.5:7600\npeers = 10.0.0.2:7600\n", want, "a public site");
    snprintf(want, sizeof want, "[cluster] peers: 8.8.8.8 %s", public_tail);
    refused("[cluster]\nsite = 10.0.0.1:7600\npeers = 10.0.0.2:7600 8.8.8.8:7600\n", want,
            "a public peer");
    refused("[cluster]\nsite = 10.0.0.1:7600\npeers = [2001:db8::1]:7600\n",
            "[cluster] peers: 2001:db8::1 is a public address", "a public IPv6 peer");
    refused("[cluster]\nsite = [::ffff:8.8.8.8]:7600\npeers = 10.0.0.2:7600\n",
            "is a public address", "an IPv4-mapped public site");
    refused("[cluster]\nsite = 0.0.0.0:7600\npeers = 10.0.0.2:7600\n",
            "[cluster] site: 0.0.0.0 is every interface, public ones included",
            "a site on every interface");
    refused("[cluster]\nsite = nosuch.invalid:7600\npeers = 10.0.0.2:7600\n",
            "[cluster] site: nosuch.invalid does not resolve", "a site that does not resolve");
    refused("[cluster]\nsite = 10.0.0.1:7600\npeers = 10.0.0.2:7600 nosuch.invalid:7600\n",
            "[cluster] peers: nosuch.invalid does not resolve", "a peer that does not resolve");
    refused("[cluster]\nsite = 10.0.0.1:7600\npeers = 10.0.0.2:7600 10.0.0.3:7600 "
            "10.0.0.2:7600\n",
            "[cluster] peers: 10.0.0.2:7600 is listed twice", "a peer listed twice");
    refused("[cluster]\nsite = 10.0.0.1:7600\npeers = LOCALHOST:7601 localhost:7601\n",
            "is listed twice", "a peer listed twice in another case");
    refused("[cluster]\nsite = 10.0.0.1:7600\npeers = 10.0.0.2:7600 10.0.0.1:7600\n",
            "[cluster] peers: 10.0.0.1:7600 is this site", "site among peers");
    refused("[cluster]\npeers = 10.0.0.2:7600\n", "[cluster] peers: set without site",
            "peers without site");
    refused("[cluster]\nsite = 10.0.0.1:7600\n",
            "a group of one is not a group: set peers, or remove [cluster] site",
            "site without peers");
    refused("[cluster]\nsite = 10.0.0.1:7600\npeers =   \t\n", "set peers, or remove",
            "site with blank peers");
    refused("[cluster]\nsite = 10.0.0.1:7600\npeers = 10.0.0.2:7600, 10.0.0.3:7600\n",
            "[cluster] peers: separate the sites with spaces, not commas", "peers with commas");
    static const char *const bad_addrs[] = {
        "10.0.0.1:0", "10.0.0.1:65536", "10.0.0.1:x", "10.0.0.1",
        ":7600",      "::1:7600",       "[::1]7600",  "[::1]",
    };
    for (size_t i = 0; i < sizeof bad_addrs / sizeof bad_addrs[0]; i++) {
        char ini[300], what[100];
        snprintf(ini, sizeof ini, "[cluster]\nsite = %s\npeers = 10.0.0.2:7600\n", bad_addrs[i]);
        snprintf(want, sizeof want, "[cluster] site: \"%s\" is not host:port", bad_addrs[i]);
        snprintf(what, sizeof what, "site = %s", bad_addrs[i]);
        refused(ini, want, what);
    }
    refused("[cluster]\nsite = 10.0.0.1:7600\npeers = 10.0.0.2:99999\n",
            "[cluster] peers: \"10.0.0.2:99999\" is not host:port", "a peer's bad port");
    /* 16 sites in all may be named; a 17th is refused. */
    char ini[2048] = "[cluster]\nsite = 10.0.0.1:7600\npeers =";
    for (int i = 2; i <= CLUSTER_MAX_SITES; i++)
        snprintf(ini + strlen(ini), sizeof ini - strlen(ini), " 10.0.0.%d:7600", i);
    relay_config *cfg = NULL;
    rl_buf why;
    rl_buf_init(&why, 0);
    snprintf(ini + strlen(ini), sizeof ini - strlen(ini), "\n");
    is_int(load(ini, &cfg, &why), RL_OK, "15 peers load");
    config_free(cfg);
    rl_buf_release(&why);
    ini[strlen(ini) - 1] = '\0';
    snprintf(ini + strlen(ini), sizeof ini - strlen(ini), " 10.0.0.99:7600\n");
    refused(ini, "[cluster] peers: more than 15 sites", "16 peers");
    refused("[store]\nhome = /srv/relay/store\n[cluster]\nhome = /srv/relay/store/\n",
            "[cluster] home: /srv/relay/store/ is [store] home", "home = [store] home");

    /* allow_public: public addresses load, and names are not resolved. */
    cfg = NULL;
    rl_buf_init(&why, 0);
    is_int(load("[cluster]\nallow_public = yes\nsite = 203.0.113.5:7600\n"
                "peers = [2001:db8::1]:7600 8.8.8.8:7600 relay3.invalid:7600\n",
                &cfg, &why),
           RL_OK, "public addresses load with allow_public = yes");
    if (cfg)
        is_int(cfg->cluster.allow_public, 1, "... allow_public is 1");
    else
        printf("#   why: %s\n", why.data);
    config_free(cfg);
    rl_buf_release(&why);
}

/* The shipped relay.ini documents every [cluster] key commented out, at
 * its default: uncommented, the section loads and equals the defaults
 * but for the example's site and peers. */
static void test_shipped_ini(void)
{
    FILE *f = fopen("relay.ini", "r");
    if (!ok(f != NULL, "relay.ini is readable (run from the repository)"))
        return;
    static char text[65536];
    size_t n = 0, keys = 0;
    int in_cluster = 0;
    char line[1024];
    static const char *const names[] = {
        "site",
        "peers",
        "home",
        "create_group",
        "priority",
        "ack_policy",
        "partition_grace",
        "forward_timeout_ms",
        "master_timeout_ms",
        "allow_public",
    };
    unsigned seen = 0;
    while (fgets(line, sizeof line, f)) {
        const char *l = line;
        if (strncmp(line, ";[cluster]", 10) == 0)
            in_cluster = 1;
        else if (line[0] == '[')
            in_cluster = 0;
        /* ";key = value" (no blank after ';') is a commented-out key. */
        if (in_cluster && line[0] == ';' && line[1] != ' ' && line[1] != '\n') {
            l = line + 1;
            for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
                if (strncmp(l, names[i], strlen(names[i])) == 0 &&
                    strncmp(l + strlen(names[i]), " =", 2) == 0) {
                    seen |= 1u << i;
                    keys++;
                }
        }
        size_t ln = strlen(l);
        if (n + ln < sizeof text) {
            memcpy(text + n, l, ln);
            n += ln;
        }
    }
    fclose(f);
    text[n] = '\0';
    is_int(keys, sizeof names / sizeof names[0], "relay.ini documents each [cluster] key once");
    is_int(seen, (1u << (sizeof names / sizeof names[0])) - 1, "... every one of them");
    relay_config *cfg = NULL, *dflt = NULL;
    rl_buf why;
    rl_buf_init(&why, 0);
    is_int(config_load(write_ini(text), &cfg, &why), RL_OK,
           "relay.ini with [cluster] uncommented loads");
    if (!cfg)
        printf("#   why: %s\n", why.data);
    is_int(load("", &dflt, &why), RL_OK, "(the defaults)");
    if (cfg && dflt) {
        ok(cfg->cluster.site[0] && cfg->cluster.peers[0], "... the example sets site and peers");
        is_str(cfg->cluster.home, dflt->cluster.home, "... home as documented");
        is_int(cfg->cluster.create_group, dflt->cluster.create_group,
               "... create_group as documented");
        is_int(cfg->cluster.priority, dflt->cluster.priority, "... priority as documented");
        is_int(cfg->cluster.ack_policy, dflt->cluster.ack_policy, "... ack_policy as documented");
        is_int(cfg->cluster.partition_grace, dflt->cluster.partition_grace,
               "... partition_grace as documented");
        is_int(cfg->cluster.forward_timeout_ms, dflt->cluster.forward_timeout_ms,
               "... forward_timeout_ms as documented");
        is_int(cfg->cluster.master_timeout_ms, dflt->cluster.master_timeout_ms,
               "... master_timeout_ms as documented");
        is_int(cfg->cluster.allow_public, dflt->cluster.allow_public,
               "... allow_public as documented");
    }
    config_free(cfg);
    config_free(dflt);
    rl_buf_release(&why);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    test_addr_split();
    test_classifier();
    test_defaults();
    test_full();
    test_ranges();
    test_refusals();
    test_shipped_ini();
    unlink(write_ini(""));
    rmdir(dir);
    return tap_done();
}
