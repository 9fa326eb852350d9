// A modal form in a native <dialog>: the browser keeps focus inside it,
// Escape cancels it, and focus goes back where it was when it closes.
// `submit(form)` does the work; what it throws is shown in the dialog
// (role=alert) and the dialog stays open so the person can fix it.

import { h } from './dom.js';

export function openDialog({ id, title, body, submitLabel, submit, cancelLabel = 'Cancel' }) {
  document.getElementById(id)?.remove();
  const titleId = `${id}-title`;
  const error = h('p', { class: 'error', role: 'alert', id: `${id}-error` });
  const ok = submitLabel && h('button', { type: 'submit', class: 'primary' }, submitLabel);
  const form = h('form', { method: 'dialog', class: 'dialog-form' },
    h('h2', { id: titleId }, title),
    body,
    error,
    h('div', { class: 'dialog-buttons' },
      h('button', { type: 'button', onclick: () => dialog.close() }, cancelLabel),
      ok));
  const dialog = h('dialog', { id, class: 'dialog', 'aria-labelledby': titleId }, form);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!submit) return;
    error.textContent = '';
    ok.disabled = true;
    try {
      if (await submit(form) !== false) dialog.close();
    } catch (err) {
      error.textContent = err.message;
    } finally {
      ok.disabled = false;
    }
  });
  dialog.addEventListener('close', () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  dialog.querySelector('input:not([type=hidden]), select, textarea, button')?.focus();
  return { dialog, form, error };
}

// A labelled field: the label, the control, and a hint it is described by.
export function field(label, control, hint) {
  const hintEl = hint && h('p', { class: 'muted hint', id: `${control.id}-hint` }, hint);
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control, hintEl);
}
