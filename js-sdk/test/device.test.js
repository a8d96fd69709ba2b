// The device module: the key store, the key made once, the proof of a challenge, the fall
// backs, and the client saying hello with what it gives. Node's WebCrypto stands in for the
// browser's.
import test from 'node:test';
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { PROVE_TIMEOUT_MS, b64url, device, deviceKey, idbStore, proofMessage, prove } from '../src/device.js';
import { CHALLENGE_TIMEOUT_MS } from '../src/connection.js';
import { fakeWindow, flush, setup } from './fakes.js';

const { subtle } = webcrypto;
const ECDSA = { name: 'ECDSA', hash: 'SHA-256' };
const B64URL = /^[A-Za-z0-9_-]+$/;

/** A key store over a Map, as idbStore behaves: add fails when the name is taken. */
function mapStore() {
  const map = new Map();
  return {
    map,
    get: async (name) => map.get(name),
    add: async (name, value) => {
      if (map.has(name)) throw new DOMException('Key already exists', 'ConstraintError');
      map.set(name, value);
    },
  };
}

/** What device() reads: a window with WebCrypto, a key store and timers. */
const world = (extra = {}) => ({ ...fakeWindow(), crypto: webcrypto, store: mapStore(), setTimeout, ...extra });

// Whether `signature` of `text` verifies for the public key of `pair` (as the server would
// take it: from its JWK, for verifying only).
async function verifies(pair, signature, text) {
  const { kty, crv, x, y } = await subtle.exportKey('jwk', pair.publicKey);
  const jwk = { kty, crv, x, y };
  const key = await subtle.importKey('jwk', jwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
  return subtle.verify(ECDSA, key, Buffer.from(signature, 'base64url'), new TextEncoder().encode(text));
}

test('a device key is made once per name, its private half not extractable', async () => {
  const store = mapStore();
  const pair = await deviceKey(store, subtle, 'pk_site');
  assert.equal(pair.privateKey.extractable, false);
  assert.equal(pair.privateKey.algorithm.namedCurve, 'P-256');
  await assert.rejects(subtle.exportKey('jwk', pair.privateKey));
  assert.equal(await deviceKey(store, subtle, 'pk_site'), pair, 'kept, not made again');
  assert.notEqual(await deviceKey(store, subtle, 'pk_other'), pair, 'one key per site key');
  assert.equal(store.map.size, 2);
});

test('two tabs making the key at once both use the first one kept', async () => {
  const store = mapStore();
  const [a, b] = await Promise.all([deviceKey(store, subtle, 'pk'), deviceKey(store, subtle, 'pk')]);
  assert.equal(a, b);
  assert.equal(a, store.map.get('pk'));
});

test('a store that cannot keep the key fails the key (the hello goes without)', async () => {
  const broken = { get: async () => undefined, add: async () => Promise.reject(new DOMException('quota', 'QuotaExceededError')) };
  await assert.rejects(deviceKey(broken, subtle, 'pk'), /quota/);
});

test('the proof is the public JWK (kty, crv, x, y only) and r || s over the message', async () => {
  const pair = await deviceKey(mapStore(), subtle, 'pk');
  const { key, proof } = await prove(pair, subtle, 'nonce-1', 'pk', 'session-1', 'tab-0001');
  assert.deepEqual(Object.keys(key).sort(), ['crv', 'kty', 'x', 'y']);
  assert.equal(key.kty, 'EC');
  assert.equal(key.crv, 'P-256');
  assert.match(key.x, B64URL);
  assert.equal(key.x.length, 43);
  assert.match(proof, B64URL);
  assert.equal(proof.length, 86, '64 bytes: raw r || s, not DER');
  const message = 'seatguard-device-proof/1\nnonce-1\npk\nsession-1\ntab-0001';
  assert.equal(proofMessage('nonce-1', 'pk', 'session-1', 'tab-0001'), message);
  assert.ok(await verifies(pair, proof, message));
  assert.ok(!(await verifies(pair, proof, proofMessage('nonce-2', 'pk', 'session-1', 'tab-0001'))));
});

test('base64url has no padding and the URL-safe alphabet', () => {
  assert.equal(b64url(new Uint8Array([251, 255, 254]).buffer), '-__-');
  assert.equal(b64url(new Uint8Array([1]).buffer), 'AQ');
});

test('device() gives the fingerprint, and with a nonce the key and proof', async () => {
  const w = world();
  const plain = await device(undefined, 'pk', 'session-1', 'tab-0001', w);
  assert.deepEqual(Object.keys(plain), ['fp']);
  assert.match(plain.fp, /^[A-Za-z0-9_-]{4,64}$/);
  const first = await device('nonce-1', 'pk', 'session-1', 'tab-0001', w);
  const again = await device('nonce-2', 'pk', 'session-1', 'tab-0001', w);
  assert.equal(first.fp, plain.fp);
  assert.deepEqual(first.key, again.key, 'the same device key for every hello');
  assert.ok(await verifies(w.store.map.get('pk'), again.proof, proofMessage('nonce-2', 'pk', 'session-1', 'tab-0001')));
});

test('without WebCrypto, or with a failing or hanging store, device() gives the fingerprint only', async () => {
  assert.deepEqual(Object.keys(await device('n', 'pk', 's', 't', world({ crypto: undefined }))), ['fp']);
  assert.deepEqual(Object.keys(await device('n', 'pk', 's', 't', world({ crypto: {} }))), ['fp']);
  const failing = { get: () => Promise.reject(new DOMException('private mode', 'InvalidStateError')) };
  assert.deepEqual(Object.keys(await device('n', 'pk', 's', 't', world({ store: failing }))), ['fp']);
  const hanging = { get: () => new Promise(() => {}) };
  const waited = [];
  const now = (fn, ms, value) => {
    waited.push(ms);
    fn(value);
  };
  assert.deepEqual(Object.keys(await device('n', 'pk', 's', 't', world({ store: hanging, setTimeout: now }))), ['fp']);
  assert.deepEqual(waited, [PROVE_TIMEOUT_MS]);
});

test('an IndexedDB that throws on open (private mode) fails every call', async () => {
  const store = idbStore({
    open() {
      throw new DOMException('A mutation operation was attempted', 'InvalidStateError');
    },
  });
  await assert.rejects(store.get('pk'), /mutation/);
  assert.deepEqual(Object.keys(await device('n', 'pk', 's', 't', world({ store: undefined, indexedDB: undefined }))), ['fp']);
});

// --- the client and the challenge -----------------------------------------------------------

/** A device module that records its calls and answers `answer`. */
function fakeDevice(answer = { fp: 'fp-1', key: { kty: 'EC', crv: 'P-256', x: 'x', y: 'y' }, proof: 'p' }) {
  const calls = [];
  const get = async (...args) => {
    calls.push(args);
    return answer;
  };
  return { calls, loaded: Promise.resolve(get) };
}

test('the hello waits for the challenge and carries the device key proof of its nonce', async () => {
  const dev = fakeDevice();
  const { socket } = setup({ device: dev.loaded });
  socket().open(null);
  await flush();
  assert.deepEqual(socket().sent, [], 'no hello before the challenge');
  socket().push({ t: 'challenge', nonce: 'nonce-abc' });
  await flush();
  const [hello] = socket().sent;
  assert.equal(hello.t, 'hello');
  assert.deepEqual(dev.calls, [['nonce-abc', 'pk_test', hello.session, hello.tab]]);
  assert.deepEqual([hello.fp, hello.key, hello.proof], ['fp-1', { kty: 'EC', crv: 'P-256', x: 'x', y: 'y' }, 'p']);
  socket().push({ t: 'challenge', nonce: 'again' });
  await flush();
  assert.equal(socket().sent.length, 1, 'one hello per socket');
});

test('a server that sends no challenge gets the hello without a proof after the timeout', async () => {
  const dev = fakeDevice({ fp: 'fp-1' });
  const { socket, clock } = setup({ device: dev.loaded });
  socket().open(null);
  clock.tick(CHALLENGE_TIMEOUT_MS - 1);
  await flush();
  assert.deepEqual(socket().sent, []);
  clock.tick(1);
  await flush();
  assert.equal(socket().sent[0].t, 'hello');
  assert.equal(dev.calls[0][0], undefined, 'no nonce to sign');
  assert.equal(socket().sent[0].proof, undefined);
  assert.equal(socket().sent[0].fp, 'fp-1');
  clock.tick(CHALLENGE_TIMEOUT_MS);
  assert.equal(socket().sent.length, 1);
});

test('a device module that fails to load leaves the hello as it was', async () => {
  const { socket } = setup({ device: Promise.reject(new TypeError('Failed to fetch dynamically imported module')) });
  socket().open();
  await flush();
  const [hello] = socket().sent;
  assert.deepEqual(Object.keys(hello).sort(), ['device', 'session', 'site', 't', 'tab', 'touch', 'user', 'v']);
});

test('the real device module through the client: a proof that verifies for that socket', async () => {
  const w = world();
  const { socket } = setup({ device: Promise.resolve((...args) => device(...args, w)) });
  socket().open();
  await new Promise((ok) => setTimeout(ok, 50));
  const [hello] = socket().sent;
  const text = proofMessage('nonce-0', 'pk_test', hello.session, hello.tab);
  assert.ok(await verifies(w.store.map.get('pk_test'), hello.proof, text));
});
