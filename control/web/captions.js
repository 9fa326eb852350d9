// Live captions in a call (signaling's `call_caption`, sent by the
// captioning bot): a few lines with the speaker's name, newest last, each
// fading out a while after it arrived so the area never holds stale talk.

import { h } from './dom.js';
import { userName } from './api.js';

/** How long a caption line stays before it fades. */
export const CAPTION_SHOWN_MS = 6000;
// Matches the opacity transition of `.caption-line.fading` in style.css.
const FADE_MS = 600;
/** Lines kept at most; older ones go at once when a new one comes. */
export const CAPTION_LINES = 3;

export class LiveCaptions {
  /** `el` is the call's caption area; it is hidden while it has no line. */
  constructor(el) {
    this.el = el;
  }

  /** Shows one `call_caption` message. */
  add(msg) {
    const text = String(msg.text ?? '').trim();
    if (!text) return;
    const who = h('strong', { class: 'speaker' });
    const line = h('p', { class: 'caption-line', dataset: { user: msg.user_id ?? '' } }, who, h('span', { class: 'text' }, text));
    // Appended now, named when the name is known: lines keep the order
    // they came in even when a name takes longer to look up.
    this.el.append(line);
    this.el.hidden = false;
    while (this.el.children.length > CAPTION_LINES) this.el.firstElementChild.remove();
    userName(msg.user_id).then((n) => { who.textContent = `${n}: `; });
    setTimeout(() => {
      line.classList.add('fading');
      setTimeout(() => this.drop(line), FADE_MS);
    }, CAPTION_SHOWN_MS);
  }

  drop(line) {
    line.remove();
    if (!this.el.children.length) this.el.hidden = true;
  }
}
