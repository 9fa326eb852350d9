// @mention completion in a message box: typing "@" and the start of a
// name lists matching people (GET /users/search); arrows move, Enter or
// Tab puts "@username " in place, Escape closes the list. The box keeps
// the focus throughout, and its own Enter (send) works when no list shows.

import { get, enc } from './api.js';
import { h, replace, announce } from './dom.js';

const TYPING_PAUSE_MS = 150;
const SHOWN = 6;
// "@" at the start or after a space, then what a username may hold.
const AT_WORD = /(^|\s)@([a-z0-9._-]{1,64})$/i;

let lists = 0;

export class MentionCompleter {
  // Call before the box's own keydown handlers are added: this one must
  // see Enter first.
  constructor(input) {
    this.input = input;
    this.options = [];
    this.active = -1;
    this.asked = 0;
    this.list = h('ul', { id: `mention-list-${++lists}`, role: 'listbox', class: 'people-options mention-options', 'aria-label': 'People to mention', hidden: true });
    input.setAttribute('aria-controls', this.list.id);
    input.setAttribute('aria-autocomplete', 'list');
    input.addEventListener('input', () => this.typed());
    input.addEventListener('keydown', (e) => this.key(e));
    input.addEventListener('blur', () => setTimeout(() => this.close(), 100));
  }

  // The "@word" just before the caret, if any.
  word() {
    const before = this.input.value.slice(0, this.input.selectionStart);
    const m = before.match(AT_WORD);
    return m ? { text: m[2], start: before.length - m[2].length - 1 } : null;
  }

  typed() {
    clearTimeout(this.timer);
    const w = this.word();
    if (!w) {
      this.close();
      return;
    }
    this.timer = setTimeout(() => this.ask(w.text), TYPING_PAUSE_MS);
  }

  async ask(q) {
    const mine = ++this.asked;
    let found;
    try {
      found = await get(`/users/search?q=${enc(q)}&limit=${SHOWN}`);
    } catch {
      return; // No list; the person types the name out.
    }
    if (mine !== this.asked || this.word()?.text !== q) return;
    this.options = found;
    this.active = found.length ? 0 : -1;
    if (!found.length) {
      this.close();
      return;
    }
    this.paint();
    announce(`${found.length} people to mention: arrows to choose, Enter to insert`);
  }

  paint() {
    replace(this.list, this.options.map((u, i) => h('li', {
      id: `${this.list.id}-${i}`,
      role: 'option',
      class: 'person',
      'aria-selected': String(i === this.active),
      dataset: { username: u.username },
      onmousedown: (e) => { e.preventDefault(); this.insert(u); },
    }, h('strong', {}, `@${u.username}`), ' ', h('span', { class: 'muted' }, u.display_name))));
    this.list.hidden = false;
    this.input.setAttribute('aria-activedescendant', `${this.list.id}-${this.active}`);
  }

  close() {
    this.list.hidden = true;
    this.options = [];
    this.input.removeAttribute('aria-activedescendant');
  }

  key(e) {
    if (this.list.hidden || !this.options.length) return;
    const n = this.options.length;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      this.active = (this.active + (e.key === 'ArrowDown' ? 1 : n - 1)) % n;
      this.paint();
    } else if ((e.key === 'Enter' && !e.shiftKey) || e.key === 'Tab') {
      this.insert(this.options[this.active]);
    } else if (e.key === 'Escape') {
      this.close();
    } else {
      return;
    }
    // Handled here: not a new line, not a send, not the thread's Escape.
    e.preventDefault();
    e.stopImmediatePropagation();
  }

  insert(u) {
    const w = this.word();
    if (!w) return;
    const caret = this.input.selectionStart;
    const text = this.input.value;
    const mention = `@${u.username} `;
    this.input.value = text.slice(0, w.start) + mention + text.slice(caret);
    const at = w.start + mention.length;
    this.input.setSelectionRange(at, at);
    this.close();
    announce(`${u.display_name || u.username} mentioned`);
  }
}
