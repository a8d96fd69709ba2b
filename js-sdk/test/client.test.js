// The public client: states, seat events, logout, destroy and the page lifecycle.
import test from 'node:test';
import assert from 'node:assert/strict';
import { setup, fakeWindow, flush } from './fakes.js';
import { canMove } from '../src/client.js';
import { STATE } from '../src/constants.js';

test('welcome admitted: state admitted, no block or unblock event', () => {
  const { socket, client, events } = setup();
  assert.equal(client.state, 'connecting');
  socket().welcome();
  assert.equal(client.state, 'admitted');
  assert.deepEqual(events, [['state', 'admitted', 'connecting']]);
  assert.deepEqual(client.rules, { mode: 'concurrence', limit: 1, policy: 'block-new' });
});

test('welcome blocked: state blocked and a block event with the reason and whether takeover is allowed', () => {
  const { socket, client, events } = setup();
  socket().welcome({ state: 'blocked', reason: 'limit', takeover: false });
  assert.equal(client.state, 'blocked');
  assert.deepEqual(events, [['state', 'blocked', 'connecting'], ['block', { reason: 'limit', takeover: false }]]);
});

test('block and unblock pushed by the server', () => {
  const { socket, client, events } = setup();
  socket().welcome();
  socket().push({ t: 'block', reason: 'evicted', takeover: true });
  assert.equal(client.state, 'blocked');
  socket().push({ t: 'unblock' });
  assert.equal(client.state, 'admitted');
  assert.deepEqual(events.slice(1), [
    ['state', 'blocked', 'admitted'],
    ['block', { reason: 'evicted', takeover: true }],
    ['state', 'admitted', 'blocked'],
    ['unblock'],
  ]);
});

test('a blocked tab stays blocked through a reconnect: no second block event', () => {
  const { socket, clock, client, events } = setup();
  socket().welcome({ state: 'blocked', reason: 'limit' });
  socket().drop(1006);
  clock.tick(500);
  socket().welcome({ state: 'blocked', reason: 'limit' });
  assert.equal(client.state, 'blocked');
  assert.equal(events.filter(([name]) => name === 'block').length, 1);
  // Admitted on the next welcome: that is an unblock.
  socket().drop(1006);
  clock.tick(1000); // the second attempt in a row: within 1 s
  socket().welcome();
  assert.deepEqual(events.at(-1), ['unblock']);
});

test('cancellable DOM events seatguard:block and seatguard:unblock are dispatched on document', () => {
  const { socket, win } = setup();
  const seen = [];
  win.document.addEventListener('seatguard:block', (e) => seen.push([e.type, e.detail, e.cancelable]));
  win.document.addEventListener('seatguard:unblock', (e) => seen.push([e.type, e.cancelable]));
  socket().welcome({ state: 'blocked', reason: 'limit' });
  socket().push({ t: 'unblock' });
  assert.deepEqual(seen, [['seatguard:block', { reason: 'limit', takeover: false, holders: [] }, true], ['seatguard:unblock', true]]);
});

test('a new reason or takeover rule while blocked is a new block event; the same one is not', () => {
  const { socket, client, events } = setup();
  socket().welcome({ state: 'blocked', reason: 'limit', takeover: false });
  socket().push({ t: 'block', reason: 'limit', takeover: false });
  socket().push({ t: 'block', reason: 'challenge', takeover: true });
  assert.equal(client.state, 'blocked');
  assert.deepEqual(
    events.filter(([name]) => name === 'block'),
    [['block', { reason: 'limit', takeover: false }], ['block', { reason: 'challenge', takeover: true }]],
  );
});

test('on() returns an unsubscribe function; a throwing handler does not break the client', (t) => {
  const { socket, client } = setup();
  const seen = [];
  const off = client.on('block', (e) => seen.push(e.reason));
  t.mock.method(console, 'error', () => {});
  client.on('block', () => {
    throw new Error('page bug');
  });
  socket().welcome({ state: 'blocked', reason: 'limit' });
  off();
  socket().push({ t: 'unblock' });
  socket().push({ t: 'block', reason: 'limit' });
  assert.deepEqual(seen, ['limit']);
  assert.equal(client.state, 'blocked');
  assert.equal(console.error.mock.callCount(), 2);
});

