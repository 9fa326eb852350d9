// Scenarios on the web client's ways into conversations: making and
// joining channels, direct and group messages found by people's names,
// files and search. One browser context per user (own cookies); run.mjs
// dispatches here. Every step goes through the page as a person would:
// the keyboard where a person could use it, the 320 px layout for one user.
//
//   chat-channels: users[0] creates a public channel from the keyboard,
//       is refused a second one of the same name, users[1] (320 px) finds
//       it in Browse, joins, and they talk (an @mention completed from
//       the keyboard included); users[0] makes a private
//       channel and adds users[1] with the people picker; users[1] leaves
//       the public channel and finds it in Browse again.
//   chat-direct: users[0] starts a direct message with users[1] by typing
//       part of their display name (`search_b`), users[1] (320 px) gets the
//       unread badge and replies; users[0] starts a group message with
//       users[1] and users[2] (`search_c`), users[2] replies, both see it.
//   chat-files: users[0] attaches a PNG and sends it; users[1] sees the
//       thumbnail and downloads the file (same bytes); users[1] searches for
//       `query` and jumps to the post `post_id` in `jump_channel`.
//   chat-posts: in `channel`, users[0] edits a post from the keyboard
//       (Escape cancels once, then Enter saves) and deletes another after
//       confirming; users[1] sees the edit, marked "(edited)", and the
//       deleted post go, live. users[1] opens `history` (more posts than a
//       page), scrolls up and uses "Load older messages" from the keyboard
//       until `first_text` shows; the post at the top stays where it was.

import { readFile } from 'node:fs/promises';
import zlib from 'node:zlib';
import { launch, signIn, openChannel } from './app.mjs';

function note(msg) {
  process.stderr.write(`chat.mjs: ${msg}\n`);
}

async function send(u, text) {
  const input = u.page.locator('#message-input');
  await input.fill(text);
  await input.press('Enter');
}

// Milliseconds until `locator` is visible, from `since`.
async function seen(locator, since, timeout = 10000) {
  await locator.waitFor({ state: 'visible', timeout });
  return Date.now() - since;
}

// The narrow layout hides the sidebar behind its menu button.
async function showSidebar(u) {
  const toggle = u.page.getByRole('button', { name: 'Show channels' });
  if (await toggle.isVisible() && await toggle.getAttribute('aria-expanded') !== 'true') {
    await toggle.click();
    // It slides in: wait until it is all on screen.
    await u.page.waitForFunction(() => document.getElementById('sidebar').getBoundingClientRect().left >= 0);
  }
}

// Whether the element lies within the viewport's width (nothing cut off
// or scrolled sideways at 320 px).
async function fits(locator) {
  return locator.evaluate((el) => {
    const r = el.getBoundingClientRect();
    return r.left >= 0 && r.right <= window.innerWidth + 0.5 && document.documentElement.scrollWidth <= window.innerWidth;
  });
}

// Types into the people picker, waits for `name` among the options and
// picks it with the keyboard (arrows to it, Enter).
async function pickPerson(page, dialog, typed, name) {
  const input = dialog.getByRole('combobox');
  await input.focus();
  await input.pressSequentially(typed, { delay: 30 });
  const option = dialog.getByRole('option', { name: new RegExp(name) });
  await option.waitFor({ timeout: 10000 });
  const options = await dialog.getByRole('option').allTextContents();
  const index = options.findIndex((t) => t.includes(name));
  for (let i = 0; i < index; i++) await input.press('ArrowDown');
  await input.press('Enter');
  await dialog.getByRole('button', { name: new RegExp(`^Remove ${name}`) }).waitFor();
  return options;
}

// The sidebar entry whose label starts with `label`.
function sidebarLink(u, label) {
  return u.page.locator('#sidebar a.channel', { has: u.page.locator('.channel-name', { hasText: label }) });
}

