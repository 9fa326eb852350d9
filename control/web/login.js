// The sign-in page: a password form for local accounts, and the single
// sign-on button when control offers it (/auth/methods). `returnTo`: where
// single sign-on comes back to (default: this page at its current route).

import { api, get, ApiError } from './api.js';
import { h, replace } from './dom.js';

export async function showLogin(root, onSignedIn, notice, { returnTo } = {}) {
  let methods = { password: true };
  try {
    methods = await get('/auth/methods');
  } catch {
    // Offer the form anyway: the error shows on submit.
  }
  const error = h('p', { class: 'error', id: 'login-error', role: 'alert' }, notice ?? '');
  const username = h('input', { id: 'login-username', name: 'username', autocomplete: 'username', required: true, 'aria-describedby': 'login-error' });
  const password = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true, 'aria-describedby': 'login-error' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { class: 'login-form', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Sign in to Enclave'),
    methods.password !== false && [
      h('label', { for: 'login-username' }, 'Username'), username,
      h('label', { for: 'login-password' }, 'Password'), password,
      submit,
    ],
    methods.oidc && h('a', {
      class: 'button sso',
      href: `${methods.oidc.login_url}${methods.oidc.login_url.includes('?') ? '&' : '?'}return_to=${encodeURIComponent(returnTo ?? '/' + location.hash)}`,
    }, methods.oidc.button_text || 'Sign in with single sign-on'),
    error,
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    submit.disabled = true;
    error.textContent = '';
    try {
      const r = await api('POST', '/auth/login', { username: username.value.trim(), password: password.value });
      onSignedIn(r.user);
    } catch (err) {
      error.textContent = err instanceof ApiError && err.code === 'invalid_credentials'
        ? 'Wrong username or password.'
        : err.message;
      password.select();
    } finally {
      submit.disabled = false;
    }
  });
  replace(root, h('main', { id: 'main', class: 'login' }, form));
  (methods.password !== false ? username : form.querySelector('a'))?.focus();
}
