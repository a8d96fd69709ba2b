// Client options: from load() and from the SDK script tag's data-* attributes.
import { warn } from './warn.js';

// Options that a data-* attribute of the same name sets (data-user sets userId).
const ATTRIBUTES = ['site', 'mode', 'limit', 'policy', 'endpoint', 'lang'];

// Reads options from `<script data-site data-user data-mode data-limit data-policy ...>`.
export function fromScript(script) {
  const options = {};
  const attr = (name) => script?.getAttribute?.('data-' + name);
  for (const name of ATTRIBUTES) if (attr(name)) options[name] = attr(name);
  if (attr('user')) options.userId = attr('user');
  if (attr('overlay') === 'false') options.overlay = false;
  return options;
}

// The WebSocket endpoint next to the server that served the SDK script (else the page origin).
export function defaultEndpoint(src, location) {
  let origin = location?.origin;
  try {
    const url = new URL(src, location?.href);
    if (/^https?:$/.test(url.protocol)) origin = url.origin;
  } catch {
    // No usable script URL (inline or missing): keep the page's origin.
  }
  return socketUrl(origin);
}

// The URL `value` (against `base`, if given) when its scheme matches `schemes`, else undefined.
const parse = (value, base, schemes) => {
  try {
    const url = new URL(value, base);
    if (schemes.test(url.protocol)) return url;
  } catch {
    // Not a URL at all.
  }
};

/**
 * The WebSocket URL for an `endpoint` option: an http(s) or ws(s) URL, http(s) turned into
 * ws(s); one without a path (an origin) gets `/ws/v1`, one with a path keeps it. Anything
 * else (no scheme, another scheme, not a URL) is undefined.
 */
export function socketUrl(endpoint) {
  const url = parse(endpoint, undefined, /^(http|ws)s?:$/);
  if (!url) return;
  url.protocol = url.protocol.replace('http', 'ws');
  if (url.pathname === '/') url.pathname = '/ws/v1';
  // A WebSocket URL may not have a fragment.
  url.hash = '';
  return url.href;
}

// The options that name one of the site's pages, shown as the overlay's links and buttons.
const LINKS = ['signOutUrl', 'signInUrl', 'upgradeUrl', 'helpUrl'];

/** The http(s) URL of `value` against the page's `base` (relative ones too), else undefined. */
const pageUrl = (value, base) => parse(value, base, /^https?:$/)?.href;

/**
 * Full options for one client: data-* attributes as defaults, load() options on top.
 * Throws a TypeError when the site key is missing, or both the user id and the identity token.
 */
export function resolve(siteKey, options, script, location) {
  const merged = fromScript(script);
  for (const key in options || {}) if (options[key] !== undefined) merged[key] = options[key];
  const site = siteKey || merged.site;
  const user = merged.userId == null || merged.userId === '' ? undefined : String(merged.userId);
  if (!site || (user === undefined && !merged.token)) {
    throw new TypeError('Seatguard.load() needs a site key and a userId or token');
  }
  merged.site = String(site);
  merged.userId = user;
  if (merged.limit != null) merged.limit = Number(merged.limit);
  // A bad endpoint or link is left out with a warning: a `javascript:` link is never drawn,
  // and a client without an endpoint ends with an error instead of reconnecting for ever.
  const given = merged.endpoint;
  merged.endpoint = given ? socketUrl(given) : defaultEndpoint(script?.src, location);
  if (!merged.endpoint) warn(merged, `endpoint ${given} is not an http(s) or ws(s) URL: no connection`);
  for (const name of LINKS) {
    const value = merged[name];
    if (value == null) continue;
    merged[name] = pageUrl(value, location?.href);
    if (!merged[name]) warn(merged, `${name} ${value} is not an http(s) URL: left out`);
  }
  return merged;
}
