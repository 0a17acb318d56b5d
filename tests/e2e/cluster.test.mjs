// Several Relay hosts sharing tokens and budgets through Berkeley DB
// replication (issue 18), on one machine: three sites on loopback, each
// with its own directory, relay.ini, store, pool and front port, one
// [cluster] group between them (store/cluster.h), one fake upstream
// counting every site's calls (tests/e2e/cluster.mjs). The cases:
//   - a token created on one site works on the others within a second
//     (polled up to 5 s: the time it took is a diagnostic, not a pass mark);
//   - revoked on one site, refused on all;
//   - 10 requests' worth of budget, 60 concurrent requests spread over the
//     three sites: at most 11 reach the upstream, the rest get 429 in
//     OpenAI's format;
//   - SIGKILL of every process of the master site: a new master is
//     elected, a request on a surviving site succeeds and its spend is
//     counted; the old master restarts and rejoins as a replica; every site
//     agrees on the spend (relay-admin cluster status, the stats API);
//   - a site left alone (the other two killed) has no master: /relay/health
//     says degraded, cache hits and pass-through are still served, and a
//     reservation is refused after [cluster] partition_grace rather than
//     spent unaccounted.
// Besides: relay.fcgi refuses a site address on a public interface unless
// [cluster] allow_public is set; and three sites WITHOUT [cluster] (the
// harness checked on its own) keep separate stores, so a token is valid on
// its own site only: what the cluster cases show comes from replication.
//
// The cases run in order on one group: the failover case changes which
// site is master, and the last one kills two sites. Every wait is polled
// with a deadline; `after` stops every site (process groups), also when a
// case fails.
//
// e2e-fronts: caddy (this is about the store and its replication, not the
// front: run once, behind Caddy)

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { BUILD, FRONT, KEY_A, chatBody, exited, iniText, missingPrerequisites, runBounded, uniq } from './harness.mjs';
import { frontProcessModel } from './fronts.mjs';
import { ADMIN_TIMEOUT, poll, startSites } from './cluster.mjs';
import { heldKeyFile, makeToken } from './tokens.mjs';
import { assertOpenAIError } from './wire.mjs';

const IN_CI = process.env.CI === 'true';
const missing = missingPrerequisites();
// Killing a site's processes needs the pool (its process group); under
// mod_fcgid Apache owns relay.fcgi and there is no cluster process.
const skip = frontProcessModel(FRONT) === 'fcgid'
  ? `needs the standalone pool: RELAY_FRONT=${FRONT} starts relay.fcgi itself`
  : missing && !IN_CI ? `${missing} (set CI=true to make this a failure)` : false;

// Bounds (ms). The issue asks for a token everywhere "within a second":
// polled up to 5 s so that a loaded machine does not fail it, with the
// time it took printed. An election: master_timeout 1 s, then a vote;
// "within seconds" on an idle machine, 30 s allowed on a loaded one.
const PROPAGATE = 5000;
const ELECTION = 30000;
const REJOIN = 30000;
const AGREE = 30000;
const START = 3 * 60 * 1000; // three sites, one after another
const CASE = { timeout: 120000 };

const HELD = heldKeyFile('sk-held-cluster-e2e');
const OPTIONS = {
  ini: {
    // 20 concurrent requests per site in the budget case, with room.
    fcgi: { workers: 4, threads: 8 },
    'upstream.openai': { api_key_file: HELD.file },
    pricing: { 'gpt-4o-mini': '0.15 0.60' },
  },
};

// A request that misses (a marker of its own): it goes upstream.
const ask = (site, token, text, { timeout } = {}) =>
  site.chat({ model: 'gpt-4o-mini', temperature: 1, messages: [{ role: 'user', content: text }] }, { key: token, timeout });

// relay-admin ARGS on site, exit 0 wanted.
async function admin(site, args) {
  const r = await site.admin(args, { timeout: ADMIN_TIMEOUT });
  assert.equal(r.code, 0, `site ${site.label}: relay-admin ${args.join(' ')}: exit ${r.code}\n${r.stderr}${r.stdout}`);
  return r;
}