test('logout sends logout; the server answers ended then closes 4009; no reconnect', () => {
  const { socket, clock, WebSocket, client, events } = setup();
  socket().welcome();
  client.logout();
  assert.deepEqual(socket().last, { t: 'logout' });
  socket().push({ t: 'ended', reason: 'logout' });
  assert.equal(client.state, 'ended');
  assert.deepEqual(events.slice(-2), [['state', 'ended', 'admitted'], ['ended', { reason: 'logout' }]]);
  socket().drop(4009);
  clock.tick(60000);
  assert.equal(WebSocket.sockets.length, 1);
  client.logout(); // no-op once ended
  assert.equal(socket().sent.filter((f) => f.t === 'logout').length, 1);
});

test('logout while disconnected reconnects at once and logs out after welcome', () => {
  const { socket, clock, WebSocket, client } = setup({ random: () => 0.999 });
  socket().welcome();
  socket().drop(1006);
  client.logout();
  assert.equal(WebSocket.sockets.length, 2, 'no waiting for the backoff');
  socket().welcome({ state: 'blocked', reason: 'limit' });
  assert.deepEqual(socket().last, { t: 'logout' });
  assert.equal(client.state, 'reconnecting', 'the welcome is not acted on while logging out');
  socket().drop(4009);
  assert.equal(client.state, 'ended');
  clock.tick(60000);
  assert.equal(WebSocket.sockets.length, 2);
});

test('logout while the token function runs waits for hello and welcome, then goes out', async () => {
  let give;
  const token = () => new Promise((resolve) => (give = resolve));
  const { socket, client } = setup({ options: { token } });
  socket().open();
  client.logout();
  assert.deepEqual(socket().sent, [], 'nothing goes out before hello');
  give('jwt');
  await flush();
  assert.deepEqual(socket().sent.map((f) => f.t), ['hello'], 'nor before welcome');
  socket().welcome();
  assert.deepEqual(socket().sent.map((f) => f.t), ['hello', 'logout']);
});

test('a logout asked for on a socket that is never welcomed goes out after the next welcome', () => {
  const { socket, clock, WebSocket, client } = setup();
  const first = socket();
  first.open();
  client.logout();
  first.drop(1006);
  clock.tick(Math.max(...clock.pending));
  assert.equal(WebSocket.sockets.length, 2);
  socket().welcome();
  assert.deepEqual(first.sent.map((f) => f.t), ['hello']);
  assert.deepEqual(socket().sent.map((f) => f.t), ['hello', 'logout']);
});

test('ended starts a new browser session id for the next load', () => {
  const { socket, client, local } = setup();
  socket().open();
  const old = socket().sent[0].session;
  socket().welcome();
  socket().push({ t: 'ended', reason: 'logout' });
  assert.equal(client.state, 'ended');
  const next = local.getItem('seatguard:session');
  assert.notEqual(next, old);
  assert.match(next, /^[A-Za-z0-9_-]{8,64}$/);
});

test('destroy says bye (close), closes the socket and removes every listener and timer', () => {
  const win = fakeWindow({ navigation: true });
  const before = [win.listeners, win.document.listeners, win.navigation.listeners];
  const { socket, clock, WebSocket, client, events } = setup({ window: win });
  const ws = socket();
  ws.welcome();
  clock.tick(1000); // a heartbeat is pending, the next one scheduled
  assert.ok(win.listeners > before[0] && win.document.listeners > before[1] && win.navigation.listeners > before[2]);
  client.destroy();
  assert.deepEqual(ws.last, { t: 'bye', next: 'close' });
  assert.equal(ws.closedWith, 1000);
  assert.equal(client.state, 'destroyed');
  assert.deepEqual(events.at(-1), ['state', 'destroyed', 'admitted']);
  assert.deepEqual([win.listeners, win.document.listeners, win.navigation.listeners], before);
  assert.deepEqual(clock.pending, []);
  // Idempotent, and silent afterwards.
  client.destroy();
  client.logout();
  ws.push({ t: 'block', reason: 'limit' });
  clock.tick(60000);
  assert.equal(WebSocket.sockets.length, 1);
  assert.equal(events.at(-1)[1], 'destroyed');
});

