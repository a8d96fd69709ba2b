// The client a page gets from Seatguard.load(): state, events, logout and destroy, wiring the
// connection, the browser identity, the page lifecycle and the overlay together.
import { EXPIRED, LIVE_STATES, LOGGED_OUT, REVOKED } from './constants.js';
import { Connection } from './connection.js';
import { bye, hello, logout, takeover } from './protocol.js';
import { openSession } from './session.js';
import { guardStorage } from './storage.js';
import { fingerprint } from './fingerprint.js';
import { watchActivity } from './activity.js';
import { watchLifecycle } from './lifecycle.js';
import { createOverlay } from './overlay.js';
import { EN, format, packUrl, pickLanguage } from './texts.js';
import { realTimers } from './timer.js';

const live = (state) => LIVE_STATES.includes(state);

// The rules of `source` (the load() options, or a welcome frame).
const rulesOf = (source) => ({ mode: source.mode, limit: source.limit, policy: source.policy });

// Stands in for the overlay when the site draws its own (`overlay: false`).
const NO_OVERLAY = { show() {}, hide() {} };

/** Whether a client may move from state `from` to state `to`. */
export const canMove = (from, to) =>
  from !== 'destroyed' && to !== 'connecting' && (live(from) || to === 'destroyed');

// Uniform floats from the platform's CSPRNG when there is one.
function secureRandom() {
  const c = globalThis.crypto;
  return c?.getRandomValues ? c.getRandomValues(new Uint32Array(1))[0] / 4294967296 : Math.random();
}

export class Client {
  /**
   * `options` as resolved by config.js. `world` injects the browser: `window`, `document`,
   * `WebSocket`, `fetch`, `timers` ({now, setTimeout, clearTimeout}), `random`, `storage`
   * ({local, session}).
   */
  constructor(options, world = {}) {
    const win = world.window || globalThis;
    const doc = world.document || win.document;
    const timers = world.timers || realTimers;
    const random = world.random || secureRandom;
    const storage = world.storage || {};
    /** One of STATE: connecting, admitted, blocked, reconnecting, ended, revoked, expired, error, destroyed. */
    this.state = 'connecting';
    /** The rules in force, from `welcome` ({mode, limit, policy}); until then, what was asked. */
    this.rules = rulesOf(options);
    this._doc = doc;
    this._win = win;
    this._handlers = {};
    // While blocked, the block's detail ({reason, takeover}); null otherwise.
    this._why = null;
    // The take-over in flight (a Promise), its resolve function, and whether it was sent.
    this._taking = null;
    this._onChallenge = options.onChallenge;
    this._ids = openSession(
      guardStorage(() => storage.local || win.localStorage),
      guardStorage(() => storage.session || win.sessionStorage),
      random,
    );
    this._helloFields = {
      ...options,
      user: options.userId,
      session: this._ids.session,
      tab: this._ids.tab,
      device: this._ids.device,
      fp: fingerprint(win),
    };
    this._overlay = options.overlay === false || !doc ? NO_OVERLAY : createOverlay(doc, () => this.takeOver());
    this._language(pickLanguage(options.lang, win.navigator?.languages), options, world.fetch || win.fetch, win);
    this._activity = watchActivity(win, timers.now, () => this._conn.input());
    this._unwatch = watchLifecycle(win, doc, this, timers);
    this._conn = new Connection(options.endpoint, { WebSocket: world.WebSocket || win.WebSocket, timers, random }, this);
    this._conn.connect();
  }

  /**
   * Subscribes to `state`, `block`, `unblock`, `conflict`, `denied`, `ended`, `revoked`,
   * `expired` or `error`; returns an unsubscribe function.
   */
  on(event, handler) {
    const list = (this._handlers[event] = this._handlers[event] || []);
    list.push(handler);
    return () => {
      const at = list.indexOf(handler);
      if (at >= 0) list.splice(at, 1);
    };
  }

  /** Signs out on this browser: frees its seat; every tab of the browser session ends. */
  logout() {
    if (!live(this.state)) return;
    this._loggingOut = true;
    // Not welcomed yet (or not connected: connect now): the next `welcome` sends the logout.
    if (!this._conn.send(logout())) this._conn.resume();
  }

