// Issue 14's server-fed pieces of the overlay (happy-dom): where the seat is held, the
// take-over cooldown, the "reconnecting" notice and the idle countdown.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Window } from 'happy-dom';
import { createClient } from '../src/client.js';
import { FakeClock, MemoryStorage, fakeWebSocket, seeded } from './fakes.js';

function open() {
  const win = new Window({ url: 'https://shop.test/watch' });
  const doc = win.document;
  doc.body.innerHTML = '<main>Film</main>';
  const WebSocket = fakeWebSocket();
  const clock = new FakeClock();
  const client = createClient(
    { site: 'pk', userId: 'alice', endpoint: 'wss://sg.test/ws/v1', lang: 'en' },
    { window: win, document: doc, WebSocket, timers: clock, random: seeded(), storage: { local: new MemoryStorage(), session: new MemoryStorage() }, device: null },
  );
  const socket = () => WebSocket.sockets[WebSocket.sockets.length - 1];
  const status = () => doc.querySelector('[role="status"]');
  return { client, doc, win, clock, socket, status, count: () => WebSocket.sockets.length, text: () => doc.getElementById('seatguard-text')?.textContent };
}

test('a blocked overlay says on what the seat is held and since when; nothing else of it', () => {
  const { socket, text } = open();
  const since = new Date(2025, 0, 1, 14, 2).getTime() / 1000;
  const holder = { device_type: 'computer', browser: 'Chrome', os: 'Windows', since };
  socket().welcome({ state: 'blocked', reason: 'limit', holders: [holder, { ...holder, browser: 'Firefox' }] });
  assert.match(text(), /In use on a computer \(Chrome on Windows\) since (14|0?2):02/);
  assert.doesNotMatch(text(), /Firefox/);
});

test('a take-over denied for the cooldown says when to try again, in the overlay', () => {
  const { client, socket, text } = open();
  socket().welcome({ state: 'blocked', reason: 'evicted', takeover: true });
  client.takeOver();
  socket().push({ t: 'denied', action: 'takeover', reason: 'takeover_cooldown', message: 'x', retry: 20 });
  assert.match(text(), /Try again in 20 s\.$/);
});

test('"Reconnecting…" shows while the socket is down after holding a seat, as a status', () => {
  const { socket, status, clock, count } = open();
  socket().welcome();
  assert.equal(status(), null);
  socket().drop(1006);
  assert.equal(status().textContent, 'Reconnecting…');
  while (count() < 2) clock.tick(100);
  socket().welcome();
  assert.equal(status().hidden, true);
  assert.equal(status().textContent, '');
});

test('no "reconnecting" before the first welcome, nor for a blocked browser', () => {
  const { socket, status } = open();
  socket().drop(1006);
  assert.equal(status(), null);
});

test('the idle countdown starts warn ms before the timeout; input dismisses it', () => {
  const { socket, status, clock, win } = open();
  socket().welcome({ idle: 600000, warn: 60000, hb: 1e9 }); // no heartbeats to answer
  clock.tick(539000);
  assert.equal(status(), null);
  clock.tick(1000);
  assert.equal(status().textContent, 'Inactive: signing out in 60 s.');
  clock.tick(15000);
  assert.equal(status().textContent, 'Inactive: signing out in 45 s.');
  win.dispatchEvent(new win.KeyboardEvent('keydown', { key: 'a' }));
  assert.equal(status().hidden, true);
  clock.tick(539000);
  assert.equal(status().hidden, true);
  clock.tick(1000);
  assert.equal(status().hidden, false);
});
