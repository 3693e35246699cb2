// The API Keys screen: the list with its filter tabs and paging, Create API Key, and each row's
// ⋮ menu (View Details, Edit Key, Rotate Key, Activate/Deactivate, Revoke Key, Delete Key).

import { type ApiKey, ApiError, type KeyStatus, type Schemas, currentSession, currentWorkspace, query, v1 } from './api';
import { usageChart } from './chart';
import { confirmAction, formDialog, openDialog, showSecretOnce } from './dialogs';
import { h, pager, replace, when } from './dom';
import { openMenu } from './menu';
import { allows, parseScopes, scopesError } from './scopes';

type Filter = 'all' | KeyStatus;
const FILTERS: { id: Filter; label: string }[] = [
  { id: 'all', label: 'All' },
  { id: 'active', label: 'Active' },
  { id: 'inactive', label: 'Inactive' },
  { id: 'revoked', label: 'Revoked' },
];
const PAGE_SIZE = 20;
const STATUS_LABEL: Record<KeyStatus, string> = { active: 'Active', inactive: 'Inactive', revoked: 'Revoked' };

/** What the screen tells the rest of the app. */
export interface Notify {
  notice(text: string): void;
  error(e: unknown): void;
}

interface PlanInfo {
  plan: Schemas['PlanView'];
  /** Keys neither revoked nor deleted, the ones the plan's limit counts; counted only when the plan has a limit. */
  count: number | null;
}

// The workspace's plan changes rarely: read it once a minute at most (the root key's default
// rate limit is 60 requests a minute, and every screen needs the plan).
let planCache: { workspace: string; at: number; plan: Schemas['PlanView'] | null } | null = null;

/** Forgets the cached plan (after a workspace switch or a plan change). */
export function forgetPlan(): void {
  planCache = null;
}

async function currentPlan(ws: string): Promise<Schemas['PlanView'] | null> {
  if (planCache && planCache.workspace === ws && Date.now() - planCache.at < 60_000) return planCache.plan;
  const [workspace, plans] = await Promise.all([
    v1<Schemas['WorkspaceView']>('GET', `/workspaces/${ws}`),
    v1<Schemas['PlanList']>('GET', '/plans'),
  ]);
  const plan = plans.data.find((p) => p.id === workspace.planId) ?? null;
  planCache = { workspace: ws, at: Date.now(), plan };
  return plan;
}

/**
 * The current workspace's plan and, when it limits keys (or `alwaysCount`), how many keys count
 * against the limit; null when the key may not read them.
 */
export async function planInfo(alwaysCount = false): Promise<PlanInfo | null> {
  const session = currentSession();
  const ws = currentWorkspace();
  if (!session || !ws || !allows(session.scopes, 'workspaces:read')) return null;
  const plan = await currentPlan(ws);
  if (!plan) return null;
  let count: number | null = null;
  if (plan.apiAccess && (alwaysCount || plan.maxKeys != null) && allows(session.scopes, 'keys:read')) {
    count = 0;
    let cursor: string | null = null;
    for (let i = 0; i < 50; i++) {
      const page: Schemas['KeyPage'] = await v1<Schemas['KeyPage']>('GET', `/keys${query({ limit: 100, cursor })}`);
      count += page.data.filter((k) => k.status !== 'revoked').length;
      cursor = page.nextCursor ?? null;
      if (!cursor) break;
    }
  }
  return { plan, count };
}

export class KeysScreen {
  private filter: Filter = 'all';
  private cursors: (string | null)[] = [null];
  private readonly list = h('div', { class: 'list' });
  private readonly limitLine = h('p', { class: 'limit', id: 'key-limit' });
  private readonly createButton = h('button', { type: 'button', class: 'primary', id: 'create-key' }, 'Create API Key');
  private readonly tabs: HTMLButtonElement[] = [];

  constructor(
    private readonly root: HTMLElement,
    private readonly notify: Notify,
  ) {}