export const chatScenarios = {
  async 'chat-channels'(ctx, cfg, result) {
    const [ua, ub] = cfg.users;
    const browser = await launch(cfg, ctx.args);
    ctx.cleanup.push(() => browser.close());
    const a = await signIn(browser, cfg, ua);
    const b = await signIn(browser, cfg, ub, { viewport: { width: 320, height: 640 } });
    ctx.shot = b.page;

    // 1. A creates a public channel with the keyboard only.
    await a.page.locator('#create-channel').focus();
    await a.page.keyboard.press('Enter');
    const create = a.page.locator('#create-dialog');
    await create.waitFor();
    result.create_focus = await a.page.evaluate(() => document.activeElement?.id);
    await a.page.keyboard.type(cfg.channel_title);
    result.slug = await a.page.getByLabel('Address').inputValue();
    result.public_by_default = await create.getByRole('radio', { name: /Public/ }).isChecked();
    let t = Date.now();
    await a.page.keyboard.press('Enter');
    await a.page.locator('#channel-title', { hasText: cfg.channel_title }).waitFor({ timeout: 10000 });
    result.create_ms = Date.now() - t;
    result.create_dialog_closed = await create.count() === 0;
    result.created_in_sidebar = await sidebarLink(a, cfg.channel_title).count() === 1;

    // 2. The same name again: refused, said in the dialog, which stays.
    await a.page.locator('#create-channel').click();
    await create.waitFor();
    await a.page.getByLabel('Name', { exact: true }).fill(cfg.channel_title);
    await create.getByRole('button', { name: 'Create' }).click();
    const refusal = create.getByRole('alert');
    await refusal.filter({ hasText: /\S/ }).waitFor({ timeout: 10000 });
    result.name_taken_message = (await refusal.textContent()).trim();
    result.name_taken_focus = await a.page.evaluate(() => document.activeElement?.id);
    await a.page.keyboard.press('Escape');
    await create.waitFor({ state: 'detached' });
    result.escape_closes_dialog = true;

    // 3. B, 320 px wide, finds it in Browse and joins.
    await showSidebar(b);
    await b.page.locator('#browse-channels').click();
    const browse = b.page.locator('#browse-dialog');
    await browse.waitFor();
    result.narrow_dialog_fits = await fits(browse);
    await b.page.getByLabel('Find a channel').fill(cfg.channel_title.split(' ')[0].toLowerCase());
    const join = browse.getByRole('button', { name: `Join ${cfg.channel_title}` });
    await join.waitFor({ timeout: 10000 });
    result.browse_listed = await browse.locator('.browse-item').allTextContents();
    t = Date.now();
    await join.click();
    await b.page.locator('#channel-title', { hasText: cfg.channel_title }).waitFor({ timeout: 10000 });
    result.join_ms = Date.now() - t;
    result.narrow_sidebar_closed_after_join = !(await b.page.evaluate(() => document.body.classList.contains('nav-open')));

    // 4. They talk.
    const hello = `hello from ${ua.username} ${Date.now()}`;
    t = Date.now();
    await send(a, hello);
    result.a_to_b_ms = await seen(b.page.locator('#main .post .message', { hasText: hello }), t);
    const back = `hi ${ua.username}, ${ub.username} here ${Date.now()}`;
    t = Date.now();
    await send(b, back);
    result.b_to_a_ms = await seen(a.page.locator('#main .post .message', { hasText: back }), t);

    // 4b. An @mention completed from the keyboard: Enter picks, then sends.
    const box = a.page.locator('#message-input');
    await box.pressSequentially(`ping @${cfg.mention_typed}`, { delay: 30 });
    const options = a.page.locator('#main .mention-options [role=option]');
    await options.filter({ hasText: `@${cfg.mention_username}` }).waitFor({ timeout: 10000 });
    result.mention_options = await options.allTextContents();
    await box.press('Enter');
    result.mention_inserted = await box.inputValue();
    await box.pressSequentially('see this');
    t = Date.now();
    await box.press('Enter');
    result.mention_seen_ms = await seen(b.page.locator('#main .post .message', { hasText: `ping @${cfg.mention_username} see this` }), t);

    // 5. A private channel; A adds B with the people picker.
    await a.page.locator('#create-channel').click();
    await create.waitFor();
    await a.page.getByLabel('Name', { exact: true }).fill(cfg.private_title);
    await create.getByRole('radio', { name: /Private/ }).check();
    await create.getByRole('button', { name: 'Create' }).click();
    await a.page.locator('#channel-title', { hasText: cfg.private_title }).waitFor({ timeout: 10000 });
    result.private_icon = (await sidebarLink(a, cfg.private_title).locator('.channel-kind').textContent()).trim();
    await a.page.locator('#channel-menu').click();
    await a.page.getByRole('menuitem', { name: 'Add people…' }).click();
    const add = a.page.locator('#add-dialog');
    await add.waitFor();
    result.add_options = await pickPerson(a.page, add, cfg.search_b, cfg.name_b);
    t = Date.now();
    await add.getByRole('button', { name: 'Add' }).click();
    await add.waitFor({ state: 'detached', timeout: 10000 });
    result.private_seen_by_b_ms = await sidebarLink(b, cfg.private_title).waitFor({ state: 'attached', timeout: 10000 }).then(() => Date.now() - t);
    await a.page.locator('#channel-menu').click();
    await a.page.getByRole('menuitem', { name: 'Members…' }).click();
    const members = a.page.locator('#member-list li');
    await a.page.locator('#member-list li', { hasText: cfg.name_b }).waitFor({ timeout: 10000 });
    result.private_members = await members.allTextContents();
    await a.page.keyboard.press('Escape');

    // 6. B leaves the public channel (from its menu) and can find it again.
    await openChannel(b, cfg.channel_title);
    await b.page.locator('#channel-menu').click();
    await b.page.getByRole('menuitem', { name: 'Leave channel…' }).click();
    const leave = b.page.locator('#leave-dialog');
    await leave.getByRole('button', { name: 'Leave' }).click();
    await b.page.locator('#channel-title', { hasText: cfg.channel_title }).waitFor({ state: 'detached', timeout: 10000 });
    await showSidebar(b);
    result.left_gone_from_sidebar = await sidebarLink(b, cfg.channel_title).count() === 0;
    await b.page.locator('#browse-channels').click();
    await browse.getByRole('button', { name: `Join ${cfg.channel_title}` }).waitFor({ timeout: 10000 });
    result.left_listed_again = true;
    await b.page.keyboard.press('Escape');
    await browse.waitFor({ state: 'detached' });
    result.page_fits_320 = await fits(b.page.locator('#main'));
    note('channels done');
  },

  async 'chat-direct'(ctx, cfg, result) {
    const [ua, ub, uc] = cfg.users;
    const browser = await launch(cfg, ctx.args);
    ctx.cleanup.push(() => browser.close());
    const a = await signIn(browser, cfg, ua);
    const b = await signIn(browser, cfg, ub, { viewport: { width: 320, height: 640 } });
    const c = await signIn(browser, cfg, uc);
    ctx.shot = b.page;

    // 1. A finds B by part of their name and starts a direct message,
    //    keyboard only: pick with Enter, then Enter again sends the form.
    await a.page.locator('#new-message').focus();
    await a.page.keyboard.press('Enter');
    const dialog = a.page.locator('#message-dialog');
    await dialog.waitFor();
    result.dm_options = await pickPerson(a.page, dialog, cfg.search_b, cfg.name_b);
    await dialog.getByRole('combobox').press('Enter');
    await a.page.locator('#channel-title', { hasText: cfg.name_b }).waitFor({ timeout: 10000 });
    result.dm_hash = await a.page.evaluate(() => location.hash);
    const dmId = result.dm_hash.replace('#/c/', '');

    // 2. A writes; B (elsewhere, 320 px) gets an unread badge, opens, replies.
    const psst = `psst ${ub.username} ${Date.now()}`;
    let t = Date.now();
    await send(a, psst);
    const badge = b.page.locator(`[data-unread="${dmId}"]`);
    await badge.waitFor({ state: 'attached', timeout: 10000 });
    result.dm_badge_ms = Date.now() - t;
    result.dm_badge_text = (await badge.textContent()).trim();
    result.dm_label_at_b = (await b.page.locator(`#sidebar a[data-channel="${dmId}"] .channel-name`).textContent()).trim();
    await openChannel(b, cfg.name_a);
    await b.page.locator('#main .post .message', { hasText: psst }).waitFor({ timeout: 10000 });
    await badge.waitFor({ state: 'detached', timeout: 10000 });
    result.dm_badge_cleared = true;
    const reply = `got it ${ua.username} ${Date.now()}`;
    t = Date.now();
    await send(b, reply);
    result.dm_reply_ms = await seen(a.page.locator('#main .post .message', { hasText: reply }), t);

    // 3. A group message of three.
    await a.page.locator('#new-message').click();
    await dialog.waitFor();
    await pickPerson(a.page, dialog, cfg.search_b, cfg.name_b);
    await pickPerson(a.page, dialog, cfg.search_c, cfg.name_c);
    result.group_picked = await dialog.locator('.chip').allTextContents();
    await dialog.getByRole('button', { name: 'Go' }).click();
    await a.page.locator('#channel-title', { hasText: cfg.name_c }).waitFor({ timeout: 10000 });
    const groupId = (await a.page.evaluate(() => location.hash)).replace('#/c/', '');
    result.group_is_new = groupId !== dmId;
    const all = `all three of us ${Date.now()}`;
    t = Date.now();
    await send(a, all);
    const cBadge = c.page.locator(`[data-unread="${groupId}"]`);
    await cBadge.waitFor({ state: 'attached', timeout: 10000 });
    result.group_badge_ms = Date.now() - t;
    result.group_label_at_c = (await c.page.locator(`#sidebar a[data-channel="${groupId}"] .channel-name`).textContent()).trim();
    await c.page.locator(`#sidebar a[data-channel="${groupId}"]`).click();
    await c.page.locator('#main .post .message', { hasText: all }).waitFor({ timeout: 10000 });
    const cReply = `${uc.username} agrees ${Date.now()}`;
    t = Date.now();
    await send(c, cReply);
    result.group_reply_at_a_ms = await seen(a.page.locator('#main .post .message', { hasText: cReply }), t);
    await b.page.locator(`[data-unread="${groupId}"]`).waitFor({ state: 'attached', timeout: 10000 });
    result.group_badge_at_b = (await b.page.locator(`[data-unread="${groupId}"]`).textContent()).trim();
    await showSidebar(b);
  },

  async 'chat-files'(ctx, cfg, result) {
    const [ua, ub] = cfg.users;
    const browser = await launch(cfg, ctx.args);
    ctx.cleanup.push(() => browser.close());
    const a = await signIn(browser, cfg, ua);
    const b = await signIn(browser, cfg, ub);
    ctx.shot = b.page;
    await openChannel(a, cfg.channel);
    await openChannel(b, cfg.channel);

    // 1. A attaches an image (through the Attach button's file input) and sends.
    const image = png(160, 90);
    await a.page.locator('#message-input-files').setInputFiles({ name: 'map.png', mimeType: 'image/png', buffer: image });
    result.chosen = (await a.page.locator('.composer .chosen').first().textContent()).trim();
    const text = `the map ${Date.now()}`;
    let t = Date.now();
    await send(a, text);
    const bPost = b.page.locator('#main .post', { hasText: text });
    await bPost.waitFor({ timeout: 15000 });
    result.file_post_ms = Date.now() - t;

    // 2. B sees the thumbnail and downloads the file.
    const img = bPost.locator('.files img');
    await img.scrollIntoViewIfNeeded();
    await img.evaluate((el) => new Promise((resolve, reject) => {
      if (el.complete && el.naturalWidth > 0) resolve();
      el.addEventListener('load', resolve);
      el.addEventListener('error', () => reject(new Error('the thumbnail did not load')));
    }));
    result.thumbnail = await img.evaluate((el) => ({ width: el.naturalWidth, height: el.naturalHeight, src: el.getAttribute('src') }));
    const link = bPost.getByRole('link', { name: 'map.png' });
    const [download] = await Promise.all([b.page.waitForEvent('download'), link.click()]);
    const got = await readFile(await download.path());
    result.download_name = download.suggestedFilename();
    result.download_bytes = got.length;
    result.download_same = got.equals(image);

    // 3. Search from the top bar; Jump opens the post in its channel.
    const search = b.page.getByRole('searchbox', { name: 'Search messages and files' });
    await search.fill(cfg.query);
    t = Date.now();
    await search.press('Enter');
    const hit = b.page.locator('.result', { hasText: cfg.query }).first();
    await hit.waitFor({ timeout: 10000 });
    result.search_ms = Date.now() - t;
    result.results = await b.page.locator('.result').count();
    await hit.getByRole('link', { name: /^Jump/ }).click();
    const linked = b.page.locator(`#post-${cfg.post_id}.linked`);
    await linked.waitFor({ timeout: 10000 });
    result.jump_ms = Date.now() - t;
    result.jump_channel = (await b.page.locator('#channel-title').textContent()).trim();
    result.jump_hash = await b.page.evaluate(() => location.hash);
    result.jump_focused = await linked.evaluate((el) => el === document.activeElement);
    result.jump_in_view = await linked.evaluate((el) => {
      const r = el.getBoundingClientRect();
      const box = el.closest('.posts').getBoundingClientRect();
      return r.top >= box.top - 1 && r.bottom <= box.bottom + 1;
    });
    result.jump_text = (await linked.locator('.message').textContent()).trim();
  },

  async 'chat-posts'(ctx, cfg, result) {
    const [ua, ub] = cfg.users;
    const browser = await launch(cfg, ctx.args);
    ctx.cleanup.push(() => browser.close());
    const a = await signIn(browser, cfg, ua);
    const b = await signIn(browser, cfg, ub);
    ctx.shot = b.page;
    await openChannel(a, cfg.channel);
    await openChannel(b, cfg.channel);

    // 1. A writes; B sees it. Only A's own post offers Edit and Delete.
    const draft = `draft plan ${Date.now()}`;
    await send(a, draft);
    const sent = a.page.locator('#main .post.own', { hasText: draft });
    await sent.waitFor({ timeout: 10000 });
    const postId = (await sent.getAttribute('id')).replace('post-', '');
    // By id from here: while it is edited the text is in a box, not the post.
    const aPost = a.page.locator(`#post-${postId}`);
    result.edited_id = postId;
    const bPost = b.page.locator(`#post-${postId}`);
    await bPost.waitFor({ timeout: 10000 });
    result.actions_at_b = await bPost.locator('.actions button').allTextContents();

    // 2. Edit from the keyboard: Escape cancels and gives focus back.
    const edit = aPost.getByRole('button', { name: 'Edit message' });
    await edit.focus();
    await a.page.keyboard.press('Enter');
    const box = aPost.getByRole('textbox', { name: 'Edit message' });
    await box.waitFor();
    result.edit_box_focused = await box.evaluate((el) => el === document.activeElement);
    await a.page.keyboard.type(' not this');
    await a.page.keyboard.press('Escape');
    await box.waitFor({ state: 'detached' });
    result.cancelled_text = (await aPost.locator('.message').textContent()).trim();
    result.cancel_focus_on_edit = await edit.evaluate((el) => el === document.activeElement);
    result.thread_still_closed = await a.page.locator('#thread').isHidden();

    // 3. Then Enter saves; B sees the new text and the marker, live.
    await a.page.keyboard.press('Enter');
    await box.waitFor();
    await a.page.keyboard.press('ControlOrMeta+a');
    const revised = `revised plan ${Date.now()}`;
    await a.page.keyboard.type(revised);
    let t = Date.now();
    await a.page.keyboard.press('Enter');
    result.edit_seen_ms = await seen(bPost.locator('.message', { hasText: revised }), t);
    result.edited_marker_at_b = (await bPost.locator('.edited').textContent()).trim();
    await box.waitFor({ state: 'detached' });
    result.edited_text_at_a = (await aPost.locator('.message').textContent()).trim();
    result.save_focus_on_edit = await edit.evaluate((el) => el === document.activeElement);

    // 4. A deletes another post, after confirming; it goes at both pages.
    const doomed = `delete me ${Date.now()}`;
    await send(a, doomed);
    const aDoomed = a.page.locator('#main .post.own', { hasText: doomed });
    await aDoomed.waitFor({ timeout: 10000 });
    const doomedId = (await aDoomed.getAttribute('id')).replace('post-', '');
    result.deleted_id = doomedId;
    await b.page.locator(`#post-${doomedId}`).waitFor({ timeout: 10000 });
    await aDoomed.getByRole('button', { name: 'Delete message' }).focus();
    await a.page.keyboard.press('Enter');
    const confirm = a.page.locator('#delete-dialog');
    await confirm.waitFor();
    result.confirm_title = (await confirm.locator('h2').textContent()).trim();
    result.confirm_focus = await a.page.evaluate(() => document.activeElement?.textContent);
    t = Date.now();
    await confirm.getByRole('button', { name: 'Delete' }).click();
    await b.page.locator(`#post-${doomedId}`).waitFor({ state: 'detached', timeout: 10000 });
    result.delete_seen_ms = Date.now() - t;
    await aDoomed.waitFor({ state: 'detached', timeout: 10000 });
    result.deleted_at_a = true;
    result.edited_still_at_b = (await bPost.locator('.message').textContent()).trim();

    // 5. B opens a long channel: the latest page, and a way to older ones.
    await openChannel(b, cfg.history);
    const posts = b.page.locator('#main .posts > li.post');
    const older = b.page.getByRole('button', { name: 'Load older messages' });
    await older.waitFor({ timeout: 10000 });
    await b.page.locator('#main .post .message', { hasText: new RegExp(`^${cfg.last_text}$`) }).waitFor({ timeout: 10000 });
    result.history_first_page = await posts.count();
    result.first_shown_before = await b.page.locator('#main .post .message', { hasText: new RegExp(`^${cfg.first_text}$`) }).count();
    // It opens at the newest post, and the list scrolls, not the page (the
    // composer stays in view).
    result.opened_at_newest = await b.page.evaluate(() => {
      const last = [...document.querySelectorAll('#main .posts > li.post')].pop();
      const r = last.getBoundingClientRect();
      return r.bottom <= window.innerHeight + 1 && r.top >= 0;
    });
    result.page_scrolls = await b.page.evaluate(() => document.documentElement.scrollHeight > window.innerHeight + 1);
    // Scrolled to the top, as a reader would to reach the button.
    await older.scrollIntoViewIfNeeded();
    const anchor = posts.first();
    const anchorId = await anchor.getAttribute('id');
    // Where it is on screen (whether the list or the page scrolls).
    const offset = (id) => b.page.evaluate((i) => document.getElementById(i).getBoundingClientRect().top, id);
    const before = await offset(anchorId);
    let pages = 0;
    const first = b.page.locator('#main .post .message', { hasText: new RegExp(`^${cfg.first_text}$`) });
    t = Date.now();
    while (await first.count() === 0 && pages < 10) {
      await older.focus();
      const count = await posts.count();
      await b.page.keyboard.press('Enter');
      await b.page.waitForFunction((n) => document.querySelectorAll('#main .posts > li.post').length > n, count, { timeout: 10000 });
      pages++;
    }
    result.older_ms = Date.now() - t;
    result.older_pages = pages;
    result.anchor_shift_px = Math.abs((await offset(anchorId)) - before);
    result.history_total = await posts.count();
    result.button_gone = await older.count() === 0;
    result.history_first_text = (await posts.first().locator('.message').textContent()).trim();
    result.history_order_ok = await posts.locator('.message').evaluateAll((els) => els.every((el, i) => el.textContent === `history ${i}`));
    await first.scrollIntoViewIfNeeded();
  },
};

// A PNG of w × h pixels (a colour gradient), made here so the test needs
// no image file.
function png(w, h) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc32 = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(w, 0);
  header.writeUInt32BE(h, 4);
  header[8] = 8; // bits per sample
  header[9] = 2; // RGB
  const row = w * 3 + 1;
  const raw = Buffer.alloc(row * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * row + 1 + x * 3;
      raw[i] = (x * 255) / w;
      raw[i + 1] = (y * 255) / h;
      raw[i + 2] = 160;
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', zlib.deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
