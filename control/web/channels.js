// Making and changing conversations: create a channel, browse and join a
// team's public channels, start a direct or group message, add people to
// a channel, list its members, leave it. Each is a dialog; a refusal from
// control is said in the person's words, in the dialog, which stays open.

import { get, post, enc, userName, ApiError } from './api.js';
import { h, replace, announce, menu } from './dom.js';
import { openDialog, field } from './dialog.js';
import { PeoplePicker } from './people.js';

// The name control accepts (a-z 0-9 _ -, at most 64), made from the title.
export function slug(text) {
  return text.normalize('NFKD').replace(/[\u0300-\u036f]/g, '').toLowerCase()
    .replace(/[^a-z0-9_-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 64);
}

// control's answer, said for people. `what` names the thing acted on.
function explain(err, what) {
  if (!(err instanceof ApiError)) return err;
  const say = {
    channel_name_taken: `A channel named “${what}” already exists in this team. Pick another name.`,
    forbidden: err.message === 'guests cannot create channels'
      ? 'Guests cannot create channels.'
      : `Not allowed: ${err.message}.`,
    not_found: 'It is gone, or you can no longer see it.',
    network: 'The server cannot be reached. Try again.',
  }[err.code];
  return new Error(say ?? `${err.message.charAt(0).toUpperCase()}${err.message.slice(1)}.`);
}

export class ChannelActions {
  constructor(app) {
    this.app = app;
  }

  // Shows the channel after the sidebar learned about it.
  async go(channelId) {
    await this.app.reload();
    this.app.closeNav?.();
    location.hash = `#/c/${channelId}`;
  }

  // ---- sidebar ----

  toolbar() {
    const guest = this.app.me.system_role === 'guest';
    return h('div', { class: 'sidebar-tools', role: 'group', 'aria-label': 'New conversations' },
      !guest && h('button', { type: 'button', id: 'create-channel', title: 'Create a channel', onclick: () => this.create() }, '+ Channel'),
      !guest && h('button', { type: 'button', id: 'browse-channels', title: 'Browse public channels', onclick: () => this.browse() }, 'Browse'),
      h('button', { type: 'button', id: 'new-message', title: 'New direct or group message', onclick: () => this.message() }, '+ Message'));
  }

  create(teamId) {
    const teams = this.app.teams;
    if (!teams.length) {
      openDialog({ id: 'create-dialog', title: 'Create a channel', cancelLabel: 'Close', body: h('p', {}, 'You are in no team yet: a system admin adds you to one.') });
      return;
    }
    const team = h('select', { id: 'new-channel-team' },
      teams.map((t) => h('option', { value: t.id, selected: t.id === teamId }, t.display_name || t.name)));
    const title = h('input', { id: 'new-channel-title', required: true, maxlength: 64, autocomplete: 'off' });
    const name = h('input', { id: 'new-channel-name', required: true, maxlength: 64, pattern: '[a-z0-9_\\-]+', autocomplete: 'off', spellcheck: 'false' });
    const purpose = h('input', { id: 'new-channel-purpose', maxlength: 250, autocomplete: 'off' });
    let nameTouched = false;
    title.addEventListener('input', () => { if (!nameTouched) name.value = slug(title.value); });
    name.addEventListener('input', () => { nameTouched = true; });
    const kind = (value, label, hint, checked) => h('label', { class: 'choice' },
      h('input', { type: 'radio', name: 'kind', value, checked }), ' ', h('span', {}, h('strong', {}, label), h('br'), h('span', { class: 'muted' }, hint)));
    openDialog({
      id: 'create-dialog',
      title: 'Create a channel',
      submitLabel: 'Create',
      body: [
        teams.length > 1 ? field('Team', team) : h('p', { class: 'muted' }, `In ${teams[0].display_name || teams[0].name}`),
        field('Name', title, 'What people see, e.g. “Release planning”.'),
        field('Address', name, 'Lower-case letters, digits, - and _: the channel’s name in its team.'),
        h('fieldset', { class: 'field' }, h('legend', {}, 'Who can join'),
          kind('open', 'Public', 'Anyone in the team can find and join it.', true),
          kind('private', 'Private', 'Only people added by a member.', false)),
        field('Purpose (optional)', purpose),
      ],
      submit: async (form) => {
        const teamId = teams.length > 1 ? team.value : teams[0].id;
        const want = name.value.trim() || slug(title.value);
        let ch;
        try {
          ch = await post(`/teams/${enc(teamId)}/channels`, {
            name: want,
            display_name: title.value.trim(),
            kind: form.querySelector('input[name=kind]:checked').value,
            purpose: purpose.value.trim(),
          });
        } catch (e) {
          if (e.code === 'channel_name_taken') name.focus();
          throw explain(e, want);
        }
        announce(`Channel ${ch.display_name} created`);
        await this.go(ch.id);
      },
    });
  }

  async browse() {
    const filter = h('input', { id: 'browse-filter', type: 'search', autocomplete: 'off' });
    const list = h('ul', { class: 'browse-list', id: 'browse-list', 'aria-live': 'polite' }, h('li', { class: 'muted' }, 'Loading…'));
    const { dialog, error } = openDialog({
      id: 'browse-dialog',
      title: 'Browse public channels',
      cancelLabel: 'Close',
      body: [field('Find a channel', filter), list],
    });
    let found = [];
    try {
      const perTeam = await Promise.all(this.app.teams.map(async (t) => (await get(`/teams/${enc(t.id)}/channels`))
        .filter((c) => c.kind === 'open' && !this.app.channels.has(c.id))
        .map((c) => ({ ...c, team: t.display_name || t.name }))));
      found = perTeam.flat().sort((a, b) => (a.display_name || a.name).localeCompare(b.display_name || b.name));
    } catch (e) {
      error.textContent = explain(e).message;
    }
    const paint = () => {
      const q = filter.value.trim().toLowerCase();
      const shown = found.filter((c) => !q || `${c.display_name} ${c.name} ${c.purpose}`.toLowerCase().includes(q));
      replace(list, shown.length ? shown.map((c) => h('li', { class: 'browse-item', dataset: { channel: c.id } },
        h('div', {}, h('strong', {}, c.display_name || c.name), ' ', h('span', { class: 'muted' }, `· ${c.team}`),
          c.purpose && h('p', { class: 'muted' }, c.purpose)),
        h('button', {
          type: 'button',
          'aria-label': `Join ${c.display_name || c.name}`,
          onclick: async (e) => {
            e.target.disabled = true;
            try {
              await post(`/channels/${enc(c.id)}/join`);
              announce(`Joined ${c.display_name || c.name}`);
              dialog.close();
              await this.go(c.id);
            } catch (err) {
              error.textContent = explain(err).message;
              e.target.disabled = false;
            }
          },
        }, 'Join')))
        : h('li', { class: 'muted' }, found.length ? 'No channel matches.' : 'No public channel you have not joined.'));
    };
    filter.addEventListener('input', paint);
    paint();
  }

  message() {
    const picker = new PeoplePicker({ label: 'To', exclude: [this.app.me.id], max: 7 });
    openDialog({
      id: 'message-dialog',
      title: 'New message',
      submitLabel: 'Go',
      body: [picker.el, h('p', { class: 'muted' }, 'One person: a direct message. Two to seven: a group message.')],
      submit: async () => {
        const ids = picker.ids;
        if (!ids.length) {
          picker.input.focus();
          throw new Error('Pick at least one person: type part of a name, then choose from the list.');
        }
        let ch;
        try {
          ch = ids.length === 1
            ? await post('/channels/direct', { user_id: ids[0] })
            : await post('/channels/group', { user_ids: ids });
        } catch (e) {
          throw explain(e);
        }
        this.app.members.delete(ch.id);
        await this.go(ch.id);
      },
    });
  }

  // ---- the open channel ----

  // The channel header's menu (a button with a menu, keyboard included).
  headerMenu(channel) {
    const fixed = channel.kind === 'direct' || channel.kind === 'group';
    const button = h('button', { type: 'button', class: 'icon', id: 'channel-menu', 'aria-label': 'Channel actions' }, '⋯');
    return menu(button, [
      !fixed && { label: 'Add people…', run: () => this.addPeople(channel) },
      { label: 'Members…', run: () => this.members(channel) },
      channel.kind !== 'direct' && { label: channel.kind === 'group' ? 'Leave conversation…' : 'Leave channel…', run: () => this.leave(channel) },
    ]);
  }

  async addPeople(channel) {
    const current = await get(`/channels/${enc(channel.id)}/members`).catch(() => []);
    const picker = new PeoplePicker({ label: 'People to add', teamId: channel.team_id, exclude: current, max: 20 });
    openDialog({
      id: 'add-dialog',
      title: `Add people to ${channel.display_name || channel.name}`,
      submitLabel: 'Add',
      body: [picker.el, h('p', { class: 'muted' }, 'Only members of the channel’s team can be added.')],
      submit: async () => {
        if (!picker.ids.length) {
          picker.input.focus();
          throw new Error('Pick at least one person.');
        }
        const failed = [];
        for (const id of picker.ids) {
          try {
            await post(`/channels/${enc(channel.id)}/members`, { user_id: id });
            picker.exclude.add(id);
          } catch (e) {
            failed.push(`${await userName(id)}: ${explain(e).message}`);
          }
        }
        if (failed.length) throw new Error(`Not added: ${failed.join(' ')}`);
        announce(`${picker.ids.length} added to ${channel.display_name || channel.name}`);
        return true;
      },
    });
  }

  async members(channel) {
    const list = h('ul', { class: 'member-list', id: 'member-list' }, h('li', { class: 'muted' }, 'Loading…'));
    const { error } = openDialog({ id: 'members-dialog', title: 'Members', cancelLabel: 'Close', body: list });
    try {
      const ids = await get(`/channels/${enc(channel.id)}/members`);
      const names = await Promise.all(ids.map(userName));
      replace(list, names.sort((a, b) => a.localeCompare(b)).map((n) => h('li', {}, n)));
    } catch (e) {
      error.textContent = explain(e).message;
    }
  }

  leave(channel) {
    const label = channel.display_name || channel.name || 'this conversation';
    openDialog({
      id: 'leave-dialog',
      title: `Leave ${channel.kind === 'group' ? 'this conversation' : label}?`,
      submitLabel: 'Leave',
      body: h('p', {}, {
        open: 'You can join it again from Browse.',
        private: 'To come back, a member has to add you again.',
        group: 'You will no longer see its messages.',
      }[channel.kind]),
      submit: async () => {
        try {
          await post(`/channels/${enc(channel.id)}/leave`);
        } catch (e) {
          throw explain(e);
        }
        announce(`You left ${label}`);
        await this.app.reload();
        location.hash = '#/';
      },
    });
  }
}