  async render(): Promise<void> {
    const session = currentSession();
    if (!session) return;
    const heading = h('div', { class: 'heading' }, h('h1', {}, 'API Keys'), this.createButton);
    if (!allows(session.scopes, 'keys:read')) {
      replace(
        this.root,
        h('h1', {}, 'API Keys'),
        h(
          'div',
          { class: 'explain', role: 'note' },
          h('h2', {}, 'This key cannot list API keys'),
          h('p', {}, `You signed in with “${session.keyName}”, which has the scopes `, h('code', {}, session.scopes.join(' ') || '(none)'), '. Listing keys needs the ', h('code', {}, 'keys:read'), ' scope (and creating or changing them ', h('code', {}, 'keys:write'), ').'),
          h('p', {}, 'Sign out and sign in with a key that holds these scopes, for example the root key keyward printed at its first start.'),
        ),
      );
      return;
    }
    this.createButton.onclick = () => this.create();
    const tablist = h('div', { role: 'tablist', 'aria-label': 'Filter keys by status', class: 'tabs' });
    this.tabs.length = 0;
    for (const f of FILTERS) {
      const tab = h('button', { type: 'button', role: 'tab', id: `tab-${f.id}`, 'aria-controls': 'key-list', 'aria-selected': String(f.id === this.filter), tabindex: f.id === this.filter ? '0' : '-1' }, f.label);
      tab.addEventListener('click', () => this.setFilter(f.id));
      tab.addEventListener('keydown', (ev) => this.tabKey(ev, f.id));
      this.tabs.push(tab);
      tablist.append(tab);
    }
    this.list.id = 'key-list';
    this.list.setAttribute('role', 'tabpanel');
    this.list.setAttribute('aria-labelledby', `tab-${this.filter}`);
    replace(this.root, heading, this.limitLine, tablist, this.list);
    await this.reload();
  }

  private tabKey(ev: KeyboardEvent, current: Filter): void {
    const i = FILTERS.findIndex((f) => f.id === current);
    const step = ev.key === 'ArrowRight' ? 1 : ev.key === 'ArrowLeft' ? -1 : 0;
    if (!step) return;
    ev.preventDefault();
    const next = FILTERS[(i + step + FILTERS.length) % FILTERS.length];
    if (next) {
      void this.setFilter(next.id);
      this.tabs.find((t) => t.id === `tab-${next.id}`)?.focus();
    }
  }

  private async setFilter(f: Filter): Promise<void> {
    this.filter = f;
    this.cursors = [null];
    for (const t of this.tabs) {
      const on = t.id === `tab-${f}`;
      t.setAttribute('aria-selected', String(on));
      t.tabIndex = on ? 0 : -1;
    }
    this.list.setAttribute('aria-labelledby', `tab-${f}`);
    await this.load();
  }

  /** "N of M keys", and Create disabled (with the reason) at the limit or without keys:write. */
  private async refreshLimit(): Promise<void> {
    const session = currentSession();
    if (!session) return;
    let info: PlanInfo | null = null;
    try {
      info = await planInfo();
    } catch (e) {
      this.notify.error(e);
    }
    const reasons: string[] = [];
    replace(this.limitLine);
    if (info && !info.plan.apiAccess) {
      replace(
        this.root,
        h('h1', {}, 'API Keys'),
        h('div', { class: 'explain', role: 'note', id: 'no-api-access' }, h('h2', {}, 'API access is not enabled'), h('p', {}, `Self-service API access is not enabled for the plan “${info.plan.name}” of this workspace, so it has no API keys to manage here. Move the workspace to a plan that includes API access (Workspaces), or ask the deployment's owner.`)),
      );
      throw new StopRender();
    }
    if (info && info.count !== null && info.plan.maxKeys != null) {
      const max = info.plan.maxKeys;
      this.limitLine.textContent = `${info.count} of ${max} keys (plan “${info.plan.name}”; revoked keys do not count)`;
      if (info.count >= max) reasons.push(`The plan “${info.plan.name}” allows ${max} keys and the workspace has ${info.count}: revoke a key to create another.`);
    }
    if (!allows(session.scopes, 'keys:write')) reasons.push('Creating keys needs the keys:write scope, which this key lacks.');
    this.createButton.disabled = reasons.length > 0;
    if (reasons.length > 0) {
      const why = h('span', { id: 'create-disabled-why', class: 'why' }, reasons.join(' '));
      this.limitLine.append(' ', why);
      this.createButton.setAttribute('aria-describedby', 'create-disabled-why');
      this.createButton.title = reasons.join(' ');
    } else {
      this.createButton.removeAttribute('aria-describedby');
      this.createButton.removeAttribute('title');
    }
  }

