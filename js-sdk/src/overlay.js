// The blocking dialog, after a11y-dialog: role="alertdialog", aria-modal, focus trapped and
// restored, the page beneath inert (also what the page adds while shown), no Escape or
// backdrop dismissal, idempotent show and hide.

import { listeners } from './listeners.js';

export const OVERLAY_ID = 'seatguard-overlay';
const STYLE_ID = 'seatguard-style';

// Namespaced styles; colours come from custom properties the site may set. The first action
// is filled, the others outlined.
const CSS =
  '.seatguard{position:fixed;inset:0;z-index:2147483647;display:grid;place-items:center;padding:1rem;' +
  'background:var(--seatguard-backdrop,#111827bf);font:16px/1.5 system-ui,sans-serif}' +
  '.seatguard-opaque{background:#111827}' +
  '.seatguard-dialog{max-width:30rem;padding:1.5rem;border-radius:.75rem;outline:0;' +
  'border-top:.3rem solid var(--seatguard-accent,#2563eb);background:var(--seatguard-bg,#fff);' +
  'color:var(--seatguard-fg,#111827);box-shadow:0 1rem 3rem #0006}' +
  '.seatguard-dialog>*{margin:0}' +
  '.seatguard-title{margin-bottom:.5rem;font-size:1.25rem}' +
  '.seatguard-dialog>div>*{display:inline-block;margin:1rem .5rem 0 0;padding:.5rem 1rem;border:0;border-radius:.5rem;font:inherit;' +
  'background:var(--seatguard-accent,#2563eb);color:var(--seatguard-bg,#fff);text-decoration:none}' +
  '.seatguard-dialog>div>*+*{background:0;color:inherit;text-decoration:underline}';

/**
 * Creates the overlay for `doc`; nothing is drawn until `show()`. `onAction(name, event)`
 * runs when one of its actions is clicked. `opaque`: a backdrop nothing shows through.
 */
