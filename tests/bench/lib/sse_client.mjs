// A light HTTP/1.1 streaming client for the stream benches (streams.mjs,
// coalesce_lag.mjs): one request per connection on a plain socket, the
// chunked body decoded by hand, and the moment each numbered event of the
// fake's content ("#0007 ") arrived taken in the socket's 'data' callback.
//
// Why not fetch(): its per-chunk path (undici, web streams, TextDecoder,
// async iteration) costs enough that, with 50 streams per client thread on
// the 2 shared cores, the clients' own queue was most of the "lag" measured.
// Same Relay build (main ea37419), 200 identical streams, three interleaved
// runs under the same load: follower lag p99 142 / 263 / 108 ms measured
// with fetch clients, 9.8 / 62 / 38 ms with this client. The lag target is
// about when Relay hands a follower its bytes, so the benches measure as
// close to the socket as a client can.

import crypto from 'node:crypto';
import net from 'node:net';
import { Worker } from 'node:worker_threads';

export const now = () => performance.timeOrigin + performance.now();

const CONTENT_RE = /"content":"#(\d{4}) "/;

// Incremental decoder of a chunked body: feed(buf) returns the payload bytes
// it completes; .ended once the last chunk was read. Throws on a malformed
// framing (the caller reports it as the client's error).
class Chunked {
  constructor() {
    this.pending = Buffer.alloc(0);
    this.left = 0; // payload bytes of the current chunk still to come
    this.crlf = 0; // bytes of the CRLF after a chunk's payload still to skip
    this.ended = false;
  }

  feed(buf) {
    this.pending = this.pending.length ? Buffer.concat([this.pending, buf]) : buf;
    const out = [];
    while (!this.ended && this.pending.length) {
      if (this.left > 0) {
        const take = Math.min(this.left, this.pending.length);
        out.push(this.pending.subarray(0, take));
        this.pending = this.pending.subarray(take);
        this.left -= take;
        if (this.left === 0) this.crlf = 2;
      } else if (this.crlf > 0) {
        const skip = Math.min(this.crlf, this.pending.length);
        this.pending = this.pending.subarray(skip);
        this.crlf -= skip;
      } else {
        const eol = this.pending.indexOf('\r\n');
        if (eol < 0) break;
        const size = parseInt(this.pending.subarray(0, eol).toString('latin1'), 16);
        if (!Number.isFinite(size) || size < 0) throw new Error('bad chunk size line');
        this.pending = this.pending.subarray(eol + 2);
        this.left = size;
        this.ended = size === 0; // trailers, if any, are not read
      }
    }
    return out;
  }
}

// POST body to url (http only) and read the answer to its end. Resolves,
// never rejects, to { status, cache, headAt, firstAt, times: {n: at},
// bytes, sha256 (of the decoded body), done (ends with "data: [DONE]"),
// error, endAt }; times are performance.timeOrigin-based milliseconds, as
// the fake upstream stamps its writes.
export function streamRequest({ url, headers = {}, body, timeoutMs = 300000 }) {
  const u = new URL(url);
  const out = { status: 0, cache: null, headAt: null, firstAt: null, times: {}, bytes: 0, sha256: null, done: false, error: null, endAt: null };
  const hash = crypto.createHash('sha256');
  return new Promise((resolve) => {
    const sock = net.connect(Number(u.port || 80), u.hostname);
    sock.setNoDelay(true);
    let head = Buffer.alloc(0);
    let chunked = null;
    let length = -1; // Content-Length, when the answer has one
    let text = ''; // decoded bytes not yet split into events
    let tail = '';
    let finished = false;
    const finish = (error) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      if (error && !out.error) out.error = error;
      if (!out.error && out.headAt === null) out.error = 'connection closed before the response head';
      out.done = tail.endsWith('data: [DONE]\n\n');
      out.sha256 = hash.digest('hex');
      out.endAt = now();
      sock.destroy();
      resolve(out);
    };
    const timer = setTimeout(() => finish(`timed out after ${timeoutMs} ms`), timeoutMs);
    const payload = (buf, at) => {
      hash.update(buf);
      out.bytes += buf.length;
      const s = buf.toString('utf8');
      tail = (tail + s).slice(-32);
      text += s;
      let cut;
      while ((cut = text.indexOf('\n\n')) >= 0) {
        const m = CONTENT_RE.exec(text.slice(0, cut));
        text = text.slice(cut + 2);
        if (m) {
          out.times[Number(m[1])] ??= at;
          out.firstAt ??= at;
        }
      }
    };
    sock.on('connect', () => {
      const lines = [`POST ${u.pathname}${u.search} HTTP/1.1`, `Host: ${u.host}`, 'Connection: close',
        `Content-Length: ${Buffer.byteLength(body)}`];
      for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
      sock.write(`${lines.join('\r\n')}\r\n\r\n${body}`);
    });
    sock.on('data', (buf) => {
      const at = now();
      try {
        if (out.headAt === null) {
          head = Buffer.concat([head, buf]);
          const end = head.indexOf('\r\n\r\n');
          if (end < 0) return;
          out.headAt = at;
          const lines = head.subarray(0, end).toString('latin1').split('\r\n');
          out.status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0])?.[1] ?? 0);
          for (const l of lines.slice(1)) {
            const i = l.indexOf(':');
            const name = l.slice(0, i).trim().toLowerCase();
            const value = l.slice(i + 1).trim();
            if (name === 'x-cache') out.cache = value;
            if (name === 'transfer-encoding' && /chunked/i.test(value)) chunked = new Chunked();
            if (name === 'content-length') length = Number(value);
          }
          buf = head.subarray(end + 4);
        }
        if (chunked) {
          for (const p of chunked.feed(buf)) payload(p, at);
          if (chunked.ended) finish(null);
        } else {
          payload(buf, at);
          if (length >= 0 && out.bytes >= length) finish(null);
        }
      } catch (err) {
        finish(`bad response: ${err.message}`);
      }
    });
    sock.on('error', (err) => finish(`${err.code ?? err.name}: ${err.message}`));
    sock.on('close', () => finish(chunked && !chunked.ended ? 'connection closed mid-body' : null));
  });
}

// Runs one worker thread of moduleUrl per entry of datas (its workerData),
// each holding a share of the clients: waits until every worker is ready
// (its first message), starts them together with 'go', and resolves with
// {clients: every worker's `results`, flattened, startAt: when 'go' went}.
// Threads, because one event loop cannot time 200 streams' events without
// queueing them behind each other.
export async function runClientWorkers(moduleUrl, datas) {
  const workers = datas.map((data) => new Worker(moduleUrl, { workerData: data }));
  await Promise.all(workers.map((w) => new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  })));
  const collected = workers.map((w) => new Promise((resolve, reject) => {
    w.once('message', (m) => resolve(m.results));
    w.once('error', reject);
  }));
  const startAt = now();
  for (const w of workers) w.postMessage('go');
  const clients = (await Promise.all(collected)).flat();
  await Promise.all(workers.map((w) => w.terminate()));
  return { clients, startAt };
}
