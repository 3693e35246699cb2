// Workspaces and plans: the current workspace's plan, limits and key count; internal keys
// (workspaces:admin) see every workspace and switch between them.

import { type Schemas, currentSession, currentWorkspace, v1 } from './api';
import { h, replace, when } from './dom';
import { describeError } from './errors';
import { planInfo } from './keys';
import { allows } from './scopes';

function windows(ws: Schemas['RateLimitWindow'][]): string {
  const per: Record<number, string> = { 1: 's', 60: 'min', 3600: 'h', 86400: 'day' };
  return ws.length ? ws.map((w) => `${w.limit}/${per[w.periodSecs] ?? `${w.periodSecs}s`}`).join(', ') : '—';
}

function keyCount(count: number | null, max: number | null): string {
  if (count === null) return max === null ? 'No limit' : `At most ${max}`;
  return max === null ? `${count} (no limit)` : `${count} of ${max}`;
}

export async function renderWorkspaces(root: HTMLElement, switchTo: (id: string) => void): Promise<void> {
  const session = currentSession();
  if (!session) return;
  if (!allows(session.scopes, 'workspaces:read')) {
    replace(root, h('h1', {}, 'Workspaces'), h('div', { class: 'explain', role: 'note' }, h('p', {}, `“${session.keyName}” lacks the `, h('code', {}, 'workspaces:read'), ' scope, so its workspace’s plan and limits cannot be shown. Its workspace is ', h('strong', {}, session.workspaceName), '.')));
    return;
  }
  const admin = allows(session.scopes, 'workspaces:admin');
  try {
    const ws = currentWorkspace() ?? session.workspaceId;
    const [current, plans, info, all] = await Promise.all([
      v1<Schemas['WorkspaceView']>('GET', `/workspaces/${ws}`),
      v1<Schemas['PlanList']>('GET', '/plans'),
      planInfo(true),
      admin ? v1<Schemas['WorkspaceList']>('GET', '/workspaces') : Promise.resolve(null),
    ]);
    const plan = plans.data.find((p) => p.id === current.planId);
    const summary = h(
      'dl',
      { class: 'details', id: 'workspace-summary' },
      h('dt', {}, 'Workspace'),
      h('dd', {}, current.name),
      h('dt', {}, 'Environment'),
      h('dd', {}, current.environment),
      h('dt', {}, 'Plan'),
      h('dd', {}, plan ? `${plan.name} (${plan.id})` : current.planId),
      h('dt', {}, 'API access'),
      h('dd', {}, plan?.apiAccess ? 'Included' : 'Not enabled for this plan'),
      h('dt', {}, 'Keys (not revoked)'),
      h('dd', {}, keyCount(info?.count ?? null, plan?.maxKeys ?? null)),
      h('dt', {}, 'Workspace rate limit'),
      h('dd', {}, windows(current.effectiveRateLimit)),
      h('dt', {}, 'Key rate limit (plan)'),
      h('dd', {}, plan ? windows(plan.keyRateLimit) : '—'),
    );
    const planTable = h(
      'table',
      { class: 'plans' },
      h('caption', {}, 'Plans'),
      h('thead', {}, h('tr', {}, ['Plan', 'API access', 'Max keys', 'Key rate limit'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, plans.data.map((p) => h('tr', {}, h('td', { 'data-label': 'Plan' }, `${p.name} (${p.id})`), h('td', { 'data-label': 'API access' }, p.apiAccess ? 'Yes' : 'No'), h('td', { 'data-label': 'Max keys' }, p.maxKeys == null ? 'Unlimited' : String(p.maxKeys)), h('td', { 'data-label': 'Key rate limit' }, windows(p.keyRateLimit))))),
    );
    const list = all
      ? h(
          'table',
          { class: 'workspaces' },
          h('caption', {}, 'All workspaces'),
          h('thead', {}, h('tr', {}, ['Name', 'Plan', 'Environment', 'Created', ''].map((c) => h('th', { scope: 'col' }, c)))),
          h(
            'tbody',
            {},
            all.data.map((w) => {
              const here = w.id === ws;
              const b = h('button', { type: 'button', disabled: here, 'aria-label': `Switch to ${w.name}` }, here ? 'Current' : 'Switch');
              b.addEventListener('click', () => switchTo(w.id));
              return h('tr', {}, h('td', { 'data-label': 'Name' }, w.name), h('td', { 'data-label': 'Plan' }, w.planId), h('td', { 'data-label': 'Environment' }, w.environment), h('td', { 'data-label': 'Created' }, when(w.createdAt)), h('td', {}, b));
            }),
          ),
        )
      : null;
    replace(root, h('h1', {}, 'Workspaces'), summary, list, planTable);
  } catch (e) {
    replace(root, h('h1', {}, 'Workspaces'), h('p', { class: 'error', role: 'alert' }, describeError(e)));
  }
}
