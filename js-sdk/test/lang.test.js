// Language packs: English built in, fr, es and de fetched from the server that serves the SDK.
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Window } from 'happy-dom';
import { EN, LANGUAGES, packUrl } from '../src/texts.js';
import { PACKS } from '../src/packs.js';
import { createClient } from '../src/client.js';
import { OVERLAY_ID } from '../src/overlay.js';
import { FakeClock, MemoryStorage, fakeFetch, fakeWebSocket, flush, seeded } from './fakes.js';

// A client on a happy-dom page whose browser prefers `languages`, with a fake fetch (none if
// null); with `parsed` false, a block comes before <body> exists.
function clientOn({ options = {}, languages = ['fr-FR', 'en'], fetch = fakeFetch(), parsed = true } = {}) {
  const win = new Window({ url: 'https://shop.test/watch' });
  const doc = win.document;
  doc.body.innerHTML = '<main><button id="play">Play</button></main>';
  doc.getElementById('play').focus();
  if (!parsed) doc.body.remove();
  // No fetch given: the window has none either.
  if (!fetch) win.fetch = undefined;
  Object.defineProperty(win.navigator, 'languages', { value: languages, configurable: true });
  const WebSocket = fakeWebSocket();
  const client = createClient(
    { site: 'pk', userId: 'alice', endpoint: 'wss://sg.test/ws/v1', ...options },
    { window: win, document: doc, WebSocket, fetch, timers: new FakeClock(), random: seeded(), storage: { local: new MemoryStorage(), session: new MemoryStorage() }, device: null },
  );
  const title = () => doc.querySelector('.seatguard-title')?.textContent;
  return { client, doc, win, fetch, title, ws: WebSocket.sockets[0] };
}

test('texts.js knows every pack, and every pack has exactly the English keys', () => {
  assert.deepEqual(Object.keys(PACKS), LANGUAGES);
  for (const lang of LANGUAGES) assert.deepEqual(Object.keys(PACKS[lang]), Object.keys(EN), lang);
});

test('a pack comes from the server of the endpoint, at /sdk/v1/lang/{lang}.json', () => {
  assert.equal(packUrl('wss://sg.test/ws/v1', 'fr'), 'https://sg.test/sdk/v1/lang/fr.json');
  assert.equal(packUrl('ws://127.0.0.1:8000/ws/v1', 'de'), 'http://127.0.0.1:8000/sdk/v1/lang/de.json');
});

test('French: the pack is fetched once, at load, before the socket even opens', async () => {
  const { fetch, ws, title } = clientOn();
  assert.deepEqual(fetch.urls, ['https://sg.test/sdk/v1/lang/fr.json']);
  await flush();
  ws.welcome({ state: 'blocked', reason: 'limit' });
  assert.equal(title(), PACKS.fr.blockTitle);
  assert.equal(fetch.urls.length, 1);
});

test('English needs no pack: nothing is fetched', () => {
  for (const setup of [{ languages: ['en-GB', 'fr'] }, { languages: ['ja', 'zh-CN'] }, { options: { lang: 'en' } }]) {
    const { fetch } = clientOn(setup);
    assert.deepEqual(fetch.urls, [], JSON.stringify(setup));
  }
});

test('a site that supplies every text fetches no pack; one that supplies some still does', () => {
  const all = clientOn({ options: { texts: { ...EN, blockTitle: 'Compte occupé' } } });
  assert.deepEqual(all.fetch.urls, []);
  all.ws.welcome({ state: 'blocked', reason: 'limit' });
  assert.equal(all.title(), 'Compte occupé');
  const some = clientOn({ options: { texts: { blockTitle: 'Compte occupé' } } });
  assert.equal(some.fetch.urls.length, 1);
});

test('the site’s texts win over the pack', async () => {
  const { ws, doc, title } = clientOn({ options: { lang: 'de', texts: { blockTitle: 'Konto belegt', useHere: 'Hierher holen' } } });
  await flush();
  ws.welcome({ state: 'blocked', reason: 'evicted', takeover: true, limit: 1 });
  assert.equal(title(), PACKS.de.evictedTitle.replace('{one}', PACKS.de.browser));
  assert.equal(doc.querySelector('.seatguard-takeover').textContent, 'Hierher holen');
  ws.push({ t: 'block', reason: 'limit', takeover: false });
  assert.equal(title(), 'Konto belegt');
  assert.match(doc.querySelector('.seatguard-text').textContent, /^Ihr Tarif erlaubt 1 Browser gleichzeitig\./);
});

