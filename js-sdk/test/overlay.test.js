// The blocking dialog in a real-ish DOM (happy-dom): a11y, focus trap, inert, texts, events.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Window } from 'happy-dom';
import { createOverlay, OVERLAY_ID } from '../src/overlay.js';
import { EN, pickLanguage, format } from '../src/texts.js';
import { PACKS } from '../src/packs.js';
import { createClient } from '../src/client.js';
import { FakeClock, MemoryStorage, fakeFetch, fakeWebSocket, flush, seeded } from './fakes.js';

// Every language's texts: English built in, the others from their packs.
const TEXTS = { en: EN, ...PACKS };

// A page with content, a focused Play button and an element that was already inert.
function page() {
  const win = new Window({ url: 'https://shop.test/watch' });
  const doc = win.document;
  doc.body.innerHTML =
    '<header><a href="/">Home</a></header><main><button id="play">Play</button></main><aside id="old" inert>Note</aside>';
  doc.getElementById('play').focus();
  return { win, doc };
}

const tab = (doc, shiftKey = false) => {
  const event = new doc.defaultView.KeyboardEvent('keydown', { key: 'Tab', shiftKey, bubbles: true, cancelable: true });
  (doc.activeElement || doc.body).dispatchEvent(event);
  return event;
};

test('show draws an alertdialog with a heading and text, over an inert page', () => {
  const { doc } = page();
  const overlay = createOverlay(doc);
  overlay.show('Title', 'Explanation');
  const dialog = doc.getElementById(OVERLAY_ID);
  assert.equal(dialog.getAttribute('role'), 'alertdialog');
  assert.equal(dialog.getAttribute('aria-modal'), 'true');
  const title = doc.getElementById(dialog.getAttribute('aria-labelledby'));
  const text = doc.getElementById(dialog.getAttribute('aria-describedby'));
  assert.equal(title.textContent, 'Title');
  assert.ok(title.classList.contains('seatguard-title'));
  assert.equal(text.textContent, 'Explanation');
  assert.equal(dialog.getAttribute('tabindex'), '-1');
  assert.equal(doc.activeElement, dialog, 'focus moved into the dialog');
  for (const el of doc.body.children) {
    if (el.contains(dialog)) assert.ok(!el.hasAttribute('inert'));
    else assert.ok(el.hasAttribute('inert'), el.tagName);
  }
  // Styles are injected once, namespaced, with the colour custom properties.
  const style = doc.getElementById('seatguard-style');
  for (const prop of ['--seatguard-bg', '--seatguard-fg', '--seatguard-accent', '--seatguard-backdrop']) assert.ok(style.textContent.includes(prop), prop);
  overlay.hide();
  overlay.show('Again', 'x');
  assert.equal(doc.querySelectorAll('#seatguard-style').length, 1);
});

test('hide restores inert exactly as before and gives focus back', () => {
  const { doc } = page();
  const overlay = createOverlay(doc);
  overlay.show('Title', 'Text');
  overlay.hide();
  assert.equal(doc.getElementById(OVERLAY_ID), null);
  assert.ok(!doc.querySelector('header').hasAttribute('inert'));
  assert.ok(!doc.querySelector('main').hasAttribute('inert'));
  assert.ok(doc.getElementById('old').hasAttribute('inert'), 'what was inert stays inert');
  assert.equal(doc.activeElement, doc.getElementById('play'));
});

test('show and hide are idempotent; a second show updates the texts', () => {
  const { doc } = page();
  const overlay = createOverlay(doc);
  overlay.hide();
  overlay.show('One', 'first');
  overlay.show('Two', 'second');
  assert.equal(doc.querySelectorAll('#' + OVERLAY_ID).length, 1);
  assert.equal(doc.querySelector('.seatguard-title').textContent, 'Two');
  overlay.hide();
  overlay.hide();
  assert.equal(doc.querySelectorAll('.seatguard').length, 0);
  assert.equal(doc.activeElement, doc.getElementById('play'));
});

