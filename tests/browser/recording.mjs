// Scenarios for recordings in the web client (run.mjs dispatches here):
//
//   review:    users[0] uploads `media` (a WebM) and `vtt` (two cues) in a
//              post through the composer, opens it in the reviewer from the
//              post's "Review" action, checks the player and the cue list,
//              clicks the second cue; then searches for `query` (a line of a
//              transcript the recorder posted in that post's thread) and
//              opens the hit, which must open the reviewer at that line.
//              The page's own VTT parser and transcript-line reader are
//              checked in the page too (imported as the client does).
//   recording: users[0] starts a call, users[1] joins. The host's Record
//              and Captions are refused (no offloader here). The recorder
//              joining and leaving (call_joined / call_left with a bot
//              participant) and two live captions (call_caption) go in
//              through each page's socket handler, as control would send
//              them: both pages show the recording indicator and no tile
//              for the bot; the captions show named and in order until
//              they fade; the indicator goes when the bot leaves.

import { launch, signIn, openChannel } from './app.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function note(msg) {
  process.stderr.write(`recording.mjs: ${msg}\n`);
}

async function post(u, text) {
  const input = u.page.locator('#message-input');
  await input.fill(text);
  await input.press('Enter');
}

// The page's modules, run in the page: the parser the reviewer uses.
async function moduleChecks(page) {
  return page.evaluate(async () => {
    const { parseVtt, cueAt, VttError } = await import('/app/vtt.js');
    const { transcriptLines, lineFor } = await import('/app/review.js');
    const out = {};
    const cues = parseVtt('WEBVTT\n\nintro\n00:00:01.000 --> 00:00:02.500 align:start\n<v Ana Lima>Good &amp; <i>early</i>\n\nNOTE skipped\n\n01:02.250 --> 01:03.000\n<v.loud Ben>Two\nlines\n');
    out.cues = cues;
    out.cue_at = [cueAt(cues, 1.2), cueAt(cues, 2.6), cueAt(cues, 62.5)];
    const refused = (src) => { try { parseVtt(src); return null; } catch (e) { return e instanceof VttError ? e.message : `other: ${e}`; } };
    out.errors = {
      no_header: refused('1\n00:00:01.000 --> 00:00:02.000\nhi'),
      bad_time: refused('WEBVTT\n\n00:00:61.000 --> 00:01:02.000\nhi'),
      backwards: refused('WEBVTT\n\n00:00:05.000 --> 00:00:02.000\nhi'),
      no_timing: refused('WEBVTT\n\njust text\nmore'),
    };
    out.lines = transcriptLines('Transcript\n[00:00:03] Ana: hello there\n[01:02:05] Ben Ito: fine: thanks\nnot a line');
    out.line_for = lineFor('[00:00:01] Ana: hello\n[00:00:04] Ben: the budget', 'budget');
    return out;
  });
}