test('a failed fetch, a 404, a bad body or no fetch at all leaves the overlay in English', async () => {
  const failing = clientOn({ fetch: fakeFetch({ fail: true }) });
  const missing = clientOn({ fetch: (url) => fakeFetch()(url.replace('/fr.', '/xx.')) });
  const throwing = clientOn({
    fetch: () => {
      throw new TypeError('blocked by the page');
    },
  });
  const bad = clientOn({ fetch: async () => ({ ok: true, json: async () => JSON.parse('<html>') }) });
  const none = clientOn({ fetch: null });
  await flush();
  for (const { ws, title } of [failing, missing, throwing, bad, none]) {
    ws.welcome({ state: 'blocked', reason: 'limit' });
    assert.equal(title(), EN.blockTitle);
  }
});

test('a pack that arrives while the overlay is shown redraws it in French; focus stays on its button', async () => {
  let answer;
  const slow = (url) => new Promise((ok) => (answer = () => ok(fakeFetch()(url))));
  const { ws, doc, title } = clientOn({ fetch: slow });
  ws.welcome({ state: 'blocked', reason: 'challenge', takeover: true, limit: 2 });
  assert.equal(title(), EN.blockTitle, 'English until the pack is there');
  const button = doc.querySelector('.seatguard-takeover');
  assert.equal(button.textContent, EN.continueHere);
  assert.equal(doc.activeElement, button);
  answer();
  await flush();
  assert.equal(title(), PACKS.fr.blockTitle);
  assert.equal(doc.querySelector('.seatguard-text').textContent, PACKS.fr.challengeText.replace('{one}', PACKS.fr.browser));
  assert.equal(doc.querySelector('.seatguard-takeover').textContent, PACKS.fr.continueHere);
  assert.equal(doc.querySelectorAll('#' + OVERLAY_ID).length, 1);
  assert.ok(doc.getElementById(OVERLAY_ID).contains(doc.activeElement), 'focus stays in the dialog');
  assert.equal(doc.activeElement, doc.querySelector('.seatguard-takeover'));
  // Unblocked: the overlay goes, focus returns to the page.
  ws.push({ t: 'unblock' });
  assert.equal(doc.getElementById(OVERLAY_ID), null);
  assert.equal(doc.activeElement, doc.getElementById('play'));
});

test('a pack that arrives once the overlay is gone draws nothing; the next block is French', async () => {
  let answer;
  const slow = (url) => new Promise((ok) => (answer = () => ok(fakeFetch()(url))));
  const { ws, doc, title } = clientOn({ fetch: slow });
  ws.welcome({ state: 'blocked', reason: 'limit' });
  ws.push({ t: 'unblock' });
  answer();
  await flush();
  assert.equal(doc.getElementById(OVERLAY_ID), null);
  ws.push({ t: 'block', reason: 'limit', takeover: false });
  assert.equal(title(), PACKS.fr.blockTitle);
});

test('a pack that arrives while a notice waits for <body> is what the notice shows', async () => {
  let answer;
  const slow = (url) => new Promise((ok) => (answer = () => ok(fakeFetch()(url))));
  const { ws, doc, win } = clientOn({ fetch: slow, parsed: false });
  ws.welcome();
  ws.push({ t: 'revoked', reason: 'revoked' });
  answer();
  await flush();
  doc.documentElement.appendChild(doc.createElement('body'));
  doc.dispatchEvent(new win.Event('DOMContentLoaded'));
  assert.equal(doc.querySelector('.seatguard-title').textContent, PACKS.fr.revokedTitle);
});

test('a suspension shows its own text from the pack', async () => {
  const { ws, doc } = clientOn({ fetch: fakeFetch() });
  ws.welcome();
  await flush();
  ws.push({ t: 'suspended', reason: 'suspended' });
  assert.equal(doc.querySelector('.seatguard-title').textContent, PACKS.fr.suspendedTitle);
  assert.equal(doc.querySelector('.seatguard-text').textContent, PACKS.fr.suspendedText);
});

test('the build writes each pack as static/lang/{lang}.json', { skip: !built() && 'run npm run build first' }, () => {
  for (const lang of LANGUAGES) {
    const file = new URL(`../../backend/seatguard/static/lang/${lang}.json`, import.meta.url);
    assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), PACKS[lang], lang);
  }
});

function built() {
  try {
    readFileSync(new URL('../../backend/seatguard/static/lang/fr.json', import.meta.url));
    return true;
  } catch {
    return false;
  }
}
