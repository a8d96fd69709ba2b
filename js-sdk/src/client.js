// The client a page gets from Seatguard.load(): state, seat token, events, logout and destroy,
// wiring the connection, the browser identity, the page lifecycle and the overlay together.
import { EXPIRED, LIVE_STATES, LOGGED_OUT, REVOKED, SUSPENDED } from './constants.js';
import { connection } from './connection.js';
import { bye, hello, logout, takeover } from './protocol.js';
import { openSession } from './session.js';
import { guardStorage } from './storage.js';
import { watchActivity } from './activity.js';
import { listeners } from './listeners.js';
import { watchLifecycle } from './lifecycle.js';
import { createOverlay } from './overlay.js';
import { createNotice } from './notice.js';
import { EN, format, packUrl, pickLanguage, sdkUrl } from './texts.js';
import { realTimers, timer } from './timer.js';
import { warn } from './warn.js';

const live = (state) => LIVE_STATES.includes(state);

// The rules of `source` (the load() options, or a welcome frame).
const rulesOf = (source) => ({ mode: source.mode, limit: source.limit, policy: source.policy });

// Stands in for the overlay and the notice when the site draws its own (`overlay: false`).
const NO_OVERLAY = { show() {}, hide() {} };

// "14:02": the local time of `seconds` since the epoch.
const clock = (seconds) => new Date(seconds * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });

// The final ends of a socket closed with a code that allows no reconnect; the reason they
// give is their name, but `logout` for ended. The frames that lead there are named alike.
const CLOSED = { [LOGGED_OUT]: 'ended', [REVOKED]: 'revoked', [EXPIRED]: 'expired', [SUSPENDED]: 'suspended' };
const FINAL = Object.values(CLOSED);

// What to fix for the close codes of a configuration error (docs/protocol.md), warned in the
// console after the server's own message.
const FIXES = {
  4002: 'load the SDK from its Seatguard server',
  4003: 'check the site key',
  4004: "allow this page's origin for the site",
  4012: 'pass a signed identity token',
  4013: "check the token's signature and claims",
}

/** Whether a client may move from state `from` to state `to`. */
export const canMove = (from, to) =>
  from !== 'destroyed' && to !== 'connecting' && (live(from) || to === 'destroyed');

// Uniform floats from the platform's CSPRNG (getRandomValues is there in every browser the
// SDK runs in, secure context or not, and in Node).
const secureRandom = () => crypto.getRandomValues(new Uint32Array(1))[0] / 2 ** 32;

/**
 * A client for `options` as resolved by config.js. `world` injects the browser: `window`,
 * `document`, `WebSocket`, `fetch`, `timers` ({now, setTimeout, clearTimeout}), `random`,
 * `storage` ({local, session}), `device` (a Promise of device.js's `prove`, or null: none).
 */
