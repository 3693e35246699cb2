// keyward's dashboard: sign-in, then the API Keys, Audit Log and Workspaces screens.

import { ApiError, type Schemas, currentSession, currentWorkspace, resume, setWorkspace, signIn, signOut, v1 } from './api';
import { AuditScreen } from './audit';
import { h, replace } from './dom';
import { describeError } from './errors';
import { KeysScreen, forgetPlan } from './keys';
import { allows } from './scopes';
import { renderWorkspaces } from './workspaces';

const app = document.getElementById('app') ?? document.body;
const notice = h('div', { class: 'notice', role: 'status', 'aria-live': 'polite', id: 'notice' });
const alert = h('div', { class: 'error banner', role: 'alert', id: 'error', hidden: true });
const main = h('main', { id: 'main', tabindex: '-1' });

function say(text: string): void {
  alert.hidden = true;
  notice.textContent = text;
}

function fail(e: unknown): void {
  // The session ended (sign-out elsewhere, timeout, restart) or its key stopped working.
  if (e instanceof ApiError && e.status === 401) {
    signInScreen(e.code === 'MISSING_API_KEY' ? 'Your session has ended: sign in again.' : e);
    return;
  }
  alert.hidden = false;
  alert.textContent = describeError(e);
}

const ROUTES = [
  { hash: '#/keys', label: 'API Keys' },
  { hash: '#/audit', label: 'Audit Log' },
  { hash: '#/workspaces', label: 'Workspaces' },
];

function signInScreen(reason?: unknown, info?: string): void {
  const input = h('input', { id: 'sign-in-key', name: 'key', type: 'password', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'kw_live_…' });
  const error = h('p', { class: 'error', role: 'alert', id: 'sign-in-error', hidden: true });
  const status = h('p', { class: 'notice', role: 'status' }, info ?? '');
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h(
    'form',
    { class: 'sign-in', 'aria-labelledby': 'sign-in-title' },
    h('h1', { id: 'sign-in-title' }, 'Sign in to keyward'),
    status,
    h('p', {}, 'Sign in with an API key. The key is exchanged for a session that ends when you sign out, after 30 minutes without use, or after 8 hours; the browser keeps only a session cookie it cannot read, never the key.'),
    h('label', { for: 'sign-in-key' }, 'API key'),
    input,
    h('p', { class: 'hint' }, 'On a new server, use the root key keyward serve printed at its first start. Managing keys needs keys:read and keys:write; the audit log needs audit:read.'),
    error,
    button,
  );
  const show = (e: unknown): void => {
    error.hidden = false;
    if (e instanceof ApiError && e.code === 'FEATURE_NOT_IN_PLAN') {
      error.textContent = `Self-service API access is not enabled for this workspace's plan, so its keys cannot sign in. ${e.describe()}`;
    } else {
      error.textContent = describeError(e);
    }
  };
  if (reason) show(reason);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    error.hidden = true;
    const key = input.value.trim();
    if (!key) {
      show('Paste an API key.');
      return;
    }
    button.disabled = true;
    signIn(key)
      .then(() => {
        input.value = '';
        if (!location.hash) location.hash = '#/keys';
        return shell();
      })
      .catch(show)
      .finally(() => {
        button.disabled = false;
      });
  });
  replace(app, h('div', { class: 'centered' }, form));
  input.focus();
}

async function workspaceSwitcher(): Promise<HTMLElement | null> {
  const session = currentSession();
  if (!session || !allows(session.scopes, 'workspaces:admin')) return null;
  let list: Schemas['WorkspaceList'];
  try {
    list = await v1<Schemas['WorkspaceList']>('GET', '/workspaces');
  } catch {
    return null;
  }
  const current = currentWorkspace();
  const select = h('select', { id: 'workspace-switch' }, list.data.map((w) => h('option', { value: w.id, selected: w.id === current }, w.name)));
  select.addEventListener('change', () => switchWorkspace(select.value));
  return h('div', { class: 'switcher' }, h('label', { for: 'workspace-switch' }, 'Workspace'), select);
}

function switchWorkspace(id: string): void {
  setWorkspace(id);
  forgetPlan();
  void shell().then(() => say('Switched workspace.'));
}

async function shell(): Promise<void> {
  const session = currentSession();
  if (!session) return signInScreen();
  notice.textContent = '';
  const out = h('button', { type: 'button', id: 'sign-out' }, 'Sign out');
  out.addEventListener('click', () => {
    signOut()
      .catch(() => undefined)
      .then(() => signInScreen(undefined, 'Signed out: the session has ended on the server.'));
  });
  const nav = h('nav', { 'aria-label': 'Dashboard', class: 'tabsnav' }, ROUTES.map((r) => h('a', { href: r.hash, 'data-route': r.hash }, r.label)));
  const header = h(
    'header',
    { class: 'topbar' },
    h('a', { class: 'brand', href: '#/keys' }, 'keyward'),
    nav,
    await workspaceSwitcher(),
    h('div', { class: 'account' }, h('span', { class: 'who', title: session.scopes.join(' ') }, session.keyName), out),
  );
  replace(app, h('a', { class: 'skip', href: '#main' }, 'Skip to content'), header, h('div', { class: 'messages' }, notice, alert), main);
  await route();
}

async function route(): Promise<void> {
  if (!currentSession()) return;
  const hash = ROUTES.some((r) => r.hash === location.hash) ? location.hash : '#/keys';
  for (const a of document.querySelectorAll<HTMLAnchorElement>('nav.tabsnav a')) {
    if (a.dataset['route'] === hash) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  alert.hidden = true;
  try {
    if (hash === '#/audit') await new AuditScreen(main).render();
    else if (hash === '#/workspaces') await renderWorkspaces(main, switchWorkspace);
    else await new KeysScreen(main, { notice: say, error: fail }).render();
  } catch (e) {
    fail(e);
  }
}

async function start(): Promise<void> {
  try {
    const session = await resume();
    if (session) await shell();
    else signInScreen();
  } catch (e) {
    signInScreen(e);
  }
}

window.addEventListener('hashchange', () => {
  if (location.hash === '#main') return;
  void route();
});
void start();
