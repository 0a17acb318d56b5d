// Several Relay sites on one machine, for the replicated store's
// end-to-end tests (issue 18, tests/e2e/cluster.test.mjs).
//
//   const group = await startSites('cluster', { n: 3, ini: {...} });
//   const [a, b, c] = group.sites;
//   await a.chat(body, { key: token });          // through site a's front
//   (await b.clusterStatus()).role              // relay-admin --json cluster status
//   await group.stop();                          // in `after`, also on failure
//
// Each site is a whole harness environment (tests/e2e/harness.mjs): its own
// directory, relay.ini, store, admin token, pool and front port. What they
// share is what a real group shares:
//   - ONE fake upstream (group.fake), so a test counts every site's calls;
//   - the store's secret: each site has its own key file, with the same
//     content (the replicated store is encrypted with one password
//     everywhere); it is written here, before the first `relay-admin init`,
//     which keeps an existing key file;
//   - with cluster: true (the default), a [cluster] section: this site's
//     replication address (127.0.0.1 and a port of its own), the others as
//     peers, create_group on the first site only, priorities 100, 90, 80...
//     (the first site is the first master; when it dies the next in line is
//     preferred), ack_policy quorum, partition_grace 5 s, master_timeout
//     1 s, forward_timeout 5 s. cluster: false starts the same sites without [cluster]: separate
//     stores, nothing shared but the fake and the secret (what the harness
//     itself is checked with before the replicated store exists).
//
// The sites start one after another, the first (the group's creator) first:
// a joining site finds a master to sync from. startSites resolves once every
// front answers /relay/health (the harness's wait, bounded).
//
// On a site (besides the harness's relay.* helpers):
//   site.label ('a', 'b', ...), site.addr (its replication "host:port"),
//   site.clusterStatus()   relay-admin --json cluster status, parsed (throws
//                          with the output when it fails),
//   site.adminToken()      the site's admin token (its own file),
//   site.stats()           GET /relay/admin/api/stats, parsed,
//   site.tokenSpend(id)    the token's day window from that document
//                          ({usd: {spent, reserved, ...}, ...}) or null,
//   site.kill()            SIGKILL every process of the site's pool (its
//                          process group: the parent, the cluster process,
//                          the workers); the front keeps running,
//   site.restart()         starts the pool again on the same ini and store;
//                          resolves once /relay/health answers (200 or 503:
//                          a rejoining site may report degraded at first).
//
// Every wait is bounded; stop() is safe at any point, also after a failed
// start, and the harness kills every process group it started if the test
// process exits without it.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { startFakeUpstream } from '../fake/upstream.mjs';
import { childPids, exited, freePort, sleep, startRelay, withHelpers } from './harness.mjs';

export const ADMIN_TIMEOUT = 10000; // one relay-admin run