export function createClient(options, world = {}) {
  const win = world.window || globalThis;
  const doc = world.document || win.document;
  const timers = world.timers || realTimers;
  const random = world.random || secureRandom;
  const storage = world.storage || {};
  const check = options.onChallenge;
  let handlers = {};
  // While blocked, the block's detail ({reason, takeover}); null otherwise.
  let why = null;
  // The take-over in flight (a Promise) and its resolve function; whether it was sent on
  // this socket (`asked`) or waits for the next `welcome` (`held`).
  let taking = null;
  let done;
  let asked;
  let held;
  // Signing out: the next `welcome` sends the logout; true when the page called logout() (no
  // notice is drawn for the end), 1 for the overlay's "Sign out here" (the notice is drawn).
  let loggingOut;
  // The last `error` frame: the reason and message of the close that follows it.
  let lastError;
  // The overlay texts, and what the overlay shows: [kind, reason, more] for draw().
  let texts;
  let drawn;
  // The seat token from the last `seat` frame and when it expires (ms); null once blocked or ended.
  let seat = null;
  let until = 0;
  // From the last `welcome`: the idle timeout and how long before it to warn (ms); the last
  // user input here, and the timer of the countdown.
  let idle;
  let warnBefore;
  let input = timers.now();
  const countdown = timer(timers);

  const ids = openSession(
    guardStorage(() => storage.local || win.localStorage),
    guardStorage(() => storage.session || win.sessionStorage),
    random,
  );
  // What the hello frames say (protocol.js picks its fields): the options and this browser's ids,
  // and its touch points (0 to 256), which tell an iPad asking for desktop pages from a Mac.
  const fields = { ...options, ...ids, user: options.userId, touch: Math.min(win.navigator?.maxTouchPoints | 0, 256) };
  // The device module (device.js, from the SDK's server: the fingerprint and the device key's
  // proof), loaded while the socket opens; where it cannot load, hellos go without them.
  const device = world.device !== undefined ? world.device : options.endpoint && import(sdkUrl(options.endpoint, 'device.js')).then((module) => module.device, () => {});

  const emit = (event, ...args) => {
    for (const handler of [...(handlers[event] || [])]) {
      try {
        handler(...args);
      } catch (error) {
        // A failing page handler must not break the client.
        console.error(error);
      }
    }
  };

  // Keeps the seat token `value` (null: drop it) until `exp` (seconds); a `token` event if it changed.
  const hold = (value, exp) => {
    until = exp * 1000;
    if (seat !== value) emit('token', (seat = value));
  };

  const move = (to) => {
    const from = client.state;
    if (from === to) return;
    if (!canMove(from, to)) throw new Error(`seatguard: bad move ${from} -> ${to}`);
    client.state = to;
    emit('state', to, from);
  };

  // Dispatches a cancellable `seatguard:<name>` DOM event; true unless a listener prevented it.
  const page = (name, detail) => {
    const Custom = win.CustomEvent;
    return !doc || !Custom || doc.dispatchEvent(new Custom('seatguard:' + name, { detail, cancelable: true }));
  };

  // Draws the overlay for `kind` (block, ended, revoked, expired or suspended): the texts for
  // `reason` (e.g. evictedTitle for evicted, takenOverTitle for taken_over) where there are
  // some, else those for `kind`; and its actions, [name, text key, link]. Blocked: "Use here"
  // ("Continue here" for challenge) where allowed, "Sign in again" for verify, the site's
  // upgrade link, "Sign out here" (a link to the site's sign-out page, if any) and its help
  // link. Ended otherwise: "Sign in again" (a link to the site's sign-in page, else a reload)
  // and the help link. The links of load() options not given are left out. `more` ([text key,
  // values]) is a line after the text: where the account is in use, when to try again.
  const draw = (kind, reason, more) => {
    drawn = [kind, reason, more];
    const n = Number(client.rules.limit) || 1;
    const one = client.rules.mode === 'device-limit' ? 'device' : 'browser';
    const values = { n, unit: texts[one + (n === 1 ? '' : 's')], one: texts[one] };
    const key = reason === 'taken_over' ? 'takenOver' : reason;
    const text = (part) => format(texts[key + part] || texts[kind + part], values);
    const line = more ? ' ' + format(texts[more[0]], { ...more[1], device: texts[more[1].device] }) : '';
    const signIn = ['sign_in', 'signIn', options.signInUrl];
    const actions =
      kind === 'block'
        ? [
            why.takeover && ['use_here', reason === 'challenge' ? 'continueHere' : 'useHere'],
            reason === 'verify' && signIn,
            ['upgrade', 'upgrade', options.upgradeUrl, 1],
            ['sign_out', 'signOut', options.signOutUrl],
          ]
        : [signIn];
    actions.push(['help', 'help', options.helpUrl, 1]);
    overlay.show(
      text('Title'),
      text('Text') + line,
      actions.filter((action) => action && (action[2] || !action[3])).map(([name, label, href]) => [name, texts[label], href]),
    );
  };

  // The idle countdown, from `idle - warnBefore` after the last input until the server ends the
  // session; any input hides it and starts over (onInput below).
  const watchIdle = () => {
    const left = input + idle - timers.now();
    if (!warnBefore || client.state !== 'admitted') return;
    if (left > warnBefore) return countdown._start(left - warnBefore, watchIdle);
    statusLine.show(format(texts.idleWarning, { s: Math.max(0, Math.ceil(left / 1000)) }));
    countdown._start(1000, watchIdle);
  };
  const onInput = () => {
    input = timers.now();
    conn._input();
    if (warnBefore && client.state === 'admitted') {
      statusLine.hide();
      watchIdle();
    }
  };

  // One of the overlay's actions was clicked (`event`, the click): an `action` event and a
  // cancellable seatguard:action DOM event ({action, reason}: the block's reason, else the
  // final state), then, unless cancelled, what it does. A link opens its page; a button takes
  // the seat, signs out or reloads (sign in again without a sign-in page).
  const act = (action, event) => {
    const detail = { action, reason: why ? why.reason : client.state };
    emit('action', detail);
    if (!page('action', { ...detail })) return event.preventDefault();
    if (action === 'use_here') client.takeOver();
    if (action === 'sign_out') signOut(1);
    if (action === 'sign_in' && !options.signInUrl) win.location.reload();
  };

  // Signs out on this browser (`how`: see loggingOut); not welcomed yet (or not connected:
  // connect now), the next `welcome` sends the logout.
  const signOut = (how) => {
    if (!live(client.state)) return;
    loggingOut = how;
    if (!conn._send(logout())) conn._resume();
  };

  // Ends the take-over in flight, if any, with `won` (a settled Promise ignores it).
  const settle = (won) => {
    taking = null;
    asked = held = false;
    done?.(won);
  };

  // Sends the confirmed take-over if `ok`, else ends it with false. Not welcomed yet: it is
  // held and the next `welcome` sends it if that still allows it.
  const ask = (ok) => {
    if (!ok) return settle(false);
    asked = conn._send(takeover());
    held = !asked;
  };

  // Blocked for the `reason` of a welcome or block frame, with its `takeover`, and where
  // the seats are held (`holders`: the first one is said).
  const block = ({ reason, takeover, holders }) => {
    hold(null);
    move('blocked');
    statusLine.hide();
    takeover = !!takeover;
    if (why?.reason === reason && why.takeover === takeover) return;
    why = { reason, takeover };
    if (!page('block', { ...why, holders: holders || [] })) overlay.hide();
    else {
      const h = holders?.[0];
      const more = h && ['heldText', { device: h.device_type, browser: h.browser, os: h.os, since: clock(h.since) }];
      draw('block', reason, more);
    }
    emit('block', { ...why });
  };

  const admit = () => {
    move('admitted');
    watchIdle();
    settle(true);
    if (!why) return;
    why = null;
    if (page('unblock', {})) overlay.hide();
    emit('unblock');
  };

  // Ends for good with `kind` (ended, revoked, expired, suspended, error): no reconnect ever.
  const finish = (kind, detail) => {
    if (!live(client.state)) return;
    hold(null);
    conn._stop();
    events._off();
    // The browser session is spent: the next page load starts a new one.
    if (kind !== 'error') ids._rotate();
    why = null;
    settle(false);
    overlay.hide();
    statusLine.hide();
    countdown._stop();
    // Notices for ended (unless this tab called logout() itself), revoked, expired, suspended;
    // a configuration error is warned about in the console.
    const notice = kind !== 'error' && !(kind === 'ended' && loggingOut === true);
    const fix = FIXES[detail.code];
    if (fix) warn(options, `${detail.message || detail.reason} (close ${detail.code}): ${fix}`);
    if (notice && page(kind, detail)) draw(kind, detail.reason);
    move(kind);
    emit(kind, detail);
  };

  // Visible again, back online, back from the back/forward cache: reconnect at once,
  // skipping any backoff still running.
  const reconnect = () => {
    move('reconnecting');
    conn._resume();
  };

  const client = {
    /** One of STATE: connecting, admitted, blocked, reconnecting, ended, revoked, expired, suspended, error, destroyed. */
    state: 'connecting',
    /** The rules in force, from `welcome` ({mode, limit, policy}); until then, what was asked. */
    rules: rulesOf(options),

    /**
     * The seat token to send with the page's own requests (header `Seatguard-Seat`): a string
     * while this browser holds a seat, else null (also once it expired unrenewed).
     */
    get token() {
      return until > timers.now() ? seat : null;
    },

    /**
     * Subscribes to `state`, `token` (the new token, or null), `block`, `unblock`, `conflict`,
     * `denied`, `ended`, `revoked`, `expired`, `suspended`, `error` or `action` (one of the
     * overlay's actions was clicked); returns an unsubscribe function.
     */
    on(event, handler) {
      const list = (handlers[event] = handlers[event] || []);
      list.push(handler);
      return () => {
        const at = list.indexOf(handler);
        if (at >= 0) list.splice(at, 1);
      };
    },

    /** Signs out on this browser: frees its seat; every tab of the browser session ends. */
    logout() {
      signOut(true);
    },

    /**
     * Takes a seat for this browser ("use here"), only while blocked (or reconnecting after a
     * block) where the rules allow it: runs the site's `onChallenge` first, if given, then asks
     * the server, which blocks another browser instead; while reconnecting, right after the
     * next `welcome`. Resolves true once this browser holds a seat, false when the check
     * declined, the rules no longer allow it, the server denied it or the client stopped.
     * While one is in flight, calls get the same Promise.
     */
    takeOver() {
      if (taking) return taking;
      const allowed = () => live(client.state) && why?.takeover;
      const mine = (taking = new Promise((resolve) => (done = resolve)));
      new Promise((ok) => ok(allowed() && (!check || check({ ...why }))))
        .catch(() => false)
        .then((ok) => {
          // Settled meanwhile (unblocked, denied, stopped)? Else ask, if still allowed.
          if (taking === mine) ask(ok && allowed());
        });
      return mine;
    },

    /** Says goodbye, closes the socket, removes every listener, timer and the overlay. Idempotent. */
    destroy() {
      if (client.state === 'destroyed') return;
      hold(null);
      conn._stop(bye('close'));
      events._off();
      overlay.hide();
      ids._release();
      settle(false);
      statusLine.hide();
      countdown._stop();
      move('destroyed');
      handlers = {};
    },
  };

  const overlay = options.overlay === false || !doc ? NO_OVERLAY : createOverlay(doc, act, options.backdrop === 'opaque');
  const statusLine = options.overlay === false || !doc ? NO_OVERLAY : createNotice(doc);

  // The texts: English with the site's `texts` on top at once; for another language, unless
  // the site gave every text, its pack from the server is fetched now and goes between the
  // two when it arrives, redrawing the overlay if shown. A failed fetch leaves English.
  const own = options.texts || {};
  const lang = pickLanguage(options.lang, win.navigator?.languages);
  const fetch = world.fetch || win.fetch;
  texts = { ...EN, ...own };
  if (lang !== 'en' && fetch && Object.keys(EN).some((key) => own[key] == null)) {
    new Promise((ok) => ok(fetch.call(win, packUrl(options.endpoint, lang))))
      .then((response) => response.ok && response.json())
      .then((pack) => {
        texts = { ...EN, ...pack, ...own };
        if (overlay.shown) draw(...drawn);
      })
      .catch(() => {});
  }

  // The page listeners, removed on destroy and on a final end: user activity, and the page
  // lifecycle (lifecycle.js): leaving, back from the back/forward cache, awake again.
  const events = listeners();
  const active = watchActivity(events._on, win, timers.now, onInput);
  watchLifecycle(events._on, win, doc, timers.now, {
    _pagehide(next) {
      if (!live(client.state)) return;
      conn._stop(bye(next));
      ids._release();
    },
    _pageshow() {
      if (!live(client.state)) return;
      ids._claim();
      reconnect();
    },
    _wake() {
      if (live(client.state) && !conn._ws) reconnect();
    },
  });

  // The connection's owner: the hello frame, user activity, frames, reconnects, final closes.
  const conn = connection(options.endpoint, { WebSocket: world.WebSocket || win.WebSocket, timers, random }, {
    // With a token function, the hello waits for a fresh token; with the device module, for
    // the fingerprint and the device key's proof of the challenge's `nonce` (a Promise of the
    // frame). What the module cannot give, the hello goes without.
    _hello(nonce) {
      const token = fields.token;
      const fn = typeof token === 'function';
      if (!fn && !device) return hello(fields);
      const more = device?.then((get) => get(nonce, fields.site, fields.session, fields.tab)).catch(() => {});
      // (A token function that throws rejects the Promise: the welcome watchdog retries.)
      return Promise.all([new Promise((ok) => ok(fn ? token() : token)), more]).then(([token, more]) => hello({ ...fields, token, ...more }));
    },
    _active: active,
    _frame(frame) {
      const t = frame.t;
      if (t === 'welcome') {
        client.rules = rulesOf(frame);
        lastError = null;
        idle = frame.idle;
        warnBefore = frame.warn;
        statusLine.hide();
        // A logout asked for before this welcome goes out as soon as the server listens.
        if (loggingOut) conn._send(logout());
        else if (frame.state === 'blocked') {
          // A take-over sent on the old socket did not happen (else this would be admitted).
          if (asked) settle(false);
          block(frame);
          if (held) ask(why.takeover);
        } else admit();
      } else if (t === 'block') block(frame);
      else if (t === 'unblock') admit();
      else if (t === 'seat' && client.state === 'admitted') hold(frame.token, frame.exp);
      else if (t === 'conflict') emit(t);
      else if (t === 'denied') {
        if (frame.action === 'takeover') settle(false);
        // Too soon after the last take-over: the overlay says when to try again.
        if (frame.retry && overlay.shown) draw(drawn[0], drawn[1], ['cooldownText', { s: frame.retry }]);
        emit(t, { action: frame.action, reason: frame.reason, message: frame.message });
      } else if (FINAL.includes(t)) finish(t, { reason: frame.reason });
      else if (t === 'error') lastError = frame;
    },
    // The socket is down and this browser held its seat: "reconnecting" until the next welcome.
    _retry() {
      if (client.state === 'admitted') statusLine.show(texts.reconnecting);
      move('reconnecting');
    },
    // The socket closed with a code that allows no reconnect: 4009 ends, 4010 revokes, 4011
    // expires, 4015 suspends; anything else fails with the reason and message of the server's `error` frame.
    _closed(code) {
      const kind = CLOSED[code];
      if (kind) return finish(kind, { reason: code === LOGGED_OUT ? 'logout' : kind });
      const sent = lastError?.code === code ? lastError : {};
      finish('error', { code, reason: sent.reason || 'closed', message: sent.message || '' });
    },
  });
  // Without an endpoint (config.js warned about it), the client ends with an error as soon as
  // the page can hear it, instead of reconnecting for ever.
  if (options.endpoint) conn._resume();
  else Promise.resolve().then(() => finish('error', { code: 0, reason: 'endpoint', message: '' }));
  return client;
}
