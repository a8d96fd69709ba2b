// The blocking dialog, after a11y-dialog: role="alertdialog", aria-modal, focus trapped and
// restored, the page beneath inert (also what the page adds while shown), no Escape or
// backdrop dismissal, idempotent show and hide.

import { listeners } from './listeners.js';

export const OVERLAY_ID = 'seatguard-overlay';
const STYLE_ID = 'seatguard-style';

// Namespaced styles; colours come from custom properties the site may set.
const CSS =
  '.seatguard{position:fixed;inset:0;z-index:2147483647;display:grid;place-items:center;padding:1rem;' +
  'background:var(--seatguard-backdrop,#111827bf);font:16px/1.5 system-ui,sans-serif}' +
  '.seatguard-dialog{max-width:30rem;padding:1.5rem;border-radius:.75rem;outline:0;' +
  'border-top:.3rem solid var(--seatguard-accent,#2563eb);background:var(--seatguard-bg,#fff);' +
  'color:var(--seatguard-fg,#111827);box-shadow:0 1rem 3rem #0006}' +
  '.seatguard-dialog>*{margin:0}' +
  '.seatguard-title{margin-bottom:.5rem;font-size:1.25rem}' +
  '.seatguard-takeover{margin-top:1rem;padding:.5rem 1rem;border:0;border-radius:.5rem;font:inherit;' +
  'background:var(--seatguard-accent,#2563eb);color:var(--seatguard-bg,#fff)}';

/**
 * Creates the overlay for `doc`; nothing is drawn until `show()`. `onAction` runs when the
 * take-over button is clicked.
 */
export function createOverlay(doc, onAction) {
  // The backdrop while shown (else null), and inside it the dialog with its heading, its text
  // and the take-over button.
  let root = null;
  let dialog;
  let title;
  let text;
  let button;
  // What had the focus before the dialog took it.
  let previous;
  // The children of <body> this overlay made inert.
  const inerted = [];
  // Watches <body> while shown, for children the page adds later.
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

  // Moves focus to the dialog's one control, the take-over button, when shown; else to the
  // dialog itself.
  const focusInside = () => (dialog.contains(button) ? button : dialog).focus();

  // Tab and Shift+Tab stay inside the dialog (it has one control at most); Escape is ignored.
  const onKeydown = (event) => {
    if (event.key !== 'Tab') return;
    event.preventDefault();
    focusInside();
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

  /**
   * Shows the dialog with a heading and a text, or updates them when already shown. With a
   * `label`, the take-over button below the text: the dialog's only control, and focused.
   */
  function show(heading, explanation, label) {
    const body = doc.body;
    if (!body) {
      if (!waiting) trap._on(doc, 'DOMContentLoaded', onParsed);
      waiting = [heading, explanation, label];
      return;
    }
    waiting = null;
    if (!root) {
      // The stylesheet, once per document.
      if (!doc.getElementById(STYLE_ID)) make('style', { id: STYLE_ID }, doc.head || doc.documentElement).textContent = CSS;
      root = make('div', { class: 'seatguard' });
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
      title = make('h2', { id: 'seatguard-title', class: 'seatguard-title' }, dialog);
      text = make('p', { id: 'seatguard-text', class: 'seatguard-text' }, dialog);
      button = make('button', { type: 'button', class: 'seatguard-takeover' });
      button.onclick = onAction;
      previous = doc.activeElement;
      body.appendChild(root);
      // Every other child of <body> inert, now and as the page adds more (where the browser
      // has MutationObserver).
      [...body.children].forEach(inert);
      const Observer = doc.defaultView?.MutationObserver;
      if (Observer) {
        observer = new Observer((records) => records.forEach((record) => record.addedNodes.forEach(inert)));
        observer.observe(body, { childList: true });
      }
      trap._on(doc, 'keydown', onKeydown, true);
      trap._on(doc, 'focusin', onFocusin, true);
      // A fullscreen element would sit above any z-index, so leave fullscreen.
      if (doc.fullscreenElement) doc.exitFullscreen?.()?.catch?.(() => {});
    }
    title.textContent = heading;
    text.textContent = explanation;
    if (label) {
      button.textContent = label;
      dialog.appendChild(button);
    } else button.remove();
    // Focus on the button when there is one, else on the dialog, unless it is inside already.
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
