// A FastCGI client, as a front is one, for tests that talk to Relay's
// socket directly: what Relay itself answers, whatever a front would make
// of it (a front may not pass an answer on, e.g. while it still sends the
// body). One request per connection, the body sent when and as told.

import net from 'node:net';

const VERSION = 1;
const BEGIN_REQUEST = 1;
const END_REQUEST = 3;
const PARAMS = 4;
const STDIN = 5;
const STDOUT = 6;
const RESPONDER = 1;

function record(type, content = Buffer.alloc(0)) {
  const head = Buffer.alloc(8);
  head.writeUInt8(VERSION, 0);
  head.writeUInt8(type, 1);
  head.writeUInt16BE(1, 2); // request id
  head.writeUInt16BE(content.length, 4);
  return Buffer.concat([head, content]);
}

function lengthBytes(n) {
  if (n < 128) return Buffer.from([n]);
  const b = Buffer.alloc(4);
  b.writeUInt32BE((n | 0x80000000) >>> 0, 0);
  return b;
}

function paramsRecord(params) {
  const parts = [];
  for (const [k, v] of Object.entries(params)) {
    const name = Buffer.from(k);
    const value = Buffer.from(String(v));
    parts.push(lengthBytes(name.length), lengthBytes(value.length), name, value);
  }
  return record(PARAMS, Buffer.concat(parts));
}

// The CGI response in STDOUT: {status, headers (lower-case names), body}.
function parseCgi(text) {
  const end = text.indexOf('\r\n\r\n');
  const head = end < 0 ? text : text.slice(0, end);
  const headers = {};
  for (const l of head.split('\r\n')) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status: Number((headers.status ?? '200').split(' ')[0]), headers, body: end < 0 ? '' : text.slice(end + 4) };
}

// Opens a FastCGI request on the unix socket: params are the CGI variables
// (REQUEST_METHOD, REQUEST_URI, HTTP_*, CONTENT_LENGTH...). Returns
// {send(bytes), end(), close(), done}: send writes body bytes as one STDIN
// record, end sends the end of the body; done resolves once the connection
// ends, with {response (parseCgi's, or null), bytes (the STDOUT stream as
// sent: CGI head and body), ended: true when Relay sent FCGI_END_REQUEST,
// closedBy: 'relay' | 'us'}.
export function fcgiRequest(socketPath, params) {
  const sock = net.connect(socketPath);
  let out = Buffer.alloc(0);
  const stdout = [];
  let ended = false;
  let closedBy = 'relay';
  const done = new Promise((resolve) => {
    sock.on('close', () => {
      const bytes = Buffer.concat(stdout);
      resolve({ response: bytes.length ? parseCgi(bytes.toString('utf8')) : null, bytes, ended, closedBy });
    });
  });
  sock.on('error', () => {}); // a write after Relay shut its side: the close says the rest
  sock.on('data', (d) => {
    out = Buffer.concat([out, d]);
    while (out.length >= 8) {
      const type = out.readUInt8(1);
      const len = out.readUInt16BE(4);
      const pad = out.readUInt8(6);
      if (out.length < 8 + len + pad) break;
      const content = out.subarray(8, 8 + len);
      if (type === STDOUT) stdout.push(Buffer.from(content));
      if (type === END_REQUEST) ended = true;
      out = out.subarray(8 + len + pad);
    }
  });
  const begin = Buffer.alloc(8);
  begin.writeUInt16BE(RESPONDER, 0);
  sock.write(Buffer.concat([record(BEGIN_REQUEST, begin), paramsRecord(params), record(PARAMS)]));
  return {
    send: (bytes) => {
      if (!sock.destroyed) sock.write(record(STDIN, Buffer.from(bytes)));
    },
    end: () => {
      if (!sock.destroyed) sock.write(record(STDIN));
    },
    close: () => {
      closedBy = 'us';
      sock.destroy();
    },
    done,
  };
}

