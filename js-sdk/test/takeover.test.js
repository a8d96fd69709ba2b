// "Use here": takeOver(), the site's step-up check, the server's answers, and the monitor
// policy's conflict notice.
import test from 'node:test';
import assert from 'node:assert/strict';
import { setup, flush } from './fakes.js';

const takeovers = (ws) => ws.sent.filter((frame) => frame.t === 'takeover');

// A client blocked by the server with `reason`, take-over allowed or not.
function blocked({ reason = 'evicted', takeover = true, options } = {}) {
  const ctx = setup({ options });
  ctx.socket().welcome({ state: 'blocked', reason, takeover, policy: 'evict-oldest' });
  return ctx;
}

test('takeOver sends {t: "takeover"} and resolves true on the unblock that follows', async () => {
  const { socket, client, events } = blocked();
  const won = client.takeOver();
  await flush();
  assert.deepEqual(socket().last, { t: 'takeover' });
  assert.equal(client.state, 'blocked', 'nothing changes until the server answers');
  socket().push({ t: 'unblock' });
  assert.equal(await won, true);
  assert.equal(client.state, 'admitted');
  assert.deepEqual(events.at(-1), ['unblock']);
});

test('takeOver is idempotent while in flight: one frame, one Promise', async () => {
  const { socket, client } = blocked();
  const first = client.takeOver();
  assert.equal(client.takeOver(), first);
  await flush();
  assert.equal(client.takeOver(), first);
  assert.equal(takeovers(socket()).length, 1);
  socket().push({ t: 'unblock' });
  assert.equal(await first, true);
});

test('takeOver does nothing where it is not allowed: rules without takeover, or not blocked', async () => {
  let checks = 0;
  const onChallenge = async () => ++checks;
  const notAllowed = blocked({ reason: 'limit', takeover: false, options: { onChallenge } });
  assert.equal(await notAllowed.client.takeOver(), false);
  assert.equal(notAllowed.client.state, 'blocked');
  assert.deepEqual(takeovers(notAllowed.socket()), []);
  const admitted = setup({ options: { onChallenge } });
  admitted.socket().welcome({ takeover: true });
  assert.equal(await admitted.client.takeOver(), false);
  assert.deepEqual(takeovers(admitted.socket()), []);
  assert.equal(checks, 0, 'the site is not asked for a check that cannot lead anywhere');
  // A refused attempt does not stick: once allowed, it works.
  notAllowed.socket().push({ t: 'block', reason: 'taken_over', takeover: true });
  notAllowed.client.takeOver();
  await flush();
  assert.equal(takeovers(notAllowed.socket()).length, 1);
});

test('onChallenge runs first with the block detail; resolving truthy sends the frame', async () => {
  const seen = [];
  let pass;
  const onChallenge = (detail) => {
    seen.push(detail);
    return new Promise((resolve) => (pass = resolve));
  };
  const { socket, client } = blocked({ reason: 'challenge', options: { onChallenge } });
  const won = client.takeOver();
  await flush();
  assert.deepEqual(seen, [{ reason: 'challenge', takeover: true }]);
  assert.deepEqual(takeovers(socket()), [], 'nothing is sent while the site checks');
  pass(true);
  await flush();
  assert.deepEqual(socket().last, { t: 'takeover' });
  socket().push({ t: 'unblock' });
  assert.equal(await won, true);
});

for (const [name, onChallenge] of [
  ['rejects', () => Promise.reject(new Error('wrong password'))],
  ['resolves false', async () => false],
  ['throws', () => {
    throw new Error('no dialog');
  }],
]) {
  test(`onChallenge ${name}: no frame, still blocked, takeOver resolves false`, async () => {
    const { socket, client, events } = blocked({ reason: 'challenge', options: { onChallenge } });
    assert.equal(await client.takeOver(), false);
    assert.deepEqual(takeovers(socket()), []);
    assert.equal(client.state, 'blocked');
    assert.deepEqual(events.filter(([event]) => event === 'unblock'), []);
  });
}

test('the rules changing during the check (takeover no longer allowed): no frame, false', async () => {
  let pass;
  const { socket, client } = blocked({ options: { onChallenge: () => new Promise((resolve) => (pass = resolve)) } });
  const won = client.takeOver();
  socket().push({ t: 'block', reason: 'limit', takeover: false });
  pass(true);
  assert.equal(await won, false);
  assert.deepEqual(takeovers(socket()), []);
});