test('destroy before the socket opened sends nothing and stops reconnecting', () => {
  const { socket, clock, WebSocket, client } = setup();
  socket().drop(1006);
  client.destroy();
  clock.tick(60000);
  assert.equal(WebSocket.sockets.length, 1);
  assert.deepEqual(socket().sent, []);
});

test('pagehide says bye unload when nothing was announced (a user reload looks so)', () => {
  const { socket, win } = setup();
  socket().welcome();
  win.dispatchEvent(new Event('pagehide'));
  assert.deepEqual(socket().last, { t: 'bye', next: 'unload' });
  assert.equal(socket().closedWith, 1000);
});

// Presses a key on the fake window: `key` with modifiers such as { ctrlKey: true }.
function press(win, key, modifiers = {}) {
  const event = Object.assign(new Event('keydown', { cancelable: true }), { key, ...modifiers });
  win.dispatchEvent(event);
  return event;
}

test('F5, Ctrl+R and Cmd+R (Shift or not) before pagehide say bye reload', () => {
  for (const [key, modifiers] of [['F5', {}], ['F5', { shiftKey: true }], ['r', { ctrlKey: true }], ['R', { ctrlKey: true, shiftKey: true }], ['r', { metaKey: true }], ['R', { metaKey: true, shiftKey: true }]]) {
    const { socket, win, clock } = setup();
    socket().welcome();
    press(win, key, modifiers);
    clock.tick(1999);
    win.dispatchEvent(new Event('pagehide'));
    assert.deepEqual(socket().last, { t: 'bye', next: 'reload' }, `${key} ${JSON.stringify(modifiers)}`);
  }
});

test('other keys are no reload hint: r, Alt+Ctrl+R (AltGr), Ctrl+T', () => {
  for (const [key, modifiers] of [['r', {}], ['r', { ctrlKey: true, altKey: true }], ['t', { ctrlKey: true }], ['F4', {}]]) {
    const { socket, win } = setup();
    socket().welcome();
    press(win, key, modifiers);
    win.dispatchEvent(new Event('pagehide'));
    assert.deepEqual(socket().last, { t: 'bye', next: 'unload' }, key);
  }
});

test('a reload key is forgotten after 2 s without pagehide, and after the pagehide it hinted', () => {
  const { socket, win, clock, WebSocket } = setup();
  socket().welcome({ hb: 60000 });
  press(win, 'F5');
  clock.tick(2000);
  win.dispatchEvent(new Event('pagehide'));
  assert.deepEqual(socket().last, { t: 'bye', next: 'unload' });
  // Back from the back/forward cache: a hinted pagehide counts once.
  win.dispatchEvent(Object.assign(new Event('pageshow'), { persisted: true }));
  socket().welcome();
  press(win, 'F5');
  win.dispatchEvent(new Event('pagehide'));
  assert.deepEqual(socket().last, { t: 'bye', next: 'reload' });
  win.dispatchEvent(Object.assign(new Event('pageshow'), { persisted: true }));
  socket().welcome();
  win.dispatchEvent(new Event('pagehide'));
  assert.deepEqual(socket().last, { t: 'bye', next: 'unload' });
  assert.equal(WebSocket.sockets.length, 3);
});

