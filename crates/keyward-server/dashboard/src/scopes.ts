// The scope grammar of keyward-core's `Scope`: `resource:action`, either part `*`, or `*` alone.

const PART = /^(\*|[A-Za-z0-9_.-]+)$/;

/** Why `s` is not a scope, or null when it is one. */
export function scopeError(s: string): string | null {
  if (s.length === 0) return 'a scope must not be empty';
  if (s.length > 128) return `scope \`${s.slice(0, 20)}…\` is longer than 128 characters`;
  if (s === '*') return null;
  const parts = s.split(':');
  if (parts.length < 2) return `\`${s}\` must have the form resource:action (or be *)`;
  if (parts.length > 2) return `\`${s}\` has more than one ":"`;
  const [resource = '', action = ''] = parts;
  if (!resource || !action) return `\`${s}\` has an empty resource or action`;
  if (!PART.test(resource) || !PART.test(action)) {
    return `\`${s}\` may only use letters, digits, _, - and . or a lone * on each side`;
  }
  return null;
}

/** Scopes typed as a list separated by commas, spaces or new lines. */
export function parseScopes(text: string): string[] {
  return text.split(/[\s,]+/).filter((s) => s.length > 0);
}

/** The first error of a list of scopes, or null. */
export function scopesError(scopes: string[]): string | null {
  for (const s of scopes) {
    const e = scopeError(s);
    if (e) return e;
  }
  return null;
}

function covers(have: string, need: string): boolean {
  const [hr = '*', ha = '*'] = have === '*' ? ['*', '*'] : have.split(':');
  const [nr = '', na = ''] = need.split(':');
  return (hr === '*' || hr === nr) && (ha === '*' || ha === na);
}

/** Whether a key with `scopes` may do what `need` (a concrete scope) names. */
export function allows(scopes: readonly string[], need: string): boolean {
  return scopes.some((s) => covers(s, need));
}
