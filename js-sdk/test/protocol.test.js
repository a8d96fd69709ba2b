import test from 'node:test';
import assert from 'node:assert/strict';
import { bye, decode, encode, heartbeat, hello, logout, takeover } from '../src/protocol.js';
import { CLOSE, LOGGED_OUT, RETRY, RETRY_LATER, PROTOCOL_VERSION } from '../src/constants.js';

test('frames encode to the documented JSON', () => {
  assert.equal(encode(heartbeat(3, true)), '{"t":"hb","ref":3,"active":true}');
  assert.equal(encode(heartbeat(0, undefined)), '{"t":"hb","ref":0,"active":false}');
  assert.equal(encode(bye('reload')), '{"t":"bye","next":"reload"}');
  assert.equal(encode(logout()), '{"t":"logout"}');
  assert.equal(encode(takeover()), '{"t":"takeover"}');
});

test('hello carries token, org and role when given, and leaves out user when it is not', () => {
  const ids = { site: 'pk_1', session: 'S'.repeat(8), tab: 'T'.repeat(8), device: 'D'.repeat(8) };
  assert.deepEqual(hello({ ...ids, token: 'h.p.s', org: 'acme', role: 'staff' }), {
    t: 'hello',
    v: 1,
    ...ids,
    token: 'h.p.s',
    org: 'acme',
    role: 'staff',
  });
  assert.deepEqual(hello({ ...ids, user: undefined, token: 'h.p.s', org: '' }), { t: 'hello', v: 1, ...ids, token: 'h.p.s' });
});

test('hello leaves out optional fields that were not given', () => {
  const ids = { site: 'pk_1', user: 'alice', session: 'S'.repeat(8), tab: 'T'.repeat(8), device: 'D'.repeat(8) };
  assert.deepEqual(hello(ids), { t: 'hello', v: PROTOCOL_VERSION, ...ids });
  assert.deepEqual(hello({ ...ids, fp: 'abcd', mode: 'device-limit', limit: 2, policy: 'evict-oldest', touch: 0, extra: 1 }), {
    t: 'hello',
    v: 1,
    ...ids,
    fp: 'abcd',
    mode: 'device-limit',
    limit: 2,
    policy: 'evict-oldest',
    touch: 0, // no touch points is said too
  });
});

test('decode accepts typed JSON objects only', () => {
  assert.deepEqual(decode('{"t":"ack","ref":1}'), { t: 'ack', ref: 1 });
  for (const bad of ['', 'nope', '[]', '{"ref":1}', 'null', '42', new ArrayBuffer(2)]) assert.equal(decode(bad), null);
});

test('constants: the shared table is intact', () => {
  assert.equal(CLOSE.logged_out, LOGGED_OUT);
  assert.ok(RETRY_LATER.every((code) => RETRY.includes(code)));
  assert.deepEqual(RETRY, [1001, 1006, 1011, 1012, 1013, 4008]);
});
