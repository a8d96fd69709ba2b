// Browser identity: one session per browser profile, one tab id per tab, one device id.
import test from 'node:test';
import assert from 'node:assert/strict';
import { setup, MemoryStorage, seeded } from './fakes.js';
import { openSession, randomId } from '../src/session.js';
import { guardStorage } from '../src/storage.js';

// The hello a fresh client sends with the given storages.
function helloWith(local, session, seed) {
  const { socket, client, win } = setup({ local, session, random: seeded(seed) });
  socket().open();
  return { hello: socket().sent[0], client, win, socket };
}

test('two tabs of one browser share the session and device ids but not the tab id', () => {
  const local = new MemoryStorage();
  const a = helloWith(local, new MemoryStorage(), 1).hello;
  const b = helloWith(local, new MemoryStorage(), 2).hello;
  assert.equal(a.session, b.session);
  assert.equal(a.device, b.device);
  assert.notEqual(a.tab, b.tab);
});

test('another browser profile (other localStorage) gets another session', () => {
  const a = helloWith(new MemoryStorage(), new MemoryStorage(), 1).hello;
  const b = helloWith(new MemoryStorage(), new MemoryStorage(), 2).hello;
  assert.notEqual(a.session, b.session);
  assert.notEqual(a.device, b.device);
});

test('a reload keeps the tab id (sessionStorage), handed over on pagehide', () => {
  const local = new MemoryStorage();
  const tabStore = new MemoryStorage();
  const first = helloWith(local, tabStore, 1);
  first.win.dispatchEvent(new Event('pagehide'));
  const second = helloWith(local, tabStore, 2).hello;
  assert.equal(second.tab, first.hello.tab);
  assert.equal(second.session, first.hello.session);
});

test('a duplicated tab (sessionStorage copied while the page is open) gets its own tab id', () => {
  const local = new MemoryStorage();
  const tabStore = new MemoryStorage();
  const original = helloWith(local, tabStore, 1).hello;
  const copy = new MemoryStorage();
  for (const [k, v] of tabStore.map) copy.setItem(k, v);
  const duplicate = helloWith(local, copy, 2).hello;
  assert.notEqual(duplicate.tab, original.tab);
});

test('destroy hands the tab id back, so the next client of the same page keeps it', () => {
  const local = new MemoryStorage();
  const tabStore = new MemoryStorage();
  const first = helloWith(local, tabStore, 1);
  first.client.destroy();
  assert.equal(helloWith(local, tabStore, 2).hello.tab, first.hello.tab);
});

test('ids are well formed and malformed stored ids are replaced', () => {
  const local = new MemoryStorage();
  local.setItem('seatguard:session', 'bad id!');
  const tabs = new MemoryStorage();
  tabs.setItem('seatguard:tab', 'x');
  const ids = openSession(guardStorage(() => local), guardStorage(() => tabs), seeded(3));
  for (const id of [ids.session, ids.tab, ids.device]) assert.match(id, /^[A-Za-z0-9_-]{8,64}$/);
  assert.equal(local.getItem('seatguard:session'), ids.session);
  assert.match(randomId(Math.random), /^[a-z0-9]{22}$/);
});

test('storage that throws (private mode) falls back to memory', () => {
  const throwing = {
    getItem() {
      throw new Error('SecurityError');
    },
    setItem() {
      throw new Error('QuotaExceededError');
    },
    removeItem() {},
  };
  const store = guardStorage(() => throwing);
  store.set('k', 'v');
  assert.equal(store.get('k'), 'v');
  store.del('k');
  assert.equal(store.get('k'), null);
  // Even reading window.localStorage itself may throw.
  const denied = guardStorage(() => {
    throw new Error('SecurityError');
  });
  denied.set('a', 1);
  assert.equal(denied.get('a'), '1');
  // A client still works and sends valid ids.
  const { hello } = helloWith(throwing, throwing, 5);
  assert.match(hello.session, /^[A-Za-z0-9_-]{8,64}$/);
});

test('storage that fails later keeps the values written so far', () => {
  const inner = new MemoryStorage();
  const store = guardStorage(() => inner);
  store.set('k', 'v');
  inner.getItem = () => {
    throw new Error('gone');
  };
  assert.equal(store.get('k'), 'v');
});
