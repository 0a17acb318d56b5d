// A stream whose relay.fcgi process is killed (SIGKILL) mid-stream, behind
// each front (issue 12, defect 4): what the client sees, as bytes and
// through every official SDK. A front that aborts the client's connection
// makes every SDK raise; a front that ends the response cleanly leaves only
// the missing terminator of the format ([DONE], message_stop, a last chunk
// with finishReason, "done": true), which only some SDKs check. README.md
// ("A worker killed mid-stream") says which front does what and what was
// tried to make the others abort; this test keeps it true.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { GoogleGenAI } from '@google/genai';
import { Ollama } from 'ollama';

import { relaySuite, uniq, sleep, FRONT, KEY_A, REQUEST_TIMEOUT } from './harness.mjs';

// How each front ends the client's response when its FastCGI connection
// ends mid-answer:
//   aborted  the connection is cut (no last chunk): every client errs
//   clean    a normal end: only the format's missing terminator tells
//   page     mod_fcgid appends its HTML 500 page, then ends normally
const ENDING = {
  'apache-proxy-fcgi': 'aborted',
  caddy: 'clean',
  nginx: 'clean',
  'apache-fcgid': 'page',
}[FRONT];

// The SDKs that raise on a clean end without the terminator: the ollama
// client wants its "done" line, the Anthropic MessageStream a message_stop.
// openai's and Anthropic's raw stream iterators and @google/genai's end
// quietly (@google/genai raises on the trailing HTML page, not on the cut).
const RAISES_ON_CLEAN_END = {
  clean: ['ollama', 'anthropic MessageStream'],
  page: ['ollama', 'anthropic MessageStream', '@google/genai'],
};

const CHUNKS = 10;
const GAP_MS = 300; // between upstream chunks: the kill lands between two

relaySuite(`a worker killed mid-stream, behind ${FRONT}`, { upstreams: ['anthropic', 'gemini', 'ollama'] }, (relay) => {
  // Every relay.fcgi process of the suite (the one streaming among them).
  const killRelay = () => {
    const pids = relay.processModel === 'fcgid' ? relay.fcgidPids() : relay.workerPids();
    assert.ok(pids.length > 0, 'no relay.fcgi process to kill');
    for (const p of pids) process.kill(p, 'SIGKILL');
  };
  // Until Relay answers again (the pool restarts its workers within a
  // second or two; mod_fcgid starts a process for the next request).
  const recovered = async () => {
    const until = Date.now() + 15000;
    for (;;) {
      try {
        const r = await fetch(`${relay.base}/relay/health`, { signal: AbortSignal.timeout(2000) });
        await r.arrayBuffer();
        if (r.status === 200) return;
      } catch {
        /* not yet */
      }
      assert.ok(Date.now() < until, 'Relay did not answer again after its workers were killed');
      await sleep(100);
    }
  };

  // Each SDK streams; onFirst() is called once, after its first chunk.
  const SDKS = {
    openai: async (m, onFirst) => {
      const c = new OpenAI({ baseURL: `${relay.base}/v1`, apiKey: KEY_A, maxRetries: 0, timeout: REQUEST_TIMEOUT });
      const s = await c.chat.completions.create({ model: 'gpt-4o-mini', temperature: 0, stream: true, messages: [{ role: 'user', content: m }] });
      let n = 0;
      for await (const chunk of s) if (chunk && n++ === 0) onFirst();
      return n;
    },
    'anthropic stream iterator': async (m, onFirst) => {
      const c = new Anthropic({ baseURL: relay.base, apiKey: KEY_A, maxRetries: 0, timeout: REQUEST_TIMEOUT });
      const s = await c.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 64, temperature: 0, stream: true, messages: [{ role: 'user', content: m }] });
      let n = 0;
      for await (const event of s) if (event && n++ === 0) onFirst();
      return n;
    },
    'anthropic MessageStream': async (m, onFirst) => {
      const c = new Anthropic({ baseURL: relay.base, apiKey: KEY_A, maxRetries: 0, timeout: REQUEST_TIMEOUT });
      const s = c.messages.stream({ model: 'claude-sonnet-4-5', max_tokens: 64, temperature: 0, messages: [{ role: 'user', content: m }] });
      let n = 0;
      s.on('streamEvent', () => {
        if (n++ === 0) onFirst();
      });
      await s.finalMessage();
      return n;
    },
    '@google/genai': async (m, onFirst) => {
      const ai = new GoogleGenAI({ apiKey: KEY_A, httpOptions: { baseUrl: relay.base, timeout: REQUEST_TIMEOUT } });
      const s = await ai.models.generateContentStream({ model: 'gemini-2.5-flash', contents: m, config: { temperature: 0 } });
      let n = 0;
      for await (const chunk of s) if (chunk && n++ === 0) onFirst();
      return n;
    },
    ollama: async (m, onFirst) => {
      const c = new Ollama({ host: relay.base });
      const s = await c.chat({ model: 'llama3.2', stream: true, options: { temperature: 0 }, messages: [{ role: 'user', content: m }] });
      let n = 0;
      for await (const part of s) if (part && n++ === 0) onFirst();
      return n;
    },
  };

  test(`the client's connection: ${ENDING === 'aborted' ? 'aborted' : 'ended without the terminator'}`, { timeout: 60000 }, async () => {
    await recovered();
    const m = uniq('killed raw');
    relay.fake.enqueue({ chunks: CHUNKS, chunkDelayMs: GAP_MS });
    const res = await relay.chat({ model: 'gpt-4o-mini', temperature: 0, stream: true, messages: [{ role: 'user', content: m }] }, { stream: true });
    assert.equal(res.status, 200);
    let text = '';
    let cut = null;
    try {
      for await (const part of res.body) {
        if (!text) killRelay();
        text += Buffer.from(part).toString('utf8');
      }
    } catch (err) {
      cut = err;
    }
    assert.ok(!text.includes('data: [DONE]'), 'the stream cannot have ended with [DONE]');
    if (ENDING === 'aborted') {
      assert.ok(cut, `${FRONT} ended the response cleanly`);
      assert.match(String(cut.message), /terminated|aborted|closed|socket/i);
    } else {
      assert.equal(cut, null, `${FRONT} aborted the connection (${cut?.message}): update README.md and this test`);
      if (ENDING === 'page') assert.match(text, /<html>/i, 'mod_fcgid appends its HTML error page');
      else assert.match(text, /\n\n$/, 'the stream ends after a whole event, as if complete');
    }
    await recovered();
  });

  for (const [name, run] of Object.entries(SDKS)) {
    const expectRaise = ENDING === 'aborted' || RAISES_ON_CLEAN_END[ENDING].includes(name);
    test(`${name} ${expectRaise ? 'raises' : 'does not raise (a known limit of this front)'}`, { timeout: 60000 }, async () => {
      await recovered();
      relay.fake.enqueue({ chunks: CHUNKS, chunkDelayMs: GAP_MS });
      let raised = null;
      let got = 0;
      try {
        got = await run(uniq(`killed ${name}`), killRelay);
      } catch (err) {
        raised = err;
      }
      if (expectRaise) {
        assert.ok(raised, `${name} returned normally (${got} chunks) from a stream cut behind ${FRONT}`);
      } else {
        // Not what a client wants, but what this front allows: should it
        // start raising, README.md must say so.
        assert.equal(raised, null, `${name} now raises behind ${FRONT} (${raised?.message}): update README.md and this test`);
        assert.ok(got >= 1 && got < CHUNKS, `${name} saw ${got} chunks`);
      }
      await recovered();
    });
  }
});
