#!/usr/bin/env node
// Drives Debian's Chromium (headless, through playwright-core) through one
// WebRTC scenario and prints exactly one JSON line on stdout with what it
// saw. Diagnostics (browser console, progress) go to stderr.
//
//   node run.mjs <scenario.json | -> [--scenario NAME] [--base URL] [--call ID]
//                [--token T] [--trickle none|patch|omit] [--sample-seconds N]
//                [--timeout-ms N] [--screenshot PATH]
//
// Flags override fields of the JSON file; with no file, flags alone do.
// Scenarios: loopback, whip-whep, two-pages-relay, and the web client's
// own (app.mjs: chat, call; recording.mjs: review, recording; m365.mjs:
// m365-tab; chat.mjs: chat-channels, chat-direct, chat-files, chat-posts;
// calls.mjs: ringing, controls, devices, reconnect, media-blocked); see
// README.md here.
// Exit code: 0 when the scenario ran through ("ok": true), 1 when it failed
// (the JSON line then carries "error"), 2 on bad usage.
//
// The pages are served by a small HTTP server on 127.0.0.1 on a random
// port, so they are a different origin from the server under test and its
// CORS handling is really exercised.

import { chromium } from 'playwright-core';
import http from 'node:http';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { appScenarios } from './app.mjs';
import { recordingScenarios } from './recording.mjs';
import { m365Scenarios } from './m365.mjs';
import { chatScenarios } from './chat.mjs';
import { callScenarios } from './calls.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PAGES = path.join(HERE, 'pages');

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  // Grants media permission without a prompt. It also matters for pages
  // that never call getUserMedia (a WHEP player): without the permission
  // Chromium hides host addresses behind mDNS names, which on a
  // loopback-only network means no candidate at all (checked on Chromium
  // 156; --disable-features=WebRtcHideLocalIpsWithMdns does not help).
  '--use-fake-ui-for-media-stream',
  // Without it Chromium gathers no candidate at all on a loopback-only network.
  '--allow-loopback-in-peer-connection',
];

const DEFAULTS = {
  scenario: null,
  base: null, // e.g. http://127.0.0.1:8080 (whip-whep)
  call: 'test', // call id in <base>/whip/<call> and <base>/whep/<call>
  token: null, // Bearer token for both, unless the next two are given
  whip_token: null,
  whep_token: null,
  whip_url: null, // full endpoint URLs, overriding base + call
  whep_url: null,
  trickle: 'none', // "none" | "patch" | "omit"
  player_delay_ms: 0, // whip-whep: start the player this long after the publisher connected
  audio: true,
  video: true,
  sample_seconds: 3,
  connect_timeout_ms: 15000,
  gather_timeout_ms: 5000,
  timeout_ms: 60000,
  screenshot: null,
  chromium: process.env.ENCLAVE_CHROMIUM || '/usr/bin/chromium',
  chromium_args: [],
};

function usage(msg) {
  process.stderr.write(`run.mjs: ${msg}\nusage: node run.mjs <scenario.json | -> [--scenario NAME] [--base URL] [--call ID] [--token T] [--trickle none|patch|omit] [--sample-seconds N] [--timeout-ms N] [--screenshot PATH]\n`);
  process.exit(2);
}

async function parseArgs(argv) {
  let fromFile = {};
  const flags = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const key = (eq > 0 ? a.slice(2, eq) : a.slice(2)).replace(/-/g, '_');
      const val = eq > 0 ? a.slice(eq + 1) : argv[++i];
      if (val === undefined) usage(`${a} needs a value`);
      flags[key] = val;
    } else if (a === '-') {
      const chunks = [];
      for await (const c of process.stdin) chunks.push(c);
      fromFile = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } else {
      fromFile = JSON.parse(await readFile(a, 'utf8'));
    }
  }
  const cfg = { ...DEFAULTS, ...fromFile };
  for (const [k, v] of Object.entries(flags)) {
    if (!(k in DEFAULTS)) usage(`unknown option --${k.replace(/_/g, '-')}`);
    cfg[k] = typeof DEFAULTS[k] === 'number' ? Number(v) : typeof DEFAULTS[k] === 'boolean' ? v === 'true' : v;
  }
  if (!cfg.scenario) usage('no scenario given');
  if (!['none', 'patch', 'omit'].includes(cfg.trickle)) usage(`trickle must be "none", "patch" or "omit", not ${cfg.trickle}`);
  return cfg;
}

const CONTENT_TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css' };

// Serves pages/ on 127.0.0.1, random port.
function servePages() {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/favicon.ico') {
      res.writeHead(204).end();
      return;
    }
    const file = path.normalize(path.join(PAGES, decodeURIComponent(url.pathname)));
    if (req.method !== 'GET' || !file.startsWith(PAGES + path.sep)) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = readFileSync(file);
      res.writeHead(200, { 'Content-Type': CONTENT_TYPES[path.extname(file)] || 'application/octet-stream', 'Cache-Control': 'no-store' });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

