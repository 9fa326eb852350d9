// Scenarios that drive Enclave's own web client (served by control at
// `base`) with one browser context per user, so each has its own cookies,
// as separate people on separate machines would. run.mjs dispatches here.
//
//   chat: users[0] and users[1] sign in through the login page; users[1]
//         watches another channel while users[0] posts (unread badge), then
//         opens the channel at 320 px wide and sees the next post live,
//         replies in its thread and reacts; users[0] sees both live.
//   call: users[0] starts a call in `channel`, users[1] and users[2] join
//         from the banner; every page must receive the others' audio and
//         video; the host mutes users[1] (the others stop receiving its
//         audio), users[2] shares its screen (the others decode it), the
//         host removes users[2] (who cannot rejoin) and ends the call; the
//         call's post then shows the duration.

import { chromium } from 'playwright-core';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function note(msg) {
  process.stderr.write(`app.mjs: ${msg}\n`);
}

export async function launch(cfg, args) {
  return chromium.launch({ executablePath: cfg.chromium, headless: true, args: [...args, ...cfg.chromium_args] });
}

// A signed-in user: a context of its own, the page, and its console in the log.
// `init(context)` runs before the first page opens (init scripts).
export async function signIn(browser, cfg, user, { viewport = { width: 1100, height: 700 }, init = null } = {}) {
  const context = await browser.newContext({ viewport, permissions: ['microphone', 'camera'] });
  if (init) await init(context);
  const page = await context.newPage();
  const name = user.username;
  page.on('console', (m) => process.stderr.write(`[${name}] ${m.type()}: ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`[${name}] pageerror: ${e.message}\n`));
  page.on('requestfailed', (r) => process.stderr.write(`[${name}] request failed: ${r.method()} ${r.url()}: ${r.failure()?.errorText}\n`));
  await page.goto(`${cfg.base}/`);
  await page.getByLabel('Username').fill(user.username);
  await page.getByLabel('Password').fill(user.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#channel-title').waitFor({ timeout: 15000 });
  await page.waitForFunction(() => document.getElementById('connection')?.dataset.state === 'online', null, { timeout: 15000 });
  return { page, context, name };
}

// Opens a channel through the sidebar, as a person would (through the
// menu button when the layout is narrow).
export async function openChannel(u, label) {
  const toggle = u.page.getByRole('button', { name: 'Show channels' });
  if (await toggle.isVisible()) await toggle.click();
  await u.page.locator('#sidebar').getByRole('link', { name: new RegExp(`^\\W*${label}\\b`) }).click();
  await u.page.locator('#channel-title', { hasText: label }).waitFor({ timeout: 10000 });
}

async function post(u, text, where = '#message-input') {
  const input = u.page.locator(where);
  await input.fill(text);
  await input.press('Enter');
}

// Milliseconds until `locator` is visible on `page`, from `since`.
async function seen(locator, since, timeout = 10000) {
  await locator.waitFor({ state: 'visible', timeout });
  return Date.now() - since;
}

export const appScenarios = {
  async chat(ctx, cfg, result) {
    const [ua, ub] = cfg.users;
    const browser = await launch(cfg, ctx.args);
    ctx.cleanup.push(() => browser.close());
    const a = await signIn(browser, cfg, ua);
    // users[1] is a Teams side panel: 320 px wide.
    const b = await signIn(browser, cfg, ub, { viewport: { width: 320, height: 640 } });
    ctx.shot = b.page;
    result.narrow_sidebar_hidden = !(await b.page.locator('#sidebar').isVisible() && (await b.page.locator('#sidebar').boundingBox())?.x >= 0);

    await openChannel(a, cfg.channel);
    await openChannel(b, cfg.other_channel);

    // 1. A post while the other user looks elsewhere: an unread badge.
    const first = `first from ${ua.username} ${Date.now()}`;
    let t = Date.now();
    await post(a, first);
    await a.page.locator('.post .message', { hasText: first }).waitFor();
    const badge = b.page.locator(`[data-unread="${cfg.channel_id}"]`);
    result.badge_ms = await seen(badge, t).catch(() => null);
    if (result.badge_ms === null) {
      // In the narrow layout the sidebar is off-screen: count, not visibility.
      await badge.waitFor({ state: 'attached', timeout: 10000 });
      result.badge_ms = Date.now() - t;
    }
    result.badge_text = (await badge.textContent())?.trim() ?? null;

    // 2. The other user opens the channel: the post is there, the badge goes.
    await openChannel(b, cfg.channel);
    result.first_shown = await b.page.locator('.post .message', { hasText: first }).waitFor({ timeout: 5000 }).then(() => true, () => false);
    await badge.waitFor({ state: 'detached', timeout: 10000 });
    result.badge_cleared = true;

    // 3. Live: a post appears without a reload.
    const second = `live from ${ua.username} ${Date.now()}`;
    t = Date.now();
    await post(a, second);
    result.live_post_ms = await seen(b.page.locator('.post .message', { hasText: second }), t);

    // 4. A thread reply, from the narrow page.
    const root = b.page.locator('#main .post', { hasText: second });
    await root.getByRole('button', { name: 'Reply' }).click();
    await b.page.locator('#thread-input').waitFor();
    const reply = `reply from ${ub.username} ${Date.now()}`;
    t = Date.now();
    await post(b, reply, '#thread-input');
    await b.page.locator('#thread .post .message', { hasText: reply }).waitFor();
    const aRoot = a.page.locator('#main .post', { hasText: second });
    result.reply_count_ms = await seen(aRoot.getByRole('button', { name: '1 reply' }), t);
    await aRoot.getByRole('button', { name: '1 reply' }).click();
    result.reply_in_thread = await seen(a.page.locator('#thread .post .message', { hasText: reply }), t);
    // Escape closes the thread (keyboard).
    await b.page.keyboard.press('Escape');
    await b.page.locator('#thread').waitFor({ state: 'hidden' });
    result.thread_closed_by_escape = true;

    // 5. A reaction, chosen from the menu with the keyboard.
    const bRoot = b.page.locator('#main .post', { hasText: second });
    await bRoot.getByRole('button', { name: 'Add a reaction' }).focus();
    await b.page.keyboard.press('Enter');
    await bRoot.getByRole('menuitem', { name: /\+1/ }).waitFor();
    t = Date.now();
    await b.page.keyboard.press('Enter');
    const aReaction = aRoot.locator('.reaction[data-emoji="+1"]');
    result.reaction_ms = await seen(aReaction, t);
    result.reaction_text = (await aReaction.textContent())?.trim();
    result.reaction_label = await aReaction.getAttribute('aria-label');

    // 6. What the page sent: the security headers, as the browser got them.
    const resp = await a.page.request.get(`${cfg.base}/app/app.js`);
    result.headers = resp.headers();
  },
};

// What a page receives in its call, per remote user id and source
// (inbound-rtp numbers), plus its own session and connection state.
export async function inbound(u) {
  return u.page.evaluate(async () => {
    const a = window.enclaveApp.calls.active;
    // Not yet connecting: the session opens its devices before its peer connection.
    if (!a?.pc) return null;
    const bySession = await a.inbound();
    const users = {};
    for (const [sess, v] of Object.entries(bySession)) {
      const p = a.participants.get(sess);
      users[p ? p.user_id : sess] = v;
    }
    return { session: a.sessionId, state: a.pc?.connectionState ?? null, users };
  });
}

export const num = (s, user, source, field) => s?.users?.[user]?.[source]?.[field] ?? 0;

// Polls until `ok(value)` holds; the last value is in the error.
export async function until(what, f, ok, timeout = 20000) {
  const end = Date.now() + timeout;
  let v;
  for (;;) {
    v = await f();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`${what}: not reached in ${timeout} ms; last ${JSON.stringify(v)}`);
    await sleep(250);
  }
}

export async function sessionOf(u, userId) {
  return u.page.evaluate((id) => {
    const a = window.enclaveApp.calls.active;
    return [...(a?.participants.values() ?? [])].find((p) => p.user_id === id)?.session_id ?? null;
  }, userId);
}

export async function hostAction(host, session, name, action) {
  const tile = host.page.locator(`#call-area figure.tile[data-session="${session}"]`);
  await tile.getByRole('button', { name: `Host actions for ${name}` }).click();
  await tile.getByRole('menuitem', { name: action }).click();
}

appScenarios.call = async function call(ctx, cfg, result) {
  const [ua, ub, uc] = cfg.users;
  const browser = await launch(cfg, ctx.args);
  ctx.cleanup.push(() => browser.close());
  const people = [];
  for (const u of cfg.users) people.push(await signIn(browser, cfg, u, { viewport: { width: 960, height: 720 } }));
  const [a, b, c] = people;
  for (const p of people) await openChannel(p, cfg.channel);
  const T0 = Date.now();

  // 1. The host starts the call; the others join from the banner.
  await a.page.locator('#call-button').click();
  await a.page.locator('#call-area').waitFor({ state: 'visible' });
  for (const p of [b, c]) {
    const banner = p.page.locator('.call-banner');
    await banner.waitFor({ timeout: 15000 });
    await banner.getByRole('button', { name: 'Join' }).click();
    await p.page.locator('#call-area').waitFor({ state: 'visible' });
  }
  result.post_id = await a.page.evaluate(() => window.enclaveApp.calls.active?.postId ?? null);

  // 2. Everyone receives everyone else's audio and video.
  const others = (me) => cfg.users.filter((u) => u.id !== me.id);
  const flowing = (me) => (s) => others(me).every((o) => num(s, o.id, 'microphone', 'packets_received') > 0 && num(s, o.id, 'camera', 'frames_decoded') > 0);
  for (const [i, p] of people.entries()) {
    try {
      await until(`${p.name} receives the others`, () => inbound(p), flowing(cfg.users[i]), 30000);
    } catch (e) {
      result.negotiation = await Promise.all(people.map((q) => q.page.evaluate(() => window.enclaveApp.calls.active?.describe())));
      result.inbound_at_failure = await Promise.all(people.map(inbound));
      throw e;
    }
  }
  result.all_media_ms = Date.now() - T0;
  const first = await Promise.all(people.map(inbound));
  await sleep(cfg.sample_seconds * 1000);
  const second = await Promise.all(people.map(inbound));
  result.growth = {};
  for (const [i, p] of people.entries()) {
    result.growth[p.name] = {};
    for (const o of others(cfg.users[i])) {
      result.growth[p.name][o.username] = {
        audio_packets: num(second[i], o.id, 'microphone', 'packets_received') - num(first[i], o.id, 'microphone', 'packets_received'),
        video_frames: num(second[i], o.id, 'camera', 'frames_decoded') - num(first[i], o.id, 'camera', 'frames_decoded'),
      };
    }
  }
  result.connection = second.map((s) => s?.state);
  result.quality = await a.page.locator('#call-quality').textContent();
  if (cfg.screenshot) {
    await a.page.screenshot({ path: cfg.screenshot });
    result.screenshot = cfg.screenshot;
    // run.mjs would overwrite it with the page at the end, after the call.
    ctx.shot = null;
  }

  // 3. The host mutes users[1]: the others stop receiving its audio
  //    (rtcd drops it, whatever the muted browser still sends).
  const bSess = await sessionOf(a, ub.id);
  const cSess = await sessionOf(a, uc.id);
  await hostAction(a, bSess, ub.username, 'Mute');
  await until('users[1] sees itself muted', () => b.page.locator('#call-mute').getAttribute('aria-pressed'), (v) => v === 'true', 10000);
  await sleep(1500);
  const m1 = await Promise.all([inbound(a), inbound(c)]);
  await sleep(2500);
  const m2 = await Promise.all([inbound(a), inbound(c)]);
  result.after_mute = {
    host_hears_muted: num(m2[0], ub.id, 'microphone', 'packets_received') - num(m1[0], ub.id, 'microphone', 'packets_received'),
    other_hears_muted: num(m2[1], ub.id, 'microphone', 'packets_received') - num(m1[1], ub.id, 'microphone', 'packets_received'),
    other_hears_host: num(m2[1], ua.id, 'microphone', 'packets_received') - num(m1[1], ua.id, 'microphone', 'packets_received'),
  };

  // 4. users[2] shares its screen; the others see it.
  await c.page.locator('#call-screen').click();
  const screenTile = (p) => p.page.locator(`#call-area figure.tile.screen[data-screen-of="${cSess}"]`);
  for (const [p, u] of [[a, ua], [b, ub]]) {
    await until(`${p.name} decodes the shared screen`, () => inbound(p), (s) => num(s, uc.id, 'screen_video', 'frames_decoded') > 0, 20000);
    await screenTile(p).waitFor({ timeout: 10000 });
    void u;
  }
  const s1 = await inbound(b);
  await sleep(2000);
  const s2 = await inbound(b);
  result.screen_frames = num(s2, uc.id, 'screen_video', 'frames_decoded') - num(s1, uc.id, 'screen_video', 'frames_decoded');
  result.screen_width = s2?.users?.[uc.id]?.screen_video?.frame_width ?? null;

  // 5. The host removes users[2]; it cannot come back.
  await hostAction(a, cSess, uc.username, 'Remove from call');
  await c.page.locator('#call-area').waitFor({ state: 'hidden', timeout: 10000 });
  result.removed_notice = (await c.page.locator('#call-slot').textContent())?.trim();
  await a.page.locator(`#call-area figure.tile[data-session="${cSess}"]`).waitFor({ state: 'detached', timeout: 10000 });
  await b.page.locator(`#call-area figure.tile[data-session="${cSess}"]`).waitFor({ state: 'detached', timeout: 10000 });
  await c.page.locator('.call-banner').getByRole('button', { name: 'Join' }).click();
  await sleep(1000);
  result.rejoin_notice = (await c.page.locator('#call-slot').textContent())?.trim();
  result.rejoined = await c.page.evaluate(() => window.enclaveApp.calls.active !== null);

  // 6. The host ends the call for all; the call's post shows how long it ran.
  await a.page.locator('#call-host').click();
  await a.page.getByRole('menuitem', { name: 'End call for all' }).click();
  for (const p of [a, b]) await p.page.locator('#call-area').waitFor({ state: 'hidden', timeout: 10000 });
  result.ended_notice = (await b.page.locator('#call-slot').textContent())?.trim();
  if (result.post_id) {
    const postEl = b.page.locator(`#post-${result.post_id} .message`);
    await sleep(1000);
    result.call_post_text = (await postEl.textContent().catch(() => null))?.trim() ?? null;
  }
  result.call_ms = Date.now() - T0;
};
