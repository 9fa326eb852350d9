// The web client's entry: signs in, lays out the page (sidebar, channel,
// thread, call), keeps the event socket and routes its messages.

import { get, post, whenSignedOut, enc } from './api.js';
import { h, replace, announce } from './dom.js';
import { EventSocket } from './socket.js';
import { showLogin } from './login.js';
import { Sidebar } from './sidebar.js';
import { ChannelView } from './posts.js';
import { Calls } from './call.js';
import { Reviewer } from './review.js';
import { ChannelActions } from './channels.js';

const root = document.getElementById('root');
let events = Promise.resolve();
// Each channel's last post time in the last REST snapshot (reload): a
// post event no newer than it is already in the snapshot's unread count.
const snapshot = new Map();

const app = {
  me: null,
  teams: [],
  channels: new Map(),
  members: new Map(), // channel id -> user ids (direct and group channels)
  unreads: new Map(),
  current: null,
  socket: null,
  sidebar: null,
  view: null,
  calls: null,
  review: null,
  actions: null,
  reload: () => reload(),
  closeNav: null,
};
// Read-only introspection for the browser tests and for support: what the
// page is showing, never a way to act.
window.enclaveApp = app;

async function boot() {
  whenSignedOut(() => signedOut('Your session ended. Sign in again.'));
  try {
    start(await get('/users/me'));
  } catch {
    showLogin(root, start);
  }
}

function signedOut(notice) {
  app.socket?.stop();
  app.calls?.leave('signed_out');
  app.me = null;
  showLogin(root, start, notice);
}

async function start(me) {
  app.me = me;
  const sidebarEl = h('nav', { id: 'sidebar', 'aria-label': 'Teams and channels' });
  const main = h('main', { id: 'main', tabindex: '-1' });
  const thread = h('aside', { id: 'thread', 'aria-label': 'Thread', hidden: true });
  const status = h('span', { id: 'connection', class: 'connection', role: 'status' }, 'Connecting…');
  const navToggle = h('button', {
    type: 'button', class: 'icon nav-toggle', 'aria-controls': 'sidebar', 'aria-expanded': 'false', 'aria-label': 'Show channels',
    onclick: () => toggleNav(),
  }, '☰');
  const searchInput = h('input', { type: 'search', id: 'search', 'aria-label': 'Search messages and files', placeholder: 'Search' });
  const searchForm = h('form', { role: 'search', class: 'search' }, searchInput);
  searchForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = searchInput.value.trim();
    if (q) location.hash = `#/search/${enc(q)}`;
  });
  const signOut = h('button', { type: 'button', onclick: async () => { await post('/auth/logout').catch(() => {}); signedOut(); } }, 'Sign out');
  replace(root,
    h('header', { class: 'topbar' },
      navToggle,
      h('span', { class: 'brand' }, 'Enclave'),
      searchForm,
      status,
      h('span', { class: 'me', id: 'me' }, me.display_name || me.username),
      signOut),
    h('section', { id: 'call-area', class: 'call', hidden: true }),
    h('div', { class: 'layout' }, sidebarEl, main, thread),
    h('div', { id: 'ringing' }),
  );
  app.actions = new ChannelActions(app);
  app.sidebar = new Sidebar(sidebarEl, app);
  app.view = new ChannelView(app, { main, thread });
  app.calls = new Calls(app);
  app.review = new Reviewer(app, main);

  function toggleNav(open = !document.body.classList.contains('nav-open')) {
    document.body.classList.toggle('nav-open', open);
    navToggle.setAttribute('aria-expanded', String(open));
    if (open) sidebarEl.querySelector('a')?.focus();
  }
  app.closeNav = () => toggleNav(false);
  sidebarEl.addEventListener('click', (e) => { if (e.target.closest('a')) toggleNav(false); });
  sidebarEl.addEventListener('keydown', (e) => { if (e.key === 'Escape' && document.body.classList.contains('nav-open')) { toggleNav(false); navToggle.focus(); } });

  let wasOffline = false;
  app.socket = new EventSocket({
    // One event at a time, in seq order: a handler that reloads (a new
    // channel) must finish before the next event counts against its result.
    onEvent: (ev) => { events = events.then(() => onEvent(ev)).catch((e) => console.error(e)); },
    onMessage: (msg) => onMessage(msg),
    onResync: () => reload(),
    onState: (s) => {
      status.textContent = { online: 'Online', connecting: 'Connecting…', offline: 'Offline, reconnecting…', signed_out: 'Signed out' }[s] ?? s;
      status.dataset.state = s;
      if (s === 'signed_out') signedOut('Your session ended. Sign in again.');
      // Back after a drop: the call may have moved on without this page.
      if (s === 'online' && wasOffline) app.calls.socketBack();
      if (s === 'offline') wasOffline = true;
      else if (s === 'online') wasOffline = false;
    },
  });
  await reload();
  app.socket.start();
  window.onhashchange = route;
  await route();
  document.addEventListener('visibilitychange', () => { if (!document.hidden && app.current) app.view.markRead(); });
}