function note(msg) {
  process.stderr.write(`run.mjs: ${msg}\n`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function openPage(context, origin, name, file) {
  const page = await context.newPage();
  page.on('console', (m) => process.stderr.write(`[${name}] ${m.type()}: ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`[${name}] pageerror: ${e.message}\n`));
  page.on('requestfailed', (r) => process.stderr.write(`[${name}] request failed: ${r.method()} ${r.url()}: ${r.failure()?.errorText}\n`));
  await page.goto(`${origin}/${file}`);
  await page.waitForFunction(() => window.enclaveReady === true);
  return page;
}

function call(page, fn, ...args) {
  return page.evaluate(([fn, args]) => window.enclave[fn](...args), [fn, args]);
}

// Two samples of the receiving side, sample_seconds apart, plus growth.
async function sampleTwice(page, name, cfg, result) {
  const first = await call(page, 'sample', name);
  await sleep(cfg.sample_seconds * 1000);
  const second = await call(page, 'sample', name);
  result.samples = [first, second];
  const d = (k, f) => (second[k]?.[f] ?? 0) - (first[k]?.[f] ?? 0);
  result.growth = {
    audio_packets: d('audio', 'packets_received'),
    video_packets: d('video', 'packets_received'),
    video_frames: d('video', 'frames_decoded'),
  };
  result.connection_state = second.connection_state;
  result.protocol = second.candidate_pair?.protocol ?? null;
}

const scenarios = {
  // Two peer connections in one page: no server. Proves browser + network.
  async loopback(ctx, cfg, result) {
    const page = await openPage(ctx.context, ctx.origin, 'loopback', 'loopback.html');
    ctx.shot = page;
    const r = await call(page, 'loopback', { audio: cfg.audio, video: cfg.video, timeoutMs: cfg.connect_timeout_ms });
    result.candidates = r.candidates;
    await sampleTwice(page, 'receiver', cfg, result);
  },

  // Publisher page (WHIP) and player page (WHEP) against a server.
  async 'whip-whep'(ctx, cfg, result) {
    if (!cfg.base && !(cfg.whip_url && cfg.whep_url)) throw new Error('whip-whep needs "base" (or whip_url and whep_url)');
    const whip = cfg.whip_url || `${cfg.base.replace(/\/$/, '')}/whip/${encodeURIComponent(cfg.call)}`;
    const whep = cfg.whep_url || `${cfg.base.replace(/\/$/, '')}/whep/${encodeURIComponent(cfg.call)}`;
    const pub = await openPage(ctx.context, ctx.origin, 'publisher', 'publisher.html');
    const play = await openPage(ctx.context, ctx.origin, 'player', 'player.html');
    ctx.shot = play;
    ctx.cleanup.push(async () => {
      result.publisher = (await call(pub, 'whipStop', 'publisher').catch(() => null)) ?? result.publisher;
      result.player = (await call(play, 'whipStop', 'player').catch(() => null)) ?? result.player;
      result.delete = { publisher: result.publisher?.delete_status ?? null, player: result.player?.delete_status ?? null };
    });
    const opts = { trickle: cfg.trickle, audio: cfg.audio, video: cfg.video, gatherTimeoutMs: cfg.gather_timeout_ms };
    const pubToken = cfg.whip_token ?? cfg.token;
    const playToken = cfg.whep_token ?? cfg.token;

    note(`publishing to ${whip} (trickle ${cfg.trickle})`);
    result.publisher = await call(pub, 'whipStart', 'publisher', { ...opts, endpoint: whip, token: pubToken, role: 'publish' });
    await call(pub, 'waitConnected', 'publisher', cfg.connect_timeout_ms);
    if (cfg.player_delay_ms > 0) {
      // A late joiner: the publisher's encoder is well past its first
      // keyframe, so the player decodes only if the server gets it one.
      note(`publisher connected; starting the player in ${cfg.player_delay_ms} ms`);
      await sleep(cfg.player_delay_ms);
    }
    note(`playing from ${whep}`);
    result.player = await call(play, 'whipStart', 'player', { ...opts, endpoint: whep, token: playToken, role: 'play' });
    await call(play, 'waitConnected', 'player', cfg.connect_timeout_ms);
    const playerConnected = Date.now();
    result.publisher = await call(pub, 'whipSettle', 'publisher', cfg.gather_timeout_ms);
    result.player = await call(play, 'whipSettle', 'player', cfg.gather_timeout_ms);
    for (const side of ['publisher', 'player']) {
      if (result[side].patch_error) throw new Error(`${side}: ${result[side].patch_error}`);
    }

    // While sampling, note when the player decoded its first frame.
    let firstFrameMs = null;
    let polling = true;
    const poller = (async () => {
      while (polling && firstFrameMs === null) {
        const s = await call(play, 'sample', 'player').catch(() => null);
        if ((s?.video?.frames_decoded ?? 0) > 0) firstFrameMs = Date.now() - playerConnected;
        else await sleep(100);
      }
    })();
    await sampleTwice(play, 'player', cfg, result);
    polling = false;
    await poller;
    result.player_first_frame_ms = firstFrameMs;
    const pubSample = await call(pub, 'sample', 'publisher');
    result.publisher_outbound = pubSample.outbound;
    result.publisher_connection_state = pubSample.connection_state;
    result.publisher_protocol = pubSample.candidate_pair?.protocol ?? null;
  },

  // Publisher page sends to player page; run.mjs relays the SDP (no trickle).
  async 'two-pages-relay'(ctx, cfg, result) {
    const pub = await openPage(ctx.context, ctx.origin, 'publisher', 'publisher.html');
    const play = await openPage(ctx.context, ctx.origin, 'player', 'player.html');
    ctx.shot = play;
    const o = { audio: cfg.audio, video: cfg.video, gatherTimeoutMs: cfg.gather_timeout_ms };
    const offer = await call(pub, 'relayOffer', 'publisher', { ...o, role: 'send' });
    const answer = await call(play, 'relayAnswer', 'player', offer, o);
    await call(pub, 'relayAccept', 'publisher', answer);
    await Promise.all([
      call(pub, 'waitConnected', 'publisher', cfg.connect_timeout_ms),
      call(play, 'waitConnected', 'player', cfg.connect_timeout_ms),
    ]);
    await sampleTwice(play, 'player', cfg, result);
  },
};

async function main() {
  const cfg = await parseArgs(process.argv.slice(2));
  const own = appScenarios[cfg.scenario] ?? recordingScenarios[cfg.scenario] ?? m365Scenarios[cfg.scenario] ?? chatScenarios[cfg.scenario] ?? callScenarios[cfg.scenario];
  const run = own ?? scenarios[cfg.scenario];
  if (!run) usage(`unknown scenario ${cfg.scenario} (known: ${[...Object.keys(scenarios), ...Object.keys(appScenarios), ...Object.keys(recordingScenarios), ...Object.keys(m365Scenarios), ...Object.keys(chatScenarios), ...Object.keys(callScenarios)].join(', ')})`);

  const started = Date.now();
  const result = { ok: false, scenario: cfg.scenario, error: null, elapsed_ms: null, sample_seconds: cfg.sample_seconds, trickle: cfg.trickle, screenshot: null };
  const ctx = { context: null, origin: null, shot: null, cleanup: [], args: CHROMIUM_ARGS };
  let server = null;
  let profile = null;
  let timer = null;

  const body = async () => {
    // The web client's scenarios start their own browser: one context per user.
    if (own) {
      await run(ctx, cfg, result);
      return;
    }
    server = await servePages();
    ctx.origin = `http://127.0.0.1:${server.address().port}`;
    profile = await mkdtemp(path.join(os.tmpdir(), 'enclave-chromium-'));
    const t0 = Date.now();
    ctx.context = await chromium.launchPersistentContext(profile, {
      executablePath: cfg.chromium,
      headless: true,
      args: [...CHROMIUM_ARGS, ...cfg.chromium_args],
      viewport: { width: 960, height: 600 },
    });
    result.browser_version = ctx.context.browser()?.version() ?? null;
    note(`chromium up in ${Date.now() - t0} ms; pages at ${ctx.origin}`);
    await run(ctx, cfg, result);
  };

  try {
    await Promise.race([
      body(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`scenario timed out after ${cfg.timeout_ms} ms`)), cfg.timeout_ms);
      }),
    ]);
    result.ok = true;
  } catch (err) {
    result.error = String(err?.message ?? err).split('\n')[0].replace(/^page\.evaluate: (Error: )?/, '');
    note(`error: ${err?.stack ?? err}`);
  } finally {
    clearTimeout(timer);
  }

  // Clean-up is bounded too: a hung page must not hold the run.
  const bounded = (p, ms) => Promise.race([p, sleep(ms)]);
  if (cfg.screenshot && ctx.shot) {
    try {
      await bounded(ctx.shot.screenshot({ path: cfg.screenshot }), 5000);
      result.screenshot = cfg.screenshot;
    } catch (err) {
      note(`screenshot failed: ${err.message}`);
    }
  }
  for (const f of ctx.cleanup) {
    try {
      await bounded(f(), 5000);
    } catch (err) {
      note(`clean-up: ${err.message}`);
    }
  }
  if (ctx.context) await bounded(ctx.context.close().catch(() => {}), 5000);
  if (server) server.close();
  if (profile) await rm(profile, { recursive: true, force: true }).catch(() => {});
  result.elapsed_ms = Date.now() - started;
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(result.ok ? 0 : 1);
}

main().catch((err) => {
  process.stderr.write(`run.mjs: ${err?.stack ?? err}\n`);
  process.stdout.write(JSON.stringify({ ok: false, error: String(err?.message ?? err) }) + '\n');
  process.exit(1);
});
