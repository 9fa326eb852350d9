// Teams and their channels, then direct and group messages, each with its
// unread badge. Links are plain anchors (#/c/<id>): the keyboard and the
// browser's history work as for any page.

import { h, replace } from './dom.js';
import { userName } from './api.js';

export class Sidebar {
  constructor(el, app) {
    this.app = app;
    // The buttons stay while the lists below them are redrawn, so a
    // button keeps the keyboard's focus when an event arrives.
    this.el = h('div', { class: 'sidebar-lists' });
    replace(el, app.actions?.toolbar(), this.el);
  }

  async channelLabel(c) {
    if (c.kind !== 'direct' && c.kind !== 'group') return c.display_name || c.name;
    const others = (this.app.members.get(c.id) ?? []).filter((id) => id !== this.app.me.id);
    if (!others.length) return c.display_name || 'Direct message';
    return (await Promise.all(others.map(userName))).join(', ');
  }

  item(c, label) {
    const unread = this.app.unreads.get(c.id);
    const count = unread?.unread_count ?? 0;
    const mentions = unread?.mention_count ?? 0;
    const current = this.app.current === c.id;
    const call = this.app.calls?.running.has(c.id);
    return h('li', {},
      h('a', {
        href: `#/c/${c.id}`,
        class: `channel${count ? ' unread' : ''}`,
        'aria-current': current ? 'page' : false,
        dataset: { channel: c.id },
      },
      h('span', { class: 'channel-kind', 'aria-hidden': 'true' }, c.kind === 'private' ? '🔒' : c.kind === 'open' ? '#' : '@'),
      h('span', { class: 'channel-name' }, label),
      call && h('span', { class: 'call-dot', title: 'A call is running' }, h('span', { class: 'sr-only' }, ', call running')),
      count > 0 && h('span', { class: `badge${mentions ? ' mention' : ''}`, dataset: { unread: c.id } },
        h('span', { 'aria-hidden': 'true' }, String(mentions || count)),
        h('span', { class: 'sr-only' }, mentions ? `, ${mentions} mentions` : `, ${count} unread`)),
      ));
  }

  async render() {
    const { teams, channels } = this.app;
    const byTeam = new Map();
    const direct = [];
    for (const c of channels.values()) {
      if (c.team_id) {
        if (!byTeam.has(c.team_id)) byTeam.set(c.team_id, []);
        byTeam.get(c.team_id).push(c);
      } else direct.push(c);
    }
    const sections = [];
    for (const t of teams) {
      const list = (byTeam.get(t.id) ?? []).sort((a, b) => (a.display_name || a.name).localeCompare(b.display_name || b.name));
      const id = `team-${t.id}`;
      sections.push(h('section', { 'aria-labelledby': id },
        h('h2', { id }, t.display_name || t.name),
        h('ul', { class: 'channels' }, await Promise.all(list.map(async (c) => this.item(c, await this.channelLabel(c))))),
      ));
    }
    direct.sort((a, b) => b.last_post_at - a.last_post_at);
    sections.push(h('section', { 'aria-labelledby': 'dm-title' },
      h('h2', { id: 'dm-title' }, 'Direct messages'),
      direct.length
        ? h('ul', { class: 'channels' }, await Promise.all(direct.map(async (c) => this.item(c, await this.channelLabel(c)))))
        : h('p', { class: 'muted' }, 'None yet.'),
    ));
    replace(this.el, sections);
  }
}
