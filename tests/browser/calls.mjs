// Call flows of Enclave's web client beyond the basic call (app.mjs),
// one browser context per user. run.mjs dispatches here; the Rust side is
// tests/tests/browser_calls.rs.
//
//   ringing:      users[0] calls users[1] in their direct channel: the
//                 callee's page rings (a labelled alert dialog with Accept
//                 and Decline, announced); Decline ends the caller's call
//                 with a message; a second call is accepted and both get
//                 media. Each page's peer connection uses the ICE servers
//                 of its join answer (getConfiguration()).
//   controls:     three users in `channel`: a raised hand shows on the
//                 others' tiles and the host lowers it; a reaction shows
//                 on the others' pages; the host makes users[1] host (its
//                 host menus appear); users[2] shares its screen and the
//                 new host stops it; the new host mutes everyone else.
//   reconnect:    users[1]'s page loses its control socket for a few
//                 seconds and comes back into the same session with
//                 media; then its media socket is blocked for good and an
//                 ICE restart brings the media back on another port. The
//                 others never see a second tile for it.
//   devices:      users[1] picks another camera and microphone from the
//                 Devices dialog mid-call (Chromium's fake devices); its
//                 page sends from them and users[0] keeps receiving both.
//   media-blocked: the Rust side blocked UDP to rtcd's port (`blocked`:
//                 "udp"), or UDP and TCP ("udp+tcp"). With UDP only, two
//                 users connect over ICE-TCP and receive each other; with
//                 both, the page says media could not connect.

import { execFileSync } from 'node:child_process';
import { launch, signIn, openChannel, inbound, num, until, sessionOf, hostAction, sleep } from './app.mjs';

function note(msg) {
  process.stderr.write(`calls.mjs: ${msg}\n`);
}

// Every text the page announced to screen readers (the live region),
// recorded from the start: later announcements replace earlier ones.
async function recordAnnouncements(context) {
  await context.addInitScript(() => {
    window.__announced = [];
    document.addEventListener('DOMContentLoaded', () => {
      const el = document.getElementById('announcer');
      if (!el) return;
      new MutationObserver(() => window.__announced.push(el.textContent)).observe(el, { childList: true, characterData: true, subtree: true });
    });
  });
}

async function people(ctx, cfg, viewport = { width: 960, height: 720 }) {
  const browser = await launch(cfg, ctx.args);
  ctx.cleanup.push(() => browser.close());
  const out = [];
  for (const u of cfg.users) out.push(await signIn(browser, cfg, u, { viewport, init: recordAnnouncements }));
  return out;
}

const announced = (p) => p.page.evaluate(() => window.__announced ?? []);

async function openById(p, channelId) {
  await p.page.evaluate((id) => { location.hash = `#/c/${id}`; }, channelId);
  await p.page.waitForFunction((id) => window.enclaveApp?.current === id, channelId, { timeout: 10000 });
}

const others = (cfg, me) => cfg.users.filter((u) => u.id !== me.id);
const flowing = (cfg, me) => (s) => s?.state === 'connected' && others(cfg, me).every((o) => num(s, o.id, 'microphone', 'packets_received') > 0 && num(s, o.id, 'camera', 'frames_decoded') > 0);

// Everyone in `ps` receives everyone else's audio and video.
async function allMedia(cfg, ps, timeout = 30000) {
  for (const [i, p] of ps.entries()) {
    await until(`${p.name} receives the others`, () => inbound(p), flowing(cfg, cfg.users[i]), timeout);
  }
}

// Audio packets and video frames `p` received from `other` over `ms`.
async function growth(p, other, ms = 2000) {
  const a = await inbound(p);
  await sleep(ms);
  const b = await inbound(p);
  return {
    audio_packets: num(b, other.id, 'microphone', 'packets_received') - num(a, other.id, 'microphone', 'packets_received'),
    video_frames: num(b, other.id, 'camera', 'frames_decoded') - num(a, other.id, 'camera', 'frames_decoded'),
  };
}

// Milliseconds until `p` decodes `n` more video frames from `other`
// (after a loss the decoder waits for the next keyframe).
async function videoResumes(p, other, n = 10, timeout = 20000) {
  const t = Date.now();
  const base = num(await inbound(p), other.id, 'camera', 'frames_decoded');
  await until(`${p.name} decodes ${other.username}'s video again`, () => inbound(p), (s) => num(s, other.id, 'camera', 'frames_decoded') >= base + n, timeout);
  return Date.now() - t;
}

