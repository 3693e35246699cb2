// Modal dialogs: <dialog> with showModal (focus stays inside, Escape closes), labelled by their
// title, focus handed back to where it was when they close.

import { ApiError } from './api';
import { h } from './dom';

let counter = 0;

export interface DialogParts {
  dialog: HTMLDialogElement;
  /** Where refusals inside the dialog are shown. */
  error: HTMLElement;
  close(): void;
}

/** Opens a modal dialog titled `title` holding `content`. */
export function openDialog(title: string, content: Node[], opts: { className?: string; onClose?: () => void } = {}): DialogParts {
  const id = `dialog-title-${++counter}`;
  const returnTo = document.activeElement instanceof HTMLElement ? document.activeElement : null;
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const dialog = h(
    'dialog',
    { 'aria-labelledby': id, class: opts.className ?? '' },
    h('h2', { id }, title),
    error,
    ...content,
  );
  dialog.addEventListener('close', () => {
    dialog.remove();
    opts.onClose?.();
    if (returnTo?.isConnected) returnTo.focus();
    else document.getElementById('main')?.focus();
  });
  document.body.append(dialog);
  dialog.showModal();
  return { dialog, error, close: () => dialog.close() };
}

/** Shows a refusal (or any failure) in `el`. */
export function showError(el: HTMLElement, e: unknown): void {
  el.hidden = false;
  el.textContent = e instanceof ApiError ? e.describe() : String(e);
}

/** Asks to confirm an action; resolves true when confirmed. */
export function confirmAction(title: string, text: string, confirm: string, danger: boolean): Promise<boolean> {
  return new Promise((resolve) => {
    let done = false;
    const yes = h('button', { type: 'button', class: danger ? 'danger' : 'primary' }, confirm);
    const no = h('button', { type: 'button' }, 'Cancel');
    const parts = openDialog(title, [h('p', {}, text), h('div', { class: 'actions' }, no, yes)], {
      onClose: () => resolve(done),
    });
    yes.addEventListener('click', () => {
      done = true;
      parts.close();
    });
    no.addEventListener('click', () => parts.close());
    no.focus();
  });
}

/** A dialog with a form; `submit` runs on submit, its refusals shown in the dialog. */
export function formDialog(
  title: string,
  fields: Node[],
  submitLabel: string,
  submit: (parts: DialogParts) => Promise<void>,
  opts: { danger?: boolean } = {},
): DialogParts {
  const ok = h('button', { type: 'submit', class: opts.danger ? 'danger' : 'primary' }, submitLabel);
  const cancel = h('button', { type: 'button' }, 'Cancel');
  const form = h('form', { novalidate: true }, ...fields, h('div', { class: 'actions' }, cancel, ok));
  const parts = openDialog(title, [form]);
  cancel.addEventListener('click', () => parts.close());
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    parts.error.hidden = true;
    ok.disabled = true;
    submit(parts)
      .catch((e: unknown) => showError(parts.error, e))
      .finally(() => {
        ok.disabled = false;
      });
  });
  const first = form.querySelector<HTMLElement>('input, select, textarea');
  (first ?? cancel).focus();
  return parts;
}

/** Shows a new key's value, once, with a Copy button. */
export function showSecretOnce(title: string, name: string, secret: string): Promise<void> {
  return new Promise((resolve) => {
    const value = h('input', {
      type: 'text',
      readonly: true,
      value: secret,
      class: 'secret',
      id: 'new-key-value',
      'aria-label': `The new API key of ${name}`,
      spellcheck: 'false',
      autocomplete: 'off',
    });
    const copied = h('span', { role: 'status', class: 'copied' });
    const copy = h('button', { type: 'button', class: 'primary' }, 'Copy');
    const done = h('button', { type: 'button' }, 'Done');
    const parts = openDialog(
      title,
      [
        h(
          'p',
          { class: 'warning' },
          h('strong', {}, 'Copy this key now. '),
          'For your security it is shown only once: it cannot be shown again. Store it in a secrets manager or an environment variable.',
        ),
        h('label', { for: 'new-key-value' }, `API key for “${name}”`),
        h('div', { class: 'copy-row' }, value, copy),
        copied,
        h('div', { class: 'actions' }, done),
      ],
      { className: 'secret-dialog', onClose: () => resolve() },
    );
    copy.addEventListener('click', () => {
      value.select();
      const fallback = (): void => {
        copied.textContent = document.execCommand('copy') ? 'Copied.' : 'Select the key and copy it.';
      };
      if (navigator.clipboard) {
        navigator.clipboard.writeText(secret).then(() => {
          copied.textContent = 'Copied.';
        }, fallback);
      } else {
        fallback();
      }
    });
    done.addEventListener('click', () => parts.close());
    value.focus();
    value.select();
  });
}
