// The device module: built on its own to static/device.js (with its own size budget) and
// loaded by the SDK with import() from the server that serves seatguard.js, while the socket
// opens. It gives the hello the machine's fingerprint and, where WebCrypto and IndexedDB
// work, this browser's device key and its proof of the server's challenge
// (docs/device-identity.md): an ECDSA P-256 key pair whose private half cannot be exported,
// made once per page origin and site key and kept in IndexedDB.
import { fingerprint } from './fingerprint.js';

// The first line of every signed message (backend/seatguard/deviceproof.py PROOF_CONTEXT).
export const PROOF_CONTEXT = 'seatguard-device-proof/1';
export const DB_NAME = 'seatguard';
export const STORE = 'device-keys';
// How long making or reading the key and signing may take before the hello goes without.
export const PROVE_TIMEOUT_MS = 3000;

const ECDSA = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };

/** What the key signs: the context, then nonce, site, session and tab, one per line. */
export const proofMessage = (nonce, site, session, tab) => [PROOF_CONTEXT, nonce, site, session, tab].join('\n');

/** Unpadded base64url of an ArrayBuffer. */
export const b64url = (buffer) =>
  btoa(String.fromCharCode(...new Uint8Array(buffer)))
    .replace(/\+/g, '-')
    .replace(/\//g, '_')
    .replace(/=+$/, '');

/**
 * A key store over IndexedDB `idb`: `get(name)` and `add(name, value)`, which fails when the
 * name is taken. Opening throws or fails in some private modes: every call then rejects.
 */
export function idbStore(idb) {
  const db = new Promise((ok, fail) => {
    const open = idb.open(DB_NAME, 1);
    open.onupgradeneeded = () => open.result.createObjectStore(STORE);
    open.onsuccess = () => ok(open.result);
    open.onerror = open.onblocked = () => fail(open.error);
  });
  const run = (mode, op) =>
    db.then(
      (d) =>
        new Promise((ok, fail) => {
          const request = op(d.transaction(STORE, mode).objectStore(STORE));
          request.onsuccess = () => ok(request.result);
          request.onerror = () => fail(request.error);
        }),
    );
  return {
    get: (name) => run('readonly', (store) => store.get(name)),
    add: (name, value) => run('readwrite', (store) => store.add(value, name)),
  };
}

/**
 * The key pair named `name` in `store`, made once with `subtle` (the private key not
 * extractable) and kept. Two tabs making it at once: the first kept is the one both use.
 */
export async function deviceKey(store, subtle, name) {
  const kept = await store.get(name);
  if (kept) return kept;
  const pair = await subtle.generateKey(ECDSA, false, ['sign']);
  try {
    await store.add(name, pair);
    return pair;
  } catch (error) {
    const first = await store.get(name);
    if (first) return first;
    throw error;
  }
}

/** The hello's `key` (the public JWK: kty, crv, x, y only) and `proof` (r || s, base64url). */
export async function prove(pair, subtle, nonce, site, session, tab) {
  const { kty, crv, x, y } = await subtle.exportKey('jwk', pair.publicKey);
  const signed = await subtle.sign(ECDSA, pair.privateKey, new TextEncoder().encode(proofMessage(nonce, site, session, tab)));
  return { key: { kty, crv, x, y }, proof: b64url(signed) };
}

let stores;

/**
 * What the hello adds: `fp`, the fingerprint; with a challenge's `nonce`, `key` and `proof`
 * where WebCrypto and IndexedDB work within PROVE_TIMEOUT_MS. `world` gives `crypto`,
 * `indexedDB`, `setTimeout` and what the fingerprint reads (the window), and `store`, a key
 * store to use instead of IndexedDB.
 */
export function device(nonce, site, session, tab, world = globalThis) {
  const fp = fingerprint(world);
  const subtle = world.crypto?.subtle;
  if (!nonce || !subtle) return Promise.resolve({ fp });
  const proving = new Promise((ok) => ok(world.store || (stores = stores || idbStore(world.indexedDB))))
    .then((store) => deviceKey(store, subtle, site))
    .then((pair) => prove(pair, subtle, nonce, site, session, tab))
    .catch(() => ({}));
  const late = new Promise((ok) => world.setTimeout(ok, PROVE_TIMEOUT_MS, {}));
  return Promise.race([proving, late]).then((more) => ({ fp, ...more }));
}
