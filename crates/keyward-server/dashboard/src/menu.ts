// The ⋮ row menu: role=menu with role=menuitem buttons; arrows, Home and End move, Escape and Tab
// close it, focus goes back to its button.

import { h } from './dom';

export interface MenuItem {
  label: string;
  danger?: boolean;
  run: () => void;
}

let open: { menu: HTMLElement; button: HTMLButtonElement; away: (ev: Event) => void } | null = null;

export function closeMenu(focusButton: boolean): void {
  if (!open) return;
  const { menu, button, away } = open;
  open = null;
  document.removeEventListener('pointerdown', away, true);
  menu.remove();
  button.setAttribute('aria-expanded', 'false');
  if (focusButton) button.focus();
}

export function openMenu(button: HTMLButtonElement, items: MenuItem[]): void {
  const wasOpen = open?.button === button;
  closeMenu(false);
  if (wasOpen) return;
  const menuId = `menu-${Math.random().toString(36).slice(2)}`;
  const buttons = items.map((item) => {
    const b = h('button', { type: 'button', role: 'menuitem', tabindex: '-1', class: item.danger ? 'danger' : '' }, item.label);
    b.addEventListener('click', () => {
      closeMenu(true);
      item.run();
    });
    return b;
  });
  const menu = h('div', { role: 'menu', id: menuId, class: 'menu', 'aria-label': button.getAttribute('aria-label') ?? 'Actions' }, buttons);
  menu.addEventListener('keydown', (ev) => {
    const i = buttons.indexOf(document.activeElement as HTMLButtonElement);
    let next = -1;
    if (ev.key === 'ArrowDown') next = (i + 1) % buttons.length;
    else if (ev.key === 'ArrowUp') next = (i - 1 + buttons.length) % buttons.length;
    else if (ev.key === 'Home') next = 0;
    else if (ev.key === 'End') next = buttons.length - 1;
    else if (ev.key === 'Escape') {
      ev.preventDefault();
      closeMenu(true);
      return;
    } else if (ev.key === 'Tab') {
      closeMenu(false);
      return;
    }
    if (next >= 0) {
      ev.preventDefault();
      buttons[next]?.focus();
    }
  });
  const away = (ev: Event): void => {
    if (!menu.contains(ev.target as Node) && ev.target !== button) closeMenu(false);
  };
  document.addEventListener('pointerdown', away, true);
  button.setAttribute('aria-expanded', 'true');
  button.setAttribute('aria-controls', menuId);
  button.after(menu);
  open = { menu, button, away };
  buttons[0]?.focus();
}
