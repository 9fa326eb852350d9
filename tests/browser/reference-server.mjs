#!/usr/bin/env node
// A small WHIP (RFC 9725) / WHEP server whose media end is a headless
// Chromium page (pages/reference-sfu.js). Test fixture: it checks the
// client pages and run.mjs against a server that speaks the same HTTP
// protocol, CORS included, that rtcd must speak; the rtcd tests then run
// the same scenario against rtcd.
//
//   node reference-server.mjs [--port N] [--token T] [--patch 204|405]
//                             [--cors full|no-expose|none]
//
// --patch 405 answers trickle PATCHes as a server without trickle support;
// --cors lets a test check that a client notices broken CORS.
//
// Prints one JSON line when ready: {"base":"http://127.0.0.1:PORT"}.
// Endpoints: POST <base>/whip/<call>, POST <base>/whep/<call> (201 +
// Location: /resource/<id>, relative on purpose), PATCH and DELETE on the
// resource, OPTIONS preflights everywhere. Stops on SIGTERM/SIGINT.

import { chromium } from 'playwright-core';
import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const opts = { port: '0', token: null, patch: '204', cors: 'full', chromium: process.env.ENCLAVE_CHROMIUM || '/usr/bin/chromium' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const k = argv[i].replace(/^--/, '');
  if (!(k in opts) || argv[i + 1] === undefined) {
    process.stderr.write('usage: node reference-server.mjs [--port N] [--token T] [--patch 204|405] [--cors full|no-expose|none]\n');
    process.exit(2);
  }
  opts[k] = argv[i + 1];
}

const profile = await mkdtemp(path.join(os.tmpdir(), 'enclave-refsfu-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: opts.chromium,
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--allow-loopback-in-peer-connection',
    // Not for media: without a media permission Chromium gathers no host
    // candidate on a loopback-only network (see run.mjs).
    '--use-fake-ui-for-media-stream',
  ],
});
const page = await context.newPage();
page.on('console', (m) => process.stderr.write(`[reference-sfu] ${m.text()}\n`));
page.on('pageerror', (e) => process.stderr.write(`[reference-sfu] pageerror: ${e.message}\n`));
const sfu = (fn, ...args) => page.evaluate(([fn, args]) => window.sfu[fn](...args), [fn, args]);

const CORS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'POST, PATCH, DELETE, OPTIONS',
  'Access-Control-Allow-Headers': 'Authorization, Content-Type, If-Match',
  'Access-Control-Expose-Headers': 'Location, ETag, Link',
  'Access-Control-Max-Age': '600',
};
const resources = new Map(); // id -> etag

function reply(res, status, headers = {}, body = '') {
  const cors = { ...CORS };
  if (opts.cors === 'none') for (const k of Object.keys(cors)) delete cors[k];
  if (opts.cors === 'no-expose') delete cors['Access-Control-Expose-Headers'];
  res.writeHead(status, { ...cors, ...headers });
  res.end(body);
}

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://x');
    const parts = url.pathname.split('/').filter(Boolean);
    process.stderr.write(`reference-server: ${req.method} ${url.pathname}\n`);
    if (req.method === 'GET' && url.pathname === '/__sfu/') {
      return reply(res, 200, { 'Content-Type': 'text/html' }, '<script type="module">import * as s from "/__sfu/sfu.js"; window.sfu = s;</script>');
    }
    if (req.method === 'GET' && url.pathname === '/__sfu/sfu.js') {
      return reply(res, 200, { 'Content-Type': 'text/javascript' }, readFileSync(path.join(HERE, 'pages', 'reference-sfu.js')));
    }
    if (req.method === 'OPTIONS') return reply(res, 204);
    if (opts.token && req.headers.authorization !== `Bearer ${opts.token}`) return reply(res, 401, {}, 'bad token');
    const ctype = (req.headers['content-type'] || '').split(';')[0].trim();

    if (req.method === 'POST' && parts.length === 2 && (parts[0] === 'whip' || parts[0] === 'whep')) {
      if (ctype !== 'application/sdp') return reply(res, 415, {}, 'want application/sdp');
      const offer = await readBody(req);
      const id = randomUUID();
      const answer = await sfu(parts[0] === 'whip' ? 'ingest' : 'egress', id, decodeURIComponent(parts[1]), offer);
      if (answer == null) return reply(res, 404, {}, 'nothing published on this call');
      const etag = `"${randomUUID()}"`;
      resources.set(id, etag);
      return reply(res, 201, { 'Content-Type': 'application/sdp', Location: `/resource/${id}`, ETag: etag }, answer);
    }
    if (parts.length === 2 && parts[0] === 'resource') {
      const id = parts[1];
      if (!resources.has(id)) return reply(res, 404);
      if (req.method === 'DELETE') {
        await sfu('remove', id);
        resources.delete(id);
        return reply(res, 200);
      }
      if (req.method === 'PATCH') {
        if (opts.patch === '405') return reply(res, 405, { Allow: 'DELETE' });
        if (ctype !== 'application/trickle-ice-sdpfrag') return reply(res, 415);
        const ifMatch = req.headers['if-match'];
        if (ifMatch && ifMatch !== '*' && ifMatch !== resources.get(id)) return reply(res, 412);
        const added = await sfu('trickle', id, await readBody(req));
        if (added === -1) return reply(res, 422, {}, 'ICE restart not supported');
        return reply(res, 204);
      }
    }
    return reply(res, 405);
  } catch (err) {
    process.stderr.write(`reference-server: ${err.stack}\n`);
    reply(res, 500, {}, String(err.message));
  }
});

await new Promise((resolve) => server.listen(Number(opts.port), '127.0.0.1', resolve));
const base = `http://127.0.0.1:${server.address().port}`;
// The SFU page is served by this server (a loopback origin is a secure
// context; elsewhere Chromium gathers no host candidate).
await page.goto(`${base}/__sfu/`);
await page.waitForFunction(() => window.sfu !== undefined);
process.stdout.write(JSON.stringify({ base }) + '\n');

async function stop() {
  server.close();
  await context.close().catch(() => {});
  await rm(profile, { recursive: true, force: true }).catch(() => {});
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