// Resolves once token id shows on every site in sites (relay-admin token
// show reads the site's own copy of the shared store: no request is made,
// so no budget is touched).
function visibleOn(sites, id) {
  return Promise.all(sites.map((s) => poll(async () => (await s.admin(['--json', 'token', 'show', id], { timeout: ADMIN_TIMEOUT })).code === 0,
    PROPAGATE, `token ${id} to show on site ${s.label}`)));
}

// Every site's cluster status, by label.
async function statuses(sites) {
  const out = {};
  for (const s of sites) out[s.label] = await s.clusterStatus();
  return out;
}

// The one master every site in sites agrees on (its address), or null.
async function agreedMaster(sites) {
  const st = await statuses(sites);
  const masters = new Set(Object.values(st).map((x) => x.master));
  if (masters.size !== 1) return null;
  const [m] = masters;
  if (!m) return null;
  const roles = Object.values(st).map((x) => x.role);
  if (roles.filter((r) => r === 'master').length > 1) return null;
  return m;
}

// The token's day-window spend in USD on each site, from the stats API:
// [{label, spent, reserved}].
async function spends(sites, id) {
  const out = [];
  for (const s of sites) {
    const day = await s.tokenSpend(id);
    out.push({ label: s.label, spent: day?.usd?.spent ?? null, reserved: day?.usd?.reserved ?? null });
  }
  return out;
}

describe('three sites without [cluster]: separate stores, one fake, one secret', { skip, timeout: 5 * 60 * 1000 }, () => {
  let group;
  before(async () => {
    group = await startSites('plain sites', { ...OPTIONS, cluster: false });
  }, { timeout: START });
  after(async () => {
    await group?.stop();
  }, { timeout: 60000 });

  test('each site serves; the one fake counts every site\'s calls; a token is its own site\'s', CASE, async () => {
    const [a, b, c] = group.sites;
    const m = uniq('plain');
    for (const s of group.sites) {
      const r = await s.chat(chatBody(`${m} ${s.label}`));
      assert.equal(r.status, 200, `site ${s.label}: ${r.text}`);
    }
    assert.equal(group.fake.callsFor(m).length, 3, 'one upstream call per site, all on the one fake');
    const t = await makeToken(a, 'site-a-only');
    const ok = await ask(a, t.token, `${m} token a`);
    assert.equal(ok.status, 200, ok.text);
    for (const s of [b, c]) {
      const r = await ask(s, t.token, `${m} token ${s.label}`);
      assert.equal(r.status, 401, `site ${s.label} has a store of its own: ${r.status} ${r.text}`);
      assertOpenAIError(r.text);
    }
    // One secret: each site's key file holds the same text.
    const keys = new Set(group.sites.map((s) => fs.readFileSync(s.settings.store.key_file, 'utf8')));
    assert.equal(keys.size, 1);
  });
});

