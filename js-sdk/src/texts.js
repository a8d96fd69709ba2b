// Overlay texts: English built in, fr, es and de fetched as language packs (packs.js).
// Placeholders: {n} is the seat limit, {unit} what holds a seat (browser(s) or device(s), by
// {n}) and {one} its singular (browser or device).

/**
 * English, which also names the keys. Block texts by reason: limit uses blockTitle and
 * blockText, evicted evictedTitle/evictedText, taken_over takenOverTitle/takenOverText,
 * challenge blockTitle and challengeText, policy (the site's policy refuses this browser for
 * now) blockTitle and policyText, verify (it asks the user to sign in again) blockTitle and
 * verifyText; heldText says where the seat is held ({device}: computer, tablet or mobile;
 * {browser}, {os}, {since}: a time), cooldownText when "use here" must wait ({s} seconds).
 * useHere labels the take-over button, continueHere for challenge; signOut, signIn, upgrade
 * and help the other actions. reconnecting and idleWarning ({s} seconds left) are the notice
 * at the foot of the page. Expiry: idleText or absoluteText by reason, else expiredText (always under
 * expiredTitle).
 */
export const EN = {
  blockTitle: 'This account is in use elsewhere',
  blockText: 'Your plan allows {n} {unit} at once. This page will continue when a seat frees up.',
  evictedTitle: 'This account was opened on another {one}',
  evictedText: 'Your plan allows {n} {unit} at once. Use it here again, or wait until a seat frees up.',
  takenOverTitle: 'This account is now in use on another {one}',
  takenOverText: 'Use it here again, or wait until a seat frees up.',
  challengeText: 'Continue here to use it on this {one}; the other {one} will be paused.',
  policyText: 'The site does not allow it on this {one} for now.',
  verifyText: 'Sign in again to use it on this {one}.',
  heldText: 'In use on a {device} ({browser} on {os}) since {since}.',
  computer: 'computer',
  tablet: 'tablet',
  mobile: 'phone',
  cooldownText: 'Try again in {s} s.',
  useHere: 'Use here',
  continueHere: 'Continue here',
  signOut: 'Sign out here',
  signIn: 'Sign in again',
  upgrade: 'Add a seat',
  help: 'Help',
  browser: 'browser',
  browsers: 'browsers',
  device: 'device',
  devices: 'devices',
  endedTitle: 'Signed out',
  endedText: 'You have been signed out on this browser.',
  revokedTitle: 'You have been signed out',
  revokedText: 'The site signed this browser out. Sign in again to continue.',
  suspendedTitle: 'This account is suspended',
  suspendedText: 'Sign in again to continue.',
  expiredTitle: 'Session expired',
  expiredText: 'Your session has expired. Sign in again to continue.',
  idleText: 'Your session ended after a period of inactivity.',
  absoluteText: 'Your session reached its maximum length. Sign in again to continue.',
  reconnecting: 'Reconnecting…',
  idleWarning: 'Inactive: signing out in {s} s.',
};

// The languages with a pack (packs.js, served at /sdk/v1/lang/{lang}.json), besides English.
export const LANGUAGES = ['fr', 'es', 'de'];

// The first supported language among `lang` and the browser's languages, else English.
export function pickLanguage(lang, languages) {
  for (const tag of [lang, ...(languages || [])]) {
    const base = String(tag || '').slice(0, 2).toLowerCase();
    if (base === 'en' || LANGUAGES.includes(base)) return base;
  }
  return 'en';
}

// Where the server of the WebSocket `endpoint` (ws(s)://host/ws/v1) serves the pack of `lang`.
export const packUrl = (endpoint, lang) => sdkUrl(endpoint, `lang/${lang}.json`);

// The URL of one of the SDK's files (`file` under /sdk/v1/) on the server of `endpoint`.
export const sdkUrl = (endpoint, file) => new URL('/sdk/v1/' + file, endpoint.replace(/^ws/, 'http')).href;

// Fills {name} placeholders from `values`, leaving unknown ones as they are.
export const format = (text, values) =>
  String(text).replace(/\{(\w+)\}/g, (whole, key) => (key in values ? values[key] : whole));
