// The socket life of a client: hello, heartbeats and acks, dead sockets, reconnects and close codes.
import test from 'node:test';
import assert from 'node:assert/strict';
import { setup, fakeWindow, fakeWebSocket, MemoryStorage, flush } from './fakes.js';
import { LATER_MS } from '../src/backoff.js';
import { WELCOME_TIMEOUT_MS } from '../src/connection.js';

const ID = /^[A-Za-z0-9_-]{8,64}$/;

test('on open the client sends hello with its identity and the options given', () => {
  const { socket } = setup({ options: { mode: 'device-limit', limit: 2, policy: 'evict-oldest' } });
  assert.equal(socket().url, 'wss://sg.test/ws/v1');
  assert.equal(socket().sent.length, 0, 'nothing is sent before the socket opens');
  socket().open();
  const [hello] = socket().sent;
  assert.equal(hello.t, 'hello');
  assert.equal(hello.v, 1);
  assert.equal(hello.site, 'pk_test');
  assert.equal(hello.user, 'alice');
  for (const id of ['session', 'tab', 'device']) assert.match(hello[id], ID);
  assert.equal(hello.fp, undefined, 'the fingerprint comes with the device module (device.test.js)');
  assert.equal(hello.mode, 'device-limit');
  assert.equal(hello.limit, 2);
  assert.equal(hello.policy, 'evict-oldest');
});

test('hello without mode, limit and policy leaves them out', () => {
  const { socket } = setup();
  socket().open();
  assert.deepEqual(Object.keys(socket().sent[0]).sort(), ['device', 'session', 'site', 't', 'tab', 'touch', 'user', 'v']);
});

test('hello carries the touch points (an iPad that asks for desktop pages has them), 0 to 256', () => {
  for (const [maxTouchPoints, touch] of [[0, 0], [5, 5], [256, 256], [1000, 256], [undefined, 0], ['x', 0]]) {
    const { socket } = setup({ window: fakeWindow({ navigator: { maxTouchPoints } }) });
    socket().open();
    assert.equal(socket().sent[0].touch, touch, `maxTouchPoints ${maxTouchPoints}`);
  }
  const page = setup({ options: { touch: 9 } }); // the page's options cannot say otherwise
  page.socket().open();
  assert.equal(page.socket().sent[0].touch, 0);
});

test('hello carries a token string, org and role; user only when a userId was given', () => {
  const withUser = setup({ options: { token: 'jwt.a.b', org: 'acme', role: 'staff' } });
  withUser.socket().open();
  const hello = withUser.socket().sent[0];
  assert.equal(hello.token, 'jwt.a.b');
  assert.equal(hello.user, 'alice');
  assert.equal(hello.org, 'acme');
  assert.equal(hello.role, 'staff');
  const tokenOnly = setup({ options: { userId: undefined, token: 'jwt.a.b' } });
  tokenOnly.socket().open();
  assert.equal(tokenOnly.socket().sent[0].token, 'jwt.a.b');
  assert.ok(!('user' in tokenOnly.socket().sent[0]), 'no user when only a token was given');
});

test('a token function is called before each hello; an async one delays the hello until it resolves', async () => {
  const calls = [];
  const token = () => {
    calls.push(calls.length);
    return Promise.resolve('jwt-' + calls.length);
  };
  const { socket, clock } = setup({ options: { userId: undefined, token } });
  socket().open();
  assert.deepEqual(socket().sent, [], 'no hello before the token is there');
  await flush();
  assert.equal(socket().sent[0].t, 'hello');
  assert.equal(socket().sent[0].token, 'jwt-1');
  assert.ok(!('user' in socket().sent[0]));
  // After a reconnect the site is asked again: a fresh token.
  socket().drop(1006);
  clock.tick(1000);
  socket().open();
  await flush();
  assert.equal(socket().sent[0].token, 'jwt-2');
  assert.equal(calls.length, 2);
});

test('a token function may return a plain string', async () => {
  const { socket } = setup({ options: { token: () => 'jwt-now' } });
  socket().open();
  await flush();
  assert.equal(socket().sent[0].token, 'jwt-now');
});

