// Calls to the server: the dashboard session and the /v1 API, typed by the OpenAPI document.

import type { components } from './keyward-api';

export type Schemas = components['schemas'];
export type ApiKey = Schemas['ApiKeyView'];
export type KeyStatus = Schemas['KeyStatus'];
export type ErrorObject = Schemas['ErrorObject'];

/** Who is signed in (the dashboard's own `/dashboard/session`, not part of /v1). */
export interface Session {
  csrfToken: string;
  keyId: string;
  keyName: string;
  scopes: string[];
  workspaceId: string;
  workspaceName: string;
}

/** A refusal: the catalog error, with its request id for support requests. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requestId: string | null,
    readonly details: Record<string, unknown>,
  ) {
    super(message);
  }

  /** The line the UI shows. */
  describe(): string {
    return this.requestId ? `${this.message} (${this.code}, request id ${this.requestId})` : `${this.message} (${this.code})`;
  }
}

let session: Session | null = null;
let workspace: string | null = null;

export function currentSession(): Session | null {
  return session;
}

/** Acts on another workspace (internal keys, through X-Workspace-Id); null for the key's own. */
export function setWorkspace(id: string | null): void {
  workspace = id && session && id !== session.workspaceId ? id : null;
}

export function currentWorkspace(): string | null {
  return workspace ?? session?.workspaceId ?? null;
}

async function refusal(response: Response): Promise<ApiError> {
  let body: Schemas['ErrorBody'] | null = null;
  try {
    body = (await response.json()) as Schemas['ErrorBody'];
  } catch {
    body = null;
  }
  const e = body?.error;
  const requestId = e?.requestId ?? response.headers.get('x-request-id');
  return new ApiError(
    response.status,
    e?.code ?? `HTTP_${response.status}`,
    e?.message ?? response.statusText,
    requestId,
    (e?.details ?? {}) as Record<string, unknown>,
  );
}

async function send<T>(method: string, path: string, body?: unknown, extra: Record<string, string> = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json', ...extra };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    cache: 'no-store',
  });
  if (!response.ok) throw await refusal(response);
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}

/** A /v1 call with the session: the server puts the session's key on it when the CSRF token matches. */
export function v1<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (session) headers['X-Keyward-Csrf'] = session.csrfToken;
  if (workspace) headers['X-Workspace-Id'] = workspace;
  return send<T>(method, `/v1${path}`, body, headers);
}

export async function signIn(key: string): Promise<Session> {
  session = await send<Session>('POST', '/dashboard/session', { key });
  workspace = null;
  return session;
}

/** The session after a reload, or null when there is none. */
export async function resume(): Promise<Session | null> {
  try {
    session = await send<Session>('GET', '/dashboard/session');
  } catch (e) {
    session = null;
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
  return session;
}

export async function signOut(): Promise<void> {
  const csrf = session?.csrfToken ?? '';
  session = null;
  workspace = null;
  await send<void>('DELETE', '/dashboard/session', undefined, { 'X-Keyward-Csrf': csrf });
}

/** Query string of the set values. */
export function query(params: Record<string, string | number | null | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}