test('denied: a denied event, still blocked, socket open, takeOver resolves false', async () => {
  const { socket, client, events } = blocked();
  const won = client.takeOver();
  await flush();
  const denied = { t: 'denied', action: 'takeover', reason: 'takeover_not_allowed', message: 'not allowed here' };
  socket().push(denied);
  assert.equal(await won, false);
  assert.equal(client.state, 'blocked');
  assert.equal(socket().closedWith, null);
  assert.deepEqual(events.at(-1), ['denied', { action: 'takeover', reason: 'takeover_not_allowed', message: 'not allowed here' }]);
  // A new attempt is a new Promise.
  assert.notEqual(client.takeOver(), won);
});

test('a take-over whose socket dropped: false if the next welcome says blocked, true if admitted', async () => {
  for (const [state, expected] of [['blocked', false], ['admitted', true]]) {
    const { socket, clock, client } = blocked();
    const won = client.takeOver();
    await flush();
    socket().drop(1006);
    clock.tick(1000);
    socket().welcome({ state, reason: state === 'blocked' ? 'evicted' : null, takeover: true });
    assert.equal(await won, expected, state);
  }
});

test('a check still running through a reconnect goes on: the frame goes out on the new socket', async () => {
  let pass;
  const { socket, clock, client } = blocked({ options: { onChallenge: () => new Promise((resolve) => (pass = resolve)) } });
  const won = client.takeOver();
  await flush();
  socket().drop(1006);
  clock.tick(1000);
  socket().welcome({ state: 'blocked', reason: 'evicted', takeover: true });
  pass(true);
  await flush();
  assert.deepEqual(socket().last, { t: 'takeover' });
  socket().push({ t: 'unblock' });
  assert.equal(await won, true);
});

// A blocked client whose socket dropped: reconnecting, the next socket not opened yet.
function reconnecting(options) {
  const ctx = blocked({ options });
  ctx.socket().drop(1006);
  assert.equal(ctx.client.state, 'reconnecting');
  return ctx;
}

// Opens the next socket of a reconnecting client and says hello (nothing else goes out).
function reopen({ socket, clock }) {
  clock.tick(Math.max(...clock.pending));
  socket().open();
  assert.deepEqual(socket().sent.map((f) => f.t), ['hello']);
}

test('"use here" while reconnecting after a block goes out right after the next welcome', async () => {
  const ctx = reconnecting();
  const won = ctx.client.takeOver();
  await flush();
  reopen(ctx);
  await flush();
  assert.deepEqual(takeovers(ctx.socket()), [], 'nothing but hello before welcome');
  ctx.socket().welcome({ state: 'blocked', reason: 'evicted', takeover: true });
  assert.deepEqual(ctx.socket().sent.map((f) => f.t), ['hello', 'takeover']);
  ctx.socket().push({ t: 'unblock' });
  assert.equal(await won, true);
});

test('a check that passes before welcome: the frame waits for it', async () => {
  let pass;
  const ctx = reconnecting({ onChallenge: () => new Promise((resolve) => (pass = resolve)) });
  const won = ctx.client.takeOver();
  reopen(ctx);
  pass(true);
  await flush();
  assert.deepEqual(takeovers(ctx.socket()), []);
  ctx.socket().welcome({ state: 'blocked', reason: 'evicted', takeover: true });
  assert.deepEqual(ctx.socket().last, { t: 'takeover' });
  ctx.socket().push({ t: 'unblock' });
  assert.equal(await won, true);
});

test('a take-over held for the welcome: false if that no longer allows it, true if admitted', async () => {
  for (const [welcome, expected] of [[{ state: 'blocked', reason: 'limit', takeover: false }, false], [{}, true]]) {
    const ctx = reconnecting();
    const won = ctx.client.takeOver();
    await flush();
    reopen(ctx);
    ctx.socket().welcome(welcome);
    assert.equal(await won, expected);
    assert.deepEqual(takeovers(ctx.socket()), []);
  }
});

test('destroy or a final end while in flight resolves false', async () => {
  const one = blocked();
  const won = one.client.takeOver();
  one.client.destroy();
  assert.equal(await won, false);
  const two = blocked();
  const lost = two.client.takeOver();
  await flush();
  two.socket().push({ t: 'revoked', reason: 'revoked' });
  assert.equal(await lost, false);
  assert.equal(await two.client.takeOver(), false);
});

test('conflict (monitor policy): an event, nothing blocked', () => {
  const { socket, client, events } = setup();
  socket().welcome({ policy: 'monitor' });
  socket().push({ t: 'conflict' });
  assert.equal(client.state, 'admitted');
  assert.deepEqual(events.at(-1), ['conflict']);
});