test('a failing token function sends no hello; the welcome watchdog retries with a new socket', async (t) => {
  t.mock.method(console, 'error', () => {});
  let fail = true;
  const token = async () => {
    if (fail) throw new Error('token endpoint down');
    return 'jwt-ok';
  };
  const { socket, clock, WebSocket, client } = setup({ options: { token } });
  socket().open();
  await flush();
  assert.deepEqual(socket().sent, []);
  assert.equal(console.error.mock.callCount(), 1);
  fail = false;
  clock.tick(WELCOME_TIMEOUT_MS);
  assert.equal(client.state, 'reconnecting');
  clock.tick(Math.max(...clock.pending));
  assert.equal(WebSocket.sockets.length, 2);
  socket().open();
  await flush();
  assert.equal(socket().sent[0].token, 'jwt-ok');
});

test('a token that arrives after its socket was replaced is not sent on the new one', async () => {
  const resolvers = [];
  const token = () => new Promise((resolve) => resolvers.push(resolve));
  const { socket, clock, WebSocket } = setup({ options: { token } });
  const first = socket();
  first.open();
  first.drop(1006);
  clock.tick(Math.max(...clock.pending));
  assert.equal(WebSocket.sockets.length, 2);
  socket().open();
  resolvers[0]('stale');
  await flush();
  assert.deepEqual(socket().sent, []);
  resolvers[1]('fresh');
  await flush();
  assert.equal(socket().sent[0].token, 'fresh');
});

test('close 4012 (identity required) and 4013 (identity invalid) are fatal: error, no reconnect', () => {
  for (const [code, reason] of [[4012, 'identity_required'], [4013, 'identity_invalid']]) {
    const { socket, clock, WebSocket, client, events } = setup();
    socket().open();
    socket().push({ t: 'error', code, reason, message: 'needs a signed identity token' });
    socket().drop(code);
    assert.equal(client.state, 'error');
    assert.deepEqual(events.at(-1), ['error', { code, reason, message: 'needs a signed identity token' }]);
    clock.tick(60000);
    assert.equal(WebSocket.sockets.length, 1);
  }
});

test('heartbeats every hb ms with increasing refs and the activity flag', () => {
  const { socket, clock, win } = setup();
  socket().welcome({ hb: 1000 });
  clock.tick(999);
  assert.equal(socket().sent.length, 1, 'only hello so far');
  clock.tick(1);
  assert.deepEqual(socket().last, { t: 'hb', ref: 0, active: false });
  socket().push({ t: 'ack', ref: 0 });
  // The user presses a key in this tab: the next heartbeat says so, the one after does not.
  win.dispatchEvent(new Event('keydown'));
  clock.tick(1000);
  assert.deepEqual(socket().last, { t: 'hb', ref: 1, active: true });
  socket().push({ t: 'ack', ref: 1 });
  clock.tick(1000);
  assert.deepEqual(socket().last, { t: 'hb', ref: 2, active: false });
});

test('mouse moves count as activity, throttled', () => {
  const { socket, clock, win } = setup();
  socket().welcome({ hb: 5000 });
  win.dispatchEvent(new Event('mousemove'));
  clock.tick(5000);
  assert.equal(socket().last.active, true);
  socket().push({ t: 'ack', ref: 0 });
  // Less than a second after the last counted move: ignored.
  clock.tick(0);
  win.dispatchEvent(new Event('pointerdown'));
  clock.tick(5000);
  assert.equal(socket().last.active, true);
});

// The frames of `ws` after hello, as 'hb <ref> <active>' strings.
const beats = (ws) => ws.sent.filter((f) => f.t === 'hb').map((f) => `hb ${f.ref} ${f.active}`);

test('welcome activity: user input reports at once when no heartbeat said active for that long', () => {
  const { socket, clock, win } = setup();
  const key = () => win.dispatchEvent(new Event('keydown'));
  socket().welcome({ hb: 25000, activity: 5000 });
  clock.tick(100);
  key(); // nothing reported on this socket yet: now
  assert.deepEqual(beats(socket()), ['hb 0 true']);
  socket().push({ t: 'ack', ref: 0 });
  clock.tick(4999);
  key(); // 4.999 s after the last report: it waits
  assert.deepEqual(beats(socket()), ['hb 0 true']);
  clock.tick(1);
  key(); // 5 s: reported
  assert.deepEqual(beats(socket()), ['hb 0 true', 'hb 1 true']);
  socket().push({ t: 'ack', ref: 1 });
  // The regular heartbeat is due one interval after the last one, whatever sent it.
  clock.tick(24999);
  assert.equal(beats(socket()).length, 2);
  clock.tick(1);
  assert.deepEqual(beats(socket()).at(-1), 'hb 2 false');
});

