// Building DOM nodes without HTML strings: text goes in as text, never parsed.

type Attrs = Record<string, string | boolean | number | undefined | null | EventListener>;
type Child = Node | string | number | null | undefined | false | Child[];

/** An element with attributes (`on*` values are listeners) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An SVG element. */
export function svg(tag: string, attrs: Record<string, string | number> = {}, ...children: Child[]): SVGElement {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  append(el, children);
  return el;
}

function setAttrs(el: HTMLElement, attrs: Attrs): void {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (value === true) {
      el.setAttribute(name, '');
    } else {
      el.setAttribute(name, String(value));
    }
  }
}

function append(el: Element, children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces an element's children. */
export function replace(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

/** A date and time in the reader's locale, or a dash. */
export function when(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/** A short form of an id, with the whole id as its title. */
export function shortId(id: string | null | undefined): HTMLElement | string {
  if (!id) return '—';
  return h('code', { title: id, class: 'id' }, id.slice(0, 8));
}

/**
 * Previous/Next buttons over cursor pages: `cursors` holds the cursor of every page up to the
 * shown one (null for the first); `load` shows the last one.
 */
export function pager(cursors: (string | null)[], nextCursor: string | null | undefined, load: () => void, label: string): HTMLElement {
  const prev = h('button', { type: 'button', disabled: cursors.length <= 1 }, 'Previous page');
  const next = h('button', { type: 'button', disabled: !nextCursor }, 'Next page');
  prev.addEventListener('click', () => {
    cursors.pop();
    load();
  });
  next.addEventListener('click', () => {
    cursors.push(nextCursor ?? null);
    load();
  });
  return h('nav', { class: 'pager', 'aria-label': label }, prev, h('span', {}, `Page ${cursors.length}`), next);
}
