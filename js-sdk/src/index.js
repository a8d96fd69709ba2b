// Entry point: installs the one global `window.Seatguard`, replays the calls the paste-in
// snippet queued before the script loaded, and auto-loads from the script tag's data-* attributes.
import { SDK_VERSION } from './constants.js';
import { Client } from './client.js';
import { fromScript, resolve } from './config.js';

// Client methods the snippet's proxy forwards once the SDK has loaded. The stub queues only
// on, logout and destroy: nothing can be taken over before the SDK runs.
const METHODS = ['on', 'logout', 'destroy', 'takeOver'];

/**
 * Replays a snippet proxy's queued calls onto the real client, then makes the proxy a live
 * view of it. Queued calls are `[method, arguments, handle]`; an unsubscribe called before the
 * replay sets `handle.x`, one called after goes through `handle.off`.
 */
export function adopt(proxy, client) {
  for (const [method, args, handle] of proxy.q || []) {
    if (handle?.x) continue;
    const result = client[method](...Array.from(args || []));
    if (handle && typeof result === 'function') handle.off = result;
  }
  proxy.q = [];
  for (const method of METHODS) proxy[method] = (...args) => client[method](...args);
  Object.defineProperty(proxy, 'state', { get: () => client.state, configurable: true, enumerable: true });
  proxy.client = client;
}

// Logs a configuration error without stopping the other queued loads.
function report(win, error) {
  if (win.console) win.console.error(error);
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
      const client = new Client(resolve(siteKey, options, script, win.location), { window: win, ...world });
      api.client = client;
      return client;
    },
  };
  win.Seatguard = api;
  // Snippet queue entries are [siteKey, options, proxy].
  for (const [siteKey, options, proxy] of stub?.q || []) {
    try {
      adopt(proxy, api.load(siteKey, options));
    } catch (error) {
      report(win, error);
    }
  }
  const auto = fromScript(script);
  if (auto.site && auto.userId) {
    try {
      api.load(auto.site, auto);
    } catch (error) {
      report(win, error);
    }
  }
  return api;
}

if (typeof window !== 'undefined') install(window);