test('activity while a heartbeat is unacknowledged goes out right after its ack', () => {
  const { socket, clock, win } = setup();
  socket().welcome({ hb: 10000, activity: 3000 });
  clock.tick(10000); // regular heartbeat, no input yet
  assert.deepEqual(beats(socket()), ['hb 0 false']);
  win.dispatchEvent(new Event('pointerdown'));
  assert.deepEqual(beats(socket()), ['hb 0 false'], 'one heartbeat in flight at a time');
  clock.tick(500);
  socket().push({ t: 'ack', ref: 0 });
  assert.deepEqual(beats(socket()), ['hb 0 false', 'hb 1 true']);
  socket().push({ t: 'ack', ref: 1 });
  clock.tick(9999);
  assert.equal(beats(socket()).length, 2);
  clock.tick(1);
  assert.equal(beats(socket()).length, 3);
});

test('a regular heartbeat that carried activity counts as a report', () => {
  const { socket, clock, win } = setup();
  const key = () => win.dispatchEvent(new Event('keydown'));
  const ack = () => socket().push({ t: 'ack', ref: socket().last.ref });
  socket().welcome({ hb: 4000, activity: 5000 });
  key(); // t=0: reported at once
  ack();
  clock.tick(3000);
  key(); // t=3000: 3 s after the report, it waits for the heartbeat
  clock.tick(1000); // t=4000: the regular heartbeat says active
  ack();
  clock.tick(4000); // t=8000: nothing since
  ack();
  clock.tick(999);
  key(); // t=8999: 4.999 s after the regular heartbeat that said active
  assert.deepEqual(beats(socket()), ['hb 0 true', 'hb 1 true', 'hb 2 false']);
  clock.tick(1);
  key(); // t=9000
  assert.deepEqual(beats(socket()), ['hb 0 true', 'hb 1 true', 'hb 2 false', 'hb 3 true']);
});

test('without welcome activity (absent or 0), or before welcome, input waits for the heartbeat', () => {
  for (const extra of [{}, { activity: 0 }]) {
    const { socket, clock, win } = setup();
    socket().open();
    win.dispatchEvent(new Event('keydown'));
    assert.deepEqual(socket().sent.map((f) => f.t), ['hello']);
    socket().welcome({ hb: 1000, ...extra });
    win.dispatchEvent(new Event('keydown'));
    assert.deepEqual(beats(socket()), []);
    clock.tick(1000);
    assert.deepEqual(beats(socket()), ['hb 0 true']);
  }
});

test('after a reconnect the first input is reported on the new socket', () => {
  const { socket, clock, win } = setup({ random: () => 0 });
  socket().welcome({ hb: 25000, activity: 5000 });
  win.dispatchEvent(new Event('keydown'));
  socket().drop(1006);
  clock.tick(0);
  socket().welcome({ hb: 25000, activity: 5000 });
  win.dispatchEvent(new Event('keydown'));
  assert.deepEqual(beats(socket()), ['hb 1 true']);
});

test('heartbeats go on while the tab is hidden', () => {
  const { socket, clock, win } = setup();
  socket().welcome({ hb: 1000 });
  win.document.visibilityState = 'hidden';
  win.document.dispatchEvent(new Event('visibilitychange'));
  for (let ref = 0; ref < 3; ref++) {
    clock.tick(1000);
    assert.equal(socket().last.ref, ref);
    socket().push({ t: 'ack', ref });
  }
});

test('a heartbeat left without ack until the next one is due: the socket is dropped and reopened', () => {
  const { socket, clock, WebSocket, client, events } = setup();
  const first = socket();
  first.welcome({ hb: 1000 });
  clock.tick(1000); // hb ref 0 goes out; no ack comes back
  assert.equal(first.last.ref, 0);
  clock.tick(1000); // the next hb is due: the socket is dead
  assert.equal(first.closedWith, 1000);
  assert.equal(first.onmessage, null, 'the dead socket is detached');
  assert.equal(client.state, 'reconnecting');
  assert.deepEqual(events.at(-1), ['state', 'reconnecting', 'admitted']);
  clock.tick(500); // within the first backoff window
  assert.equal(WebSocket.sockets.length, 2);
  socket().welcome();
  assert.equal(client.state, 'admitted');
});

test('a late ack for an older ref does not satisfy the watchdog', () => {
  const { socket, clock, client } = setup();
  socket().welcome({ hb: 1000 });
  clock.tick(1000);
  socket().push({ t: 'ack', ref: 0 });
  clock.tick(1000); // ref 1 out
  socket().push({ t: 'ack', ref: 0 });
  clock.tick(1000);
  assert.equal(client.state, 'reconnecting');
});

