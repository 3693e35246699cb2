// The dashboard in Chromium, driven by playwright-core: see scripts/dashboard-check.sh.
// Usage: node check.mjs <base URL>, with KEYWARD_ROOT_KEY, CHROMIUM and DASHBOARD_SCREENSHOTS set.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.argv[2];
const ROOT_KEY = process.env.KEYWARD_ROOT_KEY;
const SHOTS = process.env.DASHBOARD_SCREENSHOTS;
assert.ok(BASE && ROOT_KEY && SHOTS, 'usage: node check.mjs <base URL> with KEYWARD_ROOT_KEY and DASHBOARD_SCREENSHOTS');

const step = (text) => console.log(`dashboard-check: ${text}`);
let shot = 0;
async function screenshot(page, name) {
  const file = join(SHOTS, `${String(++shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  step(`  screenshot ${file}`);
}

/** GET /v1/status with `key` over plain HTTP (no browser): the key's status code. */
async function status(key) {
  const r = await fetch(`${BASE}/v1/status`, { headers: { Authorization: `Bearer ${key}` } });
  return r.status;
}

/** A call with a key of its own (not the root key: the dashboard's session spends that one's rate limit). */
async function api(key, method, path, body, workspace) {
  const headers = { Authorization: `Bearer ${key}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (workspace) headers['X-Workspace-Id'] = workspace;
  let r;
  for (let attempt = 0; ; attempt++) {
    r = await fetch(`${BASE}/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    // The workspace allows bursts of 30 a second: setup waits as told.
    if (r.status !== 429 || attempt === 5) break;
    await new Promise((done) => setTimeout(done, 1000 * Number(r.headers.get('retry-after') ?? 1)));
  }
  const text = await r.text();
  assert.ok(r.ok, `${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Every control on the page has an accessible name: buttons, links, inputs, selects. */
async function assertLabelled(page, where) {
  const unnamed = await page.evaluate(() =>
    [...document.querySelectorAll('button, a[href], input, select, textarea')]
      .filter((el) => el.checkVisibility())
      .filter((el) => {
        const aria = el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
        const labels = 'labels' in el && el.labels ? el.labels.length : 0;
        return !aria && !labels && !(el.textContent ?? '').trim();
      })
      .map((el) => el.outerHTML.slice(0, 80)),
  );
  assert.deepEqual(unnamed, [], `controls without an accessible name on ${where}`);
}

const masked = (secret) => `${secret.slice(0, 12)}…${secret.slice(-4)}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
});
const problems = [];
let page;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, userAgent: 'keyward-dashboard-check' });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: BASE });
  page = await context.newPage();
  page.setDefaultTimeout(10_000);
  // A CSP violation, a failed script or an uncaught error fails the run.
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 40[0-9]/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  const offsite = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(BASE) && !r.url().startsWith('data:')) offsite.push(r.url());
  });

  // A key for the test's own setup calls.
  const setup = (await api(ROOT_KEY, 'POST', '/keys', { name: 'dashboard-check setup', scopes: ['*'] })).secret;
  // The dashboard spends the signed-in key's rate limit (60 a minute on the default plan); this
  // walk-through clicks faster than an operator, so the root key gets room of its own.
  const rootId = (await api(ROOT_KEY, 'GET', '/status')).keyId;
  await api(setup, 'PATCH', `/keys/${rootId}`, { rateLimit: [{ limit: 600, periodSecs: 60 }] });

  step('/ leads to the sign-in screen');
  await page.goto(`${BASE}/`);
  assert.equal(new URL(page.url()).pathname, '/dashboard/');
  await page.getByRole('heading', { name: 'Sign in to keyward' }).waitFor();
  await page.getByLabel('API key', { exact: true }).fill('kw_live_not-a-key');
  await page.getByRole('button', { name: 'Sign in' }).click();
  const refusal = await page.locator('#sign-in-error').textContent({ timeout: 10_000 });
  await page.locator('#sign-in-error:not([hidden])').waitFor();
  assert.match(await page.locator('#sign-in-error').textContent(), /INVALID_API_KEY, request id \S+/, refusal);
  await screenshot(page, 'sign-in-refused');

  step('sign in with the root key');
  await page.getByLabel('API key', { exact: true }).fill(ROOT_KEY);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'API Keys', level: 1 }).waitFor();
  await page.getByRole('row').filter({ hasText: 'root' }).first().waitFor();
  assert.equal(await page.evaluate(() => document.cookie), '', 'the session cookie is HttpOnly');
  assert.equal(await page.evaluate(() => localStorage.length + sessionStorage.length), 0, 'nothing in web storage');
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'kw_session');
  assert.ok(session && session.httpOnly && session.sameSite === 'Strict', JSON.stringify(cookies));
  await screenshot(page, 'keys');
  await assertLabelled(page, 'the API Keys screen');

  step('Create API Key: the scope grammar is checked as you type; the key is shown once');
  await page.getByRole('button', { name: 'Create API Key' }).click();
  const create = page.getByRole('dialog', { name: 'Create API Key' });
  await create.getByLabel('Name').fill('CI Pipeline');
  await create.getByLabel('Scopes').fill('keys:read products:');
  await create.getByText('has an empty resource or action').waitFor();
  assert.equal(await create.getByLabel('Active').isChecked(), true, 'Active is on by default');
  await screenshot(page, 'create-dialog');
  await assertLabelled(page, 'Create API Key');
  await create.getByLabel('Scopes').fill('keys:read products:*');
  await create.getByRole('button', { name: 'Create' }).click();
  const shown = page.getByRole('dialog', { name: 'API key created' });
  await shown.getByText('it cannot be shown again').waitFor();
  const secret = await shown.getByRole('textbox').inputValue();
  assert.match(secret, /^kw_live_[A-Za-z0-9]+$/);
  await shown.getByRole('button', { name: 'Copy' }).click();
  await shown.getByText('Copied.').waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), secret, 'Copy puts the key on the clipboard');
  await screenshot(page, 'created-shown-once');
  await shown.getByRole('button', { name: 'Done' }).click();
  await shown.waitFor({ state: 'detached' });
  assert.equal(await status(secret), 200, 'the new key works');
  const row = () => page.getByRole('row').filter({ hasText: masked(secret) });
  await row().waitFor();
  assert.match(await row().textContent(), /CI Pipeline/);

  step('Edit Key: new name and scopes, same value');
  await row().getByRole('button', { name: 'Actions for CI Pipeline' }).click();
  const menu = page.getByRole('menu');
  await menu.waitFor();
  await screenshot(page, 'row-menu');
  await menu.getByRole('menuitem', { name: 'Edit Key' }).click();
  const edit = page.getByRole('dialog', { name: 'Edit Key' });
  await edit.getByLabel('Name').fill('CI Pipeline (edited)');
  await edit.getByLabel('Scopes').fill('keys:read');
  // A refusal is shown in the dialog as the catalog message with its request id.
  await edit.getByLabel('Sites / resources').fill('x'.repeat(201));
  await edit.getByRole('button', { name: 'Save' }).click();
  await edit.getByRole('alert').filter({ hasText: /VALIDATION_FAILED, request id \S+/ }).waitFor();
  await screenshot(page, 'edit-refused');
  await edit.getByLabel('Sites / resources').fill('');
  await edit.getByRole('button', { name: 'Save' }).click();
  await edit.waitFor({ state: 'detached' });
  await row().filter({ hasText: 'CI Pipeline (edited)' }).waitFor();
  assert.equal(await status(secret), 200, 'editing leaves the value alone');

  step('View Details: configuration, created with IP, usage chart');
  await row().getByRole('button', { name: /^Actions for/ }).click();
  await page.getByRole('menuitem', { name: 'View Details' }).click();
  const details = page.getByRole('dialog', { name: 'Details of “CI Pipeline (edited)”' });
  await details.getByText('from 127.0.0.1').waitFor();
  await details.getByRole('img', { name: /requests in the last 30 days/ }).waitFor();
  assert.match(await details.textContent(), /keys:read/);
  await screenshot(page, 'details');
  await page.keyboard.press('Escape');
  await details.waitFor({ state: 'detached' });

  step('Deactivate: 401; Activate, by keyboard: 200');
  await row().getByRole('button', { name: /^Actions for/ }).click();
  await page.getByRole('menuitem', { name: 'Deactivate' }).click();
  await row().getByText('Inactive', { exact: true }).waitFor();
  assert.equal(await status(secret), 401, 'a deactivated key is refused');
  const kebab = row().getByRole('button', { name: /^Actions for/ });
  await kebab.focus();
  await page.keyboard.press('Enter');
  await page.getByRole('menuitem', { name: 'View Details' }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('role')), 'menuitem', 'the menu takes focus');
  await page.keyboard.press('Escape');
  await page.getByRole('menu').waitFor({ state: 'detached' });
  assert.match(await page.evaluate(() => document.activeElement?.getAttribute('aria-label') ?? ''), /^Actions for/, 'Escape hands focus back');
  await page.keyboard.press('Enter');
  for (let i = 0; i < 6; i++) {
    if ((await page.evaluate(() => document.activeElement?.textContent)) === 'Activate') break;
    await page.keyboard.press('ArrowDown');
  }
  await page.keyboard.press('Enter');
  await row().getByText('Active', { exact: true }).waitFor();
  assert.equal(await status(secret), 200, 'an activated key works again');

  step('Rotate Key: old 401, new 200');
  await row().getByRole('button', { name: /^Actions for/ }).click();
  await page.getByRole('menuitem', { name: 'Rotate Key' }).click();
  const rotate = page.getByRole('dialog', { name: 'Rotate Key' });
  await rotate.getByLabel('Grace period').selectOption('0');
  await rotate.getByRole('button', { name: 'Rotate Key' }).click();
  const rotated = page.getByRole('dialog', { name: 'Key rotated' });
  await rotated.getByText('it cannot be shown again').waitFor();
  const secret2 = await rotated.getByRole('textbox').inputValue();
  assert.notEqual(secret2, secret);
  await rotated.getByRole('button', { name: 'Done' }).click();
  assert.equal(await status(secret), 401, 'the old value stopped');
  assert.equal(await status(secret2), 200, 'the new value works');
  const row2 = () => page.getByRole('row').filter({ hasText: masked(secret2) });
  await row2().waitFor();

  step('Revoke Key (red, confirmed): 401, listed under Revoked');
  await row2().getByRole('button', { name: /^Actions for/ }).click();
  const revokeItem = page.getByRole('menuitem', { name: 'Revoke Key' });
  assert.match(await revokeItem.getAttribute('class'), /danger/);
  assert.equal(await page.getByRole('menuitem', { name: 'Delete Key' }).count(), 0, 'Delete Key only for revoked keys');
  await revokeItem.click();
  const confirmRevoke = page.getByRole('dialog', { name: 'Revoke Key' });
  await screenshot(page, 'revoke-confirm');
  await confirmRevoke.getByRole('button', { name: 'Revoke Key' }).click();
  await row2().getByText('Revoked', { exact: true }).waitFor();
  assert.equal(await status(secret2), 401, 'a revoked key is refused');
  // The tabs move with the arrow keys: Inactive, then Revoked.
  await page.getByRole('tab', { name: 'Active', exact: true }).click();
  await page.keyboard.press('ArrowRight');
  assert.equal(await page.getByRole('tab', { name: 'Inactive' }).getAttribute('aria-selected'), 'true');
  await page.keyboard.press('ArrowRight');
  assert.equal(await page.getByRole('tab', { name: 'Revoked' }).getAttribute('aria-selected'), 'true');
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Revoked');
  // The filtered page replaces the whole list: the active root key leaves it.
  await page.getByRole('row').filter({ hasText: 'root' }).first().waitFor({ state: 'detached' });
  await row2().waitFor();
  assert.deepEqual(await page.locator('#key-list tbody tr .badge').allTextContents(), ['Revoked', 'Revoked'], 'only revoked keys under Revoked');
  await screenshot(page, 'revoked-tab');

  step('Delete Key (red, confirmed)');
  await row2().getByRole('button', { name: /^Actions for/ }).click();
  await page.getByRole('menuitem', { name: 'Delete Key' }).click();
  await page.getByRole('dialog', { name: 'Delete Key' }).getByRole('button', { name: 'Delete Key' }).click();
  await row2().waitFor({ state: 'detached' });
  await page.getByRole('tab', { name: 'All' }).click();
  await page.getByRole('row').filter({ hasText: 'root' }).first().waitFor();
  assert.equal(await row2().count(), 0, 'a deleted key is gone from every list');

  step('Audit Log: the actions, with the IP and user agent');
  await page.getByRole('link', { name: 'Audit Log' }).click();
  await page.getByRole('heading', { name: 'Audit Log' }).waitFor();
  const audit = page.locator('#audit-list');
  for (const action of ['key.created', 'key.updated', 'key.deactivated', 'key.activated', 'key.rotated', 'key.revoked', 'key.deleted']) {
    await audit.getByRole('row').filter({ hasText: action }).filter({ hasText: '127.0.0.1' }).first().waitFor();
  }
  await audit.getByText('keyward-dashboard-check').first().waitFor();
  await screenshot(page, 'audit');
  await assertLabelled(page, 'the Audit Log');
  await page.getByLabel('Action').selectOption('key.revoked');
  await audit.getByRole('row').filter({ hasText: 'key.created' }).first().waitFor({ state: 'detached' });
  assert.ok((await audit.getByRole('row').filter({ hasText: 'key.revoked' }).count()) >= 1);

  step('Workspaces: plan, limits; a plan without API access; a plan at its key limit');
  await api(setup, 'PUT', '/plans/noapi', { name: 'Free', apiAccess: false });
  await api(setup, 'PUT', '/plans/starter', { name: 'Starter', apiAccess: true, maxKeys: 2 });
  const free = await api(setup, 'POST', '/workspaces', { name: 'Free workspace', planId: 'noapi' });
  const starter = await api(setup, 'POST', '/workspaces', { name: 'Starter workspace', planId: 'starter' });
  for (const name of ['one', 'two']) await api(setup, 'POST', '/keys', { name, scopes: ['keys:read'] }, starter.id);
  const many = await api(setup, 'POST', '/workspaces', { name: 'Busy workspace' });
  for (let i = 1; i <= 21; i++) await api(setup, 'POST', '/keys', { name: `service ${i}` }, many.id);
  // The setup calls spent the default workspace's burst (30 a second), which the dashboard shares.
  await page.waitForTimeout(1500);
  await page.reload();
  await page.getByRole('link', { name: 'Workspaces' }).click();
  await page.locator('#workspace-summary').getByText('default', { exact: true }).first().waitFor();
  await page.locator('#workspace-summary').getByText('2 (no limit)').waitFor();
  await screenshot(page, 'workspaces');
  await page.getByLabel('Workspace', { exact: true }).selectOption(free.id);
  await page.getByRole('link', { name: 'API Keys' }).click();
  await page.getByText('Self-service API access is not enabled for the plan “Free”').waitFor();
  await screenshot(page, 'plan-without-api-access');
  await page.getByLabel('Workspace', { exact: true }).selectOption(starter.id);
  await page.getByText('2 of 2 keys').waitFor();
  assert.equal(await page.getByRole('button', { name: 'Create API Key' }).isDisabled(), true, 'no creation at the limit');
  await page.getByText('allows 2 keys and the workspace has 2').waitFor();
  await screenshot(page, 'key-limit');

  step('paging: 21 keys are two pages of 20');
  await page.getByLabel('Workspace', { exact: true }).selectOption(many.id);
  await page.getByRole('row').filter({ hasText: 'service 21' }).waitFor();
  assert.equal(await page.locator('#key-list tbody tr').count(), 20);
  await page.getByRole('button', { name: 'Next page' }).click();
  await page.getByText('Page 2').waitFor();
  await page.locator('#key-list td.name', { hasText: /^service 1$/ }).waitFor();
  assert.equal(await page.locator('#key-list tbody tr').count(), 1);
  assert.equal(await page.getByRole('button', { name: 'Next page' }).isDisabled(), true);
  await page.getByRole('button', { name: 'Previous page' }).click();
  await page.getByRole('row').filter({ hasText: 'service 21' }).waitFor();
  await page.getByLabel('Workspace', { exact: true }).selectOption((await api(setup, 'GET', '/status')).workspaceId);

  step('390 px wide');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.getByRole('row').filter({ hasText: 'root' }).first().waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the page scrolls sideways by ${overflow} px at 390 px`);
  await screenshot(page, 'keys-narrow');
  await page.getByRole('button', { name: 'Create API Key' }).click();
  await screenshot(page, 'create-narrow');
  await page.keyboard.press('Escape');
  await page.getByRole('dialog').waitFor({ state: 'detached' });
  await page.setViewportSize({ width: 1280, height: 800 });

  step('View Details of the root key: its requests per day, once usage is written (every 10 s)');
  const rootRow = page.getByRole('row').filter({ hasText: 'root' }).first();
  const rootDetails = page.getByRole('dialog', { name: 'Details of “root”' });
  for (let i = 0; ; i++) {
    await rootRow.getByRole('button', { name: 'Actions for root' }).click();
    await page.getByRole('menuitem', { name: 'View Details' }).click();
    const label = await rootDetails.getByRole('img').getAttribute('aria-label');
    if (!label.startsWith('0 requests')) break;
    assert.ok(i < 12, `no usage recorded for the root key: ${label}`);
    await page.keyboard.press('Escape');
    await rootDetails.waitFor({ state: 'detached' });
    await page.waitForTimeout(2000);
  }
  assert.doesNotMatch(await rootDetails.textContent(), /Last usedNever/);
  await screenshot(page, 'details-usage');
  await rootDetails.getByRole('button', { name: 'Close' }).click();

  step('Sign out: the session ends server-side');
  const csrf = await page.evaluate(async () => (await (await fetch('/dashboard/session')).json()).csrfToken);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in to keyward' }).waitFor();
  await page.getByText('Signed out: the session has ended on the server.').waitFor();
  const after = await fetch(`${BASE}/v1/status`, { headers: { Cookie: `kw_session=${session.value}`, 'X-Keyward-Csrf': csrf } });
  assert.equal(after.status, 401, 'the old session cookie no longer works');
  await screenshot(page, 'signed-out');

  step('a key without keys:read gets an explanation');
  const auditor = (await api(setup, 'POST', '/keys', { name: 'Auditor', scopes: ['audit:read'] })).secret;
  await page.getByLabel('API key', { exact: true }).fill(auditor);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('This key cannot list API keys').waitFor();
  await screenshot(page, 'without-keys-read');

  step('a key with keys:read only: Create disabled and why, View Details alone in the menu');
  await page.getByRole('button', { name: 'Sign out' }).click();
  const reader = (await api(setup, 'POST', '/keys', { name: 'Reader', scopes: ['keys:read'] })).secret;
  await page.getByLabel('API key', { exact: true }).fill(reader);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('Creating keys needs the keys:write scope, which this key lacks.').waitFor();
  assert.equal(await page.getByRole('button', { name: 'Create API Key' }).isDisabled(), true);
  await page.getByRole('row').filter({ hasText: 'Reader' }).getByRole('button', { name: 'Actions for Reader' }).click();
  assert.deepEqual(await page.getByRole('menuitem').allTextContents(), ['View Details']);
  await screenshot(page, 'read-only');
  await page.keyboard.press('Escape');

  assert.deepEqual(offsite, [], 'nothing is loaded from another origin');
  assert.deepEqual(problems, [], 'no CSP violation, script error or console error');
  step('all good');
} catch (e) {
  if (page) await screenshot(page, 'failure').catch(() => undefined);
  throw e;
} finally {
  await browser.close();
}
