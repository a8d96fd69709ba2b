// The global, the paste-in stub snippet and its queue, and data-* auto-loading.
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';
import { FakeClock, MemoryStorage, fakeWebSocket, fakeWindow, seeded } from './fakes.js';
import { install } from '../src/index.js';

const SNIPPET = readFileSync(new URL('../snippet.html', import.meta.url), 'utf8');

// The inline stub of snippet.html, run as a page would run it.
function runStub(win) {
  const stub = SNIPPET.match(/<script>([\s\S]*?)<\/script>/)[1];
  const context = vm.createContext(win);
  win.window = context;
  vm.runInContext(stub, context);
}

// A page with the SDK script tag being executed (document.currentScript).
function page(attributes = {}) {
  const win = fakeWindow();
  const all = { src: 'https://sg.example.com/sdk/v1/seatguard.js', ...attributes };
  win.document.currentScript = { src: all.src, getAttribute: (name) => (name in all ? all[name] : null) };
  const WebSocket = fakeWebSocket();
  const world = { timers: new FakeClock(), WebSocket, random: seeded(), storage: { local: new MemoryStorage(), session: new MemoryStorage() }, device: null };
  return { win, world, WebSocket };
}

test('snippet.html has a one-line stub and the script tag', () => {
  const stub = SNIPPET.match(/<script>([\s\S]*?)<\/script>/)[1];
  assert.ok(!stub.includes('\n'), 'the stub is one line');
  assert.match(SNIPPET, /<script async src="[^"]*\/sdk\/v1\/seatguard\.js"><\/script>/);
});

test('calls made before the SDK loads are queued and replayed onto the real client', () => {
  const { win, world, WebSocket } = page();
  runStub(win);
  // The page, before the SDK has loaded:
  const client = win.Seatguard.load('pk_1', { userId: 'alice', limit: 2, overlay: false });
  assert.equal(client.state, 'connecting');
  const seen = [];
  client.on('state', (state) => seen.push(state));
  client.on('block', (e) => seen.push('block:' + e.reason));
  const offEarly = client.on('unblock', () => seen.push('early unblock'));
  offEarly(); // unsubscribed before the SDK even loaded
  const offLate = client.on('unblock', () => seen.push('late unblock'));
  // The SDK arrives.
  const api = install(win, world);
  assert.equal(win.Seatguard, api);
  assert.equal(typeof api.version, 'string');
  assert.equal(WebSocket.sockets.length, 1);
  const ws = WebSocket.sockets[0];
  assert.equal(ws.url, 'wss://sg.example.com/ws/v1');
  ws.open();
  assert.equal(ws.sent[0].user, 'alice');
  assert.equal(ws.sent[0].limit, 2);
  ws.push({ t: 'welcome', v: 1, session: 's', state: 'blocked', reason: 'limit', hb: 1000, mode: 'concurrence', limit: 2, policy: 'block-new' });
  // The proxy now reflects the real client.
  assert.equal(client.state, 'blocked');
  assert.equal(client.client, api.client);
  offLate(); // unsubscribed after the replay: goes to the real client
  ws.push({ t: 'unblock' });
  assert.deepEqual(seen, ['blocked', 'block:limit', 'admitted']);
  // Calls after loading go straight through, takeOver included.
  assert.ok(client.takeOver() instanceof Promise);
  client.logout();
  assert.deepEqual(ws.last, { t: 'logout' });
});

test('a destroy() queued before loading is replayed too', () => {
  const { win, world, WebSocket } = page();
  runStub(win);
  const client = win.Seatguard.load('pk_1', { userId: 'alice' });
  client.destroy();
  install(win, world);
  assert.equal(client.state, 'destroyed');
  assert.equal(WebSocket.sockets[0].closedWith, 1000);
});

test('the demo site stub format ([key, options, proxy] with [method, arguments]) is understood', () => {
  const { win, world, WebSocket } = page();
  const q = [];
  win.Seatguard = {
    q,
    load(k, o) {
      const c = { q: [], on() { c.q.push(['on', arguments]); return () => {}; } };
      q.push([k, o, c]);
      return c;
    },
  };
  const proxy = win.Seatguard.load('pk_1', { userId: 'bob' });
  const states = [];
  proxy.on('state', (s) => states.push(s));
  install(win, world);
  WebSocket.sockets[0].welcome();
  assert.deepEqual(states, ['admitted']);
});

test('a bad queued call is reported and does not stop the others', (t) => {
  const { win, world, WebSocket } = page();
  runStub(win);
  win.console = { error: t.mock.fn() };
  win.Seatguard.load('pk_1', {}); // no userId
  win.Seatguard.load('pk_1', { userId: 'carol' });
  install(win, world);
  assert.equal(win.console.error.mock.callCount(), 1);
  assert.equal(WebSocket.sockets.length, 1);
});

test('data-site and data-user auto-load a client', () => {
  const { win, world, WebSocket } = page({ 'data-site': 'pk_2', 'data-user': 'dave', 'data-mode': 'device-limit', 'data-limit': '2', 'data-policy': 'monitor' });
  const api = install(win, world);
  assert.ok(api.client);
  WebSocket.sockets[0].open();
  const hello = WebSocket.sockets[0].sent[0];
  assert.deepEqual([hello.site, hello.user, hello.mode, hello.limit, hello.policy], ['pk_2', 'dave', 'device-limit', 2, 'monitor']);
});

test('without data-user nothing loads by itself; installing twice keeps the first global', () => {
  const { win, world, WebSocket } = page({ 'data-site': 'pk_2' });
  const api = install(win, world);
  assert.equal(api.client, null);
  assert.equal(WebSocket.sockets.length, 0);
  assert.equal(install(win, world), api);
});

test('the built bundle installs window.Seatguard in a browser-like context', { skip: !exists('../../backend/seatguard/static/seatguard.js') && 'run npm run build first' }, () => {
  const code = readFileSync(new URL('../../backend/seatguard/static/seatguard.js', import.meta.url), 'utf8');
  const { win } = page();
  runStub(win);
  const proxy = win.Seatguard.load('pk_1', { userId: 'erin' });
  const sockets = [];
  win.WebSocket = class {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      sockets.push(this);
    }
    close() {}
  };
  // A fresh vm context has only the language built-ins: add the web APIs the SDK uses.
  Object.assign(win, { URL, crypto, localStorage: new MemoryStorage(), sessionStorage: new MemoryStorage(), setTimeout, clearTimeout });
  vm.runInContext(code, win);
  try {
    assert.equal(typeof win.Seatguard.load, 'function');
    assert.equal(sockets[0].url, 'wss://sg.example.com/ws/v1');
    assert.equal(proxy.state, 'connecting');
    assert.equal(proxy.token, null); // a live view of the client's token too
  } finally {
    proxy.destroy();
  }
  assert.equal(proxy.state, 'destroyed');
});

function exists(path) {
  try {
    readFileSync(new URL(path, import.meta.url));
    return true;
  } catch {
    return false;
  }
}