export const recordingScenarios = {
  async review(ctx, cfg, result) {
    const browser = await launch(cfg, ctx.args);
    ctx.cleanup.push(() => browser.close());
    const a = await signIn(browser, cfg, cfg.users[0], { viewport: { width: 1100, height: 700 } });
    ctx.shot = a.page;
    await openChannel(a, cfg.channel);
    result.modules = await moduleChecks(a.page);

    // 1. Upload the recording and its captions in one post.
    await a.page.locator('#message-input-files').setInputFiles([cfg.media, cfg.vtt]);
    const text = `Review me ${Date.now()}`;
    await post(a, text);
    const mine = a.page.locator('#main .post', { hasText: text });
    await mine.getByRole('link', { name: /Review/ }).waitFor({ timeout: 15000 });
    result.post_id = await mine.getAttribute('data-post');

    // 2. The reviewer: a player with a duration, the cues beside it.
    await mine.getByRole('link', { name: /Review/ }).click();
    const player = a.page.locator('#review-player');
    await player.waitFor({ timeout: 10000 });
    await a.page.waitForFunction(() => {
      const p = document.getElementById('review-player');
      return p && Number.isFinite(p.duration) && p.duration > 0;
    }, null, { timeout: 15000 });
    result.hash = await a.page.evaluate(() => location.hash);
    result.duration = await player.evaluate((p) => p.duration);
    result.player_tag = await player.evaluate((p) => p.tagName.toLowerCase());
    result.track = await player.evaluate((p) => {
      const t = p.querySelector('track');
      return t && { kind: t.kind, ready_state: t.readyState, cues: p.textTracks[0]?.cues?.length ?? null };
    });
    const cues = a.page.locator('#review-cues .cue');
    result.cues = await cues.evaluateAll((bs) => bs.map((b) => ({ start: Number(b.dataset.start), text: b.textContent })));

    // 3. The second cue seeks there; it is highlighted while it plays.
    const second = cues.nth(1);
    await second.click();
    result.after_click = await player.evaluate((p) => p.currentTime);
    result.second_start = Number(await second.getAttribute('data-start'));
    result.highlighted = await a.page.waitForFunction(() => document.querySelector('#review-cues .cue[aria-current="true"]')?.dataset.index ?? false, null, { timeout: 8000 })
      .then((h) => h.jsonValue(), () => null);
    if (cfg.screenshot) {
      await a.page.screenshot({ path: cfg.screenshot });
      result.screenshot = cfg.screenshot;
      ctx.shot = null;
    }
    await player.evaluate((p) => p.pause());

    // 4. A transcript's line found by search opens the recording there.
    await openChannel(a, cfg.channel);
    await a.page.locator('#search').fill(cfg.query);
    await a.page.locator('#search').press('Enter');
    const hit = a.page.locator('.result a.at-time');
    await hit.first().waitFor({ timeout: 15000 });
    result.hit_text = await hit.first().textContent();
    await hit.first().click();
    await a.page.waitForFunction(() => {
      const p = document.getElementById('review-player');
      return p && p.readyState >= 1 && p.currentTime > 0;
    }, null, { timeout: 15000 });
    result.search_hash = await a.page.evaluate(() => location.hash);
    result.search_time = await player.evaluate((p) => p.currentTime);
    result.search_src = await player.evaluate((p) => p.getAttribute('src'));
    result.first_src = `/api/v1/files/${await a.page.evaluate(async (id) => {
      const r = await fetch(`/api/v1/posts/${id}`);
      const p = await r.json();
      return p.files.find((f) => /\.webm$/.test(f.name))?.id;
    }, result.post_id)}`;
  },

  async recording(ctx, cfg, result) {
    const [ua, ub] = cfg.users;
    const browser = await launch(cfg, ctx.args);
    ctx.cleanup.push(() => browser.close());
    const a = await signIn(browser, cfg, ua, { viewport: { width: 960, height: 720 } });
    const b = await signIn(browser, cfg, ub, { viewport: { width: 960, height: 720 } });
    ctx.shot = a.page;
    const people = [a, b];
    for (const p of people) await openChannel(p, cfg.channel);

    // 1. A call of two; only the host has the recording controls.
    await a.page.locator('#call-button').click();
    await a.page.locator('#call-area').waitFor({ state: 'visible' });
    const banner = b.page.locator('.call-banner');
    await banner.waitFor({ timeout: 15000 });
    await banner.getByRole('button', { name: 'Join' }).click();
    await b.page.locator('#call-area').waitFor({ state: 'visible' });
    await a.page.locator('#call-record').waitFor({ timeout: 10000 });
    result.guest_has_record = await b.page.locator('#call-record').count() > 0;
    await a.page.waitForFunction((uid) => [...window.enclaveApp.calls.active.participants.values()].some((x) => x.user_id === uid), ub.id, { timeout: 10000 });
    const call = await a.page.evaluate((uid) => {
      const s = window.enclaveApp.calls.active;
      const of = (id) => [...s.participants.values()].find((x) => x.user_id === id)?.session_id;
      return { id: s.callId, channel: s.channelId, host: of(s.app.me.id), guest: of(uid) };
    }, ub.id);

    // 2. Record, with no offloader configured: refused, said so.
    await a.page.locator('#call-record').click();
    await a.page.locator('#call-notice', { hasText: 'Recording' }).waitFor({ timeout: 10000 });
    result.record_refused = (await a.page.locator('#call-notice').textContent())?.trim();
    result.record_pressed_after_refusal = await a.page.locator('#call-record').getAttribute('aria-pressed');

    // 3. The recorder joins: with `bot_token`, through control's bot route
    //    (control made the job); without, as control announces it, into
    //    each page's socket handler.
    const bot = { session_id: 'test-recorder-session', user_id: 'calls-recorder', joined_at: Date.now(), bot: true, connected: true };
    const event = (p, ev) => p.page.evaluate((e) => window.enclaveApp.socket.onEvent(e), ev);
    const asBot = (path, body) => fetch(`${cfg.base}/api/v1/calls/${call.id}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${cfg.bot_token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body ?? {}),
    });
    if (cfg.bot_token) {
      for (const end = Date.now() + 15000; ;) {
        const r = await asBot('/bot');
        if (r.ok) {
          bot.session_id = (await r.json()).session_id;
          break;
        }
        if (Date.now() > end) throw new Error(`the bot could not join: ${r.status} ${await r.text()}`);
        await sleep(300);
      }
    } else {
      for (const p of people) await event(p, { type: 'call_joined', call_id: call.id, channel_id: call.channel, participant: bot });
    }
    for (const p of people) await p.page.locator('#call-recording').waitFor({ state: 'visible', timeout: 10000 });
    result.recording_shown = true;
    await sleep(500);
    result.bot_tiles = 0;
    result.tiles = {};
    for (const p of people) {
      result.bot_tiles += await p.page.locator(`#call-area figure.tile[data-session="${bot.session_id}"]`).count();
      result.tiles[p.name] = await p.page.locator('#call-area figure.tile').count();
    }
    result.record_button_text = (await a.page.locator('#call-record').textContent())?.trim();

    // 4. Two live captions, as WebSocket messages into the page's socket:
    //    the guest's, then the host's; shown named, newest last.
    const caption = (sess, uid, text, start) => ({ type: 'call_caption', call_id: call.id, session_id: sess, user_id: uid, start_ms: start, end_ms: start + 1400, text });
    const t0 = Date.now();
    for (const m of [caption(call.guest, ub.id, 'caption one from ben', 1000), caption(call.host, ua.id, 'caption two from ana', 2600)]) {
      if (cfg.bot_token) {
        const r = await asBot('/captions', { session_id: m.session_id, start_ms: m.start_ms, end_ms: m.end_ms, text: m.text });
        if (r.status !== 202) throw new Error(`caption refused: ${r.status} ${await r.text()}`);
      } else {
        for (const p of people) await p.page.evaluate((data) => window.enclaveApp.socket.ws.onmessage({ data }), JSON.stringify(m));
      }
    }
    // A caption of another call is not shown.
    await a.page.evaluate((data) => window.enclaveApp.socket.ws.onmessage({ data }), JSON.stringify({ ...caption(call.host, ua.id, 'not this call', 0), call_id: 'another-call' }));
    const lines = a.page.locator('#call-captions .caption-line');
    await a.page.waitForFunction(() => [...document.querySelectorAll('#call-captions .caption-line .speaker')].filter((s) => s.textContent).length === 2, null, { timeout: 10000 });
    result.captions_ms = Date.now() - t0;
    result.caption_lines = await lines.allTextContents();
    // The guest's page gets the same captions over its own socket, maybe
    // a moment later: wait for both there too.
    await b.page.waitForFunction(() => document.querySelectorAll('#call-captions .caption-line').length >= 2, null, { timeout: 10000 })
      .catch(() => {});
    result.guest_caption_lines = await b.page.locator('#call-captions .caption-line').allTextContents();
    if (cfg.screenshot) {
      await a.page.screenshot({ path: cfg.screenshot });
      result.screenshot = cfg.screenshot;
      ctx.shot = null;
    }
    await a.page.locator('#call-captions').waitFor({ state: 'hidden', timeout: 15000 });
    result.captions_gone_ms = Date.now() - t0;

    // 5. The recorder leaves (the host's Stop recording, through control,
    //    or as announced): the indicator goes, Record is offered again.
    if (cfg.bot_token) await a.page.locator('#call-record').click();
    else for (const p of people) await event(p, { type: 'call_left', call_id: call.id, channel_id: call.channel, session_id: bot.session_id, reason: 'left' });
    for (const p of people) await p.page.locator('#call-recording').waitFor({ state: 'hidden', timeout: 10000 });
    result.recording_hidden = true;
    result.record_after_stop = (await a.page.locator('#call-record').textContent())?.trim();

    // 6. Captions on, with no offloader: refused, said so.
    await a.page.locator('#call-captions-toggle').click();
    await a.page.locator('#call-notice', { hasText: 'Captions' }).waitFor({ timeout: 10000 });
    result.captions_refused = (await a.page.locator('#call-notice').textContent())?.trim();
  },
};