// Appends a new <tag> to <body>, as a page would while the overlay is shown.
const add = (doc, tag, attributes = '') => {
  doc.body.insertAdjacentHTML('beforeend', `<${tag} ${attributes}></${tag}>`);
  return doc.body.lastElementChild;
};

test('children the page adds to <body> while shown become inert too; hide restores them', async () => {
  const { doc } = page();
  const overlay = createOverlay(doc);
  overlay.show('Title', 'Text');
  overlay.show('Title', 'Again'); // a second show does not start a second watch
  const toast = add(doc, 'div', 'id="toast"');
  const own = add(doc, 'section', 'inert');
  doc.body.appendChild(doc.createTextNode('text'));
  await flush();
  assert.ok(toast.hasAttribute('inert'), 'added while shown');
  assert.ok(!doc.querySelector('.seatguard').hasAttribute('inert'), 'the overlay itself stays live');
  overlay.hide();
  assert.ok(!toast.hasAttribute('inert'));
  assert.ok(own.hasAttribute('inert'), 'what the page made inert stays inert');
  assert.ok(doc.getElementById('old').hasAttribute('inert'));
  // Hidden: the page's new children are left alone.
  const later = add(doc, 'div');
  await flush();
  assert.ok(!later.hasAttribute('inert'));
  // Shown again: watched again.
  overlay.show('Title', 'Text');
  const again = add(doc, 'div');
  await flush();
  assert.ok(again.hasAttribute('inert'));
  overlay.hide();
  assert.ok(!again.hasAttribute('inert'));
});

test('hide before <body> exists removes the DOMContentLoaded listener', (t) => {
  const win = new Window({ url: 'https://shop.test/' });
  const doc = win.document;
  doc.body.remove();
  const added = t.mock.method(doc, 'addEventListener');
  const removed = t.mock.method(doc, 'removeEventListener');
  const overlay = createOverlay(doc);
  overlay.show('Title', 'Text');
  overlay.hide();
  const listener = (mock) => mock.mock.calls.filter((call) => call.arguments[0] === 'DOMContentLoaded').map((call) => call.arguments[1]);
  assert.equal(listener(added).length, 1);
  assert.deepEqual(listener(removed), listener(added));
});

test('Tab and Shift+Tab stay on the dialog when it has no controls', () => {
  const { doc } = page();
  const overlay = createOverlay(doc);
  overlay.show('Title', 'Text');
  const dialog = doc.getElementById(OVERLAY_ID);
  assert.ok(tab(doc).defaultPrevented);
  assert.equal(doc.activeElement, dialog);
  assert.ok(tab(doc, true).defaultPrevented);
  assert.equal(doc.activeElement, dialog);
});

test('with a take-over button only: it is the one control, focused, and Tab and Shift+Tab stay on it', () => {
  const { doc, win } = page();
  const clicks = [];
  const overlay = createOverlay(doc, (name) => clicks.push(name));
  overlay.show('Title', 'Text', [['use_here', 'Use here']]);
  const dialog = doc.getElementById(OVERLAY_ID);
  const button = dialog.querySelector('button.seatguard-takeover');
  assert.equal(button.textContent, 'Use here');
  assert.equal(button.getAttribute('type'), 'button');
  assert.equal(doc.activeElement, button);
  assert.ok(tab(doc).defaultPrevented);
  assert.equal(doc.activeElement, button);
  assert.ok(tab(doc, true).defaultPrevented);
  assert.equal(doc.activeElement, button);
  button.dispatchEvent(new win.MouseEvent('click', { bubbles: true }));
  assert.deepEqual(clicks, ['use_here']);
  // Updated without actions: the button goes, focus falls back on the dialog.
  overlay.show('Title', 'Text');
  assert.equal(dialog.querySelector('button'), null);
  assert.equal(doc.activeElement, dialog);
  // And back: the new button takes the focus from the dialog.
  overlay.show('Title', 'Text', [['use_here', 'Continue here']]);
  assert.equal(doc.activeElement, dialog.querySelector('button'));
  overlay.hide();
  assert.equal(doc.activeElement, doc.getElementById('play'));
});

