// The overlay's actions on a client (happy-dom): which are drawn for a block and for an end,
// what a click does, the action event the site counts; the console warnings for a site's
// configuration errors.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Window } from 'happy-dom';
import { OVERLAY_ID } from '../src/overlay.js';
import { createClient } from '../src/client.js';
import { resolve } from '../src/config.js';
import { FakeClock, MemoryStorage, fakeWebSocket, flush, seeded } from './fakes.js';

// A client for `options` (through resolve(), as load() does) on a happy-dom page whose
// reloads are counted.
function clientOn(options = {}) {
  const win = new Window({ url: 'https://shop.test/watch' });
  const doc = win.document;
  doc.body.innerHTML = '<main><button id="play">Play</button></main>';
  const reloads = [];
  Object.defineProperty(win, 'location', { value: { href: 'https://shop.test/watch', origin: 'https://shop.test', reload: () => reloads.push(1) }, configurable: true });
  const WebSocket = fakeWebSocket();
  const client = createClient(resolve('pk', { userId: 'alice', endpoint: 'wss://sg.test/ws/v1', ...options }, null, win.location), {
    window: win,
    document: doc,
    WebSocket,
    timers: new FakeClock(),
    random: seeded(),
    storage: { local: new MemoryStorage(), session: new MemoryStorage() },
    device: null,
  });
  const actions = [];
  client.on('action', (detail) => actions.push(detail));
  // The drawn actions as [data-action, text, href or null].
  const drawn = () => [...doc.querySelectorAll(`#${OVERLAY_ID} .seatguard-actions > *`)].map((el) => [el.dataset.action, el.textContent, el.getAttribute('href')]);
  const click = (name) => {
    const event = new win.MouseEvent('click', { bubbles: true, cancelable: true });
    doc.querySelector(`[data-action=${name}]`).dispatchEvent(event);
    return event;
  };
  return { client, doc, win, ws: WebSocket.sockets[0], WebSocket, actions, drawn, click, reloads };
}

const LINKS = { upgradeUrl: '/plans', helpUrl: 'https://help.shop.test/seats', signInUrl: '/login', signOutUrl: '/logout' };

// Console warnings caught for the length of a test.
function warnings(t) {
  const seen = [];
  t.mock.method(console, 'warn', (text) => seen.push(text));
  return seen;
}

test('a blocked browser without site links: Use here where allowed, and Sign out here', () => {
  const { ws, drawn } = clientOn();
  ws.welcome({ state: 'blocked', reason: 'evicted', takeover: true });
  assert.deepEqual(drawn(), [
    ['use_here', 'Use here', null],
    ['sign_out', 'Sign out here', null],
  ]);
  ws.push({ t: 'block', reason: 'limit', takeover: false });
  assert.deepEqual(drawn(), [['sign_out', 'Sign out here', null]]);
});

test("with the site's links: take-over first, then upgrade, sign out (a link) and help; sign in only for verify", () => {
  const { ws, drawn } = clientOn(LINKS);
  ws.welcome({ state: 'blocked', reason: 'challenge', takeover: true });
  assert.deepEqual(drawn(), [
    ['use_here', 'Continue here', null],
    ['upgrade', 'Add a seat', 'https://shop.test/plans'],
    ['sign_out', 'Sign out here', 'https://shop.test/logout'],
    ['help', 'Help', 'https://help.shop.test/seats'],
  ]);
  ws.push({ t: 'block', reason: 'verify', takeover: false });
  assert.deepEqual(drawn()[0], ['sign_in', 'Sign in again', 'https://shop.test/login']);
});

test('the action event says which and why; a click on Use here takes the seat', async () => {
  const { ws, actions, click, client } = clientOn(LINKS);
  ws.welcome({ state: 'blocked', reason: 'evicted', takeover: true });
  const event = click('upgrade');
  assert.ok(!event.defaultPrevented, 'the link opens the upgrade page');
  click('help');
  click('use_here');
  await flush();
  assert.deepEqual(ws.last, { t: 'takeover' });
  assert.deepEqual(actions, [
    { action: 'upgrade', reason: 'evicted' },
    { action: 'help', reason: 'evicted' },
    { action: 'use_here', reason: 'evicted' },
  ]);
  ws.push({ t: 'unblock' });
  assert.equal(client.state, 'admitted');
});

