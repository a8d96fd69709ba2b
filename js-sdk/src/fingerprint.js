// Best-effort device fingerprint: traits of the machine, not of the browser, so a second
// browser or a private window on the same computer yields the same value.

/** FNV-1a, 32 bits, from offset basis `h`, in base 36. */
export function fnv1a(text, h = 0x811c9dc5) {
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return (h >>> 0).toString(36);
}

// The machine traits that go into the fingerprint, in a fixed order.
export function traits(win) {
  const screen = win.screen || {};
  const nav = win.navigator || {};
  let zone = '';
  try {
    zone = new (win.Intl || Intl).DateTimeFormat().resolvedOptions().timeZone || '';
  } catch {
    // No time zone to tell: it stays empty.
  }
  // Screen sides sorted, so rotating a phone or tablet does not change the device.
  const sides = [screen.width, screen.height].map(Number).sort((a, b) => a - b);
  // navigator.deviceMemory is left out on purpose: only Chromium exposes it, so it would tell
  // a Chrome and a Firefox on the same machine apart.
  return [
    ...sides,
    screen.colorDepth,
    win.devicePixelRatio,
    nav.hardwareConcurrency,
    nav.maxTouchPoints,
    zone,
    nav.platform,
  ];
}

// The fingerprint: two FNV-1a hashes (different offset bases) of the traits, 64 bits in all,
// as 2 to 14 characters of [0-9a-z] ("-" between them), so always within [A-Za-z0-9_-]{4,64}.
export function fingerprint(win) {
  const text = traits(win).join('|');
  return fnv1a(text) + '-' + fnv1a(text, 0x01000193);
}