  private async load(): Promise<void> {
    const cursor = this.cursors[this.cursors.length - 1] ?? null;
    let page: Schemas['KeyPage'];
    try {
      page = await v1<Schemas['KeyPage']>('GET', `/keys${query({ status: this.filter === 'all' ? null : this.filter, cursor, limit: PAGE_SIZE })}`);
    } catch (e) {
      replace(this.list, h('p', { class: 'error', role: 'alert' }, e instanceof ApiError ? e.describe() : String(e)));
      return;
    }
    const rows = page.data.map((k) => this.row(k));
    const table = h(
      'table',
      { class: 'keys' },
      h('caption', { class: 'sr-only' }, `API keys, ${FILTERS.find((f) => f.id === this.filter)?.label ?? ''}`),
      h('thead', {}, h('tr', {}, ['Name', 'Key', 'Status', 'Last used', 'Created'].map((c) => h('th', { scope: 'col' }, c)), h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')))),
      h('tbody', {}, rows),
    );
    const empty = h('p', { class: 'empty' }, this.filter === 'all' ? 'No keys yet. Create one with Create API Key.' : `No ${this.filter} keys.`);
    replace(this.list, page.data.length ? table : empty, pager(this.cursors, page.nextCursor, () => void this.load(), 'Pages of keys'));
  }

  private row(k: ApiKey): HTMLTableRowElement {
    const menuButton = h('button', { type: 'button', class: 'kebab', 'aria-haspopup': 'menu', 'aria-expanded': 'false', 'aria-label': `Actions for ${k.name}` }, '⋮');
    menuButton.addEventListener('click', () => openMenu(menuButton, this.actions(k)));
    return h(
      'tr',
      { 'data-key-id': k.id },
      h('td', { 'data-label': 'Name', class: 'name' }, k.name),
      h('td', { 'data-label': 'Key' }, h('code', { class: 'masked' }, masked(k))),
      h('td', { 'data-label': 'Status' }, h('span', { class: `badge ${k.status}` }, STATUS_LABEL[k.status])),
      h('td', { 'data-label': 'Last used' }, k.lastUsedAt ? when(k.lastUsedAt) : 'Never'),
      h('td', { 'data-label': 'Created' }, when(k.createdAt)),
      h('td', { class: 'menu-cell' }, menuButton),
    );
  }

  private actions(k: ApiKey): { label: string; danger?: boolean; run: () => void }[] {
    const items: { label: string; danger?: boolean; run: () => void }[] = [{ label: 'View Details', run: () => void this.details(k) }];
    // Changing keys needs keys:write: a key without it is offered only the details.
    if (!allows(currentSession()?.scopes ?? [], 'keys:write')) return items;
    if (k.status !== 'revoked') {
      items.push({ label: 'Edit Key', run: () => this.edit(k) });
      items.push({ label: 'Rotate Key', run: () => this.rotate(k) });
      if (k.status === 'active') items.push({ label: 'Deactivate', run: () => void this.simple(k, 'deactivate', `“${k.name}” is deactivated: it stops working at once.`) });
      else items.push({ label: 'Activate', run: () => void this.simple(k, 'activate', `“${k.name}” is active again.`) });
      items.push({ label: 'Revoke Key', danger: true, run: () => void this.revoke(k) });
    } else {
      items.push({ label: 'Delete Key', danger: true, run: () => void this.remove(k) });
    }
    return items;
  }

  private async reload(): Promise<void> {
    try {
      await this.refreshLimit();
      await this.load();
    } catch (e) {
      if (!(e instanceof StopRender)) this.notify.error(e);
    }
  }

  private async simple(k: ApiKey, action: 'activate' | 'deactivate', done: string): Promise<void> {
    try {
      await v1<ApiKey>('POST', `/keys/${k.id}/${action}`);
      this.notify.notice(done);
    } catch (e) {
      this.notify.error(e);
    }
    await this.reload();
  }

  private async revoke(k: ApiKey): Promise<void> {
    const ok = await confirmAction('Revoke Key', `Revoke “${k.name}” (${masked(k)})? Every request with it is refused from now on, with 401. Revoking cannot be undone.`, 'Revoke Key', true);
    if (!ok) return;
    try {
      await v1<ApiKey>('POST', `/keys/${k.id}/revoke`);
      this.notify.notice(`“${k.name}” is revoked. It is listed under Revoked.`);
    } catch (e) {
      this.notify.error(e);
    }
    await this.reload();
  }

  private async remove(k: ApiKey): Promise<void> {
    const ok = await confirmAction('Delete Key', `Delete “${k.name}” (${masked(k)}) permanently? It disappears from the list; its audit events stay. This cannot be undone.`, 'Delete Key', true);
    if (!ok) return;
    try {
      await v1<void>('DELETE', `/keys/${k.id}`);
      this.notify.notice(`“${k.name}” is deleted.`);
    } catch (e) {
      this.notify.error(e);
    }
    await this.reload();
  }

  private create(): void {
    const f = keyFields({ name: '', scopes: [], resources: [], active: true }, true);
    formDialog('Create API Key', f.nodes, 'Create', async (parts) => {
      const body = f.read(true);
      if (!body) return;
      const created = await v1<Schemas['CreatedApiKey']>('POST', '/keys', body);
      parts.close();
      await showSecretOnce('API key created', created.key.name, created.secret);
      this.notify.notice(`“${created.key.name}” is created.`);
      await this.reload();
    });
  }

  private edit(k: ApiKey): void {
    const f = keyFields({ name: k.name, scopes: k.scopes, resources: k.resources, active: k.status === 'active' }, false);
    formDialog('Edit Key', [h('p', { class: 'hint' }, 'The key’s value does not change: integrations using it keep working.'), ...f.nodes], 'Save', async (parts) => {
      const body = f.read(false);
      if (!body) return;
      const patch: Schemas['UpdateKeyRequest'] = { name: body.name, scopes: body.scopes ?? [], resources: body.resources ?? [], active: body.active ?? true };
      await v1<ApiKey>('PATCH', `/keys/${k.id}`, patch);
      parts.close();
      this.notify.notice(`“${body.name}” is saved.`);
      await this.reload();
    });
  }

  private rotate(k: ApiKey): void {
    const grace = h(
      'select',
      { id: 'rotate-grace', name: 'grace' },
      h('option', { value: '0' }, 'Stop the old key at once'),
      h('option', { value: '3600' }, 'Keep the old key working for 1 hour'),
      h('option', { value: '86400' }, 'Keep the old key working for 24 hours'),
      h('option', { value: '604800' }, 'Keep the old key working for 7 days'),
    );
    formDialog(
      'Rotate Key',
      [
        h('p', {}, `Rotating “${k.name}” issues a new value with the same configuration (name, scopes, resources, limits). Update your integrations with the new key.`),
        h('label', { for: 'rotate-grace' }, 'Grace period'),
        grace,
      ],
      'Rotate Key',
      async (parts) => {
        const body: Schemas['RotateKeyRequest'] = { graceSeconds: Number(grace.value) };
        const created = await v1<Schemas['CreatedApiKey']>('POST', `/keys/${k.id}/rotate`, body);
        parts.close();
        await showSecretOnce('Key rotated', created.key.name, created.secret);
        this.notify.notice(body.graceSeconds ? `“${k.name}” is rotated; the old value works until the grace period ends.` : `“${k.name}” is rotated; the old value stopped working.`);
        await this.reload();
      },
    );
  }

  private async details(k: ApiKey): Promise<void> {
    let detail: Schemas['ApiKeyDetail'];
    try {
      detail = await v1<Schemas['ApiKeyDetail']>('GET', `/keys/${k.id}`);
    } catch (e) {
      this.notify.error(e);
      return;
    }
    const key = detail.key;
    const rows: [string, Node | string][] = [
      ['Name', key.name],
      ['Key', h('code', {}, masked(key))],
      ['Status', h('span', { class: `badge ${key.status}` }, STATUS_LABEL[key.status])],
      ['Environment', key.environment],
      ['Scopes', key.scopes.length ? h('ul', { class: 'chips' }, key.scopes.map((s) => h('li', {}, h('code', {}, s)))) : 'None'],
      ['Sites / resources', key.resources.length ? h('ul', { class: 'chips' }, key.resources.map((s) => h('li', {}, h('code', {}, s)))) : 'All resources'],
      ['Created', `${when(key.createdAt)}${key.createdIp ? ` from ${key.createdIp}` : ''}`],
      ['Last used', key.lastUsedAt ? when(key.lastUsedAt) : 'Never'],
      ['Expires', key.expiresAt ? when(key.expiresAt) : 'Never'],
      ['Rate limit', key.rateLimit ? key.rateLimit.map(windowText).join(', ') : 'The plan’s'],
      ['Concurrency', key.concurrencyLimit ? `${key.concurrencyLimit} requests at once` : 'Unlimited'],
      ['Credits', key.credits === null || key.credits === undefined ? 'Not used' : String(key.credits)],
    ];
    if (key.revokedAt) rows.push(['Revoked', when(key.revokedAt)]);
    if (key.graceEndsAt) rows.push(['Old value stops', when(key.graceEndsAt)]);
    if (key.rotatedFrom) rows.push(['Replaces', h('code', {}, key.rotatedFrom)]);
    if (key.rotatedTo) rows.push(['Replaced by', h('code', {}, key.rotatedTo)]);
    rows.push(['Id', h('code', {}, key.id)]);
    const close = h('button', { type: 'button' }, 'Close');
    const parts = openDialog(`Details of “${key.name}”`, [
      h('dl', { class: 'details' }, rows.map(([t, d]) => [h('dt', {}, t), h('dd', {}, d)])),
      h('h3', {}, 'Usage history'),
      usageChart(detail.recentUsage),
      h('div', { class: 'actions' }, close),
    ]);
    close.addEventListener('click', () => parts.close());
    close.focus();
  }
}

/** Stops rendering the rest of the screen (it said why instead). */
export class StopRender extends Error {}

export function masked(k: ApiKey): string {
  // The API keeps the first 12 and the last 4 characters.
  return `${k.prefix}…${k.last4}`;
}

function windowText(w: Schemas['RateLimitWindow']): string {
  const per: Record<number, string> = { 1: 'second', 60: 'minute', 3600: 'hour', 86400: 'day' };
  return `${w.limit} per ${per[w.periodSecs] ?? `${w.periodSecs} s`}`;
}

interface KeyValues {
  name: string;
  scopes: string[];
  resources: string[];
  active: boolean;
}

let formCount = 0;

/** The fields of Create API Key and Edit Key, and their reading with validation. */
function keyFields(v: KeyValues, creating: boolean): { nodes: Node[]; read(creating: boolean): Schemas['CreateKeyRequest'] | null } {
  const n = ++formCount;
  const id = (s: string): string => `key-${s}-${n}`;
  const field = (label: string, input: HTMLElement, hint?: HTMLElement): HTMLElement =>
    h('div', { class: 'field' }, h('label', { for: input.id }, label), input, hint ?? null);
  const name = h('input', { id: id('name'), name: 'name', type: 'text', required: true, maxlength: 100, value: v.name, autocomplete: 'off', placeholder: 'CI Pipeline' });
  const scopeHint = h('p', { class: 'hint', id: id('scopes-hint') }, 'Separate scopes with spaces or commas. Each is resource:action, either part may be * (products:*, *:read), and * alone allows everything. A key can only grant scopes the signed-in key holds.');
  const scopeError = h('p', { class: 'field-error', id: id('scopes-error'), 'aria-live': 'polite' });
  const scopes = h('input', { id: id('scopes'), name: 'scopes', type: 'text', value: v.scopes.join(' '), autocomplete: 'off', spellcheck: 'false', placeholder: 'keys:read', 'aria-describedby': `${id('scopes-hint')} ${id('scopes-error')}` });
  const resources = h('input', { id: id('resources'), name: 'resources', type: 'text', value: v.resources.join(' '), autocomplete: 'off', spellcheck: 'false', placeholder: 'all resources' });
  const active = h('input', { id: id('active'), name: 'active', type: 'checkbox', role: 'switch', checked: v.active });
  const nameError = h('p', { class: 'field-error', 'aria-live': 'polite' });
  const checkScopes = (): boolean => {
    const e = scopesError(parseScopes(scopes.value));
    scopeError.textContent = e ?? '';
    scopes.setAttribute('aria-invalid', String(Boolean(e)));
    return !e;
  };
  scopes.addEventListener('input', checkScopes);
  const nodes: Node[] = [
    field('Name', name, nameError),
    field('Scopes', scopes, h('div', {}, scopeHint, scopeError)),
    field('Sites / resources', resources, h('p', { class: 'hint' }, 'Optional: the resources the key is restricted to, separated by spaces or commas. Empty means all resources.')),
    h('div', { class: 'field switch' }, active, h('label', { for: active.id }, 'Active')),
  ];
  const expires = h('input', { id: id('expires'), type: 'datetime-local' });
  const rateLimit = h('input', { id: id('rate'), type: 'number', min: 1, step: 1, inputmode: 'numeric', placeholder: 'plan default' });
  const ratePeriod = h('select', { id: id('period'), 'aria-label': 'Rate limit period' }, h('option', { value: '60' }, 'per minute'), h('option', { value: '3600' }, 'per hour'), h('option', { value: '86400' }, 'per day'));
  const credits = h('input', { id: id('credits'), type: 'number', min: 0, step: 1, inputmode: 'numeric', placeholder: 'not used' });
  const optError = h('p', { class: 'field-error', 'aria-live': 'polite' });
  if (creating) {
    nodes.push(
      h(
        'fieldset',
        {},
        h('legend', {}, 'Optional'),
        field('Expires', expires),
        h('div', { class: 'field' }, h('label', { for: rateLimit.id }, 'Rate limit (requests)'), h('div', { class: 'inline' }, rateLimit, ratePeriod)),
        field('Credits', credits),
        optError,
      ),
    );
  }
  return {
    nodes,
    read(creatingNow: boolean) {
      nameError.textContent = '';
      optError.textContent = '';
      const trimmed = name.value.trim();
      if (!trimmed) {
        nameError.textContent = 'Give the key a descriptive name, such as CI Pipeline or Mobile Backend.';
        name.focus();
        return null;
      }
      if (!checkScopes()) {
        scopes.focus();
        return null;
      }
      const body: Schemas['CreateKeyRequest'] = { name: trimmed, scopes: parseScopes(scopes.value), resources: parseScopes(resources.value), active: active.checked };
      if (creatingNow) {
        if (expires.value) {
          const at = new Date(expires.value);
          if (Number.isNaN(at.getTime()) || at.getTime() <= Date.now()) {
            optError.textContent = 'The expiry must lie in the future.';
            return null;
          }
          body.expiresAt = at.toISOString();
        }
        if (rateLimit.value) {
          const limit = Number(rateLimit.value);
          if (!Number.isInteger(limit) || limit < 1) {
            optError.textContent = 'The rate limit is a whole number of requests, at least 1.';
            return null;
          }
          body.rateLimit = [{ limit, periodSecs: Number(ratePeriod.value) }];
        }
        if (credits.value) {
          const c = Number(credits.value);
          if (!Number.isInteger(c) || c < 0) {
            optError.textContent = 'Credits are a whole number, 0 or more.';
            return null;
          }
          body.credits = c;
        }
      }
      return body;
    },
  };
}

