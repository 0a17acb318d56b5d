// A raw HTTP/1.1 client on a plain socket, for what fetch cannot do: send a
// request body as slowly as a hostile client does, and see exactly how the
// connection ends (an answer, a clean close, a reset).

import net from 'node:net';

// Parses one HTTP response out of buf (a Buffer). Returns {status, headers,
// body (a string), complete} or null while the header block is incomplete.
// complete: the body's end was seen (Content-Length reached, or the last
// chunk of a chunked body).
export function parseResponse(buf) {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const [statusLine, ...lines] = buf.subarray(0, end).toString('latin1').split('\r\n');
  const headers = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  const status = Number(statusLine.split(' ')[1]);
  let rest = buf.subarray(end + 4);
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    const parts = [];
    for (;;) {
      const eol = rest.indexOf('\r\n');
      if (eol < 0) return { status, headers, body: Buffer.concat(parts).toString('utf8'), complete: false };
      const size = parseInt(rest.subarray(0, eol).toString('latin1'), 16);
      if (size === 0) return { status, headers, body: Buffer.concat(parts).toString('utf8'), complete: true };
      if (rest.length < eol + 2 + size + 2) {
        parts.push(rest.subarray(eol + 2));
        return { status, headers, body: Buffer.concat(parts).toString('utf8'), complete: false };
      }
      parts.push(rest.subarray(eol + 2, eol + 2 + size));
      rest = rest.subarray(eol + 2 + size + 2);
    }
  }
  const length = headers['content-length'] === undefined ? null : Number(headers['content-length']);
  if (length !== null) rest = rest.subarray(0, length);
  return { status, headers, body: rest.toString('utf8'), complete: length !== null && rest.length >= length };
}

// Sends `head` (the request line and headers, without the blank line) to
// 127.0.0.1:port, then the body as told: `first` at once, then one byte of
// `rest` every `everyMs` (everyMs 0: nothing more, silence). Resolves when
// the connection gives a whole answer or ends: {answer (parseResponse's, or
// null), ended: 'answer' | 'closed' | 'reset' | 'timeout', sent (body bytes
// written), at (ms after the start)}. timeoutMs bounds everything; close()
// ends it early.
export function slowRequest(port, { head, first = '', rest = '', everyMs = 0, timeoutMs = 30000 }) {
  const t0 = Date.now();
  const sock = net.connect(port, '127.0.0.1');
  let data = Buffer.alloc(0);
  let sent = 0;
  let timer = null;
  let settle;
  const done = new Promise((resolve) => {
    settle = (ended) => {
      clearInterval(timer);
      clearTimeout(bound);
      const answer = data.length ? parseResponse(data) : null;
      resolve({ answer, ended, sent, at: Date.now() - t0 });
      sock.destroy();
      settle = () => {};
    };
  });
  const bound = setTimeout(() => settle('timeout'), timeoutMs);
  sock.setNoDelay(true);
  sock.on('connect', () => {
    sock.write(`${head}\r\n\r\n${first}`);
    sent = first.length;
    if (everyMs > 0 && rest.length) {
      timer = setInterval(() => {
        if (sent - first.length >= rest.length) return clearInterval(timer);
        sock.write(rest[sent - first.length]);
        sent++;
      }, everyMs);
    }
  });
  sock.on('data', (d) => {
    data = Buffer.concat([data, d]);
    if (parseResponse(data)?.complete) settle('answer');
  });
  sock.on('error', () => settle('reset'));
  sock.on('close', () => settle('closed'));
  return { done, close: () => settle('timeout'), get sent() { return sent; } };
}
