// Browser identity: a session id shared by every tab (localStorage), a tab id that survives a
// reload (sessionStorage) and a device id (localStorage). Ids match [A-Za-z0-9_-]{8,64}.

export const SESSION_KEY = 'seatguard:session';
export const DEVICE_KEY = 'seatguard:device';
export const TAB_KEY = 'seatguard:tab';

const ID = /^[A-Za-z0-9_-]{8,64}$/;

// A random 22-character id of [0-9a-z] (113 bits when `random` is uniform).
export function randomId(random) {
  let id = '';
  while (id.length < 22) id += Math.floor(random() * 36).toString(36);
  return id;
}

// Reads a well-formed id from `store`, creating and saving one if missing.
function ensure(store, key, random) {
  let id = store.get(key);
  if (!ID.test(id || '')) store.set(key, (id = randomId(random)));
  return id;
}

/**
 * Opens this page's identity over guarded `local` and `tabs` (session) storages.
 * The tab id is taken out of sessionStorage while a client holds it and written back by
 * `_release()` (on pagehide and destroy): a reload finds it again, but a duplicated tab, whose
 * sessionStorage is a copy made while the original page was open, gets a fresh one.
 */
export function openSession(local, tabs, random) {
  const session = ensure(local, SESSION_KEY, random);
  const device = ensure(local, DEVICE_KEY, random);
  const kept = tabs.get(TAB_KEY);
  const tab = ID.test(kept || '') ? kept : randomId(random);
  tabs.del(TAB_KEY);
  return {
    session,
    device,
    tab,
    // Hands the tab id back to sessionStorage for the next page of this tab.
    _release: () => tabs.set(TAB_KEY, tab),
    // Takes the tab id again (the page came back from the back/forward cache).
    _claim: () => tabs.del(TAB_KEY),
    // Starts a new browser session for the next load, unless another tab already did.
    _rotate: () => {
      if (local.get(SESSION_KEY) === session) local.set(SESSION_KEY, randomId(random));
    },
  };
}