describe('three sites in one [cluster] group', { skip, timeout: 15 * 60 * 1000 }, () => {
  let group;
  let a, b, c;
  before(async () => {
    group = await startSites('cluster', OPTIONS);
    [a, b, c] = group.sites;
  }, { timeout: START });
  after(async () => {
    await group?.stop();
  }, { timeout: 60000 });

  test('the group forms: one master (the creator), two replicas, every site connected', CASE, async (t) => {
    const master = await poll(() => agreedMaster(group.sites), ELECTION, 'every site to agree on a master');
    assert.equal(master, a.addr, 'the site that created the group is its master');
    const st = await poll(async () => {
      const s = await statuses(group.sites);
      return Object.values(s).every((x) => x.sites.every((y) => y.connected)) && s;
    }, ELECTION, 'every site to be connected to every other');
    assert.equal(st.a.role, 'master');
    assert.equal(st.b.role, 'replica');
    assert.equal(st.c.role, 'replica');
    for (const s of group.sites) {
      const mine = st[s.label];
      assert.deepEqual(mine.sites.map((x) => x.addr).sort(), [...group.addrs].sort(), `site ${s.label} lists the three sites`);
      assert.deepEqual(mine.sites.filter((x) => x.self).map((x) => x.addr), [s.addr], `site ${s.label} knows itself`);
      assert.deepEqual(mine.sites.filter((x) => x.master).map((x) => x.addr), [a.addr]);
    }
    for (const s of group.sites) {
      const h = await s.fetch('/relay/health');
      assert.equal(h.status, 200, `site ${s.label}: ${h.text}`);
    }
    t.diagnostic(`master ${master}; lag b=${st.b.lag} c=${st.c.lag}`);
  });

  test('a token created on one site works on the others', CASE, async (t) => {
    // Made on the master, and on a replica (its write forwarded to the
    // master on a message channel).
    for (const [maker, others] of [[a, [b, c]], [c, [a, b]]]) {
      const tok = await makeToken(maker, `made-on-${maker.label}`);
      const m = uniq(`everywhere-${maker.label}`);
      const r = await ask(maker, tok.token, `${m} ${maker.label}`);
      assert.equal(r.status, 200, `site ${maker.label}, where it was made: ${r.text}`);
      const t0 = Date.now();
      for (const s of others) {
        await poll(async () => (await ask(s, tok.token, `${m} ${s.label} ${Date.now()}`)).status === 200,
          PROPAGATE, `the token made on site ${maker.label} to work on site ${s.label}`);
      }
      t.diagnostic(`made on ${maker.label}: valid on ${others.map((s) => s.label).join(' and ')} after ${Date.now() - t0} ms`);
    }
  });

  test('revoked on one site, refused on all', CASE, async (t) => {
    const tok = await makeToken(a, 'to-revoke');
    await visibleOn(group.sites, tok.id);
    const m = uniq('revoke');
    for (const s of group.sites) assert.equal((await ask(s, tok.token, `${m} before ${s.label}`)).status, 200);
    await admin(b, ['token', 'revoke', tok.id]); // on a replica
    const t0 = Date.now();
    for (const s of group.sites) {
      const r = await poll(async () => {
        const x = await ask(s, tok.token, `${m} poll ${s.label} ${Date.now()}`);
        return x.status !== 200 && x;
      }, PROPAGATE, `site ${s.label} to refuse the revoked token`);
      assert.equal(r.status, 401, `site ${s.label}: ${r.text}`);
      assertOpenAIError(r.text);
    }
    t.diagnostic(`refused everywhere ${Date.now() - t0} ms after the revoke`);
    const later = uniq('revoked');
    for (const s of group.sites) assert.equal((await ask(s, tok.token, `${later} ${s.label}`)).status, 401);
    assert.equal(group.fake.callsFor(later).length, 0, 'a revoked token reaches the upstream from no site');
  });

  test('10 requests\' worth of budget, 60 concurrent requests over three sites: at most 11 reach the upstream', CASE, async (t) => {
    // As in spend.test.mjs: a request's worst case is a token per 4 bytes
    // of body plus max_tokens, which its reservation holds.
    const m = uniq('budget');
    const body = (i) => ({ model: 'gpt-4o-mini', temperature: 1, max_tokens: 1000,
      messages: [{ role: 'user', content: `${m} ${String(i).padStart(3, '0')}` }] });
    const worst = Math.floor(JSON.stringify(body(0)).length / 4) + 1 + 1000;
    const tok = await makeToken(b, 'budget-10', { tokens_day: 10 * worst });
    await visibleOn(group.sites, tok.id);
    // Slow answers, so the 60 overlap; each uses its whole worst case, so a
    // settlement frees nothing and a request arriving after another ended
    // still finds the budget spent (the bound holds whatever the timing).
    const usage = { prompt_tokens: worst - 1000, completion_tokens: 1000, total_tokens: worst };
    for (let i = 0; i < 60; i++) group.fake.enqueue({ match: m, headerDelayMs: 500, usage });
    const answers = await Promise.all(Array.from({ length: 60 }, (_, i) =>
      group.sites[i % 3].chat(body(i), { key: tok.token, timeout: 30000 })));
    const reached = group.fake.callsFor(m).length;
    group.fake.reset(); // the behaviours no request took
    const by = (status) => answers.filter((r) => r.status === status);
    t.diagnostic(`${reached} of 60 reached the upstream; statuses ${answers.map((r) => r.status).join(' ')}`);
    assert.ok(reached <= 11, `${reached} requests reached the upstream`);
    assert.ok(reached >= 1, 'some did');
    assert.equal(by(200).length + by(429).length, 60, 'every answer is 200 or 429');
    assert.equal(by(429).length, 60 - reached);
    for (const r of by(429)) {
      assert.match(assertOpenAIError(r.text).message, /budget/);
      assert.ok(Number(r.headers.get('retry-after')) >= 1, `Retry-After ${r.headers.get('retry-after')}`);
    }
    // The refusals were not all on one site: the bound is the group's.
    for (let k = 0; k < 3; k++) {
      const mine = answers.filter((_, i) => i % 3 === k);
      t.diagnostic(`site ${group.sites[k].label}: ${mine.filter((r) => r.status === 200).length} served`);
    }
  });

  test('a worker killed on a replica: the site recovers and keeps forwarding writes', CASE, async (t) => {
    // The next process to open the site's shared store after a SIGKILL
    // recovers it (DB_REGISTER), which makes the site's cluster process
    // reopen and rejoin the group: the site must come back by itself.
    const master = await poll(() => agreedMaster(group.sites), ELECTION, 'one master');
    const site = group.sites.find((s) => s.addr !== master);
    const st = await site.admin(['--json', 'status'], { timeout: 10000 });
    assert.equal(st.code, 0, st.stderr);
    const worker = JSON.parse(st.stdout).workers[0].pid;
    process.kill(worker, 'SIGKILL');
    t.diagnostic(`killed worker ${worker} of site ${site.label}`);
    const tok = await makeToken(site, 'after-worker-kill', { usd_day: 5 });
    await visibleOn(group.sites, tok.id);
    const served = await poll(async () => {
      const r = await ask(site, tok.token, `${uniq('after kill')}`);
      return r.status === 200 && r;
    }, ELECTION, `a budgeted request on site ${site.label} after the kill`);
    assert.equal(served.status, 200);
    await poll(async () => (await site.clusterStatus()).role === 'replica', ELECTION,
      `site ${site.label} to be a replica again`);
    await poll(async () => (await site.fetch('/relay/health')).status === 200, ELECTION,
      `site ${site.label}'s /relay/health to say ok`);
  });

  // Shared by the last two cases.
  let failover;

  test('SIGKILL of the master site: a new master, served and counted; the old one rejoins; every site agrees on the spend', {
    // Room for each bounded wait below to fail with its own message.
    timeout: ELECTION + REJOIN * 2 + AGREE * 2 + 60000,
  }, async (t) => {
    const tok = await makeToken(a, 'failover', { usd_day: 5 });
    await visibleOn(group.sites, tok.id);
    const m = uniq('failover');
    // Some spend, and a cached answer on every site for the last case.
    for (const s of group.sites) {
      const r = await ask(s, tok.token, `${m} before ${s.label}`);
      assert.equal(r.status, 200, r.text);
      const cached = await s.chat(chatBody(`${m} cached ${s.label}`), { key: tok.token });
      assert.equal(cached.status, 200, cached.text);
    }
    const agreed = (list) => list.every((x) => x.spent !== null && x.spent === list[0].spent && x.reserved === 0);
    const before = await poll(async () => {
      const l = await spends(group.sites, tok.id);
      return agreed(l) && l[0].spent > 0 && l;
    }, AGREE, 'every site to show the same spend before the kill');

    const oldAddr = await poll(() => agreedMaster(group.sites), ELECTION, 'one master');
    const old = group.site(oldAddr);
    const survivors = group.sites.filter((s) => s !== old);
    const t0 = Date.now();
    await old.kill();
    const newAddr = await poll(async () => {
      const mst = await agreedMaster(survivors);
      return mst && mst !== oldAddr && mst;
    }, ELECTION, `the survivors (${survivors.map((s) => s.label).join(', ')}) to elect a new master`);
    t.diagnostic(`site ${old.label} killed; ${group.site(newAddr).label} master after ${Date.now() - t0} ms`);
    assert.ok(survivors.some((s) => s.addr === newAddr), 'the new master is a survivor');
    const st = await statuses(survivors);
    for (const s of survivors) {
      assert.equal(st[s.label].role, s.addr === newAddr ? 'master' : 'replica', `site ${s.label}`);
      assert.ok(st[s.label].elections >= 1, `site ${s.label} saw the election: ${JSON.stringify(st[s.label])}`);
    }
    // The listener's view of its connections reaches relay-admin once a
    // second (store/cluster_link.c): polled.
    for (const s of survivors)
      await poll(async () => (await s.clusterStatus()).sites.find((x) => x.addr === oldAddr)?.connected === false,
        ELECTION, `site ${s.label} to show the dead site disconnected`);

    // On the survivor that is a replica: its reservation goes to the new
    // master. Reservations resume once a master is elected: polled, since a
    // request in the moment after the election may still be refused.
    const replica = survivors.find((s) => s.addr !== newAddr);
    const served = await poll(async () => {
      const r = await ask(replica, tok.token, `${m} after ${Date.now()}`);
      return r.status === 200 && r;
    }, ELECTION, `a request on site ${replica.label} to be served`);
    assert.match(served.headers.get('x-relay-budget-remaining') ?? '', /^usd=\d+\.\d{6}; window=day$/);
    const counted = await poll(async () => {
      const l = await spends(survivors, tok.id);
      return agreed(l) && l[0].spent > before[0].spent && l;
    }, AGREE, 'the survivors to count the new spend');
    t.diagnostic(`spend ${before[0].spent} -> ${counted[0].spent} USD`);

    // The old master comes back on its own directories and the same
    // relay.ini (create_group included: a restart must not found a second
    // group) and catches up from the logs, as a replica.
    await old.restart();
    await poll(async () => {
      const s = await old.clusterStatus();
      return s.role === 'replica' && s.master === newAddr;
    }, REJOIN, `site ${old.label} to rejoin as a replica of ${newAddr}`);
    assert.equal(await poll(() => agreedMaster(group.sites), REJOIN, 'every site to agree on the master'), newAddr);
    const final = await poll(async () => {
      const l = await spends(group.sites, tok.id);
      return agreed(l) && l[0].spent >= counted[0].spent && l;
    }, AGREE, 'every site to agree on the spend');
    assert.equal(final[0].spent, counted[0].spent, 'the rejoined site shows the spend made while it was down');
    for (const s of group.sites) {
      await poll(async () => (await s.fetch('/relay/health')).status === 200, REJOIN, `site ${s.label}'s /relay/health to say ok`);
    }
    failover = { tok, m, master: group.site(newAddr) };
  });

  test('a site left alone: degraded, hits and pass-through served, reservations refused after partition_grace', CASE, async (t) => {
    assert.ok(failover, 'needs the failover case');
    const { tok, m } = failover;
    // Kill the master and one replica: the one left cannot win an election
    // (two votes of three needed).
    const lone = group.sites.find((s) => s !== failover.master);
    for (const s of group.sites) if (s !== lone) await s.kill();
    let lastHealth = '';
    const h = await poll(async () => {
      const x = await lone.fetch('/relay/health');
      lastHealth = `${x.status} ${x.text} ${JSON.stringify(await lone.clusterStatus())}`;
      return x.status === 503 && x;
    }, ELECTION, `site ${lone.label}'s /relay/health to say degraded`).catch((e) => {
      throw new Error(`${e.message}; last: ${lastHealth}`);
    });
    assert.match(h.text, /^degraded\n/);
    assert.match(h.text, /cluster/i);
    // Either it knows no master, or it won an election with the last peer's
    // vote just before that peer died and is a master with nobody to
    // acknowledge its writes (Berkeley DB 5.3 keeps a cut-off master's
    // role): degraded both ways, and both refuse reservations below.
    const st = await lone.clusterStatus();
    t.diagnostic(`the lone site: role ${st.role}, master '${st.master}'`);
    if (st.role === 'master')
      assert.deepEqual(st.sites.filter((x) => x.connected).map((x) => x.addr), [lone.addr], 'a master alone');
    else
      assert.equal(st.master, '');

    // A hit (cached in the failover case) consumes nothing: served.
    const hit = await lone.chat(chatBody(`${m} cached ${lone.label}`), { key: tok.token });
    assert.equal(hit.status, 200, hit.text);
    assert.equal(hit.headers.get('x-cache'), 'HIT');
    // The client's own provider key: nothing to reserve, served.
    const pm = uniq('alone pass-through');
    const pass = await lone.chat(chatBody(pm), { key: KEY_A });
    assert.equal(pass.status, 200, pass.text);
    assert.equal(group.fake.callsFor(pm).length, 1);
    // A miss on the budgeted token needs a reservation, which only a master
    // can make: after partition_grace (5 s) it is refused, not spent.
    const rm = uniq('alone reservation');
    const t0 = Date.now();
    const r = await ask(lone, tok.token, rm, { timeout: 30000 });
    t.diagnostic(`refused with ${r.status} after ${Date.now() - t0} ms`);
    // 503 as relay.ini documents partition_grace: the group is unavailable
    // (a 429 would tell the client its budget is spent, which it is not).
    assert.equal(r.status, 503, `a reservation without a master: ${r.status} ${r.text}`);
    assertOpenAIError(r.text);
    assert.equal(group.fake.callsFor(rm).length, 0, 'nothing went upstream');
  });
});

