// Talking to the registry API: same origin, the session cookie, X-CSRF-Token on writes.
// Every call resolves (never rejects on an HTTP error) to
// {ok, status, data, etag, problem}; a network failure resolves with status 0.

let csrfToken = null;

export function setCsrf(token) {
  csrfToken = token;
}

export function problemText(result) {
  const p = result.problem || {};
  if (p.detail) return p.detail;
  if (p.title) return p.title;
  if (result.status === 0) return 'the server could not be reached';
  return `the server answered ${result.status}`;
}

export async function call(method, path, { json, form, ifMatch } = {}) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  if (ifMatch) headers['If-Match'] = ifMatch;
  let body;
  if (form) {
    body = form; // the browser sets the multipart boundary
  } else if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, credentials: 'same-origin' });
  } catch (err) {
    return { ok: false, status: 0, data: null, etag: null, problem: { detail: `network error: ${err.message}` } };
  }
  if (response.status === 401) {
    // the session ended: sign in again and come back here
    window.location.assign('/login?next=' + encodeURIComponent(location.pathname));
  }
  let data = null;
  const type = response.headers.get('Content-Type') || '';
  if (response.status !== 204 && type.includes('json')) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  const result = {
    ok: response.ok,
    status: response.status,
    data: response.ok ? data : null,
    etag: response.headers.get('ETag'),
    location: response.headers.get('Location'),
    problem: response.ok ? null : data || {},
  };
  return result;
}

export const get = (path) => call('GET', path);
