// Page lifecycle: where the page goes on pagehide, back/forward-cache restores, wake-ups.

// How long a reload key press is taken as a hint for the next pagehide.
export const RELOAD_HINT_MS = 2000;

/**
 * What a Navigation API `navigate` event means for the seat if the page unloads next:
 * `reload`, `navigate` (another page of the same origin), `close` (another site) or `unload`
 * (nothing known). Browsers announce only page-initiated navigations: a reload from the
 * browser's button or keyboard fires no `navigate`. So F5 and Ctrl+R / Cmd+R (with or without
 * Shift) count as `reload` for a pagehide within RELOAD_HINT_MS (unless the page prevented
 * the key's default), and a bare `pagehide` is `unload`. The server keeps the seat of
 * `reload` and `navigate` for the reload grace, that of `unload` only for the short unload
 * grace: a closed tab frees its seat almost at once.
 */
export function intent(event, location) {
  if (event.downloadRequest != null || event.destination?.sameDocument) return 'unload';
  if (event.navigationType === 'reload') return 'reload';
  try {
    return new URL(event.destination.url).origin === location.origin ? 'navigate' : 'close';
  } catch {
    return 'unload';
  }
}

/** Whether a keydown is the browser's reload shortcut: F5, Ctrl+R or Cmd+R, Shift or not. */
export const reloadKey = (event) =>
  event.key === 'F5' || ((event.ctrlKey || event.metaKey) && !event.altKey && /^r$/i.test(event.key));

/**
 * Listens with `listen` (listeners.js `_on`) and calls `owner._pagehide(next)` on pagehide,
 * `owner._pageshow()` when the page comes back from the back/forward cache, and
 * `owner._wake()` when the page becomes visible or the network returns. `now()` dates
 * reload key presses.
 */
export function watchLifecycle(listen, win, doc, now, owner) {
  // Set by the Navigation API just before a page change; `unload` when nothing was announced.
  let next = 'unload';
  // The last reload key press since the last navigation or pagehide, and when it came; it
  // counts for RELOAD_HINT_MS.
  let key = null;
  let keyAt = 0;
  const expect = (value) => {
    next = value;
    key = null;
  };
  // Capture, so that a page handler stopping the event does not hide it.
  listen(
    win,
    'keydown',
    (event) => {
      if (!reloadKey(event)) return;
      key = event;
      keyAt = now();
    },
    true,
  );
  const nav = win.navigation;
  if (nav?.addEventListener) {
    listen(nav, 'navigate', (event) => expect(intent(event, win.location)));
    // Same-document (SPA) navigations and cancelled ones end here: the page stays.
    const stay = () => expect('unload');
    listen(nav, 'navigatesuccess', stay);
    listen(nav, 'navigateerror', stay);
  }
  listen(win, 'pagehide', () => {
    // A reload key the page kept for itself (preventDefault) reloads nothing.
    const reload = key && !key.defaultPrevented && now() - keyAt < RELOAD_HINT_MS;
    owner._pagehide(reload ? 'reload' : next);
    expect('unload');
  });
  listen(win, 'pageshow', (event) => {
    if (event.persisted) owner._pageshow();
  });
  if (doc) {
    listen(doc, 'visibilitychange', () => {
      if (doc.visibilityState === 'visible') owner._wake();
    });
  }
  listen(win, 'online', () => owner._wake());
}