test('a reload key the page keeps for itself (preventDefault) is no hint, even if it stops the event', () => {
  const { socket, win } = setup();
  socket().welcome();
  win.addEventListener('keydown', (event) => {
    event.preventDefault();
    event.stopImmediatePropagation();
  });
  press(win, 'r', { ctrlKey: true });
  win.dispatchEvent(new Event('pagehide'));
  assert.deepEqual(socket().last, { t: 'bye', next: 'unload' });
});

// Fires a Navigation API navigate event on the fake window.
function navigate(win, props) {
  win.navigation.dispatchEvent(Object.assign(new Event('navigate'), props));
}

test('bye next=reload when the Navigation API announced a reload', () => {
  const { socket, win } = setup({ window: fakeWindow({ navigation: true }) });
  socket().welcome();
  navigate(win, { navigationType: 'reload', destination: { url: 'https://shop.test/watch', sameDocument: false } });
  win.dispatchEvent(new Event('pagehide'));
  assert.deepEqual(socket().last, { t: 'bye', next: 'reload' });
});

test('bye next=navigate for a same-origin page, close for another origin', () => {
  for (const [url, next] of [['https://shop.test/account', 'navigate'], ['https://elsewhere.test/', 'close']]) {
    const { socket, win } = setup({ window: fakeWindow({ navigation: true }) });
    socket().welcome();
    navigate(win, { navigationType: 'push', destination: { url, sameDocument: false } });
    win.dispatchEvent(new Event('pagehide'));
    assert.deepEqual(socket().last, { t: 'bye', next }, url);
  }
});

test('a navigation announced after a reload key press wins', () => {
  const { socket, win } = setup({ window: fakeWindow({ navigation: true }) });
  socket().welcome();
  press(win, 'r', { ctrlKey: true });
  navigate(win, { navigationType: 'push', destination: { url: 'https://elsewhere.test/', sameDocument: false } });
  win.dispatchEvent(new Event('pagehide'));
  assert.deepEqual(socket().last, { t: 'bye', next: 'close' });
});

test('a same-document navigation that completed does not count for the next pagehide', () => {
  const { socket, win } = setup({ window: fakeWindow({ navigation: true }) });
  socket().welcome();
  navigate(win, { navigationType: 'push', destination: { url: 'https://shop.test/next', sameDocument: false } });
  win.navigation.dispatchEvent(new Event('navigatesuccess'));
  win.dispatchEvent(new Event('pagehide'));
  assert.deepEqual(socket().last, { t: 'bye', next: 'unload' });
});

test('a page restored from the back/forward cache reconnects with the same tab id', () => {
  const { socket, WebSocket, win, client, events } = setup();
  socket().welcome();
  const hello = socket().sent[0];
  win.dispatchEvent(Object.assign(new Event('pagehide'), { persisted: true }));
  win.dispatchEvent(Object.assign(new Event('pageshow'), { persisted: false }));
  assert.equal(WebSocket.sockets.length, 1, 'a normal pageshow does nothing');
  win.dispatchEvent(Object.assign(new Event('pageshow'), { persisted: true }));
  assert.equal(WebSocket.sockets.length, 2);
  assert.equal(client.state, 'reconnecting');
  assert.deepEqual(events.at(-1), ['state', 'reconnecting', 'admitted']);
  socket().open();
  assert.deepEqual(socket().sent[0], hello);
});

test('state transitions: live states move freely, final states only to destroyed', () => {
  const live = ['connecting', 'admitted', 'blocked', 'reconnecting'];
  const final = ['ended', 'revoked', 'expired', 'suspended', 'error'];
  assert.deepEqual(Object.keys(STATE), [...live, ...final, 'destroyed']);
  for (const from of live) for (const to of [...live.slice(1), ...final, 'destroyed']) assert.ok(canMove(from, to), `${from}->${to}`);
  for (const from of final) {
    assert.ok(canMove(from, 'destroyed'));
    for (const to of [...live, ...final]) assert.ok(!canMove(from, to), `${from}->${to}`);
  }
  for (const to of Object.keys(STATE)) assert.ok(!canMove('destroyed', to));
  assert.ok(!canMove('admitted', 'connecting'));
});
