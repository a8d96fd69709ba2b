// One WebSocket at a time, Phoenix-style: hello on open, heartbeats with an ack watchdog (and
// early ones for user input when the server asks), reconnects with full-jitter backoff after
// the close codes that allow it.
import { RETRY, RETRY_LATER } from './constants.js';
import { BASE_MS, CAP_MS, LATER_MS, delay } from './backoff.js';
import { decode, encode, heartbeat } from './protocol.js';
import { Timer } from './timer.js';

const OPEN = 1;
const CLOSING = 2;
// Close code of a socket that died without a close frame (also used for our own watchdogs).
export const ABNORMAL = 1006;
// How long to wait for `welcome` after creating a socket before giving up on it.
export const WELCOME_TIMEOUT_MS = 10000;
// Heartbeat interval if a `welcome` does not carry a usable one.
export const DEFAULT_HB_MS = 30000;

/** Whether a socket closed with `code` should be reopened. */
export const retryable = (code) => code === ABNORMAL || RETRY.includes(code);

/** The reconnect delay for attempt `attempt` after a close with `code`. */
export function retryDelay(code, attempt, random) {
  const later = RETRY_LATER.includes(code);
  return delay(attempt, { base: later ? LATER_MS : BASE_MS, cap: CAP_MS, floor: later ? LATER_MS : 0, random });
}

/**
 * A reconnecting socket to `url`. `world` gives `WebSocket`, `timers` and `random`; the
 * `owner` is told everything: `_hello()` returns the hello frame (or a Promise of it),
 * `_active()` the user activity since the last heartbeat, `_frame(frame)` gets every frame,
 * `_retry(code, ms)` hears of a scheduled reconnect and `_closed(code)` of a close that
 * allows none.
 */
export class Connection {
  constructor(url, world, owner) {
    this._url = url;
    this._world = world;
    this._owner = owner;
    /** The current socket, open or opening; null between sockets. */
    this.ws = null;
    /** True from `welcome` to the end of the socket: frames other than hello may be sent. */
    this.ready = false;
    this._attempt = 0;
    this._ref = 0;
    this._pending = null;
    this._interval = DEFAULT_HB_MS;
    this._retry = new Timer(world.timers);
    this._beat = new Timer(world.timers);
    this._watchdog = new Timer(world.timers);
  }

  /** Opens a new socket now (dropping any current one without reconnecting). */
  connect() {
    this._retry.stop();
    this._teardown();
    let ws;
    try {
      ws = this.ws = new this._world.WebSocket(this._url);
    } catch (error) {
      // The constructor throws instead of closing (a blocked port, mixed content, a document
      // being torn down): retry as after an abnormal close, with backoff.
      console.error(error);
      return this._end(ABNORMAL);
    }
    ws.onopen = () => {
      const frame = this._owner._hello();
      // A Promise while the site's token function runs: say hello if this socket is still the
      // current one. If the function fails, the welcome watchdog drops the socket and retries.
      if (frame.then) frame.then((ready) => ws === this.ws && this._write(ready), console.error);
      else this._write(frame);
    };
    ws.onmessage = (event) => this._receive(event.data);
    // No handler needed for `error`: a `close` event always follows it.
    ws.onclose = (event) => this._end(event.code);
    this._watchdog.start(WELCOME_TIMEOUT_MS, () => this._end(ABNORMAL));
  }

  /**
   * Sends one frame if the server has welcomed this socket; returns whether it went out.
   * Before `welcome` nothing but hello may go out (the server would close with 4001).
   */
  send(frame) {
    return this.ready && this._write(frame);
  }

  // Writes one frame if the socket is open (hello, before `welcome`); returns whether it did.
  _write(frame) {
    const open = this.ws?.readyState === OPEN;
    if (open) this.ws.send(encode(frame));
    return open;
  }

  _receive(data) {
    const frame = decode(data);
    if (!frame) return;
    if (frame.t === 'welcome') {
      this.ready = true;
      this._watchdog.stop();
      this._interval = frame.hb > 0 ? frame.hb : DEFAULT_HB_MS;
      // Report user input at least this often (0: the regular heartbeats suffice).
      this._activityMs = frame.activity > 0 ? frame.activity : 0;
      this._beat.start(this._interval, () => this._tick());
    } else if (frame.t === 'ack' && frame.ref === this._pending) {
      this._pending = null;
      // An answered heartbeat proves the socket stable: the next drop starts a fresh backoff.
      // (Not `welcome`: a server that welcomes and then closes would be retried at full speed.)
      this._attempt = 0;
      if (this._due) this._beatNow();
    }
    this._owner._frame(frame);
  }

  /**
   * User input in this tab. Where `welcome` asked for `activity` and no heartbeat has said
   * `active` for that long, a heartbeat goes out now (or, one being unacknowledged, right
   * after its ack), so a short idle timeout on the server never expires an active user.
   */
  input() {
    const ms = this._activityMs;
    if (!this.ready || !ms || this._world.timers.now() - this._reported < ms) return;
    if (this._pending === null) this._beatNow();
    else this._due = true;
  }

  // Sends the next heartbeat, unless the previous one was never acknowledged: then the
  // socket is dead even if the browser has not noticed, so drop it and reconnect.
  _tick() {
    if (this._pending !== null) return this._end(ABNORMAL);
    this._beatNow();
  }

  // Sends a heartbeat with the activity since the last one; the next is due an interval later.
  _beatNow() {
    const active = !!this._owner._active();
    if (active) this._reported = this._world.timers.now();
    this._due = false;
    this._pending = this._ref++;
    this.send(heartbeat(this._pending, active));
    this._beat.start(this._interval, () => this._tick());
  }

  // The socket ended with `code`: schedule a reconnect or report the end.
  _end(code) {
    this._teardown();
    if (!retryable(code)) return this._owner._closed(code);
    const ms = retryDelay(code, this._attempt++, this._world.random);
    this._retry.start(ms, () => this.connect());
    this._owner._retry(code, ms);
  }

  // Detaches and closes the current socket and stops its timers.
  _teardown() {
    const ws = this.ws;
    this.ws = null;
    this.ready = false;
    this._pending = null;
    // When a heartbeat of this socket last said `active: true`; whether one is due at the ack.
    this._reported = -Infinity;
    this._due = false;
    this._beat.stop();
    this._watchdog.stop();
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    try {
      if (ws.readyState < CLOSING) ws.close(1000);
    } catch {
      // Some browsers throw when closing a socket that is still failing; it is gone anyway.
    }
  }

  /** Stops for good (until `resume()`): sends `frame` first if the server has welcomed us. */
  stop(frame) {
    if (frame) this.send(frame);
    this._retry.stop();
    this._teardown();
  }

  /** Connects at once with a fresh backoff, unless a socket is already open or opening. */
  resume() {
    if (this.ws) return;
    this._attempt = 0;
    this.connect();
  }
}