  /**
   * Takes a seat for this browser ("use here"), only while blocked (or reconnecting after a
   * block) where the rules allow it: runs the site's `onChallenge` first, if given, then asks
   * the server, which blocks another browser instead; while reconnecting, right after the next
   * `welcome`. Resolves true once this browser holds a seat, false when the check declined,
   * the rules no longer allow it, the server denied it or the client stopped. While one is in
   * flight, calls get the same Promise.
   */
  takeOver() {
    if (this._taking) return this._taking;
    const allowed = () => live(this.state) && this._why?.takeover;
    const check = this._onChallenge;
    const taking = (this._taking = new Promise((done) => (this._done = done)));
    new Promise((ok) => ok(allowed() && (!check || check({ ...this._why }))))
      .catch(() => false)
      .then((ok) => {
        // Settled meanwhile (unblocked, denied, stopped)? Else ask, if still allowed.
        if (this._taking === taking) this._ask(ok && allowed());
      });
    return taking;
  }

  /** Says goodbye, closes the socket, removes every listener, timer and the overlay. Idempotent. */
  destroy() {
    if (this.state === 'destroyed') return;
    this._conn.stop(bye('close'));
    this._quiet();
    this._overlay.hide();
    this._ids.release();
    this._settle(false);
    this._move('destroyed');
    this._handlers = {};
  }

  // The texts: English with the site's `texts` on top at once; for another language, unless
  // the site gave every text, its pack from the server is fetched now and goes between the
  // two when it arrives, redrawing the overlay if shown. A failed fetch leaves English.
  _language(lang, options, fetch, win) {
    const own = options.texts || {};
    this._texts = { ...EN, ...own };
    if (lang === 'en' || !fetch || Object.keys(EN).every((key) => own[key] != null)) return;
    new Promise((ok) => ok(fetch.call(win, packUrl(options.endpoint, lang))))
      .then((response) => response.ok && response.json())
      .then((pack) => {
        this._texts = { ...EN, ...pack, ...own };
        if (this._overlay.shown) this._draw(...this._drawn);
      })
      .catch(() => {});
  }

  // Sends the confirmed take-over if `ok`, else ends it with false. Not welcomed yet: it is
  // held (`_held`) and the next `welcome` sends it if that still allows it.
  _ask(ok) {
    if (!ok) return this._settle(false);
    this._asked = this._conn.send(takeover());
    this._held = !this._asked;
  }

  // Ends the take-over in flight, if any, with `won` (a settled Promise ignores it).
  _settle(won) {
    this._taking = null;
    this._asked = this._held = false;
    this._done?.(won);
  }

  _emit(event, ...args) {
    for (const handler of (this._handlers[event] || []).slice()) {
      try {
        handler(...args);
      } catch (error) {
        // A failing page handler must not break the client.
        console.error(error);
      }
    }
  }

  _move(to) {
    const from = this.state;
    if (from === to) return;
    if (!canMove(from, to)) throw new Error(`seatguard: illegal state change ${from} -> ${to}`);
    this.state = to;
    this._emit('state', to, from);
  }

  // Dispatches a cancellable `seatguard:<name>` DOM event; true unless a listener prevented it.
  _page(name, detail) {
    const Custom = this._win.CustomEvent;
    return !this._doc || !Custom || this._doc.dispatchEvent(new Custom('seatguard:' + name, { detail, cancelable: true }));
  }

  // Draws the overlay for `kind` (block, ended, revoked or expired): the texts for `reason`
  // (e.g. evictedTitle) where there are some, else those for `kind`; with the text key of a
  // take-over `button`.
  _draw(kind, reason, button) {
    this._drawn = [kind, reason, button];
    const t = this._texts;
    const n = Number(this.rules.limit) || 1;
    const one = this.rules.mode === 'device-limit' ? 'device' : 'browser';
    const values = { n, unit: t[one + (n === 1 ? '' : 's')], one: t[one] };
    const text = (part) => format(t[reason + part] || t[kind + part], values);
    this._overlay.show(text('Title'), text('Text'), button && t[button]);
  }

