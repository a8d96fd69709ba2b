// Test doubles: a fake clock with timers, a fake WebSocket, Map-backed storage, a fake window.
// Not a test file itself (no *.test.js suffix); the test files import it.
import { createClient } from '../src/client.js';
import { PACKS } from '../src/packs.js';

/** Timers driven by `tick(ms)`; nothing runs until time is advanced. */
export class FakeClock {
  constructor() {
    this.time = 0;
    this.queue = [];
    this.nextId = 1;
    this.now = () => this.time;
    this.setTimeout = (fn, ms = 0) => {
      const id = this.nextId++;
      this.queue.push({ id, at: this.time + Math.max(0, ms), fn });
      return id;
    };
    this.clearTimeout = (id) => {
      this.queue = this.queue.filter((t) => t.id !== id);
    };
  }

  /** Advances time by `ms`, running due timers in order (including ones they schedule). */
  tick(ms) {
    const end = this.time + ms;
    for (;;) {
      this.queue.sort((a, b) => a.at - b.at || a.id - b.id);
      const next = this.queue[0];
      if (!next || next.at > end) break;
      this.queue.shift();
      this.time = next.at;
      next.fn();
    }
    this.time = end;
  }

  /** Delays of the pending timers, from now. */
  get pending() {
    return this.queue.map((t) => t.at - this.time);
  }
}

/** A WebSocket class whose instances are driven by the test (the "server" side). */
export function fakeWebSocket() {
  class FakeWebSocket {
    constructor(url) {
      // The next `refuse` constructions throw, as browsers do for a blocked port.
      if (FakeWebSocket.refuse > 0) {
        FakeWebSocket.refuse--;
        throw new DOMException('The port is blocked', 'SecurityError');
      }
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      FakeWebSocket.sockets.push(this);
    }

    send(data) {
      if (this.readyState !== 1) throw new Error('send on a socket that is not open');
      this.sent.push(JSON.parse(data));
    }

    close(code) {
      this.closedWith = code;
      this.readyState = 3;
    }

    // Server side. A server sends its challenge right after the upgrade; `open(null)` is one
    // that sends none (older than device keys).
    open(nonce = 'nonce-' + FakeWebSocket.sockets.indexOf(this)) {
      this.readyState = 1;
      this.onopen?.({});
      if (nonce) this.push({ t: 'challenge', nonce });
    }

    push(frame) {
      this.onmessage?.({ data: JSON.stringify(frame) });
    }

    drop(code) {
      this.readyState = 3;
      this.onclose?.({ code });
    }

    /** Opens the socket (unless open already) and answers hello with a welcome. */
    welcome(extra = {}) {
      if (this.readyState !== 1) this.open();
      this.push({ t: 'welcome', v: 1, session: 's', state: 'admitted', reason: null, hb: 1000, mode: 'concurrence', limit: 1, policy: 'block-new', takeover: false, ...extra });
    }

    get last() {
      return this.sent[this.sent.length - 1];
    }
  }
  FakeWebSocket.sockets = [];
  FakeWebSocket.refuse = 0;
  return FakeWebSocket;
}

/** A Storage-like object over a Map. */
export class MemoryStorage {
  constructor() {
    this.map = new Map();
  }
  getItem(key) {
    return this.map.has(key) ? this.map.get(key) : null;
  }
  setItem(key, value) {
    this.map.set(key, String(value));
  }
  removeItem(key) {
    this.map.delete(key);
  }
}

/** An EventTarget that counts its listeners, to check that destroy() removes them all. */
export class CountingTarget extends EventTarget {
  constructor() {
    super();
    this.listeners = 0;
  }
  addEventListener(type, fn, options) {
    this.listeners++;
    super.addEventListener(type, fn, options);
  }
  removeEventListener(type, fn, options) {
    this.listeners--;
    super.removeEventListener(type, fn, options);
  }
}

/** A window without a DOM: events, location, navigator, screen, optional Navigation API. */
export function fakeWindow({ navigation = false, navigator = {}, screen = {} } = {}) {
  const win = new CountingTarget();
  const doc = new CountingTarget();
  doc.visibilityState = 'visible';
  Object.assign(win, {
    document: doc,
    location: { origin: 'https://shop.test', href: 'https://shop.test/watch' },
    navigator: { languages: ['en-US'], platform: 'MacIntel', hardwareConcurrency: 8, maxTouchPoints: 0, ...navigator },
    screen: { width: 1440, height: 900, colorDepth: 24, ...screen },
    devicePixelRatio: 2,
    CustomEvent,
  });
  if (navigation) win.navigation = new CountingTarget();
  return win;
}

/**
 * A fetch that answers `/sdk/v1/lang/{lang}.json` from packs.js as the server does (404 for
 * another language), or rejects every request with `fail`. `fetch.urls` records the requests.
 */
export function fakeFetch({ fail = false } = {}) {
  const fetch = (url) => {
    fetch.urls.push(url);
    if (fail) return Promise.reject(new TypeError('Failed to fetch'));
    const pack = PACKS[/\/sdk\/v1\/lang\/(\w+)\.json$/.exec(url)?.[1]];
    const body = pack ? structuredClone(pack) : { title: 'Not found', status: 404 };
    return Promise.resolve({ ok: !!pack, status: pack ? 200 : 404, json: async () => body });
  };
  fetch.urls = [];
  return fetch;
}

/** Lets pending promise callbacks run (async token functions, site checks). */
export const flush = () => new Promise((resolve) => setImmediate(resolve));

/** A deterministic uniform random source (mulberry32). */
export function seeded(seed = 1) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A client on fakes; returns everything a test needs to drive it. */
export function setup({ options = {}, local = new MemoryStorage(), session = new MemoryStorage(), window, random = seeded(), WebSocket = fakeWebSocket(), device = null } = {}) {
  const clock = new FakeClock();
  const win = window || fakeWindow();
  const client = createClient(
    { site: 'pk_test', userId: 'alice', endpoint: 'wss://sg.test/ws/v1', overlay: false, ...options },
    { window: win, timers: clock, random, WebSocket, storage: { local, session }, device },
  );
  const events = [];
  for (const name of ['state', 'block', 'unblock', 'conflict', 'denied', 'ended', 'revoked', 'expired', 'suspended', 'error']) {
    client.on(name, (...args) => events.push([name, ...args]));
  }
  const socket = () => WebSocket.sockets[WebSocket.sockets.length - 1];
  return { client, clock, WebSocket, win, events, socket, local, session };
}