// Polls fn() every `every` ms until it returns a truthy value, which is
// returned; after timeoutMs fails with what and the last value seen (or
// the last error fn threw). Never a fixed sleep standing for an assertion.
export async function poll(fn, timeoutMs, what, { every = 100 } = {}) {
  const until = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) {
      const seen = last instanceof Error ? last.message : JSON.stringify(last);
      assert.fail(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${seen})`);
    }
    await sleep(every);
  }
}

// The [cluster] section of site i of n, whose replication addresses are
// addrs. Keys as the config contract names them.
function clusterSection(i, addrs, extra) {
  return {
    site: addrs[i],
    peers: addrs.filter((_, j) => j !== i).join(' '),
    create_group: i === 0 ? 'yes' : undefined,
    priority: 100 - 10 * i,
    ack_policy: 'quorum',
    partition_grace: 5,
    master_timeout_ms: 1000,
    // The default (500 ms) is for a network of idle hosts; here three pools
    // share two busy cores, and a forwarded write that times out is a 503,
    // not the budget bound the tests are about.
    forward_timeout_ms: 5000,
    ...extra,
  };
}

// pid and every process under it, by /proc's children lists.
function descendants(pid) {
  const out = [pid];
  for (let i = 0; i < out.length; i++) out.push(...childPids(out[i]));
  return out;
}

// Whether pid is a live process (not gone, not a zombie).
function running(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function withSiteHelpers(site) {
  site.clusterStatus = async () => {
    const r = await site.admin(['--json', 'cluster', 'status'], { timeout: ADMIN_TIMEOUT });
    if (r.code !== 0) throw new Error(`site ${site.label}: relay-admin cluster status: exit ${r.code}: ${r.stderr}${r.stdout}`);
    try {
      return JSON.parse(r.stdout);
    } catch {
      throw new Error(`site ${site.label}: relay-admin --json cluster status is not JSON: ${r.stdout.slice(0, 300)}`);
    }
  };
  site.adminToken = async () => {
    if (site.adminTokenText) return site.adminTokenText;
    const r = await site.admin(['config', 'admin.token_file'], { timeout: ADMIN_TIMEOUT });
    assert.equal(r.code, 0, `site ${site.label}: relay-admin config admin.token_file: ${r.stderr}`);
    let file = r.stdout.trim();
    if (!path.isAbsolute(file)) file = path.join(site.tmp, file);
    site.adminTokenText = fs.readFileSync(file, 'utf8').trim();
    return site.adminTokenText;
  };
  site.stats = async () => {
    const r = await site.fetch('/relay/admin/api/stats', { headers: { authorization: `Bearer ${await site.adminToken()}` } });
    assert.equal(r.status, 200, `site ${site.label}: GET /relay/admin/api/stats: ${r.status} ${r.text.slice(0, 300)}`);
    return JSON.parse(r.text);
  };
  site.tokenSpend = async (id) => {
    const doc = await site.stats();
    const row = (doc.clients ?? []).find((c) => c.token?.id === id);
    return row?.token?.day ?? null;
  };
  site.kill = async () => {
    const pool = site.procs.relay;
    const pids = descendants(pool.pid);
    try {
      process.kill(-pool.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    assert.ok(await exited(pool, 5000), `site ${site.label}: the pool parent did not die of SIGKILL`);
    // Its children die with it (one process group) but may show for a
    // moment as zombies awaiting init's reaping: harmless (a zombie holds
    // no socket, no lock), yet the test wants "every process is dead", so
    // it waits for each to be gone or a zombie.
    await poll(() => pids.every((p) => !running(p)), 5000, `site ${site.label}'s processes ${pids.join(' ')} to die`, { every: 20 });
    // The harness's own bookkeeping (nothing left to stop: the group is dead).
    await site.stopPool();
  };
  site.restart = () => site.startPool({ healthy: false });
  return site;
}

// Starts n sites (see the top). options: n (3), cluster (true), ini
// (merged into every site's relay.ini), clusterIni (merged into every
// [cluster] section), perSite(i) ({section: {...}} for site i alone).
export async function startSites(name, options = {}) {
  const { n = 3, cluster = true, ini = {}, clusterIni = {}, perSite = () => ({}) } = options;
  const labels = 'abcdefghijklmnop'.slice(0, n).split('');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-sites-'));
  const group = { dir, sites: [], fake: null, addrs: [] };
  group.stop = async () => {
    if (group.stopped) return;
    group.stopped = true;
    // In parallel: each site's stop is bounded (SIGTERM, then SIGKILL to its
    // process group), and the group's survivors must not wait on each other.
    await Promise.allSettled(group.sites.map((s) => s.stop()));
    await group.fake?.close();
    if (process.env.RELAY_E2E_KEEP !== '1') fs.rmSync(dir, { recursive: true, force: true });
  };
  group.site = (addr) => group.sites.find((s) => s.addr === addr);
  try {
    group.fake = await startFakeUpstream();
    // One secret, n files (0600, as relay-admin init makes them).
    const secret = `${randomBytes(32).toString('hex')}\n`;
    for (let i = 0; i < n; i++) group.addrs.push(`127.0.0.1:${await freePort()}`);
    for (let i = 0; i < n; i++) {
      const keyFile = path.join(dir, `site-${labels[i]}.key`);
      fs.writeFileSync(keyFile, secret, { mode: 0o600 });
      const own = perSite(i);
      const siteIni = { ...ini, ...own };
      for (const s of Object.keys(ini)) if (own[s]) siteIni[s] = { ...ini[s], ...own[s] };
      siteIni.store = { key_file: keyFile, ...(siteIni.store ?? {}) };
      if (cluster) siteIni.cluster = clusterSection(i, group.addrs, { ...clusterIni, ...(own.cluster ?? {}) });
      const site = withSiteHelpers(withHelpers(await startRelay(`${name} site ${labels[i]}`, { fake: group.fake, ini: siteIni, healthy: !cluster })));
      site.label = labels[i];
      site.addr = group.addrs[i];
      group.sites.push(site);
    }
    return group;
  } catch (err) {
    await group.stop();
    throw err;
  }
}