  _block(reason, takeover) {
    this._move('blocked');
    takeover = !!takeover;
    if (this._why?.reason === reason && this._why.takeover === takeover) return;
    this._why = { reason, takeover };
    if (!this._page('block', { reason, takeover })) this._overlay.hide();
    else {
      const button = takeover && (reason === 'challenge' ? 'continueHere' : 'useHere');
      this._draw('block', reason === 'taken_over' ? 'takenOver' : reason, button);
    }
    this._emit('block', { reason, takeover });
  }

  _admit() {
    this._move('admitted');
    this._settle(true);
    if (!this._why) return;
    this._why = null;
    if (this._page('unblock', {})) this._overlay.hide();
    this._emit('unblock');
  }

  // Ends for good with `kind` (ended, revoked, expired, error): no reconnect ever.
  _finish(kind, detail) {
    if (!live(this.state)) return;
    this._conn.stop();
    this._quiet();
    // The browser session is spent: the next page load starts a new one.
    if (kind !== 'error') this._ids.rotate();
    this._why = null;
    this._settle(false);
    this._overlay.hide();
    // Notices for ended (unless this tab called logout() itself), revoked and expired.
    const notice = kind !== 'error' && !(kind === 'ended' && this._loggingOut);
    if (notice && this._page(kind, detail)) this._draw(kind, detail.reason);
    this._move(kind);
    this._emit(kind, detail);
  }

  // Removes the page listeners; idempotent.
  _quiet() {
    this._activity.stop();
    this._unwatch();
  }

  // Connection owner: the hello frame, user activity, frames, reconnects and final closes.
  // With a token function, the hello waits for a fresh token (a Promise of the frame).
  _hello() {
    const token = this._helloFields.token;
    if (typeof token !== 'function') return hello(this._helloFields);
    return new Promise((ok) => ok(token())).then((value) => hello({ ...this._helloFields, token: value }));
  }

  _active() {
    return this._activity.take();
  }

  _frame(frame) {
    const t = frame.t;
    if (t === 'welcome') {
      this.rules = rulesOf(frame);
      this._error = null;
      // A logout asked for before this welcome goes out as soon as the server listens.
      if (this._loggingOut) this._conn.send(logout());
      else if (frame.state === 'blocked') {
        // A take-over sent on the old socket did not happen (else this would be admitted).
        if (this._asked) this._settle(false);
        this._block(frame.reason, frame.takeover);
        if (this._held) this._ask(this._why.takeover);
      } else this._admit();
    } else if (t === 'block') this._block(frame.reason, frame.takeover);
    else if (t === 'unblock') this._admit();
    else if (t === 'conflict') this._emit(t);
    else if (t === 'denied') {
      if (frame.action === 'takeover') this._settle(false);
      this._emit(t, { action: frame.action, reason: frame.reason, message: frame.message });
    } else if (t === 'ended' || t === 'revoked' || t === 'expired') this._finish(t, { reason: frame.reason });
    else if (t === 'error') this._error = frame;
  }

  _retry() {
    this._move('reconnecting');
  }

  // The socket closed with a code that allows no reconnect: 4009 ends, 4010 revokes, 4011
  // expires; anything else fails with the reason and message of the server's `error` frame.
  _closed(code) {
    if (code === LOGGED_OUT) return this._finish('ended', { reason: 'logout' });
    if (code === REVOKED) return this._finish('revoked', { reason: 'revoked' });
    if (code === EXPIRED) return this._finish('expired', { reason: 'expired' });
    const sent = this._error?.code === code ? this._error : {};
    this._finish('error', { code, reason: sent.reason || 'closed', message: sent.message || '' });
  }

  // Page lifecycle (lifecycle.js): leaving, back from the back/forward cache, awake again.
  _pagehide(next) {
    if (!live(this.state)) return;
    this._conn.stop(bye(next));
    this._ids.release();
  }

  _pageshow() {
    if (!live(this.state)) return;
    this._ids.claim();
    this._move('reconnecting');
    this._conn.resume();
  }

  // Visible again or back online: reconnect at once, skipping any backoff still running.
  _wake() {
    if (!live(this.state) || this._conn.ws) return;
    this._move('reconnecting');
    this._conn.resume();
  }
}