// Sends GET requests one after another on ONE connection with
// FCGI_KEEP_CONN set, as nginx (fastcgi_keep_conn on) and Apache
// (enablereuse=on) do: each after the previous one's FCGI_END_REQUEST,
// gapMs later. Resolves with the responses (parseCgi's) in order and
// whether Relay kept the connection open after the last one (closed:
// false), or rejects after timeoutMs.
export function fcgiKeptRequests(socketPath, paramsList, { gapMs = 0, timeoutMs = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    const responses = [];
    let out = Buffer.alloc(0);
    let stdout = '';
    let closed = false;
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`kept connection: ${responses.length} of ${paramsList.length} answers within ${timeoutMs} ms`));
    }, timeoutMs);
    const sendNext = () => {
      const params = paramsList[responses.length];
      const begin = Buffer.alloc(8);
      begin.writeUInt16BE(RESPONDER, 0);
      begin.writeUInt8(1, 2); // FCGI_KEEP_CONN
      sock.write(Buffer.concat([record(BEGIN_REQUEST, begin), paramsRecord(params), record(PARAMS), record(STDIN)]));
    };
    const finish = () => {
      clearTimeout(timer);
      resolve({ responses, closed });
    };
    sock.on('error', () => {});
    sock.on('close', () => {
      closed = true;
      if (responses.length < paramsList.length) {
        clearTimeout(timer);
        reject(new Error(`Relay closed the kept connection after ${responses.length} of ${paramsList.length} answers`));
      }
    });
    sock.on('data', (d) => {
      out = Buffer.concat([out, d]);
      while (out.length >= 8) {
        const type = out.readUInt8(1);
        const len = out.readUInt16BE(4);
        const pad = out.readUInt8(6);
        if (out.length < 8 + len + pad) break;
        const content = out.subarray(8, 8 + len);
        if (type === STDOUT) stdout += content.toString('utf8');
        out = out.subarray(8 + len + pad);
        if (type !== END_REQUEST) continue;
        responses.push(parseCgi(stdout));
        stdout = '';
        if (responses.length === paramsList.length) {
          // Still open a moment later: Relay kept it for another request.
          setTimeout(() => {
            finish();
            sock.destroy();
          }, 200);
        } else {
          setTimeout(sendNext, gapMs);
        }
      }
    });
    sendNext();
  });
}

// Sends one whole request (no FCGI_KEEP_CONN, empty body) and, unlike a
// node socket by default, keeps its own side open when Relay's side ends,
// as a front busy elsewhere does. Once the answer has ended it writes one
// more record: resolves with {ended, status, writeError}, writeError being
// the code of that write's failure (EPIPE: Relay had closed the connection
// outright) or null (Relay only shut its write side and still reads).
export function fcgiAnswerThenWrite(socketPath, params) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ path: socketPath, allowHalfOpen: true });
    let out = Buffer.alloc(0);
    let stdout = '';
    let ended = false;
    const timer = setTimeout(() => { sock.destroy(); reject(new Error('no answer within 10 s')); }, 10000);
    const finish = (writeError) => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ ended, status: stdout ? parseCgi(stdout).status : null, writeError });
    };
    sock.on('error', (e) => finish(e.code ?? String(e)));
    sock.on('data', (d) => {
      out = Buffer.concat([out, d]);
      while (out.length >= 8) {
        const len = out.readUInt16BE(4);
        const pad = out.readUInt8(6);
        if (out.length < 8 + len + pad) break;
        if (out.readUInt8(1) === STDOUT) stdout += out.subarray(8, 8 + len).toString('utf8');
        if (out.readUInt8(1) === END_REQUEST) ended = true;
        out = out.subarray(8 + len + pad);
      }
    });
    // Relay's side ended: write into the connection; a write to a closed
    // unix socket fails (EPIPE) in the kernel, so its callback says which.
    sock.on('end', () => sock.write(record(STDIN, Buffer.from('x')), (e) => finish(e ? e.code ?? String(e) : null)));
    const begin = Buffer.alloc(8);
    begin.writeUInt16BE(RESPONDER, 0);
    sock.write(Buffer.concat([record(BEGIN_REQUEST, begin), paramsRecord(params), record(PARAMS), record(STDIN)]));
  });
}