describe('[cluster] site on a public interface', { skip }, () => {
  test('relay.fcgi refuses to start without allow_public, and says so', { timeout: 60000 }, async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-public-'));
    let child;
    try {
      const sections = {
        fcgi: { listen: path.join(tmp, 'relay.sock'), workers: 1, threads: 1 },
        store: { home: path.join(tmp, 'store'), key_file: path.join(tmp, 'relay.key') },
        'upstream.openai': { type: 'openai', base_url: 'http://127.0.0.1:9' },
      };
      const ini = path.join(tmp, 'relay.ini');
      // The store exists (made without [cluster]): the refusal can only be
      // the address's.
      fs.writeFileSync(ini, iniText(sections));
      const init = await runBounded(path.join(BUILD, 'relay-admin'), ['-c', ini, 'init'], ADMIN_TIMEOUT);
      assert.equal(init.code, 0, init.stderr);
      // 203.0.113.0/24 is TEST-NET-3: never routed, never contacted here
      // (the check is config's, before any socket).
      fs.writeFileSync(ini, iniText({
        ...sections,
        cluster: { site: '203.0.113.5:7000', peers: '127.0.0.1:7001 127.0.0.1:7002', create_group: 'yes', priority: 100 },
      }));
      let stderr = '';
      // Its own process group: were it to start after all, its workers
      // would go with it.
      child = spawn(path.join(BUILD, 'relay.fcgi'), ['-c', ini], { cwd: tmp, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
      child.stderr.on('data', (d) => {
        stderr += d;
      });
      assert.ok(await exited(child, 15000), 'relay.fcgi is still running 15 s after it was started');
      assert.notEqual(child.exitCode, 0, `exit ${child.exitCode} ${child.signalCode ?? ''}`);
      assert.match(stderr, /allow_public/, `its message: ${stderr}`);
      assert.ok(!fs.existsSync(path.join(tmp, 'relay.sock')), 'it bound no socket');
    } finally {
      if (child) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
