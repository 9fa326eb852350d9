// The Microsoft 365 tab (control's /m365/tab) in Chromium, framed by a
// stand-in Microsoft host (pages/m365-host.*) served from another site,
// 127.0.0.2, as Teams frames a tab from its own. run.mjs dispatches here.
//
//   m365-tab: four browser contexts, each with its own cookies.
//     direct: /m365/tab opened on its own (no host) ends at the login page.
//     rogue:  the host page on a port whose origin is not in
//             extra_host_origins: the browser refuses to frame the tab.
//     host:   the listed host (1000 px), first token refused then given:
//             the tab signs in and opens the web client at the post the
//             deep link (`subPageId` post_<id>) names.
//     narrow: the listed host at 320 px (a side panel) refusing every
//             token: the tab gives up after its retries and says so.
//
// Fields: base, host_port, rogue_port, token, tenant, oid, upn,
// display_name, post_id, narrow_screenshot (a PNG path, optional). The result has one object per part, plus the
// requests that left loopback (none may).

import http from 'node:http';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch } from './app.mjs';

const PAGES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'pages');
const HOST_IP = '127.0.0.2';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function note(msg) {
  process.stderr.write(`m365.mjs: ${msg}\n`);
}

// The host page and its script, on HOST_IP at each of `ports`.
async function serveHost(ports) {
  const files = {
    '/m365-host.html': ['text/html; charset=utf-8', readFileSync(path.join(PAGES, 'm365-host.html'))],
    '/m365-host.js': ['text/javascript; charset=utf-8', readFileSync(path.join(PAGES, 'm365-host.js'))],
  };
  const servers = [];
  for (const port of ports) {
    const server = http.createServer((req, res) => {
      const p = new URL(req.url, 'http://x').pathname;
      if (p === '/favicon.ico') return res.writeHead(204).end();
      const f = files[p];
      if (!f) return res.writeHead(404).end();
      res.writeHead(200, { 'Content-Type': f[0], 'Cache-Control': 'no-store' }).end(f[1]);
    });
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, HOST_IP, resolve);
    });
    servers.push(server);
  }
  return { close: async () => servers.forEach((s) => s.close()) };
}

// A context of its own; its console (every frame's) and requests noted.
async function open(browser, name, viewport) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const consoleLines = [];
  const requests = [];
  page.on('console', (m) => {
    consoleLines.push(m.text());
    process.stderr.write(`[${name}] ${m.type()}: ${m.text()}\n`);
  });
  page.on('pageerror', (e) => process.stderr.write(`[${name}] pageerror: ${e.message}\n`));
  context.on('request', (r) => requests.push(r.url()));
  context.on('page', (p) => {
    p.on('console', (m) => process.stderr.write(`[${name} popup] ${m.type()}: ${m.text()}\n`));
  });
  return { context, page, consoleLines, requests };
}

