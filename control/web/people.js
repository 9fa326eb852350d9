// Picking people by typing part of their name: a combobox (WAI-ARIA's
// pattern: the input owns a listbox, arrows move, Enter picks, Escape
// closes) over GET /users/search, and the people picked so far as buttons
// that remove them. Used to start direct and group messages and to add
// people to a channel.

import { get, enc } from './api.js';
import { h, replace, announce } from './dom.js';

// Wait this long after a key before asking: one request per pause, not
// one per letter.
const TYPING_PAUSE_MS = 150;
const SHOWN = 8;
// control's bound (api/user_search.rs MAX_LIMIT).
const MAX_ASKED = 50;

let pickers = 0;

export class PeoplePicker {
  // label: the input's label; teamId: only that team's members;
  // exclude: ids never offered; max: most people picked (1 for one).
  constructor({ label, teamId = null, exclude = [], max = 7 }) {
    const n = ++pickers;
    this.teamId = teamId;
    this.exclude = new Set(exclude);
    this.max = max;
    this.picked = new Map(); // id -> user
    this.options = [];
    this.active = -1;
    this.asked = 0;
    this.onChange = () => {};
    const listId = `people-list-${n}`;
    const inputId = `people-input-${n}`;
    this.input = h('input', {
      id: inputId,
      type: 'text',
      role: 'combobox',
      autocomplete: 'off',
      spellcheck: 'false',
      'aria-autocomplete': 'list',
      'aria-expanded': 'false',
      'aria-controls': listId,
      'aria-describedby': `${inputId}-hint`,
      placeholder: 'Type a name or @username',
    });
    this.list = h('ul', { id: listId, role: 'listbox', class: 'people-options', 'aria-label': 'People found', hidden: true });
    this.chips = h('ul', { class: 'people-picked', 'aria-label': 'Picked' });
    this.status = h('p', { class: 'muted people-hint', id: `${inputId}-hint` },
      max === 1 ? 'Pick one person.' : `Pick up to ${max} people.`);
    this.el = h('div', { class: 'people' },
      h('label', { for: inputId }, label),
      this.chips,
      h('div', { class: 'people-box' }, this.input, this.list),
      this.status);
    this.input.addEventListener('input', () => this.typed());
    this.input.addEventListener('keydown', (e) => this.key(e));
    this.input.addEventListener('blur', () => setTimeout(() => {
      if (!this.el.contains(document.activeElement)) this.close();
    }, 100));
  }

  get ids() {
    return [...this.picked.keys()];
  }

  typed() {
    clearTimeout(this.timer);
    const q = this.input.value.trim();
    if (!q || q === '@') {
      this.close();
      return;
    }
    this.timer = setTimeout(() => this.ask(q), TYPING_PAUSE_MS);
  }

  async ask(q) {
    const mine = ++this.asked;
    let found;
    try {
      const team = this.teamId ? `&team_id=${enc(this.teamId)}` : '';
      // Enough to fill the list after leaving out who is excluded or picked.
      const limit = Math.min(MAX_ASKED, SHOWN + this.exclude.size + this.picked.size);
      found = await get(`/users/search?q=${enc(q)}&limit=${limit}${team}`);
    } catch (e) {
      if (mine === this.asked) this.showStatus(`Cannot look people up: ${e.message}`);
      return;
    }
    // An older answer that arrives late must not replace a newer one.
    if (mine !== this.asked) return;
    this.options = found.filter((u) => !this.exclude.has(u.id) && !this.picked.has(u.id)).slice(0, SHOWN);
    this.active = this.options.length ? 0 : -1;
    this.paint();
    announce(this.options.length ? `${this.options.length} people found` : 'Nobody found');
  }

  paint() {
    replace(this.list, this.options.length
      ? this.options.map((u, i) => h('li', {
        id: `${this.list.id}-${i}`,
        role: 'option',
        class: 'person',
        'aria-selected': String(i === this.active),
        dataset: { userId: u.id, username: u.username },
        // mousedown, not click: the input keeps focus.
        onmousedown: (e) => { e.preventDefault(); this.pick(u); },
      }, h('strong', {}, u.display_name || u.username), ' ', h('span', { class: 'muted' }, `@${u.username}`)))
      : h('li', { class: 'muted', role: 'option', 'aria-disabled': 'true', 'aria-selected': 'false' }, 'Nobody found'));
    this.list.hidden = false;
    this.input.setAttribute('aria-expanded', 'true');
    if (this.active >= 0) this.input.setAttribute('aria-activedescendant', `${this.list.id}-${this.active}`);
    else this.input.removeAttribute('aria-activedescendant');
  }

  close() {
    this.list.hidden = true;
    this.input.setAttribute('aria-expanded', 'false');
    this.input.removeAttribute('aria-activedescendant');
  }

  key(e) {
    const open = !this.list.hidden && this.options.length > 0;
    if (e.key === 'ArrowDown' && open) {
      e.preventDefault();
      this.active = (this.active + 1) % this.options.length;
      this.paint();
    } else if (e.key === 'ArrowUp' && open) {
      e.preventDefault();
      this.active = (this.active - 1 + this.options.length) % this.options.length;
      this.paint();
    } else if (e.key === 'Enter' && open && this.active >= 0) {
      // Picks; the dialog's form is not submitted.
      e.preventDefault();
      this.pick(this.options[this.active]);
    } else if (e.key === 'Escape' && !this.list.hidden) {
      // Closes the list only, not the dialog around it.
      e.preventDefault();
      e.stopPropagation();
      this.close();
    } else if (e.key === 'Backspace' && !this.input.value && this.picked.size) {
      this.unpick(this.ids[this.ids.length - 1]);
    }
  }

  pick(u) {
    if (this.picked.size >= this.max) {
      this.showStatus(this.max === 1 ? 'Only one person here: remove the one picked first.' : `At most ${this.max} people.`);
      return;
    }
    this.picked.set(u.id, u);
    this.input.value = '';
    this.options = [];
    this.close();
    this.paintChips();
    announce(`${u.display_name || u.username} added`);
    this.onChange();
  }

  unpick(id) {
    const u = this.picked.get(id);
    this.picked.delete(id);
    this.paintChips();
    if (u) announce(`${u.display_name || u.username} removed`);
    this.input.focus();
    this.onChange();
  }

  paintChips() {
    replace(this.chips, [...this.picked.values()].map((u) => h('li', {},
      h('button', {
        type: 'button',
        class: 'chip',
        'aria-label': `Remove ${u.display_name || u.username}`,
        onclick: () => this.unpick(u.id),
      }, u.display_name || u.username, h('span', { 'aria-hidden': 'true' }, ' ✕')))));
  }

  showStatus(text) {
    this.status.textContent = text;
  }
}