// The selected candidate pair of the page's call: protocol and local port.
function selectedPair(p) {
  return p.page.evaluate(async () => {
    const pc = window.enclaveApp.calls.active?.pc;
    if (!pc) return null;
    const r = await pc.getStats();
    let id = null;
    r.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) id = s.selectedCandidatePairId; });
    const pair = id && r.get(id);
    if (!pair) return null;
    const local = r.get(pair.localCandidateId);
    const remote = r.get(pair.remoteCandidateId);
    return { state: pair.state, protocol: local?.protocol ?? null, local_port: local?.port ?? null, remote_port: remote?.port ?? null, remote_protocol: remote?.protocol ?? null };
  });
}

const tileCount = (p, sessionId) => p.page.locator(`#call-area figure.tile[data-session="${sessionId}"]`).count();

async function startCall(p) {
  await p.page.locator('#call-button').click();
  await p.page.locator('#call-area').waitFor({ state: 'visible' });
}

async function joinFromBanner(p) {
  const banner = p.page.locator('.call-banner');
  await banner.waitFor({ timeout: 15000 });
  await banner.getByRole('button', { name: 'Join' }).click();
  await p.page.locator('#call-area').waitFor({ state: 'visible' });
}

export const callScenarios = {
  async ringing(ctx, cfg, result) {
    const [ua, ub] = cfg.users;
    const [a, b] = await people(ctx, cfg);
    ctx.shot = b.page;
    await openById(a, cfg.channel_id);
    // The callee looks at another channel: the ring must reach it anyway.
    await openById(b, cfg.other_channel_id);

    // 1. A calls; B's page rings.
    let t = Date.now();
    await startCall(a);
    const dialog = b.page.getByRole('alertdialog');
    await dialog.waitFor({ timeout: 15000 });
    result.ring_ms = Date.now() - t;
    result.ring_text = (await dialog.textContent())?.trim();
    result.ring_label = await dialog.evaluate((d) => document.getElementById(d.getAttribute('aria-labelledby'))?.textContent ?? null);
    result.ring_buttons = await dialog.getByRole('button').allTextContents();
    result.ring_focus = await b.page.evaluate(() => document.activeElement?.textContent ?? null);
    await until('the ring is announced', () => announced(b), (l) => l.some((x) => /is calling/.test(x)), 5000).catch(() => {});
    result.ring_announced = (await announced(b)).filter((x) => /calling/.test(x));
    // The session opens its devices before its peer connection.
    result.caller_ice_servers = await until('the caller\'s peer connection', () => a.page.evaluate(() => window.enclaveApp.calls.active?.pc?.getConfiguration().iceServers ?? null), (v) => v !== null, 10000);

    // 2. B declines: its ring goes, A's call ends with a message.
    t = Date.now();
    await dialog.getByRole('button', { name: 'Decline' }).click();
    await dialog.waitFor({ state: 'detached', timeout: 5000 });
    await a.page.locator('#call-area').waitFor({ state: 'hidden', timeout: 10000 });
    const declined = a.page.locator('#call-slot .call-ended');
    await declined.waitFor({ timeout: 5000 });
    result.declined_ms = Date.now() - t;
    result.declined_text = (await declined.textContent())?.trim();
    await sleep(1000); // the call's end event must not replace the message
    result.declined_text_later = (await declined.textContent().catch(() => null))?.trim() ?? null;
    result.caller_active_after_decline = await a.page.evaluate(() => window.enclaveApp.calls.active !== null);

    // 3. A calls again; B accepts with the keyboard (Accept has focus).
    await until('the first call ended', () => a.page.evaluate(() => window.enclaveApp.calls.running.size), (n) => n === 0, 10000).catch(() => {});
    await startCall(a);
    await dialog.waitFor({ timeout: 15000 });
    await b.page.keyboard.press('Enter');
    await b.page.locator('#call-area').waitFor({ state: 'visible', timeout: 10000 });
    await dialog.waitFor({ state: 'detached', timeout: 5000 });
    result.same_call = await Promise.all([a, b].map((p) => p.page.evaluate(() => window.enclaveApp.calls.active?.callId)));
    await allMedia(cfg, [a, b]);
    result.media = { [ua.username]: await growth(a, ub), [ub.username]: await growth(b, ua) };
    result.callee_ice_servers = await b.page.evaluate(() => window.enclaveApp.calls.active?.pc?.getConfiguration().iceServers ?? null);
    await a.page.locator('#call-leave').click();
  },

  async controls(ctx, cfg, result) {
    const [ua, ub, uc] = cfg.users;
    const ps = await people(ctx, cfg);
    const [a, b, c] = ps;
    ctx.shot = b.page;
    for (const p of ps) await openChannel(p, cfg.channel);
    await startCall(a);
    await joinFromBanner(b);
    await joinFromBanner(c);
    await allMedia(cfg, ps);
    const bSess = await sessionOf(a, ub.id);
    const cSess = await sessionOf(a, uc.id);
    const tile = (p, s) => p.page.locator(`#call-area figure.tile[data-session="${s}"]`);

    // 1. B raises its hand: A and C see it on B's tile.
    await b.page.locator('#call-hand').click();
    for (const p of [a, c]) await tile(p, bSess).locator('.flag.hand').waitFor({ timeout: 10000 });
    result.hand_raised_pressed = await b.page.locator('#call-hand').getAttribute('aria-pressed');
    result.hand_label = (await tile(c, bSess).locator('.flag.hand').textContent())?.trim();
    // The host lowers it.
    await hostAction(a, bSess, ub.username, 'Lower hand');
    await until('B sees its hand lowered', () => b.page.locator('#call-hand').getAttribute('aria-pressed'), (v) => v === 'false', 10000);
    await tile(c, bSess).locator('.flag.hand').waitFor({ state: 'detached', timeout: 10000 });
    result.hand_lowered = true;
    result.hand_lowered_announced = (await announced(b)).some((x) => /hand is lowered/.test(x));

    // 2. C reacts: the others see it on C's tile.
    await c.page.locator('#call-react').click();
    await c.page.getByRole('menuitem', { name: /clap/ }).click();
    for (const p of [a, b]) {
      const burst = tile(p, cSess).locator('.reaction-burst');
      await burst.waitFor({ timeout: 5000 });
      result[`reaction_at_${p.name}`] = (await burst.textContent())?.trim();
    }
    result.reaction_announced = (await announced(a)).some((x) => x.includes(`${uc.username} reacted clap`));

    // 3. The host makes B a host: B gets the host menus.
    await hostAction(a, bSess, ub.username, 'Make host');
    await b.page.locator('#call-host').waitFor({ timeout: 10000 });
    await tile(b, cSess).getByRole('button', { name: `Host actions for ${uc.username}` }).waitFor({ timeout: 10000 });
    await tile(c, bSess).locator('.flag', { hasText: 'host' }).waitFor({ timeout: 10000 });
    result.new_host_menus = true;

    // 4. C shares its screen; the new host stops it.
    await c.page.locator('#call-screen').click();
    const screenTile = (p) => p.page.locator(`#call-area figure.tile.screen[data-screen-of="${cSess}"]`);
    for (const p of [a, b]) {
      await until(`${p.name} decodes the shared screen`, () => inbound(p), (s) => num(s, uc.id, 'screen_video', 'frames_decoded') > 0, 20000);
      await screenTile(p).waitFor({ timeout: 10000 });
    }
    await hostAction(b, cSess, uc.username, 'Stop screen share');
    for (const p of [a, b, c]) await screenTile(p).waitFor({ state: 'detached', timeout: 10000 });
    await until('C sees its share stopped', () => c.page.locator('#call-screen').getAttribute('aria-pressed'), (v) => v === 'false', 10000);
    result.screen_stopped_local = await c.page.evaluate(() => window.enclaveApp.calls.active.local.screen === null);
    result.screen_stop_announced = (await announced(c)).some((x) => /stopped your screen share/.test(x));

    // 5. The new host mutes everyone else.
    await b.page.locator('#call-host').click();
    await b.page.getByRole('menuitem', { name: 'Mute everyone else' }).click();
    for (const p of [a, c]) {
      await until(`${p.name} is muted`, () => p.page.locator('#call-mute').getAttribute('aria-pressed'), (v) => v === 'true', 10000);
    }
    result.host_b_muted = await b.page.locator('#call-mute').getAttribute('aria-pressed');
    await sleep(1500);
    const silent = await Promise.all([growth(c, ua, 2500), growth(a, ub, 2500)]);
    result.after_mute_all = { c_hears_a: silent[0].audio_packets, a_hears_b: silent[1].audio_packets };
    result.muted_flags = await tile(b, cSess).locator('.flag', { hasText: '🔇' }).count();
  },

  async reconnect(ctx, cfg, result) {
    const [ua, ub] = cfg.users;
    const ps = await people(ctx, cfg);
    const [a, b] = ps;
    ctx.shot = a.page;
    for (const p of ps) await openChannel(p, cfg.channel);
    await startCall(a);
    await joinFromBanner(b);
    await allMedia(cfg, ps);
    const bSess = await b.page.evaluate(() => window.enclaveApp.calls.active.sessionId);

    // 1. B's control socket drops and stays away for a few seconds.
    await b.context.setOffline(true);
    await b.page.evaluate(() => window.enclaveApp.socket.ws.close());
    await b.page.waitForFunction(() => document.getElementById('connection')?.dataset.state !== 'online', null, { timeout: 5000 });
    await sleep(cfg.offline_ms);
    await b.context.setOffline(false);
    const t = Date.now();
    await b.page.waitForFunction(() => document.getElementById('connection')?.dataset.state === 'online', null, { timeout: 20000 });
    result.socket_back_ms = Date.now() - t;
    await allMedia(cfg, ps);
    result.after_socket = {
      session: await b.page.evaluate(() => window.enclaveApp.calls.active?.sessionId ?? null),
      b_hears_a: await growth(b, ua),
      a_hears_b: await growth(a, ub),
      tiles_of_b_at_a: await tileCount(a, bSess),
      sessions_of_b_at_a: await a.page.evaluate((id) => [...window.enclaveApp.calls.active.participants.values()].filter((p) => p.user_id === id).length, ub.id),
    };

    // 2. B's media socket is blocked for good: ICE restart, another port.
    const before = await selectedPair(b);
    result.pair_before = before;
    const table = `enclave_calls_${process.pid}`;
    execFileSync('nft', [`add table inet ${table} ; add chain inet ${table} input { type filter hook input priority 0 ; policy accept ; } ; add rule inet ${table} input udp sport ${before.local_port} counter drop ; add rule inet ${table} input udp dport ${before.local_port} counter drop`]);
    ctx.cleanup.push(() => { try { execFileSync('nft', [`delete table inet ${table}`]); } catch (e) { note(`nft cleanup: ${e.message}`); } });
    const t2 = Date.now();
    await until('B loses its media', () => b.page.evaluate(() => window.enclaveApp.calls.active?.pc?.connectionState), (s) => s !== 'connected', 20000);
    result.media_lost_ms = Date.now() - t2;
    result.lost_text = await b.page.locator('#call-quality').textContent();
    await until('B\'s media comes back', () => selectedPair(b), (p) => p?.state === 'succeeded' && p.local_port !== before.local_port, 40000);
    result.media_back_ms = Date.now() - t2;
    result.video_back_ms = { [a.name]: await videoResumes(a, ub), [b.name]: await videoResumes(b, ua) };
    result.after_restart = {
      pair: await selectedPair(b),
      session: await b.page.evaluate(() => window.enclaveApp.calls.active?.sessionId ?? null),
      b_hears_a: await growth(b, ua),
      a_hears_b: await growth(a, ub),
      tiles_of_b_at_a: await tileCount(a, bSess),
      sessions_of_b_at_a: await a.page.evaluate((id) => [...window.enclaveApp.calls.active.participants.values()].filter((p) => p.user_id === id).length, ub.id),
    };
    result.recoveries = await b.page.evaluate(() => window.enclaveApp.calls.active?.recoveries ?? null);
  },

  async devices(ctx, cfg, result) {
    const [ua] = cfg.users;
    const ps = await people(ctx, cfg);
    const [a, b] = ps;
    ctx.shot = b.page;
    for (const p of ps) await openChannel(p, cfg.channel);
    await startCall(a);
    await joinFromBanner(b);
    await allMedia(cfg, ps);
    const using = () => b.page.evaluate(() => {
      const l = window.enclaveApp.calls.active.local;
      return { camera: l.camera?.getSettings().deviceId ?? null, microphone: l.microphone?.getSettings().deviceId ?? null, mic_enabled: l.microphone?.enabled ?? null };
    });
    result.before = await using();
    await b.page.locator('#call-devices').click();
    await b.page.getByRole('menuitem', { name: /Choose microphone and camera/ }).click();
    const dialog = b.page.getByRole('dialog', { name: 'Devices' });
    await dialog.waitFor({ timeout: 5000 });
    result.focus_in_dialog = await b.page.evaluate(() => document.activeElement?.id ?? null);
    for (const [kind, label] of [['camera', 'Camera'], ['microphone', 'Microphone']]) {
      const select = dialog.getByLabel(label, { exact: true });
      const options = await select.locator('option').evaluateAll((os) => os.map((o) => ({ value: o.value, label: o.textContent })));
      result[`${kind}_options`] = options.map((o) => o.label);
      // The last one: Chromium's second fake camera is a depth camera
      // (Y16) that sends no video; its third is an ordinary one.
      const next = options.reverse().find((o) => o.value !== result.before[kind]);
      if (!next) throw new Error(`only one ${kind} to choose from: ${JSON.stringify(options)}`);
      await select.selectOption(next.value);
      await until(`the page sends from the other ${kind}`, using, (u) => u[kind] === next.value, 10000);
    }
    result.after = await using();
    await dialog.getByRole('button', { name: 'Done' }).click();
    await dialog.waitFor({ state: 'detached', timeout: 5000 });
    result.focus_after_done = await b.page.evaluate(() => document.activeElement?.id ?? null);
    // What the switched page sends (to tell a sender that stopped from
    // a receiver that cannot decode).
    const sent = () => b.page.evaluate(async () => {
      const a = window.enclaveApp.calls.active;
      const r = await a.pc.getStats();
      let out = null;
      r.forEach((s) => { if (s.type === 'outbound-rtp' && s.kind === 'video' && s.mid === a.senders.camera.mid) out = { packets_sent: s.packetsSent, frames_encoded: s.framesEncoded, frame_width: s.frameWidth ?? null, limitation: s.qualityLimitationReason ?? null }; });
      const t = a.senders.camera.sender.track;
      return { out, track: t ? { state: t.readyState, enabled: t.enabled, muted: t.muted, settings: t.getSettings() } : null };
    });
    result.sent_after_switch = [await sent()];
    await sleep(2000);
    result.sent_after_switch.push(await sent());
    result.video_back_ms = await videoResumes(a, cfg.users[1]);
    result.media = { [a.name]: await growth(a, cfg.users[1]), [b.name]: await growth(b, ua) };
  },

  async 'media-blocked'(ctx, cfg, result) {
    const ps = await people(ctx, cfg);
    const [a] = ps;
    ctx.shot = a.page;
    for (const p of ps) await openChannel(p, cfg.channel);
    const t = Date.now();
    await startCall(a);
    for (const p of ps.slice(1)) await joinFromBanner(p);
    if (cfg.blocked === 'udp') {
      await allMedia(cfg, ps, 60000);
      result.connected_ms = Date.now() - t;
      result.pairs = await Promise.all(ps.map(selectedPair));
      result.media = await growth(ps[1], cfg.users[0]);
      await until('the page says TCP', () => a.page.locator('#call-quality').textContent(), (x) => /over TCP/.test(x ?? ''), 10000).catch(() => {});
      result.quality_text = await a.page.locator('#call-quality').textContent();
    } else {
      const failure = a.page.locator('#call-area .call-failure');
      await failure.waitFor({ state: 'visible', timeout: cfg.fail_timeout_ms });
      result.failed_ms = Date.now() - t;
      result.failure_role = await failure.getAttribute('role');
      result.failure_text = (await failure.textContent())?.trim();
      result.connection = await a.page.evaluate(() => window.enclaveApp.calls.active?.pc?.connectionState);
      result.pairs = await Promise.all(ps.map(selectedPair));
    }
  },
};