const leftLoopback = (urls) =>
  urls.filter((u) => !/^(data|blob|about|chrome-error):/.test(u) && !/^(http|ws)s?:\/\/127\.\d+\.\d+\.\d+(:\d+)?\//.test(u));

export const m365Scenarios = {
  async 'm365-tab'(ctx, cfg, result) {
    for (const k of ['base', 'host_port', 'rogue_port', 'token', 'tenant', 'oid', 'display_name', 'post_id']) {
      if (!cfg[k]) throw new Error(`m365-tab needs "${k}"`);
    }
    const hosts = await serveHost([cfg.host_port, cfg.rogue_port]);
    ctx.cleanup.push(() => hosts.close());
    const browser = await launch(cfg, ctx.args);
    ctx.cleanup.push(() => browser.close());
    const tab = `${cfg.base}/m365/tab`;
    const hostCfg = { tab, token: cfg.token, tenant: cfg.tenant, oid: cfg.oid, upn: cfg.upn ?? '', hostName: 'Teams' };
    const allRequests = [];

    // 1. No host: the tab hands over to the normal login page.
    {
      const d = await open(browser, 'direct', { width: 1000, height: 700 });
      await d.page.goto(tab);
      await d.page.waitForURL(`${cfg.base}/`, { timeout: 15000 });
      await d.page.locator('#login-username').waitFor({ timeout: 10000 });
      result.direct = { url: d.page.url(), login_form: true };
      allRequests.push(...d.requests);
      await d.context.close();
      note('direct: fell back to the login page');
    }

    // 2. A host whose origin the site does not list.
    {
      const r = await open(browser, 'rogue', { width: 1000, height: 700 });
      await r.page.goto(`http://${HOST_IP}:${cfg.rogue_port}/m365-host.html`);
      await r.page.evaluate((c) => window.host.start(c), { ...hostCfg, subPageId: `post_${cfg.post_id}` });
      await sleep(3000);
      const log = await r.page.evaluate(() => window.host.log);
      result.rogue = {
        messages: log.length,
        // Chromium 156: "Framing '<tab>' violates the following Content
        // Security Policy directive: "frame-ancestors …". The request has
        // been blocked."
        refused: r.consoleLines.some((l) => l.includes('"frame-ancestors ') && l.includes(`'${cfg.base}/'`) && /blocked|refused/i.test(l)),
        frame_urls: r.page.frames().map((f) => f.url()),
      };
      allRequests.push(...r.requests);
      await r.context.close();
      note(`rogue: ${JSON.stringify(result.rogue)}`);
    }

    // 3. The listed host: signed in, at the linked post.
    const s = await open(browser, 'host', { width: 1000, height: 700 });
    {
      const t0 = Date.now();
      await s.page.goto(`http://${HOST_IP}:${cfg.host_port}/m365-host.html`);
      await s.page.evaluate((c) => window.host.start(c), { ...hostCfg, subPageId: `post_${cfg.post_id}`, failTokens: 1 });
      const frame = s.page.frameLocator('#tab');
      await frame.locator('#me', { hasText: cfg.display_name }).waitFor({ timeout: 20000 });
      const signedInMs = Date.now() - t0;
      const linked = frame.locator(`#thread-post-${cfg.post_id}.linked`);
      await linked.waitFor({ timeout: 10000 });
      await frame.locator('#connection[data-state="online"]').waitFor({ timeout: 10000 });
      const appFrame = s.page.frames().find((f) => f.url().startsWith(`${cfg.base}/m365/app`));
      // All of them: asked by URL, Chromium leaves out partitioned ones.
      const cookies = (await s.context.cookies()).filter((c) => c.domain === new URL(cfg.base).hostname);
      result.host = {
        signed_in_ms: signedInMs,
        frame_url: appFrame?.url() ?? null,
        me: await frame.locator('#me').textContent(),
        linked_text: await linked.textContent(),
        linked_focused: await linked.evaluate((el) => el === document.activeElement),
        channel_title: await frame.locator('#channel-title').textContent(),
        token_calls: await s.page.evaluate(() => window.host.tokenCalls()),
        funcs: (await s.page.evaluate(() => window.host.log)).map((m) => `${m.from}:${m.func}`),
        valid_origins: (await s.page.evaluate(() => window.host.log.find((m) => m.func === 'initialize')?.args?.[2])) ?? null,
        cookies: cookies.map((c) => ({ name: c.name, same_site: c.sameSite, secure: c.secure, http_only: c.httpOnly, partition_key: c.partitionKey ?? null })),
        cdn_refused: s.consoleLines.some((l) => l.includes('res.cdn.office.net') && l.includes('Content Security Policy')),
      };
      ctx.shot = s.page;
      note(`host: signed in after ${signedInMs} ms`);
    }

    // 4. A side panel whose host gives no token.
    {
      const n = await open(browser, 'narrow', { width: 320, height: 640 });
      await n.page.goto(`http://${HOST_IP}:${cfg.host_port}/m365-host.html`);
      await n.page.evaluate((c) => window.host.start(c), { ...hostCfg, failTokens: 1000 });
      const frame = n.page.frameLocator('#tab');
      const retry = frame.locator('#tab-retry');
      await retry.waitFor({ state: 'visible', timeout: 20000 });
      const other = frame.locator('#tab-other');
      const boxes = [await retry.boundingBox(), await other.boundingBox(), await frame.locator('#tab-error').boundingBox()];
      result.narrow = {
        error: await frame.locator('#tab-error').textContent(),
        retry_focused: await retry.evaluate((el) => el === document.activeElement),
        other_visible: await other.isVisible(),
        token_calls: await n.page.evaluate(() => window.host.tokenCalls()),
        fits: boxes.every((b) => b && b.x >= 0 && b.x + b.width <= 320),
        error_is_alert: (await frame.locator('#tab-error').getAttribute('role')) === 'alert',
      };
      if (cfg.narrow_screenshot) await n.page.screenshot({ path: cfg.narrow_screenshot });
      allRequests.push(...n.requests);
      await n.context.close();
      note(`narrow: ${JSON.stringify(result.narrow)}`);
    }
    allRequests.push(...s.requests);
    result.outside_requests = leftLoopback(allRequests);
  },
};
