// REST calls to control (/api/v1). Writes made with the session cookie
// echo its CSRF token, which control also hands out in a readable cookie.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

function csrf() {
  const m = document.cookie.match(/(?:^|;\s*)enclave_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : '';
}

let onUnauthenticated = () => {};
export function whenSignedOut(f) {
  onUnauthenticated = f;
}

export async function api(method, path, body, { raw = false } = {}) {
  const headers = {};
  const init = { method, headers, credentials: 'same-origin' };
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = csrf();
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(`/api/v1${path}`, init);
  } catch (e) {
    throw new ApiError(0, 'network', 'The server cannot be reached.');
  }
  if (raw) return res;
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    if (res.status === 401 && !path.startsWith('/auth/')) onUnauthenticated();
    throw new ApiError(res.status, data?.code ?? 'http_error', data?.message ?? `HTTP ${res.status}`);
  }
  return data;
}

export const get = (p) => api('GET', p);
export const post = (p, b) => api('POST', p, b ?? {});
export const put = (p, b) => api('PUT', p, b);
export const patch = (p, b) => api('PATCH', p, b);
export const del = (p) => api('DELETE', p);
export const enc = encodeURIComponent;

// Users by id, fetched once each.
const users = new Map();
export function user(id) {
  if (!users.has(id)) {
    users.set(id, get(`/users/${enc(id)}`).catch(() => ({ id, username: id, display_name: '' })));
  }
  return users.get(id);
}
export async function userName(id) {
  const u = await user(id);
  return u.display_name || u.username || id;
}