test('actions: links for those with a URL, buttons for the others, in order; Tab goes round them', () => {
  const { doc, win } = page();
  const clicks = [];
  const overlay = createOverlay(doc, (name, event) => clicks.push([name, event.type]));
  overlay.show('Title', 'Text', [
    ['use_here', 'Use here'],
    ['upgrade', 'Add a seat', 'https://shop.test/plans'],
    ['sign_out', 'Sign out here'],
  ]);
  const [use, upgrade, signOut] = doc.querySelectorAll('#' + OVERLAY_ID + ' .seatguard-actions > *');
  assert.equal(use.tagName, 'BUTTON');
  assert.equal(upgrade.tagName, 'A');
  assert.equal(upgrade.getAttribute('href'), 'https://shop.test/plans');
  assert.equal(upgrade.getAttribute('data-action'), 'upgrade');
  assert.equal(signOut.tagName, 'BUTTON');
  assert.equal(signOut.getAttribute('type'), 'button');
  assert.equal(signOut.textContent, 'Sign out here');
  assert.equal(doc.activeElement, use);
  tab(doc);
  assert.equal(doc.activeElement, upgrade);
  tab(doc);
  assert.equal(doc.activeElement, signOut);
  tab(doc);
  assert.equal(doc.activeElement, use, 'round to the first');
  tab(doc, true);
  assert.equal(doc.activeElement, signOut, 'and back to the last');
  signOut.dispatchEvent(new win.MouseEvent('click', { bubbles: true }));
  assert.deepEqual(clicks, [['sign_out', 'click']]);
});