// Everything the sidebar shows, from REST (first load and after a resync).
async function reload() {
  const [teams, channels, unreads] = await Promise.all([
    get('/teams'), get('/users/me/channels'), get('/users/me/unreads'),
  ]);
  app.teams = teams;
  app.channels = new Map(channels.map((c) => [c.id, c]));
  snapshot.clear();
  for (const c of channels) snapshot.set(c.id, c.last_post_at);
  app.unreads = new Map(unreads.map((u) => [u.channel_id, u]));
  await Promise.all(channels.filter((c) => c.kind === 'direct' || c.kind === 'group').map(async (c) => {
    if (!app.members.has(c.id)) app.members.set(c.id, await get(`/channels/${enc(c.id)}/members`).catch(() => []));
  }));
  await app.calls.refresh([...app.channels.values()]);
  await app.sidebar.render();
}

async function route() {
  const hash = decodeURIComponent(location.hash);
  app.review.close();
  const review = hash.match(/^#\/review\/([A-Za-z0-9_-]+)(?:\?t=(\d+(?:\.\d+)?))?$/);
  if (review) {
    app.current = null;
    app.view.detach();
    await app.sidebar.render();
    await app.review.open(review[1], Number(review[2] ?? 0));
    return;
  }
  const search = hash.match(/^#\/search\/(.+)$/);
  if (search) {
    app.current = null;
    await app.sidebar.render();
    await app.view.search(search[1]);
    return;
  }
  const linked = hash.match(/^#\/p\/([A-Za-z0-9_-]+)$/);
  if (linked && await openPost(linked[1])) return;
  const m = hash.match(/^#\/c\/([A-Za-z0-9_-]+)$/);
  let id = m?.[1];
  if (!id || !app.channels.has(id)) {
    id = [...app.channels.values()].sort((a, b) => b.last_post_at - a.last_post_at)[0]?.id;
    if (!id) {
      replace(app.view.main, h('p', { class: 'empty' }, 'You are in no channel yet.'));
      return;
    }
    history.replaceState(null, '', `#/c/${id}`);
  }
  app.current = id;
  const u = app.unreads.get(id);
  if (u) { u.unread_count = 0; u.mention_count = 0; }
  await app.sidebar.render();
  await app.view.open(app.channels.get(id));
}

// `#/p/<post id>` (a notification's deep link): the post's channel, its
// thread open and the post marked. False when it cannot be shown; the
// route then goes on as for no channel.
async function openPost(postId) {
  let p;
  try {
    p = await get(`/posts/${enc(postId)}`);
  } catch {
    announce('That message is gone, or you cannot see it.');
    return false;
  }
  const channel = app.channels.get(p.channel_id);
  if (!channel) return false;
  app.current = channel.id;
  await app.sidebar.render();
  await app.view.open(channel);
  await app.view.showPost(p);
  return true;
}

async function onEvent(ev) {
  switch (ev.type) {
    case 'post_created': {
      const p = ev.post;
      const c = app.channels.get(p.channel_id);
      if (c) c.last_post_at = p.created_at;
      const counted = p.created_at <= (snapshot.get(p.channel_id) ?? -Infinity);
      if (!counted && p.user_id !== app.me.id && !p.root_id && (p.channel_id !== app.current || document.hidden)) {
        const u = app.unreads.get(p.channel_id) ?? { channel_id: p.channel_id, unread_count: 0, mention_count: 0 };
        u.unread_count++;
        if (p.message.includes(`@${app.me.username}`)) u.mention_count++;
        app.unreads.set(p.channel_id, u);
        await app.sidebar.render();
      }
      break;
    }
    case 'channel_viewed':
      if (ev.user_id === app.me.id) {
        app.unreads.delete(ev.channel_id);
        await app.sidebar.render();
      }
      break;
    case 'channel_created':
      app.channels.set(ev.channel.id, ev.channel);
      await reload();
      break;
    case 'member_joined':
    case 'member_left':
      if (ev.user_id === app.me.id) await reload();
      else if (app.members.has(ev.channel_id)) app.members.delete(ev.channel_id);
      break;
    default:
  }
  await app.view.onEvent(ev);
  await app.calls.onEvent(ev);
}

function onMessage(msg) {
  switch (msg.type) {
    case 'typing':
      app.view.onTyping(msg);
      break;
    case 'error':
      console.warn(`control refused a message: ${msg.code}: ${msg.message}`);
      app.calls.onError(msg);
      break;
    default:
      app.calls.onMessage(msg);
  }
}

boot().catch((e) => {
  console.error(e);
  announce(`Enclave failed to start: ${e.message}`);
});
