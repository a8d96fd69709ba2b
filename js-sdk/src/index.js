// Entry point: installs the one global `window.Seatguard`, replays the calls the paste-in
// snippet queued before the script loaded, and auto-loads from the script tag's data-* attributes.
import { SDK_VERSION } from './constants.js';
import { createClient } from './client.js';
import { fromScript, resolve } from './config.js';

// Client methods the snippet's proxy forwards once the SDK has loaded. The stub queues only
// on, logout and destroy: nothing can be taken over before the SDK runs.
const METHODS = ['on', 'logout', 'destroy', 'takeOver'];

/**
 * Replays a snippet proxy's queued calls onto the real client, then makes the proxy a live
 * view of it (its methods, `state` and `token`). Queued calls are `[method, arguments, handle]`; an unsubscribe called before the
 * replay sets `handle.x`, one called after goes through `handle.off`.
 */
export function adopt(proxy, client) {
  for (const [method, args, handle] of proxy.q || []) {
    if (handle?.x) continue;
    const result = client[method](...(args || []));
    if (handle && typeof result === 'function') handle.off = result;
  }
  proxy.q = [];
  for (const method of METHODS) proxy[method] = (...args) => client[method](...args);
  for (const name of ['state', 'token']) Object.defineProperty(proxy, name, { get: () => client[name], configurable: true, enumerable: true });
  proxy.client = client;
}

/**
 * Installs `win.Seatguard` (once) and returns it. `world` is passed on to every client, so
 * tests can inject WebSocket, timers, random and storage.
 */
export function install(win, world = {}) {
  const stub = win.Seatguard;
  if (stub?.version) return stub;
  const doc = win.document;
  // Only set while this script runs: capture it now to find the server that served us.
  const script = doc?.currentScript;
  const api = {
    version: SDK_VERSION,
    client: null,
    /**
     * Seatguard.load(siteKey, { userId, token, org, role, mode, limit, policy, onChallenge,
     * endpoint, overlay, texts, lang }).
     */
    load(siteKey, options) {
      const client = createClient(resolve(siteKey, options, script, win.location), { window: win, ...world });
      api.client = client;
      return client;
    },
  };
  win.Seatguard = api;
  // Snippet queue entries are [siteKey, options, proxy]; the script tag's data-* attributes
  // load one more client when they name a site and a user. A configuration error is logged
  // without stopping the other loads.
  const auto = fromScript(script);
  const loads = stub?.q || [];
  for (const [siteKey, options, proxy] of auto.site && auto.userId ? [...loads, [auto.site, auto]] : loads) {
    try {
      const client = api.load(siteKey, options);
      if (proxy) adopt(proxy, client);
    } catch (error) {
      win.console?.error(error);
    }
  }
  return api;
}

if (typeof window !== 'undefined') install(window);