test('opaque: the backdrop gets the opaque class; the default does not', () => {
  const { doc } = page();
  createOverlay(doc, null, true).show('Title', 'Text');
  assert.equal(doc.querySelector('.seatguard').className, 'seatguard seatguard-opaque');
  assert.match(doc.getElementById('seatguard-style').textContent, /\.seatguard-opaque\{background:#111827\}/);
  const other = page().doc;
  createOverlay(other).show('Title', 'Text');
  assert.equal(other.querySelector('.seatguard').className, 'seatguard');
});

test('what the page removes while shown comes back: dialog, backdrop, parts, stylesheet, inert', async () => {
  const { doc } = page();
  const overlay = createOverlay(doc, () => {}, false);
  overlay.show('Title', 'Text', [['sign_out', 'Sign out here']]);
  const root = doc.querySelector('.seatguard');
  const drawn = () => {
    const dialog = doc.getElementById(OVERLAY_ID);
    assert.ok(dialog && root.isConnected && dialog.parentNode === root);
    assert.equal(doc.querySelector('.seatguard-title').textContent, 'Title');
    assert.ok(doc.querySelector('[data-action=sign_out]'));
    assert.ok(doc.getElementById('seatguard-style'));
    assert.ok(doc.querySelector('main').hasAttribute('inert'));
    assert.ok(doc.getElementById(OVERLAY_ID).contains(doc.activeElement), 'focus is inside');
  };
  doc.getElementById(OVERLAY_ID).remove();
  await flush();
  drawn();
  root.remove();
  await flush();
  drawn();
  doc.querySelector('.seatguard-title').remove();
  doc.querySelector('.seatguard-actions').remove();
  await flush();
  drawn();
  doc.getElementById('seatguard-style').remove();
  for (const el of doc.querySelectorAll('[inert]')) el.removeAttribute('inert');
  await flush();
  drawn();
  doc.body.innerHTML = '<main>Replaced</main>';
  await flush();
  drawn();
  // Hidden, nothing comes back.
  overlay.hide();
  await flush();
  assert.equal(doc.querySelector('.seatguard'), null);
  assert.ok(!doc.querySelector('main').hasAttribute('inert'));
});

test('focus that escapes the dialog is pulled back', () => {
  const { doc } = page();
  const overlay = createOverlay(doc);
  overlay.show('Title', 'Text');
  const late = doc.createElement('input');
  doc.body.appendChild(late); // added after show: not inert until the observer runs
  late.focus();
  assert.equal(doc.activeElement, doc.getElementById(OVERLAY_ID));
});

test('Escape and clicks on the backdrop do not close the dialog', () => {
  const { doc, win } = page();
  const overlay = createOverlay(doc);
  overlay.show('Title', 'Text');
  doc.activeElement.dispatchEvent(new win.KeyboardEvent('keydown', { key: 'Escape', bubbles: true, cancelable: true }));
  doc.querySelector('.seatguard').dispatchEvent(new win.MouseEvent('click', { bubbles: true }));
  assert.ok(overlay.shown);
  assert.ok(doc.getElementById(OVERLAY_ID));
});

test('hide removes the document listeners', () => {
  const { doc } = page();
  const overlay = createOverlay(doc);
  overlay.show('Title', 'Text');
  overlay.hide();
  const late = doc.createElement('input');
  doc.body.appendChild(late);
  late.focus();
  assert.equal(doc.activeElement, late);
  assert.ok(!tab(doc).defaultPrevented);
});

test('languages: option first, then navigator.languages, else English', () => {
  assert.equal(pickLanguage('fr', ['de-DE']), 'fr');
  assert.equal(pickLanguage(undefined, ['pt-BR', 'es-MX', 'en']), 'es');
  assert.equal(pickLanguage('DE-at', []), 'de');
  assert.equal(pickLanguage('ja', ['zh-CN']), 'en');
  assert.equal(pickLanguage(undefined, undefined), 'en');
  for (const lang of ['en', 'fr', 'es', 'de']) assert.deepEqual(Object.keys(TEXTS[lang]), Object.keys(TEXTS.en), lang);
});

test('texts can be overridden per key and are formatted with the limit and unit', () => {
  const { ws, doc } = clientOn({ texts: { blockTitle: 'Busy' } });
  ws.welcome({ state: 'blocked', reason: 'limit', limit: 2 });
  assert.equal(doc.querySelector('.seatguard-title').textContent, 'Busy');
  assert.equal(doc.querySelector('.seatguard-text').textContent, 'Your plan allows 2 browsers at once. This page will continue when a seat frees up.');
  assert.equal(format(EN.blockText, { n: 2, unit: EN.browsers }), 'Your plan allows 2 browsers at once. This page will continue when a seat frees up.');
  assert.equal(format('{n} {missing}', { n: 1 }), '1 {missing}');
});

// A client on a happy-dom page with fake socket, clock and fetch (the server's packs).
function clientOn(options = {}, languages = ['en-US'], fetch = fakeFetch()) {
  const { win, doc } = page();
  Object.defineProperty(win.navigator, 'languages', { value: languages, configurable: true });
  const WebSocket = fakeWebSocket();
  const client = createClient(
    { site: 'pk', userId: 'alice', endpoint: 'wss://sg.test/ws/v1', ...options },
    { window: win, document: doc, WebSocket, fetch, timers: new FakeClock(), random: seeded(), storage: { local: new MemoryStorage(), session: new MemoryStorage() }, device: null },
  );
  return { client, doc, win, fetch, ws: WebSocket.sockets[0] };
}

// A client as above once its language pack (if any) has arrived.
async function loadedOn(...args) {
  const loaded = clientOn(...args);
  await flush();
  return loaded;
}

test('a blocked client shows the overlay with its rules; unblock removes it', () => {
  const { ws, doc } = clientOn();
  ws.welcome({ state: 'blocked', reason: 'limit', limit: 2, mode: 'concurrence' });
  assert.equal(doc.querySelector('.seatguard-title').textContent, 'This account is in use elsewhere');
  assert.match(doc.getElementById('seatguard-text').textContent, /^Your plan allows 2 browsers at once\./);
  ws.push({ t: 'unblock' });
  assert.equal(doc.getElementById(OVERLAY_ID), null);
  assert.equal(doc.activeElement, doc.getElementById('play'));
});

test('texts follow the language: fr from navigator, de from the lang option, device-limit wording', async () => {
  const fr = await loadedOn({}, ['fr-FR', 'en']);
  fr.ws.welcome({ state: 'blocked', reason: 'limit', limit: 1 });
  assert.equal(fr.doc.querySelector('.seatguard-title').textContent, 'Ce compte est utilisé ailleurs');
  assert.match(fr.doc.getElementById('seatguard-text').textContent, /1 navigateur à la fois/);
  const de = await loadedOn({ lang: 'de' }, ['fr-FR']);
  de.ws.welcome({ state: 'blocked', reason: 'limit', limit: 3, mode: 'device-limit' });
  assert.match(de.doc.getElementById('seatguard-text').textContent, /3 Geräte gleichzeitig/);
  const es = await loadedOn({ lang: 'es', texts: { blockTitle: 'Ocupado' } });
  es.ws.welcome({ state: 'blocked', reason: 'limit' });
  assert.equal(es.doc.querySelector('.seatguard-title').textContent, 'Ocupado');
});

test('preventDefault on seatguard:block keeps the overlay away; the block event still fires', () => {
  const { ws, doc, client } = clientOn();
  doc.addEventListener('seatguard:block', (e) => e.preventDefault());
  const seen = [];
  client.on('block', (e) => seen.push(e.reason));
  ws.welcome({ state: 'blocked', reason: 'limit' });
  assert.equal(doc.getElementById(OVERLAY_ID), null);
  assert.deepEqual(seen, ['limit']);
});

test('overlay: false draws nothing', () => {
  const { ws, doc, client } = clientOn({ overlay: false });
  ws.welcome({ state: 'blocked', reason: 'limit' });
  assert.equal(client.state, 'blocked');
  assert.equal(doc.getElementById(OVERLAY_ID), null);
  assert.equal(doc.getElementById('seatguard-style'), null);
});

test('ended, revoked, suspended and expired show a notice; the tab that logged out itself does not', () => {
  const ends = [
    ['ended', 'Signed out'],
    ['revoked', 'You have been signed out'],
    ['suspended', 'This account is suspended'],
    ['expired', 'Session expired'],
  ];
  for (const [kind, title] of ends) {
    const { ws, doc } = clientOn();
    ws.welcome({ state: 'blocked', reason: 'limit' });
    ws.push({ t: kind, reason: 'x' });
    assert.equal(doc.querySelector('.seatguard-title').textContent, title, kind);
  }
  const { ws, doc, client } = clientOn();
  ws.welcome();
  client.logout();
  ws.push({ t: 'ended', reason: 'logout' });
  assert.equal(client.state, 'ended');
  assert.equal(doc.getElementById(OVERLAY_ID), null);
});

test('destroy removes the overlay and restores the page', () => {
  const { ws, doc, client } = clientOn();
  ws.welcome({ state: 'blocked', reason: 'limit' });
  client.destroy();
  assert.equal(doc.getElementById(OVERLAY_ID), null);
  assert.ok(!doc.querySelector('main').hasAttribute('inert'));
  assert.equal(doc.activeElement, doc.getElementById('play'));
});

test('destroy stops watching the page: what it adds later stays live', async () => {
  const { ws, doc, client } = clientOn();
  ws.welcome({ state: 'blocked', reason: 'limit' });
  const before = add(doc, 'div');
  await flush();
  assert.ok(before.hasAttribute('inert'));
  client.destroy();
  assert.ok(!before.hasAttribute('inert'));
  const after = add(doc, 'div');
  await flush();
  assert.ok(!after.hasAttribute('inert'));
});

test('a block that arrives before <body> exists is drawn once the document is parsed', () => {
  const win = new Window({ url: 'https://shop.test/' });
  const doc = win.document;
  const body = doc.body;
  body.remove();
  const overlay = createOverlay(doc);
  overlay.show('Title', 'Text');
  assert.equal(doc.getElementById(OVERLAY_ID), null);
  doc.documentElement.appendChild(body);
  doc.dispatchEvent(new win.Event('DOMContentLoaded'));
  assert.ok(doc.getElementById(OVERLAY_ID));
  // Hidden before the document was parsed: nothing is drawn.
  const late = page();
  const lateBody = late.doc.body;
  lateBody.remove();
  const other = createOverlay(late.doc);
  other.show('T', 'x');
  other.hide();
  late.doc.documentElement.appendChild(lateBody);
  late.doc.dispatchEvent(new late.win.Event('DOMContentLoaded'));
  assert.equal(late.doc.getElementById(OVERLAY_ID), null);
});

test('every language has every text, none empty, with the same placeholders as English', () => {
  const placeholders = (text) => [...new Set(text.match(/\{\w+\}/g))].sort().join();
  for (const lang of ['en', 'fr', 'es', 'de']) {
    for (const [key, text] of Object.entries(TEXTS[lang])) {
      assert.ok(typeof text === 'string' && text.length > 0, `${lang}.${key}`);
      assert.equal(placeholders(text), placeholders(TEXTS.en[key]), `${lang}.${key}`);
    }
  }
  assert.equal(TEXTS.fr.useHere, 'Utiliser ici');
  assert.equal(TEXTS.de.devices, 'Geräte');
});

test('a block that allows take-over shows the button, focused; one that does not, none', () => {
  const off = clientOn();
  off.ws.welcome({ state: 'blocked', reason: 'limit', takeover: false });
  assert.equal(off.doc.querySelector('.seatguard-takeover'), null);
  assert.equal(off.doc.activeElement, off.doc.querySelector('[data-action=sign_out]'));
  const on = clientOn();
  on.ws.welcome({ state: 'blocked', reason: 'evicted', takeover: true, policy: 'evict-oldest' });
  const button = on.doc.querySelector('#' + OVERLAY_ID + ' .seatguard-takeover');
  assert.equal(button.textContent, 'Use here');
  assert.equal(on.doc.activeElement, button);
  // The rules change while blocked: the button goes.
  on.ws.push({ t: 'block', reason: 'evicted', takeover: false });
  assert.equal(on.doc.querySelector('.seatguard-takeover'), null);
  assert.equal(on.doc.getElementById(OVERLAY_ID).getAttribute('role'), 'alertdialog');
});

test('clicking the button takes the seat; the unblock removes the overlay and restores focus', async () => {
  const { ws, doc, win, client } = clientOn();
  ws.welcome({ state: 'blocked', reason: 'challenge', takeover: true, policy: 'challenge' });
  const button = doc.querySelector('.seatguard-takeover');
  assert.equal(button.textContent, 'Continue here');
  button.dispatchEvent(new win.MouseEvent('click', { bubbles: true }));
  await flush();
  assert.deepEqual(ws.last, { t: 'takeover' });
  ws.push({ t: 'unblock' });
  assert.equal(client.state, 'admitted');
  assert.equal(doc.getElementById(OVERLAY_ID), null);
  assert.equal(doc.activeElement, doc.getElementById('play'));
});

test('clicking runs the site check first (onChallenge); declined: no frame, the overlay stays', async () => {
  const { ws, doc, win } = clientOn({ onChallenge: async () => false });
  ws.welcome({ state: 'blocked', reason: 'challenge', takeover: true, policy: 'challenge' });
  doc.querySelector('.seatguard-takeover').dispatchEvent(new win.MouseEvent('click', { bubbles: true }));
  await flush();
  assert.ok(!ws.sent.some((frame) => frame.t === 'takeover'));
  assert.ok(doc.getElementById(OVERLAY_ID));
});

// What a client with `lang` shows for a block with `reason` (take-over allowed), its
// language pack loaded.
async function shown(lang, reason, welcome = {}) {
  const { ws, doc } = await loadedOn({ lang });
  ws.welcome({ state: 'blocked', reason, takeover: true, limit: 1, ...welcome });
  const text = (selector) => doc.querySelector(selector)?.textContent;
  return { title: text('.seatguard-title'), text: text('.seatguard-text'), button: text('.seatguard-takeover') };
}

test('English heading, text and button per block reason', async () => {
  assert.deepEqual(await shown('en', 'evicted'), {
    title: 'This account was opened on another browser',
    text: 'Your plan allows 1 browser at once. Use it here again, or wait until a seat frees up.',
    button: 'Use here',
  });
  assert.deepEqual(await shown('en', 'taken_over'), {
    title: 'This account is now in use on another browser',
    text: 'Use it here again, or wait until a seat frees up.',
    button: 'Use here',
  });
  assert.deepEqual(await shown('en', 'challenge'), {
    title: 'This account is in use elsewhere',
    text: 'Continue here to use it on this browser; the other browser will be paused.',
    button: 'Continue here',
  });
  assert.equal((await shown('en', 'limit')).title, 'This account is in use elsewhere');
  // Devices, not browsers, where devices hold the seats.
  const device = await shown('en', 'evicted', { mode: 'device-limit', limit: 2 });
  assert.equal(device.title, 'This account was opened on another device');
  assert.match(device.text, /^Your plan allows 2 devices at once\./);
});

test('every language has its own heading, text and button label per block reason', async () => {
  const reasons = ['limit', 'evicted', 'taken_over', 'challenge'];
  const keys = { limit: 'block', evicted: 'evicted', taken_over: 'takenOver', challenge: 'block' };
  for (const lang of ['en', 'fr', 'es', 'de']) {
    const t = TEXTS[lang];
    const values = { n: 1, unit: t.browser, one: t.browser };
    for (const reason of reasons) {
      const got = await shown(lang, reason);
      assert.equal(got.title, format(t[keys[reason] + 'Title'], values), `${lang} ${reason} title`);
      const text = reason === 'challenge' ? t.challengeText : t[keys[reason] + 'Text'];
      assert.equal(got.text, format(text, values), `${lang} ${reason} text`);
      assert.equal(got.button, reason === 'challenge' ? t.continueHere : t.useHere, `${lang} ${reason} button`);
      assert.ok(!/\{\w+\}/.test(got.title + got.text), `${lang} ${reason}: placeholders filled`);
      if (lang !== 'en') assert.notEqual(got.text, (await shown('en', reason)).text, `${lang} ${reason} is translated`);
    }
  }
  assert.equal((await shown('fr', 'challenge')).button, 'Continuer ici');
  assert.equal((await shown('es', 'evicted')).button, 'Usar aquí');
  assert.equal((await shown('de', 'taken_over')).title, 'Dieses Konto wird jetzt auf einem anderen Browser genutzt');
});

test('the expired notice depends on the reason: idle, absolute, else the generic one', async () => {
  const notice = async (reason, lang = 'en') => {
    const { ws, doc } = await loadedOn({ lang });
    ws.welcome();
    if (reason) ws.push({ t: 'expired', reason });
    else ws.drop(4011);
    return [doc.querySelector('.seatguard-title').textContent, doc.getElementById('seatguard-text').textContent];
  };
  assert.deepEqual(await notice('idle'), ['Session expired', 'Your session ended after a period of inactivity.']);
  assert.deepEqual(await notice('absolute'), ['Session expired', 'Your session reached its maximum length. Sign in again to continue.']);
  assert.deepEqual(await notice(null), ['Session expired', 'Your session has expired. Sign in again to continue.']);
  for (const lang of ['fr', 'es', 'de']) {
    assert.deepEqual(await notice('idle', lang), [TEXTS[lang].expiredTitle, TEXTS[lang].idleText], lang);
    assert.deepEqual(await notice('absolute', lang), [TEXTS[lang].expiredTitle, TEXTS[lang].absoluteText], lang);
  }
});
