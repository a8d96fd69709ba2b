// Page lifecycle: where the page goes on pagehide, back/forward-cache restores, wake-ups.

/**
 * What a Navigation API `navigate` event means for the seat if the page unloads next:
 * `reload`, `navigate` (another page of the same origin), `close` (another site) or `unload`
 * (nothing known). Browsers announce only page-initiated navigations: a reload from the
 * browser's button fires no `navigate`, so a bare `pagehide` must be `unload`, which the
 * server treats like a reload (the seat is kept for the reload grace).
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

/**
 * Calls `owner._pagehide(next)` on pagehide, `owner._pageshow()` when the page comes back from
 * the back/forward cache, and `owner._wake()` when the page becomes visible or the network
 * returns. Returns a function that removes every listener.
 */
export function watchLifecycle(win, doc, owner) {
  const offs = [];
  const listen = (target, type, fn) => {
    target.addEventListener(type, fn);
    offs.push(() => target.removeEventListener(type, fn));
  };
  // Set by the Navigation API just before a page change; `unload` when nothing was announced.
  let next = 'unload';
  const nav = win.navigation;
  if (nav?.addEventListener) {
    listen(nav, 'navigate', (event) => {
      next = intent(event, win.location);
    });
    // Same-document (SPA) navigations and cancelled ones end here: the page stays.
    const stay = () => {
      next = 'unload';
    };
    listen(nav, 'navigatesuccess', stay);
    listen(nav, 'navigateerror', stay);
  }
  listen(win, 'pagehide', () => {
    owner._pagehide(next);
    next = 'unload';
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
  return () => offs.splice(0).forEach((off) => off());
}