test('no welcome in time: the socket is given up and reopened', () => {
  const { socket, clock, WebSocket, client } = setup();
  socket().open();
  clock.tick(WELCOME_TIMEOUT_MS);
  assert.equal(client.state, 'reconnecting');
  clock.tick(500);
  assert.equal(WebSocket.sockets.length, 2);
});

for (const code of [1006, 4008, 1001, 1011]) {
  test(`reconnects after close code ${code}, sending hello again with the same ids`, () => {
    const { socket, clock, WebSocket, client } = setup();
    socket().welcome();
    const hello = socket().sent[0];
    socket().drop(code);
    assert.equal(client.state, 'reconnecting');
    clock.tick(499);
    assert.equal(WebSocket.sockets.length, 2);
    socket().open();
    assert.deepEqual(socket().sent[0], hello);
  });
}

test('reconnect backoff grows with failed attempts and resets after an acknowledged heartbeat', () => {
  const { socket, clock, WebSocket } = setup({ random: () => 0.999 });
  socket().welcome();
  const waits = [];
  for (let i = 0; i < 4; i++) {
    socket().drop(1006);
    waits.push(Math.max(...clock.pending));
    clock.tick(waits.at(-1));
  }
  assert.deepEqual(waits, [499, 999, 1998, 3996]);
  socket().welcome({ hb: 1000 });
  clock.tick(1000);
  socket().push({ t: 'ack', ref: 0 });
  socket().drop(1006);
  assert.equal(Math.max(...clock.pending), 499);
  assert.equal(WebSocket.sockets.length, 5);
});

test('a server that welcomes and closes at once is retried with a growing backoff', () => {
  const { socket, clock, WebSocket } = setup({ random: () => 0.999 });
  const waits = [];
  for (let i = 0; i < 7; i++) {
    socket().welcome({ hb: 1000 });
    clock.tick(999); // up for almost a heartbeat, none sent yet
    socket().drop(1011);
    waits.push(Math.max(...clock.pending));
    clock.tick(waits.at(-1));
  }
  assert.deepEqual(waits, [499, 999, 1998, 3996, 7992, 14985, 14985]);
  // Nor does an unanswered heartbeat count: the watchdog's drop goes on with the backoff.
  socket().welcome({ hb: 1000 });
  clock.tick(2000);
  assert.equal(Math.max(...clock.pending), 14985);
  assert.equal(WebSocket.sockets.length, 8);
});

test('a WebSocket constructor that throws in the retry timer: reconnecting goes on with backoff', (t) => {
  t.mock.method(console, 'error', () => {});
  const { socket, clock, WebSocket, client } = setup({ random: () => 0.999 });
  socket().welcome();
  socket().drop(1006);
  WebSocket.refuse = 3;
  const waits = [];
  for (let i = 0; i < 4; i++) {
    waits.push(Math.max(...clock.pending));
    clock.tick(waits.at(-1));
  }
  // Three constructions threw (each one a failed attempt), the fourth made a socket.
  assert.deepEqual(waits, [499, 999, 1998, 3996]);
  assert.equal(console.error.mock.callCount(), 3);
  assert.equal(WebSocket.sockets.length, 2);
  assert.equal(client.state, 'reconnecting');
  socket().welcome();
  assert.equal(client.state, 'admitted');
});

test('a WebSocket constructor that throws on the first connect: the client retries', (t) => {
  t.mock.method(console, 'error', () => {});
  const WebSocket = fakeWebSocket();
  WebSocket.refuse = 1;
  const { socket, clock, client } = setup({ WebSocket, random: () => 0 });
  assert.equal(client.state, 'reconnecting');
  assert.equal(WebSocket.sockets.length, 0);
  clock.tick(0);
  assert.equal(WebSocket.sockets.length, 1);
  socket().welcome();
  assert.equal(client.state, 'admitted');
});

for (const code of [1012, 1013]) {
  test(`after ${code} (come back later) the reconnect waits at least ${LATER_MS} ms`, () => {
    const { socket, clock, WebSocket, client } = setup({ random: () => 0 });
    socket().welcome();
    socket().drop(code);
    assert.equal(client.state, 'reconnecting');
    clock.tick(LATER_MS - 1);
    assert.equal(WebSocket.sockets.length, 1);
    clock.tick(1);
    assert.equal(WebSocket.sockets.length, 2);
  });
}