test('Sign out here without a sign-out page: logout, then the ended notice with Sign in again (a reload)', () => {
  const { ws, actions, click, client, drawn, doc, reloads } = clientOn();
  const seen = [];
  doc.addEventListener('seatguard:ended', (e) => seen.push(e.detail));
  ws.welcome({ state: 'blocked', reason: 'limit' });
  click('sign_out');
  assert.deepEqual(actions, [{ action: 'sign_out', reason: 'limit' }]);
  assert.deepEqual(ws.last, { t: 'logout' });
  ws.push({ t: 'ended', reason: 'logout' });
  assert.equal(client.state, 'ended');
  assert.deepEqual(seen, [{ reason: 'logout' }], 'the site hears the end');
  assert.equal(doc.querySelector('.seatguard-title').textContent, 'Signed out');
  assert.deepEqual(drawn(), [['sign_in', 'Sign in again', null]]);
  click('sign_in');
  assert.deepEqual(reloads, [1]);
  assert.deepEqual(actions[1], { action: 'sign_in', reason: 'ended' });
});

test('Sign out here with a sign-out page: a link to it, and the logout goes out as it opens', () => {
  const { ws, click } = clientOn({ signOutUrl: '/logout' });
  ws.welcome({ state: 'blocked', reason: 'limit' });
  const event = click('sign_out');
  assert.ok(!event.defaultPrevented);
  assert.deepEqual(ws.last, { t: 'logout' });
});

test('revoked, expired and suspended offer Sign in again: the sign-in page if set, else a reload', () => {
  for (const [t, reason] of [['revoked', 'operator'], ['expired', 'idle'], ['suspended', 'suspended']]) {
    const linked = clientOn({ signInUrl: '/login', helpUrl: '/help' });
    linked.ws.welcome();
    linked.ws.push({ t, reason });
    assert.deepEqual(linked.drawn(), [
      ['sign_in', 'Sign in again', 'https://shop.test/login'],
      ['help', 'Help', 'https://shop.test/help'],
    ], t);
    assert.equal(linked.doc.activeElement, linked.doc.querySelector('[data-action=sign_in]'));
    linked.click('sign_in');
    assert.deepEqual(linked.actions, [{ action: 'sign_in', reason: t }]);
    assert.deepEqual(linked.reloads, []);
    const plain = clientOn();
    plain.ws.welcome();
    plain.ws.push({ t, reason });
    assert.deepEqual(plain.drawn(), [['sign_in', 'Sign in again', null]], t);
    plain.click('sign_in');
    assert.deepEqual(plain.reloads, [1], t);
  }
});

test('preventDefault on seatguard:action: the event is heard, nothing else happens', () => {
  const { ws, actions, click, doc } = clientOn(LINKS);
  doc.addEventListener('seatguard:action', (e) => e.preventDefault());
  ws.welcome({ state: 'blocked', reason: 'limit' });
  const sent = ws.sent.length;
  assert.ok(click('sign_out').defaultPrevented, 'the sign-out page does not open');
  assert.ok(click('upgrade').defaultPrevented, 'nor the upgrade page: the site opens its own');
  assert.equal(ws.sent.length, sent, 'no logout');
  assert.deepEqual(actions.map((a) => a.action), ['sign_out', 'upgrade']);
});

