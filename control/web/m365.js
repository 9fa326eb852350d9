// The Microsoft 365 tab (/m365/tab): Teams, Outlook or the Microsoft 365
// app frames this page. It asks the host who the user is (TeamsJS single
// sign-on), trades that token for an Enclave session and opens the web
// client (/m365/app) at the post a notification named. Outside a host it
// hands over to the normal login page.
//
// TeamsJS (/app/vendor/MicrosoftTeams.min.js) is a classic script that
// runs before this module and leaves `window.microsoftTeams`.
//
// With `?auth=popup` the page is the "sign in another way" window the
// host opened: it runs the normal login and hands the tab a one-time code
// (control/src/api/m365_handoff.rs).

import { get, post, ApiError } from './api.js';
import { h, replace } from './dom.js';
import { showLogin } from './login.js';

// Outside a frame TeamsJS rejects at once; a parent that never answers
// would keep it waiting a minute, so give up well before.
export const INITIALIZE_TIMEOUT_MS = 4000;
// Teams may be slow to produce the first token (consent, a cold cache):
// a few tries, 250 + 250·n² ms apart.
export const TOKEN_ATTEMPTS = 4;
export const tokenBackoffMs = (n) => 250 + 250 * n * n;

// TeamsJS host names (context.app.host.name) this tab is made for, and
// how the page calls them.
const HOSTS = {
  Teams: 'Microsoft Teams',
  TeamsModern: 'Microsoft Teams',
  Outlook: 'Outlook',
  OutlookWin32: 'Outlook',
  Office: 'the Microsoft 365 app',
};

const status = document.getElementById('tab-status');
const error = document.getElementById('tab-error');
const retry = document.getElementById('tab-retry');
const other = document.getElementById('tab-other');

// What the page did, for the browser tests and for support: never a way
// to act.
const tab = { phase: 'start', host: null, tenant: null, subPageId: null, attempts: 0, error: null };
window.enclaveTab = tab;

function say(text, phase) {
  tab.phase = phase;
  status.textContent = text;
}

function fail(text, phase, { canRetry = false, canSignInOtherwise = false } = {}) {
  tab.phase = phase;
  tab.error = text;
  status.textContent = '';
  error.textContent = text;
  retry.hidden = !canRetry;
  other.hidden = !canSignInOtherwise;
  (canRetry ? retry : canSignInOtherwise ? other : error).focus?.();
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function withTimeout(promise, ms, what) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`${what} timed out`)), ms)),
  ]);
}

// A notification's deep link (`subEntityId`) as a route of the web
// client: `post_<id>` opens the post, `call_<channel id>` its channel.
export function routeFor(subPageId) {
  const m = /^(post|call)_([A-Za-z0-9_-]{1,64})$/.exec(subPageId ?? '');
  if (!m) return '';
  return m[1] === 'post' ? `#/p/${m[2]}` : `#/c/${m[2]}`;
}

// Not in a host: the normal login page, which cannot be framed. In a
// frame that is no host (its own frame-ancestors let no other page here),
// say so and offer a window of its own.
function leaveForLogin(reason) {
  tab.phase = 'fallback';
  tab.error = reason;
  if (window.top === window) {
    location.replace('/');
    return;
  }
  fail(`Enclave could not reach its host here (${reason}).`, 'fallback');
  error.append(' ', h('a', { href: '/', target: '_blank', rel: 'noopener' }, 'Open Enclave in a new window'));
}

async function tabConfig() {
  try {
    return await get('/m365/tab-config');
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return null;
    throw e;
  }
}

async function token(teams) {
  let last;
  for (let n = 0; n < TOKEN_ATTEMPTS; n++) {
    tab.attempts = n + 1;
    try {
      return await teams.authentication.getAuthToken();
    } catch (e) {
      last = e;
      if (n + 1 < TOKEN_ATTEMPTS) await sleep(tokenBackoffMs(n + 1));
    }
  }
  throw last;
}

