// Small DOM helpers. Text always goes in as text nodes, never as HTML:
// posts are plain text as their authors typed them.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function time(ms) {
  const d = new Date(ms);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return sameDay
    ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleString([], { dateStyle: 'short', timeStyle: 'short' });
}

export function duration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

// A polite announcement for screen readers (the live region in index.html).
export function announce(text) {
  const region = document.getElementById('announcer');
  if (region) region.textContent = text;
}

// Escape closes the innermost open menu; focus returns to its button.
export function menu(button, items) {
  const list = h('ul', { class: 'menu', role: 'menu', hidden: true });
  const close = () => {
    list.hidden = true;
    button.setAttribute('aria-expanded', 'false');
  };
  for (const it of items) {
    if (!it) continue;
    const b = h('button', { type: 'button', role: 'menuitem', onclick: () => { close(); button.focus(); it.run(); } }, it.label);
    list.append(h('li', { role: 'none' }, b));
  }
  button.setAttribute('aria-haspopup', 'menu');
  button.setAttribute('aria-expanded', 'false');
  button.addEventListener('click', () => {
    const open = list.hidden;
    document.querySelectorAll('.menu:not([hidden])').forEach((m) => { if (m !== list) m.hidden = true; });
    list.hidden = !open;
    button.setAttribute('aria-expanded', String(open));
    if (open) list.querySelector('button')?.focus();
  });
  list.addEventListener('keydown', (e) => {
    const btns = [...list.querySelectorAll('button')];
    const i = btns.indexOf(document.activeElement);
    if (e.key === 'Escape') { e.stopPropagation(); close(); button.focus(); }
    else if (e.key === 'ArrowDown') { e.preventDefault(); btns[(i + 1) % btns.length]?.focus(); }
    else if (e.key === 'ArrowUp') { e.preventDefault(); btns[(i - 1 + btns.length) % btns.length]?.focus(); }
  });
  list.addEventListener('focusout', (e) => {
    if (!list.contains(e.relatedTarget) && e.relatedTarget !== button) close();
  });
  return h('span', { class: 'menu-wrap' }, button, list);
}