for (const [code, reason] of [[4003, 'unknown_site'], [4000, 'bad_message'], [4001, 'protocol_order'], [4002, 'unsupported_version'], [4004, 'origin_not_allowed'], [1003, 'unsupported_data'], [4077, 'future_code']]) {
  test(`no reconnect after ${code}: state error and an error event`, () => {
    const { socket, clock, WebSocket, client, events } = setup();
    socket().welcome();
    socket().push({ t: 'error', code, reason, message: 'nope' });
    socket().drop(code);
    assert.equal(client.state, 'error');
    assert.deepEqual(events.at(-1), ['error', { code, reason, message: 'nope' }]);
    clock.tick(60000);
    assert.equal(WebSocket.sockets.length, 1);
    assert.deepEqual(clock.pending, [], 'no timer left');
  });
}

test('an error close without an error frame still reports its code', () => {
  const { socket, client, events } = setup();
  socket().open();
  socket().drop(4003);
  assert.equal(client.state, 'error');
  assert.deepEqual(events.at(-1), ['error', { code: 4003, reason: 'closed', message: '' }]);
});

test('close 4015 suspends the client without reconnecting, even unwelcomed', () => {
  const { socket, clock, WebSocket, client, events } = setup();
  socket().open();
  socket().push({ t: 'error', code: 4015, reason: 'suspended', message: 'this user is suspended' });
  socket().drop(4015);
  assert.equal(client.state, 'suspended');
  assert.deepEqual(events.at(-1), ['suspended', { reason: 'suspended' }]);
  clock.tick(60000);
  assert.equal(WebSocket.sockets.length, 1);
});

test('close 4009 ends the client without reconnecting', () => {
  const { socket, clock, WebSocket, client, events } = setup();
  socket().welcome();
  socket().drop(4009);
  assert.equal(client.state, 'ended');
  assert.deepEqual(events.at(-1), ['ended', { reason: 'logout' }]);
  clock.tick(60000);
  assert.equal(WebSocket.sockets.length, 1);
});

for (const kind of ['revoked', 'expired', 'suspended']) {
  test(`${kind === 'expired' ? 'an' : 'a'} ${kind} frame ends the client for good, whatever the close code after`, () => {
    const { socket, clock, WebSocket, client, events, win } = setup();
    const ws = socket();
    ws.welcome();
    ws.push({ t: kind, reason: kind === 'expired' ? 'idle' : 'admin' });
    assert.equal(client.state, kind);
    assert.deepEqual(events.at(-1), [kind, { reason: kind === 'expired' ? 'idle' : 'admin' }]);
    assert.equal(ws.closedWith, 1000, 'the client closes the socket itself');
    ws.drop(1006); // detached: ignored
    clock.tick(60000);
    assert.equal(WebSocket.sockets.length, 1);
    // Neither a visible page, the network coming back nor a bfcache restore brings it back.
    win.document.dispatchEvent(new Event('visibilitychange'));
    win.dispatchEvent(new Event('online'));
    win.dispatchEvent(Object.assign(new Event('pageshow'), { persisted: true }));
    assert.equal(WebSocket.sockets.length, 1);
    assert.equal(client.state, kind);
  });
}

test('visible again while waiting to reconnect: reconnect at once with a fresh backoff', () => {
  const { socket, clock, WebSocket, win, client } = setup({ random: () => 0.999 });
  socket().welcome();
  for (let i = 0; i < 5; i++) {
    socket().drop(1006);
    clock.tick(Math.max(...clock.pending));
  }
  socket().drop(1006); // now waiting ~16 s
  const before = WebSocket.sockets.length;
  win.document.visibilityState = 'visible';
  win.document.dispatchEvent(new Event('visibilitychange'));
  assert.equal(WebSocket.sockets.length, before + 1);
  assert.equal(client.state, 'reconnecting');
  socket().welcome();
  socket().drop(1006);
  assert.equal(Math.max(...clock.pending), 499, 'backoff starts over');
});

test('visible again with an open socket: nothing happens', () => {
  const { socket, WebSocket, win } = setup();
  socket().welcome();
  win.document.dispatchEvent(new Event('visibilitychange'));
  win.dispatchEvent(new Event('online'));
  assert.equal(WebSocket.sockets.length, 1);
});

test('hidden pages do not reconnect early on visibilitychange to hidden', () => {
  const { socket, WebSocket, win } = setup({ window: fakeWindow(), local: new MemoryStorage() });
  socket().welcome();
  socket().drop(1006);
  win.document.visibilityState = 'hidden';
  win.document.dispatchEvent(new Event('visibilitychange'));
  assert.equal(WebSocket.sockets.length, 1);
});
