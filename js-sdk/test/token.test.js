// The seat token: held while this browser holds a seat, dropped at once when it does not.
import test from 'node:test';
import assert from 'node:assert/strict';
import { setup } from './fakes.js';

// A client whose `token` events are recorded in `tokens`; the fake clock starts at 0 ms.
function watched(options) {
  const s = setup(options);
  const tokens = [];
  s.client.on('token', (value) => tokens.push(value));
  return { ...s, tokens };
}

const seat = (token, exp = 120) => ({ t: 'seat', token, exp });

test('no token before a seat frame; the seat frame sets it and fires a token event', () => {
  const { socket, client, tokens } = watched();
  assert.equal(client.token, null);
  socket().welcome();
  assert.equal(client.token, null);
  socket().push(seat('t1'));
  assert.equal(client.token, 't1');
  socket().push(seat('t2', 200));
  assert.equal(client.token, 't2');
  assert.deepEqual(tokens, ['t1', 't2']);
});

test('a block drops the token at once, before the block event', () => {
  const { socket, client, tokens } = watched();
  const seenAtBlock = [];
  client.on('block', () => seenAtBlock.push(client.token));
  socket().welcome();
  socket().push(seat('t1'));
  socket().push({ t: 'block', reason: 'evicted', takeover: false });
  assert.equal(client.token, null);
  assert.deepEqual(seenAtBlock, [null]);
  assert.deepEqual(tokens, ['t1', null]);
  // The unblock alone gives no token: the next seat frame does.
  socket().push({ t: 'unblock' });
  assert.equal(client.token, null);
  socket().push(seat('t2'));
  assert.equal(client.token, 't2');
});

test('a seat frame while blocked is not taken', () => {
  const { socket, client, tokens } = watched();
  socket().welcome({ state: 'blocked', reason: 'limit' });
  socket().push(seat('t1'));
  assert.equal(client.token, null);
  assert.deepEqual(tokens, []);
});

test('a welcome that says blocked after a reconnect drops the token', () => {
  const { socket, clock, client } = watched();
  socket().welcome();
  socket().push(seat('t1'));
  socket().drop(1006);
  assert.equal(client.state, 'reconnecting');
  assert.equal(client.token, 't1'); // the seat is kept through the reload grace
  clock.tick(1000);
  socket().welcome({ state: 'blocked', reason: 'limit' });
  assert.equal(client.token, null);
});

test('revoked, suspended, ended, expired and a final error drop the token', () => {
  for (const end of [
    { t: 'revoked', reason: 'revoked', code: 4010 },
    { t: 'suspended', reason: 'suspended', code: 4015 },
    { t: 'ended', reason: 'logout', code: 4009 },
    { t: 'expired', reason: 'idle', code: 4011 },
    { t: 'error', code: 4000, reason: 'bad_message', message: 'x' },
  ]) {
    const { socket, client, tokens } = watched();
    socket().welcome();
    socket().push(seat('t1'));
    socket().push(end);
    socket().drop(end.code);
    assert.equal(client.token, null, end.t);
    assert.deepEqual(tokens, ['t1', null], end.t);
  }
});

test('a token not renewed by its expiry reads as null', () => {
  const { socket, clock, client } = watched();
  socket().welcome();
  socket().push(seat('t1', 120));
  clock.tick(119_999);
  assert.equal(client.token, 't1');
  clock.tick(1);
  assert.equal(client.token, null);
});

test('destroy drops the token', () => {
  const { socket, client, tokens } = watched();
  socket().welcome();
  socket().push(seat('t1'));
  client.destroy();
  assert.equal(client.token, null);
  assert.deepEqual(tokens, ['t1', null]);
});
