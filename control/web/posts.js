// A channel's conversation: posts (newest at the bottom), the composer
// with attachments, reactions, the thread panel, and search results.

import { api, get, post, put, patch, del, enc, userName } from './api.js';
import { h, replace, time, announce, menu, duration } from './dom.js';
import { reviewable, lineFor, RECORDER_USER_ID } from './review.js';
import { openDialog } from './dialog.js';
import { MentionCompleter } from './mention.js';

export const EMOJI = { '+1': '👍', heart: '❤️', smile: '😄', tada: '🎉', eyes: '👀', thinking: '🤔' };
const glyph = (name) => EMOJI[name] ?? `:${name}:`;
const TYPING_EVERY_MS = 3000;
const TYPING_SHOWN_MS = 5000;
// Posts per page, the channel's first and each older one. A page this
// full means there may be more before it.
const PAGE = 60;

function size(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / (1 << 20)).toFixed(1)} MB`;
}

export class ChannelView {
  constructor(app, { main, thread }) {
    this.app = app;
    this.main = main;
    this.threadEl = thread;
    this.channel = null;
    this.posts = new Map(); // id -> Post (what is on screen, channel and thread)
    this.reactions = new Map(); // post id -> Reaction[]
    this.threadRoot = null;
    this.typing = new Map(); // user id -> timeout
    this.deleted = new Set(); // post ids already taken off the page
    this.lastTyping = 0;
  }

  // ---- channel ----

  async open(channel) {
    this.channel = channel;
    this.closeThread();
    const label = await this.app.sidebar.channelLabel(channel);
    this.list = h('ol', { class: 'posts', 'aria-label': `Messages in ${label}`, tabindex: '-1' });
    this.typingEl = h('p', { class: 'typing', 'aria-live': 'polite' });
    this.composer = this.makeComposer(null);
    this.header = h('header', { class: 'channel-header' },
      h('h1', { id: 'channel-title' }, label),
      channel.purpose && h('p', { class: 'purpose' }, channel.purpose),
      h('div', { class: 'channel-tools', id: 'channel-tools' }),
      this.app.actions?.headerMenu(channel),
    );
    replace(this.main,
      this.header,
      h('div', { id: 'call-slot' }),
      this.list,
      this.typingEl,
      this.composer.form,
    );
    this.app.calls?.channelOpened(channel);
    let posts = [];
    try {
      posts = await get(`/channels/${enc(channel.id)}/posts?limit=${PAGE}`);
    } catch (e) {
      this.list.append(h('li', { class: 'error', role: 'alert' }, `Could not load messages: ${e.message}`));
      return;
    }
    if (this.channel !== channel) return;
    this.posts.clear();
    this.reactions.clear();
    this.older = null;
    this.pageLoaded(posts);
    for (const p of [...posts].reverse()) {
      if (p.root_id) continue;
      this.list.append(await this.renderPost(p));
    }
    this.list.scrollTop = this.list.scrollHeight;
    this.loadReactions(posts.filter((p) => !p.root_id).map((p) => p.id));
    this.markRead();
  }

  // After a page (newest first, replies included as the server pages
  // them): the oldest is the next page's cursor, and a full page shows
  // "Load older messages" at the top of the list.
  pageLoaded(posts) {
    this.cursor = posts[posts.length - 1]?.id ?? null;
    const more = posts.length === PAGE;
    if (more && !this.older) {
      const button = h('button', { type: 'button', id: 'load-older', onclick: () => this.loadOlder() }, 'Load older messages');
      this.older = h('li', { class: 'older' }, button);
      this.list.prepend(this.older);
    } else if (!more && this.older) {
      this.older.remove();
      this.older = null;
    }
  }

  // The page before the oldest loaded, put above it without moving what
  // the person is looking at: whatever scrolls (the list, or the page
  // when the list is not height-bound) moves by as much as the post that
  // was first went down.
  async loadOlder() {
    const channel = this.channel;
    const button = this.older?.querySelector('button');
    if (!button || !this.cursor || button.disabled) return;
    button.disabled = true;
    button.textContent = 'Loading…';
    let posts;
    try {
      posts = await get(`/channels/${enc(channel.id)}/posts?limit=${PAGE}&before=${enc(this.cursor)}`);
    } catch (e) {
      button.disabled = false;
      button.textContent = 'Load older messages';
      announce(`Could not load older messages: ${e.message}`);
      return;
    }
    if (this.channel !== channel) return;
    const els = [];
    for (const p of [...posts].reverse()) {
      if (p.root_id || document.getElementById(`post-${p.id}`)) continue;
      els.push(await this.renderPost(p));
    }
    if (this.channel !== channel) return;
    const first = this.older.nextSibling;
    const top = first?.getBoundingClientRect().top ?? 0;
    for (const el of els) this.list.insertBefore(el, first);
    this.pageLoaded(posts);
    const moved = () => (first?.getBoundingClientRect().top ?? top) - top;
    this.list.scrollTop += moved();
    if (Math.abs(moved()) >= 1) window.scrollBy(0, moved());
    if (this.older) {
      button.disabled = false;
      button.textContent = 'Load older messages';
      button.focus();
    } else {
      // The button is gone: focus goes to the oldest message, not the page.
      const oldest = els[0] ?? this.list;
      oldest.tabIndex = -1;
      oldest.focus({ preventScroll: true });
    }
    announce(`${els.length} older ${els.length === 1 ? 'message' : 'messages'} loaded${this.older ? '' : ', the start of the channel'}`);
    this.loadReactions(els.map((el) => el.dataset.post));
  }

  markRead() {
    if (!this.channel || document.hidden) return;
    clearTimeout(this.readTimer);
    this.readTimer = setTimeout(() => {
      post(`/channels/${enc(this.channel.id)}/view`).catch(() => {});
    }, 300);
  }

  // Reactions are not in the post list: ask per post, a few at a time.
  async loadReactions(ids) {
    const queue = [...ids];
    const worker = async () => {
      while (queue.length) {
        const id = queue.shift();
        try {
          this.reactions.set(id, await get(`/posts/${enc(id)}/reactions`));
          this.paintReactions(id);
        } catch {
          // A deleted post or a lost link: the post shows without them.
        }
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
  }

  // ---- posts ----

  async renderPost(p) {
    this.posts.set(p.id, p);
    const author = p.override_username || (await userName(p.user_id));
    const el = h('li', { class: `post${p.user_id === this.app.me.id ? ' own' : ''}`, id: `post-${p.id}`, dataset: { post: p.id } });
    this.fillPost(el, p, author);
    return el;
  }

  fillPost(el, p, author) {
    const inThread = el.closest?.('.thread') || el.dataset.inThread;
    // A repaint (an edit, a reply count) keeps focus on the action it was on.
    const focused = el.contains(document.activeElement) && document.activeElement.matches('.actions button[class]')
      ? document.activeElement.classList[0] : null;
    replace(el,
      h('header', {},
        h('strong', { class: 'author' }, author),
        p.from_bot && h('span', { class: 'tag' }, 'bot'),
        ' ',
        h('time', { datetime: new Date(p.created_at).toISOString() }, time(p.created_at)),
        p.edited_at && h('span', { class: 'muted edited' }, ' (edited)'),
      ),
      h('p', { class: `message${p.deleted ? ' deleted' : ''}` }, p.deleted ? 'This message was deleted.' : p.message),
      p.files?.length > 0 && h('ul', { class: 'files', 'aria-label': 'Attachments' }, p.files.map((f) => h('li', {},
        f.has_thumbnail && h('img', { src: `/api/v1/files/${enc(f.id)}/thumbnail`, alt: '', width: 120, loading: 'lazy' }),
        h('a', { href: `/api/v1/files/${enc(f.id)}`, download: f.name }, f.name),
        h('span', { class: 'muted' }, ` ${size(f.size)}`),
      ))),
      h('div', { class: 'reactions', 'aria-label': 'Reactions', role: 'group' }),
      !p.deleted && h('div', { class: 'actions' },
        menu(h('button', { type: 'button', class: 'icon', 'aria-label': 'Add a reaction' }, '☺+'),
          Object.keys(EMOJI).map((name) => ({ label: `${glyph(name)} ${name}`, run: () => this.toggleReaction(p.id, name, true) }))),
        reviewable(p) && h('a', { class: 'button review', href: `#/review/${p.id}` }, '▶ Review'),
        !p.root_id && !inThread && h('button', { type: 'button', class: 'reply', onclick: () => this.openThread(p.id) },
          p.reply_count ? `${p.reply_count} ${p.reply_count === 1 ? 'reply' : 'replies'}` : 'Reply'),
        this.mine(p) && h('button', { type: 'button', class: 'edit', 'aria-label': 'Edit message', onclick: () => this.startEdit(el, p.id) }, 'Edit'),
        this.mine(p) && h('button', { type: 'button', class: 'delete', 'aria-label': 'Delete message', onclick: () => this.confirmDelete(p.id) }, 'Delete'),
      ),
    );
    this.paintReactionsIn(el, p.id);
    if (focused) el.querySelector(`.actions button.${CSS.escape(focused)}`)?.focus();
  }

  // One's own posts, as people wrote them (a bot's post under one's name
  // is not edited from here).
  mine(p) {
    return p.user_id === this.app.me.id && !p.from_bot && !p.deleted;
  }

  // The message turns into a box in place: Enter saves, Shift+Enter is a
  // new line, Escape puts the message back. Focus returns to Edit.
  startEdit(el, id) {
    const p = this.posts.get(id);
    const message = el.querySelector('.message');
    if (!p || !message || el.querySelector('.edit-box')) return;
    const box = h('textarea', { class: 'edit-box', rows: 2, 'aria-label': 'Edit message' });
    box.value = p.message;
    const error = h('p', { class: 'error', role: 'alert' });
    const hint = h('p', { class: 'muted hint' }, 'Enter saves, Escape cancels.');
    const editor = h('div', { class: 'editor' }, box, hint, error);
    message.replaceWith(editor);
    const done = () => {
      const current = this.posts.get(id);
      if (current && el.isConnected) this.fillPost(el, current, el.querySelector('.author')?.textContent ?? '');
      el.querySelector('button.edit')?.focus();
    };
    box.addEventListener('keydown', async (e) => {
      if (e.key === 'Escape') {
        // Only the edit: not the thread panel around it.
        e.preventDefault();
        e.stopPropagation();
        done();
      } else if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        const text = box.value.trim();
        if (!text) { error.textContent = 'A message cannot be empty; Delete removes it.'; return; }
        if (text === p.message) { done(); return; }
        box.disabled = true;
        try {
          const saved = await patch(`/posts/${enc(id)}`, { message: text });
          this.posts.set(id, { ...this.posts.get(id), ...saved });
          done();
          announce('Message edited');
        } catch (err) {
          box.disabled = false;
          error.textContent = `Not saved: ${err.message}`;
          box.focus();
        }
      }
    });
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
  }

  confirmDelete(id) {
    const p = this.posts.get(id);
    if (!p) return;
    const excerpt = p.message.length > 120 ? `${p.message.slice(0, 120)}…` : p.message;
    const { dialog } = openDialog({
      id: 'delete-dialog',
      title: 'Delete this message?',
      body: h('blockquote', { class: 'excerpt' }, excerpt),
      submitLabel: 'Delete',
      submit: async () => {
        await del(`/posts/${enc(id)}`);
        this.removePost(id);
        announce('Message deleted');
      },
    });
    // The Delete button focus would return to is gone with its post.
    dialog.addEventListener('close', () => {
      if (!document.activeElement || document.activeElement === document.body) this.list?.focus();
    });
  }

  // As the server keeps them: a deleted post leaves the channel, and a
  // deleted reply its thread (its root counts one fewer); a deleted root
  // stays at the top of its open thread, marked deleted.
  removePost(id, rootId = null) {
    // Once: the deleting page removes it, then its own event comes.
    if (this.deleted.has(id)) return;
    this.deleted.add(id);
    const p = this.posts.get(id);
    const threadEl = document.getElementById(`thread-post-${id}`);
    const keepRoot = this.threadRoot === id && threadEl;
    const gone = [document.getElementById(`post-${id}`), !keepRoot && threadEl].filter(Boolean);
    if (gone.some((el) => el.contains(document.activeElement))) this.list?.focus();
    for (const el of gone) el.remove();
    this.reactions.delete(id);
    if (keepRoot && p) {
      this.posts.set(id, { ...p, deleted: true, message: '', files: [] });
      this.repaint(this.posts.get(id));
      return;
    }
    // A reply not on screen still counts at its root (the event names it).
    this.posts.delete(id);
    const rid = p?.root_id ?? rootId;
    const root = rid && this.posts.get(rid);
    if (root) {
      root.reply_count = Math.max(0, (root.reply_count ?? 1) - 1);
      this.repaint(root);
    }
  }

  paintReactions(postId) {
    for (const el of document.querySelectorAll(`[data-post="${CSS.escape(postId)}"]`)) this.paintReactionsIn(el, postId);
  }

  paintReactionsIn(el, postId) {
    const box = el.querySelector('.reactions');
    if (!box) return;
    const counts = new Map();
    for (const r of this.reactions.get(postId) ?? []) {
      const c = counts.get(r.emoji) ?? { n: 0, mine: false };
      c.n++;
      if (r.user_id === this.app.me.id) c.mine = true;
      counts.set(r.emoji, c);
    }
    replace(box, [...counts].map(([name, c]) => h('button', {
      type: 'button',
      class: 'reaction',
      'aria-pressed': String(c.mine),
      'aria-label': `${name}: ${c.n}${c.mine ? ', including you' : ''}`,
      dataset: { emoji: name },
      onclick: () => this.toggleReaction(postId, name, !c.mine),
    }, `${glyph(name)} ${c.n}`)));
  }

  async toggleReaction(postId, name, on) {
    try {
      if (on) await put(`/posts/${enc(postId)}/reactions/${enc(name)}`);
      else await del(`/posts/${enc(postId)}/reactions/${enc(name)}`);
    } catch (e) {
      announce(`Reaction failed: ${e.message}`);
    }
  }

  // ---- composer ----

  makeComposer(rootId) {
    const id = rootId ? 'thread-input' : 'message-input';
    const input = h('textarea', { id, rows: 2, 'aria-label': rootId ? 'Reply in thread' : 'Write a message', placeholder: rootId ? 'Reply…' : 'Write a message…' });
    const files = h('input', { type: 'file', multiple: true, id: `${id}-files`, class: 'sr-only' });
    const chosen = h('span', { class: 'muted chosen', 'aria-live': 'polite' });
    const error = h('p', { class: 'error', role: 'alert' });
    const send = h('button', { type: 'submit', class: 'primary' }, 'Send');
    // Before the Enter-sends handler below: Enter first picks a mention.
    const mentions = new MentionCompleter(input);
    const form = h('form', { class: 'composer', 'aria-label': rootId ? 'Reply' : 'New message' },
      h('div', { class: 'people-box' }, input, mentions.list),
      h('div', { class: 'composer-tools' },
        h('label', { for: `${id}-files`, class: 'button', tabindex: '0', role: 'button' }, '📎 Attach'),
        files, chosen, send),
      error);
    const attachLabel = form.querySelector('label.button');
    attachLabel.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); files.click(); }
    });
    files.addEventListener('change', () => {
      chosen.textContent = [...files.files].map((f) => f.name).join(', ');
    });
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    input.addEventListener('input', () => {
      const now = Date.now();
      if (now - this.lastTyping > TYPING_EVERY_MS && this.channel) {
        this.lastTyping = now;
        const m = { type: 'typing', channel_id: this.channel.id };
        if (rootId) m.root_id = rootId;
        this.app.socket.send(m);
      }
    });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const message = input.value.trim();
      if (!message && !files.files.length) return;
      send.disabled = true;
      error.textContent = '';
      try {
        const body = { message, pending_id: crypto.randomUUID() };
        if (rootId) body.root_id = rootId;
        if (files.files.length) {
          const fd = new FormData();
          for (const f of files.files) fd.append('files', f, f.name);
          const up = await api('POST', `/channels/${enc(this.channel.id)}/files`, fd);
          body.file_ids = up.file_infos.map((f) => f.id);
        }
        await post(`/channels/${enc(this.channel.id)}/posts`, body);
        input.value = '';
        files.value = '';
        chosen.textContent = '';
      } catch (err) {
        error.textContent = `Not sent: ${err.message}`;
      } finally {
        send.disabled = false;
        input.focus();
      }
    });
    return { form, input };
  }

  // ---- thread ----

  async openThread(rootId) {
    this.threadRoot = rootId;
    const close = h('button', { type: 'button', class: 'icon', 'aria-label': 'Close thread', onclick: () => this.closeThread(true) }, '✕');
    this.threadList = h('ol', { class: 'posts thread', 'aria-label': 'Thread' });
    const composer = this.makeComposer(rootId);
    replace(this.threadEl, h('header', { class: 'thread-header' }, h('h2', {}, 'Thread'), close), this.threadList, composer.form);
    this.threadEl.hidden = false;
    document.body.classList.add('thread-open');
    this.threadEl.onkeydown = (e) => { if (e.key === 'Escape') this.closeThread(true); };
    let posts = [];
    try {
      posts = await get(`/posts/${enc(rootId)}/thread`);
    } catch (e) {
      this.threadList.append(h('li', { class: 'error', role: 'alert' }, e.message));
      return;
    }
    if (this.threadRoot !== rootId) return;
    posts.sort((a, b) => a.created_at - b.created_at);
    for (const p of posts) {
      const el = await this.renderThreadPost(p);
      this.threadList.append(el);
    }
    this.loadReactions(posts.map((p) => p.id).filter((id) => !this.reactions.has(id)));
    composer.input.focus();
  }

  // A linked post (a deep link, a search result), marked and focused: a
  // message shown in the channel where it is; a reply, or a message too
  // old to be among those loaded, in its thread.
  async showPost(p) {
    const inChannel = !p.root_id && document.getElementById(`post-${p.id}`);
    if (!inChannel) await this.openThread(p.root_id || p.id);
    const el = inChannel || document.getElementById(`thread-post-${p.id}`);
    if (!el) return;
    el.classList.add('linked');
    el.tabIndex = -1;
    el.scrollIntoView({ block: 'center' });
    el.focus();
  }

  async renderThreadPost(p) {
    this.posts.set(p.id, p);
    const el = h('li', { class: 'post', id: `thread-post-${p.id}`, dataset: { post: p.id, inThread: '1' } });
    this.fillPost(el, p, p.override_username || (await userName(p.user_id)));
    return el;
  }

  closeThread(focusBack = false) {
    const root = this.threadRoot;
    this.threadRoot = null;
    this.threadEl.hidden = true;
    document.body.classList.remove('thread-open');
    replace(this.threadEl);
    if (focusBack && root) document.querySelector(`#post-${CSS.escape(root)} .reply`)?.focus();
  }

  // ---- events ----

  async onEvent(ev) {
    switch (ev.type) {
      case 'post_created': {
        const p = ev.post;
        if (p.root_id && p.root_id === this.threadRoot) {
          this.threadList?.append(await this.renderThreadPost(p));
        }
        if (p.root_id) {
          const root = this.posts.get(p.root_id);
          if (root) {
            root.reply_count = (root.reply_count ?? 0) + 1;
            this.repaint(root);
          }
          return;
        }
        if (this.channel?.id === p.channel_id && !document.getElementById(`post-${p.id}`)) {
          const atBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
          this.list.append(await this.renderPost(p));
          if (atBottom || p.user_id === this.app.me.id) this.list.scrollTop = this.list.scrollHeight;
          if (p.user_id !== this.app.me.id) {
            announce(`New message from ${await userName(p.user_id)}`);
            this.markRead();
          }
        }
        break;
      }
      case 'post_edited': {
        const p = ev.post;
        if (this.posts.has(p.id)) {
          this.posts.set(p.id, { ...this.posts.get(p.id), ...p });
          this.repaint(this.posts.get(p.id));
        }
        break;
      }
      case 'post_deleted':
        this.removePost(ev.post_id, ev.root_id);
        break;
      case 'reaction_added':
      case 'reaction_removed': {
        const r = ev.reaction;
        if (!this.posts.has(r.post_id)) return;
        const list = (this.reactions.get(r.post_id) ?? []).filter((x) => !(x.user_id === r.user_id && x.emoji === r.emoji));
        if (ev.type === 'reaction_added') list.push(r);
        this.reactions.set(r.post_id, list);
        this.paintReactions(r.post_id);
        break;
      }
      default:
    }
  }

  async repaint(p) {
    const author = p.override_username || (await userName(p.user_id));
    for (const el of document.querySelectorAll(`[data-post="${CSS.escape(p.id)}"]`)) this.fillPost(el, p, author);
  }

  async onTyping(msg) {
    if (msg.channel_id !== this.channel?.id || msg.user_id === this.app.me.id) return;
    clearTimeout(this.typing.get(msg.user_id));
    this.typing.set(msg.user_id, setTimeout(() => { this.typing.delete(msg.user_id); this.paintTyping(); }, TYPING_SHOWN_MS));
    this.paintTyping();
  }

  async paintTyping() {
    const names = await Promise.all([...this.typing.keys()].map(userName));
    this.typingEl.textContent = names.length ? `${names.join(', ')} ${names.length === 1 ? 'is' : 'are'} typing…` : '';
  }

  // ---- search ----

  // The main area goes to another view (search, the reviewer).
  detach() {
    this.channel = null;
    this.closeThread();
  }

  async search(q) {
    this.detach();
    const results = h('ol', { class: 'results', 'aria-label': 'Results' });
    replace(this.main, h('header', { class: 'channel-header' }, h('h1', { id: 'channel-title' }, `Search: ${q}`)), results);
    const tz = -new Date().getTimezoneOffset() * 60;
    try {
      const [posts, files] = await Promise.all([
        get(`/search/posts?q=${enc(q)}&time_zone_offset=${tz}`),
        get(`/search/files?q=${enc(q)}&time_zone_offset=${tz}`).catch(() => ({ results: [] })),
      ]);
      for (const r of posts.results) {
        // A transcript's line opens the recording at the time it was said.
        const line = r.post.user_id === RECORDER_USER_ID ? lineFor(r.post.message, q) : null;
        // A direct or group channel is named for its people, as in the sidebar.
        const mine = this.app.channels.get(r.post.channel_id);
        const where = mine ? await this.app.sidebar.channelLabel(mine) : r.channel?.display_name || r.channel?.name || 'channel';
        results.append(h('li', { class: 'result', dataset: { result: r.post.id } },
          h('a', { href: `#/c/${r.post.channel_id}` }, where),
          ' · ', h('a', { class: 'jump', href: `#/p/${r.post.id}`, 'aria-label': `Jump to the message in ${where}` }, 'Jump'),
          ' · ', h('strong', {}, await userName(r.post.user_id)), ' · ', time(r.post.created_at),
          line && [' · ', h('a', { class: 'at-time', href: `#/review/${r.post.id}?t=${line.seconds}` },
            `▶ Play at ${duration(line.seconds * 1000)}: ${line.speaker}: ${line.text}`)],
          h('p', {}, r.post.message)));
      }
      for (const r of files.results ?? []) {
        const f = r.file ?? r;
        results.append(h('li', { class: 'result' }, '📎 ', h('a', { href: `/api/v1/files/${enc(f.id)}`, download: f.name }, f.name)));
      }
      if (!results.children.length) results.append(h('li', {}, 'Nothing found.'));
      announce(`${results.children.length} results`);
    } catch (e) {
      results.append(h('li', { class: 'error', role: 'alert' }, e.message));
    }
  }
}
