// The host's side of the Teams JavaScript protocol, as Teams plays it for
// a tab: this page frames Enclave's tab (`start({tab, ...})`) and answers
// what the tab's TeamsJS asks over postMessage. Written from how the
// vendored library (2.58.0) sends and reads messages:
//
//   tab → host  {id, uuidAsString, func, args, timestamp, apiVersionTag, ...}
//   host → tab  {id, uuidAsString, args}     (a reply: same id and uuid)
//
// - `initialize` args [sdkVersion, runtimeApiVersion, validOrigins]; the
//   reply is [frameContext, hostClientType, runtimeConfig (JSON), sdk].
// - `getContext` → [legacyContext] (TeamsJS maps hostName, tid and
//   subEntityId to app.host.name, user.tenant.id and page.subPageId).
// - `authentication.getAuthToken` → [true, token] or [false, reason].
// - `authentication.authenticate` [url, width, height]: the host opens a
//   window; that window's TeamsJS (its opener is this page) initializes
//   in the `authentication` frame context and sends
//   `authentication.authenticate.success` [result] (or `.failure`), which
//   answers the tab's request with [true, result] (or [false, reason]).
// - Anything else (appInitialization.success, ...) needs no answer.
//
// `window.host.log` lists every message taken, for the test to read.

(() => {
  const log = [];
  let cfg = null;
  let frame = null;
  let popup = null;
  let pendingAuth = null;
  let tokenCalls = 0;

  const runtime = {
    apiVersion: 4,
    isLegacyTeams: false,
    hostVersionsInfo: { adaptiveCardSchemaVersion: { majorVersion: 1, minorVersion: 5 } },
    supports: {
      app: {},
      appEntity: {},
      pages: { appButton: {}, tabs: {}, config: {}, backStack: {}, fullTrust: {} },
      permissions: {},
      teamsCore: {},
    },
  };

  function context(frameContext) {
    return {
      locale: 'en-us',
      hostName: cfg.hostName,
      hostClientType: 'web',
      frameContext,
      entityId: 'enclave',
      subEntityId: cfg.subPageId ?? undefined,
      tid: cfg.tenant,
      userObjectId: cfg.oid,
      userPrincipalName: cfg.upn,
      loginHint: cfg.upn,
    };
  }

  function answer(target, origin, m, args) {
    target.postMessage({ id: m.id, uuidAsString: m.uuidAsString, args }, origin);
  }

  window.addEventListener('message', (e) => {
    const m = e.data;
    if (!cfg || !m || typeof m !== 'object' || typeof m.func !== 'string') return;
    const from = e.source === frame?.contentWindow ? 'tab' : e.source === popup && popup ? 'popup' : null;
    if (!from) return;
    log.push({ from, func: m.func, origin: e.origin, args: m.func === 'initialize' ? m.args : undefined });
    const reply = (args) => answer(e.source, e.origin, m, args);
    switch (m.func) {
      case 'initialize':
        reply([from === 'tab' ? 'content' : 'authentication', 'web', JSON.stringify(runtime), '2.58.0']);
        break;
      case 'getContext':
        reply([context(from === 'tab' ? 'content' : 'authentication')]);
        break;
      case 'authentication.getAuthToken':
        tokenCalls++;
        if (tokenCalls <= cfg.failTokens) reply([false, 'resourceRequiresConsent']);
        else reply([true, cfg.token]);
        break;
      case 'authentication.authenticate':
        pendingAuth = { source: e.source, origin: e.origin, m };
        popup = window.open(m.args[0], 'enclave-auth', `popup,width=${m.args[1] ?? 600},height=${m.args[2] ?? 535}`);
        if (!popup) {
          pendingAuth = null;
          reply([false, 'FailedToOpenWindow']);
        }
        break;
      case 'authentication.authenticate.success':
      case 'authentication.authenticate.failure':
        if (pendingAuth) {
          const ok = m.func.endsWith('.success');
          answer(pendingAuth.source, pendingAuth.origin, pendingAuth.m, [ok, m.args?.[0]]);
          pendingAuth = null;
        }
        popup?.close();
        break;
      default:
    }
  });

  window.host = {
    log,
    tokenCalls: () => tokenCalls,
    start(c) {
      cfg = { hostName: 'Teams', failTokens: 0, ...c };
      frame = document.createElement('iframe');
      frame.id = 'tab';
      frame.title = 'Enclave';
      frame.src = cfg.tab;
      document.body.append(frame);
    },
  };
})();