// Control checks the token (signature, tenant, audience) and answers with
// the session cookies a third-party frame keeps.
async function exchange(accessToken, host) {
  const res = await fetch('/api/v1/m365/session', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { Authorization: `Bearer ${accessToken}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ host }),
  });
  if (res.ok) return null;
  const body = await res.json().catch(() => ({}));
  return { status: res.status, code: body.code ?? 'http_error', message: body.message ?? `HTTP ${res.status}` };
}

async function signIn(teams) {
  retry.hidden = true;
  other.hidden = true;
  error.textContent = '';
  say('Signing you in with your Microsoft account…', 'token');
  let accessToken;
  try {
    accessToken = await token(teams);
  } catch (e) {
    fail(`Your Microsoft account did not sign you in (${e?.message ?? e}). Try again, or sign in another way.`,
      'token_failed', { canRetry: true, canSignInOtherwise: true });
    return;
  }
  say('Opening your Enclave session…', 'session');
  let refusal;
  try {
    refusal = await exchange(accessToken, tab.host);
  } catch {
    fail('The Enclave server cannot be reached.', 'session_failed', { canRetry: true });
    return;
  }
  if (refusal) {
    tab.refusal = refusal;
    fail(`Enclave did not accept this sign-in: ${refusal.message}`, 'session_refused',
      // A stale token from the host's cache (401) may pass on a fresh try.
      { canRetry: refusal.status === 401 || refusal.status >= 500, canSignInOtherwise: true });
    return;
  }
  openClient();
}

function openClient() {
  say('Opening Enclave…', 'opening');
  location.replace(`/m365/app${routeFor(tab.subPageId)}`);
}

// "Sign in another way": the host opens this page in a window of its
// own, where identity providers' pages load (they refuse frames).
async function signInOtherwise(teams) {
  other.disabled = true;
  try {
    const code = await teams.authentication.authenticate({ url: `${location.pathname}?auth=popup`, width: 600, height: 535 });
    say('Opening your Enclave session…', 'handoff');
    const res = await fetch('/api/v1/m365/handoff/redeem', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ code }),
    });
    if (!res.ok) {
      const body = await res.json().catch(() => ({}));
      throw new Error(body.message ?? `HTTP ${res.status}`);
    }
    openClient();
  } catch (e) {
    fail(`Signing in another way did not finish (${e?.message ?? e}).`, 'popup_failed',
      { canRetry: true, canSignInOtherwise: true });
  } finally {
    other.disabled = false;
  }
}

async function runTab() {
  const teams = window.microsoftTeams;
  const config = await tabConfig();
  if (!config) return leaveForLogin('Microsoft 365 is not enabled on this server');
  if (!teams) return leaveForLogin('the Teams library did not load');
  try {
    await withTimeout(teams.app.initialize(config.valid_origins), INITIALIZE_TIMEOUT_MS, 'Microsoft 365');
  } catch (e) {
    return leaveForLogin(e?.message ?? String(e));
  }
  let context;
  try {
    context = await teams.app.getContext();
  } catch (e) {
    return leaveForLogin(`no context: ${e?.message ?? e}`);
  }
  tab.host = context.app?.host?.name ?? null;
  tab.tenant = context.user?.tenant?.id ?? null;
  tab.subPageId = context.page?.subPageId || null;
  teams.app.notifySuccess?.();
  retry.onclick = () => signIn(teams);
  other.onclick = () => signInOtherwise(teams);
  if (!HOSTS[tab.host]) {
    fail(`Enclave runs in Teams, Outlook and the Microsoft 365 app, not in "${tab.host}".`, 'wrong_host',
      { canSignInOtherwise: true });
    return;
  }
  if (!tab.tenant) {
    fail('Your Microsoft 365 host did not say which organisation you belong to.', 'no_tenant',
      { canSignInOtherwise: true });
    return;
  }
  await signIn(teams);
}

// The popup: sign in as on the login page, then tell the host, which
// closes this window and resolves the tab's `authenticate`.
async function runPopup() {
  const teams = window.microsoftTeams;
  const config = await tabConfig();
  const root = document.getElementById('main').parentElement;
  let initialized = false;
  if (teams && config) {
    initialized = await withTimeout(teams.app.initialize(config.valid_origins), INITIALIZE_TIMEOUT_MS, 'Microsoft 365')
      .then(() => true, () => false);
  }
  // Signed in here (first party): a one-time code for the tab, whose
  // frame cannot use this window's cookies.
  const done = async () => {
    tab.phase = 'popup_done';
    if (!initialized) {
      replace(root, h('main', { id: 'main', class: 'login' }, h('p', { role: 'status' }, 'Signed in. You can close this window.')));
      return;
    }
    try {
      const { code } = await post('/m365/handoff');
      teams.authentication.notifySuccess(code);
    } catch (e) {
      teams.authentication.notifyFailure(e.message);
    }
  };
  try {
    await get('/users/me');
    await done();
  } catch {
    tab.phase = 'popup_login';
    showLogin(root, done, undefined, { returnTo: `${location.pathname}${location.search}` });
  }
}

const popup = new URLSearchParams(location.search).get('auth') === 'popup';
(popup ? runPopup() : runTab()).catch((e) => {
  console.error(e);
  fail(`Enclave failed to start: ${e.message}`, 'crashed', { canRetry: false });
});
