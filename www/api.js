// The admin API as the dashboard calls it: the admin token kept for this tab,
// and one request function every view uses.
//
// The admin token lives in sessionStorage only (this tab, until log out or
// close); it is sent as "Authorization: Bearer" and never put in a URL.
// request() resolves to the answer's JSON, or rejects with Unauthorized
// (401: Relay refused the admin token; the caller returns to the login
// form) or ApiError (any other failure: its status, 0 when Relay was not
// reached, and the API's own message).

const TOKEN_KEY = 'relay.admin.token';
const TIMEOUT_MS = 15000;

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

// Keeps token (null: forgets it). false when the browser refuses storage.
export function setToken(token) {
  try {
    if (token === null) sessionStorage.removeItem(TOKEN_KEY);
    else sessionStorage.setItem(TOKEN_KEY, token);
    return true;
  } catch {
    return false;
  }
}

export class Unauthorized extends Error {}

export class ApiError extends Error {
  // status: the HTTP status (0: no answer); detail: the API's message, or ''.
  constructor(status, detail, message) {
    super(message ?? (status ? `Relay answered ${status}${detail ? `: ${detail}` : ''}` : detail));
    this.status = status;
    this.detail = detail;
  }
}

// The error message of a JSON error answer (every shape Relay writes has
// error.message), or ''.
function errorMessage(body) {
  const m = body?.error?.message;
  return typeof m === 'string' ? m : '';
}

// path is relative to the page (/relay/admin/): 'api/stats', 'api/tokens'.
// body (optional) is sent as JSON. token: the admin token (default: the
// one kept for this tab).
export async function request(path, { method = 'GET', body, token = getToken() } = {}) {
  if (!token) throw new Unauthorized('not signed in');
  const headers = { Authorization: `Bearer ${token}`, Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (err) {
    throw new ApiError(0, err?.name === 'TimeoutError' ? `Relay did not answer within ${TIMEOUT_MS / 1000} s` : 'Relay could not be reached');
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    /* not JSON: said below */
  }
  if (res.status === 401) throw new Unauthorized(errorMessage(data) || 'HTTP 401');
  if (!res.ok) throw new ApiError(res.status, errorMessage(data));
  if (!data || typeof data !== 'object') throw new ApiError(res.status, '', 'the answer was not JSON');
  return data;
}
