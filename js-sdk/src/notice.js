// A small status line at the foot of the page (role="status", polite, never focused): the
// "reconnecting" notice and the idle countdown. Made on first use, emptied and hidden after.

/** The notice for `doc`: `show(text)` (updating it where shown) and `hide()`. */
export function createNotice(doc) {
  let el;
  return {
    show(text) {
      if (!doc.body) return;
      if (!el) {
        el = doc.createElement('div');
        el.setAttribute('role', 'status');
        el.style.cssText = 'position:fixed;bottom:1rem;left:1rem;z-index:2147483647;padding:.5rem 1rem;background:#111827;color:#fff;font:14px system-ui';
      }
      if (!el.isConnected) doc.body.appendChild(el);
      el.hidden = false;
      el.textContent = text;
    },
    hide() {
      if (!el) return;
      el.hidden = true;
      el.textContent = '';
    },
  };
}
