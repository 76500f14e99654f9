// A confirmation dialog (native <dialog>, modal, Escape cancels, focus on
// Cancel) for actions that destroy or expose data: the request is sent
// only after the person confirms.

import { el } from './ui.js';

/**
 * Asks for confirmation. `lines` are paragraphs naming exactly what will
 * happen. Resolves true only when the confirm button is pressed.
 */
export function confirmAction({ title, lines, confirmLabel }) {
  return new Promise((resolve) => {
    const titleId = `confirm-title-${Date.now()}`;
    const cancel = el('button', { type: 'button', class: 'secondary', id: 'confirm-cancel', autofocus: true }, 'Cancel');
    const ok = el('button', { type: 'button', class: 'danger', id: 'confirm-ok' }, confirmLabel);
    const dialog = el('dialog', { class: 'confirm', 'aria-labelledby': titleId, id: 'confirm-dialog' },
      el('h2', { id: titleId }, title),
      lines.map((l) => el('p', {}, l)),
      el('div', { class: 'buttons' }, cancel, ok));
    let answered = false;
    const finish = (value) => {
      if (answered) return;
      answered = true;
      dialog.close();
      dialog.remove();
      resolve(value);
    };
    cancel.addEventListener('click', () => finish(false));
    ok.addEventListener('click', () => finish(true));
    dialog.addEventListener('cancel', (ev) => {
      ev.preventDefault();
      finish(false);
    });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}