test('hostile links: javascript:, data: and garbage are left out with a warning; relative ones resolve', (t) => {
  const seen = warnings(t);
  const options = resolve('pk', { userId: 'u', upgradeUrl: 'javascript:alert(1)', helpUrl: ' JavaScript:alert(2)', signInUrl: 'data:text/html,<b>x</b>', signOutUrl: 'https://[bad' }, null, { href: 'https://shop.test/watch', origin: 'https://shop.test' });
  for (const name of ['upgradeUrl', 'helpUrl', 'signInUrl', 'signOutUrl']) assert.equal(options[name], undefined, name);
  assert.equal(seen.length, 4);
  assert.ok(seen.includes('Seatguard: upgradeUrl javascript:alert(1) is not an http(s) URL: left out'), seen.join('\n'));
  const { ws, drawn } = clientOn({ upgradeUrl: 'javascript:alert(1)', helpUrl: 'help' });
  ws.welcome({ state: 'blocked', reason: 'limit' });
  assert.deepEqual(drawn(), [
    ['sign_out', 'Sign out here', null],
    ['help', 'Help', 'https://shop.test/help'],
  ]);
});

test('backdrop: opaque draws the opaque backdrop', () => {
  const { ws, doc } = clientOn({ backdrop: 'opaque' });
  ws.welcome({ state: 'blocked', reason: 'limit' });
  assert.ok(doc.querySelector('.seatguard').classList.contains('seatguard-opaque'));
});

test('a configuration close warns in the console once, with what to fix; quiet silences it', (t) => {
  const seen = warnings(t);
  const closes = [
    [4003, 'unknown_site', "unknown site key 'pk_nope'", /check the site key/],
    [4004, 'origin_not_allowed', "origin 'https://shop.test' is not allowed for this site", /allow this page's origin/],
    [4012, 'identity_required', 'this site requires a signed identity token', /pass a signed identity token/],
    [4013, 'identity_invalid', 'identity token expired', /signature and claims/],
    [4002, 'unsupported_version', 'protocol version 1 is not spoken here', /load the SDK from its Seatguard server/],
  ];
  for (const [code, reason, message, fix] of closes) {
    for (let i = 0; i < 2; i++) {
      const { ws, client } = clientOn();
      ws.open();
      ws.push({ t: 'error', code, reason, message });
      ws.drop(code);
      assert.equal(client.state, 'error');
    }
    assert.equal(seen.length, closes.indexOf(closes.find((c) => c[0] === code)) + 1, 'once per cause');
    assert.ok(seen.at(-1).startsWith(`Seatguard: ${message} (close ${code}): `), seen.at(-1));
    assert.match(seen.at(-1), fix);
  }
  // Another site key is another cause; quiet silences it.
  const other = clientOn({ quiet: true });
  other.ws.open();
  other.ws.push({ t: 'error', code: 4003, reason: 'unknown_site', message: "unknown site key 'pk_other'" });
  other.ws.drop(4003);
  assert.equal(seen.length, closes.length);
});

test('closes that are no configuration error warn nothing: 4009, 4010, 4011, 4015, 4000, 4001', (t) => {
  const seen = warnings(t);
  for (const code of [4009, 4010, 4011, 4015, 4000, 4001]) {
    const { ws } = clientOn();
    ws.welcome();
    ws.drop(code);
  }
  assert.deepEqual(seen, []);
});

test('a garbage endpoint: one warning, no socket, an error the page can hear; quiet silences the warning', async (t) => {
  const seen = warnings(t);
  for (const endpoint of ['localhost:8000', 'ftp://sg.test', 'javascript:alert(1)', 'not a url']) {
    const { client, WebSocket } = clientOn({ endpoint });
    const errors = [];
    client.on('error', (e) => errors.push(e));
    await flush();
    assert.equal(WebSocket.sockets.length, 0, endpoint);
    assert.equal(client.state, 'error');
    assert.deepEqual(errors, [{ code: 0, reason: 'endpoint', message: '' }]);
  }
  assert.equal(seen.length, 4);
  assert.match(seen[0], /^Seatguard: endpoint localhost:8000 is not an http\(s\) or ws\(s\) URL/);
  clientOn({ endpoint: 'ftp://quiet.test', quiet: true });
  assert.equal(seen.length, 4);
});