export function createOverlay(doc, onAction, opaque) {
  // The backdrop while shown (else null), and inside it the dialog with its heading, its text
  // and its row of actions.
  let root = null;
  let dialog;
  let title;
  let text;
  let row;
  // What had the focus before the dialog took it.
  let previous;
  // The children of <body> this overlay made inert.
  const inerted = [];
  // Watches the document while shown: children the page adds to <body>, and what it takes away
  // or makes live again.
  let observer;
  // Texts to show once <body> exists (a block that arrives while the page is still parsing).
  let waiting = null;

  // An element with attributes, appended to `parent` if given.
  const make = (tag, attributes, parent) => {
    const el = doc.createElement(tag);
    for (const name in attributes) el.setAttribute(name, attributes[name]);
    parent?.appendChild(el);
    return el;
  };

  // Moves focus to the dialog's first action, else to the dialog itself.
  const focusInside = () => (row.firstChild || dialog).focus();

  // Tab and Shift+Tab go round the dialog's actions (from outside them, to the first);
  // Escape is ignored.
  const onKeydown = (event) => {
    if (event.key !== 'Tab') return;
    event.preventDefault();
    const all = [...row.children];
    const at = all.indexOf(doc.activeElement);
    (all[at < 0 ? 0 : (at + (event.shiftKey ? all.length - 1 : 1)) % all.length] || dialog).focus();
  };

  // Pulls focus back when something outside the dialog gets it.
  const onFocusin = (event) => dialog.contains(event.target) || focusInside();

  // The document listeners: DOMContentLoaded while texts wait for <body>, the focus trap
  // while shown.
  const trap = listeners();

  // Makes a child of <body> inert, unless it is ours, not an element or inert already;
  // remembers the ones it changed.
  const inert = (el) => {
    if (el === root || el.nodeType !== 1 || el.hasAttribute('inert')) return;
    el.setAttribute('inert', '');
    inerted.push(el);
  };

  // Draws the texts waiting for <body>, unless hidden meanwhile.
  const onParsed = () => waiting && show(...waiting);

  // Puts in place whatever is missing while shown (the stylesheet, the backdrop in <body>, the
  // dialog and its parts, which the page may have removed) and makes every other child of
  // <body> inert (again); focus goes inside if it is not there. Changes nothing that is in
  // place, so the observer that calls it does not call it again and again.
  const mount = () => {
    const body = doc.body;
    if (!body) return;
    if (!doc.getElementById(STYLE_ID)) make('style', { id: STYLE_ID }, doc.head || doc.documentElement).textContent = CSS;
    const parts = [title, text, row];
    if (parts.some((el) => el.parentNode !== dialog)) dialog.append(...parts);
    if (dialog.parentNode !== root) root.append(dialog);
    if (root.parentNode !== body) body.append(root);
    [...body.children].forEach(inert);
    if (!dialog.contains(doc.activeElement)) focusInside();
  };

  /**
   * Shows the dialog with a heading, a text and `actions` (`[name, label, href]` each: a link
   * to `href`, else a button), or updates them when already shown. The first action gets the
   * focus, else the dialog.
   */
  function show(heading, explanation, actions = []) {
    if (!doc.body) {
      if (!waiting) trap._on(doc, 'DOMContentLoaded', onParsed);
      waiting = [heading, explanation, actions];
      return;
    }
    waiting = null;
    if (!root) {
      root = make('div', { class: opaque ? 'seatguard seatguard-opaque' : 'seatguard' });
      dialog = make(
        'div',
        {
          id: OVERLAY_ID,
          class: 'seatguard-dialog',
          role: 'alertdialog',
          'aria-modal': 'true',
          'aria-labelledby': 'seatguard-title',
          'aria-describedby': 'seatguard-text',
          tabindex: '-1',
        },
        root,
      );
      title = make('h2', { id: 'seatguard-title', class: 'seatguard-title' });
      text = make('p', { id: 'seatguard-text', class: 'seatguard-text' });
      row = make('div', { class: 'seatguard-actions' });
      previous = doc.activeElement;
      mount();
      // Whatever the page changes later, while shown (where the browser has MutationObserver).
      const Observer = doc.defaultView?.MutationObserver;
      if (Observer) {
        observer = new Observer(mount);
        observer.observe(doc.documentElement, { childList: true, subtree: true, attributeFilter: ['inert'] });
      }
      trap._on(doc, 'keydown', onKeydown, true);
      trap._on(doc, 'focusin', onFocusin, true);
      // A fullscreen element would sit above any z-index, so leave fullscreen.
      if (doc.fullscreenElement) doc.exitFullscreen?.()?.catch?.(() => {});
    }
    title.textContent = heading;
    text.textContent = explanation;
    // The take-over button keeps its class of old (seatguard-takeover), for the sites' styles.
    row.replaceChildren(
      ...actions.map(([name, label, href]) => {
        const el = make(href ? 'a' : 'button', {
          [href ? 'href' : 'type']: href || 'button',
          'data-action': name,
          class: name === 'use_here' ? 'seatguard-takeover' : '',
        });
        el.textContent = label;
        el.onclick = (event) => onAction(name, event);
        return el;
      }),
    );
    // Focus on the first action when there is one, else on the dialog, unless it is inside already.
    if (!dialog.contains(doc.activeElement) || doc.activeElement === dialog) focusInside();
  }

  /**
   * Removes the dialog, restores the page's inert state and the focus as they were, and
   * leaves no listener or observer behind (so it also serves as destroy).
   */
  function hide() {
    waiting = null;
    trap._off();
    observer?.disconnect();
    if (!root) return;
    root.remove();
    root = null;
    inerted.splice(0).forEach((el) => el.removeAttribute('inert'));
    if (previous && doc.contains(previous)) previous.focus?.();
    previous = null;
  }

  return {
    show,
    hide,
    /** Whether the dialog is shown, or waits for <body> to be shown. */
    get shown() {
      return !!(root || waiting);
    },
  };
}
