// One WebSocket at a time, Phoenix-style: hello on open, heartbeats with an ack watchdog (and
// early ones for user input when the server asks), reconnects with full-jitter backoff after
// the close codes that allow it.
import { RETRY, RETRY_LATER } from './constants.js';
import { BASE_MS, LATER_MS, delay } from './backoff.js';
import { decode, encode, heartbeat } from './protocol.js';
import { timer } from './timer.js';

const OPEN = 1;
const CLOSING = 2;
// Close code of a socket that died without a close frame (also used for our own watchdogs).
export const ABNORMAL = 1006;
// How long to wait for `welcome` after creating a socket before giving up on it.
export const WELCOME_TIMEOUT_MS = 10000;
// How long to wait for the server's `challenge` after the socket opens before saying hello
// without one (a server older than device keys sends none).
export const CHALLENGE_TIMEOUT_MS = 2000;
// Heartbeat interval if a `welcome` does not carry a usable one.
export const DEFAULT_HB_MS = 30000;

/** Whether a socket closed with `code` should be reopened (RETRY holds ABNORMAL too). */
export const retryable = (code) => RETRY.includes(code);

/** The reconnect delay for attempt `attempt` after a close with `code`. */
export function retryDelay(code, attempt, random) {
  const later = RETRY_LATER.includes(code) ? LATER_MS : 0;
  return delay(attempt, random, later || BASE_MS, later);
}

/**
 * A reconnecting socket to `url`. `world` gives `WebSocket`, `timers` and `random`; the
 * `owner` is told everything: `_hello(nonce)` returns the hello frame (or a Promise of it)
 * for the nonce of the socket's `challenge` (undefined when none came in time),
 * `_active()` the user activity since the last heartbeat, `_frame(frame)` gets every frame,
 * `_retry()` hears of a scheduled reconnect and `_closed(code)` of a close that
 * allows none. Returns `{_ws, _send, _input, _stop, _resume}` (`_resume()` also makes the
 * first socket); `_ws` is the current socket, open or opening, null between sockets.
 */
export function connection(url, { WebSocket, timers, random }, owner) {
  const retry = timer(timers);
  const beat = timer(timers);
  const watchdog = timer(timers);
  // Reconnect attempts since the last healthy socket; the next heartbeat ref.
  let attempt = 0;
  let ref = 0;
  // True from `welcome` to the end of the socket: frames other than hello may be sent.
  let ready;
  // The ref of the heartbeat waiting for its ack (null: none).
  let pending;
  let interval = DEFAULT_HB_MS;
  // How often user input must be reported (0: the regular heartbeats suffice).
  let activityMs;
  // When a heartbeat of this socket last said `active: true`; whether one is due at the ack.
  let reported;
  let due;
  // Whether this socket said hello already (at the challenge, or without one at its timeout).
  let said;

  // Writes one frame if the socket is open (hello, before `welcome`); returns whether it did.
  const write = (frame) => {
    const open = conn._ws?.readyState === OPEN;
    if (open) conn._ws.send(encode(frame));
    return open;
  };

  /**
   * Sends one frame if the server has welcomed this socket; returns whether it went out.
   * Before `welcome` nothing but hello may go out (the server would close with 4001).
   */
  const send = (frame) => ready && write(frame);

  // Sends the next heartbeat, unless the previous one was never acknowledged: then the
  // socket is dead even if the browser has not noticed, so drop it and reconnect.
  const tick = () => (pending !== null ? end(ABNORMAL) : beatNow());

  // Sends a heartbeat with the activity since the last one; the next is due an interval later.
  const beatNow = () => {
    const active = owner._active();
    if (active) reported = timers.now();
    due = false;
    pending = ref++;
    send(heartbeat(pending, active));
    beat._start(interval, tick);
  };

  // Says hello on the current socket, once, with the challenge's `nonce` if one came.
  const greet = (nonce) => {
    const ws = conn._ws;
    if (said || !ws) return;
    said = true;
    beat._stop(); // the challenge's timeout (the heartbeats start at welcome)
    const frame = owner._hello(nonce);
    // A Promise while the site's token function or the device key runs: say hello if this
    // socket is still the current one. If it fails, the welcome watchdog drops the socket.
    if (frame.then) frame.then((ready) => ws === conn._ws && write(ready), console.error);
    else write(frame);
  };

  // The socket's message handler: one frame, answered here if it is challenge, welcome or
  // ack, then the owner's.
  const receive = (event) => {
    const frame = decode(event.data);
    if (!frame) return;
    if (frame.t === 'challenge') greet(frame.nonce);
    else if (frame.t === 'welcome') {
      ready = true;
      watchdog._stop();
      interval = frame.hb > 0 ? frame.hb : DEFAULT_HB_MS;
      activityMs = frame.activity > 0 ? frame.activity : 0;
      beat._start(interval, tick);
    } else if (frame.t === 'ack' && frame.ref === pending) {
      pending = null;
      // An answered heartbeat proves the socket stable: the next drop starts a fresh backoff.
      // (Not `welcome`: a server that welcomes and then closes would be retried at full speed.)
      attempt = 0;
      if (due) beatNow();
    }
    owner._frame(frame);
  };

  // The socket ended with `code`: schedule a reconnect or report the end.
  const end = (code) => {
    teardown();
    if (!retryable(code)) return owner._closed(code);
    const ms = retryDelay(code, attempt++, random);
    retry._start(ms, connect);
    owner._retry();
  };

  // Detaches and closes the current socket and stops its timers.
  const teardown = () => {
    const ws = conn._ws;
    conn._ws = pending = null;
    ready = due = said = false;
    reported = -Infinity;
    beat._stop();
    watchdog._stop();
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    try {
      if (ws.readyState < CLOSING) ws.close(1000);
    } catch {
      // Some browsers throw when closing a socket that is still failing; it is gone anyway.
    }
  };

  /** Opens a new socket now (dropping any current one without reconnecting). */
  function connect() {
    retry._stop();
    teardown();
    let ws;
    try {
      ws = conn._ws = new WebSocket(url);
    } catch (error) {
      // The constructor throws instead of closing (a blocked port, mixed content, a document
      // being torn down): retry as after an abnormal close, with backoff.
      console.error(error);
      return end(ABNORMAL);
    }
    // The challenge comes right after the upgrade; without one in time, hello all the same.
    // Until `welcome`, the heartbeat timer is free to time that.
    ws.onopen = () => beat._start(CHALLENGE_TIMEOUT_MS, greet);
    ws.onmessage = receive;
    // No handler needed for `error`: a `close` event always follows it.
    ws.onclose = (event) => end(event.code);
    watchdog._start(WELCOME_TIMEOUT_MS, () => end(ABNORMAL));
  }

  const conn = {
    _ws: null,
    _send: send,

    /**
     * User input in this tab. Where `welcome` asked for `activity` and no heartbeat has said
     * `active` for that long, a heartbeat goes out now (or, one being unacknowledged, right
     * after its ack), so a short idle timeout on the server never expires an active user.
     */
    _input() {
      if (!ready || !activityMs || timers.now() - reported < activityMs) return;
      if (pending === null) beatNow();
      else due = true;
    },

    /** Stops for good (until `_resume()`): sends `frame` first if the server has welcomed us. */
    _stop(frame) {
      if (frame) send(frame);
      retry._stop();
      teardown();
    },

    /** Connects at once with a fresh backoff, unless a socket is already open or opening. */
    _resume() {
      if (conn._ws) return;
      attempt = 0;
      connect();
    },
  };
  return conn;
}
