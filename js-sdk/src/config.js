// Client options: from load() and from the SDK script tag's data-* attributes.

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
  return toWebSocket(origin) + '/ws/v1';
}

// http(s):// -> ws(s)://, leaving ws(s):// alone.
const toWebSocket = (url) => String(url).replace(/^http/, 'ws');

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
  merged.endpoint = merged.endpoint
    ? toWebSocket(merged.endpoint)
    : defaultEndpoint(script?.src, location);
  return merged;
}
