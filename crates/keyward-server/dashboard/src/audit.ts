// The audit screen: who did what, from where, with which request; filter by key and action.

import { type Schemas, currentSession, query, v1 } from './api';
import { describeError } from './errors';
import { h, pager, replace, shortId, when } from './dom';
import { allows } from './scopes';

// Every action of the document's AuditAction (tsc checks each one against it).
const ACTIONS: Schemas['AuditAction'][] = [
  'key.created',
  'key.updated',
  'key.activated',
  'key.deactivated',
  'key.rotated',
  'key.revoked',
  'key.deleted',
  'key.credits_refilled',
  'key.imported',
  'key.leaked',
  'workspace.created',
  'workspace.updated',
  'plan.saved',
];

export class AuditScreen {
  private cursors: (string | null)[] = [null];
  private readonly list = h('div', { class: 'list', id: 'audit-list' });
  private keyFilter = '';
  private actionFilter = '';
  private names = new Map<string, string>();

  constructor(private readonly root: HTMLElement) {}

  async render(): Promise<void> {
    const session = currentSession();
    if (!session) return;
    if (!allows(session.scopes, 'audit:read')) {
      replace(this.root, h('h1', {}, 'Audit Log'), h('div', { class: 'explain', role: 'note' }, h('p', {}, `“${session.keyName}” lacks the `, h('code', {}, 'audit:read'), ' scope the audit log needs. Sign in with a key that has it.')));
      return;
    }
    if (allows(session.scopes, 'keys:read')) {
      try {
        for (const status of ['active', 'inactive', 'revoked'] as const) {
          const page = await v1<Schemas['KeyPage']>('GET', `/keys${query({ status, limit: 100 })}`);
          for (const k of page.data) this.names.set(k.id, k.name);
        }
      } catch {
        // Names are a convenience: ids stand in.
      }
    }
    const keySelect = h('select', { id: 'audit-key' }, h('option', { value: '' }, 'All keys'), [...this.names].map(([id, name]) => h('option', { value: id, selected: id === this.keyFilter }, `${name} (${id.slice(0, 8)})`)));
    const actionSelect = h('select', { id: 'audit-action' }, h('option', { value: '' }, 'All actions'), ACTIONS.map((a) => h('option', { value: a, selected: a === this.actionFilter }, a)));
    const apply = (): void => {
      this.keyFilter = keySelect.value;
      this.actionFilter = actionSelect.value;
      this.cursors = [null];
      void this.load();
    };
    keySelect.addEventListener('change', apply);
    actionSelect.addEventListener('change', apply);
    replace(
      this.root,
      h('h1', {}, 'Audit Log'),
      h('p', { class: 'hint' }, 'Every change to keys, workspaces and plans, newest first, kept 90 days by default.'),
      h('div', { class: 'filters' }, h('label', { for: 'audit-key' }, 'Key'), keySelect, h('label', { for: 'audit-action' }, 'Action'), actionSelect),
      this.list,
    );
    await this.load();
  }

  private keyName(id: string | null | undefined): Node | string {
    if (!id) return '—';
    const name = this.names.get(id);
    return name ? h('span', { title: id }, name) : shortId(id);
  }

  private async load(): Promise<void> {
    const cursor = this.cursors[this.cursors.length - 1] ?? null;
    let page: Schemas['AuditPage'];
    try {
      page = await v1<Schemas['AuditPage']>('GET', `/audit-events${query({ keyId: this.keyFilter, action: this.actionFilter, cursor, limit: 25 })}`);
    } catch (e) {
      replace(this.list, h('p', { class: 'error', role: 'alert' }, describeError(e)));
      return;
    }
    const me = currentSession()?.keyId;
    const table = h(
      'table',
      { class: 'audit' },
      h('caption', { class: 'sr-only' }, 'Audit events'),
      h('thead', {}, h('tr', {}, ['Time', 'Action', 'Key', 'Actor', 'IP', 'User agent', 'Request id'].map((c) => h('th', { scope: 'col' }, c)))),
      h(
        'tbody',
        {},
        page.data.map((e) =>
          h(
            'tr',
            {},
            h('td', { 'data-label': 'Time' }, when(e.at)),
            h('td', { 'data-label': 'Action' }, h('code', {}, e.action)),
            h('td', { 'data-label': 'Key' }, this.keyName(e.keyId)),
            h('td', { 'data-label': 'Actor' }, e.actorKeyId ? (e.actorKeyId === me ? h('span', { title: e.actorKeyId }, 'you') : this.keyName(e.actorKeyId)) : 'system'),
            h('td', { 'data-label': 'IP' }, e.ip ?? '—'),
            h('td', { 'data-label': 'User agent', class: 'ua' }, e.userAgent ?? '—'),
            h('td', { 'data-label': 'Request id' }, e.requestId ? h('code', {}, e.requestId) : '—'),
          ),
        ),
      ),
    );
    replace(this.list, page.data.length ? table : h('p', { class: 'empty' }, 'No events match.'), pager(this.cursors, page.nextCursor, () => void this.load(), 'Pages of events'));
  }
}
